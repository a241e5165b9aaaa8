/** Small timing helpers shared by the `para bench` subcommands. */

/**
 * Median wall time (ms) of `fn` after warm-up calls (one, or as many as fill `warmupMs`):
 * repeats until `budgetMs` has passed (at least `minReps` timed calls, at most `maxReps`).
 * A warm-up of a few seconds matters on Node: V8 keeps optimising the per-kernel JavaScript
 * for the first few thousand kernel calls, compiling on a core OpenBLAS's threads would use.
 */
export async function medianMs(
  fn: () => void | Promise<void>,
  opts: { budgetMs?: number; minReps?: number; maxReps?: number; warmupMs?: number } = {},
): Promise<number> {
  const { budgetMs = 1000, minReps = 3, maxReps = 50, warmupMs = 0 } = opts;
  const warmStart = performance.now();
  do await fn();
  while (performance.now() - warmStart < warmupMs);
  const times: number[] = [];
  const start = performance.now();
  while (
    times.length < maxReps &&
    (times.length < minReps || performance.now() - start < budgetMs)
  ) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
    // A very slow path (stock wasm on a transposed shape) gets one timed call past its budget.
    if (performance.now() - start > budgetMs * 4) break;
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] as number;
}

/** Round for display. */
export function fmt(x: number | null, digits = 1): string {
  return x === null ? '—' : x.toFixed(digits);
}
