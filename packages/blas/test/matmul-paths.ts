import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installBlasKernels, uninstallBlasKernels } from '../src/index';
import {
  cpuHas,
  expectAddonLoaded,
  expectClose,
  input,
  type Result,
  runOn,
  status,
} from './helpers';

/** OpenBLAS's kernel sets that use AVX-512 (its core names, lower-cased). */
const AVX512_CORES = new Set(['skylakex', 'cooperlake', 'sapphirerapids']);

/**
 * What BatchMatMul's products should run on in this process: the rule of native/para_fused.c's
 * tile_mm_pick, restated. `mode` is PARA_MATMUL as the file set it before loading the addon.
 */
export function expectedPath(mode: 'auto' | 'tile-avx2' | 'openblas'): string {
  if (mode === 'openblas') return 'openblas';
  const x64 = process.arch === 'x64';
  if (mode === 'tile-avx2') return x64 && cpuHas('avx2', 'fma') ? 'tile-avx2' : 'tile-baseline';
  const avx512 = x64 && cpuHas('avx512f');
  return avx512 && !AVX512_CORES.has((status.corename ?? '').toLowerCase())
    ? 'tile-avx512'
    : 'openblas';
}

/**
 * [label, batch, M, N, K]: shapes that take the tile kernel's every branch (M ≥ 96 goes to it):
 * several 256-long K blocks and 256-wide column blocks with ragged ends, N not a multiple of the
 * vector width (a scalar tail untransposed, zero padding transposed), the split over the pool by
 * columns (few rows) and by rows (narrow N), more than one 128-row block, below the parallel
 * threshold, and a batch of products.
 */
const CASES: Array<[string, number[], number, number, number]> = [
  ['K and N blocks with ragged ends', [], 300, 333, 257],
  ['few rows: split by columns', [], 96, 600, 100],
  ['narrow N: split by rows, two row blocks, three K blocks', [], 130, 70, 520],
  ['N below one vector group', [], 200, 17, 40],
  ['single-threaded (below the parallel threshold)', [], 96, 24, 16],
  ['batched', [3], 70, 90, 300],
  ['decode and short-prefill rows (OpenBLAS)', [], 64, 300, 100],
];

const TRANSPOSES: Array<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

const stored = (batch: number[], rows: number, cols: number, t: boolean) =>
  t ? [...batch, cols, rows] : [...batch, rows, cols];

/** The matmul cases under the path this process chose, against the cpu backend. */
export function matmulPathSuite(mode: 'auto' | 'tile-avx2' | 'openblas'): void {
  it('the addon loads (required with PARA_BLAS_REQUIRED=1; otherwise the rest skip where it cannot)', () => {
    expectAddonLoaded();
  });

  describe.runIf(status.available)(`BatchMatMul's products (PARA_MATMUL ${mode})`, () => {
    beforeAll(async () => {
      await tf.setBackend('wasm');
      installBlasKernels();
    });
    afterAll(() => uninstallBlasKernels());

    it('runs on the expected kernel', () => {
      expect(status.matmul).toBe(expectedPath(mode));
    });

    for (const [label, batch, m, n, k] of CASES) {
      it(`${label} [${[...batch, m, n, k]}]: every transpose equals cpu`, async () => {
        for (const [tA, tB] of TRANSPOSES) {
          const inputs = [input(stored(batch, m, k, tA), 3), input(stored(batch, k, n, tB), 4)];
          const fn = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b, tA, tB);
          const ours = await runOn('wasm', inputs, fn);
          const ref = await runOn('cpu', inputs, fn);
          expectClose(ours, ref, k, `${label} tA=${tA} tB=${tB}`);
        }
      });
    }

    it('bias and relu after the product (_FusedMatMul) equal cpu', async () => {
      const [m, n, k] = [96, 80, 300];
      const inputs = [input([m, k], 5), input([n, k], 6), input([n], 7)];
      const fn = (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) =>
        tf.fused.matMul({ a, b, transposeB: true, bias, activation: 'relu' });
      expectClose(await runOn('wasm', inputs, fn), await runOn('cpu', inputs, fn), k, 'fused');
    });

    it('calls from several threads at once each get the result one call alone gets', async () => {
      await concurrentCallsAgree(status.binary as string);
    }, 120_000);

    it('NaN stays in its own row of A and its own column of B (no padding or block leaks it)', async () => {
      const [m, n, k] = [100, 70, 300];
      for (const tB of [false, true]) {
        const a = input([m, k], 8);
        const b = input(stored([], k, n, tB), 9);
        a.data[5 * k + 7] = Number.NaN; // A row 5
        const col = 66; // in the last, partial vector of B's columns
        b.data[tB ? col * k + 290 : 290 * n + col] = Number.NaN; // B column 66, third K block
        const out: Result = await runOn('wasm', [a, b], (x, y) => tf.matMul(x, y, false, tB));
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            const nan = Number.isNaN(out.values[i * n + j] as number);
            if (nan !== (i === 5 || j === col))
              throw new Error(`tB=${tB}: C[${i}, ${j}] is ${out.values[i * n + j]}`);
          }
        }
      }
    });
  });
}

/**
 * Worker threads, each calling the addon's matmulHeap at once on their own heaps: a transB
 * product (buffers for B's blocks) repeated, every result bit-equal to the one this thread got
 * alone (the split keeps each element's order of summation, busy pool or not).
 */
export async function concurrentCallsAgree(binary: string): Promise<void> {
  const { Worker } = await import('node:worker_threads');
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const addon = require(workerData.binary);
    const { m, n, k, a, b, reps } = workerData;
    const heap = new ArrayBuffer(4 * (m * k + k * n + m * n));
    const h = new Float32Array(heap);
    h.set(a, 0);
    h.set(b, m * k);
    const prm = new Float64Array(21);
    prm.set([0, 4 * m * k, 4 * (m * k + k * n), m, n, k, 0, 1, 0, 0, 0, -1]);
    prm[16] = -1;
    const outs = [];
    for (let r = 0; r < reps; r++) {
      addon.matmulHeap(heap, prm);
      outs.push(Float32Array.from(h.subarray(m * k + k * n)));
    }
    parentPort.postMessage(outs);
  `;
  const [m, n, k] = [300, 333, 257];
  const a = input([m, k], 11).data;
  const b = input([n, k], 12).data;
  const alone = await new Promise<Float32Array[]>((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { binary, m, n, k, a, b, reps: 1 } });
    w.once('message', resolve);
    w.once('error', reject);
  });
  const expected = alone[0] as Float32Array;
  const runs = await Promise.all(
    [0, 1, 2].map(
      () =>
        new Promise<Float32Array[]>((resolve, reject) => {
          const w = new Worker(code, {
            eval: true,
            workerData: { binary, m, n, k, a, b, reps: 20 },
          });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );
  for (const [i, outs] of runs.entries()) {
    for (const [r, out] of outs.entries()) {
      let same = out.length === expected.length;
      for (let j = 0; same && j < out.length; j++) same = Object.is(out[j], expected[j]);
      expect(same, `worker ${i}, call ${r}`).toBe(true);
    }
  }
}
