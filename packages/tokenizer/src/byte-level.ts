/**
 * GPT-2's byte-level alphabet and pre-tokenisation, exactly as `@huggingface/tokenizers` (and
 * the Rust `tokenizers` library) implement them, so our trainer and encoder split text the same
 * way the loader does.
 */

/**
 * GPT-2's pre-tokenisation pattern (ByteLevel pre-tokenizer with `use_regex: true`): English
 * contractions, letters with one optional leading space, digits likewise, other symbols
 * likewise, whitespace runs except the last space before a word, remaining whitespace.
 * Identical to the one `@huggingface/tokenizers` uses, character for character.
 */
export const GPT2_PRETOKENIZE_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/** A fresh global regex for {@link GPT2_PRETOKENIZE_PATTERN} (regexes with `g` keep state). */
export function gpt2Regex(): RegExp {
  return new RegExp(GPT2_PRETOKENIZE_PATTERN, 'gu');
}

/**
 * GPT-2's `bytes_to_unicode`: byte b → one printable character. Printable Latin-1 bytes map to
 * themselves; the other 68 (controls, space, 0x7F–0xA0, 0xAD) map to U+0100 upward in byte
 * order, so a space is 'Ġ' (U+0120) and a newline is 'Ċ' (U+010A).
 */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(printable(b) ? b : 256 + n++);
  return out;
})();

/** Inverse of {@link BYTE_TO_CHAR}: char code → byte, or -1 for a char outside the alphabet. */
export const CHAR_CODE_TO_BYTE: Int16Array = (() => {
  const out = new Int16Array(512).fill(-1);
  BYTE_TO_CHAR.forEach((c, b) => {
    out[c.charCodeAt(0)] = b;
  });
  return out;
})();

/** Bytes → their byte-level string (each byte one character). */
export function bytesToByteLevel(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]!]!;
  return s;
}

/** A byte-level string → its bytes, or undefined when a character is outside the alphabet. */
export function byteLevelToBytes(token: string): Uint8Array | undefined {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const code = token.charCodeAt(i);
    const b = code < 512 ? CHAR_CODE_TO_BYTE[code]! : -1;
    if (b < 0) return undefined;
    out[i] = b;
  }
  return out;
}

const encoder = new TextEncoder();

/** UTF-8 bytes of a string (lone surrogates become U+FFFD, as TextEncoder does). */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}
