/**
 * The high-level API, in the shape of Hugging Face PEFT: a backbone and one adapter behind one
 * object that takes text and gives text.
 *
 *   const { model } = await loadPretrained('assets/backbone');
 *   const peft = getPeftModel(model, { peft_type: 'PARA', r: 8 });
 *   await peft.train([{ prompt: 'Opposite of hot:', completion: ' cold' }, …]);
 *   await peft.save('adapters/antonyms');            // PEFT layout (Node)
 *   const again = await PeftModel.fromPretrained(model, 'adapters/antonyms');
 *   console.log(await again.generate('Opposite of big:'));
 *
 * A `PeftModel` owns the adapter's hooks and every request's state: prompt lengths come from
 * the inputs (text, records), never from the caller. Inference runs the one mixed-batch decode
 * path (a single tenant is a batch whose rows all use this adapter); training runs the method's
 * own differentiable hooks. Saving and loading by directory path need the Node build (which
 * `@para/train` resolves to in Node); a browser saves with `toFiles()` and loads from a URL.
 */

import {
  type AdapterMethod,
  type AnyAdapter,
  type AnyConfigInit,
  adapterMethod,
  createAdapter,
  loadAdapterFrom,
  type SaveAdapterOptions,
  serializeAdapter,
} from '@para/adapters';
import { type CheckpointAccess, ParaError, urlCheckpointAccess } from '@para/core';
import {
  asUrl,
  type CausalLM,
  type GenerateOptions,
  type GenerateResult,
  generateText,
  streamText,
  type TextGenerateOptions,
  type TextInput,
  type TokenEvent,
} from '@para/model';
import type { ChatMessage, ParaTokenizer } from '@para/tokenizer';
import type * as tf from '@tensorflow/tfjs-core';
import { checkRecords, type TokenizedDataset, type TokenizerLike, tokenizeRecords } from './data';
import { type EvalResult, evaluateDataset } from './evaluate';
import { FINETUNE_DEFAULTS, type FinetuneOptions, type FinetuneResult, finetune } from './finetune';

/** Where `PeftModel.fromPretrained` / `save` reach adapter directories on this platform. */
export interface AdapterDirectoryIO {
  /** A directory path → its files. */
  access(dir: string): CheckpointAccess;
  /** Writes the adapter's two files into `dir` (created if needed, each file atomically). */
  save(adapter: AnyAdapter, dir: string, options: SaveAdapterOptions): Promise<void>;
}

let directoryIO: AdapterDirectoryIO | null = null;

/** Installs directory support (the Node entry of @para/train does, on import). */
export function setAdapterDirectoryIO(io: AdapterDirectoryIO): void {
  directoryIO = io;
}

export interface GetPeftModelOptions {
  /** Seed of the adapter's initialisation (default 0). */
  seed?: number | string;
}

/**
 * `peft.train` options: `finetune`'s (steps | epochs, lr — default: the method's, 3e-3 —,
 * batchSize — default 16, at most the number of records —, schedule, clipping, evaluation
 * cadence, patience, `onEvent` progress, `signal` to stop between updates), plus:
 */
export interface PeftTrainOptions
  extends Pick<
    FinetuneOptions,
    | 'steps'
    | 'epochs'
    | 'lr'
    | 'batchSize'
    | 'microBatchSize'
    | 'seed'
    | 'warmupSteps'
    | 'decay'
    | 'weightDecay'
    | 'maxGradNorm'
    | 'evalEvery'
    | 'evalLimit'
    | 'patience'
    | 'onEvent'
    | 'signal'
  > {
  /** Held-out records: evaluated (loss, exact match) about 4 times and at the end. */
  eval?: readonly unknown[];
  /** Records longer than the model's context are an error instead of being skipped. */
  strict?: boolean;
}

export interface PeftTrainResult extends FinetuneResult {
  /** Records skipped because they did not fit the model's context. */
  skipped: number;
}

/** A backbone with one adapter: text in, text out, train, save, merge. */
export class PeftModel {
  /** The frozen backbone. */
  readonly base: CausalLM;
  /** The adapter (its parameters are the only trainable ones). */
  readonly adapter: AnyAdapter;
  private disposed = false;

  constructor(base: CausalLM, adapter: AnyAdapter) {
    adapter.checkModel(base.config);
    this.base = base;
    this.adapter = adapter;
  }

  /**
   * Loads an adapter directory (PEFT layout: ours, or Python PEFT's `save_pretrained` for LoRA
   * and IA3) for `base`: a path in Node, a URL anywhere, or a `CheckpointAccess`. An adapter made
   * for another base model is a typed error (by `base_model_name_or_path` and by tensor shapes).
   */
  static async fromPretrained(
    base: CausalLM,
    source: string | URL | CheckpointAccess,
  ): Promise<PeftModel> {
    const access = typeof source === 'string' || source instanceof URL ? accessFor(source) : source;
    const adapter = await loadAdapterFrom(
      access,
      base,
      base.nameOrPath === null ? {} : { baseModelName: base.nameOrPath },
    );
    return new PeftModel(base, adapter);
  }

  /** The method's registry entry (defaults, whether it merges). */
  get method(): AdapterMethod {
    return this.adapter.method;
  }

  /** The tokenizer of the backbone (from `loadPretrained`). */
  get tokenizer(): ParaTokenizer {
    return this.base.requireTokenizer();
  }

  /** adapter_config.json as an object. */
  get config(): Record<string, unknown> {
    return this.adapter.toConfigJson();
  }

  /** Trainable parameters (the adapter's). */
  get numParameters(): number {
    return this.adapter.numParameters;
  }

  /** "trainable params: 24,576 || all params: 4,228,352 || trainable%: 0.58" as PEFT prints it. */
  trainableParametersSummary(): string {
    const t = this.numParameters;
    const all = t + this.base.numParameters;
    return `trainable params: ${t.toLocaleString('en-US')} || all params: ${all.toLocaleString('en-US')} || trainable%: ${((100 * t) / all).toFixed(4)}`;
  }

  // --- inference ------------------------------------------------------------------------

  /** Text (see `CausalLM.generate`) with the adapter; token ids per row → `GenerateResult`. */
  generate(prompts: number[][], options?: GenerateOptions): Promise<GenerateResult>;
  generate(input: string | readonly ChatMessage[], options?: TextGenerateOptions): Promise<string>;
  generate(input: readonly string[], options?: TextGenerateOptions): Promise<string[]>;
  generate(
    input: TextInput | number[][],
    options: TextGenerateOptions | GenerateOptions = {},
  ): Promise<string | string[] | GenerateResult> {
    const hooks = this.hooks();
    if (Array.isArray(input) && Array.isArray(input[0]))
      return this.base.generate(input as number[][], {
        ...(options as GenerateOptions),
        adapter: hooks,
        request: {},
      });
    return generateText(this.base, this.tokenizer, input as TextInput, {
      ...(options as TextGenerateOptions),
      adapter: hooks,
      request: {},
    });
  }

  /** Streams the text of one prompt or chat with the adapter. */
  stream(
    input: string | readonly ChatMessage[],
    options: TextGenerateOptions = {},
  ): AsyncGenerator<string, string> {
    return streamText(this.base, this.tokenizer, input, {
      ...options,
      adapter: this.hooks(),
      request: {},
    });
  }

  /** Streams tokens (token ids per row in); see `CausalLM.generateStream`. */
  generateStream(
    prompts: number[][],
    options: GenerateOptions = {},
  ): AsyncGenerator<TokenEvent, GenerateResult> {
    return this.base.generateStream(prompts, { ...options, adapter: this.hooks(), request: {} });
  }

  /**
   * Teacher-forced logits `[B, T, V]` with the adapter. `promptLengths` (real tokens per row)
   * tells PARA which tokens are the prompt; default: all of them.
   */
  forward(
    ids: number[][] | tf.Tensor,
    options: { attentionMask?: number[][] | tf.Tensor; promptLengths?: readonly number[] } = {},
  ): tf.Tensor {
    return this.base.forward(ids, {
      ...(options.attentionMask === undefined ? {} : { attentionMask: options.attentionMask }),
      adapter: this.hooks(),
      request: options.promptLengths === undefined ? {} : { promptLengths: options.promptLengths },
    });
  }

  // --- training -------------------------------------------------------------------------

  /**
   * Fine-tunes the adapter on `records`: `{ prompt, completion }` or `{ messages }` objects (a
   * JSONL file parsed with `parseJsonl` is one source of them). The loss covers the completion
   * (and EOS) only; PARA's vectors see the prompt only. Returns the run's figures (and the last
   * evaluation when `eval` records are given); the adapter keeps the final weights.
   */
  async train(
    records: readonly unknown[],
    options: PeftTrainOptions = {},
  ): Promise<PeftTrainResult> {
    this.checkAlive();
    const tok = this.tokenizer as unknown as TokenizerLike;
    const maxLength = this.base.config.maxPositionEmbeddings;
    const tokenize = (rs: readonly unknown[], source: string): TokenizedDataset =>
      tokenizeRecords(tok, checkRecords(rs, source), source, {
        maxLength,
        strict: options.strict ?? false,
      });
    const train = tokenize(records, 'records');
    const evalSet = options.eval === undefined ? undefined : tokenize(options.eval, 'eval');
    const batchSize =
      options.batchSize ?? Math.min(FINETUNE_DEFAULTS.batchSize, train.examples.length);
    const { eval: _eval, strict: _strict, ...rest } = options;
    const result = await finetune({
      ...rest,
      model: this.base,
      tokenizer: tok,
      adapter: this.adapter,
      train,
      ...(evalSet === undefined ? {} : { eval: evalSet }),
      lr: options.lr ?? this.method.training.lr,
      batchSize,
      checkpointAtEnd: false,
    });
    if (result.reason === 'nan') {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `training stopped at update ${result.step + 1}: the loss is NaN or infinite`,
        {
          field: 'lr',
          expected: `a lower learning rate than ${options.lr ?? this.method.training.lr}`,
        },
      );
    }
    return { ...result, skipped: train.skipped.length + (evalSet?.skipped.length ?? 0) };
  }

  /** Loss and exact match on `records` with the adapter (greedy generation for exact match). */
  async evaluate(
    records: readonly unknown[],
    options: { limit?: number } = {},
  ): Promise<EvalResult> {
    const tok = this.tokenizer as unknown as TokenizerLike;
    const data = tokenizeRecords(tok, checkRecords(records, 'records'), 'records', {
      maxLength: this.base.config.maxPositionEmbeddings,
    });
    return evaluateDataset(this.base, tok, data, {
      adapter: this.hooks(),
      ...(options.limit === undefined ? {} : { limit: options.limit }),
    });
  }

  // --- files ----------------------------------------------------------------------------

  /** adapter_config.json text and adapter_model.safetensors bytes (a browser download, any store). */
  toFiles(options: SaveAdapterOptions = {}): Promise<{ config: string; weights: Uint8Array }> {
    this.checkAlive();
    return serializeAdapter(this.adapter, this.saveOptions(options));
  }

  /**
   * Writes the adapter to `dir` in PEFT's layout (adapter_config.json with
   * `base_model_name_or_path` filled in + adapter_model.safetensors), each file atomically.
   * Needs the Node build; in a browser use `toFiles()`.
   */
  async save(dir: string, options: SaveAdapterOptions = {}): Promise<void> {
    this.checkAlive();
    if (directoryIO === null) {
      throw new ParaError(
        'UNSUPPORTED',
        'saving to a directory needs Node (the Node build of @para/train); in a browser use toFiles()',
        { field: 'dir', actual: dir },
      );
    }
    await directoryIO.save(this.adapter, dir, this.saveOptions(options));
  }

  /**
   * Folds the adapter into the backbone's weights (PEFT's `merge_and_unload`) and returns the
   * backbone, which then computes the adapted model with no adapter cost; this `PeftModel` is
   * done (disposed). LoRA and IA3 merge; PARA cannot — its vectors depend on the prompt.
   */
  merge(): CausalLM {
    this.checkAlive();
    const m = this.method;
    if (m.merge === undefined)
      throw new ParaError(
        'UNSUPPORTED',
        m.mergeError ?? `${m.peftType} adapters cannot be merged into the weights`,
        { field: 'peft_type', actual: m.peftType },
      );
    m.merge(this.adapter, this.base);
    this.disposed = true;
    this.adapter.dispose();
    return this.base;
  }

  /** Frees the adapter (not the backbone). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.adapter.dispose();
  }

  private hooks() {
    this.checkAlive();
    return this.adapter.attach(this.base);
  }

  private saveOptions(options: SaveAdapterOptions): SaveAdapterOptions {
    return options.baseModelName === undefined && this.base.nameOrPath !== null
      ? { ...options, baseModelName: this.base.nameOrPath }
      : options;
  }

  private checkAlive(): void {
    if (this.disposed)
      throw new ParaError('INVALID_ARGUMENT', 'this PeftModel was disposed (or merged)', {
        field: 'peft',
      });
  }
}

function accessFor(source: string | URL): CheckpointAccess {
  const url = asUrl(source);
  if (url !== null) return urlCheckpointAccess(url);
  if (directoryIO === null) {
    throw new ParaError(
      'INVALID_ARGUMENT',
      'an adapter path needs the Node build of @para/train; here give a URL',
      {
        field: 'source',
        expected: 'an http(s) URL of an adapter directory',
        actual: String(source),
      },
    );
  }
  return directoryIO.access(String(source));
}

/**
 * A new `PeftModel`: `model` with a fresh adapter of `config`'s method (`peft_type`: "PARA",
 * "LORA" or "IA3"; the other keys as in adapter_config.json, defaults filled in — see the
 * method's config). A fresh PARA, LoRA or IA3 adapter is the identity: the model computes
 * exactly what the backbone does until it is trained.
 */
export function getPeftModel(
  model: CausalLM,
  config: AnyConfigInit | Readonly<Record<string, unknown>>,
  options: GetPeftModelOptions = {},
): PeftModel {
  const raw = { ...(config as Record<string, unknown>) };
  if (typeof raw.peft_type === 'string' && raw.peft_type === raw.peft_type.toLowerCase())
    raw.peft_type = adapterMethod(raw.peft_type, { byName: true }).peftType;
  if (raw.base_model_name_or_path === undefined && model.nameOrPath !== null)
    raw.base_model_name_or_path = model.nameOrPath;
  return new PeftModel(model, createAdapter(model.config, raw, { seed: options.seed ?? 0 }));
}
