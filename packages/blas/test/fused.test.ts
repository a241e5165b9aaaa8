import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @para/ops from source (a relative import: @para/ops is not a dependency of this package; the
// kernels' contract and the ops that dispatch to them live there).
import { FUSED_KERNELS, setFusedKernelsEnabled } from '../../ops/src/fused';
import { applyRope, rmsNorm, ropeCosSin, ropeInvFreq, swiglu } from '../../ops/src/index';
import { addRmsNorm } from '../../ops/src/rmsnorm';
import { dot, numericGrad, refRmsNorm, refSwiglu } from '../../ops/test/helpers/reference';
import { blasAddon } from '../src/addon';
import { jsFused } from '../src/fused';
import {
  FUSED_KERNEL_NAMES,
  fusedKernelsInstalled,
  fusedKernelsProblem,
  fusedThreads,
  installBlasKernels,
  installFusedKernels,
  uninstallBlasKernels,
  uninstallFusedKernels,
} from '../src/index';
import { expectAddonLoaded, expectNear, seeded, status } from './helpers';

it('the addon loads (required with PARA_BLAS_REQUIRED=1; otherwise the rest skip where it cannot)', () => {
  expectAddonLoaded();
});

/** Values of fn's outputs with the fused kernels dispatched, then with the generic path. */
function fusedAndGeneric(fn: () => tf.Tensor[]): {
  fused: Float32Array[];
  generic: Float32Array[];
} {
  const run = () => {
    const outs = tf.tidy(fn);
    const v = outs.map((t) => t.dataSync() as Float32Array);
    tf.dispose(outs);
    return v;
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
  const info = await tf.profile(() => {
    const r = fn();
    return r;
  });
  tf.dispose(info.result as tf.Tensor | tf.Tensor[]);
  return info.kernelNames;
}

const scaled = (n: number, seed: number, s: number) => seeded(n, seed).map((v) => v * s);

describe.runIf(status.available)('fused native kernels on wasm', () => {
  let startTensors = 0;

  beforeAll(async () => {
    await tf.setBackend('wasm');
    installBlasKernels();
    startTensors = tf.memory().numTensors;
  });

  afterAll(() => {
    uninstallBlasKernels();
  });

  it('are registered for wasm by installBlasKernels, with a thread pool', () => {
    expect(fusedKernelsProblem()).toBeUndefined();
    expect(fusedKernelsInstalled()).toBe(true);
    for (const name of FUSED_KERNEL_NAMES) expect(tf.getKernel(name, 'wasm')).toBeDefined();
    // Every kernel we register is in the contract (which also lists forward-only kernels other
    // backends implement, e.g. webgpu's ParaRopeKvWrite).
    const contract: string[] = Object.values(FUSED_KERNELS);
    for (const name of FUSED_KERNEL_NAMES) expect(contract).toContain(name);
    const threads = fusedThreads() as number;
    expect(threads).toBeGreaterThanOrEqual(1);
    expect(threads).toBeLessThanOrEqual(Math.max(1, status.threads ?? 1, 8));
  });

  it('the ops run them (one kernel forward, one backward) and the generic path when disabled', async () => {
    const x = tf.tensor2d(seeded(12, 1), [3, 4]);
    const w = tf.tensor1d(seeded(4, 2));
    const fwd = await kernelsOf(() => rmsNorm(x, w));
    expect(fwd).toEqual(['ParaRmsNorm']);
    const bwd = await kernelsOf(() =>
      tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(rmsNorm(a, b)))([x, w]),
    );
    expect(bwd).toContain('ParaRmsNormGrad');
    expect(await kernelsOf(() => swiglu(x, x))).toEqual(['ParaSwiGlu']);
    const was = setFusedKernelsEnabled(false);
    const generic = await kernelsOf(() => rmsNorm(x, w));
    setFusedKernelsEnabled(was);
    expect(generic).not.toContain('ParaRmsNorm');
    expect(generic.length).toBeGreaterThan(3);
    tf.dispose([x, w]);
  });

  // rows × d: d = 1, 3, 257, rows = 1, 7, and sizes past the single-thread threshold (32768).
  const normShapes: number[][] = [
    [1, 1],
    [7, 1],
    [1, 3],
    [7, 3],
    [1, 257],
    [7, 257],
    [2, 3, 257],
    [300, 257],
    [4, 64, 256],
    [5000, 3],
  ];
  for (const shape of normShapes) {
    for (const unitOffset of [false, true]) {
      it(`rmsNorm [${shape}]${unitOffset ? ' unitOffset' : ''}: forward and gradients equal the generic path`, () => {
        const n = shape.reduce((a, b) => a * b, 1);
        const d = shape[shape.length - 1] as number;
        const eps = unitOffset ? 1e-6 : 1e-5;
        const x = tf.tensor(scaled(n, 3 + d, 3), shape);
        const w = tf.tensor1d(scaled(d, 5 + d, 1.5));
        const r = tf.tensor(seeded(n, 7 + d), shape);
        const { fused, generic } = fusedAndGeneric(() => {
          const y = rmsNorm(x, w, eps, { unitOffset });
          const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
            tf.sum(tf.mul(rmsNorm(a, b, eps, { unitOffset }), r)),
          )([x, w]);
          return [y, gx as tf.Tensor, gw as tf.Tensor];
        });
        expectNear(fused[0] as Float32Array, generic[0] as Float32Array, 1e-5, 'y');
        expectNear(fused[1] as Float32Array, generic[1] as Float32Array, 1e-5, 'dx');
        // dweight sums over every row: the generic path's float32 sum drifts with the row count.
        expectNear(
          fused[2] as Float32Array,
          generic[2] as Float32Array,
          1e-5 * Math.max(1, Math.sqrt(n / d) / 4),
          'dweight',
        );
        tf.dispose([x, w, r]);
      });
    }
  }

  for (const shape of [
    [1, 1],
    [7, 3],
    [2, 3, 257],
    [300, 257],
  ]) {
    it(`addRmsNorm [${shape}]: sum, normed and the gradients of x, residual and weight equal the generic path`, async () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const d = shape[shape.length - 1] as number;
      const x = tf.tensor(scaled(n, 101 + d, 2), shape);
      const res = tf.tensor(scaled(n, 102 + d, 2), shape);
      const w = tf.tensor1d(scaled(d, 103 + d, 1));
      const r1 = tf.tensor(seeded(n, 104 + d), shape);
      const r2 = tf.tensor(seeded(n, 105 + d), shape);
      for (const unitOffset of [false, true]) {
        const { fused, generic } = fusedAndGeneric(() => {
          const [sum, y] = addRmsNorm(x, res, w, 1e-5, { unitOffset });
          // Both outputs feed the loss (as in a decoder layer: the sum is the next residual).
          const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
            const [s2, y2] = addRmsNorm(a, b, c, 1e-5, { unitOffset });
            return tf.add(tf.sum(tf.mul(s2, r1)), tf.sum(tf.mul(y2, r2)));
          };
          const [gx, gr, gw] = tf.grads(f)([x, res, w]);
          // Only the normed output used, and x as both addends.
          const [gxx] = tf.grads((a: tf.Tensor) => tf.sum(tf.mul(addRmsNorm(a, a, w)[1], r2)))([x]);
          return [sum, y, gx as tf.Tensor, gr as tf.Tensor, gw as tf.Tensor, gxx as tf.Tensor];
        });
        for (const [i, label] of ['sum', 'y', 'dx', 'dresidual', 'dweight', 'dx (x + x)'].entries())
          expectNear(
            fused[i] as Float32Array,
            generic[i] as Float32Array,
            label === 'dweight' ? 1e-5 * Math.max(1, Math.sqrt(n / d) / 4) : 1e-5,
            `${label}${unitOffset ? ' unitOffset' : ''}`,
          );
      }
      expect(await kernelsOf(() => addRmsNorm(x, res, w))).toEqual(['ParaAddRmsNorm']);
      tf.dispose([x, res, w, r1, r2]);
    });
  }

  it('rmsNorm gradients match central finite differences of a float64 reference', () => {
    const [N, d] = [5, 9];
    const xs = Array.from(scaled(N * d, 11, 2));
    const ws = Array.from(scaled(d, 12, 1));
    const R = Array.from(seeded(N * d, 13));
    const eps = 1e-6;
    const x = tf.tensor2d(xs, [N, d]);
    const w = tf.tensor1d(ws);
    const Rt = tf.tensor2d(R, [N, d]);
    for (const unitOffset of [false, true]) {
      const wEff = unitOffset ? ws.map((v) => 1 + v) : ws;
      const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(rmsNorm(a, b, eps, { unitOffset }), Rt)),
      )([x, w]);
      const numX = numericGrad((v) => dot(refRmsNorm(v, wEff, d, eps), R), xs);
      const numW = numericGrad(
        (v) => dot(refRmsNorm(xs, unitOffset ? v.map((q) => 1 + q) : v, d, eps), R),
        ws,
      );
      expectNear((gx as tf.Tensor).dataSync(), numX, 1e-4, 'dx');
      expectNear((gw as tf.Tensor).dataSync(), numW, 1e-4, 'dw');
      tf.dispose([gx as tf.Tensor, gw as tf.Tensor]);
    }
    // Forward against the float64 reference too.
    const y = rmsNorm(x, w, eps);
    expectNear(y.dataSync(), refRmsNorm(xs, ws, d, eps), 2e-6, 'y vs reference');
    y.dispose();
    tf.dispose([x, w, Rt]);
  });

  it('rmsNorm: a gradient kernel consistent with its forward kernel (float32 finite differences)', () => {
    const [N, d] = [3, 5];
    const xs = scaled(N * d, 21, 1);
    const R = seeded(N * d, 22);
    const w = tf.tensor1d(scaled(d, 23, 1));
    const Rt = tf.tensor2d(R, [N, d]);
    const loss = (v: Float32Array) =>
      tf.tidy(() => tf.sum(tf.mul(rmsNorm(tf.tensor2d(v, [N, d]), w), Rt)).dataSync()[0] as number);
    const g = tf.tidy(() =>
      tf
        .grad((a: tf.Tensor) => tf.sum(tf.mul(rmsNorm(a, w), Rt)))(tf.tensor2d(xs, [N, d]))
        .dataSync(),
    );
    const h = 1e-2;
    for (let i = 0; i < xs.length; i++) {
      const p = Float32Array.from(xs);
      const m = Float32Array.from(xs);
      p[i] = (p[i] as number) + h;
      m[i] = (m[i] as number) - h;
      expect(Math.abs((loss(p) - loss(m)) / (2 * h) - (g[i] as number))).toBeLessThan(2e-3);
    }
    tf.dispose([w, Rt]);
  });

  const gluShapes: number[][] = [[1], [3], [257], [7, 257], [1, 7, 3], [64, 1024], [3, 12345]];
  for (const shape of gluShapes) {
    it(`swiglu [${shape}]: forward and gradients equal the generic path`, () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const g = tf.tensor(scaled(n, 31 + n, 6), shape);
      const u = tf.tensor(scaled(n, 32 + n, 2), shape);
      const r = tf.tensor(seeded(n, 33 + n), shape);
      const { fused, generic } = fusedAndGeneric(() => {
        const y = swiglu(g, u);
        const [dg, du] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(swiglu(a, b), r)))([
          g,
          u,
        ]);
        return [y, dg as tf.Tensor, du as tf.Tensor];
      });
      for (const [i, label] of ['y', 'dgate', 'dup'].entries())
        expectNear(fused[i] as Float32Array, generic[i] as Float32Array, 1e-5, label);
      tf.dispose([g, u, r]);
    });
  }

  it('swiglu at extreme and non-finite gates agrees with the generic path (NaN where it is NaN)', () => {
    const gs = [
      -1e30,
      -200,
      -88.5,
      -87,
      -30,
      -1e-8,
      0,
      1e-8,
      30,
      87,
      88.5,
      200,
      1e30,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      Number.NaN,
    ];
    const g = tf.tensor1d(gs);
    const u = tf.tensor1d(gs.map((_, i) => (i % 3) - 1.25));
    const { fused, generic } = fusedAndGeneric(() => {
      const [dg, du] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(swiglu(a, b)))([g, u]);
      return [swiglu(g, u), dg as tf.Tensor, du as tf.Tensor];
    });
    expectNear(fused[0] as Float32Array, generic[0] as Float32Array, 1e-5, 'y');
    // Gradients: equal where both are finite (the generic path's own NaN/inf at ±inf gates
    // comes from inf·0 in its chain of ops).
    for (const i of [1, 2]) {
      const f = fused[i] as Float32Array;
      const e = generic[i] as Float32Array;
      const keep = [...e.keys()].filter(
        (k) => Number.isFinite(e[k]) && Math.abs(gs[k] as number) < 1e29,
      );
      expectNear(
        keep.map((k) => f[k] as number),
        keep.map((k) => e[k] as number),
        1e-5,
        `grad ${i}`,
      );
    }
    tf.dispose([g, u]);
  });

  it('swiglu forward and gradients match a float64 reference and finite differences', () => {
    const n = 40;
    const gs = Array.from(scaled(n, 41, 5));
    const us = Array.from(scaled(n, 42, 2));
    const R = Array.from(seeded(n, 43));
    const g = tf.tensor1d(gs);
    const u = tf.tensor1d(us);
    const Rt = tf.tensor1d(R);
    const y = swiglu(g, u);
    expectNear(y.dataSync(), refSwiglu(gs, us), 1e-6, 'y');
    y.dispose();
    const [dg, du] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(swiglu(a, b), Rt)))([
      g,
      u,
    ]);
    expectNear(
      (dg as tf.Tensor).dataSync(),
      numericGrad((v) => dot(refSwiglu(v, us), R), gs),
      1e-5,
      'dgate',
    );
    expectNear(
      (du as tf.Tensor).dataSync(),
      numericGrad((v) => dot(refSwiglu(gs, v), R), us),
      1e-5,
      'dup',
    );
    tf.dispose([g, u, Rt, dg as tf.Tensor, du as tf.Tensor]);
  });

  // [B, H, T, hd] with tables for B rows or broadcast over them.
  const ropeShapes: [number, number, number, number][] = [
    [1, 1, 1, 2],
    [2, 3, 7, 8],
    [1, 4, 1, 64],
    [3, 5, 37, 64],
    [2, 8, 64, 128],
  ];
  for (const shape of ropeShapes) {
    for (const perRow of [false, true]) {
      it(`applyRope [${shape}] tables ${perRow ? 'per row' : 'broadcast'}: forward and gradient equal the generic path`, () => {
        const [B, H, T, hd] = shape;
        const positions = Array.from({ length: perRow ? B : 1 }, (_, b) =>
          Array.from({ length: T }, (_, t) => t + 3 * b),
        );
        const { cos, sin, sinSigned } = ropeCosSin(
          positions,
          ropeInvFreq({ headDim: hd, theta: 10000 }),
          {
            signedSin: true,
          },
        );
        const n = B * H * T * hd;
        const x = tf.tensor4d(scaled(n, 51 + n, 2), shape);
        const r = tf.tensor4d(seeded(n, 52 + n), shape);
        const { fused, generic } = fusedAndGeneric(() => {
          const y = applyRope(x, cos, sin);
          const y2 = applyRope(x, cos, sin, sinSigned);
          const gx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(applyRope(a, cos, sin), r)))(x);
          return [y, y2, gx];
        });
        for (const [i, label] of ['y', 'y (sinSigned)', 'dx'].entries())
          expectNear(fused[i] as Float32Array, generic[i] as Float32Array, 1e-5, label);
        tf.dispose([x, r, cos, sin, sinSigned as tf.Tensor]);
      });
    }
  }

  it('ParaRope: gradients w.r.t. cos and sin (generic ops), and its inverse undoes the rotation', () => {
    const [B, H, T, hd] = [2, 3, 5, 8];
    const { cos, sin } = ropeCosSin(
      [
        [0, 1, 2, 3, 4],
        [7, 8, 9, 10, 11],
      ],
      ropeInvFreq({ headDim: hd }),
    );
    const x = tf.tensor4d(scaled(B * H * T * hd, 61, 1), [B, H, T, hd]);
    const r = tf.tensor4d(seeded(B * H * T * hd, 62), [B, H, T, hd]);
    const f = (c: tf.Tensor, s: tf.Tensor) => tf.sum(tf.mul(applyRope(x, c, s), r));
    const { fused, generic } = fusedAndGeneric(() => tf.grads(f)([cos, sin]));
    expectNear(fused[0] as Float32Array, generic[0] as Float32Array, 1e-5, 'dcos');
    expectNear(fused[1] as Float32Array, generic[1] as Float32Array, 1e-5, 'dsin');
    const back = tf.tidy(() => {
      const y = tf.engine().runKernel('ParaRope', { x, cos, sin }, { inverse: false }) as tf.Tensor;
      return tf.engine().runKernel('ParaRope', { x: y, cos, sin }, { inverse: true }) as tf.Tensor;
    });
    expectNear(back.dataSync(), x.dataSync(), 1e-6, 'inverse(rope(x))');
    tf.dispose([x, r, cos, sin, back]);
  });

  it('the kernels reject inputs that break the contract (dtype, shapes)', () => {
    const x = tf.tensor2d(seeded(6, 1), [2, 3]);
    const xi = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3], 'int32');
    const w4 = tf.tensor1d(seeded(4, 2));
    expect(() =>
      tf.engine().runKernel('ParaRmsNorm', { x: xi, weight: w4 }, { eps: 1e-6 }),
    ).toThrow(/float32/);
    expect(() => tf.engine().runKernel('ParaRmsNorm', { x, weight: w4 }, { eps: 1e-6 })).toThrow(
      /does not match/,
    );
    expect(() => tf.engine().runKernel('ParaSwiGlu', { gate: x, up: w4 })).toThrow(
      /does not match/,
    );
    expect(() => tf.engine().runKernel('ParaRope', { x, cos: x, sin: x })).toThrow(
      /expected \[B, H, T, hd\]/,
    );
    tf.dispose([x, xi, w4]);
  });

  it('results stay right when the wasm heap grows inside makeOutput (two outputs)', () => {
    const backend = tf.engine().backend as unknown as { wasm: { HEAPU8: Uint8Array } };
    const before = backend.wasm.HEAPU8.buffer.byteLength;
    const d = 64;
    const rows = Math.ceil((before * 0.6) / 4 / d); // dx alone is 60% of the heap
    const x = tf.tensor2d(scaled(rows * d, 71, 2), [rows, d]);
    const w = tf.tensor1d(scaled(d, 72, 1));
    const dy = tf.tensor2d(seeded(rows * d, 73), [rows, d]);
    const heapBefore = backend.wasm.HEAPU8.buffer;
    const [dx, dw] = tf
      .engine()
      .runKernel('ParaRmsNormGrad', { dy, x, weight: w }, { eps: 1e-6 }) as tf.Tensor[];
    expect(heapBefore.byteLength).toBe(0); // detached: the heap grew
    const was = setFusedKernelsEnabled(false);
    const [ex, ew] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(rmsNorm(a, b), dy)))([
      x,
      w,
    ]);
    setFusedKernelsEnabled(was);
    expectNear((dx as tf.Tensor).dataSync(), (ex as tf.Tensor).dataSync(), 1e-5, 'dx');
    // dweight sums `rows` (tens of thousands) rows: against a float64 sum of the same terms
    // (ours accumulates in double; the generic path's float32 sum is looser).
    const xv = x.dataSync();
    const gv = dy.dataSync();
    const exact = new Float64Array(d);
    for (let i = 0; i < rows; i++) {
      let ss = 0;
      for (let j = 0; j < d; j++) ss += (xv[i * d + j] as number) ** 2;
      const inv = 1 / Math.sqrt(ss / d + 1e-6);
      for (let j = 0; j < d; j++)
        exact[j] =
          (exact[j] as number) + (gv[i * d + j] as number) * (xv[i * d + j] as number) * inv;
    }
    expectNear((dw as tf.Tensor).dataSync(), exact, 1e-5, 'dw vs float64');
    expectNear((ew as tf.Tensor).dataSync(), exact, 1e-3, 'generic dw vs float64');
    tf.dispose([x, w, dy, dx as tf.Tensor, dw as tf.Tensor, ex as tf.Tensor, ew as tf.Tensor]);
  });

  it('tensor counts stay flat over a loop of fused forwards and gradients', () => {
    const x = tf.tensor3d(scaled(2 * 5 * 16, 81, 1), [2, 5, 16]);
    const w = tf.tensor1d(scaled(16, 82, 1));
    const { cos, sin } = ropeCosSin([[0, 1, 2, 3, 4]], ropeInvFreq({ headDim: 16 }));
    const step = () =>
      tf.tidy(() => {
        const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => {
          const [, h0] = addRmsNorm(a, a, b, 1e-6);
          const h = rmsNorm(h0, b, 1e-6, { unitOffset: true });
          const s = swiglu(h, a);
          const q = applyRope(tf.reshape(s, [2, 1, 5, 16]), cos, sin);
          return tf.sum(q);
        })([x, w]);
        return tf.add(tf.sum(gx as tf.Tensor), tf.sum(gw as tf.Tensor));
      });
    step().dispose();
    const before = tf.memory().numTensors;
    const ids = tf.engine().backend.numDataIds();
    for (let i = 0; i < 20; i++) step().dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.engine().backend.numDataIds()).toBe(ids);
    tf.dispose([x, w, cos, sin]);
  });

  it('the addon checks bounds and overlaps before touching the heap', () => {
    const addon = blasAddon() as Required<NonNullable<ReturnType<typeof blasAddon>>>;
    const heap = new ArrayBuffer(1024);
    const f = new Float32Array(heap);
    f.fill(7);
    // x [4, 8] at 0, w [8] at 128, y at 160: fine.
    addon.rmsNormHeap(heap, Float64Array.of(0, 128, 160, 4, 8, 1e-6, 0));
    expect(f[40]).toBeCloseTo((7 / Math.sqrt(49 + 1e-6)) * 7, 4);
    f.fill(7);
    expect(() => addon.rmsNormHeap(heap, Float64Array.of(0, 128, 1000, 4, 8, 1e-6, 0))).toThrow(
      RangeError,
    );
    expect(() => addon.rmsNormHeap(heap, Float64Array.of(2, 128, 160, 4, 8, 1e-6, 0))).toThrow(
      RangeError,
    );
    expect(() => addon.rmsNormHeap(heap, Float64Array.of(0, 128, 64, 4, 8, 1e-6, 0))).toThrow(
      /overlaps/,
    );
    expect(() => addon.rmsNormHeap(heap, Float64Array.of(0, 128, 160, 4, 8, -1, 0))).toThrow(/eps/);
    expect(() =>
      addon.rmsNormHeap(heap, Float64Array.of(0, 128, 160, 2 ** 40, 2 ** 40, 1e-6, 0)),
    ).toThrow(RangeError);
    expect(() =>
      addon.rmsNormGradHeap(heap, Float64Array.of(0, 128, 160, 320, 320, 4, 8, 1e-6, 0)),
    ).toThrow(/overlaps/);
    expect(() =>
      addon.addRmsNormHeap(heap, Float64Array.of(0, 32, 64, 96, 96, 1, 8, 1e-6, 0)),
    ).toThrow(/overlaps/);
    expect(() =>
      addon.addRmsNormGradHeap(heap, Float64Array.of(0, 32, 64, 96, 128, 128, 1, 8, 1e-6, 0)),
    ).toThrow(/overlaps/);
    expect(() =>
      addon.addRmsNormHeap(heap, Float64Array.of(0, 32, 64, 96, 1020, 1, 8, 1e-6, 0)),
    ).toThrow(RangeError);
    expect(() => addon.swigluHeap(heap, Float64Array.of(0, 128, 256, 65))).toThrow(RangeError);
    expect(() => addon.swigluGradHeap(heap, Float64Array.of(0, 64, 128, 192, 200, 16))).toThrow(
      /overlaps/,
    );
    expect(() => addon.ropeHeap(heap, Float64Array.of(0, 64, 128, 192, 1, 1, 2, 3, 1, 0))).toThrow(
      /even/,
    );
    expect(() => addon.ropeHeap(heap, Float64Array.of(0, 64, 128, 192, 2, 1, 2, 4, 3, 0))).toThrow(
      /cosBatch/,
    );
    expect(() => addon.swigluHeap(heap, new Float64Array(2))).toThrow(TypeError);
    expect(() =>
      addon.swigluHeap(new Float32Array(4) as unknown as ArrayBuffer, Float64Array.of(0, 0, 0, 0)),
    ).toThrow(TypeError);
    expect(f.every((v) => v === 7)).toBe(true); // nothing was written by the rejected calls
  });

  it('the JavaScript fallback (for a shared heap) computes what the native kernels compute', () => {
    const addon = blasAddon() as Required<NonNullable<ReturnType<typeof blasAddon>>>;
    const [rows, d] = [9, 257];
    const n = rows * d;
    // Layout (elements): x/g at 0, w/u at n, dy at 2n, out1 at 3n, out2 at 4n, a weight at 5n.
    const fill = () => {
      const m = new Float32Array(6 * n + 16);
      m.set(scaled(n, 91, 3), 0);
      m.set(scaled(n, 92, 1), n);
      m.set(seeded(n, 93), 2 * n);
      m.set(scaled(n, 94, 1), 5 * n);
      return m;
    };
    const cases: [string, (m: Float32Array) => void, (h: ArrayBuffer) => void][] = [
      [
        'rmsNorm',
        (m) => jsFused.rmsNorm(m, 0, n, 3 * n, rows, d, 1e-6, 1),
        (h) => addon.rmsNormHeap(h, Float64Array.of(0, 4 * n, 12 * n, rows, d, 1e-6, 1)),
      ],
      [
        'rmsNormGrad',
        (m) => jsFused.rmsNormGrad(m, 2 * n, 0, n, 3 * n, 4 * n, rows, d, 1e-6, 0),
        (h) =>
          addon.rmsNormGradHeap(
            h,
            Float64Array.of(8 * n, 0, 4 * n, 12 * n, 16 * n, rows, d, 1e-6, 0),
          ),
      ],
      [
        'addRmsNorm',
        (m) => jsFused.addRmsNorm(m, 0, n, 5 * n, 3 * n, 4 * n, rows, d, 1e-6, 1),
        (h) =>
          addon.addRmsNormHeap(
            h,
            Float64Array.of(0, 4 * n, 20 * n, 12 * n, 16 * n, rows, d, 1e-6, 1),
          ),
      ],
      [
        'addRmsNormGrad',
        (m) => jsFused.rmsNormGrad(m, 2 * n, 0, 5 * n, 3 * n, 4 * n, rows, d, 1e-6, 0, n),
        (h) =>
          addon.addRmsNormGradHeap(
            h,
            Float64Array.of(8 * n, 4 * n, 0, 20 * n, 12 * n, 16 * n, rows, d, 1e-6, 0),
          ),
      ],
      [
        'swiglu',
        (m) => jsFused.swiglu(m, 0, n, 3 * n, n),
        (h) => addon.swigluHeap(h, Float64Array.of(0, 4 * n, 12 * n, n)),
      ],
      [
        'swigluGrad',
        (m) => jsFused.swigluGrad(m, 2 * n, 0, n, 3 * n, 4 * n, n),
        (h) => addon.swigluGradHeap(h, Float64Array.of(8 * n, 0, 4 * n, 12 * n, 16 * n, n)),
      ],
    ];
    for (const [label, js, native] of cases) {
      const a = fill();
      const b = fill();
      js(a);
      native(b.buffer);
      expectNear(a.subarray(3 * n), b.subarray(3 * n), 2e-6, label);
    }
    for (const inverse of [false, true]) {
      const dims = { B: 3, H: 1, T: 3, hd: 257 - 1, cosBatch: 3 };
      const m = dims.B * dims.T * dims.hd;
      const a = fill();
      const b = fill();
      jsFused.rope(a, 0, n, 2 * n, 3 * n, dims, inverse);
      addon.ropeHeap(
        b.buffer,
        Float64Array.of(
          0,
          4 * n,
          8 * n,
          12 * n,
          dims.B,
          dims.H,
          dims.T,
          dims.hd,
          dims.B,
          inverse ? 1 : 0,
        ),
      );
      expectNear(
        a.subarray(3 * n, 3 * n + m),
        b.subarray(3 * n, 3 * n + m),
        1e-6,
        `rope inverse=${inverse}`,
      );
    }
  });

  it('PARA_FUSED=0: installFusedKernels installs nothing and the ops take the generic path', async () => {
    uninstallFusedKernels();
    process.env.PARA_FUSED = '0';
    try {
      expect(fusedKernelsProblem()).toMatch(/PARA_FUSED=0/);
      expect(installFusedKernels()).toBe(false);
      for (const name of FUSED_KERNEL_NAMES) expect(tf.getKernel(name, 'wasm')).toBeUndefined();
      const x = tf.tensor2d(seeded(8, 1), [2, 4]);
      const w = tf.tensor1d(seeded(4, 2));
      expect(await kernelsOf(() => rmsNorm(x, w))).not.toContain('ParaRmsNorm');
      tf.dispose([x, w]);
    } finally {
      delete process.env.PARA_FUSED;
    }
    expect(installFusedKernels()).toBe(true);
    expect(fusedKernelsInstalled()).toBe(true);
  });

  it('uninstallBlasKernels removes them too; installBlasKernels brings them back', () => {
    uninstallBlasKernels();
    for (const name of FUSED_KERNEL_NAMES) expect(tf.getKernel(name, 'wasm')).toBeUndefined();
    expect(fusedKernelsInstalled()).toBe(false);
    installBlasKernels();
    expect(fusedKernelsInstalled()).toBe(true);
  });

  it('leaks no tensors', () => {
    expect(tf.memory().numTensors).toBe(startTensors);
  });
});
