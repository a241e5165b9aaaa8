/**
 * A byte-level BPE trainer, written by hand: no maintained JavaScript library trains BPE
 * (`@huggingface/tokenizers` only loads tokenizer.json; the Rust/Python `tokenizers` trainer has
 * no JS binding that runs in a browser or installs without native code).
 *
 * The algorithm is the one of the Rust `tokenizers` BpeTrainer, on typed arrays:
 * - the corpus is reduced to distinct GPT-2 pre-tokenised words and their counts
 *   ({@link WordCounter}); each word becomes its UTF-8 bytes, every byte a symbol of the
 *   256-symbol byte alphabet, which is always in the vocabulary (so nothing is ever unknown);
 * - pair counts (pair → Σ word count × occurrences) and a pair → words index are built once;
 * - a max-heap orders pairs by count (ties: the smaller (left id, right id), so the output is
 *   deterministic); entries are invalidated lazily: a popped entry whose count is no longer
 *   current is pushed back with the current count;
 * - each merge rewrites only the words that contain the pair, and updates the counts of the
 *   pairs around each occurrence (−count for (prev, a) and (b, next), +count for (prev, ab) and
 *   (ab, next)); pairs that gained are pushed to the heap. There is no recount per merge.
 * Cost: O(total symbols) to start, then per merge O(occurrences of the pair · log heap).
 */
import { ParaError } from '@para/core';
import { ByteLevelBpe } from './bpe-encoder';
import { BYTE_TO_CHAR } from './byte-level';
import { PairHeap } from './heap';
import { WordCounter } from './word-counter';

export interface BpeTrainProgress {
  phase: 'count' | 'merge' | 'done';
  /** count phase: UTF-16 code units (≈ characters) read so far, and in all when known. */
  chars?: number;
  totalChars?: number;
  /** count phase, for files: bytes read so far and in all. */
  bytes?: number;
  totalBytes?: number;
  /** Distinct words so far. */
  distinctWords?: number;
  /** merge phase: merges learned so far, and the most there can be. */
  merges?: number;
  totalMerges?: number;
  /** Milliseconds since training started. */
  elapsedMs: number;
}

export interface BpeTrainOptions {
  /** Size of the final vocabulary: special tokens + 256 byte symbols + merges. */
  vocabSize: number;
  /** Added as special tokens with ids 0, 1, … in this order (as the `tokenizers` trainer does). */
  specialTokens?: string[];
  /**
   * Roles for tokenizer_config.json; each must be one of `specialTokens`. When not given they
   * are recognised by name: bos `<s>`, `<|begin_of_text|>`, `<bos>`, `<|startoftext|>`; eos
   * `</s>`, `<|end_of_text|>`, `<eos>`, `<|endoftext|>`; pad `<pad>`, `<|pad|>`; unk `<unk>`.
   * With a bos token, encoding with special tokens prepends it (as LLaMA's tokenizer does).
   */
  bosToken?: string;
  eosToken?: string;
  padToken?: string;
  unkToken?: string;
  /** Stop when the most frequent pair occurs fewer times than this (default 2). */
  minFrequency?: number;
  /** Longest token, in bytes, a merge may create (default: no limit). */
  maxTokenLength?: number;
  /** A chat template (Jinja) to store in tokenizer_config.json. */
  chatTemplate?: string;
  /** Called during counting and merging, and once when done. */
  onProgress?: (p: BpeTrainProgress) => void;
}

export interface BpeTrainStats {
  vocabSize: number;
  merges: number;
  /** Why merging stopped before the requested vocabulary size, if it did. */
  stoppedEarly?: string;
  chars: number;
  words: number;
  distinctWords: number;
  prunedWords: number;
  countMs: number;
  mergeMs: number;
}

/** A HF tokenizer.json as this package writes it (all fields the loaders need). */
export interface TokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: {
    id: number;
    content: string;
    single_word: boolean;
    lstrip: boolean;
    rstrip: boolean;
    normalized: boolean;
    special: boolean;
  }[];
  normalizer: null;
  pre_tokenizer: Record<string, unknown>;
  post_processor: Record<string, unknown>;
  decoder: Record<string, unknown>;
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: string | null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges: boolean;
    vocab: Record<string, number>;
    merges: string[];
  };
}

/** The result of training: the two files' contents, our own encoder over them, and stats. */
export class TrainedBpeTokenizer {
  constructor(
    readonly tokenizerJson: TokenizerJson,
    readonly tokenizerConfig: Record<string, unknown>,
    readonly stats: BpeTrainStats,
  ) {}

  private encoderCache: ByteLevelBpe | undefined;

  /** Our own encoder for this vocabulary (see {@link ByteLevelBpe}). */
  get encoder(): ByteLevelBpe {
    this.encoderCache ??= new ByteLevelBpe(
      this.tokenizerJson.model.vocab,
      this.tokenizerJson.model.merges.map((m) => splitMerge(m)),
      this.tokenizerJson.added_tokens.map((t) => ({
        id: t.id,
        content: t.content,
        special: t.special,
      })),
    );
    return this.encoderCache;
  }

  /** tokenizer.json text (as the Python library writes it: 2-space indentation). */
  tokenizerJsonText(): string {
    return `${JSON.stringify(this.tokenizerJson, null, 2)}\n`;
  }

  tokenizerConfigText(): string {
    return `${JSON.stringify(this.tokenizerConfig, null, 2)}\n`;
  }
}

function splitMerge(m: string): [string, string] {
  const i = m.indexOf(' ');
  return [m.slice(0, i), m.slice(i + 1)];
}

const ROLE_NAMES = {
  bos: ['<s>', '<|begin_of_text|>', '<bos>', '<|bos|>', '<|startoftext|>', '[BOS]'],
  eos: ['</s>', '<|end_of_text|>', '<eos>', '<|eos|>', '<|endoftext|>', '[EOS]'],
  pad: ['<pad>', '<|pad|>', '[PAD]'],
  unk: ['<unk>', '<|unk|>', '[UNK]'],
} as const;

export type SpecialRole = keyof typeof ROLE_NAMES;

/** bos/eos/pad/unk among `specialTokens`, by the usual names. */
export function guessSpecialTokenRoles(
  specialTokens: readonly string[],
): Partial<Record<SpecialRole, string>> {
  const out: Partial<Record<SpecialRole, string>> = {};
  for (const role of Object.keys(ROLE_NAMES) as SpecialRole[]) {
    const found = ROLE_NAMES[role].find((n) => specialTokens.includes(n));
    if (found !== undefined) out[role] = found;
  }
  return out;
}

/** Checks options; returns the special tokens and their roles. */
export function validateTrainOptions(opts: BpeTrainOptions): {
  specials: string[];
  roles: Partial<Record<SpecialRole, string>>;
} {
  if (typeof opts !== 'object' || opts === null) {
    throw new ParaError('INVALID_ARGUMENT', 'training options missing', {
      expected: 'an object with vocabSize',
    });
  }
  const specials = opts.specialTokens ?? [];
  if (!Array.isArray(specials)) {
    throw new ParaError('INVALID_ARGUMENT', 'special tokens must be a list', {
      field: 'specialTokens',
      expected: 'an array of strings',
    });
  }
  const seen = new Set<string>();
  for (const s of specials) {
    if (typeof s !== 'string' || s.length === 0) {
      throw new ParaError('INVALID_ARGUMENT', 'bad special token', {
        field: 'specialTokens',
        expected: 'non-empty strings',
        actual: JSON.stringify(s),
      });
    }
    if (seen.has(s)) {
      throw new ParaError('INVALID_ARGUMENT', 'special token listed twice', {
        field: 'specialTokens',
        expected: 'distinct tokens',
        actual: JSON.stringify(s),
      });
    }
    if (BYTE_TO_CHAR.includes(s)) {
      throw new ParaError('INVALID_ARGUMENT', 'special token clashes with a byte symbol', {
        field: 'specialTokens',
        expected: 'strings other than the 256 one-character byte symbols',
        actual: JSON.stringify(s),
      });
    }
    seen.add(s);
  }
  const min = 256 + specials.length;
  if (
    typeof opts.vocabSize !== 'number' ||
    !Number.isInteger(opts.vocabSize) ||
    opts.vocabSize < min ||
    opts.vocabSize > MAX_VOCAB
  ) {
    throw new ParaError(
      'INVALID_ARGUMENT',
      'vocabulary size below the byte alphabet or out of range',
      {
        field: 'vocabSize',
        expected: `an integer from ${min} (256 byte symbols + ${specials.length} special tokens) to ${MAX_VOCAB}`,
        actual: String(opts.vocabSize),
      },
    );
  }
  for (const [field, v] of [
    ['minFrequency', opts.minFrequency],
    ['maxTokenLength', opts.maxTokenLength],
  ] as const) {
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 1)) {
      throw new ParaError('INVALID_ARGUMENT', `bad ${field}`, {
        field,
        expected: 'a positive integer',
        actual: String(v),
      });
    }
  }
  const guessed = guessSpecialTokenRoles(specials);
  const roles: Partial<Record<SpecialRole, string>> = {};
  for (const role of Object.keys(ROLE_NAMES) as SpecialRole[]) {
    const given = opts[`${role}Token`];
    if (given !== undefined) {
      if (!specials.includes(given)) {
        throw new ParaError('INVALID_ARGUMENT', `the ${role} token is not a special token`, {
          field: `${role}Token`,
          expected: `one of specialTokens (${specials.map((s) => JSON.stringify(s)).join(', ') || 'none given'})`,
          actual: JSON.stringify(given),
        });
      }
      roles[role] = given;
    } else if (guessed[role] !== undefined) {
      roles[role] = guessed[role];
    }
  }
  return { specials, roles };
}

/** The byte-level characters sorted by code point, and byte → index in that order. */
const SYMBOL_CHARS: readonly string[] = BYTE_TO_CHAR.slice().sort(
  (x, y) => x.charCodeAt(0) - y.charCodeAt(0),
);
const BYTE_TO_SYMBOL: Int32Array = Int32Array.from(BYTE_TO_CHAR, (c) => SYMBOL_CHARS.indexOf(c));

/** Largest vocabulary the trainer accepts (pair keys stay exact doubles far below this). */
export const MAX_VOCAB = 1 << 21;

/**
 * Learns merges from counted words and builds tokenizer.json / tokenizer_config.json.
 * Throws INVALID_ARGUMENT on an empty corpus.
 */
export function trainBpeFromCounts(
  counter: WordCounter,
  opts: BpeTrainOptions,
  context: { started?: number; countMs?: number; source?: string } = {},
): TrainedBpeTokenizer {
  const { specials, roles } = validateTrainOptions(opts);
  const started = context.started ?? performance.now();
  const onProgress = opts.onProgress;
  if (counter.counts.size === 0) {
    throw new ParaError('INVALID_ARGUMENT', 'the corpus is empty: no text to train on', {
      field: 'files',
      ...(context.source !== undefined ? { file: context.source } : {}),
      expected: 'at least one non-empty text',
    });
  }
  const mergeStart = performance.now();
  const k = specials.length;
  const targetSymbols = opts.vocabSize - k; // byte symbols + merged tokens
  const minFrequency = opts.minFrequency ?? 2;
  const maxTokenLength = opts.maxTokenLength ?? Number.POSITIVE_INFINITY;

  // --- Words → flat symbol arrays (single-byte words have no pairs and are skipped). ---
  const nDistinct = counter.counts.size;
  const wordStart: number[] = [];
  const wordCountList: number[] = [];
  let bytes = new Uint8Array(1 << 20);
  let used = 0;
  const enc = new TextEncoder();
  for (const [w, c] of counter.counts) {
    if (bytes.length - used < w.length * 3) {
      const grown = new Uint8Array(Math.max(bytes.length * 2, used + w.length * 3));
      grown.set(bytes.subarray(0, used));
      bytes = grown;
    }
    const { written } = enc.encodeInto(w, bytes.subarray(used));
    if (written! < 2) continue;
    wordStart.push(used);
    wordCountList.push(c);
    used += written!;
  }
  const nWords = wordStart.length;
  wordStart.push(used);
  const start = Int32Array.from(wordStart);
  const len = new Int32Array(nWords);
  for (let w = 0; w < nWords; w++) len[w] = start[w + 1]! - start[w]!;
  const counts = Float64Array.from(wordCountList);
  const sym = new Int32Array(used);
  for (let i = 0; i < used; i++) sym[i] = BYTE_TO_SYMBOL[bytes[i]!]!;
  bytes = new Uint8Array(0);

  // Internal ids: the 256 byte symbols in the order of their characters, then merged tokens
  // (final id = internal + k). This is the Rust trainer's numbering, and ties between equally
  // frequent pairs go to the smaller (left, right) ids as there, so on the same word counts both
  // trainers learn the same merges in the same order.
  const base = targetSymbols; // > every internal id
  const tokenStr: string[] = SYMBOL_CHARS.slice();
  const tokenLen: number[] = new Array(256).fill(1);
  const idOfStr = new Map<string, number>(tokenStr.map((s, i) => [s, i]));

  // --- Initial pair counts and pair → words index. ---
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  for (let w = 0; w < nWords; w++) {
    const s = start[w]!;
    const e = s + len[w]!;
    const c = counts[w]!;
    for (let i = s; i + 1 < e; i++) {
      const key = sym[i]! * base + sym[i + 1]!;
      pairCount.set(key, (pairCount.get(key) ?? 0) + c);
      const list = pairWords.get(key);
      if (list === undefined) pairWords.set(key, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  }
  const heap = new PairHeap(pairCount.size * 2);
  for (const [key, c] of pairCount) heap.push(c, key);

  // --- Merge loop. ---
  const merges: string[] = [];
  /** pair key → internal id it merged into (a pair can reappear through a reused token id). */
  const merged = new Map<number, number>();
  const stamp = new Int32Array(nWords).fill(-1);
  let step = 0;
  let stoppedEarly: string | undefined;
  let lastReport = 0;
  const maxMerges = targetSymbols - 256;
  let nSymbols = 256;
  // A merge may not create a token spelled like a special token (their vocab entries would clash).
  const specialSet = new Set(specials);
  const touched: number[] = [];
  const touchedSet = new Set<number>();

  while (nSymbols < targetSymbols) {
    if (heap.size === 0) {
      stoppedEarly = 'no pair of symbols is left to merge';
      break;
    }
    const key = heap.peekKey();
    const stored = heap.peekCount();
    heap.pop();
    const current = pairCount.get(key) ?? 0;
    if (current !== stored) {
      if (current > 0) heap.push(current, key);
      else pairWords.delete(key);
      continue;
    }
    if (current < minFrequency) {
      stoppedEarly = `no pair occurs ${minFrequency} times or more`;
      break;
    }
    const a = Math.floor(key / base);
    const b = key - a * base;
    const words = pairWords.get(key) ?? [];
    pairWords.delete(key);
    pairCount.delete(key);

    let m = merged.get(key);
    if (m === undefined) {
      if (
        tokenLen[a]! + tokenLen[b]! > maxTokenLength ||
        specialSet.has(tokenStr[a]! + tokenStr[b]!)
      ) {
        // Retire the pair for good: −∞ absorbs later updates and is never pushed again.
        pairCount.set(key, Number.NEGATIVE_INFINITY);
        continue;
      }
      const str = tokenStr[a]! + tokenStr[b]!;
      merges.push(`${tokenStr[a]} ${tokenStr[b]}`);
      m = idOfStr.get(str);
      if (m === undefined) {
        // A new token (the usual case). The same string can also arise from another split
        // ("a"+"bc" after "ab"+"c"); then the merge is recorded and the token id reused.
        m = nSymbols++;
        tokenStr.push(str);
        tokenLen.push(tokenLen[a]! + tokenLen[b]!);
        idOfStr.set(str, m);
      }
      merged.set(key, m);
    }

    // Rewrite every word containing (a, b); record the pair-count changes around each occurrence.
    const change = (pk: number, delta: number, w: number) => {
      if (pk === key) return;
      pairCount.set(pk, (pairCount.get(pk) ?? 0) + delta);
      if (delta > 0) {
        let list = pairWords.get(pk);
        if (list === undefined) {
          list = [];
          pairWords.set(pk, list);
        }
        if (list[list.length - 1] !== w) list.push(w);
        if (!touchedSet.has(pk)) {
          touchedSet.add(pk);
          touched.push(pk);
        }
      }
    };
    for (let wi = 0; wi < words.length; wi++) {
      const w = words[wi]!;
      if (stamp[w] === step) continue;
      stamp[w] = step;
      const s = start[w]!;
      const e = s + len[w]!;
      const c = counts[w]!;
      let i = s;
      let j = s;
      while (i < e) {
        if (i + 1 < e && sym[i] === a && sym[i + 1] === b) {
          if (j > s) {
            const p = sym[j - 1]!;
            change(p * base + a, -c, w);
            change(p * base + m, c, w);
          }
          sym[j++] = m;
          i += 2;
          if (i < e) {
            const nx = sym[i]!;
            change(b * base + nx, -c, w);
            change(m * base + nx, c, w);
          }
        } else {
          sym[j++] = sym[i++]!;
        }
      }
      len[w] = j - s;
    }
    for (const pk of touched) {
      const c = pairCount.get(pk) ?? 0;
      if (c > 0) heap.push(c, pk);
      else if (c === 0) {
        pairCount.delete(pk);
        pairWords.delete(pk);
      }
    }
    touched.length = 0;
    touchedSet.clear();
    step++;

    if (onProgress !== undefined) {
      const now = performance.now();
      if (now - lastReport > 200) {
        lastReport = now;
        onProgress({
          phase: 'merge',
          merges: merges.length,
          totalMerges: maxMerges,
          elapsedMs: now - started,
        });
      }
    }
  }

  // --- tokenizer.json and tokenizer_config.json. ---
  // Special tokens are in the model's vocabulary too (ids 0..k-1), as the Rust trainer writes it.
  // Built with Object.fromEntries (own data properties), not `vocab[token] = id`: a token named
  // "__proto__" would otherwise set the object's prototype and be missing from the vocabulary.
  const vocabEntries: [string, number][] = specials.map((s, i) => [s, i]);
  for (let i = 0; i < tokenStr.length; i++) vocabEntries.push([tokenStr[i]!, i + k]);
  const vocab: Record<string, number> = Object.fromEntries(vocabEntries);
  const addedTokens = specials.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const byteLevel = {
    type: 'ByteLevel',
    add_prefix_space: false,
    trim_offsets: true,
    use_regex: true,
  };
  const postProcessor: Record<string, unknown> =
    roles.bos !== undefined
      ? {
          type: 'TemplateProcessing',
          single: [
            { SpecialToken: { id: roles.bos, type_id: 0 } },
            { Sequence: { id: 'A', type_id: 0 } },
          ],
          pair: [
            { SpecialToken: { id: roles.bos, type_id: 0 } },
            { Sequence: { id: 'A', type_id: 0 } },
            { SpecialToken: { id: roles.bos, type_id: 1 } },
            { Sequence: { id: 'B', type_id: 1 } },
          ],
          special_tokens: {
            [roles.bos]: { id: roles.bos, ids: [specials.indexOf(roles.bos)], tokens: [roles.bos] },
          },
        }
      : { ...byteLevel, trim_offsets: false };
  const tokenizerJson: TokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: postProcessor,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const tokenizerConfig: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    add_bos_token: roles.bos !== undefined,
    add_eos_token: false,
    bos_token: roles.bos ?? null,
    eos_token: roles.eos ?? null,
    pad_token: roles.pad ?? null,
    unk_token: roles.unk ?? null,
    // Byte-level BPE decodes exactly; transformers' clean-up would remove spaces before punctuation.
    clean_up_tokenization_spaces: false,
    model_max_length: 1_000_000_000_000_000,
    added_tokens_decoder: Object.fromEntries(
      addedTokens.map((t) => [
        String(t.id),
        {
          content: t.content,
          lstrip: false,
          normalized: false,
          rstrip: false,
          single_word: false,
          special: true,
        },
      ]),
    ),
  };
  if (opts.chatTemplate !== undefined) tokenizerConfig.chat_template = opts.chatTemplate;

  const now = performance.now();
  const stats: BpeTrainStats = {
    vocabSize: k + tokenStr.length,
    merges: merges.length,
    ...(stoppedEarly !== undefined ? { stoppedEarly } : {}),
    chars: counter.chars,
    words: counter.words,
    distinctWords: nDistinct,
    prunedWords: counter.prunedWords,
    countMs: context.countMs ?? 0,
    mergeMs: now - mergeStart,
  };
  onProgress?.({
    phase: 'done',
    merges: merges.length,
    totalMerges: maxMerges,
    elapsedMs: now - started,
  });
  return new TrainedBpeTokenizer(tokenizerJson, tokenizerConfig, stats);
}

/** Trains on in-memory texts, each one a separate document (works in the browser too). */
export function trainBpe(texts: Iterable<string>, opts: BpeTrainOptions): TrainedBpeTokenizer {
  validateTrainOptions(opts);
  const started = performance.now();
  const counter = new WordCounter();
  let lastReport = 0;
  for (const t of texts) {
    if (typeof t !== 'string') {
      throw new ParaError('INVALID_ARGUMENT', 'training texts must be strings', {
        field: 'texts',
        expected: 'strings',
        actual: typeof t,
      });
    }
    counter.addText(t);
    const now = performance.now();
    if (opts.onProgress !== undefined && now - lastReport > 200) {
      lastReport = now;
      opts.onProgress({
        phase: 'count',
        chars: counter.chars,
        distinctWords: counter.counts.size,
        elapsedMs: now - started,
      });
    }
  }
  return trainBpeFromCounts(counter, opts, {
    started,
    countMs: performance.now() - started,
    source: 'texts',
  });
}
