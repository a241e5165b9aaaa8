import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS, fusedSwiglu, hasFusedKernel } from './fused';
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
 *
 * Where the backend registers the fused kernel `ParaSwiGlu` (see `fused.ts`; @para/blas does on
 * wasm) float32 inputs run as one kernel, their gradient as one more; otherwise tfjs ops.
 */
export function swiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  checkMinRank(gate, 'gate', 1, '[..., d_ff]');
  checkSameShape(gate, up, 'up', 'gate');
  if (
    gate.dtype === 'float32' &&
    up.dtype === 'float32' &&
    gate.size > 0 &&
    hasFusedKernel(FUSED_KERNELS.swiglu)
  ) {
    return fusedSwiglu(gate, up);
  }
  return tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up)); // [..., d_ff]
}

/**
 * GELU in its tanh approximation, as `torch.nn.functional.gelu(x, approximate="tanh")`
 * (transformers' `gelu_pytorch_tanh`, Gemma's `hidden_activation`):
 *
 *     gelu(x) = 0.5 · x · (1 + tanh(sqrt(2/π) · (x + 0.044715 · x³)))
 */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  checkMinRank(x, 'x', 0, 'a tensor');
  return tf.tidy(() => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
    return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(inner)));
  });
}

/**
 * The GeGLU gate of Gemma's MLP: `geglu(gate, up) = gelu_tanh(gate) ⊙ up`, both `[..., d_ff]`;
 * the MLP output is `down_proj(geglu(gate_proj(x), up_proj(x)))`. Differentiable in both.
 */
export function geglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  checkMinRank(gate, 'gate', 1, '[..., d_ff]');
  checkSameShape(gate, up, 'up', 'gate');
  return tf.tidy(() => tf.mul(geluTanh(gate), up)); // [..., d_ff]
}
