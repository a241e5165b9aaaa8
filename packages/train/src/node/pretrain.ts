/**
 * `para pretrain`: full-parameter training of a LLaMA-style backbone from scratch on text files
 * (one document per line), with its own byte-level BPE tokenizer unless one is given.
 *
 *   1. documents = the non-empty lines of the inputs; a seeded 1% is held out for evaluation
 *   2. each document → <s> text </s>; the training documents are concatenated into one stream
 *      and cut into windows of seqLen + 1 tokens (WindowPlan), reshuffled every epoch
 *   3. AdamW, warm-up + cosine decay, clipping, checkpoints (resumable)
 *   4. OUT/ gets config.json + model.safetensors (HF layout), tokenizer.json +
 *      tokenizer_config.json, training_summary.json and metrics.jsonl
 *
 * While it runs, OUT/.para.lock keeps a second run off the same OUT (LOCKED); an interrupted
 * run's checkpoint in OUT is continued with `resume` or discarded with `force`, never silently.
 * Inputs that are not UTF-8 are INVALID_ENCODING (naming file:line) unless `allowInvalidUtf8`.
 *
 * The summary compares the final held-out loss with a unigram baseline on the same held-out
 * tokens: the cross-entropy of the training set's token frequencies (add-one smoothed), i.e.
 * what a model that ignores context entirely would score.
 */

import { copyFile, rm, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { ParaError, Rng, writeFileAtomic } from '@para/core/node';
import { CausalLM, saveModel } from '@para/model/node';
import {
  loadTokenizer,
  type ParaTokenizer,
  saveTokenizer,
  trainBpeTokenizer,
} from '@para/tokenizer/node';
import * as tf from '@tensorflow/tfjs-core';
import { collateWindows } from '../batch';
import { WindowPlan } from '../plan';
import { backbonePreset, DEFAULT_CHAT_TEMPLATE, presetModelConfig } from '../presets';
import { fullTrainable } from '../trainable';
import { runTraining, type TrainEvent, Trainer } from '../trainer';
import { CHECKPOINT_DIR, latestCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint';
import { readTextFile, withOutLock } from './files';
import { metricsWriter, progressReporter } from './progress';
import {
  checkNoInterruptedRun,
  checkStepMemory,
  defaultMemoryLimit,
  isOutOfMemory,
  outOfMemoryError,
} from './train-files';

export interface PretrainOptions {
  inputs: string[];
  out: string;
  /** Preset name (default 'small'). */
  config?: string;
  steps?: number;
  /** A tokenizer directory; default: train one on the inputs. */
  tokenizer?: string;
  seed?: number;
  lr?: number;
  batchSize?: number;
  seqLen?: number;
  /** Fraction of documents held out (default 0.01). */
  heldOut?: number;
  resume?: boolean;
  /** Start afresh in an OUT holding an interrupted run's checkpoint, discarding it. */
  force?: boolean;
  /** Replace bytes of the inputs that are not UTF-8 with U+FFFD (default: an error). */
  allowInvalidUtf8?: boolean;
  /** Bytes one training pass may take (default `defaultMemoryLimit()`); see `estimateStepMemory`. */
  memoryLimit?: number;
  /** Keep OUT/checkpoints after a run that finished (default: removed, OUT then holds only the model). */
  keepCheckpoints?: boolean;
  /** The command line, recorded in the summary. */
  command?: string;
  onEvent?: (e: TrainEvent) => void;
  /** Progress on stderr (default true). */
  progress?: boolean;
  /** Plain progress lines even on a TTY. */
  plain?: boolean;
  /** Log a line (setup steps) — default to stderr. */
  log?: (s: string) => void;
}

export interface PretrainSummary {
  config: string;
  parameters: number;
  steps: number;
  batchSize: number;
  seqLen: number;
  tokensSeen: number;
  epochs: number;
  trainTokens: number;
  heldOutTokens: number;
  documents: number;
  heldOutDocuments: number;
  finalTrainLoss: number | null;
  heldOutLoss: number;
  unigramCrossEntropy: number;
  heldOutUnigramEntropy: number;
  elapsedMs: number;
  tokensPerSec: number;
  inputs: { file: string; bytes: number }[];
  command: string | null;
  seed: number;
  stopped: string;
}

async function readDocuments(
  files: string[],
  o: { allowInvalidUtf8?: boolean; log?: (s: string) => void },
): Promise<{ docs: string[]; inputs: { file: string; bytes: number }[] }> {
  if (files.length === 0)
    throw new ParaError('INVALID_ARGUMENT', 'no input files', {
      field: 'input',
      expected: 'one or more text files',
    });
  const docs: string[] = [];
  const inputs: { file: string; bytes: number }[] = [];
  for (const file of files) {
    const { text, bytes } = await readTextFile(file, {
      allowInvalidUtf8: o.allowInvalidUtf8 ?? false,
      ...(o.log === undefined ? {} : { log: o.log }),
    });
    inputs.push({ file, bytes });
    for (const line of text.split('\n')) {
      const d = line.replace(/\r$/, '').trim();
      if (d.length > 0) docs.push(d);
    }
  }
  if (docs.length < 2)
    throw new ParaError(
      'INVALID_ARGUMENT',
      'the inputs hold fewer than 2 documents (non-empty lines)',
      { file: files.join(', '), field: 'input', expected: 'text with one document per line' },
    );
  return { docs, inputs };
}

function tokenizeDocs(
  tok: ParaTokenizer,
  docs: readonly string[],
  bos: number | null,
  eos: number,
): Int32Array {
  const parts: number[][] = [];
  let n = 0;
  for (const d of docs) {
    const ids = tok.encode(d, { addSpecialTokens: false });
    const row = bos === null ? [...ids, eos] : [bos, ...ids, eos];
    parts.push(row);
    n += row.length;
  }
  const out = new Int32Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Cross-entropy (nats/token) of `heldOut` under add-one-smoothed unigram frequencies of `train`, and the held-out text's own unigram entropy. */
export function unigramBaseline(
  train: Int32Array,
  heldOut: Int32Array,
  vocabSize: number,
): { crossEntropy: number; entropy: number } {
  const counts = new Float64Array(vocabSize).fill(1);
  for (const t of train) counts[t] = (counts[t] as number) + 1;
  const total = train.length + vocabSize;
  // Targets only: the first token of the held-out stream is never predicted by the model either.
  let ce = 0;
  const own = new Float64Array(vocabSize);
  for (let i = 1; i < heldOut.length; i++) {
    const t = heldOut[i] as number;
    ce -= Math.log((counts[t] as number) / total);
    own[t] = (own[t] as number) + 1;
  }
  const n = heldOut.length - 1;
  let h = 0;
  for (const c of own) if (c > 0) h -= (c / n) * Math.log(c / n);
  return { crossEntropy: ce / n, entropy: h };
}

export async function pretrain(o: PretrainOptions): Promise<PretrainSummary> {
  const log = o.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const presetName = o.config ?? 'small';
  const preset = backbonePreset(presetName);
  const r = preset.recipe;
  const seed = o.seed ?? 0;
  const steps = o.steps ?? r.steps;
  const batchSize = o.batchSize ?? r.batchSize;
  const seqLen = o.seqLen ?? r.seqLen;
  for (const [field, v] of [
    ['steps', steps],
    ['batchSize', batchSize],
    ['seqLen', seqLen],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new ParaError('INVALID_ARGUMENT', `bad ${field}`, {
        field,
        expected: 'a positive integer',
        actual: String(v),
      });
  }
  if (seqLen > preset.contextLength)
    throw new ParaError('INVALID_ARGUMENT', 'sequence length past the context', {
      field: 'seqLen',
      expected: `at most ${preset.contextLength}`,
      actual: String(seqLen),
    });
  checkStepMemory(preset, batchSize, seqLen, 'batchSize', o.memoryLimit ?? defaultMemoryLimit());
  return withOutLock(
    o.out,
    { log, ...(o.command === undefined ? {} : { command: o.command }) },
    async () => {
      await checkNoInterruptedRun(o.out, o, log);
      return pretrainLocked(o, { log, presetName, preset, seed, steps, batchSize, seqLen });
    },
  );
}

async function pretrainLocked(
  o: PretrainOptions,
  c: {
    log: (s: string) => void;
    presetName: string;
    preset: ReturnType<typeof backbonePreset>;
    seed: number;
    steps: number;
    batchSize: number;
    seqLen: number;
  },
): Promise<PretrainSummary> {
  const { log, presetName, preset, seed, steps, batchSize, seqLen } = c;
  const r = preset.recipe;
  const { docs, inputs } = await readDocuments(o.inputs, {
    allowInvalidUtf8: o.allowInvalidUtf8,
    log,
  });
  // Held-out documents: a seeded choice, the same for every run with these inputs.
  const heldFraction = o.heldOut ?? 0.01;
  const order = new Rng(`para-pretrain-heldout/${seed}`).shuffle(Array.from(docs, (_, i) => i));
  const nHeld = Math.max(1, Math.round(docs.length * heldFraction));
  const held = new Set(order.slice(0, nHeld));
  const trainDocs = docs.filter((_, i) => !held.has(i));
  const heldDocs = docs.filter((_, i) => held.has(i));

  let tok: ParaTokenizer;
  if (o.tokenizer !== undefined) {
    tok = await loadTokenizer(o.tokenizer);
    const dir = (await stat(o.tokenizer)).isDirectory() ? o.tokenizer : path.dirname(o.tokenizer);
    if (path.resolve(dir) !== path.resolve(o.out)) {
      await copyFile(
        (await stat(o.tokenizer)).isDirectory() ? path.join(dir, 'tokenizer.json') : o.tokenizer,
        path.join(o.out, 'tokenizer.json'),
      );
      await copyFile(
        path.join(dir, 'tokenizer_config.json'),
        path.join(o.out, 'tokenizer_config.json'),
      ).catch(() => undefined);
    }
  } else {
    log(`training a ${preset.vocabSize}-token byte-level BPE tokenizer on ${o.inputs.join(', ')}`);
    const trained = await trainBpeTokenizer({
      files: o.inputs,
      vocabSize: preset.vocabSize,
      specialTokens: ['<unk>', '<s>', '</s>', '<pad>'],
      chatTemplate: DEFAULT_CHAT_TEMPLATE,
    });
    await saveTokenizer(o.out, trained);
    tok = await loadTokenizer(o.out);
  }
  const eos = tok.eosTokenId;
  if (eos === undefined)
    throw new ParaError('INVALID_CONFIG', 'the tokenizer has no EOS token', {
      file: o.tokenizer ?? o.out,
      field: 'eos_token',
      expected: 'an eos_token in tokenizer_config.json',
    });
  const bos = tok.bosTokenId ?? null;
  const pad = tok.padTokenId ?? null;

  log(`tokenising ${trainDocs.length} training and ${heldDocs.length} held-out documents`);
  const t0 = performance.now();
  const trainTokens = tokenizeDocs(tok, trainDocs, bos, eos);
  const heldTokens = tokenizeDocs(tok, heldDocs, bos, eos);
  log(
    `  ${trainTokens.length} + ${heldTokens.length} tokens in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const baseline = unigramBaseline(trainTokens, heldTokens, tok.vocabSize);

  const config = presetModelConfig(preset, { vocabSize: tok.vocabSize, bos, eos, pad });
  const init = CausalLM.random(config, seed);
  const trainable = fullTrainable(init);
  init.dispose();
  let owned: Trainer | undefined;
  try {
    const trainer = new Trainer(trainable, {
      lr: o.lr ?? r.lr,
      totalSteps: steps,
      warmupSteps: Math.min(r.warmupSteps, Math.max(0, steps - 1)),
      decay: r.decay,
      minLrRatio: r.minLrRatio,
      weightDecay: r.weightDecay,
      beta2: r.beta2,
      maxGradNorm: r.maxGradNorm,
      seed,
    });
    owned = trainer;
    const plan = new WindowPlan(trainTokens, { seqLen, batchSize, seed });
    const heldPlan = new WindowPlan(
      heldTokens.length > seqLen + 1 ? heldTokens : padStream(heldTokens, seqLen + 1, eos),
      { seqLen, batchSize: 1, seed },
    );
    const heldBatches = (limit: number) => {
      const rows = Array.from({ length: Math.min(limit, heldPlan.numWindows) }, (_, i) =>
        heldPlan.window(i),
      );
      const out = [];
      for (let i = 0; i < rows.length; i += batchSize)
        out.push(collateWindows(rows.slice(i, i + batchSize)));
      return out;
    };

    let resumedFrom: number | null = null;
    if (o.resume) {
      const dir = await latestCheckpoint(o.out);
      if (dir === null)
        throw new ParaError('FILE_NOT_FOUND', 'no checkpoint to resume from', {
          file: path.join(o.out, 'checkpoints'),
          field: 'resume',
          expected: 'a previous run with the same --out',
        });
      const data = await loadCheckpoint(dir, {
        totalSteps: steps,
        parameters: trainable.parameters,
      });
      try {
        trainer.restore(data, dir);
      } finally {
        tf.dispose(Object.values(data.tensors));
      }
      resumedFrom = trainer.step;
      log(`resumed from ${dir} (step ${trainer.step})`);
    }

    const metrics = metricsWriter(path.join(o.out, 'metrics.jsonl'), resumedFrom);
    const progress = progressReporter({
      quiet: o.progress === false,
      plain: o.plain,
      label: 'pretrain',
    });
    let lastEval: { step: number; loss: number; n: number } | null = null;
    let result: Awaited<ReturnType<typeof runTraining>>;
    try {
      result = await runTraining(trainer, {
        plan,
        evalEvery: r.evalEvery,
        evaluate: async (step) => {
          const evalRows = step === steps ? Number.POSITIVE_INFINITY : 32;
          const { loss, lossTokens } = await trainer.evalLoss(heldBatches(evalRows));
          return { loss, n: lossTokens };
        },
        bestMetric: 'loss',
        checkpointEvery: r.checkpointEvery,
        checkpointAtEnd: o.keepCheckpoints === true,
        saveCheckpoint: (data) => saveCheckpoint(o.out, data),
        meta: { kind: 'pretrain', config: presetName, inputs: o.inputs, seqLen, batchSize },
        onEvent: (e) => {
          if (e.type === 'eval') lastEval = { step: e.step, loss: e.metrics.loss, n: e.metrics.n };
          metrics(e);
          progress.onEvent(e);
          o.onEvent?.(e);
        },
      });
    } catch (e) {
      if (isOutOfMemory(e)) throw outOfMemoryError(e, 'batchSize', batchSize);
      throw e;
    } finally {
      progress.close();
    }
    if (result.reason === 'nan') {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `the loss became NaN at step ${trainer.step + 1}; training stopped${result.lastCheckpoint ? `; the last good checkpoint is ${result.lastCheckpoint}` : ''}`,
        { field: 'lr', expected: 'a lower learning rate' },
      );
    }

    const finalEval = lastEval as { step: number; loss: number; n: number } | null;
    const { loss: heldOutLoss, lossTokens } =
      finalEval !== null && finalEval.step === trainer.step
        ? { loss: finalEval.loss, lossTokens: finalEval.n }
        : await trainer.evalLoss(heldBatches(Number.POSITIVE_INFINITY));
    await saveModel(trainable.model, o.out);
    const elapsedMs = trainer.elapsedMs;
    const summary: PretrainSummary = {
      config: presetName,
      parameters: trainable.model.numParameters,
      steps: trainer.step,
      batchSize,
      seqLen,
      tokensSeen: trainer.tokensSeen,
      epochs: trainer.step / plan.stepsPerEpoch,
      trainTokens: trainTokens.length,
      heldOutTokens: lossTokens,
      documents: trainDocs.length,
      heldOutDocuments: heldDocs.length,
      finalTrainLoss: trainer.lastLoss,
      heldOutLoss,
      unigramCrossEntropy: baseline.crossEntropy,
      heldOutUnigramEntropy: baseline.entropy,
      elapsedMs,
      tokensPerSec: trainer.tokensSeen / (elapsedMs / 1000),
      inputs,
      command: o.command ?? null,
      seed,
      stopped: result.reason,
    };
    await writeFileAtomic(
      path.join(o.out, 'training_summary.json'),
      `${JSON.stringify(summary, null, 2)}\n`,
    );
    if (!o.keepCheckpoints)
      await rm(path.join(o.out, CHECKPOINT_DIR), { recursive: true, force: true });
    return summary;
  } finally {
    owned?.dispose();
    trainable.model.dispose();
  }
}

function padStream(t: Int32Array, n: number, fill: number): Int32Array {
  const out = new Int32Array(Math.max(n + 1, t.length)).fill(fill);
  out.set(t);
  return out;
}
