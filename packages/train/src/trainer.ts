/**
 * The training loop, platform-neutral (Node and a browser Web Worker): one optimizer update per
 * logical batch, made of one or more micro-batches whose gradients add up (accumulation),
 * clipped by global norm, with a warm-up + decay schedule, periodic evaluation, keep-best,
 * early stopping and checkpoints that resume exactly. Files are someone else's job: the caller
 * passes `saveCheckpoint` / `saveBest` (see `@para/train/node`).
 *
 * Gradient accumulation. The loss of an update is the mean over every loss token of the
 * logical batch: `Σ_i sum_i / N` with `N` the batch's loss tokens, so micro-batch `i`
 * differentiates `sum_i / N` and the gradients add up to the gradient of the whole batch
 * (equal to one big batch up to float rounding; a test checks it).
 *
 * Exact resume. Everything a step depends on is either restored (parameters, AdamW moments and
 * step, the trainer's RNG, best-so-far and patience) or a pure function of the seed and the
 * step (the data order: epoch `e` is shuffled by `new Rng(`${seed}/epoch/${e}`)`, and step
 * `s` takes batch `s mod stepsPerEpoch` of epoch `⌊s / stepsPerEpoch⌋`). So a resumed run
 * computes the same losses bit for bit as an uninterrupted one.
 */

import { ParaError, Rng, type RngState } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import type { Batch } from './batch';
import { weightedCrossEntropy } from './loss';
import { AdamW, clipScale, globalNorm } from './optim';
import { type DecayKind, makeSchedule, type Schedule } from './schedule';
import type { TrainableModel } from './trainable';

export interface TrainerOptions {
  /** Peak learning rate. */
  lr: number;
  /** Optimizer updates in all. */
  totalSteps: number;
  warmupSteps?: number;
  decay?: DecayKind;
  minLrRatio?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Clip gradients to this global L2 norm (default 1; 0 turns clipping off). */
  maxGradNorm?: number;
  /** Seeds the trainer's RNG (default 0). */
  seed?: number;
}

export interface StepResult {
  /** Updates made after this step (1-based step number). */
  step: number;
  /** Mean loss over the batch's loss tokens. */
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  lr: number;
  tokens: number;
  lossTokens: number;
  /** False when the loss or the gradient norm is NaN/∞: no update was made. */
  finite: boolean;
}

export interface EvalMetrics {
  /** Mean loss over the completion tokens. */
  loss: number;
  /** Fraction of exact matches (greedy decoding), when measured. */
  exact_match?: number;
  n: number;
  [key: string]: number | undefined;
}

/** JSON part of a checkpoint. */
export interface TrainerStateJson {
  format: 'para-trainer-state';
  version: 1;
  step: number;
  totalSteps: number;
  seed: number;
  rng: RngState;
  tokensSeen: number;
  elapsedMs: number;
  best: { step: number; value: number; metrics: EvalMetrics } | null;
  evalsWithoutImprovement: number;
  lastLoss: number | null;
  /** Anything the caller wants to check on resume (data files, method, batch size...). */
  meta: Record<string, unknown>;
}

export interface CheckpointData {
  state: TrainerStateJson;
  /** `param.<name>` (the trainable variables) and `m.<name>` / `v.<name>` (AdamW): live, do not dispose. */
  tensors: Record<string, tf.Tensor>;
}

export class Trainer {
  readonly model: TrainableModel;
  readonly options: Readonly<Required<TrainerOptions>>;
  readonly optimizer: AdamW;
  readonly schedule: Schedule;
  /** For anything random during training (dropout seeds); saved in checkpoints. */
  rng: Rng;
  step = 0;
  tokensSeen = 0;
  elapsedMs = 0;
  best: TrainerStateJson['best'] = null;
  evalsWithoutImprovement = 0;
  lastLoss: number | null = null;
  private readonly varList: tf.Variable[];
  private readonly names: string[];

  constructor(model: TrainableModel, options: TrainerOptions) {
    const o: Required<TrainerOptions> = {
      warmupSteps: 0,
      decay: 'linear',
      minLrRatio: 0,
      weightDecay: 0,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      maxGradNorm: 1,
      seed: 0,
      ...options,
    };
    if (!(o.maxGradNorm >= 0))
      throw new ParaError('INVALID_ARGUMENT', 'bad maxGradNorm', {
        field: 'maxGradNorm',
        expected: 'a number ≥ 0 (0: no clipping)',
        actual: String(o.maxGradNorm),
      });
    this.options = o;
    this.model = model;
    this.schedule = makeSchedule({
      lr: o.lr,
      totalSteps: o.totalSteps,
      warmupSteps: o.warmupSteps,
      decay: o.decay,
      minLrRatio: o.minLrRatio,
    });
    this.optimizer = new AdamW(model.parameters, {
      beta1: o.beta1,
      beta2: o.beta2,
      eps: o.eps,
      weightDecay: o.weightDecay,
    });
    this.names = [...model.parameters.keys()];
    this.varList = [...model.parameters.values()];
    this.rng = new Rng(o.seed);
  }

  /** Learning rate of the next update. */
  get lr(): number {
    return this.schedule(this.step);
  }

  /**
   * Σ weights·nll over a batch, scaled by `scale` (1 / loss tokens of the logical batch).
   * Call inside a tidy or variableGrads.
   */
  batchLoss(batch: Batch, scale: number): tf.Scalar {
    const [B, T] = [batch.ids.length, (batch.ids[0] as number[]).length];
    const logits = this.model.logits(batch); // [B, T, V]
    const V = logits.shape[2] as number;
    const flat = tf.reshape(logits, [B * T, V]); // [B·T, V]
    const w = scale === 1 ? batch.weights : batch.weights.map((x) => x * scale);
    return weightedCrossEntropy(
      flat,
      tf.tensor1d(batch.targets, 'int32'),
      tf.tensor1d(w, 'float32'),
    );
  }

  /**
   * Gradients of the logical batch made of `micro` (summed over micro-batches), and its mean
   * loss. The caller disposes the gradients.
   */
  async gradients(
    micro: readonly Batch[],
  ): Promise<{ loss: number; grads: Record<string, tf.Tensor> }> {
    const total = micro.reduce((n, b) => n + b.lossTokens, 0);
    if (total === 0)
      throw new ParaError('INVALID_ARGUMENT', 'a batch with no loss tokens', {
        field: 'batch',
        expected: 'at least one completion token',
      });
    let acc: tf.Tensor[] | null = null;
    let lossSum = 0;
    for (const b of micro) {
      const { value, grads } = tf.variableGrads(() => this.batchLoss(b, 1 / total), this.varList);
      // A parameter off every path to the loss gets no gradient from tfjs: use zeros.
      const g = this.varList.map((v) => grads[v.name] ?? tf.zerosLike(v));
      lossSum += (await value.data())[0] as number;
      value.dispose();
      if (acc === null) acc = g;
      else {
        const prev: tf.Tensor[] = acc;
        acc = prev.map((a, i) => tf.add(a, g[i] as tf.Tensor));
        tf.dispose([...prev, ...g]);
      }
    }
    const grads: Record<string, tf.Tensor> = {};
    (acc as tf.Tensor[]).forEach((g, i) => {
      grads[this.names[i] as string] = g;
    });
    return { loss: lossSum, grads };
  }

  /** One optimizer update from the micro-batches of one logical batch. */
  async trainStep(micro: readonly Batch[]): Promise<StepResult> {
    const started = now();
    const lr = this.lr;
    this.model.setTraining(true);
    let loss: number;
    let grads: Record<string, tf.Tensor>;
    try {
      ({ loss, grads } = await this.gradients(micro));
    } finally {
      this.model.setTraining(false);
    }
    const tokens = micro.reduce((n, b) => n + b.tokens, 0);
    const lossTokens = micro.reduce((n, b) => n + b.lossTokens, 0);
    try {
      const gradNorm = await globalNorm(Object.values(grads));
      const finite = Number.isFinite(loss) && Number.isFinite(gradNorm);
      if (finite) {
        this.optimizer.apply(grads, lr, clipScale(gradNorm, this.options.maxGradNorm));
        this.step += 1;
        this.tokensSeen += tokens;
        this.lastLoss = loss;
      }
      this.elapsedMs += now() - started;
      return { step: this.step, loss, gradNorm, lr, tokens, lossTokens, finite };
    } finally {
      tf.dispose(Object.values(grads));
    }
  }

  /** Mean loss over the loss tokens of `batches` (no gradients). */
  async evalLoss(batches: Iterable<Batch>): Promise<{ loss: number; lossTokens: number }> {
    let sum = 0;
    let count = 0;
    for (const b of batches) {
      if (b.lossTokens === 0) continue;
      const s = tf.tidy(() => this.batchLoss(b, 1));
      sum += (await s.data())[0] as number;
      s.dispose();
      count += b.lossTokens;
    }
    return { loss: count === 0 ? Number.NaN : sum / count, lossTokens: count };
  }

  /** Everything a resume needs. Tensors are live (parameters, moments): write them, do not dispose. */
  checkpoint(meta: Record<string, unknown> = {}): CheckpointData {
    const tensors: Record<string, tf.Tensor> = {};
    for (const [name, v] of this.model.parameters) tensors[`param.${name}`] = v;
    Object.assign(tensors, this.optimizer.state().tensors);
    return {
      state: {
        format: 'para-trainer-state',
        version: 1,
        step: this.step,
        totalSteps: this.options.totalSteps,
        seed: this.options.seed,
        rng: this.rng.state(),
        tokensSeen: this.tokensSeen,
        elapsedMs: this.elapsedMs,
        best: this.best,
        evalsWithoutImprovement: this.evalsWithoutImprovement,
        lastLoss: this.lastLoss,
        meta,
      },
      tensors,
    };
  }

  /** Restores a `checkpoint()` (every parameter and moment must be present, shapes equal). */
  restore(data: CheckpointData, file?: string): void {
    const s = data.state;
    if (s?.format !== 'para-trainer-state' || s.version !== 1) {
      throw new ParaError('INVALID_CONFIG', 'not a para trainer state', {
        file,
        field: 'format',
        expected: '"para-trainer-state" version 1',
        actual: JSON.stringify(s?.format),
      });
    }
    for (const [name, v] of this.model.parameters) {
      const t = data.tensors[`param.${name}`];
      if (t === undefined)
        throw new ParaError('TENSOR_NOT_FOUND', 'checkpoint lacks a parameter', {
          file,
          field: `param.${name}`,
          expected: `a tensor [${v.shape.join(', ')}]`,
        });
      if (t.shape.join() !== v.shape.join())
        throw new ParaError('SHAPE_MISMATCH', 'checkpoint parameter has the wrong shape', {
          file,
          field: `param.${name}`,
          expected: `[${v.shape.join(', ')}]`,
          actual: `[${t.shape.join(', ')}]`,
        });
    }
    this.optimizer.loadState({ step: s.step, tensors: data.tensors }, file);
    for (const [name, v] of this.model.parameters)
      v.assign(data.tensors[`param.${name}`] as tf.Tensor);
    this.step = s.step;
    this.rng = Rng.fromState(s.rng);
    this.tokensSeen = s.tokensSeen;
    this.elapsedMs = s.elapsedMs;
    this.best = s.best;
    this.evalsWithoutImprovement = s.evalsWithoutImprovement;
    this.lastLoss = s.lastLoss;
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// the loop
// ---------------------------------------------------------------------------------------------

/** Where the batches come from: deterministic in (epoch, index). */
export interface DataPlan {
  /** Logical batches (optimizer updates) per epoch. */
  readonly stepsPerEpoch: number;
  /** The micro-batches of batch `index` of `epoch`. */
  microBatches(epoch: number, index: number): Batch[];
}

export type BestMetric = 'exact_match' | 'loss';

export type TrainEvent =
  | {
      type: 'start';
      step: number;
      totalSteps: number;
      resumed: boolean;
      parameters: number;
      stepsPerEpoch: number;
    }
  | ({
      type: 'step';
      epoch: number;
      tokensPerSec: number;
      elapsedMs: number;
      etaMs: number;
      stepMs: number;
      totalSteps: number;
    } & StepResult)
  | { type: 'eval'; step: number; metrics: EvalMetrics; best: boolean; ms: number }
  | { type: 'checkpoint'; step: number; path: string }
  | { type: 'nan'; step: number; loss: number; gradNorm: number; lastCheckpoint: string | null }
  | { type: 'early-stop'; step: number; bestStep: number; patience: number }
  | { type: 'done'; step: number; reason: RunResult['reason'] };

export interface RunOptions {
  plan: DataPlan;
  /** Evaluate every N updates (and after the last); 0 or absent: only after the last. */
  evalEvery?: number;
  evaluate?: (step: number) => Promise<EvalMetrics>;
  /** Default 'exact_match' when the evaluation measures it, else 'loss'. */
  bestMetric?: BestMetric;
  /** Stop after this many evaluations without improvement (0: never). */
  patience?: number;
  /** Checkpoint every N updates (and after the last); 0 or absent: only after the last. */
  checkpointEvery?: number;
  /** Writes a checkpoint, returns where. */
  saveCheckpoint?: (data: CheckpointData) => Promise<string>;
  /** Also checkpoint after the last update (default true; false when the caller keeps the result anyway). */
  checkpointAtEnd?: boolean;
  /** Called when an evaluation improves on the best so far (save the best weights). */
  saveBest?: (step: number, metrics: EvalMetrics) => Promise<void>;
  /** Stored in checkpoints (`state.meta`). */
  meta?: Record<string, unknown>;
  onEvent?: (e: TrainEvent) => void | Promise<void>;
  /** Stop (after a checkpoint) once this many updates are done: an interruption, for tests. */
  stopAtStep?: number;
  signal?: AbortSignal;
}

export interface RunResult {
  reason: 'done' | 'early-stop' | 'nan' | 'stopped';
  step: number;
  lastLoss: number | null;
  best: TrainerStateJson['best'];
  lastCheckpoint: string | null;
  /** Per-update losses of this session (for tests and summaries). */
  losses: number[];
}

/** Runs `trainer` from its current step to `totalSteps`. */
export async function runTraining(trainer: Trainer, o: RunOptions): Promise<RunResult> {
  const total = trainer.options.totalSteps;
  const { plan } = o;
  if (!(plan.stepsPerEpoch >= 1))
    throw new ParaError('INVALID_ARGUMENT', 'no batches to train on', {
      field: 'data',
      expected: 'at least one batch per epoch',
    });
  const emit = async (e: TrainEvent) => {
    await o.onEvent?.(e);
  };
  const losses: number[] = [];
  let lastCheckpoint: string | null = null;
  const resumed = trainer.step > 0;
  await emit({
    type: 'start',
    step: trainer.step,
    totalSteps: total,
    resumed,
    parameters: [...trainer.model.parameters.values()].reduce((n, v) => n + v.size, 0),
    stepsPerEpoch: plan.stepsPerEpoch,
  });
  const startStep = trainer.step;
  const sessionStart = now();
  const evalEvery = o.evalEvery ?? 0;
  const ckptEvery = o.checkpointEvery ?? 0;

  const checkpoint = async () => {
    if (o.saveCheckpoint === undefined) return;
    lastCheckpoint = await o.saveCheckpoint(trainer.checkpoint(o.meta ?? {}));
    await emit({ type: 'checkpoint', step: trainer.step, path: lastCheckpoint });
  };
  const finish = async (reason: RunResult['reason']): Promise<RunResult> => {
    await emit({ type: 'done', step: trainer.step, reason });
    return {
      reason,
      step: trainer.step,
      lastLoss: trainer.lastLoss,
      best: trainer.best,
      lastCheckpoint,
      losses,
    };
  };

  while (trainer.step < total) {
    // A macrotask turn between updates, so an abort from an event (Ctrl-C, a UI button) is seen.
    if (o.signal !== undefined) await new Promise((resolve) => setTimeout(resolve, 0));
    if (o.signal?.aborted) {
      await checkpoint();
      return finish('stopped');
    }
    const epoch = Math.floor(trainer.step / plan.stepsPerEpoch);
    const index = trainer.step % plan.stepsPerEpoch;
    const t0 = now();
    const micro = plan.microBatches(epoch, index);
    const r = await trainer.trainStep(micro);
    const stepMs = now() - t0;
    if (!r.finite) {
      await emit({
        type: 'nan',
        step: trainer.step + 1,
        loss: r.loss,
        gradNorm: r.gradNorm,
        lastCheckpoint,
      });
      return finish('nan');
    }
    losses.push(r.loss);
    const sessionMs = now() - sessionStart;
    const done = trainer.step - startStep;
    const etaMs = (sessionMs / done) * (total - trainer.step);
    await emit({
      type: 'step',
      ...r,
      epoch,
      totalSteps: total,
      stepMs,
      tokensPerSec: r.tokens / (stepMs / 1000),
      elapsedMs: trainer.elapsedMs,
      etaMs,
    });

    const last = trainer.step === total;
    let stop = false;
    if (o.evaluate !== undefined && (last || (evalEvery > 0 && trainer.step % evalEvery === 0))) {
      const e0 = now();
      const metrics = await o.evaluate(trainer.step);
      const which: BestMetric =
        o.bestMetric ?? (metrics.exact_match === undefined ? 'loss' : 'exact_match');
      const value = which === 'loss' ? -metrics.loss : (metrics.exact_match ?? Number.NaN);
      const better =
        trainer.best === null ||
        value > trainer.best.value ||
        (value === trainer.best.value &&
          which !== 'loss' &&
          -metrics.loss > -trainer.best.metrics.loss);
      if (better) {
        trainer.best = { step: trainer.step, value, metrics };
        trainer.evalsWithoutImprovement = 0;
        await o.saveBest?.(trainer.step, metrics);
      } else trainer.evalsWithoutImprovement += 1;
      await emit({ type: 'eval', step: trainer.step, metrics, best: better, ms: now() - e0 });
      if (
        o.patience !== undefined &&
        o.patience > 0 &&
        trainer.evalsWithoutImprovement >= o.patience &&
        !last
      ) {
        await emit({
          type: 'early-stop',
          step: trainer.step,
          bestStep: trainer.best?.step ?? 0,
          patience: o.patience,
        });
        stop = true;
      }
    }
    const interrupted = o.stopAtStep !== undefined && trainer.step >= o.stopAtStep;
    if (
      (last && o.checkpointAtEnd !== false) ||
      stop ||
      interrupted ||
      (ckptEvery > 0 && trainer.step % ckptEvery === 0 && !last)
    )
      await checkpoint();
    if (stop) return finish('early-stop');
    if (interrupted && !last) return finish('stopped');
  }
  return finish('done');
}

function now(): number {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}
