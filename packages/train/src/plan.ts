/**
 * Data plans: which micro-batches make update `s`. Deterministic in (seed, epoch, index), so a
 * resumed run sees exactly the batches an uninterrupted one would have.
 */

import { ParaError, Rng } from '@para/core';
import {
  type Batch,
  bucketedBatches,
  collate,
  collateWindows,
  microBatches,
  type TokenizedExample,
} from './batch';
import type { DataPlan } from './trainer';

export interface ExamplePlanOptions {
  /** Examples per optimizer update. */
  batchSize: number;
  /** Examples per forward/backward pass (default batchSize: no accumulation). */
  microBatchSize?: number;
  seed: number;
  padId: number;
  /** Batches per length-sorted pool (default 32). */
  poolBatches?: number;
}

/** The RNG that orders epoch `epoch` of a run seeded `seed`. */
export function epochRng(seed: number, epoch: number): Rng {
  return new Rng(`${seed}/epoch/${epoch}`);
}

/** Fine-tuning: length-bucketed batches of examples, reshuffled every epoch. */
export class ExamplePlan implements DataPlan {
  readonly stepsPerEpoch: number;
  private readonly lengths: number[];
  private cached: { epoch: number; batches: number[][] } | null = null;

  constructor(
    readonly examples: readonly TokenizedExample[],
    readonly options: ExamplePlanOptions,
  ) {
    if (examples.length === 0)
      throw new ParaError('INVALID_ARGUMENT', 'the dataset is empty', {
        field: 'data',
        expected: 'at least one example',
      });
    const micro = options.microBatchSize ?? options.batchSize;
    if (!Number.isInteger(micro) || micro < 1)
      throw new ParaError('INVALID_ARGUMENT', 'bad micro-batch size', {
        field: 'microBatchSize',
        expected: 'an integer ≥ 1',
        actual: String(micro),
      });
    this.lengths = examples.map((e) => e.ids.length);
    this.stepsPerEpoch = this.order(0).length;
  }

  /** Example indices of each batch of `epoch`. */
  order(epoch: number): number[][] {
    if (this.cached?.epoch !== epoch) {
      this.cached = {
        epoch,
        batches: bucketedBatches(
          this.lengths,
          this.options.batchSize,
          epochRng(this.options.seed, epoch),
          this.options.poolBatches,
        ),
      };
    }
    return this.cached.batches;
  }

  microBatches(epoch: number, index: number): Batch[] {
    const batch = this.order(epoch)[index];
    if (batch === undefined)
      throw new ParaError('INVALID_ARGUMENT', 'no such batch', {
        field: 'index',
        expected: `< ${this.stepsPerEpoch}`,
        actual: String(index),
      });
    const micro = this.options.microBatchSize ?? this.options.batchSize;
    return microBatches(batch, this.lengths, micro).map((idx) =>
      collate(
        idx.map((i) => this.examples[i] as TokenizedExample),
        this.options.padId,
      ),
    );
  }
}

export interface WindowPlanOptions {
  /** Tokens per row (the model sees seqLen inputs and predicts seqLen targets). */
  seqLen: number;
  batchSize: number;
  microBatchSize?: number;
  seed: number;
}

/**
 * Pretraining: a token stream cut into windows of `seqLen + 1` tokens (consecutive windows
 * share one token), shuffled every epoch.
 */
export class WindowPlan implements DataPlan {
  readonly stepsPerEpoch: number;
  readonly numWindows: number;
  private cached: { epoch: number; order: number[] } | null = null;

  constructor(
    readonly tokens: Int32Array,
    readonly options: WindowPlanOptions,
  ) {
    const { seqLen, batchSize } = options;
    if (!Number.isInteger(seqLen) || seqLen < 2)
      throw new ParaError('INVALID_ARGUMENT', 'bad sequence length', {
        field: 'seqLen',
        expected: 'an integer ≥ 2',
        actual: String(seqLen),
      });
    this.numWindows = Math.floor((tokens.length - 1) / seqLen);
    this.stepsPerEpoch = Math.floor(this.numWindows / batchSize);
    if (this.stepsPerEpoch < 1) {
      throw new ParaError('INVALID_ARGUMENT', 'not enough text for one batch', {
        field: 'input',
        expected: `at least ${batchSize * seqLen + 1} tokens`,
        actual: `${tokens.length} tokens`,
      });
    }
  }

  window(i: number): Int32Array {
    const s = this.options.seqLen;
    return this.tokens.subarray(i * s, i * s + s + 1);
  }

  microBatches(epoch: number, index: number): Batch[] {
    if (this.cached?.epoch !== epoch) {
      this.cached = {
        epoch,
        order: epochRng(this.options.seed, epoch).shuffle(
          Array.from({ length: this.numWindows }, (_, i) => i),
        ),
      };
    }
    const { batchSize } = this.options;
    const micro = this.options.microBatchSize ?? batchSize;
    const rows = this.cached.order.slice(index * batchSize, (index + 1) * batchSize);
    const out: Batch[] = [];
    for (let i = 0; i < rows.length; i += micro)
      out.push(collateWindows(rows.slice(i, i + micro).map((w) => this.window(w))));
    return out;
  }
}
