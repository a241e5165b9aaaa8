/**
 * Evaluation of a (possibly adapted) model on a tokenised dataset:
 *
 * - loss: teacher-forced mean cross-entropy over the completion tokens (and EOS), exactly the
 *   training loss, without gradients;
 * - exact_match: greedy decoding from each prompt, stopping at EOS or at any token that
 *   contains a newline (or after `maxNewTokens`); the output up to the first newline and the
 *   reference completion, both trimmed, must be equal strings.
 */

import type { CausalLM, ModelAdapter } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { collate, sortedBatches } from './batch';
import type { TokenizedDataset, TokenizerLike } from './data';
import { weightedCrossEntropy } from './loss';

export interface EvaluateOptions {
  /** Adapter hooks (`adapter.attach(model)`); none: the bare backbone. */
  adapter?: ModelAdapter<{ promptLengths?: readonly number[] }> | null;
  /** Rows per forward / generation batch (default 32). */
  batchSize?: number;
  /** Default: the longest reference completion in tokens + 2 (EOS and slack), at most 64. */
  maxNewTokens?: number;
  /** Measure exact match (default true). */
  exactMatch?: boolean;
  /** Only the first N examples. */
  limit?: number;
  /** Keep every prediction in the result (default false). */
  keepPredictions?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface Prediction {
  prompt: string;
  reference: string;
  output: string;
  correct: boolean;
}

export interface EvalResult {
  loss: number;
  exact_match?: number;
  n: number;
  predictions?: Prediction[];
  [key: string]: number | undefined | Prediction[];
}

const stopCache = new WeakMap<object, number[]>();

/** EOS and every token whose text contains a newline: greedy decoding stops at any of them. */
export function stopTokenIds(tok: TokenizerLike): number[] {
  const cached = stopCache.get(tok);
  if (cached !== undefined) return cached;
  const ids: number[] = [];
  if (tok.eosTokenId !== undefined) ids.push(tok.eosTokenId);
  for (let id = 0; id < tok.vocabSize; id++) {
    if (id !== tok.eosTokenId && tok.decode([id]).includes('\n')) ids.push(id);
  }
  stopCache.set(tok, ids);
  return ids;
}

/** The text a greedy output stands for: up to the first newline, without EOS, trimmed. */
export function outputText(tok: TokenizerLike, tokens: readonly number[]): string {
  const ids = tokens.filter((t) => t !== tok.eosTokenId);
  const text = tok.decode(ids, { skipSpecialTokens: true });
  const nl = text.indexOf('\n');
  return (nl >= 0 ? text.slice(0, nl) : text).trim();
}

/** Mean completion loss of `data` (teacher forcing, no gradients). */
export async function datasetLoss(
  model: CausalLM,
  data: TokenizedDataset,
  o: EvaluateOptions = {},
): Promise<{ loss: number; tokens: number }> {
  const examples = o.limit === undefined ? data.examples : data.examples.slice(0, o.limit);
  const pad = model.config.padTokenId ?? model.config.eosTokenIds[0] ?? 0;
  let sum = 0;
  let count = 0;
  for (const idx of sortedBatches(
    examples.map((e) => e.ids.length),
    o.batchSize ?? 32,
  )) {
    const b = collate(
      idx.map((i) => examples[i]!),
      pad,
    );
    const s = tf.tidy(() => {
      const logits = model.forward(b.ids, {
        ...(b.attentionMask === null ? {} : { attentionMask: b.attentionMask }),
        ...(o.adapter
          ? { adapter: o.adapter, request: { promptLengths: b.promptLengths ?? undefined } }
          : {}),
      }); // [B, T, V]
      const [B, T, V] = logits.shape as [number, number, number];
      return weightedCrossEntropy(
        tf.reshape(logits, [B * T, V]),
        tf.tensor1d(b.targets, 'int32'),
        tf.tensor1d(b.weights, 'float32'),
      );
    });
    sum += (await s.data())[0] as number;
    s.dispose();
    count += b.lossTokens;
  }
  return { loss: count === 0 ? Number.NaN : sum / count, tokens: count };
}

/** Loss and exact match of `model` (with `o.adapter`, if any) on `data`. */
export async function evaluateDataset(
  model: CausalLM,
  tok: TokenizerLike,
  data: TokenizedDataset,
  o: EvaluateOptions = {},
): Promise<EvalResult> {
  const n = o.limit === undefined ? data.examples.length : Math.min(o.limit, data.examples.length);
  const { loss } = await datasetLoss(model, data, o);
  const result: EvalResult = { loss, n };
  if (o.exactMatch === false) return result;
  const examples = data.examples.slice(0, n);
  const texts = data.texts.slice(0, n);
  const longest = examples.reduce((m, e) => Math.max(m, e.ids.length - e.promptLength), 0);
  const maxNewTokens = o.maxNewTokens ?? Math.min(64, longest + 2);
  const stops = stopTokenIds(tok);
  const outputs = new Array<string>(n);
  const batches = sortedBatches(
    examples.map((e) => e.promptLength),
    o.batchSize ?? 32,
  );
  let done = 0;
  for (const idx of batches) {
    const prompts = idx.map((i) => examples[i]!.ids.slice(0, examples[i]!.promptLength));
    const g = await model.generate(prompts, {
      maxNewTokens,
      stopTokens: stops,
      ...(o.adapter ? { adapter: o.adapter, request: {} } : {}),
    });
    idx.forEach((i, k) => {
      outputs[i] = outputText(tok, g.tokens[k] ?? []);
    });
    done += idx.length;
    o.onProgress?.(done, n);
  }
  let correct = 0;
  const predictions: Prediction[] = [];
  texts.forEach((t, i) => {
    const ok = outputs[i] === t.completion.trim();
    if (ok) correct++;
    if (o.keepPredictions)
      predictions.push({
        prompt: t.prompt,
        reference: t.completion.trim(),
        output: outputs[i] as string,
        correct: ok,
      });
  });
  result.exact_match = n === 0 ? 0 : correct / n;
  if (o.keepPredictions) result.predictions = predictions;
  return result;
}
