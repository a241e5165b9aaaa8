import { Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { applyRope, KVCache, ropeCosSin, ropeInvFreq, swiglu } from '../src';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';

/**
 * The ops behind issue 17's folded decode kernels, on every test backend: where no backend kernel
 * is registered (everything but webgpu with @para/webgpu) they run generic ops that must equal the
 * unfolded composition the decoder layer ran before (@para/webgpu's tests compare its kernels
 * against these paths).
 */
for (const backend of testBackends()) {
  describe(`folded scales and KVCache.appendRotated on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    it('swiglu(gate, up, { upScale, outScale }) = (silu(gate) · (up ⊙ upScale)) ⊙ outScale', async () => {
      const rng = new Rng(5);
      const [B, T, F] = [3, 2, 9];
      const gate = tf.tensor3d(rng.normalArray(B * T * F, 0, 3), [B, T, F]); // [B, T, F]
      const up = tf.tensor3d(rng.normalArray(B * T * F), [B, T, F]); // [B, T, F]
      const su = tf.tensor3d(rng.normalArray(B * F, 1, 0.5), [B, 1, F]); // [B, 1, F]
      const so = tf.tensor3d(rng.normalArray(F, 1, 0.5), [1, 1, F]); // [1, 1, F]
      const n = tf.memory().numTensors;
      const cases: [tf.Tensor, tf.Tensor][] = tf.tidy(() => [
        [swiglu(gate, up, { upScale: su }), swiglu(gate, tf.mul(up, su))],
        [swiglu(gate, up, { outScale: so }), tf.mul(swiglu(gate, up), so)],
        [swiglu(gate, up, { upScale: su, outScale: so }), tf.mul(swiglu(gate, tf.mul(up, su)), so)],
      ]);
      // The same ops in the same order: bit-equal on cpu. wasm (ParaSwiGluScaled of @para/blas)
      // and webgpu fold the scale into one kernel, whose product order may differ by an ulp.
      const tol = backend === 'cpu' ? 0 : 1e-6;
      for (const [got, want] of cases) expectClose(await take(got), await take(want), tol, tol);
      expect(tf.memory().numTensors).toBe(n);
      expect(() => swiglu(gate, up, { upScale: tf.ones([B, 2, F]) })).toThrow(
        expect.objectContaining({ code: 'SHAPE_MISMATCH', field: 'upScale' }),
      );
      expect(() => swiglu(gate, up, { outScale: tf.ones([2, 1, F]) })).toThrow(
        expect.objectContaining({ code: 'SHAPE_MISMATCH', field: 'outScale' }),
      );
      tf.dispose([gate, up, su, so]);
    });

    for (const [T, scaled] of [
      [1, true],
      [3, false],
      [2, true],
    ] as [number, boolean][]) {
      it(`appendRotated = RoPE(q ⊙ sq), RoPE(k ⊙ sk), append(…, v ⊙ sv) — T ${T}${scaled ? ', scaled' : ''}`, async () => {
        const rng = new Rng(11 + T);
        const [B, hq, hkv, hd, C, past] = [2, 4, 2, 8, 9, 3];
        const inv = ropeInvFreq({ headDim: hd });
        const hist = tf.tensor4d(rng.normalArray(B * hkv * past * hd), [B, hkv, past, hd]); // [B, Hkv, P, hd]
        const q = tf.tensor4d(rng.normalArray(B * hq * T * hd), [B, hq, T, hd]); // [B, Hq, T, hd]
        const k = tf.tensor4d(rng.normalArray(B * hkv * T * hd), [B, hkv, T, hd]); // [B, Hkv, T, hd]
        const v = tf.tensor4d(rng.normalArray(B * hkv * T * hd), [B, hkv, T, hd]); // [B, Hkv, T, hd]
        const sq = tf.tensor3d(rng.normalArray(B * hq * hd, 1, 0.3), [B, 1, hq * hd]); // [B, 1, Hq·hd]
        const sk = tf.tensor3d(rng.normalArray(hkv * hd, 1, 0.3), [1, 1, hkv * hd]); // [1, 1, Hkv·hd]
        const sv = tf.tensor3d(rng.normalArray(B * hkv * hd, 1, 0.3), [B, 1, hkv * hd]); // [B, 1, Hkv·hd]
        const run = (fold: boolean) => {
          const cache = new KVCache({ numLayers: 1, batchSize: B, capacity: C });
          cache.beginStep(past);
          tf.tidy(() => {
            cache.append(0, hist, hist);
          });
          const step = cache.beginStep(T);
          const rope = ropeCosSin(step.positions, inv, { signedSin: true });
          const out = tf.tidy(() => {
            if (fold) {
              const o = cache.appendRotated(
                0,
                q,
                k,
                v,
                rope,
                scaled ? { q: sq, k: sk, v: sv } : {},
              );
              return [o.q, o.k, o.v];
            }
            // The layer before issue 17: scales on [B, T, H·hd], heads, RoPE, append.
            const scale = (x: tf.Tensor, s: tf.Tensor, H: number) => {
              if (!scaled) return x;
              const flat = tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [B, T, H * hd]); // [B, T, H·hd]
              return tf.transpose(tf.reshape(tf.mul(flat, s), [B, T, H, hd]), [0, 2, 1, 3]); // [B, H, T, hd]
            };
            const qr = applyRope(scale(q, sq, hq), rope.cos, rope.sin, rope.sinSigned);
            const kr = applyRope(scale(k, sk, hkv), rope.cos, rope.sin, rope.sinSigned);
            const o = cache.append(0, kr, scale(v, sv, hkv));
            return [qr, o.k, o.v];
          });
          tf.dispose([rope.cos, rope.sin, rope.sinSigned as tf.Tensor]);
          cache.dispose(); // the views hold the storage
          return out;
        };
        const n = tf.memory().numTensors;
        const folded = run(true);
        const plain = run(false);
        for (let i = 0; i < 3; i++)
          expectClose(await take(folded[i] as tf.Tensor), await take(plain[i] as tf.Tensor), 0, 0);
        expect(tf.memory().numTensors).toBe(n);
        tf.dispose([hist, q, k, v, sq, sk, sv]);
      });
    }

    it('appendRotated in the first step of an empty cache returns the rotated k/v themselves', async () => {
      const cache = new KVCache({ numLayers: 1, batchSize: 1, capacity: 4 });
      const step = cache.beginStep(2);
      const rope = ropeCosSin(step.positions, ropeInvFreq({ headDim: 4 }));
      const q = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [1, 1, 2, 4]);
      const out = cache.appendRotated(0, q, q, q, rope);
      expectClose(await take(out.k), await take(applyRope(q, rope.cos, rope.sin)), 1e-6, 0);
      expect(out.v.shape).toEqual([1, 1, 2, 4]);
      tf.dispose([out.q, out.k, out.v, q, rope.cos, rope.sin]);
      cache.dispose();
    });
  });
}
