import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import '../src/backend/gradients';
import { installWasmKernelReplacements, registerWasmKernels } from '../src/backend/wasm-kernels';
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

  it('Identity shares the heap memory instead of copying it; values, gradients and memory stay right', async () => {
    expect(installWasmKernelReplacements()).toBe(true); // the wasm loader installed it already
    expect(installWasmKernelReplacements()).toBe(true); // idempotent
    const buffers = () => (tf.memory() as { numDataBuffers: number }).numDataBuffers;
    const before = buffers();
    const x = tf.tensor2d([1, -2, 3, 4, 5, -6], [2, 3]); // [2, 3]
    const y = tf.clone(x); // [2, 3], the same memory
    expect(y.dataId).toBe(x.dataId);
    expect(buffers() - before).toBe(1); // one buffer, not two
    x.dispose(); // the clone keeps the shared memory alive
    expect(await values(y)).toEqual([1, -2, 3, 4, 5, -6]);
    y.dispose();
    expect(buffers()).toBe(before);

    // The engine clones each tensor a gradient saves (Identity): same gradient as cpu, and every
    // saved clone is released after backprop.
    const f = (a: tf.Tensor) => tf.sum(tf.mul(tf.exp(a), tf.square(a)));
    const a = tf.tensor1d([0.5, -1, 2]); // [3]
    const tensorsBefore = tf.memory().numTensors;
    const g = tf.grad(f)(a);
    const onWasm = await values(g);
    g.dispose();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    a.dispose();
    const expected = [0.5, -1, 2].map((v) => Math.exp(v) * (v * v + 2 * v)); // d/da e^a a²
    for (let i = 0; i < 3; i++) expect(onWasm[i]).toBeCloseTo(expected[i] as number, 5);

    // Strings keep the original kernel.
    const s = tf.tensor1d(['a', 'bc']);
    const sc = tf.clone(s);
    expect(await sc.array()).toEqual(['a', 'bc']);
    tf.dispose([s, sc]);
  });

  it('GatherV2 (row copies) matches cpu: any axis, batchDims, int32 data, 2-D indices, rows of 1, empty; rejects bad indices', async () => {
    type Case = {
      shape: number[];
      dtype: 'float32' | 'int32';
      idx: number[];
      idxShape: number[];
      axis: number;
      batchDims: number;
    };
    const cases: Case[] = [
      {
        shape: [50, 40],
        dtype: 'float32',
        idx: [3, 49, 0, 3, 17],
        idxShape: [5],
        axis: 0,
        batchDims: 0,
      }, // embedding rows ≥ 16
      {
        shape: [6, 5],
        dtype: 'float32',
        idx: [5, 0, 2, 2],
        idxShape: [2, 2],
        axis: 0,
        batchDims: 0,
      }, // short rows, 2-D ids
      { shape: [3, 7, 4], dtype: 'float32', idx: [6, 1, 1], idxShape: [3], axis: 1, batchDims: 0 }, // middle axis
      { shape: [4, 9], dtype: 'int32', idx: [8, 0, 4], idxShape: [3], axis: 1, batchDims: 0 }, // last axis, int32
      {
        shape: [2, 5, 20],
        dtype: 'float32',
        idx: [4, 0, 1, 3, 3, 2],
        idxShape: [2, 3],
        axis: 1,
        batchDims: 1,
      }, // batched
      { shape: [5, 3], dtype: 'float32', idx: [], idxShape: [0], axis: 0, batchDims: 0 }, // no indices
    ];
    const run = async () => {
      const out: number[][] = [];
      for (const c of cases) {
        const n = c.shape.reduce((a, b) => a * b, 1);
        const data = [...Array(n).keys()].map((i) =>
          c.dtype === 'int32' ? i * 3 - 7 : i * 0.25 - 5,
        );
        const x = tf.tensor(data, c.shape, c.dtype);
        const ids = tf.tensor(c.idx, c.idxShape, 'int32');
        const y = tf.gather(x, ids, c.axis, c.batchDims);
        out.push([...y.shape, -1, ...(await values(y))]);
        tf.dispose([x, ids, y]);
      }
      return out;
    };
    const onWasm = await run();
    await useBackend('cpu');
    const onCpu = await run();
    await useBackend('wasm');
    expect(onWasm).toEqual(onCpu);
    expect(onWasm[0]?.slice(0, 3)).toEqual([5, 40, -1]);

    // A freshly allocated output over reused heap memory holds exactly the gathered rows.
    const table = tf.tensor2d([...Array(64 * 32).keys()], [64, 32]); // [64, 32]
    tf.fill([128, 32], 7).dispose();
    const pick = tf.tensor1d([63, 1], 'int32'); // [2]
    const rows = tf.gather(table, pick); // [2, 32]
    const v = await values(rows);
    expect(v.slice(0, 2)).toEqual([63 * 32, 63 * 32 + 1]);
    expect(v.slice(32, 34)).toEqual([32, 33]);
    tf.dispose([table, pick, rows]);

    const x = tf.ones([4, 3]);
    for (const bad of [4, -1]) {
      const ids = tf.tensor1d([0, bad], 'int32');
      expect(() => tf.gather(x, ids)).toThrow(`GatherV2: the index value ${bad} is not in [0, 3]`);
      ids.dispose();
    }
    x.dispose();
  });

  it('Sum over a block of leading or middle axes (one matmul with ones) matches cpu; other sums keep the stock kernel', async () => {
    type Case = { shape: number[]; axis: number | number[]; keepDims: boolean; dtype?: 'int32' };
    const cases: Case[] = [
      { shape: [4, 9, 33], axis: 1, keepDims: false }, // middle axis: a broadcast scale's gradient
      { shape: [4, 7, 33], axis: [0, 1], keepDims: false }, // leading block: a bias gradient
      { shape: [4, 7, 33], axis: [1, 0], keepDims: true }, // unsorted, keepDims
      { shape: [3, 5, 4, 16], axis: [1, 2], keepDims: true }, // a block in the middle
      { shape: [4, 9, 33], axis: -2, keepDims: false }, // negative axis
      { shape: [4, 7, 8], axis: 1, keepDims: false }, // a tiny block (stock kernel)
      { shape: [5, 1, 8], axis: 1, keepDims: false }, // a size-1 axis (stock kernel)
      { shape: [4, 7, 33], axis: 2, keepDims: false }, // last axis (stock kernel)
      { shape: [4, 7, 33], axis: [0, 2], keepDims: false }, // not a block (stock kernel)
      { shape: [4, 7, 33], axis: 1, keepDims: false, dtype: 'int32' }, // int32 (stock kernel)
      { shape: [6, 50], axis: 0, keepDims: false },
    ];
    const run = async () => {
      const out: number[][] = [];
      for (const c of cases) {
        const n = c.shape.reduce((a, b) => a * b, 1);
        const data = [...Array(n).keys()].map((i) =>
          c.dtype === 'int32' ? (i % 11) - 5 : Math.sin(i) * 3,
        );
        const x = tf.tensor(data, c.shape, c.dtype ?? 'float32');
        const y = tf.sum(x, c.axis, c.keepDims);
        out.push([...y.shape, -1, ...(await values(y))]);
        tf.dispose([x, y]);
      }
      return out;
    };
    const onWasm = await run();
    await useBackend('cpu');
    const onCpu = await run();
    await useBackend('wasm');
    for (let c = 0; c < cases.length; c++) {
      const w = onWasm[c] as number[];
      const e = onCpu[c] as number[];
      expect(w.length, JSON.stringify(cases[c])).toBe(e.length);
      for (let i = 0; i < e.length; i++)
        expect(
          Math.abs((w[i] as number) - (e[i] as number)),
          `${JSON.stringify(cases[c])}[${i}]`,
        ).toBeLessThan(1e-4);
    }
    expect(onWasm[0]?.slice(0, 3)).toEqual([4, 33, -1]);
    expect(onWasm[3]?.slice(0, 5)).toEqual([3, 1, 1, 16, -1]);
    expect(onWasm[2]?.slice(0, 4)).toEqual([1, 1, 33, -1]);

    // The gradient of a broadcast multiply reduces through it; tensors stay flat.
    const a = tf.randomNormal([3, 5, 64], 0, 1, 'float32', 1); // [3, 5, 64]
    const sc = tf.randomNormal([3, 1, 64], 0, 1, 'float32', 2); // [3, 1, 64]
    const before = tf.memory().numTensors;
    const g = tf.grad((s: tf.Tensor) => tf.sum(tf.square(tf.mul(a, s))))(sc); // [3, 1, 64]
    const gw = await values(g);
    g.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const av = await values(a);
    const sv = await values(sc);
    for (let b = 0; b < 3; b++)
      for (let f = 0; f < 64; f++) {
        let want = 0; // d/ds Σ_t (a s)² = Σ_t 2 a² s
        for (let t = 0; t < 5; t++)
          want += 2 * (av[(b * 5 + t) * 64 + f] as number) ** 2 * (sv[b * 64 + f] as number);
        expect(gw[b * 64 + f]).toBeCloseTo(want, 4);
      }
    tf.dispose([a, sc]);
  });
});
