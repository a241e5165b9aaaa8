/**
 * Mutations of valid files for the fuzz suite (fast-check arbitraries). Two levels:
 *  - structural: parse the valid JSON, then replace / delete / add values at random paths with
 *    hostile ones (huge numbers, wrong types, `__proto__` keys, deep nesting, long strings);
 *  - textual / binary: truncation, bit flips, inserted and duplicated bytes.
 * Plain JavaScript (not TypeScript) because the runner is a child process Node starts directly.
 */
import fc from 'fast-check';

/** Values that break naive parsers: sizes, wrong types, prototype keys, very deep nesting. */
export const hostileValue = fc.oneof(
  fc.constantFrom(
    0,
    -1,
    1,
    2,
    3.5,
    -0,
    2 ** 31,
    2 ** 32 + 1,
    2 ** 53,
    1e9,
    1e12,
    1e308,
    -1e308,
    5e-324,
    Number.MAX_SAFE_INTEGER,
  ),
  fc.constantFrom(
    '',
    'x',
    '__proto__',
    'constructor',
    'toString',
    'NaN',
    'Infinity',
    '-1',
    '1e9',
    '\u0000',
    '\ud800',
    'F32',
    'I64',
    'BOGUS',
    'LORA',
    'PARA',
    'IA3',
    'llama',
    '(.*.*)*X',
    '{% for i in range(100000000) %}x{% endfor %}',
    '{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}',
    '{{ "x" * 1000000000 }}',
  ),
  fc.constantFrom(null, true, false),
  fc.constant([]),
  fc.constant({}),
  fc.constant('a'.repeat(100_000)),
  fc.array(fc.integer({ min: -5, max: 1_000_000 }), { maxLength: 8 }),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 16 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.integer(), { maxKeys: 4 }),
);

/** Every path (array of keys) in a JSON value, the root included. */
function paths(v, prefix = [], out = [], limit = 2000) {
  if (out.length >= limit) return out;
  out.push(prefix);
  if (Array.isArray(v)) for (let i = 0; i < v.length; i++) paths(v[i], [...prefix, i], out, limit);
  else if (v !== null && typeof v === 'object')
    for (const k of Object.keys(v)) paths(v[k], [...prefix, k], out, limit);
  return out;
}

function getAt(v, p) {
  return p.reduce((x, k) => (x === null || typeof x !== 'object' ? undefined : x[k]), v);
}

/** One structural edit of `value` (a deep copy is edited). */
const structuralEdit = fc.record({
  pick: fc.nat(),
  op: fc.constantFrom('replace', 'replace', 'replace', 'delete', 'add', 'proto', 'wrap'),
  key: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__proto__', 'constructor')),
  value: hostileValue,
});

function applyEdit(root, edit) {
  // Arbitraries may hand out one shared object (fc.constant({})): insert copies only.
  const e = {
    ...edit,
    value: edit.value === undefined ? undefined : JSON.parse(JSON.stringify(edit.value)),
  };
  const all = paths(root);
  const p = all[e.pick % all.length];
  if (p.length === 0) return e.op === 'wrap' ? [root] : e.op === 'replace' ? e.value : root;
  const parent = getAt(root, p.slice(0, -1));
  const k = p[p.length - 1];
  if (parent === null || typeof parent !== 'object') return root;
  switch (e.op) {
    case 'replace':
      parent[k] = e.value;
      break;
    case 'delete':
      if (Array.isArray(parent)) parent.splice(k, 1);
      else delete parent[k];
      break;
    case 'add':
      if (Array.isArray(parent)) parent.push(e.value);
      else
        Object.defineProperty(parent, e.key, {
          value: e.value,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      break;
    case 'proto': {
      // An own "__proto__" key, as JSON.parse makes it: a loader that copies keys with `=` pollutes.
      const target = getAt(root, p);
      if (target !== null && typeof target === 'object' && !Array.isArray(target))
        Object.defineProperty(target, '__proto__', {
          value: { polluted: 'yes', r: 1e9 },
          enumerable: true,
          writable: true,
          configurable: true,
        });
      break;
    }
    case 'wrap':
      parent[k] = [parent[k]];
      break;
  }
  return root;
}

/** A JSON text: `valid` with 1–4 structural edits. */
export function mutatedJsonValue(valid) {
  return fc.array(structuralEdit, { minLength: 1, maxLength: 4 }).map((edits) => {
    let v = structuredClone(valid);
    for (const e of edits) v = applyEdit(v, e);
    return JSON.stringify(v);
  });
}

/** Text-level edits of a JSON text: truncation, a changed character, huge or deep insertions. */
export function mutatedJsonText(text) {
  return fc.oneof(
    fc.nat(text.length).map((n) => text.slice(0, n)),
    fc
      .record({
        at: fc.nat(text.length - 1),
        ch: fc.constantFrom('"', '{', '}', '[', ']', ',', ':', '\\', '0', 'e', '-', '\u0000'),
      })
      .map(({ at, ch }) => text.slice(0, at) + ch + text.slice(at + 1)),
    // A number literal made huge (1e400 parses as Infinity) or negative.
    fc
      .record({
        which: fc.nat(),
        lit: fc.constantFrom('1e400', '-1e400', '1e21', '-1', '0.5', '99999999999999999999'),
      })
      .map(({ which, lit }) => {
        let i = 0;
        return text.replace(/-?\d+(\.\d+)?([eE][-+]?\d+)?/g, (m) => (i++ === which % 40 ? lit : m));
      }),
    // Very deep nesting at the root or in place of the first value.
    fc.constantFrom(10_000, 100_000).map((d) => `${'['.repeat(d)}${']'.repeat(d)}`),
    fc
      .constantFrom(10_000, 100_000)
      .map((d) => text.replace(/:/, `:${'{"a":'.repeat(d)}0${'}'.repeat(d)}`)),
  );
}

/** A JSON text from either level. */
export function mutatedJson(valid) {
  const text = JSON.stringify(valid);
  return fc.oneof(
    { weight: 3, arbitrary: mutatedJsonValue(valid) },
    { weight: 1, arbitrary: mutatedJsonText(text) },
  );
}

/** Byte-level edits: truncation, bit flips (mostly in the first `hot` bytes), inserted or repeated runs. */
export function mutatedBytes(valid, hot = valid.length) {
  const flip = fc.record({
    at: fc.nat(Math.max(0, Math.min(hot, valid.length) - 1)),
    bit: fc.nat(7),
  });
  return fc.oneof(
    fc.nat(valid.length).map((n) => valid.slice(0, n)),
    fc.array(flip, { minLength: 1, maxLength: 8 }).map((fl) => {
      const b = valid.slice();
      for (const { at, bit } of fl) b[at] ^= 1 << bit;
      return b;
    }),
    fc
      .record({ at: fc.nat(valid.length), extra: fc.uint8Array({ minLength: 1, maxLength: 64 }) })
      .map(({ at, extra }) => {
        const b = new Uint8Array(valid.length + extra.length);
        b.set(valid.subarray(0, at), 0);
        b.set(extra, at);
        b.set(valid.subarray(at), at + extra.length);
        return b;
      }),
    fc
      .record({ from: fc.nat(valid.length - 1), len: fc.integer({ min: 1, max: 256 }) })
      .map(({ from, len }) => {
        const run = valid.subarray(from, from + len);
        const b = new Uint8Array(valid.length + run.length);
        b.set(valid.subarray(0, from + run.length), 0);
        b.set(run, from + run.length);
        b.set(valid.subarray(from + run.length), from + 2 * run.length);
        return b;
      }),
  );
}

/** A safetensors file whose header JSON is mutated (re-encoded with a consistent or a wrong length). */
export function mutatedSafetensors(valid) {
  const n = Number(new DataView(valid.buffer, valid.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(valid.subarray(8, 8 + n)));
  const data = valid.subarray(8 + n);
  const withHeader = (json, lenDelta) => {
    const h = new TextEncoder().encode(json);
    const out = new Uint8Array(8 + h.length + data.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(Math.max(0, h.length + lenDelta)), true);
    out.set(h, 8);
    out.set(data, 8 + h.length);
    return out;
  };
  return fc.oneof(
    { weight: 3, arbitrary: mutatedJson(header).map((json) => withHeader(json, 0)) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(-8, -1, 1, 7, 2 ** 20, 2 ** 40)
        .map((d) => withHeader(JSON.stringify(header), d)),
    },
    { weight: 2, arbitrary: mutatedBytes(valid, 8 + n) },
  );
}

/** Short text for messages: the mutated input, truncated to `max` characters. */
export function describeInput(x, max = 600) {
  const bytes = (b) => `<${b.length} bytes> ${new TextDecoder().decode(b.subarray(0, 300))}`;
  const s =
    x instanceof Uint8Array
      ? bytes(x)
      : typeof x === 'string'
        ? x
        : JSON.stringify(x, (_k, v) => (v instanceof Uint8Array ? bytes(v) : v));
  return s.length > max ? `${s.slice(0, max)}… (${s.length} chars)` : s;
}
