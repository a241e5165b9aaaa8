/**
 * JSON from untrusted files, bounded. `JSON.parse` itself copes with deep nesting, but every
 * recursive walk after it (validators, `structuredClone`, `JSON.stringify` in an error message)
 * overflows the stack on a few hundred KB of `[[[[…`, so nesting is checked first, in one linear
 * pass, and refused with a typed error. {@link describeValue} renders any value for a message in
 * bounded time and length, whatever its depth or size.
 */

import { ParaError } from './errors';

/** Deeper JSON is refused (real configs, tokenizers and headers nest less than 10 levels). */
export const MAX_JSON_DEPTH = 256;

/** The offset where `text`'s nesting first exceeds `maxDepth`, or -1 (strings are skipped). */
export function jsonDepthExceeded(text: string, maxDepth = MAX_JSON_DEPTH): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return i;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return -1;
}

/**
 * `JSON.parse(text)` with typed errors: INVALID_JSON naming `file` (and `field`, if the text is
 * one field of something larger) for a syntax error or nesting deeper than `maxDepth`.
 */
export function parseJsonText(
  text: string,
  file: string,
  options: { field?: string; maxDepth?: number; what?: string } = {},
): unknown {
  const maxDepth = options.maxDepth ?? MAX_JSON_DEPTH;
  const what = options.what ?? 'the file';
  const at = jsonDepthExceeded(text, maxDepth);
  if (at >= 0) {
    throw new ParaError('INVALID_JSON', `${what} nests too deeply`, {
      file,
      ...(options.field === undefined ? {} : { field: options.field }),
      expected: `JSON nested at most ${maxDepth} levels`,
      actual: `deeper at character ${at}`,
    });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new ParaError('INVALID_JSON', `${what} is not valid JSON`, {
      file,
      ...(options.field === undefined ? {} : { field: options.field }),
      actual: cause instanceof Error ? cause.message : String(cause),
      cause,
    });
  }
}

/** A short rendering of any value for an error message: bounded length, depth and time. */
export function describeValue(v: unknown, maxLength = 60): string {
  let budget = maxLength + 1;
  const walk = (x: unknown, depth: number): string => {
    if (budget <= 0) return '';
    let s: string;
    if (x === undefined) s = 'nothing';
    else if (typeof x === 'string')
      s = JSON.stringify(x.length > maxLength ? `${x.slice(0, maxLength)}…` : x);
    else if (typeof x === 'number' || typeof x === 'boolean' || x === null) s = String(x);
    else if (typeof x === 'bigint') s = `${x}n`;
    else if (Array.isArray(x)) {
      if (depth > 3) s = `[…${x.length}]`;
      else {
        const parts: string[] = [];
        for (let i = 0; i < x.length && budget > 0; i++) parts.push(walk(x[i], depth + 1));
        s = `[${parts.join(',')}${parts.length < x.length ? ',…' : ''}]`;
      }
    } else if (typeof x === 'object') {
      const keys = Object.keys(x as object);
      if (depth > 3) s = '{…}';
      else {
        const parts: string[] = [];
        for (let i = 0; i < keys.length && budget > 0; i++)
          parts.push(
            `${JSON.stringify(keys[i])}:${walk((x as Record<string, unknown>)[keys[i]!], depth + 1)}`,
          );
        s = `{${parts.join(',')}${parts.length < keys.length ? ',…' : ''}}`;
      }
    } else s = typeof x;
    budget -= s.length;
    return s;
  };
  const s = walk(v, 0);
  return s.length > maxLength ? `${s.slice(0, maxLength)}…` : s;
}
