/**
 * BPE's merge loop for long words: a doubly linked list of symbols and a min-heap keyed by
 * (rank, position), so each merge costs O(log n) instead of a rescan of the word. The merge
 * order is exactly the simple loop's (lowest rank first, leftmost first on equal ranks). Shared
 * by our byte-level encoder (bpe-encoder.ts) and the long-word path patched into
 * `@huggingface/tokenizers` (fast-bpe.ts). Written by hand: no library exposes this loop.
 */

/**
 * Merges `sym` in place: `rankOf(a, b)` is the rank of merging symbols a and b (undefined: no
 * merge), `resultOf(rank)` the symbol that merge makes. Returns the positions of the surviving
 * symbols, in order (read their symbols from `sym`).
 */
export function mergeByRank(
  sym: Int32Array,
  rankOf: (left: number, right: number) => number | undefined,
  resultOf: (rank: number) => number,
): number[] {
  const n = sym.length;
  if (n === 0) return [];
  const prev = new Int32Array(n);
  const next = new Int32Array(n);
  const alive = new Uint8Array(n).fill(1);
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  const rankAt = (i: number): number | undefined => {
    const j = next[i]!;
    return j < 0 ? undefined : rankOf(sym[i]!, sym[j]!);
  };
  // Entries: rank * n + position (the left symbol's index), smallest first; an entry is checked
  // when popped, since its pair may have changed after it was pushed.
  const heap: number[] = [];
  const push = (v: number) => {
    let i = heap.length;
    heap.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heap[p]! <= v) break;
      heap[i] = heap[p]!;
      i = p;
    }
    heap[i] = v;
  };
  const pop = (): number => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= heap.length) break;
        const r = l + 1;
        const c = r < heap.length && heap[r]! < heap[l]! ? r : l;
        if (heap[c]! >= last) break;
        heap[i] = heap[c]!;
        i = c;
      }
      heap[i] = last;
    }
    return top;
  };
  const consider = (i: number) => {
    const r = rankAt(i);
    if (r !== undefined) push(r * n + i);
  };
  for (let i = 0; i + 1 < n; i++) consider(i);
  while (heap.length > 0) {
    const v = pop();
    const rank = Math.floor(v / n);
    const i = v - rank * n;
    // Stale when the pair at i changed since it was pushed (a rank names exactly one pair).
    if (!alive[i] || rankAt(i) !== rank) continue;
    const j = next[i]!;
    sym[i] = resultOf(rank);
    alive[j] = 0;
    next[i] = next[j]!;
    if (next[i]! >= 0) prev[next[i]!] = i;
    if (prev[i]! >= 0) consider(prev[i]!);
    consider(i);
  }
  const out: number[] = [];
  for (let i = 0; i >= 0; i = next[i]!) out.push(i);
  return out;
}
