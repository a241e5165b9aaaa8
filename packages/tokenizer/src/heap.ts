/**
 * A binary max-heap of (count, key) entries in typed arrays: larger count first, and on equal
 * counts the smaller key first, so the trainer's choice among tied pairs is deterministic.
 */
export class PairHeap {
  private counts: Float64Array;
  private keys: Float64Array;
  size = 0;

  constructor(capacity = 1024) {
    this.counts = new Float64Array(Math.max(16, capacity));
    this.keys = new Float64Array(Math.max(16, capacity));
  }

  /** True when entry i should sit above entry j. */
  private above(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i]!;
    this.counts[i] = this.counts[j]!;
    this.counts[j] = c;
    const k = this.keys[i]!;
    this.keys[i] = this.keys[j]!;
    this.keys[j] = k;
  }

  push(count: number, key: number): void {
    if (this.size === this.counts.length) {
      const counts = new Float64Array(this.size * 2);
      counts.set(this.counts);
      this.counts = counts;
      const keys = new Float64Array(this.size * 2);
      keys.set(this.keys);
      this.keys = keys;
    }
    let i = this.size++;
    this.counts[i] = count;
    this.keys[i] = key;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** Count and key of the top entry (undefined when empty). */
  peekCount(): number {
    return this.counts[0]!;
  }

  peekKey(): number {
    return this.keys[0]!;
  }

  /** Removes the top entry. */
  pop(): void {
    const last = --this.size;
    if (last === 0) return;
    this.counts[0] = this.counts[last]!;
    this.keys[0] = this.keys[last]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= last) break;
      const r = l + 1;
      const best = r < last && this.above(r, l) ? r : l;
      if (!this.above(best, i)) break;
      this.swap(i, best);
      i = best;
    }
  }
}
