/**
 * Datasets: JSON Lines, one example per line, either
 *
 *     {"prompt": "Opposite of hot:", "completion": " cold"}
 *     {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
 *
 * A `messages` example is rendered with the tokenizer's chat template: the prompt is the
 * conversation up to the last message with the generation prompt added, the completion is the
 * last (assistant) message. Blank lines are skipped; every error names the file and the line.
 *
 * Tokenisation: `ids = encode(prompt) ++ encode(completion, no special tokens) ++ [eos]` with
 * `promptLength = |encode(prompt)|` (the BOS, when the tokenizer adds one, is part of the
 * prompt). Encoding the two parts separately makes the training prompt exactly the token
 * sequence generation starts from (`encode(prompt)`), whatever the tokenizer does at the
 * boundary, and the loss then covers exactly what generation must produce: the completion's
 * tokens and EOS.
 */

import { ParaError } from '@para/core';
import type { TokenizedExample } from './batch';

export interface ChatTurn {
  role: string;
  content: string;
}

/** One example: a prompt and its completion, or a chat whose last (assistant) turn is learned. */
export type TrainingRecord = { prompt: string; completion: string } | { messages: ChatTurn[] };

/** A record with where it came from (its 1-based line in a JSONL file, or index in a list + 1). */
export type DatasetRecord = TrainingRecord & { line?: number };

/** The parts of a `ParaTokenizer` (@para/tokenizer) that datasets and evaluation use. */
export interface TokenizerLike {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  applyChatTemplate(
    messages: ChatTurn[],
    opts: { tokenize: false; addGenerationPrompt?: boolean },
  ): string;
  readonly vocabSize: number;
  eosTokenId?: number;
  bosTokenId?: number;
  padTokenId?: number;
  idToToken(id: number): string | undefined;
}

function at(file: string, line: number): string {
  return `${file}:${line}`;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing (the field is missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return typeof v;
}

/**
 * Parses JSONL text into records. Throws `INVALID_JSON` for a line that is not JSON and
 * `INVALID_ARGUMENT` for a missing or mistyped field, each naming `file:line`; an empty file
 * (no non-blank line) is `INVALID_ARGUMENT` too.
 */
export function parseJsonl(text: string, file: string): DatasetRecord[] {
  const records: DatasetRecord[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = i + 1;
    const s = raw.replace(/\r$/, '');
    if (s.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch (cause) {
      throw new ParaError(
        'INVALID_JSON',
        `line ${line} is not valid JSON: ${(cause as Error).message}`,
        {
          file: at(file, line),
          expected: 'one JSON object per line',
          actual: s.length > 60 ? `${s.slice(0, 60)}…` : s,
          cause,
        },
      );
    }
    records.push(checkRecord(v, file, line, `line ${line}`));
  });
  if (records.length === 0) {
    throw new ParaError('INVALID_ARGUMENT', 'the dataset is empty (no JSON lines)', {
      file,
      expected: 'one {"prompt", "completion"} or {"messages"} object per line',
    });
  }
  return records;
}

/**
 * Checks in-memory records (`{ prompt, completion }` or `{ messages }` objects) as `parseJsonl`
 * checks lines; errors name `source` and the record (`records[3]`).
 */
export function checkRecords(records: readonly unknown[], source = 'records'): DatasetRecord[] {
  if (!Array.isArray(records) || records.length === 0) {
    throw new ParaError('INVALID_ARGUMENT', 'no training records', {
      file: source,
      expected: 'a non-empty array of {"prompt", "completion"} or {"messages"} objects',
    });
  }
  return records.map((v, i) => checkRecord(v, source, i + 1, `records[${i}]`));
}

/** One record, checked; `where` names it in messages (`line 4`, `records[3]`). */
function checkRecord(v: unknown, file: string, line: number, where: string): DatasetRecord {
  const loc = where.startsWith('line') ? at(file, line) : `${file}[${line - 1}]`;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ParaError('INVALID_ARGUMENT', `${where} is not a JSON object`, {
      file: loc,
      expected: '{"prompt": ..., "completion": ...} or {"messages": [...]}',
      actual: describe(v),
    });
  }
  const o = v as Record<string, unknown>;
  if ('messages' in o) {
    const m = o.messages;
    if (!Array.isArray(m) || m.length < 2) {
      throw new ParaError('INVALID_ARGUMENT', `${where}: "messages" needs at least two turns`, {
        file: loc,
        field: 'messages',
        expected: 'an array of at least 2 {"role", "content"} objects',
        actual: describe(m),
      });
    }
    m.forEach((t, j) => {
      const turn = t as Record<string, unknown> | null;
      if (
        typeof turn !== 'object' ||
        turn === null ||
        typeof turn.role !== 'string' ||
        typeof turn.content !== 'string'
      ) {
        throw new ParaError(
          'INVALID_ARGUMENT',
          `${where}: message ${j} needs a string "role" and "content"`,
          { file: loc, field: `messages[${j}]`, expected: '{"role": string, "content": string}' },
        );
      }
    });
    const last = m[m.length - 1] as ChatTurn;
    if (last.role !== 'assistant') {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `${where}: the last message is what the model learns to write, so it must be the assistant's`,
        {
          file: loc,
          field: `messages[${m.length - 1}].role`,
          expected: '"assistant"',
          actual: JSON.stringify(last.role),
        },
      );
    }
    return { line, messages: m as ChatTurn[] };
  }
  for (const field of ['prompt', 'completion'] as const) {
    if (typeof o[field] !== 'string' || (o[field] as string).length === 0) {
      throw new ParaError('INVALID_ARGUMENT', `${where}: missing or empty "${field}"`, {
        file: loc,
        field,
        expected: 'a non-empty string',
        actual: describe(o[field]),
      });
    }
  }
  return { line, prompt: o.prompt as string, completion: o.completion as string };
}

/** Prompt and completion text of a record (chat records rendered with the template). */
export function recordText(
  tok: TokenizerLike,
  r: DatasetRecord,
  file: string,
): { prompt: string; completion: string } {
  if ('prompt' in r) return { prompt: r.prompt, completion: r.completion };
  let prompt: string;
  let full: string;
  try {
    prompt = tok.applyChatTemplate(r.messages.slice(0, -1), {
      tokenize: false,
      addGenerationPrompt: true,
    });
    full = tok.applyChatTemplate(r.messages, { tokenize: false });
  } catch (e) {
    throw new ParaError(
      'INVALID_ARGUMENT',
      `line ${r.line ?? '?'}: cannot render the messages: ${(e as Error).message}`,
      { file: at(file, r.line ?? 0), field: 'messages', cause: e },
    );
  }
  if (!full.startsWith(prompt)) {
    throw new ParaError(
      'UNSUPPORTED',
      `line ${r.line ?? '?'}: the chat template does not render the conversation as prompt + reply`,
      {
        file: at(file, r.line ?? 0),
        field: 'messages',
        expected: 'a template whose generation prompt is a prefix of the rendered assistant turn',
      },
    );
  }
  let completion = full.slice(prompt.length).replace(/\s+$/, '');
  const eos = tok.eosTokenId === undefined ? undefined : tok.idToToken(tok.eosTokenId);
  if (eos !== undefined && completion.endsWith(eos)) completion = completion.slice(0, -eos.length);
  return { prompt, completion };
}

export interface TokenizeOptions {
  /** The model's context: longer examples are skipped (or, with `strict`, an error). */
  maxLength: number;
  strict?: boolean;
}

export interface SkippedExample {
  line: number;
  tokens: number;
  /** The prompt alone does not fit (else prompt + completion do not). */
  promptTooLong: boolean;
}

export interface TokenizedDataset {
  file: string;
  examples: TokenizedExample[];
  /** Prompt and completion text of each kept example (same order), for exact match. */
  texts: { prompt: string; completion: string; line: number }[];
  skipped: SkippedExample[];
}

/** Tokenises records (see the module comment); examples longer than `maxLength` are skipped or rejected. */
export function tokenizeRecords(
  tok: TokenizerLike,
  records: readonly DatasetRecord[],
  file: string,
  o: TokenizeOptions,
): TokenizedDataset {
  const eos = tok.eosTokenId;
  if (eos === undefined) {
    throw new ParaError(
      'INVALID_CONFIG',
      'the tokenizer has no EOS token; training needs one to end completions',
      { field: 'eos_token', expected: 'an eos_token in tokenizer_config.json' },
    );
  }
  const examples: TokenizedExample[] = [];
  const texts: TokenizedDataset['texts'] = [];
  const skipped: SkippedExample[] = [];
  for (const r of records) {
    const { prompt, completion } = recordText(tok, r, file);
    const p = tok.encode(prompt);
    const c = tok.encode(completion, { addSpecialTokens: false });
    const ids = [...p, ...c, eos];
    if (p.length === 0) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `line ${r.line ?? '?'}: the prompt encodes to no tokens`,
        {
          file: at(file, r.line ?? 0),
          field: 'prompt',
          expected: 'a prompt of at least one token',
        },
      );
    }
    if (ids.length > o.maxLength) {
      const promptTooLong = p.length >= o.maxLength;
      if (o.strict) {
        throw new ParaError(
          'INVALID_ARGUMENT',
          `line ${r.line ?? '?'}: ${promptTooLong ? 'the prompt' : 'prompt + completion'} is longer than the model's context (strict)`,
          {
            file: at(file, r.line ?? 0),
            field: promptTooLong ? 'prompt' : 'completion',
            expected: `at most ${o.maxLength} tokens in all (prompt + completion + EOS)`,
            actual: `${ids.length} tokens (prompt ${p.length})`,
          },
        );
      }
      skipped.push({ line: r.line ?? 0, tokens: ids.length, promptTooLong });
      continue;
    }
    examples.push({ ids, promptLength: p.length, source: at(file, r.line ?? 0) });
    texts.push({ prompt, completion, line: r.line ?? 0 });
  }
  if (examples.length === 0) {
    throw new ParaError(
      'INVALID_ARGUMENT',
      `no example fits the model's context (${skipped.length} skipped as too long)`,
      { file, expected: `examples of at most ${o.maxLength} tokens` },
    );
  }
  return { file, examples, texts, skipped };
}

/** "skipped 3 of 100 examples longer than the context (256 tokens): lines 4, 17, 22" or null. */
export function skippedMessage(d: TokenizedDataset, maxLength: number): string | null {
  if (d.skipped.length === 0) return null;
  const lines = d.skipped.slice(0, 10).map((s) => s.line);
  const more = d.skipped.length > 10 ? `, … (${d.skipped.length - 10} more)` : '';
  return `${d.file}: skipped ${d.skipped.length} of ${d.skipped.length + d.examples.length} examples longer than the model's context (${maxLength} tokens): line${d.skipped.length > 1 ? 's' : ''} ${lines.join(', ')}${more} (the strict option makes this an error)`;
}

export interface DecodeTextOptions {
  /**
   * Replace bytes that are not valid UTF-8 with U+FFFD (and warn through `log` with the count)
   * instead of refusing the file.
   */
  allowInvalidUtf8?: boolean;
  /** Where the warning goes (default: console.warn). */
  log?: (s: string) => void;
}

/** Offset of the first byte that does not start or continue a valid UTF-8 sequence (-1: none). */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i] as number;
    if (b < 0x80) {
      i++;
      continue;
    }
    let len: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      if (b === 0xe0) lo = 0xa0;
      else if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      if (b === 0xf0) lo = 0x90;
      else if (b === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k < len; k++) {
      const c = bytes[i + k];
      // A truncated or broken sequence: the lead byte is where the text stops being UTF-8.
      if (c === undefined || c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) return i;
    }
    i += len;
  }
  return -1;
}

/**
 * A text file's bytes as a string. Bytes that are not valid UTF-8 are an INVALID_ENCODING error
 * naming the file, the 1-based line and the byte offset of the first bad byte, unless
 * `allowInvalidUtf8` (then each bad sequence becomes U+FFFD and a warning gives the count). A
 * UTF-8 byte order mark is dropped.
 */
export function decodeUtf8Text(
  bytes: Uint8Array,
  file: string,
  o: DecodeTextOptions & { field?: string } = {},
): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // not UTF-8: find where, below
  }
  const offset = firstInvalidUtf8(bytes);
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset; i++) {
    if (bytes[i] === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  const hex = Array.from(bytes.subarray(offset, offset + 4), (b) =>
    b.toString(16).padStart(2, '0'),
  ).join(' ');
  if (o.allowInvalidUtf8 !== true) {
    throw new ParaError(
      'INVALID_ENCODING',
      `line ${line} (byte ${offset} of the file, column byte ${offset - lineStart + 1}) is not valid UTF-8`,
      {
        file: `${file}:${line}`,
        ...(o.field === undefined ? {} : { field: o.field }),
        expected: 'UTF-8 text (allowInvalidUtf8 replaces bad bytes with U+FFFD)',
        actual: `bytes ${hex}`,
      },
    );
  }
  const text = new TextDecoder('utf-8').decode(bytes);
  // Replacements made = U+FFFD in the result − U+FFFD already in the file (EF BF BD).
  let inResult = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 0xfffd) inResult++;
  let inFile = 0;
  for (let i = 0; i + 2 < bytes.length; i++)
    if (bytes[i] === 0xef && bytes[i + 1] === 0xbf && bytes[i + 2] === 0xbd) inFile++;
  const replaced = inResult - inFile;
  (o.log ?? ((s: string) => console.warn(s)))(
    `${file}: warning: replaced ${replaced} invalid UTF-8 sequence${replaced === 1 ? '' : 's'} with U+FFFD (the first at line ${line}, byte ${offset})`,
  );
  return text;
}

/** `parseJsonl` on a file's bytes, checked as UTF-8 first (see `decodeUtf8Text`). */
export function parseJsonlBytes(
  bytes: Uint8Array,
  file: string,
  o: DecodeTextOptions = {},
): DatasetRecord[] {
  return parseJsonl(decodeUtf8Text(bytes, file, o), file);
}
