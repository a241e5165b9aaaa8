/**
 * Batches: examples (token ids + prompt length) → left-padded `[B, T]` ids, the attention mask,
 * next-token targets and a loss mask that covers completion tokens only.
 *
 * Left padding is the model's convention (@para/ops, @para/model): a row's real tokens end at
 * position T−1 and its position ids are `cumsum(mask) − 1`, so a padded row computes exactly
 * what the row alone computes. A row of n real tokens `r[0..n−1]` sits at positions
 * `off..T−1`, `off = T − n`:
 *
 *     ids[b, off + j]      = r[j]
 *     targets[b, off + j]  = r[j + 1]                       (j < n − 1; the last position has no target)
 *     weights[b, off + j]  = 1  iff  j + 1 ≥ promptLength   (the target is a completion token or EOS)
 *
 * and `promptLengths[b]` counts real tokens (the `AdapterRequest` convention of
 * @para/adapters: PARA pools over the first `promptLength` real tokens of the row, wherever the
 * padding puts them).
 */

import { ParaError, type Rng } from '@para/core';

/** One training example after tokenisation. */
export interface TokenizedExample {
  /** bos? + prompt + completion + eos. */
  ids: number[];
  /** Tokens of the prompt (bos included), ≥ 1 and < ids.length. */
  promptLength: number;
  /** Where it came from, for messages (`file:line`). */
  source?: string;
}

export interface Batch {
  /** `[B, T]`, left-padded. */
  ids: number[][];
  /** `[B, T]` 1 for a real token, 0 for padding; null when every token is real. */
  attentionMask: number[][] | null;
  /** `[B·T]` next-token targets (row-major; padding and the last position hold `padId`). */
  targets: Int32Array;
  /** `[B·T]` 1 where the loss counts (completion tokens), else 0. */
  weights: Float32Array;
  /** Prompt length of each row in real tokens (for PARA), or null (no prompt: pretraining). */
  promptLengths: number[] | null;
  /** Real tokens in the batch. */
  tokens: number;
  /** Positions the loss counts (Σ weights). */
  lossTokens: number;
}

export function batchShape(b: Batch): [number, number] {
  return [b.ids.length, (b.ids[0] ?? []).length];
}

/** Collates examples into one left-padded batch (T = the longest row). */
export function collate(examples: readonly TokenizedExample[], padId: number): Batch {
  if (examples.length === 0)
    throw new ParaError('INVALID_ARGUMENT', 'cannot collate an empty batch', {
      field: 'examples',
      expected: 'at least one example',
    });
  const T = examples.reduce((m, e) => Math.max(m, e.ids.length), 0);
  const B = examples.length;
  const ids: number[][] = [];
  const mask: number[][] = [];
  const targets = new Int32Array(B * T).fill(padId);
  const weights = new Float32Array(B * T);
  let tokens = 0;
  let lossTokens = 0;
  let padded = false;
  examples.forEach((e, b) => {
    const n = e.ids.length;
    if (!(Number.isInteger(e.promptLength) && e.promptLength >= 1 && e.promptLength < n)) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        'an example needs a prompt and at least one completion token',
        {
          field: e.source ?? `examples[${b}]`,
          expected: `1 ≤ promptLength < ${n} (the number of tokens)`,
          actual: String(e.promptLength),
        },
      );
    }
    const off = T - n;
    if (off > 0) padded = true;
    ids.push([...new Array<number>(off).fill(padId), ...e.ids]);
    mask.push([...new Array<number>(off).fill(0), ...new Array<number>(n).fill(1)]);
    for (let j = 0; j < n - 1; j++) {
      targets[b * T + off + j] = e.ids[j + 1] as number;
      if (j + 1 >= e.promptLength) {
        weights[b * T + off + j] = 1;
        lossTokens++;
      }
    }
    tokens += n;
  });
  return {
    ids,
    attentionMask: padded ? mask : null,
    targets,
    weights,
    promptLengths: examples.map((e) => e.promptLength),
    tokens,
    lossTokens,
  };
}

/**
 * A pretraining batch from windows of T + 1 tokens: inputs are the first T, targets the last T,
 * every position counts; no padding, no prompt.
 */
export function collateWindows(windows: readonly (readonly number[] | Int32Array)[]): Batch {
  if (windows.length === 0)
    throw new ParaError('INVALID_ARGUMENT', 'cannot collate an empty batch', {
      field: 'windows',
      expected: 'at least one window',
    });
  const T = windows[0]!.length - 1;
  const B = windows.length;
  const ids: number[][] = [];
  const targets = new Int32Array(B * T);
  windows.forEach((w, b) => {
    if (w.length !== T + 1)
      throw new ParaError('SHAPE_MISMATCH', 'windows must have equal lengths', {
        field: `windows[${b}]`,
        expected: `${T + 1} tokens`,
        actual: String(w.length),
      });
    ids.push(Array.from(w.slice(0, T)));
    for (let t = 0; t < T; t++) targets[b * T + t] = w[t + 1] as number;
  });
  return {
    ids,
    attentionMask: null,
    targets,
    weights: new Float32Array(B * T).fill(1),
    promptLengths: null,
    tokens: B * T,
    lossTokens: B * T,
  };
}

/**
 * Length-bucketed batch order for one epoch: shuffle, cut into pools of `poolBatches` batches,
 * sort each pool by length, cut it into batches, shuffle the batches. Rows of a batch then have
 * similar lengths (little padding) while the order stays random. Returns example indices.
 */
export function bucketedBatches(
  lengths: readonly number[],
  batchSize: number,
  rng: Rng,
  poolBatches = 32,
): number[][] {
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new ParaError('INVALID_ARGUMENT', 'bad batch size', {
      field: 'batchSize',
      expected: 'an integer ≥ 1',
      actual: String(batchSize),
    });
  const order = rng.shuffle(Array.from(lengths, (_, i) => i));
  const pool = batchSize * poolBatches;
  const batches: number[][] = [];
  for (let start = 0; start < order.length; start += pool) {
    const chunk = order.slice(start, start + pool);
    // Stable sort: equal lengths keep their shuffled order.
    chunk.sort((a, b) => (lengths[a] as number) - (lengths[b] as number));
    for (let i = 0; i < chunk.length; i += batchSize) batches.push(chunk.slice(i, i + batchSize));
  }
  return rng.shuffle(batches);
}

/** Batches in order of length (for evaluation: least padding, deterministic). */
export function sortedBatches(lengths: readonly number[], batchSize: number): number[][] {
  const order = Array.from(lengths, (_, i) => i).sort(
    (a, b) => (lengths[a] as number) - (lengths[b] as number) || a - b,
  );
  const batches: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) batches.push(order.slice(i, i + batchSize));
  return batches;
}

/** Splits a batch's example indices into micro-batches of at most `micro`, by length (tight padding). */
export function microBatches(
  indices: readonly number[],
  lengths: readonly number[],
  micro: number,
): number[][] {
  if (micro >= indices.length) return [indices.slice()];
  const sorted = indices
    .slice()
    .sort((a, b) => (lengths[a] as number) - (lengths[b] as number) || a - b);
  const out: number[][] = [];
  for (let i = 0; i < sorted.length; i += micro) out.push(sorted.slice(i, i + micro));
  return out;
}
