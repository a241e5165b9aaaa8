import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setFusedKernelsEnabled } from '../../ops/src/fused';
import { attention } from '../../ops/src/index';
import { overrideAttentionSplit } from '../src/kernels';
import { expectNear, listed, seeded, useWebGpu } from './helpers';

/** @para/ops' generic attention (dispatch to fused kernels off). */
function generic(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor | null, scale?: number) {
  setFusedKernelsEnabled(false);
  try {
    return attention(q, k, v, mask, scale === undefined ? {} : { scale });
  } finally {
    setFusedKernelsEnabled(true);
  }
}

/** `ParaAttention` straight through the engine. */
function fused(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  mask: tf.Tensor | null,
  scale?: number,
): tf.Tensor {
  const inputs: Record<string, tf.Tensor> = { q, k, v };
  if (mask !== null) inputs.mask = mask;
  return tf
    .engine()
    .runKernel('ParaAttention', inputs, scale === undefined ? {} : { scale }) as tf.Tensor;
}

/** An additive mask [Bm, 1, T, S]: -1e9 (MASK_NEGATIVE) on a seeded third of the keys, never the last. */
function maskOf(Bm: number, T: number, S: number, seed: number): tf.Tensor {
  const r = seeded(Bm * T * S, seed);
  const m = new Float32Array(Bm * T * S);
  for (let i = 0; i < m.length; i++) m[i] = i % S !== S - 1 && (r[i] as number) < -0.33 ? -1e9 : 0;
  return tf.tensor4d(m, [Bm, 1, T, S]);
}

describe.skipIf(!listed('webgpu'))(
  'ParaAttention on webgpu equals @para/ops attention (generic tfjs path)',
  () => {
    beforeAll(async () => {
      await useWebGpu();
    });

    const cases: [number, number, number, number, number, number][] = [
      // B, Hq, Hkv, T, S, hd
      [1, 4, 2, 1, 1, 64],
      [1, 4, 2, 1, 7, 64],
      [2, 4, 2, 1, 300, 32],
      [2, 8, 2, 1, 257, 128],
      [1, 3, 3, 1, 2100, 64], // three key tiles
      [2, 4, 4, 3, 33, 64], // T > 1 (prefill rows)
      [1, 2, 1, 1, 5, 200], // hd past one lane's dims
    ];
    for (const [B, Hq, Hkv, T, S, hd] of cases) {
      for (const maskKind of ['none', 'shared', 'per-row'] as const) {
        // Past one key tile: both the split-K pair of dispatches and one workgroup per row.
        for (const split of S > 1024 ? (['always', 'never'] as const) : (['auto'] as const))
          it(`B ${B}, Hq ${Hq}, Hkv ${Hkv}, T ${T}, S ${S}, hd ${hd}, mask ${maskKind}${split === 'auto' ? '' : `, split-K ${split}`}`, async () => {
            const q = tf.tensor4d(seeded(B * Hq * T * hd, 1 + S + hd, 1), [B, Hq, T, hd]);
            const k = tf.tensor4d(seeded(B * Hkv * S * hd, 2 + S, 1), [B, Hkv, S, hd]);
            const v = tf.tensor4d(seeded(B * Hkv * S * hd, 3 + S, 2), [B, Hkv, S, hd]);
            const mask =
              maskKind === 'none' ? null : maskOf(maskKind === 'shared' ? 1 : B, T, S, 4 + T);
            const before = tf.memory().numTensors;
            const want = generic(q, k, v, mask);
            overrideAttentionSplit(split);
            const info = await tf.profile(() => fused(q, k, v, mask));
            overrideAttentionSplit('auto');
            const got = info.result as tf.Tensor;
            expect(info.kernelNames).toEqual(['ParaAttention']);
            expect(got.shape).toEqual([B, Hq, T, hd]);
            expectNear(
              (await got.data()) as Float32Array,
              (await want.data()) as Float32Array,
              'out',
            );
            tf.dispose([want, got]);
            expect(tf.memory().numTensors).toBe(before);
            tf.dispose([q, k, v, ...(mask ? [mask] : [])]);
          });
      }
    }

    it('takes a scale', async () => {
      const q = tf.tensor4d(seeded(2 * 16, 9), [1, 2, 1, 16]);
      const k = tf.tensor4d(seeded(2 * 9 * 16, 10), [1, 2, 9, 16]);
      const v = tf.tensor4d(seeded(2 * 9 * 16, 11), [1, 2, 9, 16]);
      const want = generic(q, k, v, null, 0.7);
      const got = fused(q, k, v, null, 0.7);
      expectNear((await got.data()) as Float32Array, (await want.data()) as Float32Array, 'scaled');
      tf.dispose([q, k, v, want, got]);
    });

    it('is what @para/ops attention() dispatches to (outside a tape), and not under one', async () => {
      const q = tf.tensor4d(seeded(4 * 16, 12), [1, 4, 1, 16]);
      const k = tf.tensor4d(seeded(2 * 9 * 16, 13), [1, 2, 9, 16]);
      const v = tf.tensor4d(seeded(2 * 9 * 16, 14), [1, 2, 9, 16]);
      const info = await tf.profile(() => attention(q, k, v, null));
      expect(info.kernelNames).toEqual(['ParaAttention']);
      const want = generic(q, k, v, null);
      expectNear(
        (await (info.result as tf.Tensor).data()) as Float32Array,
        (await want.data()) as Float32Array,
        'ops',
      );
      const taped = await tf.profile(() =>
        tf.grad((x: tf.Tensor) => tf.sum(attention(x, k, v, null)))(q),
      );
      expect(taped.kernelNames).not.toContain('ParaAttention');
      tf.dispose([q, k, v, want, info.result as tf.Tensor, taped.result as tf.Tensor]);
    });
  },
);
