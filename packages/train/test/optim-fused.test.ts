import { FUSED_KERNELS, hasFusedKernel, setFusedKernelsEnabled } from '@para/ops';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { AdamW, globalNorm } from '../src/index';
import { expectClose, testBackends, useBackend } from './helpers/backends';

/*
 * AdamW through the fused kernel `ParaAdamW` (@para/blas on wasm: one native call updates every
 * parameter) against the generic path (~15 tfjs kernels per parameter), same process, same
 * backend: several steps with bias corrections, decay on and off per parameter, gradient scales,
 * odd sizes (1 element, sizes past the kernel's single-thread threshold) and many parameters.
 */

/** Shapes: scalars-as-[1], odd vectors and matrices, one past 32,768 elements (two threads). */
const SHAPES: number[][] = [
  [1],
  [3],
  [7, 5],
  [1, 1],
  [257, 129], // 33,153 elements
  [13],
  [2, 3, 5],
  [64, 33],
  [1000],
  [31, 9],
  ...Array.from({ length: 30 }, (_, i) => [i + 2, (i % 5) + 1]), // many small parameters
];

function seededValues(n: number, seed: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

function makeParams(tag: string): Map<string, tf.Variable> {
  return new Map(
    SHAPES.map((shape, i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const t = tf.tensor(seededValues(n, 100 + i, 1), shape);
      const v = tf.variable(t, true, `adamw-fused-${tag}-${i}`);
      t.dispose();
      return [`w${i}`, v] as const;
    }),
  );
}

function makeGrads(step: number): Record<string, tf.Tensor> {
  return Object.fromEntries(
    SHAPES.map((shape, i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      // some gradients exactly 0, some large, to reach every branch of the arithmetic
      const g = seededValues(n, 1000 * step + i, i % 3 === 0 ? 10 : 0.1);
      for (let j = 0; j < n; j += 7) g[j] = 0;
      return [`w${i}`, tf.tensor(g, shape)];
    }),
  );
}

// Decay on every other parameter, whatever its rank (the default would decay matrices only).
const decay = (name: string) => Number(name.slice(1)) % 2 === 0;
const STEPS: { lr: number; gradScale: number }[] = [
  { lr: 1e-2, gradScale: 1 },
  { lr: 3e-3, gradScale: 0.37 },
  { lr: 1e-3, gradScale: 1 },
  { lr: 5e-2, gradScale: 2.5 },
  { lr: 0, gradScale: 1 },
  { lr: 2e-2, gradScale: 1 },
];

async function read(m: ReadonlyMap<string, tf.Tensor>): Promise<Float32Array[]> {
  return Promise.all([...m.values()].map(async (t) => (await t.data()) as Float32Array));
}

for (const backend of testBackends().filter((b) => b === 'wasm')) {
  describe('AdamW through the fused kernel (ParaAdamW, @para/blas on wasm)', () => {
    it('is registered where @para/blas loaded (skipped, saying so, elsewhere)', async () => {
      await useBackend(backend);
      if (!hasFusedKernel(FUSED_KERNELS.adamW))
        console.warn('ParaAdamW is not registered on wasm here (no @para/blas addon)');
    });

    it('equals the generic path over 6 steps, 40 parameters, decay on/off, gradient scales (one kernel per step)', async () => {
      await useBackend(backend);
      if (!hasFusedKernel(FUSED_KERNELS.adamW)) return;
      const pf = makeParams('f');
      const pg = makeParams('g');
      const opts = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, decay };
      const fused = new AdamW(pf, opts);
      const generic = new AdamW(pg, opts);
      let worstExact = 0;
      for (let s = 0; s < STEPS.length; s++) {
        const { lr, gradScale } = STEPS[s] as { lr: number; gradScale: number };
        const grads = makeGrads(s);
        const prof = await tf.profile(() => fused.apply(grads, lr, gradScale));
        expect(prof.kernels.map((k) => k.name)).toEqual(['ParaAdamW']);
        const was = setFusedKernelsEnabled(false);
        try {
          const gprof = await tf.profile(() => generic.apply(grads, lr, gradScale));
          expect(gprof.kernels.length).toBeGreaterThan(10 * SHAPES.length);
          expect(gprof.kernelNames).not.toContain('ParaAdamW');
        } finally {
          setFusedKernelsEnabled(was);
        }
        tf.dispose(Object.values(grads));
        const [a, b] = [await read(pf), await read(pg)];
        const sf = fused.state().tensors;
        const sg = generic.state().tensors;
        for (let i = 0; i < SHAPES.length; i++) {
          expectClose(a[i] as Float32Array, b[i] as Float32Array, 0, 1e-6, `step ${s} w${i}`);
          for (const k of ['m', 'v']) {
            const x = (await (sf[`${k}.w${i}`] as tf.Tensor).data()) as Float32Array;
            const y = (await (sg[`${k}.w${i}`] as tf.Tensor).data()) as Float32Array;
            expectClose(x, y, 0, 1e-6, `step ${s} ${k}.w${i}`);
            for (let j = 0; j < x.length; j++)
              if (x[j] !== y[j])
                worstExact = Math.max(worstExact, Math.abs((x[j] as number) - (y[j] as number)));
          }
          const x = a[i] as Float32Array;
          const y = b[i] as Float32Array;
          for (let j = 0; j < x.length; j++)
            if (x[j] !== y[j])
              worstExact = Math.max(worstExact, Math.abs((x[j] as number) - (y[j] as number)));
        }
      }
      // Same float32 operations in the same order as wasm's IEEE kernels: bit-identical here.
      expect(worstExact).toBe(0);
      expect(fused.step).toBe(STEPS.length);
      fused.dispose();
      generic.dispose();
      tf.dispose([...pf.values(), ...pg.values()]);
    });

    it('matches a float64 reference of torch.optim.AdamW through the fused path', async () => {
      await useBackend(backend);
      if (!hasFusedKernel(FUSED_KERNELS.adamW)) return;
      const init = [0.5, -1.0, 2.0, 0.25, 0.1];
      const p = tf.variable(tf.tensor2d(init.slice(0, 4), [2, 2]), true, 'adamw-f64-p');
      const b = tf.variable(tf.tensor1d(init.slice(4)), true, 'adamw-f64-b');
      const opt = new AdamW(
        new Map<string, tf.Variable>([
          ['p', p],
          ['b', b],
        ]),
        { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 },
      );
      const ref = [...init];
      const m = [0, 0, 0, 0, 0];
      const v = [0, 0, 0, 0, 0];
      const gs = [
        [0.1, -0.3, 0.5, 0.0, 1.0],
        [-0.2, 0.1, 0.4, 0.3, 0.5],
        [0.05, 0.05, -0.5, 0.2, -1.0],
      ];
      const lrs = [0.1, 0.05, 0.01];
      for (let s = 0; s < 3; s++) {
        const g = gs[s] as number[];
        const lr = lrs[s] as number;
        for (let i = 0; i < 5; i++) {
          const wd = i < 4 ? 0.1 : 0; // matrices decay, the bias does not
          m[i] = 0.9 * (m[i] as number) + 0.1 * (g[i] as number);
          v[i] = 0.99 * (v[i] as number) + 0.01 * (g[i] as number) ** 2;
          const mh = (m[i] as number) / (1 - 0.9 ** (s + 1));
          const vh = (v[i] as number) / (1 - 0.99 ** (s + 1));
          ref[i] = (ref[i] as number) * (1 - lr * wd) - (lr * mh) / (Math.sqrt(vh) + 1e-8);
        }
        const gt = { p: tf.tensor2d(g.slice(0, 4), [2, 2]), b: tf.tensor1d(g.slice(4)) };
        const prof = await tf.profile(() => opt.apply(gt, lr));
        expect(prof.kernels.map((k) => k.name)).toEqual(['ParaAdamW']);
        tf.dispose(Object.values(gt));
      }
      expectClose(await p.data(), ref.slice(0, 4), 1e-6, 1e-5, 'p');
      expectClose(await b.data(), ref.slice(4), 1e-6, 1e-5, 'b');
      opt.dispose();
      tf.dispose([p, b]);
    });

    it('never writes into data a variable shares: the tensors the variables were made from keep their values', async () => {
      await useBackend(backend);
      if (!hasFusedKernel(FUSED_KERNELS.adamW)) return;
      // tf.variable(t) shares t's data (no copy); so does a reshape of a variable.
      const src = [tf.tensor1d([1, 2, 3]), tf.tensor2d([0.5, -0.5, 4, 8], [2, 2])];
      const vars = src.map((t, i) => tf.variable(t, true, `adamw-share-${i}`));
      const view = tf.reshape(vars[1] as tf.Variable, [4]);
      const before = await Promise.all(src.map((t) => t.data()));
      const opt = new AdamW(
        new Map<string, tf.Variable>(vars.map((v, i) => [`s${i}`, v] as const)),
        {
          weightDecay: 0.5,
          decay: () => true,
        },
      );
      const g = { s0: tf.tensor1d([1, -1, 0.5]), s1: tf.tensor2d([1, 1, -1, 2], [2, 2]) };
      const m0 = opt.state().tensors['m.s0'] as tf.Tensor; // the trainer's checkpoint holds these
      const m0Before = await m0.data();
      opt.apply(g, 0.1);
      expect(Array.from(await (vars[0] as tf.Variable).data())).not.toEqual(
        Array.from(before[0] as Float32Array),
      );
      for (let i = 0; i < src.length; i++)
        expect(Array.from(await (src[i] as tf.Tensor).data())).toEqual(
          Array.from(before[i] as Float32Array),
        );
      expect(Array.from(await view.data())).toEqual(Array.from(before[1] as Float32Array));
      // A state() tensor handed out before the step is the live variable: it now shows the new moment.
      expect(Array.from(await m0.data())).not.toEqual(Array.from(m0Before));
      opt.dispose();
      tf.dispose([...src, ...vars, view, ...Object.values(g)]);
    });

    it('globalNorm through ParaSumSquares (one kernel) equals the generic path; NaN stays NaN', async () => {
      await useBackend(backend);
      if (!hasFusedKernel(FUSED_KERNELS.sumSquares)) return;
      const grads = SHAPES.map((shape, i) =>
        tf.tensor(
          seededValues(
            shape.reduce((a, b) => a * b, 1),
            300 + i,
            0.3,
          ),
          shape,
        ),
      );
      const info = await tf.profile(async () => {
        const n = await globalNorm(grads);
        return tf.scalar(n);
      });
      tf.dispose(info.result as tf.Tensor);
      expect(info.kernelNames.filter((k) => k === 'ParaSumSquares')).toHaveLength(1);
      expect(info.kernelNames).not.toContain('Square');
      const fused = await globalNorm(grads);
      const was = setFusedKernelsEnabled(false);
      const generic = await globalNorm(grads);
      setFusedKernelsEnabled(was);
      expect(Math.abs(fused - generic) / generic).toBeLessThan(1e-5);
      const bad = tf.tensor1d([1, Number.NaN]);
      expect(await globalNorm([...grads, bad])).toBeNaN();
      tf.dispose([...grads, bad]);
    });

    it('keeps tf.memory().numTensors flat over 40 fused steps', async () => {
      await useBackend(backend);
      if (!hasFusedKernel(FUSED_KERNELS.adamW)) return;
      const params = makeParams('flat');
      const opt = new AdamW(params, { weightDecay: 0.01 });
      const grads = makeGrads(0);
      opt.apply(grads, 1e-3);
      const tensors = tf.memory().numTensors;
      const bytes = tf.memory().numBytes;
      for (let s = 0; s < 40; s++) opt.apply(grads, 1e-3, s % 2 === 0 ? 1 : 0.5);
      expect(tf.memory().numTensors).toBe(tensors);
      expect(tf.memory().numBytes).toBe(bytes);
      opt.dispose();
      tf.dispose([...params.values(), ...Object.values(grads)]);
    });

    it('bad kernel inputs throw before anything is allocated (mismatched shapes, bad attrs)', async () => {
      await useBackend(backend);
      if (!hasFusedKernel(FUSED_KERNELS.adamW)) return;
      const a = tf.zeros([3]);
      const b = tf.zeros([4]);
      const attrs = {
        count: 1,
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        step: 1,
        gradScale: 1,
        weightDecay: [0],
      };
      const run = (inputs: tf.NamedTensorMap, at: Record<string, unknown>) => () =>
        tf.engine().runKernel(FUSED_KERNELS.adamW, inputs, at as unknown as tf.NamedAttrMap);
      const before = tf.memory().numTensors;
      expect(run({ param0: a, m0: a, v0: a, grad0: b }, attrs)).toThrow(/ParaAdamW/);
      expect(run({ param0: a, m0: a, v0: a }, attrs)).toThrow(/missing input "grad0"/);
      expect(run({ param0: a, m0: a, v0: a, grad0: a }, { ...attrs, step: 0 })).toThrow(/step/);
      expect(run({ param0: a, m0: a, v0: a, grad0: a }, { ...attrs, weightDecay: [] })).toThrow(
        /weightDecay/,
      );
      expect(run({ param0: a, m0: a, v0: a, grad0: a }, { ...attrs, beta1: 1 })).toThrow(/beta/);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([a, b]);
    });
  });
}
