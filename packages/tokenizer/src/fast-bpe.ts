/**
 * A faster BPE merge loop for very long pre-tokens, installed on `@huggingface/tokenizers`' BPE
 * model. Its own loop is O(n log n) but slow per step (a JSON.stringify per pair lookup, an
 * object per node and per merge), so one pre-token of a megabyte — 1,000,000 × "a", a base64
 * blob, a run of spaces in a SentencePiece-style tokenizer, which does not split on anything —
 * took 15–25 s. Neither the Rust library nor transformers splits long pre-tokens, and splitting
 * would change the ids, so we keep the exact algorithm and make it cheap: symbols become
 * integers, pair ranks a Map of numbers, nodes a typed-array linked list, the queue a binary
 * heap of numbers (rank · n + position). Same order as the library: the lowest rank first, the
 * leftmost among equal ranks (its `rank + position / n` scores), the last of repeated merges
 * wins (its `new Map(merges…)`), `end_of_word_suffix` on the last symbol and
 * `continuing_subword_suffix` on all but the last. Words shorter than {@link LONG_WORD} (the
 * ones the library caches) still go through the library's loop; a test checks both agree.
 */

import { BPE, type Tokenizer, Unigram } from '@huggingface/tokenizers';
import { mergeByRank } from './merge-heap';

/** Words at least this long (UTF-16 units) use the fast loop; the library caches shorter ones. */
export const LONG_WORD = 256;

interface Tables {
  /** Symbol string → symbol number, for every merge part and merge result. */
  index: Map<string, number>;
  strings: string[];
  /** left · size + right → rank. */
  ranks: Map<number, number>;
  /** rank → the merged symbol's number. */
  result: Int32Array;
  size: number;
}

function buildTables(merges: readonly (readonly [string, string])[]): Tables {
  const index = new Map<string, number>();
  const strings: string[] = [];
  const intern = (s: string) => {
    let i = index.get(s);
    if (i === undefined) {
      i = strings.length;
      strings.push(s);
      index.set(s, i);
    }
    return i;
  };
  const triples = merges.map(([a, b]) => [intern(a), intern(b), intern(a + b)] as const);
  const size = strings.length;
  const ranks = new Map<number, number>();
  const result = new Int32Array(merges.length);
  triples.forEach(([a, b, m], rank) => {
    ranks.set(a * size + b, rank);
    result[rank] = m;
  });
  return { index, strings, ranks, result, size };
}

function mergeLong(t: Tables, word: string[]): string[] {
  const sym = new Int32Array(word.length);
  for (let i = 0; i < word.length; i++) sym[i] = t.index.get(word[i]!) ?? -1;
  const { ranks, result, size } = t;
  const kept = mergeByRank(
    sym,
    (a, b) => (a < 0 || b < 0 ? undefined : ranks.get(a * size + b)),
    (rank) => result[rank]!,
  );
  return kept.map((i) => (sym[i]! >= 0 ? t.strings[sym[i]!]! : word[i]!));
}

/**
 * Replaces the BPE model's `bpe` with one that sends long words to {@link mergeLong}. Does
 * nothing for other models, or if the library's internals are not as expected (then its own
 * loop runs, slower but correct).
 */
export function installFastBpe(tok: Tokenizer): void {
  const model = (tok as unknown as { model: unknown }).model;
  if (!(model instanceof BPE)) return;
  const m = model as BPE & { end_of_word_suffix?: unknown };
  if (typeof m.bpe !== 'function' || !Array.isArray(m.merges)) return;
  const original = m.bpe.bind(m);
  const eow = typeof m.end_of_word_suffix === 'string' ? m.end_of_word_suffix : '';
  const csw = typeof m.continuing_subword_suffix === 'string' ? m.continuing_subword_suffix : '';
  let tables: Tables | undefined;
  m.bpe = (token: string): string[] => {
    if (token.length < LONG_WORD) return original(token);
    tables ??= buildTables(m.merges);
    const word = Array.from(token);
    if (eow !== '') word[word.length - 1] += eow;
    const out = word.length > 1 ? mergeLong(tables, word) : word;
    if (csw !== '') for (let i = 0; i < out.length - 1; i++) out[i] += csw;
    return out;
  };
}

/**
 * `@huggingface/tokenizers`' Unigram model collects each word's pieces with
 * `push(...pieces)`, which overflows the stack past ~100,000 pieces (a long text for a
 * SentencePiece-style tokenizer is one word). Same loop, pushing one at a time.
 */
export function installUnigramEncode(tok: Tokenizer): void {
  const model = (tok as unknown as { model: unknown }).model;
  if (!(model instanceof Unigram)) return;
  const m = model as Unigram & { tokenize?: (text: string) => string[] };
  if (typeof m.tokenize !== 'function') return;
  const tokenize = m.tokenize.bind(m);
  m.encode = (tokens: string[]): string[] => {
    const out: string[] = [];
    for (const token of tokens) for (const piece of tokenize(token)) out.push(piece);
    return out;
  };
}
