/**
 * Text in, text out: prompts (strings) or chat `messages` are encoded with the model's
 * tokenizer (a chat through its chat template, with the assistant's generation prompt), run
 * through the one token-level generation loop (generate.ts), and the new tokens decoded — as
 * transformers' `pipeline('text-generation')` and transformers.js do.
 *
 *   generateText(model, tok, "Opposite of hot:")              → " cold"
 *   generateText(model, tok, ["a", "b"])                      → ["…", "…"]   (one batch)
 *   generateText(model, tok, [{ role: "user", content }])     → "…"          (chat template)
 *   for await (const piece of streamText(model, tok, prompt)) → text pieces as they decode
 *
 * Stop strings end a row as soon as its text contains one (the stop string is not returned);
 * streamed pieces are held back just long enough never to show part of a stop string or half a
 * UTF-8 character.
 */

import { ParaError } from '@para/core';
import type { ChatMessage, ParaTokenizer } from '@para/tokenizer';
import type { GenerateOptions, TokenEvent } from './generate';
import { generateStream } from './generate';
import type { CausalLM } from './model';
import { TokenText } from './token-text';

/** One prompt, several prompts (one batch), or one chat (`{ role, content }` messages). */
export type TextInput = string | readonly string[] | readonly ChatMessage[];

export interface TextGenerateOptions extends Omit<GenerateOptions, 'onToken' | 'padTokenId'> {
  /** A row ends when its text contains one of these; the stop string is cut from the result. */
  stop?: string | readonly string[];
  /** Keep special tokens (bos, eos, …) in the text (default false). */
  keepSpecialTokens?: boolean;
}

/** The parts of a ParaTokenizer text generation uses. */
export type TextTokenizer = Pick<
  ParaTokenizer,
  'encode' | 'decode' | 'applyChatTemplate' | 'eosTokenId' | 'padTokenId'
>;

function isMessages(input: TextInput): input is readonly ChatMessage[] {
  return (
    Array.isArray(input) &&
    input.length > 0 &&
    input.every(
      (m) => typeof m === 'object' && m !== null && typeof (m as ChatMessage).role === 'string',
    )
  );
}

/** The prompts' token ids, and whether the input was a single prompt. */
export function encodeTextInput(
  tok: TextTokenizer,
  input: TextInput,
): { prompts: number[][]; single: boolean } {
  if (typeof input === 'string')
    return { prompts: [checkEncoded(tok.encode(input), 'prompt')], single: true };
  if (isMessages(input)) {
    input.forEach((m, i) => {
      if (typeof m.content !== 'string')
        throw new ParaError('INVALID_ARGUMENT', `message ${i} has no text content`, {
          field: `messages[${i}].content`,
          expected: 'a string',
        });
    });
    const ids = tok.applyChatTemplate([...input], {
      addGenerationPrompt: true,
      tokenize: true,
    }) as number[];
    return { prompts: [checkEncoded(ids, 'messages')], single: true };
  }
  if (Array.isArray(input) && input.length > 0 && input.every((p) => typeof p === 'string')) {
    return {
      prompts: (input as string[]).map((p, i) => checkEncoded(tok.encode(p), `prompts[${i}]`)),
      single: false,
    };
  }
  throw new ParaError(
    'INVALID_ARGUMENT',
    'generate takes a prompt, a list of prompts or a list of chat messages',
    {
      field: 'input',
      expected: 'a string, a non-empty string[] or a non-empty [{ role, content }, …]',
      actual: Array.isArray(input) ? `an array of ${input.length}` : typeof input,
    },
  );
}

function checkEncoded(ids: number[], field: string): number[] {
  if (ids.length === 0)
    throw new ParaError('INVALID_ARGUMENT', 'the prompt encodes to no tokens', {
      field,
      expected: 'at least one token',
    });
  return ids;
}

function stopList(stop: TextGenerateOptions['stop']): string[] {
  if (stop === undefined) return [];
  const list = typeof stop === 'string' ? [stop] : [...stop];
  if (!list.every((s) => typeof s === 'string' && s.length > 0)) {
    throw new ParaError('INVALID_ARGUMENT', 'stop must be non-empty strings', {
      field: 'stop',
      expected: 'a string or a list of non-empty strings',
      actual: JSON.stringify(stop),
    });
  }
  return list;
}

function stopTokenSet(model: CausalLM, tok: TextTokenizer, o: TextGenerateOptions): number[] {
  if (o.stopTokens !== undefined) return o.stopTokens;
  const ids = new Set(model.config.eosTokenIds);
  if (tok.eosTokenId !== undefined) ids.add(tok.eosTokenId);
  return [...ids];
}

/** Streams `{ row, text }` pieces of every row (the batch form of `streamText`). */
export function streamTextRows(
  model: CausalLM,
  tok: TextTokenizer,
  input: TextInput,
  options: TextGenerateOptions = {},
): AsyncGenerator<{ row: number; text: string }, string[]> {
  return streamEncoded(model, tok, encodeTextInput(tok, input).prompts, options);
}

async function* streamEncoded(
  model: CausalLM,
  tok: TextTokenizer,
  prompts: number[][],
  options: TextGenerateOptions,
): AsyncGenerator<{ row: number; text: string }, string[]> {
  const stops = stopList(options.stop);
  const stopTokens = stopTokenSet(model, tok, options);
  const stopSet = new Set(stopTokens);
  const rows = prompts.map(
    () => new TokenText(tok, stops, stopSet, options.keepSpecialTokens === true),
  );
  const abort = new AbortController();
  const outer = options.signal;
  const onOuterAbort = () => abort.abort();
  outer?.addEventListener('abort', onOuterAbort);
  if (outer?.aborted) abort.abort();
  const { stop: _stop, keepSpecialTokens: _keep, ...rest } = options;
  try {
    const it = generateStream(model, prompts, {
      ...rest,
      stopTokens,
      padTokenId: tok.padTokenId,
      signal: abort.signal,
    });
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      const e: TokenEvent = r.value;
      const row = rows[e.row] as TokenText;
      const wasDone = row.done;
      row.push(e.token);
      const piece = row.next(e.finishReason !== undefined || row.done);
      if (piece !== '') yield { row: e.row, text: piece };
      if (!wasDone && row.done && rows.every((x) => x.done)) abort.abort(); // every row hit a stop string
    }
  } finally {
    outer?.removeEventListener('abort', onOuterAbort);
  }
  return rows.map((r) => r.text);
}

/** Streams the text of one prompt (or chat) as it is generated. */
export async function* streamText(
  model: CausalLM,
  tok: TextTokenizer,
  input: string | readonly ChatMessage[],
  options: TextGenerateOptions = {},
): AsyncGenerator<string, string> {
  const { prompts, single } = encodeTextInput(tok, input);
  if (!single)
    throw new ParaError(
      'INVALID_ARGUMENT',
      'stream takes one prompt or one chat; use generate for a batch',
      { field: 'input', expected: 'a string or [{ role, content }, …]' },
    );
  const it = streamEncoded(model, tok, prompts, options);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value[0] as string;
    yield r.value.text;
  }
}

/** Generates to the end: a string for a prompt or a chat, a string per prompt for a list. */
export async function generateText(
  model: CausalLM,
  tok: TextTokenizer,
  input: TextInput,
  options: TextGenerateOptions = {},
): Promise<string | string[]> {
  const { prompts, single } = encodeTextInput(tok, input);
  const it = streamEncoded(model, tok, prompts, options);
  for (;;) {
    const r = await it.next();
    if (r.done) return single ? (r.value[0] as string) : r.value;
  }
}
