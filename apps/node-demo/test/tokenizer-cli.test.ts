import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ParaTokenizer } from '@para/tokenizer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { paraRunner } from './helpers/cli';

const para = paraRunner(undefined);

/** A small seeded corpus: syllable words, some Unicode, CRLF and odd spacing. */
function corpus(lines: number): string {
  let s = 12345;
  const r = () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 2 ** 32;
  };
  const syl = ['ka', 'lo', 'mi', 'ne', 'ru', 'ta', 'shi', 'vo', 'é', 'ön', 'the', 'and', 'ing'];
  const extra = ['日本語', '👋🏽', 'café', 'naïve'];
  const out: string[] = [];
  for (let l = 0; l < lines; l++) {
    const words: string[] = [];
    for (let i = 0; i < 8; i++) {
      if (r() < 0.05) words.push(extra[Math.floor(r() * extra.length)]!);
      else
        words.push(
          Array.from(
            { length: 1 + Math.floor(r() * 3) },
            () => syl[Math.floor(r() * syl.length)],
          ).join(''),
        );
    }
    out.push(words.join(r() < 0.1 ? '  ' : ' ') + (r() < 0.1 ? '\r\n' : '\n'));
  }
  return out.join('');
}

// What a user would round-trip: every line kind the issue names, CRLF endings kept.
const TRICKY =
  'emoji 👋🏽 family 👨‍👩‍👧‍👦\n日本語のテキスト 中文\r\naccents: café naïve Ångström\ntabs\t\there\t\n   runs     of spaces   \n\nlast line without newline';

describe('para tokenizer', () => {
  let dir: string;
  let tokDir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'para-tok-cli-'));
    tokDir = join(dir, 'tok');
    writeFileSync(join(dir, 'a.txt'), corpus(3000));
    writeFileSync(join(dir, 'b.txt'), corpus(500));
    writeFileSync(join(dir, 'tricky.txt'), TRICKY);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('--help on every subcommand', () => {
    const top = para(['tokenizer', '--help']);
    expect(top.code).toBe(0);
    for (const sub of ['train', 'encode', 'decode']) expect(top.stdout).toContain(sub);
    expect(para(['--help']).stdout).toContain('tokenizer');
    expect(para(['tokenizer', 'train', '--help']).stdout).toContain('--vocab-size <n>');
    expect(para(['tokenizer', 'encode', '--help']).stdout).toContain('--add-special-tokens');
    expect(para(['tokenizer', 'decode', '--help']).stdout).toContain('--tokenizer <path>');
  });

  it('train --input FILE FILE --vocab-size N --out DIR --special-tokens a,b writes both files', () => {
    const r = para([
      'tokenizer',
      'train',
      '--input',
      join(dir, 'a.txt'),
      join(dir, 'b.txt'),
      '--vocab-size',
      '500',
      '--out',
      tokDir,
      '--special-tokens',
      '<s>,</s>,<pad>',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^wrote .*tokenizer\.json and .*tokenizer_config\.json: vocabulary 500 \(3 special, 256 bytes, 241 merges\)/,
    );
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('done:');
    const json = readFileSync(join(tokDir, 'tokenizer.json'), 'utf8');
    const config = JSON.parse(readFileSync(join(tokDir, 'tokenizer_config.json'), 'utf8'));
    expect(config).toMatchObject({ bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>' });
    const tok = ParaTokenizer.fromJSON(json, config);
    expect(tok.vocabSize).toBe(500);
    expect(tok.specialTokens).toEqual(['<s>', '</s>', '<pad>']);
    // --json and --quiet: stdout is the statistics, stderr is empty.
    const j = para([
      'tokenizer',
      'train',
      '--input',
      join(dir, 'b.txt'),
      '--vocab-size',
      '300',
      '--out',
      join(dir, 'tok2'),
      '--json',
      '--quiet',
    ]);
    expect(j.code, j.stderr).toBe(0);
    expect(j.stderr).toBe('');
    expect(JSON.parse(j.stdout)).toMatchObject({ vocabSize: 300, merges: 44 });
  });

  it('encode prints one JSON array per line; decode gives the text back exactly', () => {
    const enc = para([
      'tokenizer',
      'encode',
      '--tokenizer',
      tokDir,
      '--file',
      join(dir, 'tricky.txt'),
    ]);
    expect(enc.code, enc.stderr).toBe(0);
    const lines = enc.stdout.split('\n');
    expect(lines.pop()).toBe('');
    const inputLines = TRICKY.split('\n');
    expect(lines).toHaveLength(inputLines.length);
    const arrays = lines.map((l) => JSON.parse(l) as number[]);
    expect(arrays[5]).toEqual([]); // the empty line
    expect(arrays.flat().every((id) => Number.isInteger(id) && id >= 3 && id < 500)).toBe(true);
    writeFileSync(join(dir, 'ids.txt'), enc.stdout);
    // --tokenizer also takes the tokenizer.json path.
    const dec = para([
      'tokenizer',
      'decode',
      '--tokenizer',
      join(tokDir, 'tokenizer.json'),
      '--file',
      join(dir, 'ids.txt'),
    ]);
    expect(dec.code, dec.stderr).toBe(0);
    expect(dec.stdout).toBe(`${TRICKY}\n`);
    expect(dec.stderr).toBe('');
  });

  it('--add-special-tokens prepends bos to every line; --skip-special-tokens drops it again', () => {
    writeFileSync(join(dir, 'two.txt'), 'kalo mine\nta ru\n');
    const enc = para([
      'tokenizer',
      'encode',
      '--tokenizer',
      tokDir,
      '--file',
      join(dir, 'two.txt'),
      '--add-special-tokens',
    ]);
    expect(enc.code, enc.stderr).toBe(0);
    const arrays = enc.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as number[]);
    expect(arrays.map((a) => a[0])).toEqual([0, 0]);
    const plain = para([
      'tokenizer',
      'encode',
      '--tokenizer',
      tokDir,
      '--file',
      join(dir, 'two.txt'),
    ]);
    expect(
      plain.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual(arrays.map((a) => a.slice(1)));
    writeFileSync(join(dir, 'ids2.txt'), enc.stdout);
    expect(
      para(['tokenizer', 'decode', '--tokenizer', tokDir, '--file', join(dir, 'ids2.txt')]).stdout,
    ).toBe('<s>kalo mine\n<s>ta ru\n');
    expect(
      para([
        'tokenizer',
        'decode',
        '--tokenizer',
        tokDir,
        '--file',
        join(dir, 'ids2.txt'),
        '--skip-special-tokens',
      ]).stdout,
    ).toBe('kalo mine\nta ru\n');
  });

  it('bad input: typed errors on stderr, exit code 2, nothing on stdout', () => {
    const cases: [string[], string, string][] = [
      [
        [
          'tokenizer',
          'train',
          '--input',
          join(dir, 'missing.txt'),
          '--vocab-size',
          '300',
          '--out',
          join(dir, 'x'),
        ],
        '[FILE_NOT_FOUND]',
        'missing.txt',
      ],
      [
        [
          'tokenizer',
          'train',
          '--input',
          join(dir, 'a.txt'),
          '--vocab-size',
          '257',
          '--out',
          join(dir, 'x'),
          '--special-tokens',
          '<s>,</s>',
        ],
        '[INVALID_ARGUMENT]',
        'field "--vocab-size"',
      ],
      [
        ['tokenizer', 'encode', '--tokenizer', join(dir, 'nowhere'), '--file', join(dir, 'a.txt')],
        '[FILE_NOT_FOUND]',
        'nowhere',
      ],
      [
        ['tokenizer', 'encode', '--tokenizer', tokDir, '--file', join(dir, 'missing.txt')],
        '[FILE_NOT_FOUND]',
        'missing.txt',
      ],
    ];
    writeFileSync(join(dir, 'empty.txt'), '');
    cases.push([
      [
        'tokenizer',
        'train',
        '--input',
        join(dir, 'empty.txt'),
        '--vocab-size',
        '300',
        '--out',
        join(dir, 'x'),
      ],
      '[INVALID_ARGUMENT]',
      'empty',
    ]);
    writeFileSync(join(dir, 'broken.json'), '{"model": {"type": "BPE"');
    cases.push([
      [
        'tokenizer',
        'encode',
        '--tokenizer',
        join(dir, 'broken.json'),
        '--file',
        join(dir, 'two.txt'),
      ],
      '[INVALID_JSON]',
      'broken.json',
    ]);
    writeFileSync(join(dir, 'nomodel.json'), '{"version": "1.0"}');
    cases.push([
      [
        'tokenizer',
        'encode',
        '--tokenizer',
        join(dir, 'nomodel.json'),
        '--file',
        join(dir, 'two.txt'),
      ],
      '[INVALID_CONFIG]',
      'field "model"',
    ]);
    writeFileSync(join(dir, 'badids.txt'), '[1, 2]\nnot json\n');
    cases.push([
      ['tokenizer', 'decode', '--tokenizer', tokDir, '--file', join(dir, 'badids.txt')],
      '[INVALID_ARGUMENT]',
      'line 2',
    ]);
    writeFileSync(join(dir, 'oob.txt'), '[99999]\n');
    cases.push([
      ['tokenizer', 'decode', '--tokenizer', tokDir, '--file', join(dir, 'oob.txt')],
      '[INVALID_ARGUMENT]',
      'line 1',
    ]);
    for (const [args, code, text] of cases) {
      const r = para(args);
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(code);
      expect(r.stderr).toContain(text);
      expect(r.stdout).toBe('');
    }
    expect(existsSync(join(dir, 'x'))).toBe(false);
    // Usage errors from commander: missing required option, non-numeric vocabulary size.
    expect(
      para(['tokenizer', 'train', '--input', join(dir, 'a.txt'), '--out', join(dir, 'x')]).code,
    ).not.toBe(0);
    const nan = para([
      'tokenizer',
      'train',
      '--input',
      join(dir, 'a.txt'),
      '--vocab-size',
      'lots',
      '--out',
      join(dir, 'x'),
    ]);
    expect(nan.code).not.toBe(0);
    expect(nan.stderr).toContain('--vocab-size must be a positive integer');
  });
});
