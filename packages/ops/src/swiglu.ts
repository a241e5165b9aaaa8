import * as tf from '@tensorflow/tfjs-core';
import { checkMinRank, checkSameShape } from './shapes';

/**
 * SiLU (swish): `silu(x) = x · σ(x)`, as `torch.nn.functional.silu`.
 */
export function silu(x: tf.Tensor): tf.Tensor {
  checkMinRank(x, 'x', 0, 'a tensor');
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/**
 * The SwiGLU gate of LLaMA's MLP (Shazeer 2020):
 *
 *     swiglu(gate, up) = silu(gate) ⊙ up
 *
 * where `gate = gate_proj(x)` and `up = up_proj(x)`, both `[..., d_ff]`; the MLP output is
 * `down_proj(swiglu(gate, up))`. Differentiable in both inputs.
 */
export function swiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  checkMinRank(gate, 'gate', 1, '[..., d_ff]');
  checkSameShape(gate, up, 'up', 'gate');
  return tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up)); // [..., d_ff]
}
