/**
 * The numbers behind the vectors heatmap (no DOM, so the unit tests check them in Node): each
 * PARA vector `l` is shown as `l - 1`, its entries averaged in equal bins so a 688-wide `l_u`
 * fits a few hundred columns, on one symmetric colour scale shared by both prompts.
 */

/** The PARA vectors of one prompt, as the worker sends them (`@para/adapters` paraPromptVectors). */
export interface VectorSet {
  targets: readonly string[];
  dims: readonly number[];
  /** layers[i][j]: layer i, target j. */
  layers: ArrayLike<number>[][];
}

/**
 * `l` → at most `maxBins` means of `l - 1` over consecutive entries (bin width
 * ceil(length / maxBins); the last bin may be shorter).
 */
export function binVector(l: ArrayLike<number>, maxBins: number): number[] {
  const n = l.length;
  if (n === 0) return [];
  const width = Math.ceil(n / Math.max(1, Math.floor(maxBins)));
  const out: number[] = [];
  for (let start = 0; start < n; start += width) {
    const end = Math.min(n, start + width);
    let s = 0;
    for (let k = start; k < end; k++) s += (l[k] as number) - 1;
    out.push(s / (end - start));
  }
  return out;
}

/**
 * The colour scale: the `q` quantile of |value| (default 0.98, so a few outliers do not wash
 * the rest out; larger values saturate), with a tiny floor so an all-zero map stays white.
 */
export function heatScale(values: readonly number[], q = 0.98): number {
  const a = values.filter((v) => Number.isFinite(v)).map((v) => Math.abs(v));
  if (a.length === 0) return 1e-6;
  a.sort((x, y) => x - y);
  const m = a[Math.min(a.length - 1, Math.floor(q * (a.length - 1)))] as number;
  return Math.max(m, 1e-6);
}
