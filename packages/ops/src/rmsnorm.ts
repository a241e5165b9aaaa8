import { ParaError } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS, fusedAddRmsNorm, fusedRmsNorm, hasFusedKernel } from './fused';
import { checkMinRank, checkSameShape, checkShape } from './shapes';

function checkEps(eps: number): void {
  if (typeof eps !== 'number' || !(eps >= 0) || !Number.isFinite(eps)) {
    throw new ParaError('INVALID_ARGUMENT', 'eps must be a finite number ≥ 0', {
      field: 'eps',
      actual: String(eps),
    });
  }
}

export interface RmsNormOptions {
  /**
   * Gemma's `Gemma2RMSNorm` / `Gemma3RMSNorm`: the stored weight is an offset from 1, applied
   * as `(1 + weight)` (HF computes it in float32 whatever the model dtype, as we always do).
   */
  unitOffset?: boolean;
}

/**
 * RMSNorm (Zhang & Sennrich 2019), as Hugging Face's `LlamaRMSNorm`:
 *
 *     y = x · rsqrt(mean(x², axis = -1) + eps) · weight          (unitOffset: · (1 + weight))
 *
 * over the last axis, in float32. `x` is `[..., d]`, `weight` is `[d]`; the result has x's
 * shape. Differentiable in both `x` and `weight`.
 *
 * Where the backend registers the fused kernel `ParaRmsNorm` (see `fused.ts`; @para/blas does on
 * wasm) a float32 weight runs as one kernel, its gradient as one more; otherwise tfjs ops.
 */
export function rmsNorm(
  x: tf.Tensor,
  weight: tf.Tensor,
  eps = 1e-6,
  options: RmsNormOptions = {},
): tf.Tensor {
  const shape = checkMinRank(x, 'x', 1, '[..., d]');
  const d = shape[shape.length - 1] as number;
  checkShape(weight, 'weight', [d]);
  checkEps(eps);
  const unitOffset = options.unitOffset === true;
  if (weight.dtype === 'float32' && x.size > 0 && hasFusedKernel(FUSED_KERNELS.rmsNorm)) {
    return tf.tidy(() =>
      fusedRmsNorm(x.dtype === 'float32' ? x : tf.cast(x, 'float32'), weight, eps, unitOffset),
    );
  }
  return tf.tidy(() => {
    const xf = x.dtype === 'float32' ? x : tf.cast(x, 'float32');
    const meanSquare = tf.mean(tf.square(xf), -1, true); // [..., 1]
    const inv = tf.rsqrt(tf.add(meanSquare, eps)); // [..., 1]
    const w = unitOffset ? tf.add(1, weight) : weight; // [d]
    return tf.mul(tf.mul(xf, inv), w); // [..., d]
  });
}

/**
 * The residual add and the RMSNorm that follows it in a pre-norm decoder layer, as one op:
 *
 *     sum = x + residual;   normed = rmsNorm(sum, weight, eps, options)
 *
 * `x` and `residual` are `[..., d]` of one shape, `weight` `[d]`; returns `[sum, normed]` with x's
 * shape (normed in float32), differentiable in x, residual and weight. Where the backend registers
 * `ParaAddRmsNorm` (see `fused.ts`; @para/blas does on wasm) float32 inputs run as one kernel (and
 * the gradient, which both addends share, as one more); otherwise `tf.add` then {@link rmsNorm}.
 */
export function addRmsNorm(
  x: tf.Tensor,
  residual: tf.Tensor,
  weight: tf.Tensor,
  eps = 1e-6,
  options: RmsNormOptions = {},
): [tf.Tensor, tf.Tensor] {
  const shape = checkMinRank(x, 'x', 1, '[..., d]');
  checkSameShape(x, residual, 'residual', 'x');
  checkShape(weight, 'weight', [shape[shape.length - 1] as number]);
  checkEps(eps);
  if (
    x.dtype === 'float32' &&
    residual.dtype === 'float32' &&
    weight.dtype === 'float32' &&
    x.size > 0 &&
    hasFusedKernel(FUSED_KERNELS.addRmsNorm)
  ) {
    return fusedAddRmsNorm(x, residual, weight, eps, options.unitOffset === true);
  }
  const sum = tf.add(x, residual); // [..., d]
  return [sum, rmsNorm(sum, weight, eps, options)];
}
