/**
 * PARA's vector generator for one layer (DESIGN.md "The method"):
 *
 *   H  = the layer's normalised input over the prompt tokens         [B, T, d] + prompt mask [B, T]
 *   p  = pool(H)                                                       [B, d]
 *   z  = act(W_down · p + b_down)          W_down [r, d]               [B, r]
 *   l  = 1 + (W_up · z + b_up)             W_up [D, r], D = Σ dims     [B, D]
 *   l  → [l_q; l_v; l_u], each reshaped to [B, 1, dim] so one broadcast multiply scales every
 *        position of the call (prompt and response) by the same vector.
 *
 * Everything is differentiable in the parameters and in H; the masks are constants (no `where`
 * on differentiated conditions, no stridedSlice), and linear maps are 2-D matmuls.
 *
 * Exact identity: with W_up = 0 and b_up = 0, W_up·z is exactly 0 (z is finite), 1 + 0 is
 * exactly 1 and y · 1 is exactly y in IEEE float32 on every backend, so a fresh adapter leaves
 * the logits bit-identical.
 */

import { silu } from '@para/ops';
import * as tf from '@tensorflow/tfjs-core';
import type { ParaActivation, ParaPooler } from './config';

/** One layer's parameters (shapes as in the file). */
export interface ParaLayerWeights {
  /** [r, d] */
  down: tf.Tensor;
  /** [r] or null */
  downBias: tf.Tensor | null;
  /** [D, r] */
  up: tf.Tensor;
  /** [D] or null */
  upBias: tf.Tensor | null;
  /** [1, d], the attention pooler's w, or null */
  pool: tf.Tensor | null;
}

/** A large negative for masked scores (finite, so no NaN even when a row is fully masked). */
const MASKED = 1e9;

/**
 * `h [B, T, d]`, `mask [B, T]` (1 = prompt token) → `p [B, d]`. A row needs at least one
 * prompt token (the model guarantees a real token per row; promptLengths ≥ 1).
 */
export function pool(
  h: tf.Tensor,
  mask: tf.Tensor,
  pooler: ParaPooler,
  w: tf.Tensor | null,
): tf.Tensor {
  const m3 = tf.expandDims(mask, 2); // [B, T, 1]
  switch (pooler) {
    case 'mean': {
      const count = tf.maximum(tf.sum(mask, 1, true), 1); // [B, 1]
      return tf.div(tf.sum(tf.mul(h, m3), 1), count); // [B, d]
    }
    case 'last': {
      // One-hot on each row's last prompt token: the prompt token whose running count equals the total.
      const running = tf.cumsum(mask, 1); // [B, T]
      const total = tf.sum(mask, 1, true); // [B, 1]
      const last = tf.mul(mask, tf.cast(tf.equal(running, total), 'float32')); // [B, T]
      return tf.sum(tf.mul(h, tf.expandDims(last, 2)), 1); // [B, d] (exactly h at that token)
    }
    case 'max': {
      const shifted = tf.add(h, tf.mul(tf.sub(m3, 1), MASKED)); // [B, T, d], prompt tokens unchanged (+0)
      return tf.max(shifted, 1); // [B, d]
    }
    case 'attention': {
      if (w === null) throw new Error('internal: attention pooler without pool.weight');
      const [B, T, d] = h.shape as [number, number, number];
      const scores =
        w.rank === 3
          ? tf.sum(tf.mul(h, w), 2) // per-row w [B, 1, d] (mixed batches) → [B, T]
          : tf.reshape(tf.matMul(tf.reshape(h, [B * T, d]), w, false, true), [B, T]); // [B, T] = H·w
      const masked = tf.add(scores, tf.mul(tf.sub(mask, 1), MASKED)); // [B, T]
      const alpha = tf.softmax(masked, -1); // [B, T], 0 off the prompt
      return tf.sum(tf.mul(h, tf.expandDims(alpha, 2)), 1); // [B, d] = softmax(H·w)ᵀ H
    }
  }
}

/** The bottleneck activation. `gelu` is the erf form: x·½(1 + erf(x/√2)). */
export function activate(x: tf.Tensor, act: ParaActivation): tf.Tensor {
  switch (act) {
    case 'gelu':
      return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
    case 'relu':
      return tf.relu(x);
    case 'silu':
      return silu(x);
    case 'tanh':
      return tf.tanh(x);
    case 'identity':
      return x;
  }
}

/** `p [B, d]` → `l [B, D]` = 1 + W_up·act(W_down·p + b_down) + b_up. */
export function generateVectors(p: tf.Tensor, w: ParaLayerWeights, act: ParaActivation): tf.Tensor {
  let a = tf.matMul(p, w.down, false, true); // [B, r]
  if (w.downBias !== null) a = tf.add(a, w.downBias);
  const z = activate(a, act); // [B, r]
  let u = tf.matMul(z, w.up, false, true); // [B, D]
  if (w.upBias !== null) u = tf.add(u, w.upBias);
  return tf.add(1, u); // [B, D]
}

/**
 * `generateVectors` with per-row parameters (a mixed batch of tenants sharing one config): `p [n, d]`,
 * `down [n, r, d]`, `downBias [n, r]`, `up [n, D, r]`, `upBias [n, D]` → `l [n, 1, D]`, with
 * batched matmuls (the BGMV idea applied to the generator).
 */
export function generateRows(
  p: tf.Tensor,
  down: tf.Tensor,
  downBias: tf.Tensor | null,
  up: tf.Tensor,
  upBias: tf.Tensor | null,
  act: ParaActivation,
): tf.Tensor {
  const [n, d] = p.shape as [number, number];
  let a = tf.matMul(tf.reshape(p, [n, 1, d]), down, false, true); // [n, 1, r]
  if (downBias !== null) a = tf.add(a, tf.expandDims(downBias, 1));
  const z = activate(a, act); // [n, 1, r]
  let u = tf.matMul(z, up, false, true); // [n, 1, D]
  if (upBias !== null) u = tf.add(u, tf.expandDims(upBias, 1));
  return tf.add(1, u); // [n, 1, D]
}

/** `l [n, 1, D]` (or `[n, D]`) → one `[n, 1, dim]` tensor per target. */
export function splitTargets(l: tf.Tensor, dims: readonly number[]): tf.Tensor[] {
  const n = l.shape[0] as number;
  if (dims.length === 1) return [tf.reshape(l, [n, 1, dims[0] as number])];
  const l2 = tf.reshape(l, [n, -1]); // [n, D]
  const out: tf.Tensor[] = [];
  let offset = 0;
  for (const dim of dims) {
    out.push(tf.reshape(tf.slice(l2, [0, offset], [n, dim]), [n, 1, dim])); // [n, 1, dim]
    offset += dim;
  }
  return out;
}

/**
 * The adjusting vectors of one layer: `h [B, T, d]` + prompt mask `[B, T]` → one `[B, 1, dim]`
 * tensor per target, in target order.
 */
export function paraVectors(
  h: tf.Tensor,
  mask: tf.Tensor,
  w: ParaLayerWeights,
  pooler: ParaPooler,
  act: ParaActivation,
  dims: readonly number[],
): tf.Tensor[] {
  return splitTargets(generateVectors(pool(h, mask, pooler, w.pool), w, act), dims); // [B, 1, dim] each
}
