import { ParaError } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS, fusedScale, hasFusedKernel, recordingGradients } from './fused';
import { describeShape } from './shapes';

/**
 * A per-row scale of a projection's output: `x [B, T, F] ⊙ scale [B or 1, 1, F]`, every position
 * of row b multiplied by row b's vector (PARA's l_q, l_v, l_u; IA3's vectors). The same numbers
 * as `tf.mul(x, scale)`; differentiable in both.
 *
 * Where the backend registers the fused kernels `ParaScale` and `ParaScaleGrad` (see `fused.ts`;
 * @para/blas does on wasm) float32 inputs run as one kernel and their gradient as one more: the
 * broadcast multiply's backward (dy · scale, then dy · x summed over T) in one pass. Otherwise
 * `tf.mul`.
 */
export function scaleRows(x: tf.Tensor, scale: tf.Tensor): tf.Tensor {
  const [B, , F] = x.shape as [number, number, number];
  if (
    x.rank !== 3 ||
    scale.rank !== 3 ||
    (scale.shape[0] !== B && scale.shape[0] !== 1) ||
    scale.shape[1] !== 1 ||
    scale.shape[2] !== F
  ) {
    throw new ParaError('SHAPE_MISMATCH', 'scale must broadcast over the rows of x', {
      field: 'scale',
      expected: x.rank === 3 ? describeShape([B, 1, F]) : 'x [B, T, F] and scale [B or 1, 1, F]',
      actual: `x ${describeShape(x.shape)}, scale ${describeShape(scale.shape)}`,
    });
  }
  if (
    x.dtype === 'float32' &&
    scale.dtype === 'float32' &&
    x.size > 0 &&
    hasFusedKernel(FUSED_KERNELS.scale) &&
    (hasFusedKernel(FUSED_KERNELS.scaleGrad) || !recordingGradients())
  ) {
    return fusedScale(x, scale); // [B, T, F]
  }
  return tf.mul(x, scale); // [B, T, F]
}
