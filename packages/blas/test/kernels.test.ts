import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blasKernelsInstalled, installBlasKernels, uninstallBlasKernels } from '../src/index';
import {
  expectAddonLoaded,
  expectClose,
  type Input,
  input,
  type Result,
  runOn,
  runOnOriginal,
  status,
} from './helpers';

it('the addon loads (required with PARA_BLAS_REQUIRED=1; otherwise the rest skip where it cannot)', () => {
  expectAddonLoaded();
});

/** Logical cases: batch dims of A and B, then M, N, K. */
const MATMUL_CASES: Array<[string, number[], number[], number, number, number]> = [
  ['rank 2', [], [], 5, 7, 6],
  ['rank 2, larger', [], [], 33, 47, 65],
  ['rank 3', [3], [3], 4, 6, 5],
  ['rank 4', [2, 3], [2, 3], 4, 5, 6],
  ['[B,M,K]x[K,N] (rank mismatch, one GEMM)', [4], [], 5, 6, 7],
  ['[2,3,M,K]x[K,N]', [2, 3], [], 5, 6, 7],
  ['[M,K]x[B,K,N]', [], [4], 5, 6, 7],
  ['[B,M,K]x[1,K,N] (stride 0)', [4], [1], 5, 6, 7],
  ['[1,M,K]x[B,K,N] (stride 0)', [1], [4], 5, 6, 7],
  ['[2,3,M,K]x[3,K,N]', [2, 3], [3], 4, 5, 6],
  ['[2,1,M,K]x[1,3,K,N] (both broadcast)', [2, 1], [1, 3], 4, 5, 6],
  ['[2,1,3,M,K]x[4,1,K,N]', [2, 1, 3], [4, 1], 3, 2, 4],
  ['M=1 (sgemv)', [], [], 1, 7, 6],
  ['N=1 (sgemv)', [], [], 5, 1, 6],
  ['K=1', [], [], 5, 7, 1],
  ['M=N=1', [], [], 1, 1, 9],
  ['M=N=K=1', [], [], 1, 1, 1],
  ['batched M=1 (decode attention)', [3], [3], 1, 8, 6],
  ['batched N=1', [3], [3], 5, 1, 6],
  ['[B,1,K]x[K,N]', [4], [], 1, 6, 5],
  ['[B,T,K]x[K,1] (one sgemv)', [4], [], 3, 1, 5],
  ['[B,T,K]x[B,K,1]', [4], [4], 3, 1, 5],
  ['empty M=0', [], [], 0, 4, 3],
  ['empty N=0', [], [], 3, 0, 3],
  ['empty K=0', [], [], 3, 4, 0],
  ['empty K=0, batched', [2], [2], 3, 4, 0],
  ['empty batch', [0], [0], 3, 4, 5],
];

const TRANSPOSES: Array<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

function stored(batch: number[], rows: number, cols: number, transposed: boolean): number[] {
  return transposed ? [...batch, cols, rows] : [...batch, rows, cols];
}

function broadcastBatch(x: number[], y: number[]): number[] {
  const n = Math.max(x.length, y.length);
  const out: number[] = [];
  for (let d = 0; d < n; d++) {
    const a = x[d - (n - x.length)] ?? 1;
    const b = y[d - (n - y.length)] ?? 1;
    out.push(a === 1 ? b : a);
  }
  return out;
}

/** cpu reference with the batch broadcast made explicit (tfjs's kernels only fold flat batches). */
function broadcastMatMul(outBatch: number[], tA: boolean, tB: boolean) {
  return (a: tf.Tensor, b: tf.Tensor) =>
    tf.matMul(
      tf.broadcastTo(a, [...outBatch, ...a.shape.slice(-2)]),
      tf.broadcastTo(b, [...outBatch, ...b.shape.slice(-2)]),
      tA,
      tB,
    );
}

/**
 * The original wasm kernel's result, or undefined where it rejects the shape (throws, or
 * returns a tensor whose data does not fill its shape, as it does for two-sided broadcasts).
 */
async function original(
  inputs: Input[],
  fn: (...t: tf.Tensor[]) => tf.Tensor,
): Promise<Result | undefined> {
  try {
    const r = await runOnOriginal(inputs, fn);
    return r.values.length === r.shape.reduce((x, y) => x * y, 1) ? r : undefined;
  } catch {
    return undefined;
  }
}

function agrees(x: Result, y: Result, terms: number): boolean {
  try {
    expectClose(x, y, terms);
    return true;
  } catch {
    return false;
  }
}

describe.runIf(status.available)('OpenBLAS kernels on the wasm backend', () => {
  let startTensors = 0;
  let startDataIds = 0;
  const originalRejected: string[] = [];
  const originalWrong: string[] = [];

  beforeAll(async () => {
    await tf.setBackend('wasm');
    expect(installBlasKernels()).toBe(true);
    startTensors = tf.memory().numTensors;
    startDataIds = tf.engine().backend.numDataIds();
  });

  afterAll(() => {
    uninstallBlasKernels();
  });

  it('replaces BatchMatMul and _FusedMatMul, keeping the original setupFunc', () => {
    expect(blasKernelsInstalled()).toBe(true);
    const ours = ['BatchMatMul', '_FusedMatMul'].map((k) => tf.getKernel(k, 'wasm'));
    uninstallBlasKernels();
    expect(blasKernelsInstalled()).toBe(false);
    const originals = ['BatchMatMul', '_FusedMatMul'].map((k) => tf.getKernel(k, 'wasm'));
    expect(installBlasKernels()).toBe(true);
    expect(installBlasKernels()).toBe(true); // idempotent
    for (let i = 0; i < 2; i++) {
      expect(ours[i]?.kernelFunc).not.toBe(originals[i]?.kernelFunc);
      expect(ours[i]?.setupFunc).toBeDefined();
      expect(ours[i]?.setupFunc).toBe(originals[i]?.setupFunc);
    }
  });

  for (const [label, batchA, batchB, m, n, k] of MATMUL_CASES) {
    it(`BatchMatMul ${label}: every transpose equals the original kernel (or cpu where it rejects)`, async () => {
      const outBatch = broadcastBatch(batchA, batchB);
      for (const [tA, tB] of TRANSPOSES) {
        const inputs = [input(stored(batchA, m, k, tA), 1), input(stored(batchB, k, n, tB), 2)];
        const fn = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b, tA, tB);
        const ours = await runOn('wasm', inputs, fn);
        expect(ours.shape).toEqual([...outBatch, m, n]);
        const ref = await runOn('cpu', inputs, broadcastMatMul(outBatch, tA, tB));
        const what = `${label} tA=${tA} tB=${tB}`;
        expectClose(ours, ref, k, `${what} vs cpu`);
        const orig = await original(inputs, fn);
        if (orig === undefined) originalRejected.push(what);
        else expectClose(ours, orig, k, `${what} vs original wasm`);
      }
    });
  }

  const FUSED: Array<{
    label: string;
    batch: number[];
    m: number;
    n: number;
    k: number;
    bias?: number[];
    activation: tf.fused.Activation;
    prelu?: number[];
    scale?: number;
  }> = [
    { label: 'linear, no bias', batch: [], m: 5, n: 7, k: 6, activation: 'linear' },
    { label: 'bias [N]', batch: [], m: 5, n: 7, k: 6, bias: [7], activation: 'linear' },
    { label: 'bias [N] + relu', batch: [], m: 5, n: 7, k: 6, bias: [7], activation: 'relu' },
    {
      label: 'bias [N] + relu6',
      batch: [],
      m: 5,
      n: 7,
      k: 6,
      bias: [7],
      activation: 'relu6',
      scale: 8,
    },
    {
      label: 'bias [N] + elu',
      batch: [],
      m: 5,
      n: 7,
      k: 6,
      bias: [7],
      activation: 'elu',
      scale: 3,
    },
    {
      label: 'bias [N] + leakyrelu',
      batch: [],
      m: 5,
      n: 7,
      k: 6,
      bias: [7],
      activation: 'leakyrelu',
    },
    {
      label: 'bias [N] + sigmoid',
      batch: [],
      m: 5,
      n: 7,
      k: 6,
      bias: [7],
      activation: 'sigmoid',
      scale: 4,
    },
    {
      label: 'bias [N] + prelu [N]',
      batch: [],
      m: 5,
      n: 7,
      k: 6,
      bias: [7],
      activation: 'prelu',
      prelu: [7],
    },
    { label: 'relu, no bias, batched', batch: [3], m: 4, n: 6, k: 5, activation: 'relu' },
    {
      label: 'prelu [M,N], no bias',
      batch: [],
      m: 5,
      n: 7,
      k: 6,
      activation: 'prelu',
      prelu: [5, 7],
    },
    {
      label: 'prelu [B,1,N], batched',
      batch: [3],
      m: 4,
      n: 6,
      k: 5,
      activation: 'prelu',
      prelu: [3, 1, 6],
    },
    { label: 'bias [1]', batch: [], m: 5, n: 7, k: 6, bias: [1], activation: 'linear' },
    { label: 'bias [M,N] + relu', batch: [], m: 5, n: 7, k: 6, bias: [5, 7], activation: 'relu' },
    { label: 'bias [1,N]', batch: [], m: 5, n: 7, k: 6, bias: [1, 7], activation: 'linear' },
    { label: 'bias [M,1]', batch: [], m: 5, n: 7, k: 6, bias: [5, 1], activation: 'linear' },
    {
      label: 'bias [B,M,N], batched',
      batch: [3],
      m: 4,
      n: 6,
      k: 5,
      bias: [3, 4, 6],
      activation: 'sigmoid',
    },
    {
      label: 'bias [B,1,N], batched',
      batch: [3],
      m: 4,
      n: 6,
      k: 5,
      bias: [3, 1, 6],
      activation: 'elu',
    },
    { label: 'bias [N], batched', batch: [3], m: 4, n: 6, k: 5, bias: [6], activation: 'relu' },
    {
      label: 'bias [N], rank 4',
      batch: [2, 3],
      m: 4,
      n: 6,
      k: 5,
      bias: [6],
      activation: 'leakyrelu',
    },
    { label: 'bias [N], M=1 (sgemv)', batch: [], m: 1, n: 7, k: 6, bias: [7], activation: 'relu' },
    { label: 'bias [N], N=1 (sgemv)', batch: [], m: 5, n: 1, k: 6, bias: [1], activation: 'relu' },
    {
      label: 'bias [N], K=0 (act(bias))',
      batch: [],
      m: 3,
      n: 4,
      k: 0,
      bias: [4],
      activation: 'sigmoid',
    },
    { label: 'bias [N], M=0', batch: [], m: 0, n: 4, k: 3, bias: [4], activation: 'relu' },
  ];

  for (const c of FUSED) {
    it(`_FusedMatMul ${c.label}: every transpose equals the original kernel (or cpu where it rejects)`, async () => {
      const scale = c.scale ?? 1;
      for (const [tA, tB] of TRANSPOSES) {
        const a = input(stored(c.batch, c.m, c.k, tA), 3);
        a.data = a.data.map((v) => v * scale);
        const inputs: Input[] = [a, input(stored(c.batch, c.k, c.n, tB), 4)];
        if (c.bias) inputs.push(input(c.bias, 5));
        if (c.prelu) inputs.push(input(c.prelu, 6));
        const fn = (a: tf.Tensor, b: tf.Tensor, ...rest: tf.Tensor[]) =>
          tf.fused.matMul({
            a,
            b,
            transposeA: tA,
            transposeB: tB,
            bias: c.bias ? rest[0] : undefined,
            activation: c.activation,
            preluActivationWeights: c.prelu ? rest[c.bias ? 1 : 0] : undefined,
            leakyreluAlpha: 0.3,
          });
        const what = `${c.label} tA=${tA} tB=${tB}`;
        const ours = await runOn('wasm', inputs, fn);
        const cpu = await runOn('cpu', inputs, fn);
        expectClose(ours, cpu, c.k * scale, `${what} vs cpu`);
        const orig = await original(inputs, fn);
        if (orig === undefined) originalRejected.push(what);
        else if (agrees(orig, cpu, c.k * scale))
          expectClose(ours, orig, c.k * scale, `${what} vs original wasm`);
        else originalWrong.push(`${what} (bias ${c.bias ?? 'none'}, prelu ${c.prelu ?? 'none'})`);
      }
    });
  }

  it('the original _FusedMatMul rejects a bias of rank > 1, and disagrees with cpu only when a bias or PReLU weights are involved', () => {
    // tfjs-backend-wasm 4.22 adds a bias wrongly when a or b is transposed, when batched, when it
    // has one element or K = 0, and broadcasts [B,1,N] PReLU weights wrongly: there cpu is the reference.
    for (const what of originalRejected)
      expect(what).toMatch(/both broadcast|\[2,1,3,M,K\]|bias \[(1|M),|bias \[B,/);
    for (const what of originalWrong) expect(what).not.toMatch(/bias none, prelu none/);
    console.info(
      `original wasm kernel rejected:\n  ${originalRejected.join('\n  ')}\noriginal wasm kernel disagreed with cpu:\n  ${originalWrong.join('\n  ')}`,
    );
  });

  it('the same tensor as both operands (x · xᵀ, xᵀ · x)', async () => {
    const x = input([6, 4], 9);
    for (const [tA, tB] of [
      [false, true],
      [true, false],
    ] as const) {
      const fn = (a: tf.Tensor) => tf.matMul(a, a, tA, tB);
      const ours = await runOn('wasm', [x], fn);
      expectClose(ours, await runOn('cpu', [x], fn), 6, `x·x tA=${tA} tB=${tB}`);
      const orig = await original([x], fn);
      if (orig !== undefined) expectClose(ours, orig, 6, 'vs original');
    }
  });

  it('back-to-back products share one params block: no bias, batch dims or activation carry over', async () => {
    // The kernels pack every call into one reused Float64Array (packSpecScratch): a product with
    // a bias, relu and 2 batch dims, then plain ones, must each equal cpu on their own.
    const a = input([2, 3, 4, 5], 21); // [2, 3, M, K]
    const b = input([2, 3, 5, 6], 22); // [2, 3, K, N]
    const bias = input([6], 23);
    const x = input([4, 5], 24);
    const w = input([5, 6], 25);
    const fused = (p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) =>
      tf.fused.matMul({ a: p, b: q, bias: r, activation: 'relu' });
    const plain = (p: tf.Tensor, q: tf.Tensor) => tf.matMul(p, q);
    for (let round = 0; round < 2; round++) {
      expectClose(
        await runOn('wasm', [a, b, bias], fused),
        await runOn('cpu', [a, b, bias], fused),
        6,
        'fused',
      );
      expectClose(
        await runOn('wasm', [x, w], plain),
        await runOn('cpu', [x, w], plain),
        6,
        'plain after fused',
      );
      expectClose(
        await runOn('wasm', [a, b], plain),
        await runOn('cpu', [a, b], plain),
        6,
        'batched, no bias',
      );
    }
  });

  it('non-float32 inputs go to the original kernel (same error)', async () => {
    const ints: Input[] = [
      { ...input([2, 3], 1), dtype: 'int32' },
      { ...input([3, 2], 2), dtype: 'int32' },
    ];
    const fn = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b);
    let originalError = '';
    try {
      await runOnOriginal(ints, fn);
    } catch (e) {
      originalError = (e as Error).message;
    }
    expect(originalError).toMatch(/float32/);
    await expect(runOn('wasm', ints, fn)).rejects.toThrow(originalError);
  });

  it('mismatched inner dims give tfjs own error', async () => {
    await expect(
      runOn('wasm', [input([2, 3], 1), input([4, 2], 2)], (a, b) => tf.matMul(a, b)),
    ).rejects.toThrow(/inner/);
  });

  it('gives correct results when the wasm heap grows inside makeOutput', async () => {
    const backend = tf.engine().backend as unknown as { wasm: { HEAPU8: Uint8Array } };
    const before = backend.wasm.HEAPU8.buffer.byteLength;
    // An output larger than the whole current heap must grow (and detach) the heap.
    const m = 2048;
    const n = Math.ceil((before * 1.5) / 4 / m);
    const k = 3;
    const a = tf.tensor2d(
      Float32Array.from({ length: m * k }, (_, i) => ((i % 7) - 3) / 4),
      [m, k],
    );
    const b = tf.tensor2d(
      Float32Array.from({ length: k * n }, (_, i) => ((i % 5) - 2) / 2),
      [k, n],
    );
    const heapBefore = backend.wasm.HEAPU8.buffer;
    const c = tf.matMul(a, b);
    expect(backend.wasm.HEAPU8.buffer.byteLength).toBeGreaterThan(before);
    expect(heapBefore.byteLength).toBe(0); // the old buffer was detached by memory.grow
    const got = c.dataSync();
    const av = a.dataSync();
    const bv = b.dataSync();
    let bad = 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += (av[i * k + p] as number) * (bv[p * n + j] as number);
        if (Math.abs((got[i * n + j] as number) - s) > 1e-6) bad++;
      }
    }
    expect(bad).toBe(0);
    tf.dispose([a, b, c]);
  });

  it('leaks no tensors and no wasm buffers', () => {
    expect(tf.memory().numTensors).toBe(startTensors);
    expect(tf.engine().backend.numDataIds()).toBe(startDataIds);
  });
});
