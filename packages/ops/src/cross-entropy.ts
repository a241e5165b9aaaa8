import * as tf from '@tensorflow/tfjs-core';
import { ParaError } from '@para/core';
import { checkShape } from './shapes';

/**
 * Token-level cross-entropy for language modelling, with a loss mask (train on response tokens
 * only, skip padding).
 *
 *     nll[b, t] = logsumexp(logits[b, t, :]) - logits[b, t, targets[b, t]]
 *     sum       = Σ lossMask[b, t] · nll[b, t]          count = Σ lossMask[b, t]
 *     loss      = sum / count                           (0 when count = 0)
 *
 * `logits [B, T, V]` float32, `targets [B, T]` int32 (already shifted: `targets[:, t]` is the
 * token after position t), `lossMask [B, T]` 0/1 (or non-negative weights). `logsumexp`
 * subtracts the row max, so large logits do not overflow. Targets where the mask is 0 may hold
 * anything (e.g. HF's ignore index -100); they are clamped into `[0, V)` before the lookup.
 * Differentiable in `logits`.
 */

function checkInputs(logits: tf.Tensor, targets: tf.Tensor, lossMask?: tf.Tensor): [number, number, number] {
  const dims = new Map<string, number>();
  const [B, T, V] = checkShape(logits, 'logits', ['B', 'T', 'V'], dims) as [number, number, number];
  checkShape(targets, 'targets', ['B', 'T'], dims);
  if (targets.dtype !== 'int32') {
    throw new ParaError('INVALID_ARGUMENT', 'targets must be an int32 tensor', { field: 'targets', expected: 'int32', actual: targets.dtype });
  }
  if (lossMask !== undefined) checkShape(lossMask, 'lossMask', ['B', 'T'], dims);
  return [B, T, V];
}

/** Per-position negative log-likelihood `[B, T]` (no mask). */
export function tokenCrossEntropy(logits: tf.Tensor, targets: tf.Tensor): tf.Tensor {
  const [B, T, V] = checkInputs(logits, targets);
  return tf.tidy(() => {
    const N = B * T;
    const flat = tf.reshape(logits, [N, V]); // [N, V]
    const lse = tf.logSumExp(flat, -1); // [N]
    // Gather logits[n, target[n]] from the flattened [N·V] buffer (gather's gradient is a
    // scatter-add, far cheaper than a one-hot [N, V] product).
    const safeTargets = tf.clipByValue(tf.reshape(targets, [N]), 0, V - 1); // [N] int32
    const index = tf.add(tf.mul(tf.range(0, N, 1, 'int32'), tf.scalar(V, 'int32')), safeTargets); // [N] int32
    const picked = tf.gather(tf.reshape(flat, [N * V]), index); // [N]
    return tf.reshape(tf.sub(lse, picked), [B, T]); // [B, T]
  });
}

export interface MaskedLossParts {
  /** Σ mask · nll (scalar, differentiable in logits). */
  sum: tf.Scalar;
  /** Σ mask (scalar, constant). */
  count: tf.Scalar;
}

/**
 * Masked cross-entropy as a sum and a count, for gradient accumulation over micro-batches:
 * the loss of an accumulated batch is `Σ sum_i / Σ count_i`, so differentiate
 * `sum_i / totalCount` in each micro-batch.
 */
export function maskedCrossEntropySum(logits: tf.Tensor, targets: tf.Tensor, lossMask: tf.Tensor): MaskedLossParts {
  checkInputs(logits, targets, lossMask);
  return tf.tidy(() => {
    const mask = lossMask.dtype === 'float32' ? lossMask : tf.cast(lossMask, 'float32'); // [B, T]
    const nll = tokenCrossEntropy(logits, targets); // [B, T]
    return { sum: tf.sum(tf.mul(nll, mask)) as tf.Scalar, count: tf.sum(mask) as tf.Scalar };
  });
}

/** Mean cross-entropy over the positions where `lossMask` is set (0 if none is). */
export function maskedCrossEntropy(logits: tf.Tensor, targets: tf.Tensor, lossMask: tf.Tensor): tf.Scalar {
  checkInputs(logits, targets, lossMask);
  return tf.tidy(() => {
    const { sum, count } = maskedCrossEntropySum(logits, targets, lossMask);
    // count is a constant; max(count, tiny) turns 0/0 into 0 without touching real counts.
    return tf.div(sum, tf.maximum(count, 1e-20)) as tf.Scalar;
  });
}
