import * as tf from '@tensorflow/tfjs-core';
import { checkMinRank, checkShape } from './shapes';

/**
 * A linear layer in Hugging Face's weight layout (`nn.Linear`, weight stored `[out, in]`):
 *
 *     y = x · Wᵀ + b
 *
 * `x` is `[..., in]`, `weight` `[out, in]`, `bias` `[out]` (optional); the result is
 * `[..., out]`. The leading axes are folded into one (`[N, in]`) for a plain 2-D matmul: tfjs
 * 4.22's matmul gradient fails when batch dimensions broadcast (`[B, T, K] × [K, N]`).
 */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor | null): tf.Tensor {
  const shape = checkMinRank(x, 'x', 1, '[..., in]');
  const inDim = shape[shape.length - 1] as number;
  const [outDim] = checkShape(weight, 'weight', [null, inDim]) as [number, number];
  if (bias !== undefined && bias !== null) checkShape(bias, 'bias', [outDim]);
  return tf.tidy(() => {
    const x2 = tf.reshape(x, [-1, inDim]); // [N, in]
    let y = tf.matMul(x2, weight, false, true); // [N, out]
    if (bias !== undefined && bias !== null) y = tf.add(y, bias);
    return tf.reshape(y, [...shape.slice(0, -1), outDim]); // [..., out]
  });
}
