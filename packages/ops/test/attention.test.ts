import { isParaError, Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  attention,
  attentionMask,
  MASK_NEGATIVE,
  padBatch,
  positionIdsFromMask,
  repeatKv,
} from '../src';
import { expectClose, take, testBackends, useBackend, values } from './helpers/backends';
import { dot, numericGrad, refAttention } from './helpers/reference';

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('padding helpers', () => {
  it('padBatch pads left by default, right on request', () => {
    const left = padBatch([[5, 6, 7], [8]], { padId: 0 });
    expect(left.ids).toEqual([
      [5, 6, 7],
      [0, 0, 8],
    ]);
    expect(left.mask).toEqual([
      [1, 1, 1],
      [0, 0, 1],
    ]);
    expect(left.lengths).toEqual([3, 1]);
    const right = padBatch([[5, 6, 7], [8]], { padId: 2, side: 'right' });
    expect(right.ids).toEqual([
      [5, 6, 7],
      [8, 2, 2],
    ]);
    expect(right.mask).toEqual([
      [1, 1, 1],
      [1, 0, 0],
    ]);
  });

  it('positionIdsFromMask is HF cumsum(mask) - 1 with pads set to 1', () => {
    expect(
      positionIdsFromMask([
        [0, 0, 1, 1, 1],
        [1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0],
      ]),
    ).toEqual([
      [1, 1, 0, 1, 2],
      [0, 1, 2, 3, 4],
      [0, 1, 1, 1, 1],
    ]);
    expect(positionIdsFromMask([[0, 1, 1, 1]], 2)).toEqual([[1, 2]]);
    expect(caught(() => positionIdsFromMask([[0, 2]]))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'keyValid[0][1]',
    });
  });
});

for (const backend of testBackends()) {
  describe(`attention on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    it('attentionMask combines causality and padding, from arrays or tensors', async () => {
      const keyValid = [
        [0, 1, 1, 1],
        [1, 1, 1, 0],
      ];
      const N = MASK_NEGATIVE;
      // Two queries in the last two slots (2 and 3).
      const expected = [
        [N, 0, 0, N, N, 0, 0, 0],
        [0, 0, 0, N, 0, 0, 0, N],
      ].flat();
      const fromArrays = attentionMask({ keyValid, queryLength: 2 });
      expect(fromArrays.shape).toEqual([2, 1, 2, 4]);
      expect(await take(fromArrays)).toEqual(expected);
      const fromTensor = attentionMask({
        keyValid: tf.tensor2d(keyValid, [2, 4], 'int32'),
        queryLength: 2,
      });
      expect((await take(fromTensor)).map((v) => v + 0)).toEqual(expected);
      const noCausal = attentionMask({ keyValid, causal: false });
      expect((await take(noCausal)).slice(0, 4)).toEqual([N, 0, 0, 0]);
    });

    it('matches the naive reference with grouped-query heads and a causal mask', async () => {
      const rng = new Rng(11);
      const [B, Hq, Hkv, T, hd] = [2, 4, 2, 5, 8];
      const q = rng.normalArray(B * Hq * T * hd);
      const k = rng.normalArray(B * Hkv * T * hd);
      const v = rng.normalArray(B * Hkv * T * hd);
      const mask = attentionMask({ keyValid: [new Array(T).fill(1), new Array(T).fill(1)] }); // [B, 1, T, T]
      const out = attention(
        tf.tensor4d(q, [B, Hq, T, hd]),
        tf.tensor4d(k, [B, Hkv, T, hd]),
        tf.tensor4d(v, [B, Hkv, T, hd]),
        mask,
      );
      expect(out.shape).toEqual([B, Hq, T, hd]);
      const ref = refAttention(q, k, v, { B, Hq, Hkv, T, S: T, hd }, (_b, t, s) => s <= t);
      expectClose(await take(out), ref, 1e-5, 1e-5);
      mask.dispose();
    });

    it('equals plain multi-head attention over repeat_kv heads', async () => {
      const rng = new Rng(12);
      const [B, Hq, Hkv, T, S, hd] = [1, 6, 2, 3, 4, 4];
      const q = rng.normalTensor([B, Hq, T, hd]);
      const k = rng.normalTensor([B, Hkv, S, hd]);
      const v = rng.normalTensor([B, Hkv, S, hd]);
      const mask = attentionMask({ keyValid: [[1, 1, 1, 1]], queryLength: T });
      const grouped = attention(q, k, v, mask);
      const kr = repeatKv(k, 3);
      const vr = repeatKv(v, 3);
      expect(kr.shape).toEqual([B, Hq, S, hd]);
      const plain = attention(q, kr, vr, mask);
      expectClose(await take(grouped), await take(plain), 1e-6, 1e-6);
      tf.dispose([q, k, v, mask, kr, vr]);
    });

    it('a left-padded row gives the unpadded row on its valid positions; masked rows are finite', async () => {
      const rng = new Rng(13);
      const [Hq, Hkv, hd] = [2, 1, 4];
      const lengths = [5, 2];
      const L = 5;
      const rows = lengths.map((n) => ({
        q: rng.normalArray(Hq * n * hd),
        k: rng.normalArray(Hkv * n * hd),
        v: rng.normalArray(Hkv * n * hd),
      }));
      // Left-pad each row's [H, n, hd] to [H, L, hd] with garbage values in the pad slots.
      const padHeads = (x: Float32Array, H: number, n: number) => {
        const out = rng.normalArray(H * L * hd, 0, 10);
        for (let h = 0; h < H; h++)
          out.set(x.subarray(h * n * hd, (h + 1) * n * hd), (h * L + (L - n)) * hd);
        return out;
      };
      const cat = (f: (r: (typeof rows)[number], n: number) => Float32Array) => {
        const parts = rows.map((r, b) => f(r, lengths[b] as number));
        const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
        let o = 0;
        for (const p of parts) {
          out.set(p, o);
          o += p.length;
        }
        return out;
      };
      const B = rows.length;
      const q = tf.tensor4d(
        cat((r, n) => padHeads(r.q, Hq, n)),
        [B, Hq, L, hd],
      );
      const k = tf.tensor4d(
        cat((r, n) => padHeads(r.k, Hkv, n)),
        [B, Hkv, L, hd],
      );
      const v = tf.tensor4d(
        cat((r, n) => padHeads(r.v, Hkv, n)),
        [B, Hkv, L, hd],
      );
      const { mask: valid } = padBatch(
        lengths.map((n) => new Array(n).fill(1)),
        { padId: 0 },
      );
      const mask = attentionMask({ keyValid: valid });
      const batched = await take(attention(q, k, v, mask)); // [B, Hq, L, hd]
      expect(batched.every(Number.isFinite)).toBe(true);
      for (let b = 0; b < B; b++) {
        const n = lengths[b] as number;
        const r = rows[b] as (typeof rows)[number];
        const m1 = attentionMask({ keyValid: [new Array(n).fill(1)] });
        const alone = await take(
          attention(
            tf.tensor4d(r.q, [1, Hq, n, hd]),
            tf.tensor4d(r.k, [1, Hkv, n, hd]),
            tf.tensor4d(r.v, [1, Hkv, n, hd]),
            m1,
          ),
        );
        m1.dispose();
        const got: number[] = [];
        for (let h = 0; h < Hq; h++)
          for (let t = L - n; t < L; t++)
            got.push(
              ...batched.slice(((b * Hq + h) * L + t) * hd, ((b * Hq + h) * L + t + 1) * hd),
            );
        expectClose(got, alone, 1e-5, 1e-5, `row ${b}`);
      }
      tf.dispose([q, k, v, mask]);
    });

    it('has the gradient of the reference w.r.t. q, k and v', async () => {
      const rng = new Rng(14);
      const [B, Hq, Hkv, T, S, hd] = [2, 2, 1, 2, 3, 4];
      const keyValid = [
        [1, 1, 1],
        [0, 1, 1],
      ];
      const allowed = (b: number, t: number, s: number) =>
        s <= S - T + t && (keyValid[b] as number[])[s] === 1;
      const q = rng.normalArray(B * Hq * T * hd);
      const k = rng.normalArray(B * Hkv * S * hd);
      const v = rng.normalArray(B * Hkv * S * hd);
      const R = rng.normalArray(B * Hq * T * hd);
      const dims = { B, Hq, Hkv, T, S, hd };
      const mask = attentionMask({ keyValid, queryLength: T });
      const Rt = tf.tensor4d(R, [B, Hq, T, hd]);
      const ts = [
        tf.tensor4d(q, [B, Hq, T, hd]),
        tf.tensor4d(k, [B, Hkv, S, hd]),
        tf.tensor4d(v, [B, Hkv, S, hd]),
      ];
      const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
        tf.sum(tf.mul(attention(a, b, c, mask), Rt)),
      )(ts);
      const numQ = numericGrad((xs) => dot(refAttention(xs, k, v, dims, allowed), R), q);
      const numK = numericGrad((xs) => dot(refAttention(q, xs, v, dims, allowed), R), k);
      const numV = numericGrad((xs) => dot(refAttention(q, k, xs, dims, allowed), R), v);
      expectClose(await take(grads[0] as tf.Tensor), numQ, 1e-4, 1e-4, 'dq');
      expectClose(await take(grads[1] as tf.Tensor), numK, 1e-4, 1e-4, 'dk');
      expectClose(await take(grads[2] as tf.Tensor), numV, 1e-4, 1e-4, 'dv');
      tf.dispose([mask, Rt, ...ts]);
    });

    it('validates shapes and head grouping', async () => {
      const q = tf.zeros([1, 3, 2, 4]);
      const k = tf.zeros([1, 2, 2, 4]);
      const e1 = caught(() => attention(q, k, k, null));
      expect(isParaError(e1, 'SHAPE_MISMATCH')).toBe(true);
      expect(e1).toMatchObject({ field: 'k' });
      const k8 = tf.zeros([1, 1, 2, 8]);
      expect(caught(() => attention(q, k8, k8, null))).toMatchObject({
        code: 'SHAPE_MISMATCH',
        field: 'k',
        actual: '[1, 1, 2, 8]',
      });
      const k1 = tf.zeros([1, 1, 2, 4]);
      expect(caught(() => attention(q, k1, k1, tf.zeros([1, 1, 2, 3])))).toMatchObject({
        code: 'SHAPE_MISMATCH',
        field: 'mask',
      });
      expect(caught(() => attention(q, k1, tf.zeros([1, 1, 3, 4]), null))).toMatchObject({
        code: 'SHAPE_MISMATCH',
        field: 'v',
      });
      const out = attention(q, k1, k1, null);
      expect(out.shape).toEqual([1, 3, 2, 4]);
      expect((await values(out)).every((x) => x === 0)).toBe(true);
      tf.dispose([q, k, k8, k1, out]);
    });
  });
}
