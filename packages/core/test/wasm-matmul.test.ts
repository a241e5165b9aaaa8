import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../src/backend/gradients';
import {
  installWasmMatmulFix,
  uninstallWasmMatmulFix,
  wasmMatmulFixInstalled,
} from '../src/backend/wasm-matmul';
import { useBackend, values } from './helpers/backends';

/** Deterministic values in [-1, 1). */
function data(shape: number[], seed: number): Float32Array {
  const n = shape.reduce((x, y) => x * y, 1);
  const v = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2 ** 31 - 1;
  }
  return v;
}

/** Equal to float32 rounding: |x - y| <= 2e-5 * max(1, max |expected|). */
function expectClose(actual: number[], expected: number[], what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const scale = Math.max(1, ...expected.map(Math.abs));
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs((actual[i] as number) - (expected[i] as number));
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  expect(worst, `${what}: worst at ${at}: ${actual[at]} vs ${expected[at]}`).toBeLessThanOrEqual(
    2e-5 * scale,
  );
}

interface Result {
  shape: number[];
  values: number[];
}

/** Run `f` on freshly made tensors and read the result; disposes everything it made. */
async function compute(f: () => tf.Tensor): Promise<Result> {
  const before = tf.memory().numTensors;
  const r = tf.tidy(f);
  const out = { shape: r.shape, values: await values(r) };
  r.dispose();
  expect(tf.memory().numTensors).toBe(before);
  return out;
}

/** `f` with the original wasm kernels (the fix uninstalled for the call); the error if they throw. */
async function withOriginal(f: () => tf.Tensor): Promise<Result | Error> {
  uninstallWasmMatmulFix();
  try {
    return await compute(f);
  } catch (e) {
    return e as Error;
  } finally {
    installWasmMatmulFix();
  }
}

async function onCpu(f: () => tf.Tensor): Promise<Result> {
  await useBackend('cpu');
  try {
    return await compute(f);
  } finally {
    await useBackend('wasm');
  }
}

interface MatmulCase {
  a: number[];
  b: number[];
  tA?: boolean;
  tB?: boolean;
  /** the original kernel returns wrong values here: compare with cpu only */
  originalWrong?: boolean;
}

const label = (c: MatmulCase): string => `[${c.a}]${c.tA ? 'ᵀ' : ''} x [${c.b}]${c.tB ? 'ᵀ' : ''}`;

/** All four transpose combinations of a product [..., M, K] x [..., K, N]. */
function allTransposes(a: number[], b: number[], extra: Partial<MatmulCase> = {}): MatmulCase[] {
  const t = (s: number[]): number[] => [
    ...s.slice(0, -2),
    s[s.length - 1] as number,
    s[s.length - 2] as number,
  ];
  return [
    { a, b, ...extra },
    { a: t(a), b, tA: true, ...extra },
    { a, b: t(b), tB: true, ...extra },
    { a: t(a), b: t(b), tA: true, tB: true, ...extra },
  ];
}

const BATCH_MATMUL_CASES: MatmulCase[] = [
  // rank 2
  ...allTransposes([16, 24], [24, 20]),
  // rank 3 and 4, batched on both sides (one fast call per batch)
  ...allTransposes([3, 16, 24], [3, 24, 20]),
  ...allTransposes([2, 3, 16, 24], [2, 3, 24, 20]),
  // attention-shaped
  ...allTransposes([4, 32, 16], [4, 16, 32]),
  // broadcast batch and rank mismatch
  ...allTransposes([1, 16, 24], [4, 24, 20]),
  ...allTransposes([4, 16, 24], [1, 24, 20]),
  ...allTransposes([4, 16, 24], [24, 20]),
  ...allTransposes([2, 4, 16, 24], [24, 20]),
  ...allTransposes([16, 24], [4, 24, 20]),
  // the original sizes its output by the larger flattened batch (3, not 2 x 3)
  ...allTransposes([2, 1, 16, 24], [1, 3, 24, 20], { originalWrong: true }),
  ...allTransposes([2, 3, 16, 24], [3, 24, 20]),
  // M, N or K = 1
  ...allTransposes([1, 24], [24, 20]),
  ...allTransposes([16, 24], [24, 1]),
  ...allTransposes([16, 1], [1, 20]),
  ...allTransposes([1, 1], [1, 1]),
  ...allTransposes([4, 1, 64], [4, 64, 64]),
  ...allTransposes([4, 64, 64], [4, 64, 1]),
  ...allTransposes([4, 64, 1], [4, 1, 64]),
  // tiny batched products (left to the original loop)
  ...allTransposes([8, 4, 4], [8, 4, 4]),
  ...allTransposes([1, 4, 4], [8, 4, 4]),
  ...allTransposes([2, 1, 4, 4], [1, 2, 4, 4], { originalWrong: true }),
  // empty: zero batch, M, N; K = 0 (the original leaves the fast path's output uninitialised)
  ...allTransposes([0, 16, 24], [0, 24, 20]),
  ...allTransposes([0, 24], [24, 20]),
  ...allTransposes([16, 24], [24, 0]),
  ...allTransposes([16, 0], [0, 20], { originalWrong: true }),
  ...allTransposes([3, 16, 0], [3, 0, 20], { originalWrong: true }),
];

/**
 * Inputs of `c` as fresh tensors. With `tile`, both are first broadcast to the full output
 * batch shape: tfjs's own kernels (cpu included) flatten batch dims and get [2,1]x[1,3] wrong.
 */
function operands(
  c: MatmulCase,
  av: Float32Array,
  bv: Float32Array,
  tile: boolean,
): [tf.Tensor, tf.Tensor] {
  const a = tf.tensor(av, c.a);
  const b = tf.tensor(bv, c.b);
  if (!tile) return [a, b];
  const ba = c.a.slice(0, -2);
  const bb = c.b.slice(0, -2);
  const rank = Math.max(ba.length, bb.length);
  const batch = Array.from({ length: rank }, (_, i) =>
    Math.max(ba[ba.length - rank + i] ?? 1, bb[bb.length - rank + i] ?? 1),
  );
  return [
    tf.broadcastTo(a, [...batch, ...c.a.slice(-2)]),
    tf.broadcastTo(b, [...batch, ...c.b.slice(-2)]),
  ];
}

/** The product of `c` as a function of fresh tensors. */
function product(c: MatmulCase, tile = false): () => tf.Tensor {
  const av = data(c.a, 1);
  const bv = data(c.b, 2);
  return () => {
    const [a, b] = operands(c, av, bv, tile);
    return tf.matMul(a, b, c.tA, c.tB);
  };
}

interface FusedCase extends MatmulCase {
  bias?: number[];
  activation: tf.fused.Activation;
  prelu?: number[];
}

function fusedProduct(c: FusedCase, tile = false): () => tf.Tensor {
  const av = data(c.a, 3);
  const bv = data(c.b, 4);
  const biasv = c.bias ? data(c.bias, 5) : undefined;
  const pv = c.prelu ? data(c.prelu, 6) : undefined;
  return () => {
    const [a, b] = operands(c, av, bv, tile);
    return tf.fused.matMul({
      a,
      b,
      transposeA: c.tA,
      transposeB: c.tB,
      bias: c.bias && biasv ? tf.tensor(biasv, c.bias) : undefined,
      activation: c.activation,
      preluActivationWeights: c.prelu && pv ? tf.tensor(pv, c.prelu) : undefined,
      leakyreluAlpha: 0.3,
    });
  };
}

const ACTIVATIONS: tf.fused.Activation[] = [
  'linear',
  'relu',
  'relu6',
  'elu',
  'leakyrelu',
  'sigmoid',
];

// The original _FusedMatMul adds a rank-1 bias right only on its fast path (untransposed, batch
// 1, bias of size N): elsewhere it adds bias[N - 1] past row 0, reads past a size-1 bias, and
// rejects other ranks. Bias cases are therefore checked against cpu.
const FUSED_CASES: FusedCase[] = [
  ...ACTIVATIONS.flatMap(
    (activation) =>
      allTransposes([16, 24], [24, 20], { activation } as Partial<FusedCase>) as FusedCase[],
  ),
  ...ACTIVATIONS.flatMap(
    (activation) =>
      allTransposes([3, 16, 24], [3, 24, 20], {
        activation,
        bias: [20],
        originalWrong: true,
      } as Partial<FusedCase>) as FusedCase[],
  ),
  ...(allTransposes([4, 16, 24], [24, 20], {
    activation: 'relu',
    bias: [20],
    originalWrong: true,
  } as Partial<FusedCase>) as FusedCase[]),
  ...(allTransposes([1, 16, 24], [4, 24, 20], {
    activation: 'elu',
    bias: [20],
    originalWrong: true,
  } as Partial<FusedCase>) as FusedCase[]),
  { a: [16, 24], b: [24, 20], activation: 'linear', bias: [20] },
  { a: [16, 24], b: [24, 20], activation: 'relu', bias: [1], originalWrong: true },
  { a: [16, 24], b: [24, 20], activation: 'sigmoid', bias: [], originalWrong: true },
  { a: [16, 24], b: [24, 20], activation: 'linear', bias: [16, 20], originalWrong: true },
  { a: [3, 16, 24], b: [3, 24, 20], activation: 'relu6', bias: [3, 1, 20], originalWrong: true },
  {
    a: [3, 16, 24],
    b: [3, 20, 24],
    tB: true,
    activation: 'leakyrelu',
    bias: [3, 16, 1],
    originalWrong: true,
  },
  // prelu weights: per channel, per output position, one value, per whole output
  ...(allTransposes([16, 24], [24, 20], {
    activation: 'prelu',
    prelu: [20],
  } as Partial<FusedCase>) as FusedCase[]),
  ...(allTransposes([3, 16, 24], [3, 24, 20], {
    activation: 'prelu',
    prelu: [20],
    bias: [20],
    originalWrong: true,
  } as Partial<FusedCase>) as FusedCase[]),
  { a: [3, 16, 24], b: [3, 24, 20], activation: 'prelu', prelu: [16, 20] },
  { a: [3, 16, 24], b: [3, 24, 20], activation: 'prelu', prelu: [1] },
  { a: [3, 24, 16], b: [3, 24, 20], tA: true, activation: 'prelu', prelu: [3, 16, 20] },
  {
    a: [4, 16, 24],
    b: [24, 20],
    activation: 'prelu',
    prelu: [16, 20],
    bias: [20],
    originalWrong: true,
  },
  // M, N, K = 1 and empty
  { a: [1, 24], b: [20, 24], activation: 'relu', bias: [20], tB: true, originalWrong: true },
  { a: [16, 24], b: [24, 1], activation: 'sigmoid', bias: [1] },
  { a: [1, 16], b: [1, 20], tA: true, activation: 'elu', bias: [20], originalWrong: true },
  { a: [16, 0], b: [0, 20], activation: 'sigmoid', bias: [20], originalWrong: true },
  { a: [3, 16, 0], b: [3, 0, 20], activation: 'prelu', prelu: [20], originalWrong: true },
  { a: [0, 16, 24], b: [0, 24, 20], activation: 'relu', bias: [20] },
  { a: [16, 24], b: [24, 0], activation: 'relu', bias: [0] },
];

describe('wasm matmul fix', () => {
  let stock: { batch: tf.KernelConfig; fused: tf.KernelConfig };

  beforeAll(async () => {
    // install before the backend starts (the engine must still run the original setupFuncs)...
    await import('@tensorflow/tfjs-backend-wasm');
    stock = {
      batch: tf.getKernel('BatchMatMul', 'wasm') as tf.KernelConfig,
      fused: tf.getKernel('_FusedMatMul', 'wasm') as tf.KernelConfig,
    };
    expect(installWasmMatmulFix()).toBe(true);
    await useBackend('wasm');
    // ...and again after: harmless
    expect(installWasmMatmulFix()).toBe(true);
    expect(wasmMatmulFixInstalled()).toBe(true);
  });

  afterAll(() => {
    uninstallWasmMatmulFix();
  });

  it('gives correct results when the wasm heap grows during the call', async () => {
    const heap = (): number =>
      (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.buffer.byteLength;
    const side = Math.ceil(Math.sqrt((heap() / 4) * 1.5)); // the output alone is larger than the heap
    const av = data([2, side], 7);
    const bv = data([side, 2], 8);
    const a = tf.tensor2d(av, [2, side]); // [K=2, M]
    const b = tf.tensor2d(bv, [side, 2]); // [N, K=2]
    const bias = tf.tensor1d([0.25]); // spread to [N] inside the kernel
    const before = heap();
    const y = tf.fused.matMul({ a, b, transposeA: true, transposeB: true, bias }); // [M, N]
    expect(heap()).toBeGreaterThan(before);
    const got = await y.data();
    tf.dispose([a, b, bias, y]);
    let worst = 0;
    for (let i = 0; i < side; i++) {
      for (let j = 0; j < side; j++) {
        const want =
          (av[i] as number) * (bv[2 * j] as number) +
          (av[side + i] as number) * (bv[2 * j + 1] as number) +
          0.25;
        worst = Math.max(worst, Math.abs((got[i * side + j] as number) - want));
      }
    }
    expect(worst).toBeLessThan(1e-6);
  });

  it('keeps the original setupFunc and restores the original kernels on uninstall', async () => {
    expect(tf.getKernel('BatchMatMul', 'wasm')?.setupFunc).toBe(stock.batch.setupFunc);
    expect(tf.getKernel('_FusedMatMul', 'wasm')?.setupFunc).toBe(stock.fused.setupFunc);
    expect(tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc).not.toBe(stock.batch.kernelFunc);

    // The original's transposed loop adds bias[N-1] to every row past the first: a fingerprint
    // that shows which kernel ran.
    const run = fusedProduct({
      a: [24, 16],
      b: [24, 20],
      tA: true,
      activation: 'linear',
      bias: [20],
    });
    const fixed = await compute(run);
    uninstallWasmMatmulFix();
    expect(wasmMatmulFixInstalled()).toBe(false);
    expect(tf.getKernel('BatchMatMul', 'wasm')).toBe(stock.batch);
    expect(tf.getKernel('_FusedMatMul', 'wasm')).toBe(stock.fused);
    uninstallWasmMatmulFix(); // harmless too
    const original = await compute(run);
    expect(installWasmMatmulFix()).toBe(true);
    expect(installWasmMatmulFix()).toBe(true);
    expect(wasmMatmulFixInstalled()).toBe(true);
    const again = await compute(run);
    const cpu = await onCpu(run);
    expectClose(fixed.values, cpu.values, 'fixed');
    expect(again.values).toEqual(fixed.values);
    const biasv = data([20], 5);
    const shifted = original.values.map((v, i) =>
      i >= 20 ? v - (biasv[19] as number) + (biasv[i % 20] as number) : v,
    );
    expectClose(shifted, cpu.values, 'original, bias fingerprint removed');
    expect(
      Math.max(...original.values.map((v, i) => Math.abs(v - (cpu.values[i] as number)))),
    ).toBeGreaterThan(0.01);
  });

  it.each(BATCH_MATMUL_CASES.map((c) => [label(c), c] as const))(
    'BatchMatMul %s equals the original kernel',
    async (_, c) => {
      const f = product(c);
      const fixed = await compute(f);
      const original = await withOriginal(f);
      if (original instanceof Error || c.originalWrong) {
        const cpu = await onCpu(product(c, true));
        expect(fixed.shape).toEqual(cpu.shape);
        expectClose(fixed.values, cpu.values, 'vs cpu');
      } else {
        expect(fixed.shape).toEqual(original.shape);
        expectClose(fixed.values, original.values, 'vs original');
      }
    },
  );

  it.each(
    FUSED_CASES.map(
      (c) =>
        [
          `${label(c)} ${c.activation} bias [${c.bias ?? '-'}] prelu [${c.prelu ?? '-'}]`,
          c,
        ] as const,
    ),
  )('_FusedMatMul %s equals the original kernel', async (_, c) => {
    const f = fusedProduct(c);
    const fixed = await compute(f);
    const original = await withOriginal(f);
    if (original instanceof Error || c.originalWrong) {
      const cpu = await onCpu(fusedProduct(c, true));
      expect(fixed.shape).toEqual(cpu.shape);
      expectClose(fixed.values, cpu.values, 'vs cpu');
    } else {
      expect(fixed.shape).toEqual(original.shape);
      expectClose(fixed.values, original.values, 'vs original');
    }
  });

  it('uses one weight tensor as [K, 1] and, transposed, as [1, K] (XNNPACK caches per id)', async () => {
    const f = (): tf.Tensor => {
      const w = tf.tensor(data([32, 1], 30), [32, 1]); // [K=32, N=1]
      const x = tf.tensor(data([8, 32], 31), [8, 32]); // [M, K]
      const dy = tf.tensor(data([8, 1], 32), [8, 1]); // [M, 1]
      const y = tf.matMul(x, w); // [8, 1]: the fast path caches an operator on w's id
      const dx = tf.matMul(dy, w, false, true); // [8, 32]: w's memory seen as [1, 32]
      return tf.concat([
        tf.reshape(y, [-1]),
        tf.reshape(dx, [-1]),
        tf.reshape(tf.matMul(x, w), [-1]),
      ]);
    };
    const fixed = await compute(f);
    expectClose(fixed.values, (await onCpu(f)).values, 'vs cpu');
  });

  it('leaves what it does not handle to the original kernel', async () => {
    const a = tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32');
    expect(() => tf.matMul(a, a)).toThrow(/non-float32/);
    const x = tf.ones([2, 3, 4]);
    const y = tf.ones([3, 4, 5]);
    expect(() => tf.matMul(x, y)).toThrow();
    tf.dispose([a, x, y]);
  });

  it('gradients through tf.grads equal cpu', async () => {
    const shapes = {
      q: [2, 16, 16],
      k: [2, 16, 16],
      v: [2, 16, 16],
      w: [16, 12],
      bias: [12],
      x: [24, 16],
    };
    const vals = Object.fromEntries(
      Object.entries(shapes).map(([name, s], i) => [name, data(s, 20 + i)]),
    );
    const grads = async (): Promise<number[][]> => {
      const ts = Object.entries(shapes).map(([name, s]) =>
        tf.tensor(vals[name] as Float32Array, s),
      );
      const loss = (
        q: tf.Tensor,
        k: tf.Tensor,
        v: tf.Tensor,
        w: tf.Tensor,
        bias: tf.Tensor,
        x: tf.Tensor,
      ): tf.Scalar => {
        const scores = tf.matMul(q, k, false, true); // [2, 16, 16]
        const att = tf.matMul(tf.softmax(scores), v); // [2, 16, 16]
        const h = tf.reshape(att, [32, 16]); // [32, 16]
        const y = tf.fused.matMul({ a: h, b: w, bias, activation: 'linear' }); // [32, 12]
        const z = tf.matMul(x, w, false, false); // [24, 12]
        const zt = tf.matMul(z, x, true, false); // [12, 16]
        const u = tf.matMul(w, zt, true, true); // [12, 12]... w^T [12,16] x zt^T [16,12]
        return tf.add(
          tf.add(tf.sum(tf.square(y)), tf.sum(tf.mul(u, 0.01))),
          tf.sum(tf.sin(zt)),
        ) as tf.Scalar;
      };
      const gs = tf.grads(loss as (...args: tf.Tensor[]) => tf.Tensor)(ts);
      const out = await Promise.all(gs.map((g) => values(g)));
      tf.dispose([...ts, ...gs]);
      return out;
    };
    const before = tf.memory().numTensors;
    const onWasm = await grads();
    expect(tf.memory().numTensors).toBe(before);
    await useBackend('cpu');
    const cpu = await grads();
    await useBackend('wasm');
    expect(onWasm.length).toBe(6);
    for (const [i, g] of onWasm.entries()) expectClose(g, cpu[i] as number[], `gradient ${i}`);
  });

  it('leaks no tensors, backend buffers or wasm memory', async () => {
    const backend = tf.backend() as unknown as {
      numDataIds(): number;
      wasm: { HEAPU8: Uint8Array };
    };
    const calls: (() => tf.Tensor)[] = [
      product({ a: [4, 16, 24], b: [24, 20] }), // folded
      product({ a: [24, 16], b: [20, 24], tA: true, tB: true }), // both transposed
      product({ a: [8, 64, 32], b: [8, 64, 32], tB: true }), // per batch
      product({ a: [1, 64], b: [32, 64], tB: true }), // m = 1, transposed b
      product({ a: [1, 64], b: [32, 1], tA: true, tB: true }), // k = 1: views, no copies
      product({ a: [16, 0], b: [0, 20] }), // k = 0
      product({ a: [0, 16, 24], b: [0, 24, 20] }), // empty
      product({ a: [8, 4, 4], b: [8, 4, 4] }), // original
      fusedProduct({
        a: [3, 24, 16],
        b: [3, 24, 20],
        tA: true,
        activation: 'prelu',
        prelu: [20],
        bias: [1],
      }),
      fusedProduct({ a: [4, 16, 24], b: [24, 20], activation: 'relu', bias: [1] }),
      fusedProduct({ a: [3, 16, 24], b: [3, 24, 20], activation: 'relu', bias: [3, 16, 20] }), // epilogue after
    ];
    for (const f of calls) await compute(f); // warm up
    const tensors = tf.memory().numTensors;
    const buffers = backend.numDataIds();
    for (let i = 0; i < 5; i++) for (const f of calls) await compute(f);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(backend.numDataIds()).toBe(buffers);

    // Per-batch calls register views and XNNPACK packs b once per view (512 KiB here): run
    // enough of them that anything left behind would have to grow the heap.
    const attention = product({ a: [16, 128, 64], b: [16, 128, 64], tB: true });
    await compute(attention);
    const heap = backend.wasm.HEAPU8.buffer.byteLength;
    const rounds = Math.ceil(heap / (16 * 64 * 128 * 4)) + 4;
    for (let i = 0; i < rounds; i++) await compute(attention);
    expect(backend.wasm.HEAPU8.buffer.byteLength).toBe(heap);
    expect(backend.numDataIds()).toBe(buffers);
  });
});
