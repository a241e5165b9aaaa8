import * as tf from '@tensorflow/tfjs-core';
import { setFusedKernelsEnabled } from '../../ops/src/fused';
import { attention, attentionMask } from '../../ops/src/index';
import { seeded } from './helpers';

/** The attention tests' shapes, inputs and runner (attention.test.ts and the per-instruction-set files). */

export const scaled = (n: number, seed: number, s: number) => seeded(n, seed).map((v) => v * s);

export type MaskKind = 'none' | 'causal' | 'padded' | 'decode' | 'shared';

export interface Case {
  B: number;
  Hq: number;
  Hkv: number;
  T: number;
  S: number;
  hd: number;
  mask: MaskKind;
}

/** keyValid [B, S] for a kind: 'padded' left-pads row b by 2b + 1 slots (capped below S). */
export function keyValidOf(c: Case): number[][] {
  return Array.from({ length: c.B }, (_, b) =>
    Array.from({ length: c.S }, (_, s) =>
      c.mask === 'padded' || c.mask === 'decode' ? (s < Math.min(2 * b + 1, c.S - 1) ? 0 : 1) : 1,
    ),
  );
}

export function maskOf(c: Case): tf.Tensor | null {
  if (c.mask === 'none') return null;
  if (c.mask === 'shared') return tf.tensor4d(scaled(c.T * c.S, 99, 3), [1, 1, c.T, c.S]); // [1, 1, T, S]
  return attentionMask({ keyValid: keyValidOf(c), queryLength: c.T, causal: c.mask !== 'padded' }); // [B, 1, T, S]
}

export function tensorsOf(c: Case, seed = 1) {
  const q = tf.tensor4d(scaled(c.B * c.Hq * c.T * c.hd, seed, 2), [c.B, c.Hq, c.T, c.hd]); // [B, Hq, T, hd]
  const k = tf.tensor4d(scaled(c.B * c.Hkv * c.S * c.hd, seed + 1, 2), [c.B, c.Hkv, c.S, c.hd]); // [B, Hkv, S, hd]
  const v = tf.tensor4d(scaled(c.B * c.Hkv * c.S * c.hd, seed + 2, 1), [c.B, c.Hkv, c.S, c.hd]); // [B, Hkv, S, hd]
  const w = tf.tensor4d(scaled(c.B * c.Hq * c.T * c.hd, seed + 3, 1), [c.B, c.Hq, c.T, c.hd]); // [B, Hq, T, hd]
  return { q, k, v, w, mask: maskOf(c) };
}

/** Forward and the gradients of Σ attention · w w.r.t. q, k, v; fused on or off. */
export function run(c: Case, fused: boolean): Float32Array[] {
  const was = setFusedKernelsEnabled(fused);
  const { q, k, v, w, mask } = tensorsOf(c);
  try {
    const out = tf.tidy(() => {
      const y = attention(q, k, v, mask);
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
        tf.sum(tf.mul(attention(a, b, d, mask), w)),
      )([q, k, v]);
      return [y, ...g];
    });
    const values = out.map((t) => t.dataSync() as Float32Array);
    tf.dispose(out);
    return values;
  } finally {
    setFusedKernelsEnabled(was);
    tf.dispose([q, k, v, w]);
    if (mask !== null) mask.dispose();
  }
}

// hd 32/64/128 and odd 24 (and 5); GQA 4 and 2; T = 1 over a long S; T = S causal; left
// padding (fully masked key slots); B > 1; shared [1, 1, T, S] masks; sizes past the
// single-thread threshold.
export const CASES: Case[] = [
  { B: 1, Hq: 1, Hkv: 1, T: 1, S: 1, hd: 1, mask: 'none' },
  { B: 1, Hq: 2, Hkv: 1, T: 3, S: 7, hd: 5, mask: 'none' },
  { B: 2, Hq: 4, Hkv: 4, T: 6, S: 6, hd: 32, mask: 'causal' },
  { B: 2, Hq: 8, Hkv: 2, T: 16, S: 16, hd: 64, mask: 'causal' },
  { B: 1, Hq: 4, Hkv: 1, T: 9, S: 9, hd: 128, mask: 'causal' },
  { B: 3, Hq: 4, Hkv: 1, T: 7, S: 7, hd: 24, mask: 'padded' },
  { B: 3, Hq: 8, Hkv: 2, T: 11, S: 11, hd: 24, mask: 'decode' },
  { B: 2, Hq: 8, Hkv: 2, T: 1, S: 300, hd: 64, mask: 'decode' },
  { B: 1, Hq: 4, Hkv: 1, T: 1, S: 1000, hd: 32, mask: 'none' },
  { B: 2, Hq: 4, Hkv: 2, T: 3, S: 40, hd: 16, mask: 'decode' },
  { B: 2, Hq: 6, Hkv: 3, T: 4, S: 9, hd: 12, mask: 'shared' },
  { B: 4, Hq: 4, Hkv: 2, T: 64, S: 64, hd: 32, mask: 'padded' },
  // Several 64-position blocks of the tile path, each over its own live key range (hd 64
  // and 16: whole vectors; 40 and 8: a part vector and columns past it).
  { B: 2, Hq: 4, Hkv: 2, T: 200, S: 200, hd: 64, mask: 'causal' },
  { B: 2, Hq: 2, Hkv: 1, T: 100, S: 100, hd: 40, mask: 'padded' },
  { B: 2, Hq: 4, Hkv: 2, T: 150, S: 150, hd: 16, mask: 'causal' },
  { B: 3, Hq: 2, Hkv: 1, T: 130, S: 130, hd: 8, mask: 'padded' },
  { B: 2, Hq: 4, Hkv: 1, T: 70, S: 200, hd: 8, mask: 'decode' },
];
