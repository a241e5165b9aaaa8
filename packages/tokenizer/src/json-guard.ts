/**
 * Guards for JSON from untrusted files: a nesting bound checked without recursion (on parsed
 * values, so objects passed in are covered too; messages describe values with @para/core's
 * bounded `describeValue`).
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

/**
 * Whether a regular expression from a tokenizer file can take exponential (or high-polynomial)
 * time by backtracking: a group holding an unbounded quantifier (`*`, `+`, `{n,}`) that is itself
 * repeated (`*`, `+`, `{n,}`, `{n,m}` with m ≥ 2) — `(a+)+`, `(\w+\s?)*`, `(?:x*){3,}`. JavaScript
 * regexes cannot be interrupted, so such a pattern in a Split pre-tokenizer or a Replace
 * normalizer would hang `encode` on a short hostile text. The pre-tokenizer patterns of real
 * tokenizers (GPT-2, Llama 3, Qwen, GPT-4o style, …) repeat only characters and classes. This is
 * a syntactic check of that one shape, not a proof of safety. Returns a description, or undefined.
 */
export function nestedQuantifier(pattern: string): string | undefined {
  // For each open group: whether it (so far) contains an unbounded quantifier.
  const groups: boolean[] = [];
  let lastGroupUnbounded: boolean | undefined; // the group that just closed, if the last atom
  let i = 0;
  const quantifierAt = (
    j: number,
  ): { unbounded: boolean; repeats: boolean; end: number } | undefined => {
    const c = pattern[j];
    if (c === '*' || c === '+') return { unbounded: true, repeats: true, end: j + 1 };
    if (c === '?') return { unbounded: false, repeats: false, end: j + 1 };
    if (c === '{') {
      const m = /^\{(\d*)(,?)(\d*)\}/.exec(pattern.slice(j, j + 24));
      if (m === null || (m[1] === '' && m[3] === '')) return undefined;
      const max =
        m[2] === '' ? Number(m[1]) : m[3] === '' ? Number.POSITIVE_INFINITY : Number(m[3]);
      return {
        unbounded: max === Number.POSITIVE_INFINITY,
        repeats: max >= 2,
        end: j + m[0].length,
      };
    }
    return undefined;
  };
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '\\') {
      i += 2;
      lastGroupUnbounded = undefined;
    } else if (c === '[') {
      // A character class: skip to its closing bracket (a leading ']' or '^]' is literal).
      let j = i + 1;
      if (pattern[j] === '^') j++;
      if (pattern[j] === ']') j++;
      while (j < pattern.length && pattern[j] !== ']') j += pattern[j] === '\\' ? 2 : 1;
      i = j + 1;
      lastGroupUnbounded = undefined;
    } else if (c === '(') {
      groups.push(false);
      i++;
      lastGroupUnbounded = undefined;
      continue;
    } else if (c === ')') {
      lastGroupUnbounded = groups.pop() ?? false;
      i++;
    } else {
      const q = quantifierAt(i);
      if (q === undefined) {
        i++;
        lastGroupUnbounded = undefined;
        continue;
      }
      if (lastGroupUnbounded === true && q.repeats) {
        return `a repeated group that itself repeats without bound, at character ${i}`;
      }
      if (q.unbounded && groups.length > 0) groups[groups.length - 1] = true;
      // A group that contains an unbounded quantifier makes its enclosing group unbounded too.
      i = q.end;
      if (pattern[i] === '?' || pattern[i] === '+') i++; // lazy or possessive
      lastGroupUnbounded = undefined;
      continue;
    }
    // After an atom or a group, a following quantifier is handled by the branch above.
    if (lastGroupUnbounded === true && groups.length > 0) groups[groups.length - 1] = true;
  }
  return undefined;
}
