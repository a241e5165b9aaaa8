import { isParaError, Rng } from '@para/core/node';
import { describe, expect, it } from 'vitest';
import { sampleFromLogits, samplingDistribution } from '../src';
import { refSoftmax } from './helpers/reference';

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

function argmax(row: number[]): number {
  return row.reduce((best, x, i) => (x > (row[best] as number) ? i : best), 0);
}

/** Counts of `n` draws from one row. */
function draw(row: number[], n: number, options: Parameters<typeof sampleFromLogits>[1]): number[] {
  const counts = new Array<number>(row.length).fill(0);
  for (let i = 0; i < n; i++) {
    const [t] = sampleFromLogits([row], options);
    counts[t as number] = (counts[t as number] as number) + 1;
  }
  return counts;
}

/** Pearson's chi-square statistic of observed counts against probabilities p. */
function chiSquare(counts: number[], p: number[]): number {
  const n = counts.reduce((a, b) => a + b, 0);
  return counts.reduce(
    (acc, c, i) => acc + (c - n * (p[i] as number)) ** 2 / (n * (p[i] as number)),
    0,
  );
}

describe('sampleFromLogits', () => {
  it('is greedy at temperature 0, and with top-k = 1 or a tiny top-p', () => {
    const rng = new Rng(51);
    const rows = Array.from({ length: 4 }, () => Array.from(rng.normalArray(50, 0, 3)));
    const greedy = rows.map(argmax);
    expect(sampleFromLogits(rows, { temperature: 0 })).toEqual(greedy);
    for (let i = 0; i < 5; i++) {
      expect(sampleFromLogits(rows, { temperature: 1.5, topK: 1, rng })).toEqual(greedy);
      expect(sampleFromLogits(rows, { temperature: 1, topP: 1e-6, rng })).toEqual(greedy);
    }
  });

  it('gives the same samples for the same seed (and differs across seeds)', () => {
    const rows = Array.from({ length: 3 }, (_, b) =>
      Array.from({ length: 40 }, (_, j) => Math.sin(j * (b + 1))),
    );
    const run = (seed: number) => {
      const rng = new Rng(seed);
      const out: number[] = [];
      for (let i = 0; i < 20; i++)
        out.push(...sampleFromLogits(rows, { temperature: 0.8, topK: 20, topP: 0.9, rng }));
      return out;
    };
    const a = run(7);
    expect(run(7)).toEqual(a);
    expect(run(8)).not.toEqual(a);
  });
});

describe('sampling distribution (host)', () => {
  const row = [1.0, 0.5, -0.3, 2.0, 0.0, -1.0, 1.2, 0.7];

  it('temperature-1 frequencies over 20k draws match softmax (chi-square)', () => {
    const counts = draw(row, 20_000, { temperature: 1, rng: new Rng(61) });
    // 7 degrees of freedom: P(χ² > 24.3) = 0.001.
    expect(chiSquare(counts, refSoftmax(row))).toBeLessThan(24.3);
    // And the test has power: the same counts are far from the temperature-2 distribution.
    expect(chiSquare(counts, refSoftmax(row.map((x) => x / 2)))).toBeGreaterThan(100);
  });

  it('temperature scales the logits', () => {
    const counts = draw(row, 20_000, { temperature: 0.5, rng: new Rng(62) });
    expect(chiSquare(counts, refSoftmax(row.map((x) => x / 0.5)))).toBeLessThan(24.3);
  });

  it('top-k keeps exactly the k most probable tokens, renormalised', () => {
    const counts = draw(row, 20_000, { temperature: 1, topK: 3, rng: new Rng(63) });
    const top3 = [3, 6, 0]; // logits 2.0, 1.2, 1.0
    counts.forEach((c, i) => {
      if (!top3.includes(i)) expect(c, `token ${i}`).toBe(0);
    });
    const p = refSoftmax(top3.map((i) => row[i] as number));
    // 2 degrees of freedom: P(χ² > 13.8) = 0.001.
    expect(
      chiSquare(
        top3.map((i) => counts[i] as number),
        p,
      ),
    ).toBeLessThan(13.8);
  });

  it('top-p keeps the smallest set reaching p, always at least one token', () => {
    const p = refSoftmax(row);
    const order = p.map((_, i) => i).sort((a, b) => (p[b] as number) - (p[a] as number));
    // p sorted: ≈ 0.38, 0.17, 0.14, ... Choose topP between the 2- and 3-token cumulative sums.
    const c2 = (p[order[0] as number] as number) + (p[order[1] as number] as number);
    const c3 = c2 + (p[order[2] as number] as number);
    const topP = (c2 + c3) / 2;
    const counts = draw(row, 20_000, { temperature: 1, topP, rng: new Rng(64) });
    const kept = order.slice(0, 3);
    counts.forEach((c, i) => {
      if (!kept.includes(i)) expect(c, `token ${i}`).toBe(0);
    });
    expect(
      chiSquare(
        kept.map((i) => counts[i] as number),
        refSoftmax(kept.map((i) => row[i] as number)),
      ),
    ).toBeLessThan(13.8);
    // Exactly c2 keeps two tokens (the set reaching p), not three.
    const two = draw(row, 2000, { temperature: 1, topP: c2 * (1 - 1e-9), rng: new Rng(65) });
    expect(two.filter((c) => c > 0).length).toBe(2);
  });

  it('top-k then top-p: p applies to the renormalised top-k probabilities', () => {
    // With top-k = 2 the two kept tokens have probabilities ∝ e^2, e^1.2 → 0.69, 0.31; top-p 0.6
    // keeps just the first. (Over the full vocabulary, 0.38 + 0.17 < 0.6: it would keep three.)
    const counts = draw(row, 500, { temperature: 1, topK: 2, topP: 0.6, rng: new Rng(66) });
    expect(counts[3]).toBe(500);
  });

  it('samplingDistribution equals a naive sort-everything reference (ties, large vocabularies)', () => {
    /** HF order: softmax(x / T); stable sort by p desc (index asc on ties); top-k; renormalise; top-p. */
    function reference(x: number[], T: number, k: number, p: number): number[] {
      const probs = refSoftmax(x.map((v) => v / T));
      let order = probs
        .map((_, i) => i)
        .sort((a, b) => (probs[b] as number) - (probs[a] as number) || a - b);
      if (k > 0) order = order.slice(0, k);
      const z = order.reduce((a, i) => a + (probs[i] as number), 0);
      let keep = 0;
      let cum = 0;
      while (keep < order.length) {
        cum += (probs[order[keep] as number] as number) / z;
        keep++;
        if (cum >= p) break;
      }
      const kept = order.slice(0, keep);
      const zk = kept.reduce((a, i) => a + (probs[i] as number), 0);
      const out = new Array<number>(x.length).fill(0);
      for (const i of kept) out[i] = (probs[i] as number) / zk;
      return out;
    }
    const rng = new Rng(69);
    for (let trial = 0; trial < 40; trial++) {
      const V = trial % 4 === 0 ? 5000 : 1 + rng.int(300);
      const spread = [0.5, 3, 10][trial % 3] as number;
      // Logits rounded to a coarse grid, so ties are common (also at the top-k / top-p cut).
      const x = Array.from({ length: V }, () => Math.round(rng.normal(0, spread) * 2) / 2);
      const T = [1, 0.7, 1.6][trial % 3] as number;
      const k = rng.int(3) === 0 ? 0 : 1 + rng.int(Math.min(V, 60));
      const p = rng.int(3) === 0 ? 1 : 0.05 + 0.9 * rng.next();
      const got = samplingDistribution(x, { temperature: T, topK: k, topP: p });
      const want = reference(x, T, k, p);
      const label = `trial ${trial} (V ${V}, T ${T}, k ${k}, p ${p.toFixed(3)})`;
      expect(
        Array.from(got, (g) => g > 0),
        label,
      ).toEqual(want.map((w) => w > 0));
      for (let i = 0; i < V; i++)
        expect(Math.abs((got[i] as number) - (want[i] as number)), label).toBeLessThan(1e-12);
    }
    expect(Array.from(samplingDistribution([0, 3, 3, 1], { temperature: 0 }))).toEqual([
      0, 1, 0, 0,
    ]);
  });

  it('never draws banned (-Infinity) tokens', () => {
    const banned = row.map((x, i) => (i === 3 || i === 6 ? Number.NEGATIVE_INFINITY : x));
    const counts = draw(banned, 5000, { temperature: 1, rng: new Rng(67) });
    expect(counts[3]).toBe(0);
    expect(counts[6]).toBe(0);
    expect(sampleFromLogits([banned], { temperature: 0 })).toEqual([0]);
  });

  it('accepts per-row options', () => {
    const rng = new Rng(68);
    const out = sampleFromLogits(
      [row, row],
      [{ temperature: 0 }, { temperature: 1, topK: 1, rng }],
    );
    expect(out).toEqual([3, 3]);
  });

  it('validates options with typed errors naming the field', () => {
    const bad: [object, string][] = [
      [{ temperature: -1 }, 'temperature'],
      [{ temperature: Number.NaN }, 'temperature'],
      [{ temperature: 1 }, 'rng'],
      [{ temperature: 1, rng: new Rng(1), topK: 1.5 }, 'topK'],
      [{ temperature: 1, rng: new Rng(1), topK: -1 }, 'topK'],
      [{ temperature: 1, rng: new Rng(1), topP: 0 }, 'topP'],
      [{ temperature: 1, rng: new Rng(1), topP: 1.5 }, 'topP'],
    ];
    for (const [options, field] of bad) {
      const err = caught(() => sampleFromLogits([row], options));
      expect(isParaError(err, 'INVALID_ARGUMENT'), JSON.stringify(options)).toBe(true);
      expect(err).toMatchObject({ field });
    }
    expect(
      caught(() => sampleFromLogits([row], [{ temperature: 0 }, { temperature: 0 }])),
    ).toMatchObject({ field: 'options' });
    expect(
      caught(() => sampleFromLogits([[Number.NEGATIVE_INFINITY]], { temperature: 0 })),
    ).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
