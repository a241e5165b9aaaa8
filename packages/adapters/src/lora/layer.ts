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

/**
 * DoRA's weight norm, `‖W + scaling·B·A‖` of each output row `[out]` (PEFT's
 * `DoraLinearLayer.get_weight_norm`: `torch.linalg.norm(W + s·B·A, dim=1)`).
 */
export function doraWeightNorm(
  W: tf.Tensor,
  A: tf.Tensor,
  B: tf.Tensor,
  scaling: number,
): tf.Tensor {
  return tf.sqrt(tf.sum(tf.square(tf.add(W, loraDeltaWeight(A, B, scaling))), 1)); // [out]
}

/**
 * The same norm, detached from the gradient (DoRA §4.3, as PEFT does: the norm follows A and B
 * in value but passes them no gradient). Computed inside a custom gradient, so the norm's own
 * ops are not recorded for backprop.
 */
export function doraWeightNormDetached(
  W: tf.Tensor,
  A: tf.Tensor,
  B: tf.Tensor,
  scaling: number,
): tf.Tensor {
  const f = tf.customGrad(((a: tf.Tensor, b: tf.Tensor) => ({
    value: doraWeightNorm(W, a, b, scaling),
    gradFunc: () => [tf.zerosLike(a), tf.zerosLike(b)],
  })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(A, B); // [out]
}
