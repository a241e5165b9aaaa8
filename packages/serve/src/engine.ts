/**
 * The serving engine: continuous (iteration-level) batching over ONE running `DecodeState` of
 * @para/model, with `maxBatch` rows and `maxLen` KV slots per row allocated once.
 *
 *   submit(request)  → validated at once (a ParaError for bad input, a ServeError when the
 *                      queue is full or the engine closes), queued, and answered by a promise;
 *                      text pieces stream through `onText` as they decode.
 *   the loop         between two decode steps: retires cancelled / timed-out rows, admits
 *                      waiting requests into free rows (prefill, then `insertRows`), then runs
 *                      ONE `decodeStep` for every running row, whatever mix of tenants (PARA,
 *                      LoRA, IA3, bare) they are, samples each row with its own settings and
 *                      retires the finished ones (`releaseRow`: stop token, stop string,
 *                      max_tokens), so short requests never wait for long ones.
 *
 * Newcomer prefill: BATCHED. The newcomers waiting between two steps (as many as there are free
 * rows, in queue order, up to `maxPrefillTokens` padded tokens) are prefilled as ONE left-padded
 * batch, each row with its own adapter (`mixedAdapter(model, adapters)`: PARA's vectors pooled
 * from that row's own prompt tokens only, IA3's scales, LoRA's gathered factors), then their KV
 * rows and per-row adapter state are copied into free rows of the running state. Why batched,
 * not one at a time or chunked: on the CPU backends para targets, a prefill of a few short
 * prompts costs little more than one (its matmuls are `[ΣT, d] × [d, n]` and the per-kernel
 * overhead is paid once), so under load newcomers join many times faster (measured by `para
 * bench serve`); a padded row computes what the row computes alone (the model masks padding in
 * attention, positions and PARA's pooling), so a served request's greedy text is the text it
 * gets alone (tested). Chunked prefill (vLLM's: a long prompt split across decode steps so
 * running rows never stall for it) would bound the inter-token latency spikes a long prompt
 * causes; it is not done yet. A newcomer needs its padded prompt plus its new tokens to fit its
 * row, so prompts of very different lengths are admitted in separate batches. If a batched
 * prefill fails, its newcomers go back to the queue and are prefilled one by one, so one bad
 * request fails alone.
 *
 * Memory: the running state (the KV cache, `maxLen` slots per row) has as many rows as the
 * requests need — a power of two up to `maxBatch` — because a decode step computes every row of
 * the state, free ones included: one request alone decodes at batch-1 speed, not at
 * batch-`maxBatch` speed. It grows when newcomers need rows and shrinks when at most a quarter
 * of its rows run, by copying the running rows into a new state (rare: at bucket boundaries),
 * so KV memory stays within `maxBatch × maxLen` slots (1.5× that for the moment of a resize).
 * `preallocate: true` allocates all `maxBatch` rows at the first request instead and keeps
 * them. The state is freed `keepStateMs` after the engine goes idle (no running and no waiting
 * request), so a steady trickle of requests does not pay for a new cache each time, while the
 * adapter sites a state accumulates (a LoRA on o_proj, IA3's down_proj scale) do not cost
 * decode time forever and `tf.memory().numTensors` returns to its value before the first
 * request.
 */

import { type AnyAdapter, mixedAdapter } from '@para/adapters';
import { ParaError, Rng } from '@para/core';
import { type CausalLM, type DecodeState, type TextDecoder, TokenText } from '@para/model';
import { type SampleOptions, sampleFromLogits } from '@para/ops';
import type * as tf from '@tensorflow/tfjs-core';
import { ServeError } from './errors';

export type EngineFinishReason = 'stop' | 'length' | 'cancelled' | 'timeout';

export interface EngineOptions {
  /** Rows decoding at once (default 8). */
  maxBatch?: number;
  /** KV slots per row: prompt plus new tokens at most (default min(256, the model's positions)). */
  maxLen?: number;
  /** Requests waiting for a row at most; beyond it `submit` throws OVERLOADED (default 64). */
  maxQueue?: number;
  /** Default per-request deadline in ms from submission (0 or undefined: none). */
  timeoutMs?: number;
  /**
   * Padded prompt tokens one newcomer prefill holds at most (default max(2048, maxLen)): the
   * waiting requests admitted together are prefilled as one batch up to this size.
   */
  maxPrefillTokens?: number;
  /**
   * Milliseconds the running state (the preallocated KV cache) is kept once the engine is idle,
   * so the next request does not pay for a new one (default 2000; 0: freed at once).
   */
  keepStateMs?: number;
  /**
   * Allocate all `maxBatch` rows at the first request and keep that size (default false: the
   * running state has as many rows as the requests need, a power of two up to `maxBatch`).
   */
  preallocate?: boolean;
  /** Decodes tokens into text (stop strings, `onText`); default `model.tokenizer`. */
  tokenizer?: (TextDecoder & { eosTokenId?: number }) | null;
}

export interface CompletionRequest {
  /** Prompt token ids (non-empty). */
  prompt: number[];
  /** The tenant's adapter (PARA, LoRA, IA3, …) or null / undefined for the bare model. */
  adapter?: AnyAdapter | null;
  /** New tokens at most (default: every slot the row has left, `maxLen - prompt.length`). */
  maxTokens?: number;
  /** 0 = greedy (default). */
  temperature?: number;
  topP?: number;
  topK?: number;
  /** Sampling seed (default 0); the request samples as `generate` does for one prompt. */
  seed?: number | string;
  /** Stop strings (cut from the text). */
  stop?: string | readonly string[];
  /** Stop tokens (default: the config's eos ids and the tokenizer's eos). */
  stopTokens?: readonly number[];
  /** Completions per prompt: only 1 is served (anything else is refused). */
  n?: number;
  /** Cancels the request (its row is freed before the next decode step). */
  signal?: AbortSignal;
  /** Deadline in ms from submission (overrides the engine's `timeoutMs`). */
  timeoutMs?: number;
  /**
   * Receives each new piece of text (never half a character or part of a stop string). With
   * `logprobs`, also the log-probabilities of the tokens the piece completes (those whose text
   * was held back included; a final stop token excluded); the last call may carry an empty
   * piece with the last tokens' entries (their text was cut by a stop string).
   */
  onText?: (piece: string, logprobs?: TokenLogprob[]) => void;
  /** Receives each new token id (the stop token included). */
  onToken?: (token: number) => void;
  /**
   * Log-probabilities: each new token's log p under the model's distribution (the raw logits'
   * log-softmax, before temperature / top-k / top-p, as vLLM reports them) and the `logprobs`
   * most probable alternatives (0–20; undefined: none recorded).
   */
  logprobs?: number;
}

export interface CompletionResult {
  /** The new text (stop string cut; '' without a tokenizer). */
  text: string;
  /** Per new token, when the request asked for `logprobs`. */
  logprobs?: TokenLogprob[];
  /** The new token ids (a stop token included). */
  tokens: number[];
  finishReason: EngineFinishReason;
  promptTokens: number;
  completionTokens: number;
}

export interface TokenLogprob {
  token: number;
  logprob: number;
  /** The most probable tokens at this step, most probable first. */
  top: { token: number; logprob: number }[];
}

/** log-softmax of one row of logits at `token`, and the k most probable tokens (float64). */
export function tokenLogprob(logits: ArrayLike<number>, token: number, k: number): TokenLogprob {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++)
    if ((logits[i] as number) > max) max = logits[i] as number;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp((logits[i] as number) - max);
  const lse = max + Math.log(sum);
  const top: { token: number; logprob: number }[] = [];
  if (k > 0) {
    // Insertion into a sorted list of k: O(V·k) with k ≤ 20.
    for (let i = 0; i < logits.length; i++) {
      const v = logits[i] as number;
      if (top.length === k && v <= (top[k - 1] as { logprob: number }).logprob) continue;
      let at = top.length;
      while (at > 0 && (top[at - 1] as { logprob: number }).logprob < v) at--;
      top.splice(at, 0, { token: i, logprob: v });
      if (top.length > k) top.pop();
    }
    for (const t of top) t.logprob -= lse;
  }
  return { token, logprob: (logits[token] as number) - lse, top };
}

export interface CompletionHandle {
  id: number;
  result: Promise<CompletionResult>;
}

export interface EngineStats {
  running: number;
  waiting: number;
  maxBatch: number;
  maxLen: number;
  maxQueue: number;
  /** Requests finished (any reason) since start. */
  finished: number;
  /** Decode steps run since start. */
  steps: number;
  /** Newcomer prefills run since start (each admits one or more requests). */
  prefills: number;
  /** Rows of the running state now (0: none; a power of two up to maxBatch). */
  rows: number;
  /** Times the running state was created or resized. */
  resizes: number;
  /**
   * Wall-clock milliseconds the loop spent since start: prefilling newcomers (their first
   * logits read back included), copying them into the running state (`insertRows` and
   * resizes), and in decode steps (logits read back and sampling included).
   */
  busyMs: { prefill: number; insert: number; decode: number };
  closed: boolean;
}

interface Job {
  id: number;
  prompt: number[];
  adapter: AnyAdapter | null;
  maxTokens: number;
  sampling: SampleOptions;
  text: TokenText;
  tokens: number[];
  deadline: number;
  signal: AbortSignal | undefined;
  onText: ((piece: string, logprobs?: TokenLogprob[]) => void) | undefined;
  onToken: ((token: number) => void) | undefined;
  logprobs: number | undefined;
  logprobList: TokenLogprob[];
  /** Entries of `logprobList` already handed to `onText`. */
  logprobsSent: number;
  resolve: (r: CompletionResult) => void;
  reject: (e: unknown) => void;
  /** The running row, or -1 while waiting. */
  row: number;
  /** Prefilled alone (its batched prefill failed). */
  solo: boolean;
  settled: boolean;
  onAbort?: () => void;
}

function positiveInt(v: unknown, field: string, fallback: number): number {
  const n = v ?? fallback;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) {
    throw new ParaError('INVALID_ARGUMENT', `${field} must be a positive integer`, {
      field,
      expected: 'an integer ≥ 1',
      actual: String(v),
    });
  }
  return n;
}

/** One turn of the event loop (setImmediate where there is one: no 1 ms timer clamp). */
const tick = (): Promise<void> =>
  new Promise((r) => {
    const g = globalThis as { setImmediate?: (f: () => void) => unknown };
    if (typeof g.setImmediate === 'function') g.setImmediate(r);
    else setTimeout(r, 0);
  });

export class Engine {
  readonly model: CausalLM;
  readonly maxBatch: number;
  readonly maxLen: number;
  readonly maxQueue: number;
  readonly timeoutMs: number;
  readonly maxPrefillTokens: number;
  readonly keepStateMs: number;
  readonly preallocate: boolean;
  private disposeTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly tokenizer: (TextDecoder & { eosTokenId?: number }) | undefined;
  private readonly defaultStops: number[];
  private readonly waiting: Job[] = [];
  /** Row of the running state → job (null: free); as long as the state has rows (0: none). */
  private rows: (Job | null)[] = [];
  private state: DecodeState | null = null;
  private loop: Promise<void> | null = null;
  private nextId = 1;
  private finished = 0;
  private steps = 0;
  private prefills = 0;
  private readonly busyMs = { prefill: 0, insert: 0, decode: 0 };
  private resizes = 0;
  private closing = false;
  /** Set by `close` past its deadline: every running row is cancelled. */
  private cancelRunning = false;
  /** Newcomers taken off the queue whose prefill is running. */
  private admitting = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(model: CausalLM, options: EngineOptions = {}) {
    this.model = model;
    this.maxBatch = positiveInt(options.maxBatch, 'maxBatch', 8);
    const positions = Number.isFinite(model.maxPositions) ? model.maxPositions : 256;
    this.maxLen = positiveInt(options.maxLen, 'maxLen', Math.min(256, positions));
    if (this.maxLen > positions) {
      throw new ParaError('INVALID_ARGUMENT', 'maxLen is past the model’s positions', {
        field: 'maxLen',
        expected: `≤ ${positions} (max_position_embeddings)`,
        actual: String(this.maxLen),
      });
    }
    const q = options.maxQueue ?? 64;
    if (!Number.isInteger(q) || q < 0) {
      throw new ParaError('INVALID_ARGUMENT', 'maxQueue must be an integer ≥ 0', {
        field: 'maxQueue',
        expected: 'an integer ≥ 0',
        actual: String(q),
      });
    }
    this.maxQueue = q;
    const t = options.timeoutMs ?? 0;
    if (typeof t !== 'number' || !(t >= 0)) {
      throw new ParaError('INVALID_ARGUMENT', 'timeoutMs must be a number ≥ 0', {
        field: 'timeoutMs',
        expected: 'milliseconds ≥ 0 (0: none)',
        actual: String(t),
      });
    }
    this.timeoutMs = t;
    this.maxPrefillTokens = positiveInt(
      options.maxPrefillTokens,
      'maxPrefillTokens',
      Math.max(2048, this.maxLen),
    );
    const keep = options.keepStateMs ?? 2000;
    if (typeof keep !== 'number' || !(keep >= 0)) {
      throw new ParaError('INVALID_ARGUMENT', 'keepStateMs must be a number ≥ 0', {
        field: 'keepStateMs',
        expected: 'milliseconds ≥ 0 (0: free the state at once when idle)',
        actual: String(keep),
      });
    }
    this.keepStateMs = keep;
    this.preallocate = options.preallocate === true;
    const tok = options.tokenizer === null ? undefined : (options.tokenizer ?? model.tokenizer);
    this.tokenizer = tok ?? undefined;
    const stops = new Set(model.config.eosTokenIds);
    if (this.tokenizer?.eosTokenId !== undefined) stops.add(this.tokenizer.eosTokenId);
    this.defaultStops = [...stops];
  }

  stats(): EngineStats {
    return {
      running: this.rows.filter((r) => r !== null).length,
      waiting: this.waiting.length,
      maxBatch: this.maxBatch,
      maxLen: this.maxLen,
      maxQueue: this.maxQueue,
      finished: this.finished,
      steps: this.steps,
      prefills: this.prefills,
      rows: this.rows.length,
      resizes: this.resizes,
      busyMs: { ...this.busyMs },
      closed: this.closing,
    };
  }

  /** Whether a running decode state (the preallocated KV cache) is held now. */
  get hasState(): boolean {
    return this.state !== null;
  }

  /**
   * Queues a request. Throws at once (nothing queued) a ParaError for bad input, ServeError
   * OVERLOADED when `maxQueue` requests already wait, CLOSED once `close` was called.
   */
  submit(request: CompletionRequest): CompletionHandle {
    if (this.closing) throw new ServeError('CLOSED', 'the server is shutting down');
    const job = this.check(request);
    // Those that will still wait once the free rows are taken.
    if (this.waiting.length - this.freeRowCount() >= this.maxQueue) {
      throw new ServeError(
        'OVERLOADED',
        `the server is overloaded: ${this.waiting.length} requests wait (max ${this.maxQueue})`,
        1,
      );
    }
    const result = new Promise<CompletionResult>((resolve, reject) => {
      job.resolve = resolve;
      job.reject = reject;
    });
    if (job.signal !== undefined) {
      job.onAbort = () => {
        // A waiting request leaves the queue at once; a running one at the next step.
        const i = this.waiting.indexOf(job);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          this.finish(job, 'cancelled');
        }
      };
      job.signal.addEventListener('abort', job.onAbort, { once: true });
    }
    this.waiting.push(job);
    this.kick();
    return { id: job.id, result };
  }

  /** Submits and waits for the result. */
  complete(request: CompletionRequest): Promise<CompletionResult> {
    try {
      return this.submit(request).result;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Resolves when no request runs or waits. */
  idle(): Promise<void> {
    if (this.loop === null && this.waiting.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /**
   * Stops admitting (`submit` throws CLOSED), lets the running and waiting requests finish for
   * up to `deadlineMs`, then cancels the rest (finish reason 'cancelled') and frees the state.
   */
  async close(options: { deadlineMs?: number } = {}): Promise<void> {
    this.closing = true;
    const deadline = options.deadlineMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), deadline);
    });
    const outcome = await Promise.race([this.idle().then(() => 'idle' as const), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      for (const job of this.waiting.splice(0)) this.finish(job, 'cancelled');
      this.cancelRunning = true; // running rows are retired before the next step
      await this.idle();
    }
    this.disposeState();
  }

  // ---------------------------------------------------------------------------------------

  /** Rows free and not being filled by a newcomer's prefill right now. */
  private freeRowCount(): number {
    return this.maxBatch - this.rows.filter((r) => r !== null).length - this.admitting;
  }

  private check(r: CompletionRequest): Job {
    if (r === null || typeof r !== 'object') {
      throw new ParaError('INVALID_ARGUMENT', 'a request must be an object', { field: 'request' });
    }
    const c = this.model.config;
    const p = r.prompt;
    if (
      !Array.isArray(p) ||
      p.length === 0 ||
      !p.every((t) => Number.isInteger(t) && t >= 0 && t < c.vocabSize)
    ) {
      throw new ParaError('INVALID_ARGUMENT', 'the prompt must be a non-empty list of token ids', {
        field: 'prompt',
        expected: `token ids in [0, ${c.vocabSize})`,
      });
    }
    if (p.length >= this.maxLen) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `the prompt has ${p.length} tokens; this server holds ${this.maxLen} per request (prompt and new tokens)`,
        { field: 'prompt', expected: `fewer than ${this.maxLen} tokens`, actual: String(p.length) },
      );
    }
    if (r.n !== undefined && r.n !== 1) {
      throw new ParaError('UNSUPPORTED', 'only n = 1 is served (one completion per request)', {
        field: 'n',
        expected: '1',
        actual: String(r.n),
      });
    }
    const room = this.maxLen - p.length;
    const maxTokens = positiveInt(r.maxTokens, 'max_tokens', room);
    if (maxTokens > room) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        `the prompt (${p.length} tokens) plus max_tokens (${maxTokens}) is past this server's ${this.maxLen} tokens per request`,
        { field: 'max_tokens', expected: `≤ ${room}`, actual: String(maxTokens) },
      );
    }
    const temperature = r.temperature ?? 0;
    const sampling: SampleOptions = {
      temperature,
      topK: r.topK ?? 0,
      topP: r.topP ?? 1,
      // As `generate` for one prompt: row 0 of `new Rng(seed)`.
      rng: new Rng(r.seed ?? 0).fork(0),
    };
    // Validates temperature / top_k / top_p now (a throwaway generator), not after the prefill.
    sampleFromLogits([[0]], { ...sampling, rng: new Rng(0) });
    const stopList =
      r.stop === undefined ? [] : typeof r.stop === 'string' ? [r.stop] : [...r.stop];
    if (!stopList.every((s) => typeof s === 'string' && s.length > 0)) {
      throw new ParaError('INVALID_ARGUMENT', 'stop must be non-empty strings', {
        field: 'stop',
        expected: 'a string or a list of non-empty strings',
      });
    }
    if (stopList.length > 0 && this.tokenizer === undefined) {
      throw new ParaError('UNSUPPORTED', 'stop strings need a tokenizer', { field: 'stop' });
    }
    const stopTokens = r.stopTokens ?? this.defaultStops;
    if (!stopTokens.every((t) => Number.isInteger(t) && t >= 0 && t < c.vocabSize)) {
      throw new ParaError('INVALID_ARGUMENT', 'stopTokens must be token ids', {
        field: 'stopTokens',
        expected: `integers in [0, ${c.vocabSize})`,
      });
    }
    const adapter = r.adapter ?? null;
    if (adapter !== null) {
      if (adapter.isDisposed)
        throw new ParaError('INVALID_ARGUMENT', 'the adapter was disposed', { field: 'adapter' });
      adapter.checkModel(c);
    }
    if (
      r.logprobs !== undefined &&
      !(Number.isInteger(r.logprobs) && r.logprobs >= 0 && r.logprobs <= 20)
    ) {
      throw new ParaError('INVALID_ARGUMENT', 'logprobs must be an integer in [0, 20]', {
        field: 'logprobs',
        expected: 'the number of alternatives per token, 0–20',
        actual: String(r.logprobs),
      });
    }
    const t = r.timeoutMs ?? this.timeoutMs;
    if (typeof t !== 'number' || !(t >= 0)) {
      throw new ParaError('INVALID_ARGUMENT', 'timeoutMs must be a number ≥ 0', {
        field: 'timeoutMs',
      });
    }
    return {
      id: this.nextId++,
      prompt: [...p],
      adapter,
      maxTokens,
      sampling,
      text: new TokenText(this.tokenizer, stopList, new Set(stopTokens)),
      tokens: [],
      deadline: t > 0 ? Date.now() + t : Number.POSITIVE_INFINITY,
      signal: r.signal,
      onText: r.onText,
      onToken: r.onToken,
      logprobs: r.logprobs,
      logprobList: [],
      logprobsSent: 0,
      resolve: () => undefined,
      reject: () => undefined,
      row: -1,
      solo: false,
      settled: false,
    };
  }

  private kick(): void {
    if (this.loop !== null) return;
    this.loop = this.run().finally(() => {
      this.loop = null;
      if (this.waiting.length > 0) this.kick();
      else for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  private async run(): Promise<void> {
    try {
      while (this.waiting.length > 0 || this.rows.some((r) => r !== null)) {
        this.retireExpired();
        await this.admit();
        if (this.rows.some((r) => r !== null)) await this.step();
        await tick(); // let I/O (new requests, stream writes, disconnects) run between steps
      }
    } catch (e) {
      // A failure of the step itself (not of one request's input): fail every request in flight.
      for (const job of this.rows) if (job !== null) this.fail(job, e);
      for (const job of this.waiting.splice(0)) this.fail(job, e);
    } finally {
      this.idleState();
    }
  }

  /** The engine went idle: the state is freed now or after `keepStateMs` if still idle then. */
  private idleState(): void {
    if (this.keepStateMs === 0 || this.closing) {
      this.disposeState();
      return;
    }
    if (this.state === null || this.disposeTimer !== null) return;
    const timer = setTimeout(() => {
      this.disposeTimer = null;
      if (this.loop === null && this.waiting.length === 0) this.disposeState();
    }, this.keepStateMs);
    (timer as { unref?: () => void }).unref?.();
    this.disposeTimer = timer;
  }

  private expired(job: Job): EngineFinishReason | null {
    if (job.signal?.aborted || this.cancelRunning) return 'cancelled';
    if (Date.now() >= job.deadline) return 'timeout';
    return null;
  }

  private retireExpired(): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const job = this.waiting[i] as Job;
      const why = this.expired(job);
      if (why !== null) {
        this.waiting.splice(i, 1);
        this.finish(job, why);
      }
    }
    for (const job of this.rows) {
      if (job === null) continue;
      const why = this.expired(job);
      if (why !== null) this.finish(job, why);
    }
  }

  /** Rows a running state of at least `n` rows gets: the next power of two, at most maxBatch. */
  private bucket(n: number): number {
    if (this.preallocate) return this.maxBatch;
    let b = 1;
    while (b < n) b *= 2;
    return Math.min(b, this.maxBatch);
  }

  /**
   * The running state, with at least `rows` rows. It has as many rows as the requests need
   * (a power of two up to `maxBatch`, see `bucket`), not always `maxBatch`: a decode step costs
   * every row of the state, so one request alone decodes at batch-1 speed. Growing or shrinking
   * copies the running rows into a new state (compacted to the first rows when shrinking).
   */
  private ensureState(rows = 1): DecodeState {
    if (this.disposeTimer !== null) {
      clearTimeout(this.disposeTimer);
      this.disposeTimer = null;
    }
    if (this.state !== null && this.state.batchSize >= rows) return this.state;
    this.resize(this.bucket(rows));
    return this.state as unknown as DecodeState;
  }

  /** Moves the running rows into a new state of `size` rows (≥ the running rows). */
  private resize(size: number): void {
    const t0 = performance.now();
    try {
      this.resizeTo(size);
    } finally {
      this.busyMs.insert += performance.now() - t0;
    }
  }

  private resizeTo(size: number): void {
    const fresh = this.model.emptyState(size, {
      capacity: this.maxLen,
      // A mixed batch of bare rows: rows bring their own adapter state in (`insertRows`).
      adapter: mixedAdapter(this.model, new Array<null>(size).fill(null)),
      request: {},
    }) as DecodeState;
    const running: number[] = [];
    this.rows.forEach((j, i) => {
      if (j !== null) running.push(i);
    });
    const old = this.state;
    const into = size >= this.rows.length ? running : running.map((_, k) => k);
    try {
      if (old !== null && running.length > 0) fresh.insertRows(old, { rows: running, into });
    } catch (e) {
      fresh.dispose();
      throw e;
    }
    const rows = new Array<Job | null>(size).fill(null);
    running.forEach((from, k) => {
      const job = this.rows[from] as Job;
      rows[into[k] as number] = job;
      job.row = into[k] as number;
    });
    old?.dispose();
    this.state = fresh;
    this.rows = rows;
    this.resizes++;
  }

  /** Shrinks the state when at most a quarter of its rows run (and nobody waits). */
  private maybeShrink(): void {
    if (this.state === null || this.waiting.length > 0) return;
    const running = this.rows.filter((r) => r !== null).length;
    if (running === 0 || running * 4 > this.rows.length) return;
    const size = this.bucket(running);
    if (size < this.rows.length) this.resize(size);
  }

  private disposeState(): void {
    if (this.disposeTimer !== null) {
      clearTimeout(this.disposeTimer);
      this.disposeTimer = null;
    }
    if (this.state !== null && this.rows.every((r) => r === null)) {
      this.state.dispose();
      this.state = null;
      this.rows = [];
    }
  }

  /**
   * Takes the next newcomers off the queue for one prefill: in queue order, as many as there are
   * free rows, while the padded batch stays within `maxPrefillTokens` and every newcomer's padded
   * prompt plus its new tokens fits its row (`maxLen` slots). Expired ones are finished here.
   */
  private nextGroup(free: number): Job[] {
    const group: Job[] = [];
    let longest = 0;
    while (this.waiting.length > 0 && group.length < free) {
      const job = this.waiting[0] as Job;
      const why = this.expired(job);
      if (why !== null) {
        this.waiting.shift();
        this.finish(job, why);
        continue;
      }
      const T = Math.max(longest, job.prompt.length);
      const fits =
        group.length === 0 ||
        (!job.solo &&
          !(group[0] as Job).solo &&
          T * (group.length + 1) <= this.maxPrefillTokens &&
          [...group, job].every((j) => T + j.maxTokens <= this.maxLen));
      if (!fits) break;
      this.waiting.shift();
      group.push(job);
      longest = T;
    }
    return group;
  }

  /**
   * Admits waiting requests into free rows: newcomers are prefilled together (one left-padded
   * batch, each row with its own adapter, see the file comment), take their first token, and
   * their KV rows and adapter state are copied into free rows of the running state. Until the
   * queue is empty or no row is free.
   */
  private async admit(): Promise<void> {
    for (;;) {
      if (this.waiting.length === 0) return;
      const running = this.rows.filter((r) => r !== null).length;
      if (running >= this.maxBatch) return;
      // Room for every waiting request (up to maxBatch) before their prefill.
      this.ensureState(Math.min(this.maxBatch, running + this.waiting.length));
      const free: number[] = [];
      this.rows.forEach((r, i) => {
        if (r === null) free.push(i);
      });
      const group = this.nextGroup(free.length);
      if (group.length === 0) return;
      this.admitting += group.length;
      let firsts: Float32Array[] | null = null;
      let newcomers: DecodeState | undefined;
      const t0 = performance.now();
      try {
        ({ firsts, state: newcomers } = await this.prefillGroup(group));
        this.busyMs.prefill += performance.now() - t0;
      } catch (e) {
        this.busyMs.prefill += performance.now() - t0;
        if (group.length === 1) {
          this.admitting -= 1;
          this.fail(group[0] as Job, e);
          continue;
        }
        // One bad newcomer must not fail the others: back to the queue, each prefilled alone.
        this.admitting -= group.length;
        for (const j of group) j.solo = true;
        this.waiting.unshift(...group);
        continue;
      }
      this.admitting -= group.length;
      try {
        const fromRows: number[] = [];
        const into: number[] = [];
        group.forEach((job, i) => {
          try {
            if (this.accept(job, firsts?.[i] as Float32Array)) return; // done on its first token
          } catch (e) {
            this.fail(job, e);
            return;
          }
          fromRows.push(i);
          into.push(free[fromRows.length - 1] as number);
        });
        if (fromRows.length > 0) {
          const t1 = performance.now();
          try {
            this.ensureState().insertRows(newcomers, { rows: fromRows, into });
            this.busyMs.insert += performance.now() - t1;
            fromRows.forEach((i, k) => {
              const job = group[i] as Job;
              this.rows[into[k] as number] = job;
              job.row = into[k] as number;
            });
          } catch (e) {
            this.busyMs.insert += performance.now() - t1;
            for (const i of fromRows) this.fail(group[i] as Job, e);
          }
        }
      } finally {
        newcomers.dispose();
      }
      if (this.waiting.length > 0) await tick();
    }
  }

  /** One prefill of the group's prompts (left-padded), each row with its own adapter. */
  private async prefillGroup(
    group: Job[],
  ): Promise<{ firsts: Float32Array[]; state: DecodeState }> {
    const longest = Math.max(...group.map((j) => j.prompt.length));
    const pre = this.model.prefill(
      group.map((j) => j.prompt),
      {
        adapter: mixedAdapter(
          this.model,
          group.map((j) => j.adapter),
        ),
        request: {},
        capacity: longest,
      },
    );
    const state = pre.state as DecodeState;
    this.prefills++;
    try {
      const data = await hostRow(pre.logits);
      const V = this.model.config.vocabSize;
      return { firsts: group.map((_, i) => data.subarray(i * V, (i + 1) * V)), state };
    } catch (e) {
      state.dispose();
      throw e;
    }
  }

  /** One decode step for every running row; finished rows are retired. */
  private async step(): Promise<void> {
    this.maybeShrink();
    const state = this.ensureState();
    const t0 = performance.now();
    try {
      await this.decodeRows(state);
    } finally {
      this.busyMs.decode += performance.now() - t0;
    }
  }

  private async decodeRows(state: DecodeState): Promise<void> {
    const active = this.rows.map((j) => j !== null);
    const last = this.rows.map((j) => (j === null ? 0 : (j.tokens[j.tokens.length - 1] as number)));
    const logits = this.model.decodeStep(last, state, { active });
    this.steps++;
    const [B, V] = logits.shape as [number, number];
    let data: Float32Array;
    try {
      data = (await logits.data()) as Float32Array;
    } finally {
      logits.dispose();
    }
    for (let b = 0; b < B; b++) {
      const job = this.rows[b];
      if (job === null || job === undefined || job.settled) continue;
      try {
        this.accept(job, data.subarray(b * V, (b + 1) * V));
      } catch (e) {
        this.fail(job, e);
      }
    }
  }

  /** Samples the job's next token from its logits; true when the job finished. */
  private accept(job: Job, logits: Float32Array): boolean {
    const token = sampleFromLogits([logits], job.sampling)[0] as number;
    job.tokens.push(token);
    if (job.logprobs !== undefined) job.logprobList.push(tokenLogprob(logits, token, job.logprobs));
    job.onToken?.(token);
    job.text.push(token);
    const length = job.tokens.length >= job.maxTokens;
    const final = job.text.done || length;
    this.emit(job, job.text.next(final), final);
    if (job.text.done) this.finish(job, 'stop');
    else if (length) this.finish(job, 'length');
    return job.settled;
  }

  /** Hands a piece of text (and, with logprobs, its tokens' entries) to the request's onText. */
  private emit(job: Job, piece: string, final: boolean): void {
    if (job.onText === undefined) return;
    if (job.logprobs === undefined) {
      if (piece !== '') job.onText(piece);
      return;
    }
    // A stop token is not part of the text, nor of its log-probabilities.
    const shown = job.logprobList.length - (job.text.stoppedByToken ? 1 : 0);
    if (piece === '' && !(final && shown > job.logprobsSent)) return;
    const entries = job.logprobList.slice(job.logprobsSent, shown);
    job.logprobsSent = Math.max(job.logprobsSent, shown);
    job.onText(piece, entries);
  }

  private release(job: Job): void {
    if (job.row >= 0) {
      this.state?.releaseRow(job.row);
      this.rows[job.row] = null;
      job.row = -1;
    }
    if (job.onAbort !== undefined) job.signal?.removeEventListener('abort', job.onAbort);
  }

  private finish(job: Job, reason: EngineFinishReason): void {
    if (job.settled) return;
    this.release(job);
    job.settled = true;
    this.finished++;
    if (reason === 'timeout' && job.tokens.length === 0) {
      job.reject(new ServeError('TIMEOUT', 'the request timed out before its first token'));
      return;
    }
    // Whatever text was held back (part of a stop string that never completed) is shown now.
    if (reason !== 'stop') this.emit(job, job.text.next(true), true);
    job.resolve({
      text: job.text.text,
      tokens: [...job.tokens],
      finishReason: reason,
      promptTokens: job.prompt.length,
      completionTokens: job.tokens.length,
      ...(job.logprobs !== undefined ? { logprobs: [...job.logprobList] } : {}),
    });
  }

  private fail(job: Job, e: unknown): void {
    if (job.settled) return;
    this.release(job);
    job.settled = true;
    this.finished++;
    job.reject(e);
  }
}

async function hostRow(logits: tf.Tensor): Promise<Float32Array> {
  try {
    return (await logits.data()) as Float32Array;
  } finally {
    logits.dispose();
  }
}
