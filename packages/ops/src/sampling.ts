import { ParaError, type Rng } from '@para/core';

/**
 * Next-token sampling, applied in Hugging Face's order (temperature → top-k → top-p):
 *
 * - `temperature = 0`: greedy, `argmax(logits)` (the first index on ties, like `torch.argmax`).
 * - otherwise `p = softmax(logits / temperature)`;
 * - `topK > 0`: keep the K most probable tokens;
 * - `topP < 1` (nucleus): of those, keep the smallest set of most probable tokens whose
 *   renormalised cumulative probability is ≥ topP (always at least one token);
 * - draw one token from the kept tokens in proportion to p, with `rng.next()`.
 *
 * The work is done on the host in float64 on logits the caller has read (one `await
 * logits.data()`; sorting a vocabulary is not a GPU job in tfjs), so samples are identical on every backend for the same logits and
 * the same seed. Logits of `-Infinity` are never drawn (use them to ban tokens).
 */
export interface SampleOptions {
  /** ≥ 0; 0 is greedy. Default 1. */
  temperature?: number;
  /** Keep the K most probable tokens; 0 or undefined disables. */
  topK?: number;
  /** Nucleus threshold in (0, 1]; 1 or undefined disables. */
  topP?: number;
  /** Seeded generator (required unless temperature is 0). Draws one `next()` per sampled row. */
  rng?: Rng;
}

interface CheckedOptions {
  temperature: number;
  topK: number;
  topP: number;
  rng: Rng | undefined;
}

function validate(options: SampleOptions, where: string, needRng = true): CheckedOptions {
  if (options === null || typeof options !== 'object') {
    throw new ParaError('INVALID_ARGUMENT', 'sampling options must be an object', { field: where });
  }
  const temperature = options.temperature ?? 1;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new ParaError('INVALID_ARGUMENT', 'temperature must be a finite number ≥ 0', {
      field: `${where}temperature`,
      expected: 'a number ≥ 0',
      actual: String(temperature),
    });
  }
  const topK = options.topK ?? 0;
  if (typeof topK !== 'number' || !Number.isInteger(topK) || topK < 0) {
    throw new ParaError('INVALID_ARGUMENT', 'topK must be an integer ≥ 0 (0 disables it)', {
      field: `${where}topK`,
      expected: 'an integer ≥ 0',
      actual: String(topK),
    });
  }
  const topP = options.topP ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) {
    throw new ParaError('INVALID_ARGUMENT', 'topP must be in (0, 1] (1 disables it)', {
      field: `${where}topP`,
      expected: 'a number in (0, 1]',
      actual: String(topP),
    });
  }
  const rng = options.rng;
  if (
    needRng &&
    temperature > 0 &&
    (rng === undefined || rng === null || typeof (rng as Rng).next !== 'function')
  ) {
    throw new ParaError(
      'INVALID_ARGUMENT',
      'sampling with temperature > 0 needs a seeded rng (an Rng from @para/core)',
      { field: `${where}rng`, expected: 'an Rng', actual: String(rng) },
    );
  }
  return { temperature, topK, topP, rng };
}

function argmax(row: ArrayLike<number>): number {
  let best = -1;
  let bestValue = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) {
    const x = row[i] as number;
    if (x > bestValue) {
      bestValue = x;
      best = i;
    }
  }
  return best;
}

/** The k-th largest value of `xs` (1-based k), by quickselect on a copy: O(V). */
function kthLargest(xs: Float64Array, k: number): number {
  const a = Float64Array.from(xs);
  const target = a.length - k; // index in ascending order
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1] as number;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while ((a[i] as number) < pivot) i++;
      while ((a[j] as number) > pivot) j--;
      if (i <= j) {
        const t = a[i] as number;
        a[i] = a[j] as number;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return a[target] as number;
}

/** Keep the `k` largest weights (ties: lower index first); zero the others in place. */
function keepTopK(weights: Float64Array, k: number): void {
  const kth = kthLargest(weights, k);
  let above = 0;
  for (let i = 0; i < weights.length; i++) if ((weights[i] as number) > kth) above++;
  let tiesLeft = k - above;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] as number;
    if (w > kth) continue;
    if (w === kth && tiesLeft > 0) tiesLeft--;
    else weights[i] = 0;
  }
}

/**
 * Keep the smallest set of largest weights whose sum reaches `p` of the total (ties: lower index
 * first; at least one); zero the others in place. Only weights ≥ τ are sorted, for the largest
 * τ (max·16⁻ʲ) whose candidates already reach `p`: they form a prefix of the sorted order, so the
 * nucleus ends among them. Typical LM distributions leave a few dozen candidates of a vocabulary.
 */
function keepTopP(weights: Float64Array, p: number): void {
  let total = 0;
  let max = 0;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] as number;
    total += w;
    if (w > max) max = w;
  }
  const need = p * total;
  let tau = max;
  for (;;) {
    let s = 0;
    for (let i = 0; i < weights.length; i++)
      if ((weights[i] as number) >= tau) s += weights[i] as number;
    if (s >= need || tau === 0) break;
    tau = tau > max * 1e-30 ? tau / 16 : 0;
  }
  const candidates: number[] = [];
  for (let i = 0; i < weights.length; i++)
    if ((weights[i] as number) >= tau && (weights[i] as number) > 0) candidates.push(i);
  candidates.sort((a, b) => (weights[b] as number) - (weights[a] as number) || a - b);
  let cumulative = 0;
  let keep = 0;
  while (keep < candidates.length) {
    cumulative += weights[candidates[keep] as number] as number;
    keep++;
    if (cumulative >= need) break;
  }
  const kept = new Uint8Array(weights.length);
  for (let r = 0; r < keep; r++) kept[candidates[r] as number] = 1;
  for (let i = 0; i < weights.length; i++) if (kept[i] === 0) weights[i] = 0;
}

/** Unnormalised kept weights after temperature, top-k and top-p (0 = excluded). */
function keptWeights(
  row: ArrayLike<number>,
  o: CheckedOptions,
  field: string,
): { weights: Float64Array; best: number } {
  const V = row.length;
  const best = argmax(row);
  if (best < 0) {
    throw new ParaError('INVALID_ARGUMENT', 'logits row has no finite value to sample from', {
      field,
      expected: 'at least one logit > -Infinity',
      actual: 'all -Infinity or NaN',
    });
  }
  const weights = new Float64Array(V);
  if (o.temperature === 0) {
    weights[best] = 1;
    return { weights, best };
  }
  const maxLogit = row[best] as number;
  // Unnormalised probabilities exp((x - max) / T) in float64; banned (−∞) and NaN logits get 0.
  for (let i = 0; i < V; i++) {
    const w = Math.exp(((row[i] as number) - maxLogit) / o.temperature);
    weights[i] = Number.isNaN(w) ? 0 : w;
  }
  if (o.topK > 0 && o.topK < V) keepTopK(weights, o.topK);
  if (o.topP < 1) keepTopP(weights, o.topP);
  return { weights, best };
}

function sampleRow(row: ArrayLike<number>, o: CheckedOptions, field: string): number {
  const { weights, best } = keptWeights(row, o, field);
  if (o.temperature === 0) return best;
  // Draw in index order over the kept tokens (filtering only removes tokens, so the same seed
  // walks the same way with or without filters).
  const V = weights.length;
  let total = 0;
  for (let i = 0; i < V; i++) total += weights[i] as number;
  const u = (o.rng as Rng).next() * total;
  let acc = 0;
  let last = best;
  for (let i = 0; i < V; i++) {
    const w = weights[i] as number;
    if (w === 0) continue;
    acc += w;
    last = i;
    if (u < acc) return i;
  }
  return last;
}

/**
 * The distribution {@link sampleFromLogits} draws from for one row of logits, after temperature,
 * top-k and top-p: probabilities `[V]` summing to 1, 0 for excluded tokens (one-hot at the
 * argmax when temperature is 0). Useful to score a token or to check the filters. No rng needed.
 */
export function samplingDistribution(
  row: ArrayLike<number>,
  options: Omit<SampleOptions, 'rng'>,
): Float64Array {
  const o = validate(
    { ...options, rng: undefined, temperature: options.temperature ?? 1 },
    '',
    false,
  );
  const { weights } = keptWeights(row, o, 'logits');
  let total = 0;
  for (let i = 0; i < weights.length; i++) total += weights[i] as number;
  for (let i = 0; i < weights.length; i++) weights[i] = (weights[i] as number) / total;
  return weights;
}

/**
 * Sample one token per row from host logits (`rows[b]` has V entries). Synchronous.
 * `options` may be one object for all rows or one per row (per-tenant settings); rows draw from
 * their rng in row order.
 */
export function sampleFromLogits(
  rows: ArrayLike<number>[],
  options: SampleOptions | SampleOptions[],
): number[] {
  const perRow = Array.isArray(options);
  if (perRow && options.length !== rows.length) {
    throw new ParaError('INVALID_ARGUMENT', 'one options object per row is needed', {
      field: 'options',
      expected: `${rows.length} entries`,
      actual: `${options.length}`,
    });
  }
  const shared = perRow ? undefined : validate(options, '');
  return rows.map((row, b) => {
    const o =
      shared ?? validate((options as SampleOptions[])[b] as SampleOptions, `options[${b}].`);
    return sampleRow(row, o, `logits[${b}]`);
  });
}
