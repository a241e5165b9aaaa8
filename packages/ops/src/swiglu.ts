import { ParaError } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS, fusedSwiglu, hasFusedKernel, recordingGradients } from './fused';
import { scaleRows } from './scale';
import { checkMinRank, checkSameShape, describeShape } from './shapes';

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
 * wasm) float32 inputs run as one kernel, their gradient as one more; otherwise tfjs ops. With
 * `options` ({@link SwigluScales}) a per-row scale is folded in (`ParaSwiGluScaled`: @para/webgpu
 * on webgpu, @para/blas on wasm).
 */
export function swiglu(gate: tf.Tensor, up: tf.Tensor, options: SwigluScales = {}): tf.Tensor {
  checkMinRank(gate, 'gate', 1, '[..., d_ff]');
  checkSameShape(gate, up, 'up', 'gate');
  const { upScale, outScale } = options;
  if (upScale !== undefined || outScale !== undefined) return swigluScaled(gate, up, options);
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
 * Per-row scales folded into {@link swiglu} (PARA's `l_u` on up_proj's output, IA3's vector on
 * down_proj's input), each `[B or 1, 1, d_ff]` for `gate`/`up` `[B, T, d_ff]`.
 */
export interface SwigluScales {
  /** `silu(gate) ⊙ (up ⊙ upScale)`. */
  upScale?: tf.Tensor;
  /** `(silu(gate) ⊙ up) ⊙ outScale`. */
  outScale?: tf.Tensor;
}

function checkScale(s: tf.Tensor, gate: tf.Tensor, field: string): void {
  const [B, , F] = gate.shape as [number, number, number];
  const ok =
    gate.rank === 3 && s.rank === 3 && (s.shape[0] === B || s.shape[0] === 1) && s.shape[1] === 1;
  if (!ok || s.shape[2] !== F) {
    throw new ParaError('SHAPE_MISMATCH', `${field} must broadcast over gate's rows`, {
      field,
      expected: gate.rank === 3 ? describeShape([B, 1, F]) : 'gate [B, T, d_ff] and [B, 1, d_ff]',
      actual: describeShape(s.shape),
    });
  }
}

/**
 * SwiGLU with scales: one `ParaSwiGluScaled` kernel where the backend has it and no gradient is
 * recorded (it has none; both scales multiply into one first when both are given), otherwise the
 * generic ops in the order written above (the same values the unfused layer computed), each
 * scale as {@link scaleRows} (ParaScale, with its gradient, where the backend has it).
 */
function swigluScaled(gate: tf.Tensor, up: tf.Tensor, options: SwigluScales): tf.Tensor {
  const { upScale, outScale } = options;
  if (upScale !== undefined) checkScale(upScale, gate, 'upScale');
  if (outScale !== undefined) checkScale(outScale, gate, 'outScale');
  const scales = [upScale, outScale].filter((s): s is tf.Tensor => s !== undefined);
  if (
    gate.dtype === 'float32' &&
    up.dtype === 'float32' &&
    scales.every((s) => s.dtype === 'float32') &&
    gate.size > 0 &&
    hasFusedKernel(FUSED_KERNELS.swigluScaled) &&
    !recordingGradients()
  ) {
    return tf.tidy(() => {
      const [s0, s1] = scales as [tf.Tensor, tf.Tensor?];
      const scale = s1 === undefined ? s0 : tf.mul(s0, s1); // [B|1, 1, F]
      return tf.engine().runKernel(FUSED_KERNELS.swigluScaled, { gate, up, scale }) as tf.Tensor; // [B, T, F]
    });
  }
  return tf.tidy(() => {
    const u = upScale === undefined ? up : scaleRows(up, upScale); // [B, T, F]
    const y = swiglu(gate, u); // [B, T, F]
    return outScale === undefined ? y : scaleRows(y, outScale); // [B, T, F]
  });
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
