/**
 * `para train` and `para eval` as functions: files in, files out.
 *
 * `trainAdapterFromFiles` writes to OUT:
 *   adapter_config.json + adapter_model.safetensors   the adapter (PEFT layout): the best one by
 *                                                      dev exact match when --eval-data is given,
 *                                                      else the last
 *   metrics.jsonl                                      one JSON line per update / evaluation
 *   train_summary.json                                 settings, counts, final and best metrics
 *   checkpoints/                                       for --resume (removed after a finished run
 *                                                      unless keepCheckpoints)
 *   .para.lock                                         held while the run lasts: a second run on
 *                                                      the same OUT is LOCKED
 *
 * Nothing of an earlier run is lost silently: OUT holding an interrupted run's checkpoint is
 * refused unless `resume` (continue it) or `force` (discard it).
 */

import { rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  type AnyAdapter,
  adapterMethod,
  adapterMethods,
  createAdapter,
  loadAdapter,
  saveAdapter,
} from '@para/adapters/node';
import { ParaError, writeFileAtomic } from '@para/core/node';
import type { CausalLM } from '@para/model';
import { loadModel } from '@para/model/node';
import { loadTokenizer, type ParaTokenizer } from '@para/tokenizer/node';
import * as tf from '@tensorflow/tfjs-core';
import { skippedMessage, type TokenizedDataset, type TokenizerLike } from '../data';
import { type EvalResult, evaluateDataset } from '../evaluate';
import { disposeCheckpoint, FINETUNE_DEFAULTS, type FinetuneResult, finetune } from '../finetune';
import { ExamplePlan } from '../plan';
import type { DecayKind } from '../schedule';
import type { TrainEvent } from '../trainer';
import {
  CHECKPOINT_DIR,
  hasCheckpoint,
  latestCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
} from './checkpoint';
import { loadDataset, withOutLock } from './files';
import { metricsWriter, progressReporter } from './progress';

/** A registered adapter method's name: `para`, `lora`, `ia3` (see @para/adapters' registry). */
export type MethodName = string;
/** The registered methods' names. */
export const ADAPTER_METHODS: readonly MethodName[] = adapterMethods().map((m) => m.name);

/**
 * The adapter config of a method by name, with rank `r` if given (PARA: bottleneck width;
 * LoRA: rank), everything else the method's defaults (the registry's one set).
 */
export function methodConfig(
  method: MethodName,
  r: number | undefined,
  base: string | null,
): Record<string, unknown> {
  const m = adapterMethod(method, { byName: true, field: 'method' });
  if (r !== undefined) {
    if (m.rankKey === null)
      throw new ParaError('INVALID_ARGUMENT', `${m.peftType} has no rank`, {
        field: 'r',
        expected: `no r for ${m.name} (its vectors have the model widths)`,
      });
    if (!Number.isInteger(r) || r < 1)
      throw new ParaError('INVALID_ARGUMENT', 'bad rank', {
        field: 'r',
        expected: 'a positive integer',
        actual: String(r),
      });
  }
  return {
    peft_type: m.peftType,
    ...(r === undefined || m.rankKey === null ? {} : { [m.rankKey]: r }),
    base_model_name_or_path: base,
  };
}

/** The rank a method uses by default (null: it has none). */
export function defaultRank(method: MethodName): number | null {
  const m = adapterMethod(method, { byName: true, field: 'method' });
  return m.rankKey === null ? null : (m.defaults[m.rankKey] as number);
}

function backboneDir(dir: string | undefined): string {
  if (dir === undefined) {
    throw new ParaError('INVALID_ARGUMENT', 'no backbone given', {
      field: 'model',
      expected: 'a model directory (or a loaded backbone)',
    });
  }
  return dir;
}

/** A backbone directory's model and tokenizer. */
export async function loadBackbone(
  dir: string,
): Promise<{ dir: string; model: CausalLM; tokenizer: ParaTokenizer }> {
  const d = dir;
  const model = await loadModel(d);
  try {
    const tokenizer = await loadTokenizer(d);
    if (tokenizer.vocabSize > model.config.vocabSize) {
      throw new ParaError(
        'SHAPE_MISMATCH',
        'the tokenizer has more tokens than the model has embeddings',
        {
          file: d,
          field: 'vocab_size',
          expected: `at most ${model.config.vocabSize}`,
          actual: String(tokenizer.vocabSize),
        },
      );
    }
    return { dir: d, model, tokenizer };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** `data/tasks/arithmetic/train.jsonl` → "arithmetic"; `foo/bar.jsonl` → "bar". */
export function datasetName(file: string): string {
  const stem = path.basename(file).replace(/\.jsonl?$/i, '');
  return ['train', 'dev', 'test', 'valid', 'validation'].includes(stem)
    ? path.basename(path.dirname(path.resolve(file)))
    : stem;
}

export interface TrainFilesOptions {
  method: MethodName;
  data: string;
  evalData?: string;
  /** Backbone directory (or pass a loaded `backbone`). */
  model?: string;
  /** Written as the adapter's base_model_name_or_path (default: the backbone directory). */
  baseModelName?: string;
  /** Default `adapters/<dataset>-<method>`. */
  out?: string;
  steps?: number;
  epochs?: number;
  lr?: number;
  batchSize?: number;
  microBatchSize?: number;
  r?: number;
  seed?: number;
  warmupSteps?: number;
  decay?: DecayKind;
  weightDecay?: number;
  maxGradNorm?: number;
  resume?: boolean;
  /**
   * Train into an OUT that holds an interrupted run's checkpoint, discarding it (without
   * `resume` or `force` that is an error: the checkpoint is never deleted silently).
   */
  force?: boolean;
  strict?: boolean;
  /** Replace bytes of the data files that are not UTF-8 with U+FFFD (default: an error). */
  allowInvalidUtf8?: boolean;
  /**
   * Bytes one micro-batch's forward and backward pass may take (see `estimateStepMemory`);
   * default `defaultMemoryLimit()` of the active backend. A larger batch is LIMIT_EXCEEDED.
   */
  memoryLimit?: number;
  /** Recorded in OUT/.para.lock (default: this process's command line). */
  command?: string;
  evalEvery?: number;
  evalLimit?: number;
  patience?: number;
  checkpointEvery?: number;
  keepCheckpoints?: boolean;
  /** Progress: a label, plain lines, or none. */
  label?: string;
  plain?: boolean;
  quiet?: boolean;
  /** Setup messages (default stderr). */
  log?: (s: string) => void;
  /** Called on every event; training waits for a returned promise (e.g. to yield the CPU). */
  onEvent?: (e: TrainEvent) => void | Promise<void>;
  /** Reuse an already loaded backbone (the demo trains several tenants on one). */
  backbone?: { dir: string; model: CausalLM; tokenizer: ParaTokenizer };
  /** Stop after this step (tests of resuming). */
  stopAtStep?: number;
  /** Stops training between updates after writing a checkpoint (resume with `resume: true`). */
  signal?: AbortSignal;
}

export interface TrainFilesResult {
  out: string;
  method: MethodName;
  parameters: number;
  result: FinetuneResult;
  lastEval: EvalResult | null;
  skipped: number;
  adapterSaved: boolean;
}

/**
 * Bytes the wasm backend can address (its heap is 32-bit): no batch past it can run there.
 */
export const WASM_MEMORY_LIMIT = 4 * 2 ** 30;

/**
 * The default bound on one micro-batch's activation memory: the wasm heap (4 GiB) on wasm,
 * else half of this machine's memory (`os.totalmem() / 2`). Override with `memoryLimit`.
 */
export function defaultMemoryLimit(backend: string = tf.getBackend()): number {
  return backend === 'wasm' ? WASM_MEMORY_LIMIT : Math.floor(os.totalmem() / 2);
}

/**
 * Activation floats kept per token and per layer for the backward pass, in units of the hidden
 * size (the attention block's inputs, projections, norms and residuals ≈ 16 × hidden, the
 * feed-forward's ≈ 6 × intermediate, counted via `intermediate / hidden`) — a deliberately
 * generous round figure, documented so the bound below is predictable.
 */
export const ACTIVATION_FACTOR = 16;

/**
 * What tfjs really holds on top of the activations counted below (gradients of each, the
 * temporaries of fused ops, allocator slack), measured on the bundled backbone (4 layers,
 * d = 256, vocab 4096) with the wasm backend: 380 rows of 20 tokens ran in about 3.9 GiB,
 * 550 rows ran out of the 4 GiB heap; the count below times 3 puts the bound at about 390.
 */
export const MEMORY_SAFETY_FACTOR = 3;

/**
 * Estimated bytes of one forward + backward pass over `rows` sequences of `seqLen` tokens
 * (float32): per layer `tokens × (ACTIVATION_FACTOR × hidden + 6 × intermediate)` plus the
 * attention scores `rows × heads × seqLen² × 3`, and the logits with their softmax and gradient
 * `tokens × vocab × 3`; all × 4 bytes × MEMORY_SAFETY_FACTOR.
 */
export function estimateStepMemory(
  config: {
    hiddenSize: number;
    intermediateSize: number;
    numLayers: number;
    numHeads: number;
    vocabSize: number;
  },
  rows: number,
  seqLen: number,
): number {
  const tokens = rows * seqLen;
  const perLayer =
    tokens * (ACTIVATION_FACTOR * config.hiddenSize + 6 * config.intermediateSize) +
    rows * config.numHeads * seqLen * seqLen * 3;
  return 4 * MEMORY_SAFETY_FACTOR * (config.numLayers * perLayer + tokens * config.vocabSize * 3);
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

/**
 * LIMIT_EXCEEDED naming `field` when a pass over `rows` × `seqLen` tokens is estimated past
 * `limit` bytes.
 */
export function checkStepMemory(
  config: Parameters<typeof estimateStepMemory>[0],
  rows: number,
  seqLen: number,
  field: string,
  limit: number,
): void {
  const need = estimateStepMemory(config, rows, seqLen);
  if (need <= limit) return;
  const fit = Math.max(1, Math.floor((rows * limit) / need));
  throw new ParaError(
    'LIMIT_EXCEEDED',
    `a batch of ${rows} sequences of up to ${seqLen} tokens needs about ${gib(need)} for one training pass, more than the ${gib(limit)} allowed on the ${tf.getBackend()} backend; lower ${field}${field === 'microBatchSize' ? '' : ' or set microBatchSize (gradients are accumulated over micro-batches)'}`,
    {
      field,
      expected: `at most about ${fit} rows per pass (memoryLimit ${limit} bytes)`,
      actual: String(rows),
    },
  );
}

/** True for what an allocation failure looks like (RangeError, wasm "out of memory"/abort). */
export function isOutOfMemory(e: unknown): boolean {
  if (e instanceof RangeError) return true;
  const m = e instanceof Error ? e.message : String(e);
  return /out of memory|Aborted\(|OOM|Cannot allocate|allocation failed|Array buffer allocation|Invalid array length|memory access out of bounds/i.test(
    m,
  );
}

/** An allocation failure in a pass over `rows` rows as LIMIT_EXCEEDED naming `field`. */
export function outOfMemoryError(e: unknown, field: string, rows: number): ParaError {
  return new ParaError(
    'LIMIT_EXCEEDED',
    `out of memory in a training pass over ${rows} rows (${e instanceof Error ? e.message.split('\n')[0] : String(e)}); lower ${field}${field === 'microBatchSize' ? '' : ' or set microBatchSize (gradients are accumulated over micro-batches)'}`,
    { field, expected: `a smaller ${field}`, actual: String(rows), cause: e },
  );
}

export async function trainAdapterFromFiles(o: TrainFilesOptions): Promise<TrainFilesResult> {
  const log = o.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const out = o.out ?? path.join('adapters', `${datasetName(o.data)}-${o.method}`);
  return withOutLock(out, { log, ...(o.command === undefined ? {} : { command: o.command }) }, () =>
    trainLocked(o, out, log),
  );
}

/** Refuses (or with `force` discards) an earlier run's checkpoint in `out` when not resuming. */
export async function checkNoInterruptedRun(
  out: string,
  o: { resume?: boolean; force?: boolean },
  log: (s: string) => void,
): Promise<void> {
  if (o.resume === true || !(await hasCheckpoint(out))) return;
  const root = path.join(out, CHECKPOINT_DIR);
  if (o.force === true) {
    log(`${root}: discarding the earlier run's checkpoint (force)`);
    await rm(root, { recursive: true, force: true });
    return;
  }
  let step = '';
  try {
    const dir = await latestCheckpoint(out);
    if (dir !== null) step = ` (${path.basename(dir)})`;
  } catch {
    // a damaged pointer is still a checkpoint not to delete silently
  }
  throw new ParaError(
    'INVALID_ARGUMENT',
    `the output directory holds an interrupted run's checkpoint${step}`,
    {
      file: root,
      field: 'resume',
      expected: 'resume: true to continue, force: true to discard it',
      actual: 'neither',
    },
  );
}

async function trainLocked(
  o: TrainFilesOptions,
  out: string,
  log: (s: string) => void,
): Promise<TrainFilesResult> {
  await checkNoInterruptedRun(out, o, log);
  const backbone = o.backbone ?? (await loadBackbone(backboneDir(o.model)));
  const owned = o.backbone === undefined;
  const { model, tokenizer } = backbone;
  let adapter: AnyAdapter | null = null;
  try {
    const maxLength = model.config.maxPositionEmbeddings;
    const dataOptions = {
      maxLength,
      strict: o.strict ?? false,
      allowInvalidUtf8: o.allowInvalidUtf8 ?? false,
      log,
    };
    const train = await loadDataset(o.data, tokenizer, dataOptions);
    const evalData =
      o.evalData === undefined ? undefined : await loadDataset(o.evalData, tokenizer, dataOptions);
    for (const d of [train, evalData]) {
      const msg = d === undefined ? null : skippedMessage(d, maxLength);
      if (msg !== null) log(msg);
    }
    const baseName = o.baseModelName ?? backbone.dir;
    adapter = createAdapter(model.config, methodConfig(o.method, o.r, baseName), {
      seed: o.seed ?? 0,
    });
    const a = adapter;
    const batchSize = o.batchSize ?? FINETUNE_DEFAULTS.batchSize;
    const passRows = Math.min(o.microBatchSize ?? batchSize, batchSize);
    const passField = o.microBatchSize === undefined ? 'batchSize' : 'microBatchSize';
    if (Number.isInteger(passRows) && passRows >= 1) {
      const longest = train.examples.reduce((m, e) => Math.max(m, e.ids.length), 1);
      checkStepMemory(
        model.config,
        Math.min(passRows, train.examples.length),
        longest,
        passField,
        o.memoryLimit ?? defaultMemoryLimit(),
      );
    }
    const meta = {
      kind: 'adapter',
      method: o.method,
      r: o.r ?? defaultRank(o.method),
      data: path.resolve(o.data),
      model: path.resolve(backbone.dir),
      batchSize: o.batchSize ?? FINETUNE_DEFAULTS.batchSize,
      microBatchSize: o.microBatchSize ?? null,
      seed: o.seed ?? 0,
      lr: o.lr ?? adapterMethod(o.method, { byName: true, field: 'method' }).training.lr,
      steps: o.steps ?? null,
      epochs: o.epochs ?? null,
      warmupSteps: o.warmupSteps ?? null,
      decay: o.decay ?? FINETUNE_DEFAULTS.decay,
      weightDecay: o.weightDecay ?? FINETUNE_DEFAULTS.weightDecay,
      maxGradNorm: o.maxGradNorm ?? FINETUNE_DEFAULTS.maxGradNorm,
    };
    let resumeFrom: Awaited<ReturnType<typeof loadCheckpoint>> | undefined;
    if (o.resume) {
      const dir = await latestCheckpoint(out);
      if (dir === null)
        throw new ParaError('FILE_NOT_FOUND', 'no checkpoint to resume from', {
          file: path.join(out, CHECKPOINT_DIR),
          field: 'resume',
          expected: 'a previous run of the same command (same --out)',
        });
      // The run's total steps, as finetune() computes them: a saved step past them is refused.
      let totalSteps = o.steps;
      if (totalSteps === undefined) {
        const plan = new ExamplePlan(train.examples, {
          batchSize: meta.batchSize,
          microBatchSize: o.microBatchSize ?? meta.batchSize,
          seed: meta.seed,
          padId: 0,
        });
        totalSteps = Math.max(
          1,
          Math.round((o.epochs ?? FINETUNE_DEFAULTS.epochs) * plan.stepsPerEpoch),
        );
      }
      resumeFrom = await loadCheckpoint(dir, {
        totalSteps,
        parameters: a.namedParameters(),
      });
      const saved = resumeFrom.state.meta;
      for (const key of [
        'method',
        'r',
        'data',
        'batchSize',
        'microBatchSize',
        'seed',
        'lr',
        'steps',
        'epochs',
        'warmupSteps',
        'decay',
        'weightDecay',
        'maxGradNorm',
      ] as const) {
        if (JSON.stringify(saved[key] ?? null) !== JSON.stringify(meta[key] ?? null)) {
          disposeCheckpoint(resumeFrom);
          throw new ParaError(
            'INVALID_ARGUMENT',
            `resuming needs the same settings as the interrupted run: ${key} differs`,
            {
              file: dir,
              field: key,
              expected: JSON.stringify(saved[key] ?? null),
              actual: JSON.stringify(meta[key] ?? null),
            },
          );
        }
      }
      log(`resuming from ${dir} (step ${resumeFrom.state.step})`);
    }
    const metrics = metricsWriter(path.join(out, 'metrics.jsonl'), resumeFrom?.state.step ?? null);
    const progress = progressReporter({
      quiet: o.quiet,
      plain: o.plain,
      label: o.label ?? `${datasetName(o.data)}/${o.method}`,
    });
    let adapterSaved = false;
    let result: FinetuneResult;
    try {
      result = await finetune({
        model,
        tokenizer: tokenizer as TokenizerLike,
        adapter: a,
        train,
        ...(evalData === undefined ? {} : { eval: evalData }),
        ...(o.steps === undefined ? {} : { steps: o.steps }),
        ...(o.epochs === undefined ? {} : { epochs: o.epochs }),
        lr: meta.lr,
        ...(o.batchSize === undefined ? {} : { batchSize: o.batchSize }),
        ...(o.microBatchSize === undefined ? {} : { microBatchSize: o.microBatchSize }),
        ...(o.warmupSteps === undefined ? {} : { warmupSteps: o.warmupSteps }),
        ...(o.decay === undefined ? {} : { decay: o.decay }),
        ...(o.weightDecay === undefined ? {} : { weightDecay: o.weightDecay }),
        ...(o.maxGradNorm === undefined ? {} : { maxGradNorm: o.maxGradNorm }),
        ...(o.evalEvery === undefined ? {} : { evalEvery: o.evalEvery }),
        ...(o.evalLimit === undefined ? {} : { evalLimit: o.evalLimit }),
        ...(o.patience === undefined ? {} : { patience: o.patience }),
        ...(o.stopAtStep === undefined ? {} : { stopAtStep: o.stopAtStep }),
        ...(o.signal === undefined ? {} : { signal: o.signal }),
        ...(resumeFrom === undefined ? {} : { resumeFrom }),
        seed: o.seed ?? 0,
        checkpointEvery: o.checkpointEvery ?? 0,
        // A finished run keeps its result as the adapter; a final checkpoint only with --keep-checkpoints.
        checkpointAtEnd: o.keepCheckpoints === true,
        saveCheckpoint: (data) => saveCheckpoint(out, data),
        saveBest: async () => {
          await saveAdapter(a, out);
          adapterSaved = true;
        },
        meta,
        onEvent: (e) => {
          metrics(e);
          progress.onEvent(e);
          return o.onEvent?.(e);
        },
      });
    } catch (e) {
      if (isOutOfMemory(e)) throw outOfMemoryError(e, passField, passRows);
      throw e;
    } finally {
      progress.close();
      if (resumeFrom !== undefined) disposeCheckpoint(resumeFrom);
    }
    if (result.reason === 'nan') {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `training stopped at step ${result.step + 1}: the loss is NaN or infinite. ${result.lastCheckpoint === null ? 'No checkpoint had been written yet' : `The last good checkpoint is ${result.lastCheckpoint} (step ${result.step})`}${adapterSaved ? `; ${out} holds the best adapter so far` : ''}`,
        { field: 'lr', expected: `a lower learning rate than ${meta.lr}` },
      );
    }
    if (evalData === undefined && result.reason !== 'stopped') {
      await saveAdapter(a, out);
      adapterSaved = true;
    }
    const summary = {
      method: o.method,
      config: a.toConfigJson(),
      parameters: a.numParameters,
      data: o.data,
      evalData: o.evalData ?? null,
      model: backbone.dir,
      examples: train.examples.length,
      skipped: train.skipped.length,
      steps: result.step,
      totalSteps: result.totalSteps,
      stepsPerEpoch: result.stepsPerEpoch,
      tokensSeen: result.tokensSeen,
      elapsedMs: result.elapsedMs,
      tokensPerSec: result.tokensSeen / (result.elapsedMs / 1000),
      finalTrainLoss: result.lastLoss,
      best: result.best,
      stopped: result.reason,
      seed: o.seed ?? 0,
    };
    if (result.reason !== 'stopped') {
      await writeFileAtomic(
        path.join(out, 'train_summary.json'),
        `${JSON.stringify(summary, null, 2)}\n`,
      );
      if (!o.keepCheckpoints && o.stopAtStep === undefined)
        await rm(path.join(out, CHECKPOINT_DIR), { recursive: true, force: true });
    }
    return {
      out,
      method: o.method,
      parameters: a.numParameters,
      result,
      lastEval: result.lastEval,
      skipped: train.skipped.length,
      adapterSaved,
    };
  } finally {
    adapter?.dispose();
    if (owned) model.dispose();
  }
}

export interface EvalFilesOptions {
  data: string;
  model?: string;
  adapter?: string;
  batchSize?: number;
  limit?: number;
  strict?: boolean;
  keepPredictions?: boolean;
  /** Replace bytes of the data file that are not UTF-8 with U+FFFD (default: an error). */
  allowInvalidUtf8?: boolean;
  backbone?: { dir: string; model: CausalLM; tokenizer: ParaTokenizer };
  log?: (s: string) => void;
}

/** `para eval`: loss and exact match of the backbone (with an adapter directory, if given) on a JSONL file. */
export async function evalFromFiles(
  o: EvalFilesOptions,
): Promise<EvalResult & { skipped: number }> {
  const log = o.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const backbone = o.backbone ?? (await loadBackbone(backboneDir(o.model)));
  const owned = o.backbone === undefined;
  let adapter: AnyAdapter | null = null;
  try {
    const { model, tokenizer } = backbone;
    const data: TokenizedDataset = await loadDataset(o.data, tokenizer, {
      maxLength: model.config.maxPositionEmbeddings,
      strict: o.strict ?? false,
      allowInvalidUtf8: o.allowInvalidUtf8 ?? false,
      log,
    });
    const msg = skippedMessage(data, model.config.maxPositionEmbeddings);
    if (msg !== null) log(msg);
    if (o.adapter !== undefined) adapter = await loadAdapter(o.adapter, model);
    const r = await evaluateDataset(model, tokenizer as TokenizerLike, data, {
      adapter: adapter === null ? null : adapter.attach(model),
      ...(o.batchSize === undefined ? {} : { batchSize: o.batchSize }),
      ...(o.limit === undefined ? {} : { limit: o.limit }),
      keepPredictions: o.keepPredictions ?? false,
    });
    return { ...r, skipped: data.skipped.length };
  } finally {
    adapter?.dispose();
    if (owned) backbone.model.dispose();
  }
}
