import { ParaError } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import { checkMatrix, checkPositiveInt, checkShape } from './shapes';

/**
 * Padding, position ids and attention masks for batches of rows with different lengths.
 *
 * Conventions (the same as Hugging Face's `generate`):
 * - A batch is a rectangle of **slots** `[B, S]`; `keyValid[b][s]` is 1 where slot `s` of row
 *   `b` holds a real token and 0 where it holds padding (HF's `attention_mask`).
 * - Prompts are **left**-padded for generation ({@link padBatch} with `side: 'left'`), so every
 *   row's next token goes into the same new slot. Right padding also works for a single forward
 *   pass (training); the rules below hold for any 0/1 pattern.
 * - Position ids count real tokens: `position = cumsum(keyValid) - 1` along the row; padding
 *   slots get position 1 (HF fills them with 1; their outputs are never used).
 * - Causality is by slot: the query in slot `i` attends to key slot `j` iff `j ≤ i` and
 *   `keyValid[b][j] = 1`. Queries fill the **last** T of the S slots (in a step with a KV cache
 *   the earlier slots are the cached past).
 * - The mask is **additive**, float32 `[B, 1, T, S]`: 0 where attention is allowed,
 *   {@link MASK_NEGATIVE} where not. It is finite, so a fully masked query row (a padding slot
 *   on the left) softmaxes to a finite uniform distribution instead of NaN; that row's output
 *   is meaningless but harmless.
 */

/** The additive mask value for a forbidden (query, key) pair. Finite on purpose (no NaN). */
export const MASK_NEGATIVE = -1e9;

export type PaddingSide = 'left' | 'right';

export interface PaddedBatch {
  /** Token ids `[B][L]`, padded with `padId`. */
  ids: number[][];
  /** 1 for a real token, 0 for padding `[B][L]` (HF `attention_mask`). */
  mask: number[][];
  /** Real tokens per row. */
  lengths: number[];
}

/**
 * Pad token-id sequences to a common length `L = max(length)` (or `options.length` if larger).
 * `side` defaults to `'left'`, the convention for batched generation.
 */
export function padBatch(
  sequences: number[][],
  options: { padId: number; side?: PaddingSide; length?: number },
): PaddedBatch {
  if (
    !Array.isArray(sequences) ||
    sequences.length === 0 ||
    !sequences.every((s) => Array.isArray(s))
  ) {
    throw new ParaError('INVALID_ARGUMENT', 'expected a non-empty array of token-id arrays', {
      field: 'sequences',
    });
  }
  const side = options.side ?? 'left';
  if (side !== 'left' && side !== 'right') {
    throw new ParaError('INVALID_ARGUMENT', 'side must be "left" or "right"', {
      field: 'side',
      actual: String(side),
    });
  }
  if (!Number.isInteger(options.padId)) {
    throw new ParaError('INVALID_ARGUMENT', 'padId must be an integer', {
      field: 'padId',
      actual: String(options.padId),
    });
  }
  const longest = Math.max(...sequences.map((s) => s.length));
  const L = Math.max(longest, options.length ?? 0);
  const ids: number[][] = [];
  const mask: number[][] = [];
  for (const s of sequences) {
    const pad = L - s.length;
    const padIds = new Array<number>(pad).fill(options.padId);
    const zeros = new Array<number>(pad).fill(0);
    const ones = new Array<number>(s.length).fill(1);
    ids.push(side === 'left' ? [...padIds, ...s] : [...s, ...padIds]);
    mask.push(side === 'left' ? [...zeros, ...ones] : [...ones, ...zeros]);
  }
  return { ids, mask, lengths: sequences.map((s) => s.length) };
}

function checkValid(keyValid: number[][], field: string): [number, number] {
  const [B, S] = checkMatrix(keyValid, field);
  keyValid.forEach((row, b) => {
    row.forEach((v, s) => {
      if (v !== 0 && v !== 1) {
        throw new ParaError('INVALID_ARGUMENT', 'mask entries must be 0 or 1', {
          field: `${field}[${b}][${s}]`,
          expected: '0 or 1',
          actual: String(v),
        });
      }
    });
  });
  return [B, S];
}

/**
 * Position ids from a 0/1 mask, as HF: `cumsum(mask, -1) - 1`, padding slots set to 1.
 * Returns the last `queryLength` columns (default: all), `[B][T]`.
 */
export function positionIdsFromMask(keyValid: number[][], queryLength?: number): number[][] {
  const [, S] = checkValid(keyValid, 'keyValid');
  const T = queryLength ?? S;
  checkPositiveInt(T, 'queryLength');
  if (T > S) {
    throw new ParaError('SHAPE_MISMATCH', 'queryLength exceeds the mask length', {
      field: 'queryLength',
      expected: `at most ${S}`,
      actual: String(T),
    });
  }
  return keyValid.map((row) => {
    const out: number[] = [];
    let count = 0;
    row.forEach((v, s) => {
      count += v;
      if (s >= S - T) out.push(v === 1 ? count - 1 : 1);
    });
    return out;
  });
}

export interface AttentionMaskOptions {
  /** `[B, S]` 0/1 validity of every key slot (host arrays, or a tensor of 0/1). */
  keyValid: number[][] | tf.Tensor;
  /** Number of queries T; they sit in the last T slots. Default S (a full forward pass). */
  queryLength?: number;
  /** Apply causality (default true). `false` gives a padding-only mask. */
  causal?: boolean;
  /**
   * Sliding-window attention (Mistral, Qwen2/3 sliding layers, Gemma's local layers): query slot
   * `q` sees only key slots `s > q - slidingWindow` (itself and the `slidingWindow - 1` slots
   * before), as transformers' `sliding_window_overlay`. Default: no window.
   */
  slidingWindow?: number | null;
}

/**
 * The additive attention mask `[B, 1, T, S]`: 0 where query `t` (slot `S - T + t`) may attend
 * to key slot `s` (`s ≤ S - T + t` when causal, and `keyValid[b][s] = 1`), {@link MASK_NEGATIVE}
 * elsewhere. The caller disposes it.
 */
export function attentionMask(options: AttentionMaskOptions): tf.Tensor {
  const { keyValid, causal = true } = options;
  const W = options.slidingWindow ?? null;
  if (W !== null) checkPositiveInt(W, 'slidingWindow');
  const inWindow = (q: number, s: number) => W === null || s > q - W;
  if (Array.isArray(keyValid)) {
    const [B, S] = checkValid(keyValid, 'keyValid');
    const T = options.queryLength ?? S;
    checkPositiveInt(T, 'queryLength');
    if (T > S) {
      throw new ParaError('SHAPE_MISMATCH', 'queryLength exceeds the number of key slots', {
        field: 'queryLength',
        expected: `at most ${S}`,
        actual: String(T),
      });
    }
    const out = new Float32Array(B * T * S); // [B, 1, T, S]
    for (let b = 0; b < B; b++) {
      const row = keyValid[b] as number[];
      for (let t = 0; t < T; t++) {
        const last = causal ? S - T + t : S - 1;
        const base = (b * T + t) * S;
        for (let s = 0; s < S; s++)
          out[base + s] = s <= last && row[s] === 1 && inWindow(S - T + t, s) ? 0 : MASK_NEGATIVE;
      }
    }
    return tf.tensor4d(out, [B, 1, T, S]);
  }
  const [B, S] = checkShape(keyValid, 'keyValid', ['B', 'S']) as [number, number];
  const T = options.queryLength ?? S;
  checkPositiveInt(T, 'queryLength');
  if (T > S) {
    throw new ParaError('SHAPE_MISMATCH', 'queryLength exceeds the number of key slots', {
      field: 'queryLength',
      expected: `at most ${S}`,
      actual: String(T),
    });
  }
  const allowedCausal = new Float32Array(T * S); // [T, S]
  for (let t = 0; t < T; t++)
    for (let s = 0; s < S; s++)
      allowedCausal[t * S + s] = (!causal || s <= S - T + t) && inWindow(S - T + t, s) ? 1 : 0;
  return tf.tidy(() => {
    const valid = tf.reshape(tf.cast(keyValid, 'float32'), [B, 1, 1, S]); // [B, 1, 1, S]
    const allowed = tf.mul(tf.tensor4d(allowedCausal, [1, 1, T, S]), valid); // [B, 1, T, S]
    return tf.mul(tf.sub(1, allowed), MASK_NEGATIVE); // [B, 1, T, S]
  });
}
