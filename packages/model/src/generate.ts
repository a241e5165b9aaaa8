/**
 * Batched generation: prefill the prompts once, then one `decodeStep` per new token, sampling
 * on the host (`@para/ops` sampling: greedy, temperature, top-k, top-p; seeded). Tokens stream
 * out as they are produced, through an async iterator (`generateStream`) or a callback
 * (`onToken`). Rows stop independently at a stop token or after `maxNewTokens`.
 *
 * Row b samples with its own generator, `new Rng(seed).fork(b)`, so a row's tokens do not
 * depend on which other rows share its batch.
 */

import { ParaError, Rng } from '@para/core';
import { type SampleOptions, sampleFromLogits } from '@para/ops';
import type * as tf from '@tensorflow/tfjs-core';
import type { AdapterOptions, CausalLM, DecodeState } from './model';

export type FinishReason = 'stop' | 'length' | 'aborted';

export interface GenerateOptions<R = unknown> extends AdapterOptions<R> {
  /** New tokens per row at most (default 32). */
  maxNewTokens?: number;
  /** A row stops after producing one of these (included in its output). Default: the config's eos ids. */
  stopTokens?: number[];
  /** 0 = greedy (the default); > 0 samples from softmax(logits / temperature). */
  temperature?: number;
  /** Keep the K most probable tokens (0: off). */
  topK?: number;
  /** Nucleus sampling threshold in (0, 1] (1: off). */
  topP?: number;
  /** Sampling seed (default 0). */
  seed?: number | string;
  /** Pad id for ragged prompts (default: config pad, else 0). */
  padTokenId?: number;
  /** Called for every token as soon as it is sampled (awaited). */
  onToken?: (event: TokenEvent) => void | Promise<void>;
  /** Stops generation between steps. */
  signal?: AbortSignal;
}

/** One new token of one row. */
export interface TokenEvent {
  row: number;
  /** 0 for the first new token. */
  step: number;
  token: number;
  /** Set on a row's last token. */
  finishReason?: FinishReason;
}

export interface GenerateResult {
  /** New tokens per row (a stop token included). */
  tokens: number[][];
  finishReasons: FinishReason[];
  promptLengths: number[];
  /** Wall time of the prefill (ms, including the first sampling) and of all decode steps. */
  timings: { prefillMs: number; decodeMs: number; decodeSteps: number };
}

interface Checked {
  maxNewTokens: number;
  stop: Set<number>;
  sampling: SampleOptions[];
}

function check<R>(model: CausalLM, prompts: number[][], o: GenerateOptions<R>): Checked {
  const c = model.config;
  const maxNewTokens = o.maxNewTokens ?? 32;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) {
    throw new ParaError('INVALID_ARGUMENT', 'maxNewTokens must be a positive integer', {
      field: 'maxNewTokens',
      expected: 'an integer ≥ 1',
      actual: String(maxNewTokens),
    });
  }
  if (
    !Array.isArray(prompts) ||
    prompts.length === 0 ||
    !prompts.every((p) => Array.isArray(p) && p.length > 0)
  ) {
    throw new ParaError(
      'INVALID_ARGUMENT',
      'prompts must be a non-empty list of non-empty token-id lists',
      { field: 'prompts', expected: 'number[][]' },
    );
  }
  const longest = Math.max(...prompts.map((p) => p.length));
  if (longest + maxNewTokens > model.maxPositions + 1) {
    throw new ParaError(
      'INVALID_ARGUMENT',
      `a prompt of ${longest} tokens plus ${maxNewTokens} new ones is past the model's limit`,
      {
        field: 'maxNewTokens (max_position_embeddings)',
        expected: `prompt + new tokens ≤ ${c.maxPositionEmbeddings + 1}`,
        actual: String(longest + maxNewTokens),
      },
    );
  }
  const stopTokens = o.stopTokens ?? c.eosTokenIds;
  if (
    !Array.isArray(stopTokens) ||
    !stopTokens.every((t) => Number.isInteger(t) && t >= 0 && t < c.vocabSize)
  ) {
    throw new ParaError('INVALID_ARGUMENT', 'stopTokens must be token ids', {
      field: 'stopTokens',
      expected: `integers in [0, ${c.vocabSize})`,
      actual: JSON.stringify(stopTokens),
    });
  }
  const temperature = o.temperature ?? 0;
  const base = new Rng(o.seed ?? 0);
  const sampling = prompts.map((_, b) => ({
    temperature,
    topK: o.topK ?? 0,
    topP: o.topP ?? 1,
    rng: base.fork(b),
  }));
  // Validate the sampling options now (with a throwaway generator), not after the prefill.
  sampleFromLogits([[0]], { temperature, topK: o.topK ?? 0, topP: o.topP ?? 1, rng: new Rng(0) });
  return { maxNewTokens, stop: new Set(stopTokens), sampling };
}

/** Rows of `[B, V]` logits on the host (one `await data()`: works on WebGPU in Node). */
async function hostRows(logits: tf.Tensor): Promise<Float32Array[]> {
  const [B, V] = logits.shape as [number, number];
  const data = (await logits.data()) as Float32Array;
  return Array.from({ length: B }, (_, b) => data.subarray(b * V, (b + 1) * V));
}

/**
 * Streams every new token as a `TokenEvent` (rows in order within a step) and returns the
 * whole result when done. Breaking out of the loop early frees everything.
 */
export async function* generateStream<R = unknown>(
  model: CausalLM,
  prompts: number[][],
  options: GenerateOptions<R> = {},
): AsyncGenerator<TokenEvent, GenerateResult> {
  const { maxNewTokens, stop, sampling } = check(model, prompts, options);
  const longest = Math.max(...prompts.map((p) => p.length));
  const switchAt = model.longropeSwitchAt;
  if (
    switchAt !== null &&
    options.adapter != null &&
    longest <= switchAt &&
    longest + maxNewTokens > switchAt + 1
  ) {
    throw new ParaError(
      'UNSUPPORTED',
      `generating past original_max_position_embeddings (${switchAt}) recomputes the cache with longrope's long factors, which is not implemented with an adapter`,
      {
        field: 'rope_scaling (longrope)',
        expected: `prompt + new tokens ≤ ${switchAt + 1}, or a prompt longer than ${switchAt}, or no adapter`,
        actual: String(longest + maxNewTokens),
      },
    );
  }
  const B = prompts.length;
  const tokens: number[][] = prompts.map(() => []);
  const finish: (FinishReason | undefined)[] = new Array(B).fill(undefined);
  const t0 = now();
  let t1 = t0;
  let steps = 0;
  let state: DecodeState<R> | undefined;
  let logits: tf.Tensor | undefined;
  try {
    // The KV cache is allocated once: the padded prompt plus every new token fits.
    const capacity = longest + maxNewTokens;
    ({ logits, state } = model.prefill(prompts, {
      adapter: options.adapter,
      request: options.request,
      padTokenId: options.padTokenId,
      capacity,
    }));
    for (let step = 0; step < maxNewTokens; step++) {
      const rows = await hostRows(logits);
      logits.dispose();
      logits = undefined;
      if (step === 0) t1 = now();
      const next = new Array<number>(B).fill(0);
      for (let b = 0; b < B; b++) {
        if (finish[b] !== undefined) continue;
        const token = sampleFromLogits(
          [rows[b] as Float32Array],
          sampling[b] as SampleOptions,
        )[0] as number;
        next[b] = token;
        (tokens[b] as number[]).push(token);
        if (stop.has(token)) finish[b] = 'stop';
        else if (step === maxNewTokens - 1) finish[b] = 'length';
        const event: TokenEvent = {
          row: b,
          step,
          token,
          ...(finish[b] !== undefined ? { finishReason: finish[b] } : {}),
        };
        if (options.onToken) await options.onToken(event);
        yield event;
      }
      if (finish.every((f) => f !== undefined)) break;
      if (options.signal?.aborted) {
        for (let b = 0; b < B; b++) finish[b] ??= 'aborted';
        break;
      }
      // Finished rows are inactive: they write nothing; their logits are ignored.
      const active = finish.map((f) => f === undefined);
      if (state.length === model.longropeSwitchAt) {
        // Phi-3 longrope, as transformers' Phi3ForCausalLM.prepare_inputs_for_generation: the
        // first step past original_max_position_embeddings recomputes the whole cache, so every
        // key takes the long factors (a plain decode step would keep the short ones).
        state.dispose();
        state = undefined;
        ({ logits, state } = model.prefill(
          prompts.map((p, b) => [...p, ...(tokens[b] as number[])]),
          { request: options.request, padTokenId: options.padTokenId, capacity },
        ));
      } else logits = model.decodeStep(next, state, { active });
      steps++;
    }
  } finally {
    logits?.dispose();
    state?.dispose();
  }
  const t2 = now();
  return {
    tokens,
    finishReasons: finish.map((f) => f ?? 'length'),
    promptLengths: prompts.map((p) => p.length),
    timings: { prefillMs: t1 - t0, decodeMs: t2 - t1, decodeSteps: steps },
  };
}

/** Generates to the end; `onToken` sees the tokens as they come. */
export async function generate<R = unknown>(
  model: CausalLM,
  prompts: number[][],
  options: GenerateOptions<R> = {},
): Promise<GenerateResult> {
  const it = generateStream(model, prompts, options);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}

function now(): number {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}
