/**
 * Adapter fine-tuning in one call, platform-neutral (the web app runs it in a Web Worker;
 * `@para/train/node`'s `trainAdapterFromFiles` adds files, checkpoints and a progress bar).
 */

import { ParaError } from '@para/core';
import type { CausalLM } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import type { TokenizedDataset, TokenizerLike } from './data';
import { type EvalResult, evaluateDataset } from './evaluate';
import { ExamplePlan } from './plan';
import type { DecayKind } from './schedule';
import { adapterTrainable, type TrainableAdapter } from './trainable';
import {
  type CheckpointData,
  type EvalMetrics,
  type RunResult,
  runTraining,
  type TrainEvent,
  Trainer,
} from './trainer';

export interface FinetuneOptions {
  model: CausalLM;
  tokenizer: TokenizerLike;
  adapter: TrainableAdapter;
  train: TokenizedDataset;
  /** Evaluated every `evalEvery` updates and at the end (loss + exact match). */
  eval?: TokenizedDataset;
  /** Updates in all; default `epochs` × updates per epoch. */
  steps?: number;
  /** Default 1 when `steps` is not given. */
  epochs?: number;
  lr?: number;
  batchSize?: number;
  /** Examples per forward/backward; batchSize / microBatchSize micro-batches are accumulated. */
  microBatchSize?: number;
  seed?: number;
  /** Default: 6% of the updates. */
  warmupSteps?: number;
  decay?: DecayKind;
  weightDecay?: number;
  maxGradNorm?: number;
  /** Default: about 4 evaluations per run. */
  evalEvery?: number;
  /** Evaluate on at most this many examples (default all). */
  evalLimit?: number;
  /** Stop after this many evaluations without improvement (default 0: never). */
  patience?: number;
  checkpointEvery?: number;
  /** Checkpoint after the last update too (default true). */
  checkpointAtEnd?: boolean;
  saveCheckpoint?: (data: CheckpointData) => Promise<string>;
  saveBest?: (step: number, metrics: EvalMetrics) => Promise<void>;
  /** A checkpoint to continue from (`--resume`). */
  resumeFrom?: CheckpointData;
  meta?: Record<string, unknown>;
  onEvent?: (e: TrainEvent) => void | Promise<void>;
  stopAtStep?: number;
  signal?: AbortSignal;
}

export const FINETUNE_DEFAULTS = {
  lr: 3e-3,
  batchSize: 16,
  epochs: 1,
  maxGradNorm: 1,
  weightDecay: 0,
  decay: 'linear' as DecayKind,
};

export interface FinetuneResult extends RunResult {
  totalSteps: number;
  stepsPerEpoch: number;
  tokensSeen: number;
  elapsedMs: number;
  /** The last evaluation, if any. */
  lastEval: EvalResult | null;
}

export async function finetune(o: FinetuneOptions): Promise<FinetuneResult> {
  const batchSize = o.batchSize ?? FINETUNE_DEFAULTS.batchSize;
  const micro = o.microBatchSize ?? batchSize;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new ParaError('INVALID_ARGUMENT', 'bad batch size', {
      field: 'batchSize',
      expected: 'a positive integer',
      actual: String(batchSize),
    });
  if (!Number.isInteger(micro) || micro < 1 || micro > batchSize)
    throw new ParaError('INVALID_ARGUMENT', 'bad micro-batch size', {
      field: 'microBatchSize',
      expected: `an integer in [1, ${batchSize}]`,
      actual: String(micro),
    });
  const seed = o.seed ?? 0;
  const pad =
    o.model.config.padTokenId ?? o.tokenizer.padTokenId ?? o.model.config.eosTokenIds[0] ?? 0;
  const plan = new ExamplePlan(o.train.examples, {
    batchSize,
    microBatchSize: micro,
    seed,
    padId: pad,
  });
  if (o.steps !== undefined && o.epochs !== undefined)
    throw new ParaError('INVALID_ARGUMENT', 'give steps or epochs, not both', { field: 'steps' });
  const totalSteps =
    o.steps ?? Math.max(1, Math.round((o.epochs ?? FINETUNE_DEFAULTS.epochs) * plan.stepsPerEpoch));
  if (!Number.isInteger(totalSteps) || totalSteps < 1)
    throw new ParaError('INVALID_ARGUMENT', 'bad number of steps', {
      field: 'steps',
      expected: 'a positive integer',
      actual: String(totalSteps),
    });
  const trainable = adapterTrainable(o.model, o.adapter);
  const trainer = new Trainer(trainable, {
    lr: o.lr ?? FINETUNE_DEFAULTS.lr,
    totalSteps,
    warmupSteps: o.warmupSteps ?? Math.min(totalSteps - 1, Math.round(totalSteps * 0.06)),
    decay: o.decay ?? FINETUNE_DEFAULTS.decay,
    weightDecay: o.weightDecay ?? FINETUNE_DEFAULTS.weightDecay,
    maxGradNorm: o.maxGradNorm ?? FINETUNE_DEFAULTS.maxGradNorm,
    seed,
  });
  try {
    if (o.resumeFrom !== undefined) trainer.restore(o.resumeFrom);
    let lastEval: EvalResult | null = null;
    const evalData = o.eval;
    const result = await runTraining(trainer, {
      plan,
      evalEvery: o.evalEvery ?? Math.max(1, Math.ceil(totalSteps / 4)),
      ...(evalData === undefined
        ? {}
        : {
            evaluate: async () => {
              lastEval = await evaluateDataset(o.model, o.tokenizer, evalData, {
                adapter: trainable.adapter,
                ...(o.evalLimit === undefined ? {} : { limit: o.evalLimit }),
              });
              const { predictions: _p, ...metrics } = lastEval;
              return metrics as EvalMetrics;
            },
          }),
      ...(o.patience === undefined ? {} : { patience: o.patience }),
      ...(o.checkpointEvery === undefined ? {} : { checkpointEvery: o.checkpointEvery }),
      ...(o.checkpointAtEnd === undefined ? {} : { checkpointAtEnd: o.checkpointAtEnd }),
      ...(o.saveCheckpoint === undefined ? {} : { saveCheckpoint: o.saveCheckpoint }),
      ...(o.saveBest === undefined ? {} : { saveBest: o.saveBest }),
      ...(o.meta === undefined ? {} : { meta: o.meta }),
      ...(o.onEvent === undefined ? {} : { onEvent: o.onEvent }),
      ...(o.stopAtStep === undefined ? {} : { stopAtStep: o.stopAtStep }),
      ...(o.signal === undefined ? {} : { signal: o.signal }),
    });
    return {
      ...result,
      totalSteps,
      stepsPerEpoch: plan.stepsPerEpoch,
      tokensSeen: trainer.tokensSeen,
      elapsedMs: trainer.elapsedMs,
      lastEval,
    };
  } finally {
    trainer.dispose();
  }
}

/** Frees tensors of a loaded checkpoint (after `resumeFrom` was used). */
export function disposeCheckpoint(data: CheckpointData): void {
  tf.dispose(Object.values(data.tensors));
}
