/**
 * One sequence's decoded text, token by token, with stop tokens and stop strings applied — the
 * rules every text path of para shares (`generateText` / `streamText` here, each request of
 * @para/serve's engine), so a served request returns exactly the text `generate` returns:
 *
 *   - a stop token ends the sequence and is not part of the text (unless special tokens are kept);
 *   - the text is cut at the first stop string, which is not returned;
 *   - streamed pieces (`next`) are held back just long enough never to show part of a stop
 *     string or half a UTF-8 character (a trailing U+FFFD while more tokens may come).
 *
 * Decoding is incremental (as vLLM's `detokenize_incrementally` and transformers'
 * `TextStreamer`): each push decodes only the tokens since the last complete character, twice —
 * `ids[prefix:read]` and `ids[prefix:]` — and appends the difference, so a sequence of n tokens
 * costs O(n) decode work, not O(n²), and the two decodes start at the same token, so a decoder's
 * treatment of a sequence's first token (a Metaspace leading space) cancels out. Tests check
 * the text equals one decode of every id, on byte-level BPE and Metaspace tokenizers.
 */

import type { ParaTokenizer } from '@para/tokenizer';

/** The part of a tokenizer `TokenText` uses. */
export type TextDecoder = Pick<ParaTokenizer, 'decode'>;

const REPLACEMENT = '\uFFFD';

export class TokenText {
  private readonly ids: number[] = [];
  /** Decoding restarts at ids[prefix]; ids[prefix:read] are decoded into `committed` already. */
  private prefix = 0;
  private read = 0;
  /** The text of ids[0:read], every character complete. */
  private committed = '';
  /** Characters already handed out by `next()`. */
  private emitted = 0;
  /** A stop token or a stop string was seen. */
  done = false;
  /** The sequence ended on a stop token (not part of the text). */
  stoppedByToken = false;
  /** The text so far (cut at a stop string). */
  text = '';

  /**
   * `tok` undefined: no text (tokens and stop tokens only). `keepSpecial`: special tokens stay in
   * the text and a stop token is part of it.
   */
  constructor(
    private readonly tok: TextDecoder | undefined,
    private readonly stops: readonly string[],
    private readonly stopTokens: ReadonlySet<number>,
    private readonly keepSpecial = false,
  ) {}

  push(token: number): void {
    if (this.done) return;
    const stop = this.stopTokens.has(token);
    if (stop && !this.keepSpecial) {
      this.done = true;
      this.stoppedByToken = true;
      return;
    }
    this.ids.push(token);
    if (this.tok !== undefined) this.decodeNew(this.tok);
    if (stop) {
      this.done = true;
      this.stoppedByToken = true;
    }
  }

  private decodeNew(tok: TextDecoder): void {
    const opts = { skipSpecialTokens: !this.keepSpecial };
    // The window must start where its first tokens show text: a decoder treats the first
    // visible token specially (Metaspace drops its leading space), so a window that starts at
    // a skipped special token or a lone '▁' would lose the space the full text has. Back up
    // until the window's known part decodes to something (or to the sequence's start).
    let p = this.prefix;
    let before = this.read > p ? tok.decode(this.ids.slice(p, this.read), opts) : '';
    while (before === '' && p > 0) {
      p--;
      before = tok.decode(this.ids.slice(p, this.read), opts);
    }
    this.prefix = p;
    const after = tok.decode(this.ids.slice(p), opts);
    // `after` extends `before` unless the decoder rewrites text across the boundary; then (never
    // seen with the tokenizers tested) one decode of every id gives the text.
    const extends_ = after.startsWith(before);
    let text = extends_ ? this.committed + after.slice(before.length) : tok.decode(this.ids, opts);
    const searched = this.committed.length;
    if (!text.endsWith(REPLACEMENT)) {
      // Every character complete: the next decode starts here.
      this.committed = text;
      this.prefix = this.read;
      this.read = this.ids.length;
    }
    // The committed text was searched already; a stop string may straddle its end.
    const longest = this.stops.reduce((m, s) => Math.max(m, s.length), 0);
    const from = extends_ ? Math.max(0, searched - longest + 1) : 0;
    for (const s of this.stops) {
      const at = text.indexOf(s, from);
      if (at >= 0) {
        text = text.slice(0, at);
        this.done = true;
      }
    }
    this.text = text;
  }

  /** The text not yet handed out that is safe to show; `final`: the sequence ends now. */
  next(final: boolean): string {
    let end = this.text.length;
    if (!final && !this.done) {
      if (this.text.endsWith(REPLACEMENT)) end -= 1; // an incomplete UTF-8 sequence so far
      for (const s of this.stops) {
        for (let k = Math.min(s.length - 1, end); k > 0; k--) {
          if (this.text.slice(end - k, end) === s.slice(0, k)) {
            end -= k;
            break;
          }
        }
      }
    }
    if (end <= this.emitted) return '';
    const piece = this.text.slice(this.emitted, end);
    this.emitted = end;
    return piece;
  }
}
