/**
 * Word-frequency counting for the BPE trainer: text is pre-tokenised with GPT-2's pattern and
 * only the distinct pre-tokenised words and their counts are kept, never the text itself, so
 * memory grows with the vocabulary of the corpus, not its size. Streamed input (file chunks)
 * is cut only where the pattern is guaranteed to split anyway, so counting a stream in chunks
 * gives exactly the counts of counting it whole.
 */
import { gpt2Regex } from './byte-level';

/** Defaults to 4M distinct words (a few hundred MB of heap at most). */
export const DEFAULT_MAX_DISTINCT_WORDS = 4_000_000;

// JavaScript's \s (the class the pre-tokenisation pattern uses).
const WHITESPACE = /\s/;

function isWhitespaceCode(code: number): boolean {
  if (code === 0x20 || (code >= 0x09 && code <= 0x0d)) return true;
  if (code < 0x80) return false;
  return WHITESPACE.test(String.fromCharCode(code));
}

/**
 * The last index i (0 < i < text.length) where text[i] is whitespace and text[i - 1] is not, or
 * -1. No match of GPT-2's pattern spans such a position (a token that contains whitespace after
 * its first character is all whitespace), and matching after it does not depend on the text
 * before it, so cutting there splits exactly as the whole text would.
 */
export function lastSafeCut(text: string, lowest = 1): number {
  for (let i = text.length - 1; i >= Math.max(1, lowest); i--) {
    if (isWhitespaceCode(text.charCodeAt(i)) && !isWhitespaceCode(text.charCodeAt(i - 1))) return i;
  }
  return -1;
}

export interface WordCounterOptions {
  /**
   * When the number of distinct words passes this, the rarest words are dropped (count 1, then
   * 2, ...) until at most half remain, bounding memory on huge corpora. Counts stay exact below
   * the limit, which no English corpus of a few hundred MB reaches.
   */
  maxDistinctWords?: number;
}

export class WordCounter {
  /** Pre-tokenised word → count. */
  readonly counts = new Map<string, number>();
  /** UTF-16 code units seen. */
  chars = 0;
  /** Pre-tokenised words seen (with repetition). */
  words = 0;
  /** Words dropped by pruning (with repetition), and the count at or below which words were dropped. */
  prunedWords = 0;
  pruneFloor = 0;
  private readonly maxDistinct: number;
  private readonly regex = gpt2Regex();
  private carry = '';

  constructor(options: WordCounterOptions = {}) {
    this.maxDistinct = options.maxDistinctWords ?? DEFAULT_MAX_DISTINCT_WORDS;
  }

  /** Counts one whole document (pre-tokenisation starts afresh at its start and end). */
  addText(text: string): void {
    this.flush();
    this.count(text);
  }

  /** Counts a chunk of a stream; call {@link end} after the stream's last chunk. */
  push(chunk: string): void {
    const text = this.carry + chunk;
    // The carried tail has no cut point after its first character, so only look at the new
    // chunk. A stream without any whitespace is cut anyway every 16M code units (the only
    // place where counting in chunks could differ from counting it whole).
    const cut = lastSafeCut(text, this.carry.length);
    if (cut > 0) {
      this.count(text.slice(0, cut));
      this.carry = text.slice(cut);
    } else if (text.length > 1 << 24) {
      this.count(text);
      this.carry = '';
    } else {
      this.carry = text;
    }
  }

  /** Counts what a stream left pending. */
  end(): void {
    this.flush();
  }

  private flush(): void {
    if (this.carry.length > 0) {
      const rest = this.carry;
      this.carry = '';
      this.count(rest);
    }
  }

  private count(text: string): void {
    this.chars += text.length;
    const re = this.regex;
    const counts = this.counts;
    re.lastIndex = 0;
    let n = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const w = m[0];
      counts.set(w, (counts.get(w) ?? 0) + 1);
      n++;
    }
    this.words += n;
    if (counts.size > this.maxDistinct) this.prune();
  }

  private prune(): void {
    const target = Math.floor(this.maxDistinct / 2);
    while (this.counts.size > target) {
      this.pruneFloor++;
      for (const [w, c] of this.counts) {
        if (c <= this.pruneFloor) {
          this.counts.delete(w);
          this.prunedWords += c;
        }
      }
    }
  }
}
