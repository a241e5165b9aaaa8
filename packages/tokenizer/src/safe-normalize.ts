/**
 * Unicode normalization (NFC, NFKC, …) in linear time on hostile text.
 *
 * `String.prototype.normalize` (ICU in V8) puts combining marks in canonical order with an
 * insertion into a buffer, so a long run of marks whose combining classes alternate — "\u0301\u0316"
 * repeated — is quadratic: 100,000 marks take seconds, a megabyte minutes. Tokenizers whose
 * normalizer is NFC (Qwen's), NFKC or a SentencePiece `Precompiled` map (T5, ALBERT), or that
 * strip accents (BERT) call it on every text.
 *
 * The fix keeps the results identical: before normalizing, every run of 32 or more combining
 * marks is rewritten into a canonically equivalent form — each mark decomposed on its own, then
 * each stretch between starters stably sorted by combining class (exactly Unicode's canonical
 * ordering, done by a counting sort in linear time). Canonically equivalent strings have the same NFC, NFD, NFKC and
 * NFKD, so `normalize` then gives the same text — but finds the marks already in order, which it
 * handles in linear time. JavaScript has no combining-class table, so the order of two marks is
 * read from `normalize` itself on the pair ("ab" → "ba" when b's class is lower), once per
 * distinct mark.
 */
import { Normalizer, type Tokenizer } from '@huggingface/tokenizers';

/** Runs this long are rewritten; the stream-safe text format of UAX #15 allows 30 marks. */
const LONG_RUN = /\p{M}{32,}/gu;

const swaps = (a: string, b: string) => (a + b).normalize('NFD') !== a + b;

/** A canonically equivalent text with long runs of marks in canonical order. */
export function orderLongMarkRuns(text: string): string {
  LONG_RUN.lastIndex = 0;
  if (!LONG_RUN.test(text)) return text;
  LONG_RUN.lastIndex = 0;
  return text.replace(LONG_RUN, (run) => {
    // Decompose each mark on its own (a mark may decompose into two, e.g. U+0344).
    const nfd = new Map<string, string>();
    const cps: string[] = [];
    for (const ch of run) {
      let d = nfd.get(ch);
      if (d === undefined) {
        d = ch.normalize('NFD');
        nfd.set(ch, d);
      }
      if (d.length === ch.length) cps.push(d);
      else for (const c of d) cps.push(c);
    }
    // Classify the distinct code points: starters (class 0) stay put, the others get ranks in
    // combining-class order (equal classes, equal ranks).
    const distinct = [...new Set(cps)];
    const marks = distinct.filter(
      (c) => swaps(c, '\u0301') || swaps('\u0301', c) || swaps(c, '\u0316'),
    );
    marks.sort((a, b) => (swaps(a, b) ? 1 : swaps(b, a) ? -1 : 0));
    const rank = new Map<string, number>();
    let r = 0;
    marks.forEach((c, i) => {
      if (i > 0 && swaps(c, marks[i - 1]!)) r++; // a higher class than the previous one
      rank.set(c, r);
    });
    const ranks = r + 1;
    // Stable counting sort of each stretch between starters, by rank.
    const out: string[] = [];
    let stretch: string[] = [];
    let stretchRanks: number[] = [];
    const flush = () => {
      if (stretch.length > 1) {
        const start = new Array<number>(ranks + 1).fill(0);
        for (const k of stretchRanks) start[k + 1]!++;
        for (let k = 0; k < ranks; k++) start[k + 1]! += start[k]!;
        const sorted = new Array<string>(stretch.length);
        for (let i = 0; i < stretch.length; i++) sorted[start[stretchRanks[i]!]!++] = stretch[i]!;
        for (const c of sorted) out.push(c);
      } else if (stretch.length === 1) out.push(stretch[0]!);
      stretch = [];
      stretchRanks = [];
    };
    for (const c of cps) {
      const k = rank.get(c);
      if (k !== undefined) {
        stretch.push(c);
        stretchRanks.push(k);
      } else {
        flush();
        out.push(c);
      }
    }
    flush();
    return out.join('');
  });
}

type NormalizerObject = Normalizer & {
  config?: { type?: unknown };
  normalizers?: unknown[];
  strip_accents?: (text: string) => string;
};

/**
 * Makes the normalizers of `tok` that call `String.prototype.normalize` (NFC, NFD, NFKC, NFKD,
 * Precompiled, BertNormalizer's accent stripping) rewrite long mark runs first. Walks Sequence
 * normalizers; leaves anything it does not recognise alone.
 */
export function installSafeNormalization(tok: Tokenizer): void {
  const root = (tok as unknown as { normalizer: unknown }).normalizer;
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const n = stack.pop() as NormalizerObject | null | undefined;
    if (!(n instanceof Normalizer)) continue;
    const type = n.config?.type;
    if (type === 'Sequence' && Array.isArray(n.normalizers)) stack.push(...n.normalizers);
    if (
      type === 'NFC' ||
      type === 'NFD' ||
      type === 'NFKC' ||
      type === 'NFKD' ||
      type === 'Precompiled'
    ) {
      const original = n.normalize.bind(n);
      n.normalize = (text: string) => original(orderLongMarkRuns(text));
    }
    if (type === 'BertNormalizer' && typeof n.strip_accents === 'function') {
      const original = n.strip_accents.bind(n);
      n.strip_accents = (text: string) => original(orderLongMarkRuns(text));
    }
  }
}
