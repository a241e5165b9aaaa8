/**
 * IA3's math (PEFT's `ia3.Linear.forward`): a learned vector scales a projection's output
 * (`ia3_l [out, 1]`), or for a feed-forward module its input (`ia3_l [1, in]`). Both are a
 * broadcast multiply of the site's tensor `[B, T, dim]` by the flattened vector `[dim]`.
 */

import * as tf from '@tensorflow/tfjs-core';

/** `ia3_l` in PEFT's shape (`[out, 1]` or `[1, in]`) → the `[dim]` vector a site is multiplied by. */
export function ia3Vector(l: tf.Tensor): tf.Tensor {
  return tf.reshape(l, [-1]); // [dim]
}

/** `y [B, T, dim] ⊙ l [dim]`. */
export function ia3Scale(y: tf.Tensor, l: tf.Tensor): tf.Tensor {
  return tf.mul(y, l); // [B, T, dim]
}
