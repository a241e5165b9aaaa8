/**
 * GPT-2 cross-check: GPT-2's vocabulary (tiktoken's r50k_base, as shipped in `gpt-tokenizer`)
 * turned into a Hugging Face tokenizer.json the way transformers converts tiktoken files, then
 * encoded by ParaTokenizer (@huggingface/tokenizers) and by our ByteLevelBpe, and compared with
 * gpt-tokenizer's own independent encoder.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { encode as gptEncode } from 'gpt-tokenizer/encoding/r50k_base';
import { beforeAll, describe, expect, it } from 'vitest';
import { BYTE_TO_CHAR, ByteLevelBpe, ParaTokenizer } from '../src/index';
import { generateCorpus, TRICKY_TEXTS } from './helpers/corpus';

const require = createRequire(import.meta.url);

/** tiktoken ranks → tokenizer.json (transformers' TikTokenConverter: one merge per token, in rank order). */
function gpt2TokenizerJson(): object {
  const lines = readFileSync(require.resolve('gpt-tokenizer/data/r50k_base.tiktoken'), 'utf8')
    .trim()
    .split('\n');
  // Tokens as latin1 strings (one char per byte), so byte strings can key a Map.
  const ranks = new Map<string, number>();
  for (const line of lines) {
    const [b64, rank] = line.split(' ');
    ranks.set(Buffer.from(b64!, 'base64').toString('latin1'), Number(rank));
  }
  const toByteLevel = (s: string) => Array.from(s, (c) => BYTE_TO_CHAR[c.charCodeAt(0)]).join('');
  const vocab: Record<string, number> = {};
  const merges: string[] = [];
  for (const [token, rank] of ranks) {
    vocab[toByteLevel(token)] = rank;
    if (token.length === 1) continue;
    // BPE of the token's bytes with the merges ranked below it: the last step is its merge.
    let parts = Array.from(token);
    for (;;) {
      let best = -1;
      let bestRank = Number.POSITIVE_INFINITY;
      for (let i = 0; i + 1 < parts.length; i++) {
        const r = ranks.get(parts[i]! + parts[i + 1]!);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0 || bestRank >= rank) break;
      parts = [...parts.slice(0, best), parts[best]! + parts[best + 1]!, ...parts.slice(best + 2)];
    }
    expect(parts).toHaveLength(2);
    merges.push(`${toByteLevel(parts[0]!)} ${toByteLevel(parts[1]!)}`);
  }
  const byteLevel = {
    type: 'ByteLevel',
    add_prefix_space: false,
    trim_offsets: true,
    use_regex: true,
  };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      {
        id: 50256,
        content: '<|endoftext|>',
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: true,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

describe('GPT-2 (r50k_base from gpt-tokenizer) through tokenizer.json', () => {
  let json: { model: { vocab: Record<string, number>; merges: string[] } };
  let tok: ParaTokenizer;
  let ours: ByteLevelBpe;
  beforeAll(() => {
    json = gpt2TokenizerJson() as typeof json;
    tok = ParaTokenizer.fromJSON(json, { eos_token: '<|endoftext|>', bos_token: '<|endoftext|>' });
    ours = new ByteLevelBpe(
      json.model.vocab,
      json.model.merges.map((m) => m.split(' ') as [string, string]),
      [{ id: 50256, content: '<|endoftext|>', special: true }],
    );
  });

  it('has GPT-2 sizes and known ids', () => {
    expect(json.model.merges).toHaveLength(50000);
    expect(tok.vocabSize).toBe(50257);
    expect(tok.eosTokenId).toBe(50256);
    // Well-known GPT-2 ids.
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.encode(' the')).toEqual([262]);
  });

  it('encodes exactly as gpt-tokenizer, and our encoder agrees, on varied text', () => {
    const texts = [
      ...TRICKY_TEXTS,
      generateCorpus(41, 400),
      "The quick brown fox jumps over the lazy dog. It's 12:30pm — naïve café!",
    ];
    for (const text of texts) {
      const expected = gptEncode(text);
      expect(tok.encode(text), JSON.stringify(text.slice(0, 40))).toEqual(expected);
      expect(ours.encode(text)).toEqual(expected);
      expect(tok.decode(expected)).toBe(text);
    }
  });
});
