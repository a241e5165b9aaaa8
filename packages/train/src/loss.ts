/**
 * The training loss: token-level cross-entropy of a causal LM, summed over the positions a
 * weight selects (completion tokens in fine-tuning, every real token in pretraining).
 *
 *     nll[n]  = logsumexp(logits[n, :]) − logits[n, target[n]]
 *     loss    = Σ_n weight[n] · nll[n]
 *
 * With `weight = lossMask / count` this is the mean over the masked positions; with
 * `weight = lossMask / totalCountOfTheAccumulatedBatch` the losses of k micro-batches add up to
 * the loss of the k-times-larger batch (gradient accumulation).
 *
 * Why not `tf.logSumExp` and autodiff: the value is the same (the tests compare it with a float64
 * reference), but autodiff through `logSumExp` takes the gradient of `max`, which builds an `Equal` mask with a
 * broadcast that tfjs-backend-wasm 4.22 runs in a slow generic loop (≈ 0.8 s for a [2048, 4096]
 * logits block, a third of a whole training step). Here the gradient is written out by hand,
 * `∂loss/∂logits[n, :] = weight[n] · (softmax(logits[n, :]) − onehot(target[n]))`, with
 * `tf.customGrad`, using only kernels that are fast on every backend.
 *
 * Where the backend registers the fused kernels `ParaCrossEntropy` and `ParaCrossEntropyGrad`
 * (@para/ops' fused.ts; @para/blas on wasm), float32 logits run as one kernel forward (loss and the
 * per-row logsumexp) and one backward (the whole `[N, V]` gradient in one pass) instead of ~12.
 */

import { ParaError } from '@para/core';
import { FUSED_KERNELS, fusedWeightedCrossEntropy, hasFusedKernel } from '@para/ops';
import * as tf from '@tensorflow/tfjs-core';

/**
 * `Σ_n weights[n] · nll[n]` (a scalar) for `logits [N, V]`, `targets [N]` int32, `weights [N]`
 * float32. Differentiable in `logits` only (targets and weights are data). Targets at
 * zero-weight positions may hold anything (they are clamped into [0, V)).
 */
export function weightedCrossEntropy(
  logits: tf.Tensor,
  targets: tf.Tensor,
  weights: tf.Tensor,
): tf.Scalar {
  if (logits.rank !== 2) {
    throw new ParaError('SHAPE_MISMATCH', 'logits must be [N, V]', {
      field: 'logits',
      expected: '[N, V]',
      actual: `[${logits.shape.join(', ')}]`,
    });
  }
  const [N, V] = logits.shape as [number, number];
  if (targets.rank !== 1 || targets.shape[0] !== N || targets.dtype !== 'int32') {
    throw new ParaError('SHAPE_MISMATCH', 'targets must be int32 [N]', {
      field: 'targets',
      expected: `int32 [${N}]`,
      actual: `${targets.dtype} [${targets.shape.join(', ')}]`,
    });
  }
  if (weights.rank !== 1 || weights.shape[0] !== N) {
    throw new ParaError('SHAPE_MISMATCH', 'weights must be [N]', {
      field: 'weights',
      expected: `[${N}]`,
      actual: `[${weights.shape.join(', ')}]`,
    });
  }
  if (
    logits.dtype === 'float32' &&
    N > 0 &&
    (logits.shape[1] as number) > 0 &&
    hasFusedKernel(FUSED_KERNELS.crossEntropy) &&
    hasFusedKernel(FUSED_KERNELS.crossEntropyGrad)
  ) {
    return tf.tidy(() =>
      fusedWeightedCrossEntropy(
        logits,
        targets,
        weights.dtype === 'float32' ? weights : tf.cast(weights, 'float32'), // [N]
      ),
    );
  }
  const f = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
    const safeTargets = tf.clipByValue(targets, 0, V - 1); // [N] int32
    const w = weights.dtype === 'float32' ? weights : tf.cast(weights, 'float32'); // [N]
    const max = tf.max(x, -1, true); // [N, 1]
    const shifted = tf.sub(x, max); // [N, V]
    const sumExp = tf.sum(tf.exp(shifted), -1); // [N]
    // Pick shifted[n, target[n]] from the flat buffer: a gather, not a one-hot product.
    const index = tf.add(tf.mul(tf.range(0, N, 1, 'int32'), tf.scalar(V, 'int32')), safeTargets); // [N]
    const picked = tf.gather(tf.reshape(shifted, [N * V]), index); // [N]
    const nll = tf.sub(tf.log(sumExp), picked); // [N]
    // Saved tensors are kept (cloned) by the engine until backprop has used them.
    save([x, safeTargets, w]);
    return {
      value: tf.sum(tf.mul(nll, w)) as tf.Scalar,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, t, ws] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const probs = tf.softmax(xs, -1); // [N, V]
        // int32 then cast: tfjs-backend-wasm 4.22's OneHot writes int32 bits even when asked for float32.
        const onehot = tf.cast(tf.oneHot(t, V), 'float32'); // [N, V]
        const scale = tf.reshape(tf.mul(ws, dy), [N, 1]); // [N, 1]
        return [tf.mul(tf.sub(probs, onehot), scale)]; // [N, V]
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(logits) as tf.Scalar;
}
