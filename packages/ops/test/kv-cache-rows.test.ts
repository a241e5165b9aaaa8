/**
 * The preallocated KV cache's storage: in-place slot writes per backend (against a host
 * reference and against the functional fallback), rows that leave and join, and flat tensor
 * counts.
 */

import { isParaError, measureTensorLeak, Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  attention,
  KVCache,
  type KVWrite,
  type KVWriteMode,
  kvWritePath,
  writeKVSlots,
} from '../src';
import { take, testBackends, useBackend, values } from './helpers/backends';

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** Host reference of `writeKVSlots`. */
function refWrite(
  cache: Float32Array,
  shape: number[],
  src: Float32Array,
  srcShape: number[],
  writes: KVWrite[],
): Float32Array {
  const out = cache.slice();
  const [, H, S, hd] = shape as [number, number, number, number];
  const T = srcShape[2] as number;
  for (const w of writes)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < T; t++)
        for (let d = 0; d < hd; d++)
          out[((w.row * H + h) * S + w.start + t) * hd + d] = src[
            ((w.src * H + h) * T + t) * hd + d
          ] as number;
  return out;
}

const [Hq, Hkv, hd] = [4, 2, 8];

/** Run a few steps of a 2-layer cache with random k/v and return every attention output. */
async function runCache(
  mode: KVWriteMode,
  seed: number,
): Promise<{ outs: number[][]; path: string | undefined }> {
  const rng = new Rng(seed);
  const B = 3;
  const cache = new KVCache({ numLayers: 2, batchSize: B, capacity: 12, writeMode: mode });
  const outs: number[][] = [];
  const step = async (valid: number[][] | number) => {
    const s = cache.beginStep(valid);
    const T = s.queryLength;
    const mask = cache.attentionMask(s); // [B, 1, T, S]
    for (let l = 0; l < 2; l++) {
      const o = tf.tidy(() => {
        const q = rng.normalTensor([B, Hq, T, hd]); // [B, Hq, T, hd]
        const kv = cache.append(
          l,
          rng.normalTensor([B, Hkv, T, hd]),
          rng.normalTensor([B, Hkv, T, hd]),
        ); // [B, Hkv, S, hd]
        return attention(q, kv.k, kv.v, mask); // [B, Hq, T, hd]
      });
      outs.push(Array.from(await take(o)));
    }
    mask.dispose();
  };
  await step([
    [0, 1, 1],
    [1, 1, 1],
    [0, 0, 1],
  ]);
  await step(1);
  await step([[1], [0], [1]]);
  cache.releaseRow(1);
  await step(1);
  // A newcomer of 2 tokens (its own cache) joins in row 1.
  const other = new KVCache({ numLayers: 2, batchSize: 1, capacity: 4, writeMode: mode });
  other.beginStep(2);
  for (let l = 0; l < 2; l++)
    tf.tidy(() =>
      other.append(l, rng.normalTensor([1, Hkv, 2, hd]), rng.normalTensor([1, Hkv, 2, hd])),
    );
  cache.copyRowsFrom(other, [0], [1]);
  other.dispose();
  expect(cache.rowLengths()).toEqual([5, 2, 4]);
  expect(cache.rowSlots()).toEqual([6, 2, 6]);
  for (let i = 0; i < 3; i++) await step(1);
  const path = cache.writePath;
  cache.dispose();
  return { outs, path };
}

for (const backend of testBackends()) {
  describe(`KV cache writes on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    it('writes slots in place (same tensor, same dataId) exactly as a host reference', async () => {
      const rng = new Rng(5);
      const shape = [3, Hkv, 7, hd];
      // Fresh storage, [3, Hkv, 7, hd]. On the functional path (tensorflow, webgl) each write
      // returns a new tensor, which the next write starts from.
      let cache = tf.tidy(() => tf.add(tf.zeros(shape), rng.normalTensor(shape)));
      const expectedPath =
        backend === 'cpu' || backend === 'wasm' || backend === 'webgpu' ? backend : 'functional';
      expect(kvWritePath(cache)).toBe(expectedPath);
      let host = await values(cache);
      for (const [T, writes] of [
        [
          1,
          [
            { src: 0, row: 0, start: 6 },
            { src: 2, row: 2, start: 0 },
          ],
        ],
        [3, [{ src: 1, row: 1, start: 2 }]],
        [
          2,
          [
            { src: 0, row: 2, start: 5 },
            { src: 1, row: 0, start: 0 },
          ],
        ],
      ] as [number, KVWrite[]][]) {
        const src = rng.normalTensor([3, Hkv, T, hd]); // [3, Hkv, T, hd]
        const srcHost = Float32Array.from(await values(src));
        const prev = Float32Array.from(host);
        const want = Array.from(refWrite(prev, shape, srcHost, src.shape, writes));
        const dataId = cache.dataId;
        const out = writeKVSlots(cache, src, writes);
        if (expectedPath !== 'functional') {
          expect(out).toBe(cache);
          expect(cache.dataId).toBe(dataId);
        } else {
          expect(out).not.toBe(cache);
          cache.dispose();
          cache = out;
        }
        host = await values(out);
        expect(host).toEqual(want);
        // The functional fallback gives the same values on this backend (a new tensor).
        const base = tf.tensor4d(prev, shape as [number, number, number, number]);
        const functional = writeKVSlots(base, src, writes, 'functional');
        expect(functional).not.toBe(base);
        expect(await take(functional)).toEqual(want);
        tf.dispose([src, base]);
      }
      cache.dispose();
    });

    it('in place and functional caches agree over prefill, idle rows, a release and a join', async () => {
      const inPlace = await runCache('auto', 9);
      const functional = await runCache('functional', 9);
      expect(functional.path).toBe('functional');
      expect(inPlace.path).toBe(
        backend === 'cpu' || backend === 'wasm' || backend === 'webgpu' ? backend : 'functional',
      );
      expect(inPlace.outs.length).toBe(functional.outs.length);
      inPlace.outs.forEach((o, i) => {
        expect(o, `output ${i}`).toEqual(functional.outs[i]);
        expect(o.every(Number.isFinite)).toBe(true);
      });
    });

    it('keeps tf.memory().numTensors flat over 50 decode steps with constant shapes, in both write modes', async () => {
      for (const writeMode of ['auto', 'functional'] as const) {
        const rng = new Rng(3);
        const B = 2;
        const before = tf.memory().numTensors;
        const cache = new KVCache({ numLayers: 2, batchSize: B, capacity: 60, writeMode });
        const q0 = rng.normalTensor([B, Hq, 1, hd]);
        const k0 = rng.normalTensor([B, Hkv, 1, hd]);
        const shapes = new Set<string>();
        const run = (valid: number[][] | number) => {
          const step = cache.beginStep(valid);
          const T = step.queryLength;
          tf.tidy(() => {
            const mask = cache.attentionMask(step);
            for (let l = 0; l < 2; l++) {
              const kv = cache.append(l, tf.tile(k0, [1, 1, T, 1]), tf.tile(k0, [1, 1, T, 1]));
              if (T === 1) shapes.add(kv.k.shape.join(','));
              attention(tf.tile(q0, [1, 1, T, 1]), kv.k, kv.v, mask);
            }
          });
        };
        run([
          [1, 1, 1],
          [0, 0, 1],
        ]);
        const report = await measureTensorLeak(() => run(1), 50, 2);
        expect(report.leaked).toBe(0);
        expect(new Set(report.counts).size).toBe(1);
        expect([...shapes]).toEqual([`${B},${Hkv},60,${hd}`]);
        expect(cache.rowSlots()).toEqual([55, 55]);
        cache.dispose();
        tf.dispose([q0, k0]);
        expect(tf.memory().numTensors).toBe(before);
      }
    });
  });
}

describe('KV cache rows: misuse', () => {
  it('throws typed errors for a full row, a free row taking tokens, a bad copy', async () => {
    await useBackend('cpu');
    const kv = (T: number, B = 2) => tf.zeros([B, 1, T, 4]);
    const cache = new KVCache({ numLayers: 1, batchSize: 2, capacity: 3 });
    cache.beginStep(2);
    cache.append(0, kv(2), kv(2));
    cache.beginStep(1);
    cache.append(0, kv(1), kv(1));
    expect(caught(() => cache.beginStep(1))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'capacity',
    });
    cache.releaseRow(1);
    expect(cache.freeRows()).toEqual([1]);
    expect(caught(() => cache.releaseRow(1))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'row',
    });
    expect(caught(() => cache.beginStep([[0], [1]]))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'newValid[1]',
    });
    const long = new KVCache({ numLayers: 1, batchSize: 1, capacity: 8 });
    long.beginStep(4);
    long.append(0, kv(4, 1), kv(4, 1));
    expect(caught(() => cache.copyRowsFrom(long, [0], [1]))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'capacity',
    });
    expect(caught(() => cache.copyRowsFrom(long, [0], [0]))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'toRows[0]',
    });
    const wide = new KVCache({
      numLayers: 1,
      batchSize: 1,
      capacity: 8,
      numKvHeads: 2,
      headDim: 4,
    });
    wide.beginStep(1);
    wide.append(0, tf.zeros([1, 2, 1, 4]), tf.zeros([1, 2, 1, 4]));
    const e = caught(() => cache.copyRowsFrom(wide, [0], [1]));
    expect(isParaError(e, 'SHAPE_MISMATCH')).toBe(true);
    expect(caught(() => new KVCache({ numLayers: 1, batchSize: 1, capacity: 0 }))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'capacity',
    });
    for (const c of [cache, long, wide]) c.dispose();
  });
});
