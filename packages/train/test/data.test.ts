import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isParaError } from '@para/core';
import { describe, expect, it } from 'vitest';
import { parseJsonl, recordText, skippedMessage, tokenizeRecords } from '../src/index';
import { loadDataset, readJsonlFile } from '../src/node';
import { taskFile, tinyTokenizer } from './helpers/fixtures';

function caught(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

describe('JSONL datasets', () => {
  it('parses prompt/completion and messages lines, skipping blank lines', () => {
    const text =
      '{"prompt":"1+1=","completion":"2"}\n\n{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}\r\n';
    const r = parseJsonl(text, 'd.jsonl');
    expect(r).toEqual([
      { line: 1, prompt: '1+1=', completion: '2' },
      {
        line: 3,
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'hello' },
        ],
      },
    ]);
  });

  it('a broken line names the file and the line', () => {
    const e = caught(() =>
      parseJsonl(
        '{"prompt":"a","completion":"b"}\n{"prompt": "a", completion: 1}\n',
        'data/train.jsonl',
      ),
    );
    expect(isParaError(e, 'INVALID_JSON')).toBe(true);
    expect(e.message).toMatch(/^data\/train\.jsonl:2: line 2 is not valid JSON/);
  });

  it('an empty dataset is a clear error', () => {
    const e = caught(() => parseJsonl('\n  \n', 'empty.jsonl'));
    expect(isParaError(e, 'INVALID_ARGUMENT')).toBe(true);
    expect(e.message).toContain('empty.jsonl: the dataset is empty');
  });

  it('a missing or mistyped field names file, line and field', () => {
    const e1 = caught(() => parseJsonl('{"prompt":"a"}', 'x.jsonl'));
    expect(e1.message).toBe(
      'x.jsonl:1, field "completion": line 1: missing or empty "completion" (expected a non-empty string, got nothing (the field is missing))',
    );
    const e2 = caught(() => parseJsonl('{"prompt":3,"completion":"b"}', 'x.jsonl'));
    expect(e2.message).toContain('field "prompt"');
    const e3 = caught(() =>
      parseJsonl(
        '{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}',
        'x.jsonl',
      ),
    );
    expect(e3.message).toContain('must be the assistant');
    const e4 = caught(() => parseJsonl('[1,2]', 'x.jsonl'));
    expect(e4.message).toContain('not a JSON object');
  });

  it('reads files with typed errors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'para-data-'));
    await expect(readJsonlFile(join(dir, 'missing.jsonl'))).rejects.toMatchObject({
      code: 'FILE_NOT_FOUND',
    });
    writeFileSync(
      join(dir, 'bad.jsonl'),
      '{"prompt":"a","completion":"b"}\n{"prompt":"a","completion":"b"}\n{oops}\n',
    );
    await expect(readJsonlFile(join(dir, 'bad.jsonl'))).rejects.toThrow(
      /bad\.jsonl:3: line 3 is not valid JSON/,
    );
  });
});

describe('tokenisation', () => {
  const tok = tinyTokenizer();

  it('ids = encode(prompt) ++ encode(completion) ++ [eos], promptLength = |encode(prompt)|', () => {
    const recs = parseJsonl('{"prompt":"Opposite of hot:","completion":" cold"}', 'a.jsonl');
    const d = tokenizeRecords(tok, recs, 'a.jsonl', { maxLength: 64 });
    const p = tok.encode('Opposite of hot:');
    const c = tok.encode(' cold', { addSpecialTokens: false });
    expect(p[0]).toBe(tok.bosTokenId);
    expect(d.examples[0]).toEqual({
      ids: [...p, ...c, tok.eosTokenId],
      promptLength: p.length,
      source: 'a.jsonl:1',
    });
    expect(d.texts[0]).toEqual({ prompt: 'Opposite of hot:', completion: ' cold', line: 1 });
  });

  it('messages are rendered with the chat template: prompt ends with the generation prompt', () => {
    const recs = parseJsonl(
      '{"messages":[{"role":"user","content":"Opposite of hot?"},{"role":"assistant","content":"cold"}]}',
      'c.jsonl',
    );
    expect(recordText(tok, recs[0]!, 'c.jsonl')).toEqual({
      prompt: 'User: Opposite of hot?\nAssistant:',
      completion: ' cold',
    });
    const d = tokenizeRecords(tok, recs, 'c.jsonl', { maxLength: 64 });
    const ex = d.examples[0]!;
    expect(ex.ids[ex.ids.length - 1]).toBe(tok.eosTokenId);
    expect(tok.decode(ex.ids.slice(ex.promptLength, -1))).toBe(' cold');
  });

  it('examples longer than the context are skipped with a count, or rejected with strict', () => {
    const long = 'word '.repeat(80).trim();
    const text = [
      `{"prompt":"1+1=","completion":"2"}`,
      `{"prompt":"${long}","completion":" x"}`,
      `{"prompt":"2+2=","completion":"4"}`,
    ].join('\n');
    const recs = parseJsonl(text, 'l.jsonl');
    const d = tokenizeRecords(tok, recs, 'l.jsonl', { maxLength: 32 });
    expect(d.examples).toHaveLength(2);
    expect(d.skipped).toEqual([{ line: 2, tokens: expect.any(Number), promptTooLong: true }]);
    expect(skippedMessage(d, 32)).toBe(
      "l.jsonl: skipped 1 of 3 examples longer than the model's context (32 tokens): line 2 (the strict option makes this an error)",
    );
    const e = caught(() => tokenizeRecords(tok, recs, 'l.jsonl', { maxLength: 32, strict: true }));
    expect(e.message).toMatch(
      /^l\.jsonl:2, field "prompt": line 2: the prompt is longer than the model's context \(strict\)/,
    );
    const all = caught(() =>
      tokenizeRecords(
        tok,
        parseJsonl(`{"prompt":"${long}","completion":" x"}`, 'm.jsonl'),
        'm.jsonl',
        { maxLength: 32 },
      ),
    );
    expect(all.message).toContain('no example fits');
  });

  it('loads a bundled task file', async () => {
    const d = await loadDataset(taskFile('antonym', 'dev'), tok, { maxLength: 64 });
    expect(d.examples).toHaveLength(200);
    expect(d.skipped).toHaveLength(0);
    for (const e of d.examples) expect(e.promptLength).toBeLessThan(e.ids.length - 1);
  });
});
