import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import '../src/backend/gradients';
import { registerWasmKernels } from '../src/backend/wasm-kernels';
import { useBackend, values } from './helpers/backends';

/** Gradient of Σ gather(table, ids) ⊙ w with respect to the table. */
async function gatherGrad(): Promise<number[]> {
  const table = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]); // [vocab=3, d=2]
  const ids = tf.tensor1d([2, 0, 2, 2], 'int32'); // [4]
  const w = tf.tensor2d([1, 10, 100, 1000, 2, 3, 4, 5], [4, 2]); // [4, d]
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ids), w)))(table);
  const out = await values(g);
  tf.dispose([table, ids, w, g]);
  return out;
}

describe('wasm kernels tfjs lacks', () => {
  beforeAll(async () => {
    await useBackend('wasm');
  });

  it('stock tfjs-backend-wasm cannot differentiate gather; ours can, with exact sums', async () => {
    tf.unregisterKernel('UnsortedSegmentSum', 'wasm');
    await expect(gatherGrad()).rejects.toThrow(/UnsortedSegmentSum/);
    registerWasmKernels();
    // row 0 gets w[1]; row 1 nothing; row 2 gets w[0] + w[2] + w[3]
    expect(await gatherGrad()).toEqual([100, 1000, 0, 0, 1 + 2 + 4, 10 + 3 + 5]);
  });

  it('UnsortedSegmentSum matches cpu for rank-3 data, int32 data and out-of-range ids', async () => {
    const x = tf.tensor3d(
      [...Array(24).keys()].map((i) => i * 0.5 - 3),
      [2, 3, 4],
    ); // [2, 3, 4]
    const ids = tf.tensor1d([3, 7], 'int32'); // [2]; 7 is out of range (dropped)
    const xi = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32');
    const idsi = tf.tensor1d([1, 1, 0], 'int32');
    const onWasm = [
      await values(tf.unsortedSegmentSum(x, ids, 5)),
      await values(tf.unsortedSegmentSum(xi, idsi, 2)),
    ];
    const data = [await values(x), await values(ids), await values(xi), await values(idsi)];
    await useBackend('cpu');
    const onCpu = [
      await values(
        tf.unsortedSegmentSum(
          tf.tensor3d(data[0] as number[], [2, 3, 4]),
          tf.tensor1d(data[1] as number[], 'int32'),
          5,
        ),
      ),
      await values(
        tf.unsortedSegmentSum(
          tf.tensor2d(data[2] as number[], [3, 2], 'int32'),
          tf.tensor1d(data[3] as number[], 'int32'),
          2,
        ),
      ),
    ];
    await useBackend('wasm');
    expect(onWasm).toEqual(onCpu);
    expect(onWasm[1]).toEqual([5, 6, 4, 6]);
  });

  it('UnsortedSegmentSum writes its output on the heap: segments no id reaches are 0, even on reused memory', async () => {
    // Free a block full of 7s, then sum into an output of the same size: the allocator hands the
    // block back, and every segment without an id must still read 0.
    for (let round = 0; round < 3; round++) {
      tf.fill([64, 32], 7).dispose(); // [64, 32]
      const x = tf.ones([3, 32]); // [3, 32]
      const ids = tf.tensor1d([5, 5, 60], 'int32'); // [3]
      const y = tf.unsortedSegmentSum(x, ids, 64); // [64, 32]
      const v = (await y.data()) as Float32Array;
      for (let s = 0; s < 64; s++)
        for (let j = 0; j < 32; j++)
          expect(v[s * 32 + j], `segment ${s}`).toBe(s === 5 ? 2 : s === 60 ? 1 : 0);
      tf.dispose([x, ids, y]);
    }
  });
});
