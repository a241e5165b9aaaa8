import { Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyRope, rmsNorm, ropeCosSin, ropeInvFreq, swiglu } from '../src';
import { FUSED_KERNELS, hasFusedKernel, setFusedKernelsEnabled } from '../src/fused';
import { addRmsNorm } from '../src/rmsnorm';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';

/*
 * The dispatch mechanism of fused.ts, backend-neutrally: where no backend registers the fused
 * kernels (here: @para/ops' own tests never load @para/blas) the ops run their generic path;
 * where a backend registers them (here: JavaScript stand-ins on cpu) the ops call them and their
 * gradients call the Grad kernels. The native kernels are tested in @para/blas (test/fused.test.ts).
 */

const NAMES = Object.values(FUSED_KERNELS);

async function kernelsOf(fn: () => tf.Tensor | tf.Tensor[]): Promise<string[]> {
  const info = await tf.profile(fn);
  tf.dispose(info.result as tf.Tensor | tf.Tensor[]);
  return info.kernelNames;
}

for (const backend of testBackends()) {
  describe(`fused-kernel dispatch on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    it('runs the generic tfjs path where the backend has no fused kernels, or dispatch is off', async () => {
      const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
      const w = tf.tensor1d([1, 0.5, 2]);
      const kernels = async () => [
        ...(await kernelsOf(() => rmsNorm(x, w))),
        ...(await kernelsOf(() => swiglu(x, x))),
        ...(await kernelsOf(() =>
          tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(rmsNorm(a, b)))([x, w]),
        )),
      ];
      // On wasm, @para/blas registers the fused kernels where it resolves from here (pnpm's
      // hoisted node_modules); cpu and webgpu have none today.
      const registered = NAMES.filter((n) => tf.getKernel(n, backend) !== undefined);
      expect(hasFusedKernel(FUSED_KERNELS.rmsNorm)).toBe(
        registered.includes(FUSED_KERNELS.rmsNorm),
      );
      if (registered.length === 0) {
        expect((await kernels()).filter((k) => k.startsWith('Para'))).toEqual([]);
      } else {
        expect(await kernels()).toContain(FUSED_KERNELS.rmsNorm);
      }
      const was = setFusedKernelsEnabled(false);
      try {
        expect(hasFusedKernel(FUSED_KERNELS.rmsNorm)).toBe(false);
        const generic = await kernels();
        expect(generic.filter((k) => k.startsWith('Para'))).toEqual([]);
        expect(generic).toContain('Rsqrt');
        expect(generic).toContain('Sigmoid');
      } finally {
        setFusedKernelsEnabled(was);
      }
      tf.dispose([x, w]);
    });
  });
}

/** The cpu backend's values of a TensorInfo, and a new TensorInfo from values. */
interface CpuLike {
  readSync(dataId: object): Float32Array;
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): tf.TensorInfo;
}
type Args = {
  inputs: Record<string, tf.TensorInfo>;
  backend: CpuLike;
  attrs?: Record<string, unknown>;
};

const calls = new Map<string, number>();
function stand(name: string, fn: (a: Args) => tf.TensorInfo | tf.TensorInfo[]): tf.KernelConfig {
  return {
    kernelName: name,
    backendName: 'cpu',
    kernelFunc: ((a: unknown) => {
      calls.set(name, (calls.get(name) ?? 0) + 1);
      return fn(a as Args);
    }) as unknown as tf.KernelFunc,
  };
}

/** RMSNorm rows of x [rows·d] with weight w [d] (+1 with off). */
function normRows(x: Float32Array, w: Float32Array, eps: number, off: number): Float32Array {
  const d = w.length;
  const y = new Float32Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += (x[r * d + j] as number) ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++)
      y[r * d + j] = (x[r * d + j] as number) * inv * ((w[j] as number) + off);
  }
  return y;
}

/** Its gradient: [dx, dw]. */
function normRowsGrad(
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array,
  eps: number,
  off: number,
): [Float32Array, Float32Array] {
  const d = w.length;
  const dx = new Float32Array(x.length);
  const dw = new Float32Array(d);
  for (let r = 0; r < x.length / d; r++) {
    let ss = 0;
    let gx = 0;
    for (let j = 0; j < d; j++) {
      ss += (x[r * d + j] as number) ** 2;
      gx += (dy[r * d + j] as number) * ((w[j] as number) + off) * (x[r * d + j] as number);
    }
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) {
      const xv = x[r * d + j] as number;
      const g = dy[r * d + j] as number;
      dx[r * d + j] = inv * g * ((w[j] as number) + off) - (xv * inv ** 3 * gx) / d;
      dw[j] = (dw[j] as number) + g * xv * inv;
    }
  }
  return [dx, dw];
}

/** Stand-in implementations of the contract in fused.ts, in plain JavaScript on cpu. */
const STAND_INS: tf.KernelConfig[] = [
  stand(FUSED_KERNELS.addRmsNorm, ({ inputs, backend, attrs }) => {
    const x = backend.readSync(inputs.x!.dataId);
    const res = backend.readSync(inputs.residual!.dataId);
    const w = backend.readSync(inputs.weight!.dataId);
    const sum = x.map((v, i) => v + (res[i] as number));
    const y = normRows(sum, w, attrs?.eps as number, attrs?.unitOffset === true ? 1 : 0);
    const shape = inputs.x!.shape;
    return [
      backend.makeTensorInfo(shape, 'float32', sum),
      backend.makeTensorInfo(shape, 'float32', y),
    ];
  }),
  stand(FUSED_KERNELS.addRmsNormGrad, ({ inputs, backend, attrs }) => {
    const [dx, dw] = normRowsGrad(
      backend.readSync(inputs.dy!.dataId),
      backend.readSync(inputs.sum!.dataId),
      backend.readSync(inputs.weight!.dataId),
      attrs?.eps as number,
      attrs?.unitOffset === true ? 1 : 0,
    );
    const ds = backend.readSync(inputs.dsum!.dataId);
    return [
      backend.makeTensorInfo(
        inputs.sum!.shape,
        'float32',
        dx.map((v, i) => v + (ds[i] as number)),
      ),
      backend.makeTensorInfo([dw.length], 'float32', dw),
    ];
  }),
  stand(FUSED_KERNELS.rmsNorm, ({ inputs, backend, attrs }) => {
    const x = backend.readSync(inputs.x!.dataId);
    const w = backend.readSync(inputs.weight!.dataId);
    const d = w.length;
    const off = attrs?.unitOffset === true ? 1 : 0;
    const eps = attrs?.eps as number;
    const y = new Float32Array(x.length);
    for (let r = 0; r < x.length / d; r++) {
      let ss = 0;
      for (let j = 0; j < d; j++) ss += (x[r * d + j] as number) ** 2;
      const inv = 1 / Math.sqrt(ss / d + eps);
      for (let j = 0; j < d; j++)
        y[r * d + j] = (x[r * d + j] as number) * inv * ((w[j] as number) + off);
    }
    return backend.makeTensorInfo(inputs.x!.shape, 'float32', y);
  }),
  stand(FUSED_KERNELS.rmsNormGrad, ({ inputs, backend, attrs }) => {
    const dy = backend.readSync(inputs.dy!.dataId);
    const x = backend.readSync(inputs.x!.dataId);
    const w = backend.readSync(inputs.weight!.dataId);
    const d = w.length;
    const off = attrs?.unitOffset === true ? 1 : 0;
    const eps = attrs?.eps as number;
    const dx = new Float32Array(x.length);
    const dw = new Float32Array(d);
    for (let r = 0; r < x.length / d; r++) {
      let ss = 0;
      let gx = 0;
      for (let j = 0; j < d; j++) {
        ss += (x[r * d + j] as number) ** 2;
        gx += (dy[r * d + j] as number) * ((w[j] as number) + off) * (x[r * d + j] as number);
      }
      const inv = 1 / Math.sqrt(ss / d + eps);
      for (let j = 0; j < d; j++) {
        const xv = x[r * d + j] as number;
        const g = dy[r * d + j] as number;
        dx[r * d + j] = inv * g * ((w[j] as number) + off) - (xv * inv ** 3 * gx) / d;
        dw[j] = (dw[j] as number) + g * xv * inv;
      }
    }
    return [
      backend.makeTensorInfo(inputs.x!.shape, 'float32', dx),
      backend.makeTensorInfo([d], 'float32', dw),
    ];
  }),
  stand(FUSED_KERNELS.swiglu, ({ inputs, backend }) => {
    const g = backend.readSync(inputs.gate!.dataId);
    const u = backend.readSync(inputs.up!.dataId);
    const y = g.map((v, i) => (v / (1 + Math.exp(-v))) * (u[i] as number));
    return backend.makeTensorInfo(inputs.gate!.shape, 'float32', y);
  }),
  stand(FUSED_KERNELS.swigluGrad, ({ inputs, backend }) => {
    const dy = backend.readSync(inputs.dy!.dataId);
    const g = backend.readSync(inputs.gate!.dataId);
    const u = backend.readSync(inputs.up!.dataId);
    const dg = new Float32Array(g.length);
    const du = new Float32Array(g.length);
    for (let i = 0; i < g.length; i++) {
      const s = 1 / (1 + Math.exp(-(g[i] as number)));
      du[i] = (dy[i] as number) * (g[i] as number) * s;
      dg[i] = (dy[i] as number) * (u[i] as number) * s * (1 + (g[i] as number) * (1 - s));
    }
    const shape = inputs.gate!.shape;
    return [
      backend.makeTensorInfo(shape, 'float32', dg),
      backend.makeTensorInfo(shape, 'float32', du),
    ];
  }),
  stand(FUSED_KERNELS.rope, ({ inputs, backend, attrs }) => {
    const x = backend.readSync(inputs.x!.dataId);
    const cos = backend.readSync(inputs.cos!.dataId);
    const sin = backend.readSync(inputs.sin!.dataId);
    const [B, H, T, hd] = inputs.x!.shape as [number, number, number, number];
    const perRow = inputs.cos!.shape[0] === B && B > 1;
    const inv = attrs?.inverse === true;
    const h = hd / 2;
    const y = new Float32Array(x.length);
    for (let b = 0; b < B; b++)
      for (let n = 0; n < H; n++)
        for (let t = 0; t < T; t++) {
          const o = ((b * H + n) * T + t) * hd;
          const c = ((perRow ? b : 0) * T + t) * hd;
          for (let j = 0; j < h; j++) {
            const x1 = x[o + j] as number;
            const x2 = x[o + j + h] as number;
            const [c1, c2] = [cos[c + j] as number, cos[c + j + h] as number];
            const [s1, s2] = [sin[c + j] as number, sin[c + j + h] as number];
            y[o + j] = inv ? x1 * c1 + x2 * s2 : x1 * c1 - x2 * s1;
            y[o + j + h] = inv ? x2 * c2 - x1 * s1 : x2 * c2 + x1 * s2;
          }
        }
    return backend.makeTensorInfo(inputs.x!.shape, 'float32', y);
  }),
];

describe('fused-kernel dispatch with kernels registered (JavaScript stand-ins on cpu)', () => {
  beforeAll(async () => {
    await useBackend('cpu');
    for (const k of STAND_INS) tf.registerKernel(k);
  });
  afterAll(() => {
    for (const k of STAND_INS) tf.unregisterKernel(k.kernelName, 'cpu');
  });

  /** Run with the stand-ins, then with dispatch off (the generic path); values of both. */
  async function both(fn: () => tf.Tensor[]): Promise<{ fused: number[][]; generic: number[][] }> {
    const fused = await Promise.all(tf.tidy(fn).map(take));
    const was = setFusedKernelsEnabled(false);
    try {
      return { fused, generic: await Promise.all(tf.tidy(fn).map(take)) };
    } finally {
      setFusedKernelsEnabled(was);
    }
  }

  it('rmsNorm calls ParaRmsNorm, its gradient ParaRmsNormGrad, with eps and unitOffset', async () => {
    const rng = new Rng(3);
    const x = tf.tensor3d(rng.normalArray(2 * 3 * 8, 0, 2), [2, 3, 8]);
    const w = tf.tensor1d(rng.normalArray(8));
    const r = tf.tensor3d(rng.normalArray(48), [2, 3, 8]);
    for (const unitOffset of [false, true]) {
      calls.clear();
      const { fused, generic } = await both(() => {
        const y = rmsNorm(x, w, 1e-5, { unitOffset });
        const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(rmsNorm(a, b, 1e-5, { unitOffset }), r)),
        )([x, w]);
        return [y, gx as tf.Tensor, gw as tf.Tensor];
      });
      expect(calls.get(FUSED_KERNELS.rmsNorm)).toBe(2);
      expect(calls.get(FUSED_KERNELS.rmsNormGrad)).toBe(1);
      for (let i = 0; i < 3; i++)
        expectClose(fused[i] as number[], generic[i] as number[], 1e-5, 1e-5);
    }
    // A non-float32 x is cast first; an int32 weight takes the generic path.
    calls.clear();
    tf.tidy(() => rmsNorm(tf.cast(x, 'int32'), w)).dispose();
    expect(calls.get(FUSED_KERNELS.rmsNorm)).toBe(1);
    tf.tidy(() => rmsNorm(x, tf.cast(w, 'int32'))).dispose();
    expect(calls.get(FUSED_KERNELS.rmsNorm)).toBe(1);
    tf.dispose([x, w, r]);
  });

  it('addRmsNorm calls ParaAddRmsNorm, its gradient ParaAddRmsNormGrad (shared by both addends)', async () => {
    const rng = new Rng(6);
    const x = tf.tensor2d(rng.normalArray(5 * 8, 0, 2), [5, 8]);
    const res = tf.tensor2d(rng.normalArray(5 * 8), [5, 8]);
    const w = tf.tensor1d(rng.normalArray(8));
    const r = tf.tensor2d(rng.normalArray(40), [5, 8]);
    calls.clear();
    const { fused, generic } = await both(() => {
      const [sum, y] = addRmsNorm(x, res, w, 1e-6, { unitOffset: true });
      const [gx, gr, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
        const [s2, y2] = addRmsNorm(a, b, c, 1e-6, { unitOffset: true });
        return tf.add(tf.sum(tf.mul(y2, r)), tf.sum(tf.square(s2)));
      })([x, res, w]);
      const [gxx] = tf.grads((a: tf.Tensor) => tf.sum(tf.mul(addRmsNorm(a, a, w)[1], r)))([x]);
      return [sum, y, gx as tf.Tensor, gr as tf.Tensor, gw as tf.Tensor, gxx as tf.Tensor];
    });
    expect(calls.get(FUSED_KERNELS.addRmsNorm)).toBe(3);
    expect(calls.get(FUSED_KERNELS.addRmsNormGrad)).toBe(2);
    for (let i = 0; i < 6; i++)
      expectClose(fused[i] as number[], generic[i] as number[], 1e-5, 1e-5);
    tf.dispose([x, res, w, r]);
  });

  it('swiglu calls ParaSwiGlu, its gradient ParaSwiGluGrad', async () => {
    const rng = new Rng(4);
    const g = tf.tensor2d(rng.normalArray(21, 0, 3), [3, 7]);
    const u = tf.tensor2d(rng.normalArray(21), [3, 7]);
    calls.clear();
    const { fused, generic } = await both(() => {
      const [dg, du] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(swiglu(a, b))))([
        g,
        u,
      ]);
      return [swiglu(g, u), dg as tf.Tensor, du as tf.Tensor];
    });
    expect(calls.get(FUSED_KERNELS.swiglu)).toBe(2);
    expect(calls.get(FUSED_KERNELS.swigluGrad)).toBe(1);
    for (let i = 0; i < 3; i++)
      expectClose(fused[i] as number[], generic[i] as number[], 1e-5, 1e-5);
    tf.dispose([g, u]);
  });

  it('applyRope calls ParaRope (inverse for the gradient), with or without sinSigned', async () => {
    const rng = new Rng(5);
    const [B, H, T, hd] = [2, 3, 4, 8];
    const { cos, sin, sinSigned } = ropeCosSin(
      [
        [0, 1, 2, 3],
        [5, 6, 7, 8],
      ],
      ropeInvFreq({ headDim: hd }),
      { signedSin: true },
    );
    const x = tf.tensor4d(rng.normalArray(B * H * T * hd), [B, H, T, hd]);
    const r = tf.tensor4d(rng.normalArray(B * H * T * hd), [B, H, T, hd]);
    calls.clear();
    const { fused, generic } = await both(() => {
      const gx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(applyRope(a, cos, sin), r)))(x);
      const [dc, ds] = tf.grads((c: tf.Tensor, s: tf.Tensor) =>
        tf.sum(tf.mul(applyRope(x, c, s), r)),
      )([cos, sin]);
      return [applyRope(x, cos, sin, sinSigned), gx, dc as tf.Tensor, ds as tf.Tensor];
    });
    expect(calls.get(FUSED_KERNELS.rope)).toBe(4); // 3 forwards, 1 inverse for dx
    for (let i = 0; i < 4; i++)
      expectClose(fused[i] as number[], generic[i] as number[], 1e-5, 1e-5);
    tf.dispose([x, r, cos, sin, sinSigned as tf.Tensor]);
  });

  it('setFusedKernelsEnabled(false) and empty inputs take the generic path; no tensors leak', async () => {
    const x = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    const w = tf.tensor1d([1, 2]);
    const start = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      tf.tidy(() => {
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(rmsNorm(a, b)))([x, w]);
      });
    }
    expect(tf.memory().numTensors).toBe(start);
    calls.clear();
    setFusedKernelsEnabled(false);
    rmsNorm(x, w).dispose();
    setFusedKernelsEnabled(true);
    tf.tidy(() => rmsNorm(tf.zeros([0, 2]), w)).dispose();
    expect(calls.size).toBe(0);
    tf.dispose([x, w]);
  });
});
