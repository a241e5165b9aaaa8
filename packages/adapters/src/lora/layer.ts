/**
 * LoRA's math for one adapted projection (PEFT's `lora.Linear.forward` and `get_delta_weight`):
 *
 *   h = W x + scaling · B (A dropout(x))      A [r, in], B [out, r]
 *   ΔW = scaling · B A                         [out, in]   (merge / unmerge)
 */

import type { Rng } from '@para/core';
import { linear } from '@para/ops';
import * as tf from '@tensorflow/tfjs-core';

/** `x [..., in]` → `scaling · B A x` `[..., out]` (two 2-D matmuls). */
export function loraDelta(x: tf.Tensor, A: tf.Tensor, B: tf.Tensor, scaling: number): tf.Tensor {
  return tf.mul(linear(linear(x, A), B), scaling); // [..., out]
}

/** `scaling · B A` `[out, in]`, what merging adds to the weight. */
export function loraDeltaWeight(A: tf.Tensor, B: tf.Tensor, scaling: number): tf.Tensor {
  return tf.mul(tf.matMul(B, A), scaling); // [out, in]
}

/** Inverted dropout with a host-side mask drawn from `rng` (a constant: gradients flow through x). */
export function seededDropout(x: tf.Tensor, p: number, rng: Rng): tf.Tensor {
  const keep = new Float32Array(x.size);
  const scale = 1 / (1 - p);
  for (let i = 0; i < keep.length; i++) keep[i] = rng.next() < p ? 0 : scale;
  return tf.mul(x, tf.tensor(keep, x.shape, 'float32'));
}
