import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isParaError } from '@para/core';
import { describe, expect, it } from 'vitest';
import {
  BYTE_TO_CHAR,
  ByteLevelBpe,
  byteLevelToBytes,
  bytesToByteLevel,
  gpt2Regex,
  lastSafeCut,
  ParaTokenizer,
  trainBpe,
  WordCounter,
} from '../src/index';
import { generateCorpus, prng, TRICKY_TEXTS } from './helpers/corpus';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

function expectParaError(fn: () => unknown, code: string, text?: string) {
  try {
    fn();
  } catch (e) {
    expect(isParaError(e, code as never), String(e)).toBe(true);
    if (text !== undefined) expect(String((e as Error).message)).toContain(text);
    return e as Error;
  }
  throw new Error(`expected a ParaError ${code}`);
}

/**
 * The textbook trainer: recount every pair of every word before each merge. Same numbering
 * (byte symbols sorted by character, then merged tokens; a repeated string reuses its id) and
 * same tie-break (smallest (left, right) ids), so it must learn exactly the same merges.
 */
function naiveMerges(texts: string[], vocabSize: number, minFrequency = 2): string[] {
  const counts = new Map<string, number>();
  const re = gpt2Regex();
  for (const t of texts)
    for (const m of t.matchAll(re)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  const tokens = BYTE_TO_CHAR.slice().sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0));
  const idOf = new Map(tokens.map((t, i) => [t, i]));
  const words = [...counts].map(([w, c]) => ({
    syms: [...bytesToByteLevel(new TextEncoder().encode(w))].map((ch) => idOf.get(ch)!),
    c,
  }));
  const merges: string[] = [];
  while (tokens.length < vocabSize) {
    const pairs = new Map<string, number>();
    for (const { syms, c } of words)
      for (let i = 0; i + 1 < syms.length; i++)
        pairs.set(`${syms[i]},${syms[i + 1]}`, (pairs.get(`${syms[i]},${syms[i + 1]}`) ?? 0) + c);
    let best: [number, number] | undefined;
    let bestCount = 0;
    for (const [k, c] of pairs) {
      const [a, b] = k.split(',').map(Number) as [number, number];
      if (
        c > bestCount ||
        (c === bestCount && best !== undefined && (a < best[0] || (a === best[0] && b < best[1])))
      ) {
        best = [a, b];
        bestCount = c;
      }
    }
    if (best === undefined || bestCount < minFrequency) break;
    const [a, b] = best;
    const str = tokens[a]! + tokens[b]!;
    merges.push(`${tokens[a]} ${tokens[b]}`);
    let m = idOf.get(str);
    if (m === undefined) {
      m = tokens.length;
      tokens.push(str);
      idOf.set(str, m);
    }
    for (const w of words) {
      const out: number[] = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) {
          out.push(m);
          i++;
        } else out.push(w.syms[i]!);
      }
      w.syms = out;
    }
  }
  return merges;
}

describe('byte-level alphabet', () => {
  it('maps the 256 bytes to 256 distinct characters and back', () => {
    expect(new Set(BYTE_TO_CHAR).size).toBe(256);
    expect(BYTE_TO_CHAR[32]).toBe('Ġ');
    expect(BYTE_TO_CHAR[10]).toBe('Ċ');
    expect(BYTE_TO_CHAR[65]).toBe('A');
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(byteLevelToBytes(bytesToByteLevel(all))).toEqual(all);
    expect(byteLevelToBytes('a b')).toBeUndefined();
  });
});

describe('word counting', () => {
  it('counting a stream in random chunks gives exactly the counts of the whole text', () => {
    const text = generateCorpus(7, 400) + '   \n\n  tail   ';
    const whole = new WordCounter();
    whole.addText(text);
    const r = prng(3);
    for (let trial = 0; trial < 5; trial++) {
      const streamed = new WordCounter();
      for (let i = 0; i < text.length; ) {
        const n = 1 + Math.floor(r() * 200);
        streamed.push(text.slice(i, i + n));
        i += n;
      }
      streamed.end();
      expect(new Map([...streamed.counts].sort())).toEqual(new Map([...whole.counts].sort()));
      expect(streamed.words).toBe(whole.words);
      expect(streamed.chars).toBe(text.length);
    }
  });

  it('cuts only where GPT-2 pre-tokenisation splits anyway', () => {
    expect(lastSafeCut('ab cd')).toBe(2);
    expect(lastSafeCut('ab  ')).toBe(2);
    expect(lastSafeCut('   ')).toBe(-1);
    expect(lastSafeCut('abc')).toBe(-1);
  });

  it('bounds memory by dropping the rarest words past maxDistinctWords', () => {
    const c = new WordCounter({ maxDistinctWords: 100 });
    const words = Array.from({ length: 1000 }, (_, i) => `w${i}`);
    c.addText(`${words.join(' ')} ${'common '.repeat(50)}`);
    expect(c.counts.size).toBeLessThanOrEqual(100);
    expect(c.counts.get(' common')).toBe(50);
    expect(c.prunedWords).toBeGreaterThan(0);
  });
});

describe('BPE trainer', () => {
  it('learns exactly the merges of a full recount per merge (incremental updates are exact)', () => {
    const texts = [generateCorpus(11, 150, 120), 'aaaaaaa bbbb abababab aaaa', '  \n\n\t\t  x  '];
    const trained = trainBpe(texts, { vocabSize: 256 + 150 });
    expect(trained.tokenizerJson.model.merges).toEqual(naiveMerges(texts, 256 + 150));
    expect(trained.stats.merges).toBe(150);
  });

  it('learns the same vocabulary and merges as the Rust `tokenizers` BpeTrainer (golden from Python)', () => {
    const corpus = readFileSync(join(fixtures, 'hf-bpe-corpus.txt'), 'utf8');
    const hf = JSON.parse(readFileSync(join(fixtures, 'hf-bpe-tokenizer.json'), 'utf8'));
    const trained = trainBpe([corpus], {
      vocabSize: 1000,
      specialTokens: ['<s>', '</s>', '<pad>'],
    });
    const ours = trained.tokenizerJson;
    const hfMerges = (hf.model.merges as (string | string[])[]).map((m) =>
      Array.isArray(m) ? m.join(' ') : m,
    );
    expect(ours.model.merges).toEqual(hfMerges);
    expect(ours.model.vocab).toEqual(hf.model.vocab);
    expect(ours.added_tokens).toEqual(hf.added_tokens);
    expect(ours.pre_tokenizer).toEqual(hf.pre_tokenizer);
  });

  it('writes a tokenizer.json that @huggingface/tokenizers encodes exactly as our encoder and as Python', () => {
    const corpus = readFileSync(join(fixtures, 'hf-bpe-corpus.txt'), 'utf8');
    const expected = JSON.parse(readFileSync(join(fixtures, 'hf-bpe-encodings.json'), 'utf8')) as {
      samples: { text: string; ids: number[] }[];
    };
    const trained = trainBpe([corpus], {
      vocabSize: 1000,
      specialTokens: ['<s>', '</s>', '<pad>'],
    });
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJsonText(), trained.tokenizerConfigText());
    for (const { text, ids } of expected.samples) {
      expect(tok.encode(text, { addSpecialTokens: false })).toEqual(ids);
      expect(trained.encoder.encode(text)).toEqual(ids);
    }
  });

  it('held-out text: loader encoding == trainer-side encoding, and both round-trip exactly', () => {
    // Same language (lexicon), different lines: the last 10% is held out.
    const lines = generateCorpus(1, 3300).split(/(?<=\n)/);
    const cut = Math.floor(lines.length * 0.9);
    const held = lines.slice(cut).join('');
    const trained = trainBpe([lines.slice(0, cut).join('')], {
      vocabSize: 2000,
      specialTokens: ['<|endoftext|>'],
    });
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJson, trained.tokenizerConfig);
    const heldOut = [held, ...TRICKY_TEXTS, 'special <|endoftext|> in text<|endoftext|>'];
    for (const text of heldOut) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      expect(trained.encoder.encode(text)).toEqual(ids);
      expect(tok.decode(ids)).toBe(text);
      expect(trained.encoder.decode(ids)).toBe(text);
    }
    // Compression on held-out text is real: well over one character per token.
    expect(held.length / tok.encode(held).length).toBeGreaterThan(2.5);
  });

  it('long words (heap path) merge exactly as short ones (scan path) and as the loader', () => {
    const trained = trainBpe([generateCorpus(5, 1500)], { vocabSize: 1200 });
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJson);
    const r = prng(9);
    const letters = 'abcdefghilmnoprstuéö';
    for (let i = 0; i < 20; i++) {
      const n = 49 + Math.floor(r() * 400);
      let w = '';
      while (w.length < n) w += letters[Math.floor(r() * letters.length)];
      const ids = trained.encoder.encodeWord(w);
      expect(tok.encode(w)).toEqual(ids);
      expect(trained.encoder.decode(ids)).toBe(w);
    }
  });

  it('is deterministic: the same corpus gives byte-identical files', () => {
    const corpus = generateCorpus(4, 800);
    const a = trainBpe([corpus], { vocabSize: 700, specialTokens: ['<s>', '</s>'] });
    const b = trainBpe([corpus], { vocabSize: 700, specialTokens: ['<s>', '</s>'] });
    expect(a.tokenizerJsonText()).toBe(b.tokenizerJsonText());
    expect(a.tokenizerConfigText()).toBe(b.tokenizerConfigText());
  });

  it('special tokens: ids 0.., roles by name, bos prepended with special tokens, config written', () => {
    const trained = trainBpe([generateCorpus(8, 200)], {
      vocabSize: 400,
      specialTokens: ['<s>', '</s>', '<pad>', '<unk>'],
    });
    const cfg = trained.tokenizerConfig;
    expect(cfg).toMatchObject({
      bos_token: '<s>',
      eos_token: '</s>',
      pad_token: '<pad>',
      unk_token: '<unk>',
      clean_up_tokenization_spaces: false,
    });
    const tok = ParaTokenizer.fromJSON(trained.tokenizerJson, cfg);
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId, tok.unkTokenId]).toEqual([0, 1, 2, 3]);
    expect(tok.vocabSize).toBe(400);
    const ids = tok.encode('hello');
    expect(ids[0]).toBe(0);
    expect(tok.encode('hello', { addSpecialTokens: false })).toEqual(ids.slice(1));
    expect(tok.decode(ids)).toBe('<s>hello');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('hello');
    expect(tok.encode('a</s>b', { addSpecialTokens: false })).toContain(1);
    // Explicit roles win over names; no bos → nothing is prepended.
    const t2 = trainBpe(['abc abc'], {
      vocabSize: 300,
      specialTokens: ['<|endoftext|>'],
      eosToken: '<|endoftext|>',
    });
    expect(t2.tokenizerConfig).toMatchObject({ bos_token: null, eos_token: '<|endoftext|>' });
    const tok2 = ParaTokenizer.fromJSON(t2.tokenizerJson, t2.tokenizerConfig);
    expect(tok2.encode('abc')).toEqual(tok2.encode('abc', { addSpecialTokens: false }));
  });

  it('honours minFrequency, maxTokenLength and reports progress', () => {
    const phases = new Set<string>();
    const trained = trainBpe([generateCorpus(6, 500)], {
      vocabSize: 5000,
      maxTokenLength: 3,
      onProgress: (p) => phases.add(p.phase),
    });
    expect(trained.stats.stoppedEarly).toBeDefined();
    expect(trained.stats.vocabSize).toBeLessThan(5000);
    for (const tok of Object.keys(trained.tokenizerJson.model.vocab))
      expect(byteLevelToBytes(tok)!.length).toBeLessThanOrEqual(3);
    expect(phases.has('done')).toBe(true);
    const few = trainBpe(['ab ab cd'], { vocabSize: 1000, minFrequency: 2 });
    // "ab" ×1, " ab" ×1, " cd" ×1: only (a, b) occurs twice.
    expect(few.tokenizerJson.model.merges).toEqual(['a b']);
    expect(few.stats.stoppedEarly).toContain('2 times');
  });

  it('typed errors: empty corpus, vocabulary below the byte alphabet, bad special tokens', () => {
    expectParaError(() => trainBpe([], { vocabSize: 1000 }), 'INVALID_ARGUMENT', 'empty');
    expectParaError(() => trainBpe(['', ''], { vocabSize: 1000 }), 'INVALID_ARGUMENT', 'empty');
    const e = expectParaError(
      () => trainBpe(['text'], { vocabSize: 257, specialTokens: ['<s>', '</s>'] }),
      'INVALID_ARGUMENT',
      'vocabSize',
    );
    expect(e.message).toContain('258');
    expectParaError(
      () => trainBpe(['text'], { vocabSize: 255 }),
      'INVALID_ARGUMENT',
      'byte alphabet',
    );
    expectParaError(() => trainBpe(['text'], { vocabSize: 300.5 }), 'INVALID_ARGUMENT');
    expectParaError(
      () => trainBpe(['text'], { vocabSize: 300, specialTokens: ['<s>', '<s>'] }),
      'INVALID_ARGUMENT',
      'twice',
    );
    expectParaError(
      () => trainBpe(['text'], { vocabSize: 300, specialTokens: [''] }),
      'INVALID_ARGUMENT',
    );
    expectParaError(
      () => trainBpe(['text'], { vocabSize: 300, specialTokens: ['a'] }),
      'INVALID_ARGUMENT',
      'byte symbol',
    );
    expectParaError(
      () => trainBpe(['text'], { vocabSize: 300, specialTokens: ['<s>'], bosToken: '<bos>' }),
      'INVALID_ARGUMENT',
      'bosToken',
    );
  });

  // ~1 s on one core here. No timing assertion (a loaded machine must not fail it); the generous
  // test timeout only catches a trainer gone quadratic.
  it('trains a 2 MB corpus to vocabulary 4000', { timeout: 300_000 }, () => {
    const corpus = generateCorpus(12, 30_000, 5000);
    expect(corpus.length).toBeGreaterThan(1.5e6);
    const trained = trainBpe([corpus], { vocabSize: 4000 });
    expect(trained.stats.vocabSize).toBe(4000);
  });

  it('ByteLevelBpe rejects vocabularies that are not byte-level', () => {
    expectParaError(() => new ByteLevelBpe({ a: 0 }, []), 'UNSUPPORTED', 'byte');
  });
});
