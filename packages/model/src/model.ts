/**
 * The LLaMA-family causal language model: embeddings → decoder layers → final RMSNorm → lm_head.
 *
 * Three entry points share `layer.ts`:
 *   forward(ids, {attentionMask})    teacher-forced logits [B, T, V] of a padded batch (training)
 *   prefill(prompts, {capacity})     runs the prompts, fills a KV cache → {logits [B, V], state}
 *   decodeStep(lastIds, state)       ONE new token per row against the cache → logits [B, V]
 *
 * The cache (`KVCache` of @para/ops) is allocated once at prefill for `capacity` slots per row
 * and written in place every step; each row has its own write cursor, so rows of a
 * `DecodeState` can leave (`releaseRow`) and newcomers join (`insertRows`: the rows of another
 * state, e.g. the newcomer's own prefill, copied into free rows) while the batch keeps decoding.
 *
 * Padding: rows are left-padded for generation; a mask `[B, T]` marks real tokens (1) and
 * padding (0), positions are `cumsum(mask) - 1` as in HF `generate`, so a padded row computes
 * exactly what the row alone computes.
 */

import { disposeAll, ParaError } from '@para/core';
import {
  attentionMask as buildAttentionMask,
  KVCache,
  linear,
  padBatch,
  positionIdsFromMask,
  type RopeScalingConfig,
  ropeAttentionScaling,
  ropeCosSin,
  ropeInvFreq,
} from '@para/ops';
import type { ChatMessage, ParaTokenizer } from '@para/tokenizer';
import * as tf from '@tensorflow/tfjs-core';
import { type AdapterPlan, AdapterState, type ForwardPhase, type ModelAdapter } from './adapter';
import { countParameters, type ModelConfig, rotaryDim } from './config';
import {
  type GenerateOptions,
  type GenerateResult,
  generate,
  generateStream,
  type TokenEvent,
} from './generate';
import {
  decoderLayerPending,
  isPending,
  type LayerCall,
  type LayerHidden,
  normHidden,
} from './layer';
import { generateText, streamText, type TextGenerateOptions, type TextInput } from './text';
import { initWeights } from './weights/init';
import { allWeightTensors, type ModelWeights } from './weights/weights';

/** Token ids `[B, T]`: host arrays, or an int32 tensor (not range-checked: check at the data source). */
export type TokenIds = number[][] | tf.Tensor;

/** 1 for a real token, 0 for padding, `[B, T]` (HF `attention_mask`). */
export type TokenMask = number[][] | tf.Tensor;

export interface AdapterOptions<R = unknown> {
  /** Hooks at the adapter sites (see adapter.ts); none → no hook is called at all. */
  adapter?: ModelAdapter<R> | null;
  /** Per-request value handed to every hook as `ctx.request` (prompt lengths, tenant ids...). */
  request?: R;
}

export interface ForwardOptions<R = unknown> extends AdapterOptions<R> {
  /** Default: every token real. */
  attentionMask?: TokenMask;
}

export interface PrefillOptions<R = unknown> extends AdapterOptions<R> {
  /**
   * For a rectangular, left-padded `ids`. Without it, rows of different lengths are left-padded
   * here (with `padTokenId`) and rows of equal length are all real.
   */
  attentionMask?: number[][];
  /** Return the logits of every prompt position `[B, T, V]` instead of the last `[B, V]`. */
  allLogits?: boolean;
  /** Pad id when padding ragged prompts (default: config pad, else 0). */
  padTokenId?: number;
  /**
   * KV slots per row, prompt padding included: the prompt plus every token decoded later must
   * fit (default: the padded prompt length + {@link DEFAULT_DECODE_SLOTS}, at most
   * max_position_embeddings; `generate` passes longest prompt + maxNewTokens).
   */
  capacity?: number;
}

/**
 * Decode slots a prefill reserves per row when no `capacity` is given. Kept small on purpose:
 * each row's KV storage is allocated for the whole capacity, and most backends attend over every
 * slot each step (wasm with @para/blas skips masked slots: there an unused slot costs its memory
 * and a mask read), so callers that know their length should pass it (`generate` does).
 */
export const DEFAULT_DECODE_SLOTS = 64;

export interface DecodeStepOptions {
  /**
   * Rows that take a real token this step (default: every row not released). An inactive row
   * writes nothing and keeps its place (a finished or paused request); its logits are garbage
   * to ignore. Marking a released row active throws.
   */
  active?: boolean[];
}

/** Which rows `DecodeState.insertRows` copies, and where to. */
export interface InsertRowsOptions {
  /** Rows of the source state (default: all its rows in use). */
  rows?: readonly number[];
  /** Free rows of this state to fill, one per source row (default: the lowest free rows). */
  into?: readonly number[];
}

/**
 * Everything a batch of requests carries between decode steps: the KV cache (a fixed number of
 * slot rows, each with its own cursor) and the adapter's per-layer, batch-first state. Rows
 * leave with `releaseRow` and join with `insertRows`. Free it with `dispose()`.
 */
export class DecodeState<R = unknown> {
  constructor(
    readonly cache: KVCache,
    readonly adapter: ModelAdapter<R> | null,
    readonly request: R,
    readonly adapterState: AdapterState | null,
  ) {}

  /** Slot rows (requests at once), free ones included. */
  get batchSize(): number {
    return this.cache.batchSize;
  }

  /** KV slots per row. */
  get capacity(): number {
    return this.cache.capacity;
  }

  /** Slots used by the longest row (prompt slots, padding included, plus decoded tokens). */
  get length(): number {
    return this.cache.length;
  }

  /** Real tokens per row (0 for a free row). */
  rowLengths(): number[] {
    return this.cache.rowLengths();
  }

  /** Slots used per row. */
  rowSlots(): number[] {
    return this.cache.rowSlots();
  }

  /** Rows released and not filled again. */
  freeRows(): number[] {
    return this.cache.freeRows();
  }

  isFree(row: number): boolean {
    return this.cache.isFree(row);
  }

  /**
   * The request in `row` leaves: its KV slots are freed for a newcomer (`insertRows`). Until
   * then the row is skipped by `decodeStep` (its logits are finite garbage to ignore).
   */
  releaseRow(row: number): void {
    this.cache.releaseRow(row);
  }

  /**
   * Newcomers join: copies rows of `source` (another state of the same model, typically a
   * newcomer's own `prefill`, a batch of one) into free rows of this state — their KV slots,
   * cursors and per-row adapter state — so they continue decoding here, with this state's
   * adapter hooks and request. Returns the rows filled. `source` is unchanged; dispose it
   * afterwards. Throws a `ParaError` when there are not enough free rows, a row is longer than
   * this state's capacity, or the states do not match (model shapes, adapter state).
   */
  insertRows(source: DecodeState<unknown>, options: InsertRowsOptions = {}): number[] {
    if (!(source instanceof DecodeState) || source === (this as DecodeState<unknown>)) {
      throw new ParaError('INVALID_ARGUMENT', 'insertRows needs another DecodeState', {
        field: 'source',
        expected: 'a DecodeState other than this one',
      });
    }
    const fromRows = [
      ...(options.rows ?? range(source.batchSize).filter((b) => !source.isFree(b))),
    ];
    const free = this.freeRows();
    if (options.into === undefined && free.length < fromRows.length) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `no free row: ${fromRows.length} rows to insert, ${free.length} free`,
        {
          field: 'rows',
          expected: `${fromRows.length} free rows (release rows first)`,
          actual: `${free.length} free`,
        },
      );
    }
    const toRows = [...(options.into ?? free.slice(0, fromRows.length))];
    const theirs = source.adapterState;
    const mine = this.adapterState;
    if (mine === null && theirs !== null && theirs.size > 0) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        'the rows carry adapter state but this batch runs without an adapter',
        {
          field: 'source.adapterState',
          expected: 'a batch prefilled with an adapter (pass one, e.g. a mixed batch, to prefill)',
          actual: `${theirs.size} adapter tensors`,
        },
      );
    }
    this.cache.copyRowsFrom(source.cache, fromRows, toRows); // validates before it writes
    if (mine !== null) {
      try {
        // Site by site; a site only one side has gets the identity in the other's rows.
        mine.insertRows(
          theirs ?? new AdapterState(mine.layers.length, false),
          fromRows,
          toRows,
          this.batchSize,
        );
      } catch (e) {
        for (const to of toRows) this.cache.releaseRow(to);
        throw e;
      }
    }
    return toRows;
  }

  dispose(): void {
    this.cache.dispose();
    this.adapterState?.dispose();
  }
}

export class CausalLM {
  readonly config: ModelConfig;
  readonly weights: ModelWeights;
  /** RoPE inverse frequencies `[hd/2]` (scaling applied). */
  readonly invFreq: Float32Array;
  /** Gemma 3: the sliding layers' RoPE inverse frequencies (`rope_local_base_freq`), else null. */
  readonly localInvFreq: Float32Array | null;
  /** The cos/sin scale of the RoPE tables (yarn's attention scaling; 1 otherwise), global and local. */
  readonly ropeScale: number;
  readonly localRopeScale: number;
  /** The sliding-window width when some layer slides (else null: every layer is full). */
  readonly slidingWindow: number | null;
  /** The tokenizer text generation uses (`loadPretrained` sets it; null: token ids only). */
  tokenizer: ParaTokenizer | null = null;
  /** Where the model was loaded from, as given (`loadPretrained` sets it; adapters record it as `base_model_name_or_path`). */
  nameOrPath: string | null = null;
  private disposed = false;

  constructor(config: ModelConfig, weights: ModelWeights) {
    this.config = config;
    this.weights = weights;
    this.invFreq = ropeInvFreq({
      headDim: rotaryDim(config),
      theta: config.ropeTheta,
      scaling: config.ropeScaling as RopeScalingConfig | null,
    });
    this.ropeScale = ropeAttentionScaling(
      config.ropeScaling as RopeScalingConfig | null,
      config.maxPositionEmbeddings,
    );
    this.localRopeScale = ropeAttentionScaling(
      (config.localRope?.scaling ?? null) as RopeScalingConfig | null,
    );
    this.localInvFreq =
      config.localRope === null
        ? null
        : ropeInvFreq({
            headDim: rotaryDim(config),
            theta: config.localRope.theta,
            scaling: config.localRope.scaling as RopeScalingConfig | null,
          });
    this.slidingWindow = config.layerTypes.includes('sliding_attention')
      ? config.slidingWindow
      : null;
  }

  /** A new model with seeded HF-style random weights. */
  static random(config: ModelConfig, seed: number | string = 0): CausalLM {
    return new CausalLM(config, initWeights(config, seed));
  }

  /** Parameters (a tied head counted once). */
  get numParameters(): number {
    return countParameters(this.config);
  }

  // ---------------------------------------------------------------------------------------
  // forward: teacher forcing over a whole (padded) batch
  // ---------------------------------------------------------------------------------------

  /**
   * Logits `[B, T, V]` for every position of `ids` `[B, T]`. Differentiable (adapter
   * parameters and weights get gradients under `tf.grad`/`tf.variableGrads`). Logits at padding
   * positions are meaningless.
   */
  forward<R = unknown>(ids: TokenIds, options: ForwardOptions<R> = {}): tf.Tensor {
    this.checkAlive();
    const [B, T] = this.checkIds(ids, 'ids');
    const maskIn = options.attentionMask;
    if (maskIn !== undefined) this.checkMask(maskIn, B, T, 'attentionMask');
    this.checkLength(Array.isArray(maskIn) ? Math.max(...maskIn.map(rowSum)) : T, T, 'ids');
    return tf.tidy(() => {
      const idsT = Array.isArray(ids)
        ? tf.tensor2d(ids, [B, T], 'int32')
        : ids.dtype === 'int32'
          ? ids
          : tf.cast(ids, 'int32'); // [B, T]
      let cos: tf.Tensor;
      let sin: tf.Tensor;
      let mask: tf.Tensor;
      let slidingMask: tf.Tensor | undefined;
      let positions: number[][] | tf.Tensor;
      let tokenMask: tf.Tensor | null = null;
      if (maskIn === undefined || Array.isArray(maskIn)) {
        // Host path: exact float64 RoPE tables.
        const valid = maskIn ?? Array.from({ length: B }, () => new Array<number>(T).fill(1));
        positions = positionIdsFromMask(valid); // [B][T]
        ({ cos, sin } = this.ropeTables(positions)); // [B, 1, T, hd]
        mask = buildAttentionMask({ keyValid: valid }); // [B, 1, T, T]
        if (this.slidingWindow !== null)
          slidingMask = buildAttentionMask({ keyValid: valid, slidingWindow: this.slidingWindow });
        if (options.adapter) tokenMask = tf.tensor2d(valid, [B, T], 'float32'); // [B, T]
      } else {
        const m = tf.cast(maskIn, 'int32'); // [B, T]
        positions = tf.add(tf.mul(tf.sub(tf.cumsum(m, 1), 1), m), tf.sub(1, m)); // [B, T] cumsum−1, pads 1
        ({ cos, sin } = this.ropeTables(positions, false, false, T)); // [B, 1, T, hd]
        mask = buildAttentionMask({ keyValid: m }); // [B, 1, T, T]
        if (this.slidingWindow !== null)
          slidingMask = buildAttentionMask({ keyValid: m, slidingWindow: this.slidingWindow });
        if (options.adapter) tokenMask = tf.cast(maskIn, 'float32'); // [B, T]
      }
      const plan = this.plan(options, 'forward', tokenMask, null);
      const x = this.trunk(idsT, {
        config: this.config,
        cos,
        sin,
        mask,
        slidingMask,
        localRope: this.localRope(positions, false, T),
        cache: null,
        plan,
      }); // [B, T, d]
      return this.head(x, plan); // [B, T, V]
    });
  }

  // ---------------------------------------------------------------------------------------
  // prefill + decode: generation with a KV cache
  // ---------------------------------------------------------------------------------------

  /**
   * A state of `batchSize` free rows with `capacity` KV slots each and nothing computed: the
   * running batch of a server, which newcomers join with `insertRows` (their own prefill's rows)
   * and leave with `releaseRow`. `adapter` / `request` are the hooks and value its decode steps
   * run with (rows carry their own adapter state in).
   */
  emptyState<R = unknown>(
    batchSize: number,
    options: { capacity: number; adapter?: ModelAdapter<R> | null; request?: R },
  ): DecodeState<R> {
    this.checkAlive();
    const c = this.config;
    const cache = new KVCache({
      numLayers: c.numLayers,
      batchSize,
      capacity: options.capacity,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
      maxPositions: Number.isFinite(this.maxPositions) ? this.maxPositions : undefined,
    });
    for (let b = 0; b < batchSize; b++) cache.releaseRow(b);
    const adapter = options.adapter ?? null;
    const adapterState = adapter === null ? null : new AdapterState(c.numLayers, true);
    return new DecodeState<R>(cache, adapter, options.request as R, adapterState);
  }

  /**
   * Runs the prompts (ragged `number[][]`, left-padded here; or rectangular with a left-padded
   * `attentionMask`) and returns the logits of each row's last token `[B, V]` (or of every
   * position with `allLogits`) and the state to continue with `decodeStep`. The caller disposes
   * both.
   */
  prefill<R = unknown>(
    prompts: number[][],
    options: PrefillOptions<R> = {},
  ): { logits: tf.Tensor; state: DecodeState<R> } {
    this.checkAlive();
    const { ids, mask } = this.padPrompts(prompts, options);
    const B = ids.length;
    const T = (ids[0] as number[]).length;
    this.checkLength(Math.max(...mask.map(rowSum)), T, 'prompts');
    const c = this.config;
    const capacity =
      options.capacity ?? Math.max(T, Math.min(T + DEFAULT_DECODE_SLOTS, c.maxPositionEmbeddings));
    if (!Number.isInteger(capacity) || capacity < T) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `a capacity of ${capacity} slots cannot hold the ${T}-slot prompts`,
        {
          field: 'capacity',
          expected: `an integer ≥ ${T} (the padded prompt length)`,
          actual: String(capacity),
        },
      );
    }
    const cache = new KVCache({
      numLayers: c.numLayers,
      batchSize: B,
      capacity,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
      maxPositions: Number.isFinite(this.maxPositions) ? this.maxPositions : undefined,
    });
    const adapter = options.adapter ?? null;
    const adapterState = adapter === null ? null : new AdapterState(this.config.numLayers, true);
    const state = new DecodeState<R>(cache, adapter, options.request as R, adapterState);
    try {
      const step = cache.beginStep(mask);
      const logits = tf.tidy(() => {
        const idsT = tf.tensor2d(ids, [B, T], 'int32'); // [B, T]
        const { cos, sin } = this.ropeTables(step.positions); // [B, 1, T, hd]
        const attnMask = cache.attentionMask(step); // [B, 1, T, T]
        const slidingMask = this.slidingMaskOf(cache, step); // [B, 1, T, T] or undefined
        const tokenMask = adapter === null ? null : tf.tensor2d(mask, [B, T], 'float32'); // [B, T]
        const plan = this.plan(options, 'prefill', tokenMask, adapterState);
        let x: LayerHidden = this.trunk(idsT, {
          config: this.config,
          cos,
          sin,
          mask: attnMask,
          slidingMask,
          localRope: this.localRope(step.positions),
          cache,
          plan,
        }); // [B, T, d]
        if (!options.allLogits) {
          const last = (t: tf.Tensor) => tf.slice(t, [0, T - 1, 0], [B, 1, this.config.hiddenSize]); // [B, 1, d]
          x = isPending(x) ? { residual: last(x.residual), delta: last(x.delta) } : last(x);
        }
        const logits = this.head(x, plan); // [B, T or 1, V]
        return options.allLogits ? logits : tf.reshape(logits, [B, this.config.vocabSize]); // [B, V]
      });
      return { logits, state };
    } catch (e) {
      state.dispose();
      throw e;
    }
  }

  /**
   * THE DECODE STEP: feeds one token per row (`lastIds`, length B; any valid id for a free or
   * inactive row) at each active row's next slot, attends over the cache's whole capacity (the
   * validity mask hides unused slots), and returns the next-token logits `[B, V]` (the caller
   * disposes them; rows that did not take a token hold finite garbage). Shapes are the same
   * every step.
   */
  decodeStep<R = unknown>(
    lastIds: number[],
    state: DecodeState<R>,
    options: DecodeStepOptions = {},
  ): tf.Tensor {
    this.checkAlive();
    const B = state.batchSize;
    if (!Array.isArray(lastIds) || lastIds.length !== B) {
      throw new ParaError('INVALID_ARGUMENT', 'decodeStep needs one token id per batch row', {
        field: 'lastIds',
        expected: `${B} ids`,
        actual: Array.isArray(lastIds) ? `${lastIds.length} ids` : typeof lastIds,
      });
    }
    this.checkIds([lastIds], 'lastIds');
    if (
      options.active !== undefined &&
      (!Array.isArray(options.active) || options.active.length !== B)
    ) {
      throw new ParaError('INVALID_ARGUMENT', 'active needs one flag per batch row', {
        field: 'active',
        expected: `${B} booleans`,
      });
    }
    const free = new Set(state.freeRows());
    options.active?.forEach((a, b) => {
      if (a && free.has(b)) {
        throw new ParaError('INVALID_ARGUMENT', `row ${b} was released and holds no request`, {
          field: `active[${b}]`,
          expected: 'false for a released row (insertRows fills it again)',
          actual: 'true',
        });
      }
    });
    const active = options.active?.map(Boolean) ?? range(B).map((b) => !free.has(b));
    // Positions and capacity are checked by the cache; slots here.
    this.checkLength(0, state.length + 1, 'decode step');
    const step = state.cache.beginStep(active.map((a) => [a ? 1 : 0])); // positions [B][1], keyValid [B][C]
    return tf.tidy(() => {
      const idsT = tf.tensor2d(lastIds, [B, 1], 'int32'); // [B, 1]
      // A decode step: RoPE in its half-swap form, fewer kernel launches (see ropeCosSin).
      const { cos, sin, sinSigned } = this.ropeTables(step.positions, true); // [B, 1, 1, hd]
      const attnMask = state.cache.attentionMask(step); // [B, 1, 1, C]
      const slidingMask = this.slidingMaskOf(state.cache, step); // [B, 1, 1, C] or undefined
      let plan: AdapterPlan<unknown> | null = null;
      if (state.adapter !== null) {
        const tokenMask = tf.tensor2d(
          active.map((a) => (a ? 1 : 0)),
          [B, 1],
          'float32',
        ); // [B, 1]
        plan = this.plan(
          { adapter: state.adapter, request: state.request },
          'decode',
          tokenMask,
          state.adapterState,
        );
      }
      const x = this.trunk(idsT, {
        config: this.config,
        cos,
        sin,
        sinSigned,
        mask: attnMask,
        slidingMask,
        localRope: this.localRope(step.positions, true),
        cache: state.cache,
        plan,
      }); // [B, 1, d]
      return tf.reshape(this.head(x, plan), [B, this.config.vocabSize]); // [B, V]
    });
  }

  /**
   * Generates text or tokens. Text: a prompt → its continuation, a list of prompts → one
   * continuation each (one batch), chat messages → the assistant's reply (the tokenizer's chat
   * template); needs `model.tokenizer` (set by `loadPretrained`). Tokens (for experts): prompts
   * as token ids per row → `GenerateResult`. See text.ts and generate.ts.
   */
  generate<R = unknown>(prompts: number[][], options?: GenerateOptions<R>): Promise<GenerateResult>;
  generate(input: string | readonly ChatMessage[], options?: TextGenerateOptions): Promise<string>;
  generate(input: readonly string[], options?: TextGenerateOptions): Promise<string[]>;
  generate(
    input: TextInput | number[][],
    options: TextGenerateOptions | GenerateOptions = {},
  ): Promise<string | string[] | GenerateResult> {
    if (Array.isArray(input) && Array.isArray(input[0]))
      return generate(this, input as number[][], options as GenerateOptions);
    return generateText(
      this,
      this.requireTokenizer(),
      input as TextInput,
      options as TextGenerateOptions,
    );
  }

  /** Streams the text of one prompt or chat as it is generated (async iterator of pieces). */
  stream(
    input: string | readonly ChatMessage[],
    options: TextGenerateOptions = {},
  ): AsyncGenerator<string, string> {
    return streamText(this, this.requireTokenizer(), input, options);
  }

  /** Streams tokens as they are produced (async iterator); see generate.ts. */
  generateStream<R = unknown>(
    prompts: number[][],
    options: GenerateOptions<R> = {},
  ): AsyncGenerator<TokenEvent, GenerateResult> {
    return generateStream(this, prompts, options);
  }

  /** `model.tokenizer`, or a typed error saying how to get one (text in and out needs it). */
  requireTokenizer(): ParaTokenizer {
    if (this.tokenizer === null) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        'text generation needs a tokenizer: load the model with loadPretrained, or set model.tokenizer',
        {
          field: 'model.tokenizer',
          expected: 'a ParaTokenizer (or pass token ids)',
        },
      );
    }
    return this.tokenizer;
  }

  /** Frees the weights. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    disposeAll(allWeightTensors(this.weights));
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  // ---------------------------------------------------------------------------------------
  // internals
  // ---------------------------------------------------------------------------------------

  /**
   * Embedding → layers, `ids [B, T]` → hidden `[B, T, d]` (before the final norm), the last
   * layer's residual add left pending for the final norm (each layer's closing add runs in the
   * next layer's input norm: `decoderLayerPending`).
   */
  private trunk(ids: tf.Tensor, call: LayerCall): LayerHidden {
    const plan = call.plan;
    plan?.adapter.modelInput?.({
      phase: plan.phase,
      request: plan.request,
      tokenMask: plan.tokenMask,
      state: plan.state,
    });
    let x = tf.gather(this.weights.embedTokens, ids); // [B, T, d]
    // Per-row embedding tables / LoRA deltas (adapter.ts EdgeAdapterState), before Gemma's √d.
    if (plan != null && !plan.state.embedding.empty)
      x = plan.state.embedding.applyEmbedding(x, ids); // [B, T, d]
    // Gemma: × √d, the scale rounded to the compute dtype (float32) as HF's embed_scale buffer.
    if (this.config.embedScale) x = tf.mul(x, tf.scalar(Math.sqrt(this.config.hiddenSize))); // [B, T, d]
    let hidden: LayerHidden = x;
    this.weights.layers.forEach((w, i) => {
      hidden = decoderLayerPending(hidden, w, i, call); // [B, T, d] as residual + delta
    });
    return hidden;
  }

  /**
   * Final norm (with the last layer's pending residual add, one op) and lm_head: `[B, T, d]` →
   * logits `[B, T, V]`.
   */
  private head(x: LayerHidden, plan: AdapterPlan<unknown> | null = null): tf.Tensor {
    const c = this.config;
    const [, h] = normHidden(x, this.weights.norm, c.rmsNormEps, { unitOffset: c.normUnitOffset }); // [B, T, d]
    const edge = plan?.state.head;
    const logits =
      edge === undefined || edge.empty
        ? linear(h, this.weights.lmHead)
        : edge.applyHead(h, this.weights.lmHead, (w) => linear(h, w)); // [B, T, V]
    const cap = c.finalLogitSoftcapping;
    return cap === null ? logits : tf.mul(tf.tanh(tf.div(logits, cap)), cap); // [B, T, V]
  }

  /** The sliding layers' mask of a cached step, when some layer slides. */
  private slidingMaskOf(
    cache: KVCache,
    step: ReturnType<KVCache['beginStep']>,
  ): tf.Tensor | undefined {
    return this.slidingWindow === null
      ? undefined
      : cache.attentionMask(step, { slidingWindow: this.slidingWindow });
  }

  /** Gemma 3's local RoPE tables `[B, 1, T, hd]` for the sliding layers, or undefined. */
  private localRope(
    positions: number[][] | tf.Tensor,
    signedSin = false,
    tensorLength?: number,
  ): LayerCall['localRope'] | undefined {
    if (this.localInvFreq === null) return undefined;
    return this.ropeTables(positions, signedSin, true, tensorLength);
  }

  /**
   * RoPE tables `[B, 1, T, hd]` for positions (host arrays, or a tensor whose largest position
   * is below `tensorLength`). With `dynamic` scaling the frequencies depend on the call's
   * length, largest position + 1, as transformers' `dynamic_rope_update` recomputes them each
   * forward (so, as there, cached keys keep the frequencies they were computed with).
   */
  private ropeTables(
    positions: number[][] | tf.Tensor,
    signedSin = false,
    local = false,
    tensorLength?: number,
  ): { cos: tf.Tensor; sin: tf.Tensor; sinSigned?: tf.Tensor } {
    const scaling = local ? (this.config.localRope?.scaling ?? null) : this.config.ropeScaling;
    let inv = (local ? this.localInvFreq : this.invFreq) as Float32Array;
    if (scaling?.rope_type === 'dynamic' || scaling?.rope_type === 'longrope') {
      const maxPos = this.config.maxPositionEmbeddings;
      // dynamic changes past max_position_embeddings, longrope past the original length
      const threshold =
        scaling.rope_type === 'dynamic'
          ? maxPos
          : (scaling.original_max_position_embeddings as number);
      let seqLen: number;
      if (Array.isArray(positions)) {
        seqLen = 1;
        for (const row of positions) for (const p of row) seqLen = Math.max(seqLen, p + 1);
      } else if ((tensorLength ?? Number.POSITIVE_INFINITY) <= threshold) seqLen = threshold;
      else {
        throw new ParaError(
          'INVALID_ARGUMENT',
          `${scaling.rope_type} RoPE past ${threshold} positions needs the attention mask as number[][]`,
          {
            field: 'attentionMask',
            expected:
              'a number[][] mask (host positions), or sequences within max_position_embeddings',
          },
        );
      }
      if (seqLen > threshold) {
        inv = ropeInvFreq({
          headDim: rotaryDim(this.config),
          theta: local ? (this.config.localRope as { theta: number }).theta : this.config.ropeTheta,
          scaling: scaling as RopeScalingConfig,
          seqLen,
          maxPositions: maxPos,
        });
      }
    }
    return ropeCosSin(positions, inv, {
      signedSin,
      scale: local ? this.localRopeScale : this.ropeScale,
    });
  }

  /**
   * Phi-3 longrope: the slot count at which `generate` recomputes the KV cache with the long
   * factors (original_max_position_embeddings), as transformers' Phi-3 generation does; else
   * null. A bare `decodeStep` past it switches frequencies for new keys only (cached keys keep
   * theirs), as transformers' model forward does.
   */
  get longropeSwitchAt(): number | null {
    const rs = this.config.ropeScaling;
    return rs?.rope_type === 'longrope' ? (rs.original_max_position_embeddings as number) : null;
  }

  /** The position limit: max_position_embeddings, none with dynamic RoPE (it extends past it). */
  get maxPositions(): number {
    const dyn =
      this.config.ropeScaling?.rope_type === 'dynamic' ||
      this.config.localRope?.scaling?.rope_type === 'dynamic';
    return dyn ? Number.POSITIVE_INFINITY : this.config.maxPositionEmbeddings;
  }

  private plan<R>(
    options: AdapterOptions<R>,
    phase: ForwardPhase,
    tokenMask: tf.Tensor | null,
    state: AdapterState | null,
  ): AdapterPlan<unknown> | null {
    const adapter = options.adapter;
    if (adapter === undefined || adapter === null || tokenMask === null) return null;
    if (!Array.isArray(adapter.sites)) {
      throw new ParaError('INVALID_ARGUMENT', 'adapter.sites must list the sites it transforms', {
        field: 'adapter.sites',
        expected: 'an array such as ["q_proj", "v_proj"]',
      });
    }
    return {
      adapter: adapter as ModelAdapter<unknown>,
      request: options.request,
      phase,
      state: state ?? new AdapterState(this.config.numLayers, false),
      tokenMask,
      sites: new Set(adapter.sites),
      layers: adapter.layers === undefined ? null : new Set(adapter.layers),
    };
  }

  private padPrompts(
    prompts: number[][],
    options: PrefillOptions<unknown>,
  ): { ids: number[][]; mask: number[][] } {
    if (
      !Array.isArray(prompts) ||
      prompts.length === 0 ||
      !prompts.every((p) => Array.isArray(p) && p.length > 0)
    ) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        'prompts must be a non-empty list of non-empty token-id lists',
        { field: 'prompts', expected: 'number[][] with every row non-empty' },
      );
    }
    this.checkIds(prompts, 'prompts', true);
    if (options.attentionMask !== undefined) {
      const T = (prompts[0] as number[]).length;
      this.checkMask(options.attentionMask, prompts.length, T, 'attentionMask');
      options.attentionMask.forEach((row, b) => {
        if (row[T - 1] !== 1) {
          throw new ParaError(
            'INVALID_ARGUMENT',
            `row ${b} ends with padding: prefill needs left padding`,
            { field: `attentionMask[${b}]`, expected: 'padding (0) only before the tokens (1)' },
          );
        }
      });
      return { ids: prompts, mask: options.attentionMask };
    }
    const pad = options.padTokenId ?? this.config.padTokenId ?? 0;
    const { ids, mask } = padBatch(prompts, { padId: pad, side: 'left' });
    return { ids, mask };
  }

  private checkIds(ids: TokenIds, field: string, ragged = false): [number, number] {
    if (!Array.isArray(ids)) {
      if (!(ids instanceof tf.Tensor) || ids.rank !== 2) {
        throw new ParaError('SHAPE_MISMATCH', 'token ids must be [B, T]', {
          field,
          expected: 'number[][] or an int32 tensor [B, T]',
          actual: ids instanceof tf.Tensor ? `[${ids.shape.join(', ')}]` : typeof ids,
        });
      }
      return ids.shape as [number, number];
    }
    const V = this.config.vocabSize;
    if (ids.length === 0 || !ids.every((r) => Array.isArray(r))) {
      throw new ParaError('SHAPE_MISMATCH', 'token ids must be a non-empty list of rows', {
        field,
        expected: 'number[][] [B, T]',
      });
    }
    const T = (ids[0] as number[]).length;
    ids.forEach((row, b) => {
      if (!ragged && row.length !== T) {
        throw new ParaError('SHAPE_MISMATCH', `row ${b} has ${row.length} ids, row 0 has ${T}`, {
          field,
          expected: `rows of equal length (pad them; see attentionMask)`,
          actual: String(row.length),
        });
      }
      row.forEach((id, t) => {
        if (!Number.isInteger(id) || id < 0 || id >= V) {
          throw new ParaError('INVALID_ARGUMENT', `token id out of range at [${b}][${t}]`, {
            field,
            expected: `an integer in [0, ${V}) (vocab_size ${V})`,
            actual: String(id),
          });
        }
      });
    });
    if (T === 0)
      throw new ParaError('SHAPE_MISMATCH', 'token ids are empty', {
        field,
        expected: 'at least one token per row',
      });
    return [ids.length, T];
  }

  private checkMask(mask: TokenMask, B: number, T: number, field: string): void {
    if (Array.isArray(mask)) {
      const ok =
        mask.length === B &&
        mask.every((r) => Array.isArray(r) && r.length === T && r.every((v) => v === 0 || v === 1));
      if (!ok)
        throw new ParaError('SHAPE_MISMATCH', 'attention mask does not match the ids', {
          field,
          expected: `[${B}, ${T}] of 0/1`,
        });
      return;
    }
    if (
      !(mask instanceof tf.Tensor) ||
      mask.rank !== 2 ||
      mask.shape[0] !== B ||
      mask.shape[1] !== T
    ) {
      throw new ParaError('SHAPE_MISMATCH', 'attention mask does not match the ids', {
        field,
        expected: `[${B}, ${T}]`,
        actual: mask instanceof tf.Tensor ? `[${mask.shape.join(', ')}]` : typeof mask,
      });
    }
  }

  /**
   * Positions (real tokens per row) are bounded by max_position_embeddings. Sliding windows
   * need no bound: older keys are masked per layer (the KV cache keeps full length).
   */
  private checkLength(realTokens: number, _slots: number, field: string): void {
    const c = this.config;
    if (realTokens > this.maxPositions) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `a sequence of ${realTokens} tokens is past the model's limit`,
        {
          field: `${field} (max_position_embeddings)`,
          expected: `at most ${c.maxPositionEmbeddings} tokens`,
          actual: String(realTokens),
        },
      );
    }
  }

  private checkAlive(): void {
    if (this.disposed)
      throw new ParaError('INVALID_ARGUMENT', 'the model was disposed', { field: 'model' });
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function rowSum(row: number[]): number {
  let s = 0;
  for (const v of row) s += v;
  return s;
}
