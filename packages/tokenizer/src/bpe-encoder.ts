/**
 * Our own byte-level BPE encoder: GPT-2 pre-tokenisation, bytes → byte symbols, then merges
 * applied lowest rank first (leftmost first among equal ranks), exactly the order the Rust
 * `tokenizers` library and `@huggingface/tokenizers` use. The trainer uses it to measure
 * compression and tests use it to check that a trained tokenizer.json, loaded by
 * `@huggingface/tokenizers`, encodes exactly as the trainer meant.
 */

import { ParaError } from '@para/core';
import { BYTE_TO_CHAR, CHAR_CODE_TO_BYTE, gpt2Regex, utf8 } from './byte-level';
import { mergeByRank } from './merge-heap';

export interface AddedTokenSpec {
  id: number;
  content: string;
  special?: boolean;
}

/** Words at most this long (in byte symbols) are merged by scanning; longer ones use a heap. */
const SCAN_LIMIT = 48;
const CACHE_LIMIT = 50_000;
/**
 * Longer words are not cached (as the Rust `tokenizers` library, which caches words under 256
 * characters): one hostile text of many distinct long words would otherwise fill the cache with
 * megabytes each.
 */
const CACHE_MAX_WORD = 256;

export class ByteLevelBpe {
  /** Token id → token string (byte-level characters, or an added token's content). */
  readonly idToToken: string[];
  readonly tokenToId: Map<string, number>;
  readonly addedTokens: AddedTokenSpec[];
  private readonly byteIds = new Int32Array(256);
  private readonly base: number;
  /** pair key (left · base + right) → rank. */
  private readonly ranks = new Map<number, number>();
  /** rank → id of the merged token. */
  private readonly mergeResult: Int32Array;
  private readonly cache = new Map<string, number[]>();
  private readonly regex = gpt2Regex();
  private readonly addedByContent: Map<string, AddedTokenSpec>;
  /** Added-token contents sorted longest first, for leftmost-longest splitting. */
  private readonly addedSorted: string[];

  constructor(
    vocab: Map<string, number> | Record<string, number>,
    merges: readonly (readonly [string, string])[],
    addedTokens: AddedTokenSpec[] = [],
  ) {
    this.tokenToId = vocab instanceof Map ? new Map(vocab) : new Map(Object.entries(vocab));
    for (const t of addedTokens) this.tokenToId.set(t.content, t.id);
    let maxId = -1;
    for (const id of this.tokenToId.values()) maxId = Math.max(maxId, id);
    this.idToToken = new Array(maxId + 1);
    for (const [tok, id] of this.tokenToId) this.idToToken[id] = tok;
    this.base = maxId + 1;
    for (let b = 0; b < 256; b++) {
      const id = this.tokenToId.get(BYTE_TO_CHAR[b]!);
      if (id === undefined) {
        throw new ParaError(
          'UNSUPPORTED',
          'not a byte-level BPE vocabulary: a byte symbol is missing',
          {
            field: 'model.vocab',
            expected: `all 256 byte-level symbols (missing ${JSON.stringify(BYTE_TO_CHAR[b])} for byte ${b})`,
          },
        );
      }
      this.byteIds[b] = id;
    }
    this.mergeResult = new Int32Array(merges.length);
    merges.forEach(([l, r], rank) => {
      const a = this.tokenToId.get(l);
      const b = this.tokenToId.get(r);
      const m = this.tokenToId.get(l + r);
      if (a === undefined || b === undefined || m === undefined) {
        throw new ParaError(
          'INVALID_CONFIG',
          'a merge refers to a token missing from the vocabulary',
          {
            field: `model.merges[${rank}]`,
            expected: 'both parts and their concatenation in model.vocab',
            actual: JSON.stringify([l, r]),
          },
        );
      }
      const key = a * this.base + b;
      // A repeated merge keeps its first (lowest) rank.
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
      this.mergeResult[rank] = m;
    });
    this.addedTokens = addedTokens.slice();
    this.addedByContent = new Map(addedTokens.map((t) => [t.content, t]));
    this.addedSorted = addedTokens.map((t) => t.content).filter((c) => c.length > 0);
  }

  /** Ids of `text`; added tokens in it (e.g. "<s>") become their ids, as HF tokenizers do. */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const [piece, isAdded] of this.splitAdded(text)) {
      if (isAdded) out.push(this.addedByContent.get(piece)!.id);
      else this.encodeOrdinary(piece, out);
    }
    return out;
  }

  /** Ids of `text` treating added-token strings as ordinary text. */
  encodeOrdinary(text: string, out: number[] = []): number[] {
    const re = this.regex;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const ids = this.encodeWord(m[0]);
      for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
    }
    return out;
  }

  /** Text of `ids`: byte symbols are joined and decoded as UTF-8, added tokens are kept as text. */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    let text = '';
    let bytes: number[] = [];
    const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
    const flush = () => {
      if (bytes.length > 0) text += decoder.decode(new Uint8Array(bytes));
      bytes = [];
    };
    for (const id of ids) {
      const tok = this.idToToken[id];
      if (tok === undefined)
        throw new ParaError('INVALID_ARGUMENT', 'token id out of range', {
          field: 'ids',
          expected: `0 ≤ id < ${this.idToToken.length}`,
          actual: String(id),
        });
      const added = this.addedByContent.get(tok);
      if (added !== undefined && added.id === id) {
        flush();
        if (!(options.skipSpecialTokens && added.special)) text += tok;
        continue;
      }
      for (let i = 0; i < tok.length; i++) bytes.push(CHAR_CODE_TO_BYTE[tok.charCodeAt(i)]!);
    }
    flush();
    return text;
  }

  /** Splits out added tokens, leftmost-longest, like `@huggingface/tokenizers`' DictionarySplitter. */
  private *splitAdded(text: string): Generator<[string, boolean]> {
    if (this.addedSorted.length === 0) {
      yield [text, false];
      return;
    }
    let start = 0;
    let i = 0;
    while (i < text.length) {
      let match: string | undefined;
      for (const c of this.addedSorted) {
        if ((match === undefined || c.length > match.length) && text.startsWith(c, i)) match = c;
      }
      if (match !== undefined) {
        if (i > start) yield [text.slice(start, i), false];
        yield [match, true];
        i += match.length;
        start = i;
      } else {
        i++;
      }
    }
    if (start < text.length) yield [text.slice(start), false];
  }

  /** BPE of one pre-tokenised word. */
  encodeWord(word: string): number[] {
    const cached = this.cache.get(word);
    if (cached !== undefined) return cached;
    const bytes = utf8(word);
    const syms: number[] = new Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) syms[i] = this.byteIds[bytes[i]!]!;
    const ids = syms.length <= SCAN_LIMIT ? this.mergeByScan(syms) : this.mergeByHeap(syms);
    if (word.length <= CACHE_MAX_WORD) {
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, ids);
    }
    return ids;
  }

  /** Repeatedly merges the leftmost lowest-rank pair: O(n²), fast for short words. */
  private mergeByScan(syms: number[]): number[] {
    const base = this.base;
    const ranks = this.ranks;
    for (;;) {
      let best = -1;
      let bestRank = Number.POSITIVE_INFINITY;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = ranks.get(syms[i]! * base + syms[i + 1]!);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) return syms;
      syms.splice(best, 2, this.mergeResult[bestRank]!);
    }
  }

  /**
   * The same merge order with a doubly linked list and a heap keyed by (rank, position): every
   * merge is O(log n), for long words (a run of 10,000 spaces, a base64 blob).
   */
  private mergeByHeap(syms: number[]): number[] {
    const sym = Int32Array.from(syms);
    const base = this.base;
    return mergeByRank(
      sym,
      (a, b) => this.ranks.get(a * base + b),
      (rank) => this.mergeResult[rank]!,
    ).map((i) => sym[i]!);
  }
}
