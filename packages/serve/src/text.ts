/**
 * One request's decoded text, token by token, with stop strings applied: the same rules as
 * @para/model's text generation (text.ts, `RowText`, which is not exported), so a request served
 * here returns exactly the text `model.generate(prompt, {stop})` returns:
 *
 *   - a stop token ends the request and is not part of the text (unless special tokens are kept);
 *   - the text is cut at the first stop string, which is not returned;
 *   - streamed pieces are held back just long enough never to show part of a stop string or
 *     half a UTF-8 character (a trailing U+FFFD while more tokens may come).
 */

import type { ParaTokenizer } from '@para/tokenizer';

export type TextDecoder = Pick<ParaTokenizer, 'decode'>;

export class RequestText {
  private readonly ids: number[] = [];
  /** Characters already handed out by `next()`. */
  private emitted = 0;
  /** A stop token or stop string was seen. */
  done = false;
  text = '';

  constructor(
    private readonly tok: TextDecoder | undefined,
    private readonly stops: readonly string[],
    private readonly stopTokens: ReadonlySet<number>,
    private readonly keepSpecial = false,
  ) {}

  push(token: number): void {
    if (this.done) return;
    if (this.stopTokens.has(token) && !this.keepSpecial) {
      this.done = true;
      return;
    }
    this.ids.push(token);
    if (this.tok === undefined) {
      if (this.stopTokens.has(token)) this.done = true;
      return;
    }
    this.text = this.tok.decode(this.ids, { skipSpecialTokens: !this.keepSpecial });
    for (const s of this.stops) {
      const at = this.text.indexOf(s);
      if (at >= 0) {
        this.text = this.text.slice(0, at);
        this.done = true;
      }
    }
    if (this.stopTokens.has(token)) this.done = true;
  }

  /** The text not yet handed out that is safe to show; `final`: the request ends now. */
  next(final: boolean): string {
    let end = this.text.length;
    if (!final && !this.done) {
      if (this.text.endsWith('\uFFFD')) end -= 1; // an incomplete UTF-8 sequence so far
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
