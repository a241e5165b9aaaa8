/**
 * Per-request state every adapter reads: which tokens of each row are the prompt.
 *
 * PARA's vectors depend on the prompt only. A training batch holds prompt + response per row,
 * so each row carries its prompt length; the pool then sees the first `promptLengths[b]` real
 * (non-padding) tokens of row `b` and nothing else. Without `promptLengths` every real token of
 * the call is prompt: the whole sequence in `forward`, the whole prompt in `prefill`.
 */

import { ParaError } from '@para/core';
import type { AdapterContext } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';

/** What a caller passes as `request` to `CausalLM.forward` / `prefill` with an adapter from this package. */
export interface AdapterRequest {
  /**
   * Prompt length of each row, in real tokens (padding not counted), one per batch row,
   * each ≥ 1. A length past the row's real tokens means the whole row is prompt.
   */
  promptLengths?: readonly number[];
}

/** Checks `request.promptLengths` against the batch size. */
export function checkPromptLengths(
  request: AdapterRequest | undefined | null,
  batch: number,
): readonly number[] | undefined {
  const L = request?.promptLengths;
  if (L === undefined || L === null) return undefined;
  if (!Array.isArray(L) || L.length !== batch || !L.every((n) => Number.isInteger(n) && n >= 1)) {
    throw new ParaError(
      'INVALID_ARGUMENT',
      'promptLengths must give one prompt length (≥ 1) per batch row',
      {
        field: 'request.promptLengths',
        expected: `${batch} integers ≥ 1`,
        actual: Array.isArray(L)
          ? `[${L.slice(0, 8).join(', ')}${L.length > 8 ? ', …' : ''}] (${L.length} values)`
          : String(L),
      },
    );
  }
  return L;
}

/**
 * `[B, T]` float32: 1 at the prompt tokens of this call, 0 at padding and response tokens.
 * Built from constants only (the token mask and the lengths), so no gradient flows through it.
 * Call inside the model's tidy (a hook).
 */
export function promptMask(ctx: AdapterContext<AdapterRequest | undefined>): tf.Tensor {
  const m = ctx.tokenMask; // [B, T]
  const [B] = m.shape as [number, number];
  const L = checkPromptLengths(ctx.request, B);
  if (L === undefined) return m;
  const index = tf.cumsum(m, 1); // [B, T]: 1-based index of each real token among the row's real tokens
  const limit = tf.tensor2d(Float32Array.from(L), [B, 1]); // [B, 1]
  return tf.mul(m, tf.cast(tf.lessEqual(index, limit), 'float32')); // [B, T]
}
