import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @para/ops from source (a relative import: the kernels' contract and the op live there).
import { FUSED_KERNELS, setFusedKernelsEnabled } from '../../ops/src/fused';
import { scaleRows, swiglu } from '../../ops/src/index';
import { dot, numericGrad } from '../../ops/test/helpers/reference';
import { blasAddon } from '../src/addon';
import { jsFused } from '../src/fused';
import { installBlasKernels, uninstallBlasKernels } from '../src/index';
import { expectAddonLoaded, expectNear, seeded, status } from './helpers';

it('the addon loads (required with PARA_BLAS_REQUIRED=1; otherwise the rest skip where it cannot)', () => {
  expectAddonLoaded();
});

/** y, dx, dscale of Σ scaleRows(x, s) ⊙ r, with the fused kernels and then the generic path. */
function scaleAndGrads(x: tf.Tensor, s: tf.Tensor, r: tf.Tensor) {
  const run = () => {
    const outs = tf.tidy(() => {
      const y = scaleRows(x, s);
      const [dx, ds] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(scaleRows(a, b), r)))(
        [x, s],
      );
      return [y, dx as tf.Tensor, ds as tf.Tensor];
    });
    const v = outs.map((t) => t.dataSync() as Float32Array);
    const shapes = outs.map((t) => t.shape);
    tf.dispose(outs);
    return { v, shapes };
  };
  const fused = run();
  const was = setFusedKernelsEnabled(false);
  try {
    return { fused, generic: run() };
  } finally {
    setFusedKernelsEnabled(was);
  }
}

/** The kernels a call runs. */
async function kernelsOf(fn: () => tf.Tensor | tf.Tensor[]): Promise<string[]> {
  const info = await tf.profile(fn);
  tf.dispose(info.result as tf.Tensor | tf.Tensor[]);
  return info.kernelNames;
}

describe.runIf(status.available)('ParaScale / ParaScaleGrad on wasm (a per-row scale)', () => {
  let startTensors = 0;
  beforeAll(async () => {
    await tf.setBackend('wasm');
    installBlasKernels();
    startTensors = tf.memory().numTensors;
  });
  afterAll(() => {
    uninstallBlasKernels();
  });

  // [B, T, F] and the scale's batch (1: one vector for every row). T = 1 (a decode step), B = 1,
  // odd F, and sizes past the thread pool's threshold (32,768 elements) on both kernels.
  const cases: Array<[number, number, number, number]> = [
    [1, 1, 1, 1],
    [1, 1, 7, 1],
    [3, 1, 5, 3],
    [2, 5, 3, 2],
    [2, 5, 3, 1],
    [4, 33, 257, 4],
    [4, 33, 257, 1],
    [8, 256, 129, 8],
    [1, 300, 688, 1],
    [3, 2, 20000, 3],
  ];
  for (const [B, T, F, sb] of cases) {
    it(`x [${B}, ${T}, ${F}], scale [${sb}, 1, ${F}]: forward and both gradients equal tf.mul's`, () => {
      const x = tf.tensor3d(seeded(B * T * F, 1 + F), [B, T, F]);
      const s = tf.tensor3d(
        seeded(sb * F, 2 + F).map((v) => 1 + v),
        [sb, 1, F],
      );
      const r = tf.tensor3d(seeded(B * T * F, 3 + F), [B, T, F]);
      const { fused, generic } = scaleAndGrads(x, s, r);
      expect(fused.shapes).toEqual([
        [B, T, F],
        [B, T, F],
        [sb, 1, F],
      ]);
      expect(fused.shapes).toEqual(generic.shapes);
      // Products are each one float32 rounding, as tf.mul: the same bits.
      expect(Array.from(fused.v[0] as Float32Array)).toEqual(
        Array.from(generic.v[0] as Float32Array),
      );
      expect(Array.from(fused.v[1] as Float32Array)).toEqual(
        Array.from(generic.v[1] as Float32Array),
      );
      // dscale sums B·T/sb products: ours in double, tfjs's in float32.
      expectNear(fused.v[2] as Float32Array, generic.v[2] as Float32Array, 1e-5, 'dscale');
      tf.dispose([x, s, r]);
    });
  }

  it('one kernel forward and one backward (no broadcast multiply, no sum)', async () => {
    const x = tf.tensor3d(seeded(2 * 3 * 4, 5), [2, 3, 4]);
    const s = tf.tensor3d(seeded(2 * 4, 6), [2, 1, 4]);
    expect(await kernelsOf(() => scaleRows(x, s))).toEqual([FUSED_KERNELS.scale]);
    const bwd = await kernelsOf(() =>
      tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(scaleRows(a, b)))([x, s]),
    );
    expect(bwd).toContain(FUSED_KERNELS.scaleGrad);
    // The loss's own Sum only: tf.mul's gradient would reduce its broadcast with another.
    expect(bwd.filter((k) => k === 'Sum')).toEqual(['Sum']);
    // swiglu's scales go through it too while a gradient is recorded (ParaSwiGluScaled has none).
    const g = tf.tensor3d(seeded(2 * 3 * 4, 7), [2, 3, 4]);
    const swBwd = await kernelsOf(() =>
      tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(swiglu(g, a, { upScale: b })))([x, s]),
    );
    expect(swBwd).toContain(FUSED_KERNELS.scale);
    expect(swBwd).toContain(FUSED_KERNELS.scaleGrad);
    const was = setFusedKernelsEnabled(false);
    try {
      expect(await kernelsOf(() => scaleRows(x, s))).toEqual(['Multiply']);
    } finally {
      setFusedKernelsEnabled(was);
    }
    tf.dispose([x, s, g]);
  });

  it('gradients match central finite differences of a float64 reference', () => {
    const [B, T, F] = [2, 3, 5];
    const xs = Float64Array.from(seeded(B * T * F, 11));
    const ss = Float64Array.from(seeded(B * F, 12), (v) => 1 + v);
    const R = Float64Array.from(seeded(B * T * F, 13));
    const ref = (x: Float64Array, s: Float64Array) =>
      Float64Array.from(x, (v, i) => v * (s[Math.floor(i / (T * F)) * F + (i % F)] as number));
    const x = tf.tensor3d(Float32Array.from(xs), [B, T, F]);
    const s = tf.tensor3d(Float32Array.from(ss), [B, 1, F]);
    const Rt = tf.tensor3d(Float32Array.from(R), [B, T, F]);
    const y = scaleRows(x, s);
    expectNear(y.dataSync(), ref(xs, ss), 1e-6, 'y');
    const [dx, ds] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(scaleRows(a, b), Rt)))([
      x,
      s,
    ]);
    expectNear(
      (dx as tf.Tensor).dataSync(),
      numericGrad((v) => dot(ref(v, ss), R), xs),
      1e-5,
      'dx',
    );
    expectNear(
      (ds as tf.Tensor).dataSync(),
      numericGrad((v) => dot(ref(xs, v), R), ss),
      1e-5,
      'dscale',
    );
    tf.dispose([x, s, Rt, y, dx as tf.Tensor, ds as tf.Tensor]);
  });

  it('rejects shapes off the contract with a typed error (op) or an Error naming the kernel', () => {
    const x = tf.zeros([2, 3, 4]);
    const [full, wrongB, flat, wrongF, dy5, ints] = [
      tf.zeros([2, 3, 4]),
      tf.zeros([3, 1, 4]),
      tf.zeros([2, 4]),
      tf.zeros([2, 1, 5]),
      tf.zeros([2, 3, 5]),
      tf.zeros([2, 3, 4], 'int32'),
    ];
    const s = tf.zeros([2, 1, 4]);
    expect(() => scaleRows(x, full)).toThrow(/scale must broadcast/);
    expect(() => scaleRows(x, wrongB)).toThrow(/\[2, 1, 4\]/);
    expect(() => scaleRows(flat, s)).toThrow(/scale/);
    expect(() => tf.engine().runKernel(FUSED_KERNELS.scale, { x, scale: wrongF })).toThrow(
      /ParaScale: scale \[2,1,5\]/,
    );
    expect(() => tf.engine().runKernel(FUSED_KERNELS.scaleGrad, { dy: dy5, x, scale: s })).toThrow(
      /ParaScaleGrad: dy/,
    );
    expect(() => tf.engine().runKernel(FUSED_KERNELS.scale, { x: ints, scale: s })).toThrow(
      /float32/,
    );
    tf.dispose([x, full, wrongB, flat, wrongF, dy5, ints, s]);
  });

  it('the addon checks bounds, sizes and overlaps before touching the heap', () => {
    const addon = blasAddon() as Required<NonNullable<ReturnType<typeof blasAddon>>>;
    const heap = new ArrayBuffer(1024);
    const f = new Float32Array(heap);
    f.fill(2);
    // x [2, 2, 4] at 0, scale [1, 1, 4] at 64, y at 128: fine.
    addon.scaleHeap(heap, Float64Array.of(0, 64, 128, 2, 2, 4, 1));
    expect(f[32]).toBe(4);
    f.fill(2);
    const bad: Array<[number[], RegExp | typeof RangeError]> = [
      [[0, 64, 1000, 2, 2, 4, 1], RangeError], // y past the end
      [[2, 64, 128, 2, 2, 4, 1], RangeError], // unaligned
      [[0, 64, 32, 2, 2, 4, 1], /overlaps/],
      [[0, 64, 128, 2, 2, 4, 3], /scaleBatch/],
      [[0, 64, 128, 2 ** 30, 2 ** 30, 4, 1], RangeError],
      [[0, 64, 128, 2, -1, 4, 1], /non-negative/],
    ];
    for (const [p, err] of bad)
      expect(() => addon.scaleHeap(heap, Float64Array.from(p)), String(p)).toThrow(err);
    // dy 0, x 64, scale 128, dx 192, dscale 256: fine; then dscale over dx.
    addon.scaleGradHeap(heap, Float64Array.of(0, 64, 128, 192, 256, 2, 2, 4, 1));
    expect(f[48]).toBe(4); // dx = 2 · 2
    expect(f[64]).toBe(16); // dscale = Σ over 4 rows of 2 · 2
    f.fill(2);
    expect(() =>
      addon.scaleGradHeap(heap, Float64Array.of(0, 64, 128, 192, 200, 2, 2, 4, 1)),
    ).toThrow(/overlaps/);
    expect(() =>
      addon.scaleGradHeap(heap, Float64Array.of(0, 64, 128, 192, 256, 2, 2, 4, 2)),
    ).not.toThrow(); // scaleBatch = B
    f.fill(2);
    expect(() => addon.scaleGradHeap(heap, Float64Array.of(0, 64, 128))).toThrow(TypeError);
    expect(f.every((v) => v === 2)).toBe(true); // nothing was written by the rejected calls
  });

  it('the JavaScript fallback (for a shared heap) computes what the native kernels compute', () => {
    const addon = blasAddon() as Required<NonNullable<ReturnType<typeof blasAddon>>>;
    for (const [B, T, F, sb] of [
      [3, 7, 33, 3],
      [3, 7, 33, 1],
    ] as const) {
      const n = B * T * F;
      const ns = sb * F;
      // dy, x, scale, then the native outputs dx/ds, then the fallback's.
      const at = [0, n, 2 * n, 2 * n + ns, 3 * n + ns, 3 * n + 2 * ns, 4 * n + 2 * ns];
      const total = 4 * n + 3 * ns;
      const native = new Float32Array(total);
      native.set(seeded(n, 21), 0);
      native.set(seeded(n, 22), n);
      native.set(seeded(ns, 23), 2 * n);
      const js = native.slice();
      const [dy, x, sc, dx, ds] = at as [number, number, number, number, number];
      addon.scaleHeap(native.buffer, Float64Array.of(4 * x, 4 * sc, 4 * dx, B, T, F, sb));
      jsFused.scale(js, x, sc, dx, { B, T, F, scaleBatch: sb });
      expect(Array.from(js.subarray(dx, dx + n))).toEqual(Array.from(native.subarray(dx, dx + n)));
      addon.scaleGradHeap(
        native.buffer,
        Float64Array.of(4 * dy, 4 * x, 4 * sc, 4 * dx, 4 * ds, B, T, F, sb),
      );
      jsFused.scaleGrad(js, { dy, x, scale: sc, dx, ds }, { B, T, F, scaleBatch: sb });
      expect(Array.from(js)).toEqual(Array.from(native));
    }
  });

  it('leaks no tensors over a loop of forwards and gradients', () => {
    const x = tf.tensor3d(seeded(4 * 9 * 300, 31), [4, 9, 300]);
    const s = tf.tensor3d(seeded(4 * 300, 32), [4, 1, 300]);
    const step = () =>
      tf.tidy(() => {
        const [a, b] = tf.grads((u: tf.Tensor, v: tf.Tensor) => tf.sum(scaleRows(u, v)))([x, s]);
        return tf.add(tf.sum(a as tf.Tensor), tf.sum(b as tf.Tensor));
      });
    step().dispose();
    const before = tf.memory().numTensors;
    const ids = tf.engine().backend.numDataIds();
    for (let i = 0; i < 20; i++) step().dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.engine().backend.numDataIds()).toBe(ids);
    tf.dispose([x, s]);
    expect(tf.memory().numTensors).toBe(startTensors);
  });
});
