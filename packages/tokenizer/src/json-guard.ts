/**
 * Guards for JSON from untrusted files: a nesting bound checked without recursion, and a short,
 * bounded description of a value for error messages (JSON.stringify of a deeply nested value
 * overflows the stack, and of a huge one is huge).
 *
 * V8's JSON.parse is not recursive: `[[[[…]]]]` 100,000 levels deep parses fine. What would
 * overflow the stack is the code that walks the result afterwards (ours, JSON.stringify,
 * `@huggingface/tokenizers` building a nested normalizer `Sequence`), so the depth is checked
 * right after parsing, before anything else looks at the value. Real tokenizer.json and
 * tokenizer_config.json files nest fewer than 10 levels.
 */
import { ParaError } from '@para/core';

export const MAX_JSON_DEPTH = 64;

/** Throws INVALID_JSON naming `file` when `value` nests deeper than {@link MAX_JSON_DEPTH}. */
export function checkJsonDepth(value: unknown, file: string): void {
  // Iterative walk; a value met again deeper (a cycle, for objects passed in) ends up too deep.
  const stack: [unknown, number, string][] = [[value, 0, '']];
  while (stack.length > 0) {
    const [v, depth, path] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= MAX_JSON_DEPTH) {
      throw new ParaError('INVALID_JSON', 'JSON nested too deeply', {
        file,
        field: path.length > 120 ? `${path.slice(0, 120)}…` : path,
        expected: `at most ${MAX_JSON_DEPTH} levels of nesting`,
        actual: 'more',
      });
    }
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) {
        const x = v[i];
        if (typeof x === 'object' && x !== null) stack.push([x, depth + 1, `${path}[${i}]`]);
      }
    } else {
      for (const key of Object.keys(v)) {
        const x = (v as Record<string, unknown>)[key];
        if (typeof x === 'object' && x !== null)
          stack.push([x, depth + 1, path === '' ? key : `${path}.${key}`]);
      }
    }
  }
}

/** A short description of a JSON value (at most ~80 characters), safe on any input. */
export function preview(v: unknown, max = 80): string {
  const out: string[] = [];
  let len = 0;
  const emit = (s: string) => {
    out.push(s);
    len += s.length;
  };
  const walk = (x: unknown, depth: number) => {
    if (len > max) return;
    if (x === undefined) return emit('nothing');
    if (typeof x !== 'object' || x === null) {
      const s =
        typeof x === 'string'
          ? JSON.stringify(x.length > max ? `${x.slice(0, max)}…` : x)
          : String(x);
      return emit(s);
    }
    if (depth >= 3) return emit(Array.isArray(x) ? '[…]' : '{…}');
    if (Array.isArray(x)) {
      emit('[');
      for (let i = 0; i < x.length && len <= max; i++) {
        if (i > 0) emit(',');
        walk(x[i], depth + 1);
      }
      return emit(']');
    }
    emit('{');
    let first = true;
    for (const key of Object.keys(x)) {
      if (len > max) break;
      if (!first) emit(',');
      first = false;
      emit(`${JSON.stringify(key.length > max ? `${key.slice(0, max)}…` : key)}:`);
      walk((x as Record<string, unknown>)[key], depth + 1);
    }
    emit('}');
  };
  walk(v, 0);
  const s = out.join('');
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/**
 * The text of a tokenizer file's bytes, which must be valid UTF-8 (a leading byte-order mark is
 * dropped): a decoder that quietly turns invalid bytes into U+FFFD would turn a token of a
 * corrupt vocabulary into another token. Throws INVALID_ENCODING naming `file`. No Node
 * built-ins, so a loader reading files its own way (HTTP, a checkpoint archive) can use it.
 */
export function decodeUtf8File(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new ParaError('INVALID_ENCODING', 'not valid UTF-8', {
      file,
      expected: 'UTF-8 text',
      actual: 'bytes that are not UTF-8',
      cause: e,
    });
  }
}
