import { FUSED_KERNELS, hasFusedKernel, setFusedKernelsEnabled } from '@para/ops';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { AdamW, clipScale, globalNorm, makeSchedule, weightedCrossEntropy } from '../src/index';
import { expectClose, testBackends, useBackend } from './helpers/backends';

/** Value and gradient of weightedCrossEntropy, fused kernels dispatched or not. */
async function lossAndGrad(
  x: tf.Tensor,
  t: tf.Tensor,
  w: tf.Tensor,
  fused: boolean,
): Promise<[Float32Array, Float32Array, string[]]> {
  const was = setFusedKernelsEnabled(fused);
  try {
    const prof = await tf.profile(() => weightedCrossEntropy(x, t, w));
    const value = (await (prof.result as tf.Tensor).data()) as Float32Array;
    tf.dispose(prof.result as tf.Tensor);
    const g = tf.grad((xx: tf.Tensor) => weightedCrossEntropy(xx, t, w))(x);
    const grad = (await g.data()) as Float32Array;
    g.dispose();
    return [value, grad, prof.kernelNames];
  } finally {
    setFusedKernelsEnabled(was);
  }
}

for (const backend of testBackends().filter((b) => b === 'wasm')) {
  describe('weightedCrossEntropy through the fused kernels (ParaCrossEntropy, @para/blas on wasm)', () => {
    it('are registered where @para/blas loaded (skipped, saying so, elsewhere)', async () => {
      await useBackend(backend);
      if (!hasFusedKernel(FUSED_KERNELS.crossEntropy))
        console.warn('ParaCrossEntropy is not registered on wasm here (no @para/blas addon)');
    });
    // N × V: small, odd, and past the single-thread threshold; weights with zeros; targets
    // outside [0, V) at zero-weight positions (clamped).
    for (const [N, V] of [
      [1, 2],
      [7, 13],
      [33, 257],
      [300, 4099],
    ] as const) {
      it(`[${N}, ${V}]: value and gradient equal the generic path; one kernel forward`, async () => {
        await useBackend(backend);
        if (!hasFusedKernel(FUSED_KERNELS.crossEntropy)) return;
        const x = tf.randomNormal([N, V], 0, 4, 'float32', N + V); // [N, V]
        const tv = Array.from({ length: N }, (_, n) => (n * 7919) % V);
        const wv = Array.from({ length: N }, (_, n) => (n % 3 === 1 ? 0 : 1 / N));
        for (let n = 1; n < N; n += 3) tv[n] = n % 2 === 0 ? -5 : V + 3; // zero weight: anything
        const t = tf.tensor1d(tv, 'int32'); // [N]
        const w = tf.tensor1d(wv); // [N]
        const before = tf.memory().numTensors;
        const [fv, fg, fk] = await lossAndGrad(x, t, w, true);
        const [gv, gg, gk] = await lossAndGrad(x, t, w, false);
        expect(tf.memory().numTensors).toBe(before);
        // (customGrad's own record is named 'unnamed scope'; it runs no kernel)
        expect(fk.filter((k) => k !== 'unnamed scope')).toEqual(['ParaCrossEntropy']);
        expect(gk.length).toBeGreaterThan(5);
        expectClose(fv, gv, 1e-5, 1e-5, 'loss');
        expectClose(fg, gg, 1e-6, 1e-5, 'gradient');
        tf.dispose([x, t, w]);
      });
    }
    it('a non-finite logit gives NaN (weight 0 included), as the generic path', async () => {
      await useBackend(backend);
      if (!hasFusedKernel(FUSED_KERNELS.crossEntropy)) return;
      for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        const xv = Array.from({ length: 12 }, (_, i) => Math.sin(i));
        xv[5] = bad; // row 1, weight 0
        const x = tf.tensor2d(xv, [3, 4]);
        const t = tf.tensor1d([0, 1, 2], 'int32');
        const w = tf.tensor1d([0.5, 0, 0.5]);
        const [fv] = await lossAndGrad(x, t, w, true);
        const [gv] = await lossAndGrad(x, t, w, false);
        expect(Number.isNaN(gv[0])).toBe(true);
        expect(Number.isNaN(fv[0])).toBe(true);
        tf.dispose([x, t, w]);
      }
    });
  });
}

for (const backend of testBackends()) {
  describe(`weightedCrossEntropy on ${backend}`, () => {
    it('equals a float64 reference in value and gradient', async () => {
      await useBackend(backend);
      const N = 7;
      const V = 13;
      const x = tf.randomNormal([N, V], 0, 3, 'float32', 5);
      const targets = [1, 2, 3, 12, 0, 5, 9];
      const mask = [1, 0, 1, 1, 0, 1, 1];
      const t = tf.tensor1d(targets, 'int32');
      const w = tf.tensor1d(mask.map((m) => m / 5));
      const a = await weightedCrossEntropy(x, t, w).data();
      // float64 reference: Σ w·(logsumexp − x[target]); gradient w·(softmax − onehot(target)).
      const xs = await x.data();
      let sum = 0;
      const grad = new Float64Array(N * V);
      for (let n = 0; n < N; n++) {
        let max = -Infinity;
        for (let j = 0; j < V; j++) max = Math.max(max, xs[n * V + j]!);
        let z = 0;
        for (let j = 0; j < V; j++) z += Math.exp(xs[n * V + j]! - max);
        const wn = mask[n]! / 5;
        sum += wn * (max + Math.log(z) - xs[n * V + targets[n]!]!);
        for (let j = 0; j < V; j++)
          grad[n * V + j] = wn * (Math.exp(xs[n * V + j]! - max) / z - (j === targets[n] ? 1 : 0));
      }
      expectClose(a, [sum], 1e-5, 1e-5, 'float64');
      const g1 = await tf
        .grad((xx: tf.Tensor) => weightedCrossEntropy(xx, t, w))(x)
        .data();
      expectClose(g1, grad, 1e-6, 1e-5, 'gradient');
      tf.dispose([x, t, w]);
    });
  });
}

describe('AdamW', () => {
  it('matches a float64 reference of torch.optim.AdamW (decoupled decay on matrices only)', async () => {
    await useBackend('cpu');
    const p = tf.variable(
      tf.tensor2d([
        [0.5, -1.0],
        [2.0, 0.25],
      ]),
      true,
      'adamw-test-p',
    );
    const b = tf.variable(tf.tensor1d([0.1, -0.2]), true, 'adamw-test-b');
    const opt = new AdamW(
      new Map<string, tf.Variable>([
        ['p', p],
        ['b', b],
      ]),
      { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 },
    );
    const ref = { p: [0.5, -1.0, 2.0, 0.25], b: [0.1, -0.2] };
    const m = { p: [0, 0, 0, 0], b: [0, 0] };
    const v = { p: [0, 0, 0, 0], b: [0, 0] };
    const grads = [
      { p: [0.1, -0.3, 0.5, 0.0], b: [1.0, -2.0] },
      { p: [-0.2, 0.1, 0.4, 0.3], b: [0.5, 0.5] },
      { p: [0.05, 0.05, -0.5, 0.2], b: [-1.0, 0.1] },
    ];
    const lrs = [0.1, 0.05, 0.01];
    grads.forEach((g, s) => {
      const lr = lrs[s]!;
      const t = s + 1;
      for (const k of ['p', 'b'] as const) {
        const decay = k === 'p' ? 0.1 : 0;
        for (let i = 0; i < ref[k].length; i++) {
          m[k][i] = 0.9 * m[k][i]! + 0.1 * g[k][i]!;
          v[k][i] = 0.99 * v[k][i]! + 0.01 * g[k][i]! ** 2;
          const mh = m[k][i]! / (1 - 0.9 ** t);
          const vh = v[k][i]! / (1 - 0.99 ** t);
          ref[k][i] = ref[k][i]! * (1 - lr * decay) - (lr * mh) / (Math.sqrt(vh) + 1e-8);
        }
      }
      const gt = { p: tf.tensor2d(g.p, [2, 2]), b: tf.tensor1d(g.b) };
      opt.apply(gt, lr);
      tf.dispose(Object.values(gt));
    });
    expectClose(await p.data(), ref.p, 1e-6, 1e-5, 'p');
    expectClose(await b.data(), ref.b, 1e-6, 1e-5, 'b');
    expect(opt.step).toBe(3);

    // State round trip: a fresh optimizer continues exactly.
    const p2 = tf.variable(p.clone(), true, 'adamw-test-p2');
    const b2 = tf.variable(b.clone(), true, 'adamw-test-b2');
    const opt2 = new AdamW(
      new Map<string, tf.Variable>([
        ['p', p2],
        ['b', b2],
      ]),
      { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 },
    );
    const state = opt.state();
    const copy = {
      step: state.step,
      tensors: Object.fromEntries(Object.entries(state.tensors).map(([k, x]) => [k, x.clone()])),
    };
    opt2.loadState(copy);
    const g = { p: tf.tensor2d([0.3, 0.3, -0.1, 0.2], [2, 2]), b: tf.tensor1d([0.2, 0.4]) };
    opt.apply(g, 0.02);
    opt2.apply(g, 0.02);
    expect(Array.from(await p2.data())).toEqual(Array.from(await p.data()));
    expect(Array.from(await b2.data())).toEqual(Array.from(await b.data()));
    expect(() => opt2.loadState({ step: 1, tensors: {} }, 'ckpt')).toThrow(
      /ckpt, field "m\.p": optimizer state lacks a moment/,
    );
    tf.dispose([...Object.values(copy.tensors), ...Object.values(g)]);
    opt.dispose();
    opt2.dispose();
  });

  it('clipping by global norm', async () => {
    await useBackend('cpu');
    const gs = [tf.tensor1d([3, 0]), tf.tensor1d([0, 4])];
    expect(await globalNorm(gs)).toBeCloseTo(5, 6);
    expect(clipScale(5, 1)).toBeCloseTo(0.2, 6);
    expect(clipScale(0.5, 1)).toBe(1);
    expect(clipScale(5, 0)).toBe(1);
    tf.dispose(gs);
  });
});

describe('schedules', () => {
  it('linear warm-up, then linear or cosine decay to the floor at the last step', () => {
    const lin = makeSchedule({ lr: 1, totalSteps: 11, warmupSteps: 2, decay: 'linear' });
    expect([0, 1, 2, 10].map(lin)).toEqual([0.5, 1, 1, 0]);
    expect(lin(6)).toBeCloseTo(0.5, 10);
    const cos = makeSchedule({
      lr: 2,
      totalSteps: 11,
      warmupSteps: 0,
      decay: 'cosine',
      minLrRatio: 0.1,
    });
    expect(cos(0)).toBeCloseTo(2, 10);
    expect(cos(5)).toBeCloseTo(2 * (0.1 + 0.9 * 0.5), 10);
    expect(cos(10)).toBeCloseTo(0.2, 10);
    expect(makeSchedule({ lr: 3, totalSteps: 5, decay: 'constant' })(4)).toBe(3);
    expect(() => makeSchedule({ lr: -1, totalSteps: 5 })).toThrow(/lr/);
  });
});
