/**
 * The web demo's engine: everything the page can ask of the model, on the same packages the
 * Node CLI uses (no browser fork of model, adapter or training code). It runs inside the Web
 * Worker (worker.ts); it has no DOM and no Node API, so the unit tests run it in Node too.
 *
 *   load      backbone (config.json + model.safetensors) and tokenizer from static assets
 *   tenants   the bare backbone plus named adapters (bundled, trained here, or uploaded)
 *   generate  greedy streaming generation for one tenant — the same ids and stop tokens as
 *             `para generate --adapter DIR --prompt TEXT`
 *   side by side  one prompt through several tenants in ONE mixed batch (@para/adapters MixedBatch)
 *   train     a PARA adapter fine-tuned on JSONL ({"prompt", "completion"}) with @para/train
 *   export    adapter_config.json + adapter_model.safetensors (PEFT layout, loads in the CLI)
 *   logits    next-token logits after a prompt (the end-to-end test compares them with Node's)
 *   examples  test-split prompts of a tenant's task, run in one mixed batch (each row its own
 *             tenant and prompt) with the expected answer and exact match per row
 *   evaluate  exact match on N test examples (@para/train's evaluateDataset, as `para eval`)
 *   vectors   the PARA vectors a prompt generates (@para/adapters' paraPromptVectors)
 */

import {
  type AnyAdapter,
  adapterFromBytes,
  createAdapter,
  MixedBatch,
  PARA_METHOD,
  ParaAdapter,
  type ParaPromptVectors,
  paraPromptVectors,
  serializeAdapter,
} from '@para/adapters';
import { type ByteSource, type CheckpointAccess, ParaError, urlCheckpointAccess } from '@para/core';
import { type CausalLM, loadModelFrom } from '@para/model';
import { ParaTokenizer } from '@para/tokenizer';
import {
  BUNDLED_BACKBONE_NAME,
  evaluateDataset,
  finetune,
  outputText,
  parseJsonl,
  parseJsonlBytes,
  skippedMessage,
  stopTokenIds,
  type TokenizerLike,
  type TrainEvent,
  tokenizeRecords,
} from '@para/train';
import * as tf from '@tensorflow/tfjs-core';
import { type UploadKind, uploadTooLarge } from './limits';

/** The name every adapter made or accepted here records as its base model. */
export const BACKBONE_NAME = BUNDLED_BACKBONE_NAME;
/** The tenant that means "no adapter". */
export const BARE = 'bare';

/** LIMIT_EXCEEDED naming the file when an upload of `kind` is larger than its limit. */
export function checkUploadSize(kind: UploadKind, bytes: number, file: string): void {
  const problem = uploadTooLarge(kind, bytes);
  if (problem !== null) {
    throw new ParaError('LIMIT_EXCEEDED', 'the file is too large to upload here', {
      file,
      ...problem,
    });
  }
}

/** Where the engine reads its static files from (URLs in the browser, files in Node tests). */
export interface Assets {
  /** Human-readable location, for messages. */
  readonly location: string;
  /** A checkpoint directory (relative to the asset root), e.g. `backbone`. */
  dir(path: string): CheckpointAccess;
  /** A text file (relative to the asset root). */
  text(path: string): Promise<string>;
}

/** `static/manifest.json`, written by scripts/copy-assets.mjs. */
export interface Manifest {
  backbone: string;
  adapters: { name: string; dir: string; task: string }[];
  tasks: { name: string; train: string; test: string }[];
  /** Bytes of the checkpoint files the page loads (backbone + bundled adapters), for progress. */
  bytes?: number;
}

/** Loading progress: checkpoint bytes read so far, of `total` (null when the manifest has none). */
export type LoadProgress = (loaded: number, total: number | null) => void;

/** One row of an examples batch: a tenant, its prompt and (optionally) the expected answer. */
export interface ExampleRow {
  tenant: string;
  prompt: string;
  expected?: string;
}

export interface ExampleOutput extends ExampleRow {
  /** Greedy output, decoded (up to the stop token). */
  text: string;
  ids: number[];
  /** The output as exact match reads it: up to the first newline, trimmed. */
  answer: string;
  /** answer === expected (trimmed); null without an expected answer. */
  correct: boolean | null;
}

export interface EvaluateOutput {
  tenant: string;
  task: string;
  n: number;
  exactMatch: number;
  loss: number;
  correct: number;
  ms: number;
}

export interface TenantInfo {
  name: string;
  method: string;
  parameters: number;
  source: 'bundled' | 'trained' | 'uploaded';
  /** The bundled task it was made for (bundled tenants; tenants trained here on a bundled task). */
  task?: string;
}

export interface ModelInfo {
  parameters: number;
  layers: number;
  hiddenSize: number;
  vocabSize: number;
  context: number;
}

export interface GenerateOptions {
  prompt: string;
  tenant: string;
  maxNewTokens?: number;
  /** Called after each token with the text so far, the token count and the decode speed so far. */
  onText?: (text: string, tokens: number, tokensPerSec: number) => void;
  /** Stop at an EOS token (default true; benchmarks decode a fixed number of tokens). */
  stopAtEos?: boolean;
}

export interface GenerateOutput {
  text: string;
  ids: number[];
  /** Decode speed: the tokens after the first over the time after the first. */
  tokensPerSec: number;
  /** Prompt to first token (prefill and one sampling step). */
  firstTokenMs: number;
  ms: number;
}

export interface TrainOptions {
  /** Name of the new tenant. */
  name: string;
  /**
   * JSONL, one {"prompt", "completion"} per line: text, or an uploaded file's bytes (decoded as
   * strict UTF-8: invalid bytes are an INVALID_ENCODING error naming the line).
   */
  jsonl: string | Uint8Array;
  /** The file name, for messages (a bundled task's path or the uploaded file's name). */
  file: string;
  steps: number;
  lr?: number;
  r?: number;
  batchSize?: number;
  seed?: number;
  onEvent?: (e: TrainEvent) => void;
  signal?: AbortSignal;
  /** The bundled task the data is (recorded on the tenant, so its examples and evaluation use it). */
  task?: string;
}

export interface TrainOutput {
  tenant: TenantInfo | null;
  reason: string;
  steps: number;
  losses: number[];
  skipped: string | null;
}

const DEFAULT_MAX_NEW_TOKENS = 32;

interface Tenant {
  info: TenantInfo;
  adapter: AnyAdapter;
}

export class Engine {
  private readonly tenants = new Map<string, Tenant>();

  private constructor(
    readonly model: CausalLM,
    readonly tokenizer: ParaTokenizer,
    readonly assets: Assets,
    readonly manifest: Manifest,
  ) {}

  /**
   * Loads the backbone and tokenizer named by the manifest; the backend must be started.
   * `onProgress` hears every checkpoint read (backbone, then the bundled adapters).
   */
  static async load(plain: Assets, onProgress?: LoadProgress): Promise<Engine> {
    const manifest = parseManifest(
      await plain.text('manifest.json'),
      `${plain.location}manifest.json`,
    );
    const assets =
      onProgress === undefined ? plain : countingAssets(plain, onProgress, manifest.bytes ?? null);
    const dir = manifest.backbone;
    const tokenizer = ParaTokenizer.fromJSON(
      await assets.text(`${dir}/tokenizer.json`),
      await assets.text(`${dir}/tokenizer_config.json`),
      {
        tokenizerSource: `${assets.location}${dir}/tokenizer.json`,
        configSource: `${assets.location}${dir}/tokenizer_config.json`,
      },
    );
    const model = await loadModelFrom(assets.dir(dir));
    if (tokenizer.vocabSize > model.config.vocabSize) {
      model.dispose();
      throw new ParaError(
        'SHAPE_MISMATCH',
        'the tokenizer has more tokens than the model has embeddings',
        {
          file: `${assets.location}${dir}`,
          field: 'vocab_size',
          expected: `at most ${model.config.vocabSize}`,
          actual: String(tokenizer.vocabSize),
        },
      );
    }
    return new Engine(model, tokenizer, assets, manifest);
  }

  get info(): ModelInfo {
    const c = this.model.config;
    return {
      parameters: this.model.numParameters,
      layers: c.numLayers,
      hiddenSize: c.hiddenSize,
      vocabSize: c.vocabSize,
      context: c.maxPositionEmbeddings,
    };
  }

  /** Loads every adapter the manifest lists. */
  async loadBundledAdapters(): Promise<TenantInfo[]> {
    const out: TenantInfo[] = [];
    for (const a of this.manifest.adapters) {
      const config = await this.assets.text(`${a.dir}/adapter_config.json`);
      const src = await this.assets.dir(a.dir).open('adapter_model.safetensors');
      const bytes = await src.read(0, await src.size());
      await src.close?.();
      out.push(
        await this.addAdapter(
          a.name,
          config,
          bytes,
          'bundled',
          `${this.assets.location}${a.dir}`,
          a.task,
        ),
      );
    }
    return out;
  }

  /**
   * Adds a tenant from adapter_config.json's text and adapter_model.safetensors' bytes. An
   * adapter made for another backbone (its base_model_name_or_path, or tensor shapes that do
   * not fit this model) is a ParaError naming the file and field.
   */
  async addAdapter(
    name: string,
    configText: string,
    weights: Uint8Array | ArrayBuffer,
    source: TenantInfo['source'],
    location = name,
    task?: string,
  ): Promise<TenantInfo> {
    checkTenantName(name);
    if (source !== 'bundled') {
      this.checkNotBundled(name);
      checkUploadSize('adapterConfig', configText.length, `${location}/adapter_config.json`);
      checkUploadSize(
        'adapterWeights',
        weights.byteLength,
        `${location}/adapter_model.safetensors`,
      );
    }
    const adapter = await adapterFromBytes(configText, weights, this.model, {
      name: location,
      baseModelName: BACKBONE_NAME,
    });
    return this.register(name, adapter, source, task);
  }

  /** Trained and uploaded adapters may replace each other by name, never a bundled tenant. */
  private checkNotBundled(name: string): void {
    if (this.manifest.adapters.some((a) => a.name === name)) {
      throw new ParaError('INVALID_ARGUMENT', `"${name}" is taken by a bundled tenant`, {
        field: 'name',
        expected: 'a new tenant name',
      });
    }
  }

  listTenants(): TenantInfo[] {
    return [...this.tenants.values()].map((t) => t.info);
  }

  removeTenant(name: string): void {
    const t = this.tenants.get(name);
    if (t === undefined) return;
    t.adapter.dispose();
    this.tenants.delete(name);
  }

  private register(
    name: string,
    adapter: AnyAdapter,
    source: TenantInfo['source'],
    task?: string,
  ): TenantInfo {
    this.removeTenant(name);
    const info: TenantInfo = {
      name,
      method: adapter.config.peft_type,
      parameters: adapter.numParameters,
      source,
      ...(task === undefined ? {} : { task }),
    };
    this.tenants.set(name, { info, adapter });
    return info;
  }

  private adapterOf(tenant: string): AnyAdapter | null {
    if (tenant === BARE) return null;
    const t = this.tenants.get(tenant);
    if (t === undefined)
      throw new ParaError('INVALID_ARGUMENT', `no tenant "${tenant}"`, {
        field: 'tenant',
        expected: [BARE, ...this.tenants.keys()].join(' | '),
        actual: tenant,
      });
    return t.adapter;
  }

  /** Prompt ids as `para generate --prompt` makes them (special tokens added: `<s>` first). */
  encodePrompt(prompt: string): number[] {
    const ids = this.tokenizer.encode(prompt, { addSpecialTokens: true });
    if (ids.length === 0)
      throw new ParaError('INVALID_ARGUMENT', 'the prompt encodes to no tokens', {
        field: 'prompt',
        expected: 'non-empty text',
      });
    if (ids.length >= this.model.config.maxPositionEmbeddings) {
      throw new ParaError('INVALID_ARGUMENT', 'the prompt is longer than the model context', {
        field: 'prompt',
        expected: `fewer than ${this.model.config.maxPositionEmbeddings} tokens`,
        actual: `${ids.length} tokens`,
      });
    }
    return ids;
  }

  /** The model's EOS ids plus the tokenizer's, as `para generate` stops. */
  stopTokens(): number[] {
    const stop = [...this.model.config.eosTokenIds];
    const eos = this.tokenizer.eosTokenId;
    if (eos !== undefined && !stop.includes(eos)) stop.push(eos);
    return stop;
  }

  private maxNew(ids: number[], requested: number | undefined): number {
    const n = requested ?? DEFAULT_MAX_NEW_TOKENS;
    if (!Number.isInteger(n) || n < 1)
      throw new ParaError('INVALID_ARGUMENT', 'bad number of new tokens', {
        field: 'maxNewTokens',
        expected: 'a positive integer',
        actual: String(n),
      });
    return Math.min(n, this.model.config.maxPositionEmbeddings - ids.length);
  }

  /** Greedy streaming generation for one tenant. */
  async generate(o: GenerateOptions): Promise<GenerateOutput> {
    const ids = this.encodePrompt(o.prompt);
    const adapter = this.adapterOf(o.tenant);
    const out: number[] = [];
    const t0 = performance.now();
    let first = 0;
    await this.model.generate([ids], {
      maxNewTokens: this.maxNew(ids, o.maxNewTokens),
      stopTokens: o.stopAtEos === false ? [] : this.stopTokens(),
      ...(adapter === null ? {} : { adapter: adapter.attach(this.model), request: {} }),
      onToken: ({ token }) => {
        const now = performance.now();
        if (out.length === 0) first = now;
        out.push(token);
        o.onText?.(
          this.tokenizer.decode(out, { skipSpecialTokens: true }),
          out.length,
          decodeSpeed(out.length, t0, first, now),
        );
      },
    });
    const end = performance.now();
    const ms = end - t0;
    const tokensPerSec = decodeSpeed(out.length, t0, first, end);
    return {
      text: this.tokenizer.decode(out, { skipSpecialTokens: true }),
      ids: out,
      tokensPerSec,
      firstTokenMs: first - t0,
      ms,
    };
  }

  /**
   * One prompt through several tenants in ONE batch: each row carries its own tenant's
   * adapter (or none), one backbone pass per step for all rows.
   */
  async sideBySide(
    prompt: string,
    tenants: readonly string[],
    maxNewTokens?: number,
    stopAtEos = true,
  ): Promise<{
    outputs: { tenant: string; text: string; ids: number[] }[];
    ms: number;
    tokensPerSec: number;
  }> {
    if (tenants.length === 0)
      throw new ParaError('INVALID_ARGUMENT', 'pick at least one tenant', {
        field: 'tenants',
        expected: 'one or more tenant names',
      });
    const ids = this.encodePrompt(prompt);
    const mixed = new MixedBatch(
      this.model,
      tenants.map((t) => this.adapterOf(t)),
    );
    const t0 = performance.now();
    const g = await this.model.generate(
      tenants.map(() => ids),
      {
        adapter: mixed.modelAdapter(),
        request: {},
        maxNewTokens: this.maxNew(ids, maxNewTokens),
        stopTokens: stopAtEos ? this.stopTokens() : [],
      },
    );
    const ms = performance.now() - t0;
    const outputs = tenants.map((tenant, b) => {
      const row = g.tokens[b] ?? [];
      return { tenant, ids: row, text: this.tokenizer.decode(row, { skipSpecialTokens: true }) };
    });
    const generated = outputs.reduce((s, o) => s + o.ids.length, 0);
    return { outputs, ms, tokensPerSec: (generated * 1000) / ms };
  }

  /**
   * Generation speed on this backend: greedy decoding of `tokens` new tokens (no EOS stop) for
   * one sequence on the bare backbone ("cold": the first run, which compiles shaders and fills
   * kernel caches for every sequence length; then again, warm), with a PARA tenant (warm), and
   * one mixed batch of every tenant (after a warm-up of the same length).
   */
  async bench(
    tokens = 32,
    prompt = 'dog (noun):',
  ): Promise<{
    tokens: number;
    cold: GenerateOutput;
    bare: GenerateOutput;
    adapted: GenerateOutput | null;
    mixed: { rows: number; tokensPerSec: number; ms: number };
  }> {
    const tenant = this.listTenants().find((t) => t.method === 'PARA')?.name;
    const rows = [BARE, ...this.listTenants().map((t) => t.name)];
    const run = (t: string) =>
      this.generate({ prompt, tenant: t, maxNewTokens: tokens, stopAtEos: false });
    const cold = await run(BARE);
    const bare = await run(BARE);
    let adapted: GenerateOutput | null = null;
    if (tenant !== undefined) {
      await run(tenant);
      adapted = await run(tenant);
    }
    await this.sideBySide(prompt, rows, tokens, false);
    const m = await this.sideBySide(prompt, rows, tokens, false);
    return {
      tokens,
      cold,
      bare,
      adapted,
      mixed: { rows: rows.length, tokensPerSec: m.tokensPerSec, ms: m.ms },
    };
  }

  /** Next-token logits after the prompt, `[vocab]` (what `para logits --adapter DIR` prints last). */
  async logits(prompt: string, tenant: string): Promise<Float32Array> {
    const ids = this.encodePrompt(prompt);
    const adapter = this.adapterOf(tenant);
    const last = tf.tidy(() => {
      const all = this.model.forward(
        [ids],
        adapter === null
          ? {}
          : { adapter: adapter.attach(this.model), request: { promptLengths: [ids.length] } },
      ); // [1, T, V]
      return tf.reshape(tf.slice(all, [0, ids.length - 1, 0], [1, 1, -1]), [-1]); // [V]
    });
    try {
      return (await last.data()) as Float32Array;
    } finally {
      last.dispose();
    }
  }

  /** Fine-tunes a new PARA tenant on JSONL text. A cancelled run adds no tenant. */
  async train(o: TrainOptions): Promise<TrainOutput> {
    checkTenantName(o.name);
    this.checkNotBundled(o.name);
    if (!Number.isInteger(o.steps) || o.steps < 1)
      throw new ParaError('INVALID_ARGUMENT', 'bad number of steps', {
        field: 'steps',
        expected: 'a positive integer',
        actual: String(o.steps),
      });
    if (typeof o.jsonl !== 'string') checkUploadSize('jsonl', o.jsonl.byteLength, o.file);
    const records =
      typeof o.jsonl === 'string' ? parseJsonl(o.jsonl, o.file) : parseJsonlBytes(o.jsonl, o.file);
    const maxLength = this.model.config.maxPositionEmbeddings;
    const data = tokenizeRecords(this.tokenizer as TokenizerLike, records, o.file, { maxLength });
    const adapter = createAdapter(
      this.model.config,
      {
        peft_type: 'PARA',
        ...(o.r === undefined ? {} : { r: o.r }),
        base_model_name_or_path: BACKBONE_NAME,
      },
      { seed: o.seed ?? 0 },
    );
    const losses: number[] = [];
    try {
      const result = await finetune({
        model: this.model,
        tokenizer: this.tokenizer as TokenizerLike,
        adapter,
        train: data,
        steps: o.steps,
        lr: o.lr ?? PARA_METHOD.training.lr,
        batchSize: Math.min(o.batchSize ?? 8, data.examples.length),
        seed: o.seed ?? 0,
        checkpointAtEnd: false,
        ...(o.signal === undefined ? {} : { signal: o.signal }),
        onEvent: (e) => {
          if (e.type === 'step') losses.push(e.loss);
          o.onEvent?.(e);
        },
      });
      if (result.reason !== 'done') {
        adapter.dispose();
        return {
          tenant: null,
          reason: result.reason,
          steps: result.step,
          losses,
          skipped: skippedMessage(data, maxLength),
        };
      }
      return {
        tenant: this.register(o.name, adapter, 'trained', o.task),
        reason: result.reason,
        steps: result.step,
        losses,
        skipped: skippedMessage(data, maxLength),
      };
    } catch (e) {
      adapter.dispose();
      throw e;
    }
  }

  private taskOf(name: string) {
    const task = this.manifest.tasks.find((t) => t.name === name);
    if (task === undefined)
      throw new ParaError('INVALID_ARGUMENT', `no bundled task "${name}"`, {
        field: 'task',
        expected: this.manifest.tasks.map((t) => t.name).join(' | '),
        actual: name,
      });
    return task;
  }

  private readonly splits = new Map<string, { prompt: string; completion: string }[]>();

  /** The records of a bundled task's split (`{"prompt", "completion"}` lines), in file order. */
  async records(task: string, split: 'train' | 'test' = 'test') {
    const key = `${task}/${split}`;
    const cached = this.splits.get(key);
    if (cached !== undefined) return cached;
    const file = this.taskOf(task)[split];
    const records = parseJsonl(await this.assets.text(file), `${this.assets.location}${file}`).map(
      (r) => {
        const rec = r as { prompt?: unknown; completion?: unknown };
        return { prompt: String(rec.prompt ?? ''), completion: String(rec.completion ?? '') };
      },
    );
    this.splits.set(key, records);
    return records;
  }

  /**
   * Several tenants, each on its own prompt, in ONE mixed batch (rows left-padded to the longest
   * prompt). Greedy decoding stops at EOS or a newline token, and each row's answer is read as
   * exact match reads it (`para eval`): the text up to the first newline, trimmed.
   */
  async runExamples(
    rows: readonly ExampleRow[],
    maxNewTokens = 16,
  ): Promise<{ outputs: ExampleOutput[]; ms: number; tokensPerSec: number }> {
    if (rows.length === 0)
      throw new ParaError('INVALID_ARGUMENT', 'pick at least one tenant', {
        field: 'tenants',
        expected: 'one or more tenant names',
      });
    const prompts = rows.map((r) => this.encodePrompt(r.prompt));
    const longest = prompts.reduce((m, p) => Math.max(m, p.length), 0);
    const mixed = new MixedBatch(
      this.model,
      rows.map((r) => this.adapterOf(r.tenant)),
    );
    const t0 = performance.now();
    const g = await this.model.generate(prompts, {
      adapter: mixed.modelAdapter(),
      request: {},
      maxNewTokens: Math.min(maxNewTokens, this.model.config.maxPositionEmbeddings - longest),
      stopTokens: stopTokenIds(this.tokenizer as TokenizerLike),
    });
    const ms = performance.now() - t0;
    const outputs = rows.map((r, b): ExampleOutput => {
      const ids = g.tokens[b] ?? [];
      const answer = outputText(this.tokenizer as TokenizerLike, ids);
      return {
        ...r,
        ids,
        text: this.tokenizer.decode(ids, { skipSpecialTokens: true }),
        answer,
        correct: r.expected === undefined ? null : answer === r.expected.trim(),
      };
    });
    const generated = outputs.reduce((s, o) => s + o.ids.length, 0);
    return { outputs, ms, tokensPerSec: (generated * 1000) / ms };
  }

  /**
   * Exact match (and loss) of a tenant ("bare": the backbone alone) on the first `limit`
   * examples of a bundled task's test split: @para/train's evaluateDataset, the code
   * `para eval --data … --limit N` runs, with its defaults (batches of 32).
   */
  async evaluate(
    tenant: string,
    task: string,
    limit: number,
    onProgress?: (done: number, total: number) => void,
  ): Promise<EvaluateOutput> {
    if (!Number.isInteger(limit) || limit < 1)
      throw new ParaError('INVALID_ARGUMENT', 'bad number of examples', {
        field: 'limit',
        expected: 'a positive integer',
        actual: String(limit),
      });
    const adapter = this.adapterOf(tenant);
    const file = this.taskOf(task).test;
    const records = parseJsonl(await this.assets.text(file), `${this.assets.location}${file}`);
    const data = tokenizeRecords(this.tokenizer as TokenizerLike, records, file, {
      maxLength: this.model.config.maxPositionEmbeddings,
    });
    const t0 = performance.now();
    const r = await evaluateDataset(this.model, this.tokenizer as TokenizerLike, data, {
      adapter: adapter === null ? null : adapter.attach(this.model),
      limit,
      ...(onProgress === undefined ? {} : { onProgress }),
    });
    const exactMatch = r.exact_match ?? 0;
    return {
      tenant,
      task,
      n: r.n,
      exactMatch,
      loss: r.loss,
      correct: Math.round(exactMatch * r.n),
      ms: performance.now() - t0,
    };
  }

  /** The PARA vectors (l_q, l_v, l_u per layer) a tenant generates for a prompt. */
  async vectors(tenant: string, prompt: string): Promise<ParaPromptVectors> {
    const adapter = this.adapterOf(tenant);
    if (!(adapter instanceof ParaAdapter))
      throw new ParaError(
        'INVALID_ARGUMENT',
        'only a PARA tenant generates vectors from the prompt',
        {
          field: 'tenant',
          expected: 'a PARA tenant',
          actual: adapter === null ? BARE : `${tenant} (${adapter.config.peft_type})`,
        },
      );
    return paraPromptVectors(this.model, adapter, this.encodePrompt(prompt));
  }

  /**
   * A short speed check for choosing a backend: a warm-up generation (compiles kernels), then
   * `tokens` greedy tokens on the bare backbone without stopping at EOS; decode tokens/s.
   */
  async quickBench(tokens = 8, prompt = 'dog (noun):'): Promise<number> {
    await this.generate({ prompt, tenant: BARE, maxNewTokens: tokens, stopAtEos: false });
    const r = await this.generate({ prompt, tenant: BARE, maxNewTokens: tokens, stopAtEos: false });
    return r.tokensPerSec;
  }

  /** adapter_config.json text + adapter_model.safetensors bytes of a tenant. */
  async exportAdapter(tenant: string): Promise<{ config: string; weights: Uint8Array }> {
    const adapter = this.adapterOf(tenant);
    if (adapter === null)
      throw new ParaError('INVALID_ARGUMENT', 'the bare backbone has no adapter to download', {
        field: 'tenant',
        expected: 'an adapter tenant',
      });
    return serializeAdapter(adapter, { baseModelName: BACKBONE_NAME });
  }

  dispose(): void {
    for (const name of [...this.tenants.keys()]) this.removeTenant(name);
    this.model.dispose();
  }
}

/** Tokens after the first over the time after the first (prefill excluded); one token: overall. */
function decodeSpeed(tokens: number, start: number, first: number, now: number): number {
  if (tokens > 1) return ((tokens - 1) * 1000) / (now - first);
  return tokens === 1 ? 1000 / (now - start) : 0;
}

function checkTenantName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name) || name === BARE) {
    throw new ParaError('INVALID_ARGUMENT', 'bad tenant name', {
      field: 'name',
      expected: `1–64 letters, digits, ".", "_" or "-", not "${BARE}"`,
      actual: JSON.stringify(name),
    });
  }
}

export function parseManifest(text: string, file: string): Manifest {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (cause) {
    throw new ParaError('INVALID_JSON', 'the asset manifest is not JSON', { file, cause });
  }
  const m = v as Partial<Manifest> | null;
  if (
    m === null ||
    typeof m !== 'object' ||
    typeof m.backbone !== 'string' ||
    !Array.isArray(m.adapters) ||
    !Array.isArray(m.tasks)
  ) {
    throw new ParaError('INVALID_CONFIG', 'bad asset manifest', {
      file,
      expected: '{ backbone, adapters: [...], tasks: [...] } (run scripts/copy-assets.mjs)',
    });
  }
  return m as Manifest;
}

/** Assets served over HTTP under `baseUrl` (checkpoints read with range requests). */
export function urlAssets(baseUrl: string): Assets {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  return {
    location: base,
    dir: (p) => urlCheckpointAccess(new URL(`${p}/`, base).href),
    async text(p) {
      const url = new URL(p, base).href;
      let res: Response;
      try {
        res = await fetch(url);
      } catch (cause) {
        throw new ParaError('IO_ERROR', 'request failed', { file: url, cause });
      }
      if (!res.ok)
        throw new ParaError(
          res.status === 404 ? 'FILE_NOT_FOUND' : 'IO_ERROR',
          `HTTP ${res.status}`,
          { file: url, expected: 'a 2xx response' },
        );
      return res.text();
    },
  };
}

/** `assets` whose checkpoint reads are counted: `onProgress(bytes so far, total)` after each read. */
export function countingAssets(
  assets: Assets,
  onProgress: LoadProgress,
  total: number | null,
): Assets {
  let loaded = 0;
  const count = (src: ByteSource): ByteSource => ({
    name: src.name,
    size: () => src.size(),
    async read(offset, length) {
      const bytes = await src.read(offset, length);
      loaded += bytes.byteLength;
      onProgress(loaded, total);
      return bytes;
    },
    ...(src.close === undefined ? {} : { close: () => (src.close as () => Promise<void>)() }),
  });
  return {
    location: assets.location,
    text: (p) => assets.text(p),
    dir(p) {
      const d = assets.dir(p);
      return {
        location: d.location,
        exists: (f) => d.exists(f),
        open: async (f) => count(await d.open(f)),
      };
    },
  };
}
