/**
 * Adapter sites: where PARA, LoRA and IA3 (the adapters package) plug into the backbone.
 *
 * A `ModelAdapter` is a set of hooks the decoder layer calls at fixed points:
 *
 *   x ─ input_layernorm ─ h ──► layerInput(ctx, h)                 (read: PARA pools h)
 *                          ├─ q_proj ─► transform(ctx, 'q_proj', y, h) ─ RoPE ─┐
 *                          ├─ k_proj ─► transform(ctx, 'k_proj', y, h) ─ RoPE ─┼─ attention ─ a
 *                          └─ v_proj ─► transform(ctx, 'v_proj', y, h) ───────┘
 *   a ─ o_proj ─► transform(ctx, 'o_proj', y, a) ─ + x ─ post_attention_layernorm ─ h2
 *   h2 ├─ gate_proj ─► transform(ctx, 'gate_proj', y, h2) ─┐
 *      └─ up_proj ───► transform(ctx, 'up_proj', y, h2) ───┴─ silu(g) ⊙ u ─ m
 *   m ─► transform(ctx, 'down_proj.input', m, m) ─ down_proj ─► transform(ctx, 'down_proj', y, m) ─ + residual
 *
 * Every tensor a hook sees is `[B, T, ·]` with B the batch rows (one request or tenant each)
 * and T this call's positions (the whole sequence in `forward`, the prompt in `prefill`, 1 in a
 * decode step), so hooks can act per row. A hook returns the (possibly new) tensor; the model
 * never disposes what it passed in or what comes back — ordinary `tf.tidy` scoping applies
 * (the model runs every call inside one tidy).
 *
 * Cost with no adapter: none. The model only calls hooks of an adapter passed to the call, and
 * only `transform` for the sites listed in `adapter.sites` (no reshape, no extra tensor).
 *
 * Per-request state. `ctx.request` is whatever the caller passed with the call (prompt
 * lengths, tenant ids, per-row vectors...). `ctx.cache` is a per-layer tensor store owned by
 * the model: during `prefill` the tensors an adapter `set`s there are kept and handed back at
 * every `decodeStep` of the same `DecodeState`, and freed with it. PARA computes its vectors
 * at prefill (`layerInput`), `set`s them, and `get`s them in each decode step's `transform`.
 * Store tensors with the batch as the first axis (`[B, 1, dim]`), so a serving engine can
 * slice and concatenate rows. In `forward` (training) the store lives for that one call only,
 * and its tensors are ordinary tidy-scoped tensors (gradients flow through them).
 */

import * as tf from '@tensorflow/tfjs-core';
import type { ProjectionName } from './weights/weights';

/** A projection's output, or (`down_proj.input`) the MLP activation entering down_proj. */
export type AdapterSite = ProjectionName | 'down_proj.input';
export const ADAPTER_SITES: readonly AdapterSite[] = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj.input',
  'down_proj',
];

/** `forward`: a whole sequence, no cache. `prefill`: the prompt, filling a cache. `decode`: one new token per row. */
export type ForwardPhase = 'forward' | 'prefill' | 'decode';

/** Per-layer tensor store for adapter state; see the module comment for lifetimes. */
export interface AdapterCache {
  get(key: string): tf.Tensor | undefined;
  /** Store `t` under `key`, replacing an older value. The cache keeps its own reference (a clone), so `t` stays the caller's. */
  set(key: string, t: tf.Tensor): void;
  has(key: string): boolean;
}

export interface AdapterContext<R = unknown> {
  readonly phase: ForwardPhase;
  /** Layer index, 0-based. */
  readonly layer: number;
  /** What the caller passed as `request` to forward / prefill (and decodeStep). */
  readonly request: R;
  /**
   * `[B, T]` float32, 1 for a real token and 0 for padding, over this call's T positions.
   * In a decode step it is the rows' activity (1 unless a row was paused).
   */
  readonly tokenMask: tf.Tensor;
  /** This layer's state store (kept from prefill to the decode steps). */
  readonly cache: AdapterCache;
}

export interface ModelAdapter<R = unknown> {
  /** The sites whose `transform` the model calls; any others cost nothing. */
  readonly sites: readonly AdapterSite[];
  /** Only these layers (default: all). */
  readonly layers?: readonly number[];
  /** Reads the layer's normalised input `h` `[B, T, d]` (after input_layernorm), before q/k/v. */
  layerInput?(ctx: AdapterContext<R>, h: tf.Tensor): void;
  /**
   * Transforms a site's tensor `y` `[B, T, out]` and returns the replacement (same shape).
   * `x` is the projection's input `[B, T, in]` (for LoRA's `B·A·x`); at `down_proj.input`
   * it is `y` itself.
   */
  transform?(ctx: AdapterContext<R>, site: AdapterSite, y: tf.Tensor, x: tf.Tensor): tf.Tensor;
}

/**
 * The adapter's state for one sequence of calls: one store per layer. `persistent` stores
 * (prefill/decode) `tf.keep` what they hold and free it in `dispose`; a `forward` store only
 * references tidy-scoped tensors.
 */
export class AdapterState {
  readonly layers: LayerAdapterCache[];

  constructor(numLayers: number, persistent: boolean) {
    this.layers = Array.from({ length: numLayers }, () => new LayerAdapterCache(persistent));
  }

  /** Every tensor held, for leak checks. */
  get size(): number {
    return this.layers.reduce((n, l) => n + l.size, 0);
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
  }
}

export class LayerAdapterCache implements AdapterCache {
  private readonly map = new Map<string, tf.Tensor>();
  constructor(private readonly persistent: boolean) {}

  get(key: string): tf.Tensor | undefined {
    return this.map.get(key);
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  set(key: string, t: tf.Tensor): void {
    const old = this.map.get(key);
    if (old === t) return;
    if (this.persistent) {
      // A clone shares t's data (no copy) and is ours to free, so an adapter may store its own
      // parameters here without the cache ever disposing them.
      this.map.set(key, tf.keep(tf.clone(t)));
      if (old !== undefined && !old.isDisposed) old.dispose();
    } else this.map.set(key, t);
  }

  get size(): number {
    return this.map.size;
  }

  dispose(): void {
    if (this.persistent) for (const t of this.map.values()) if (!t.isDisposed) t.dispose();
    this.map.clear();
  }
}

/** Which sites of which layers an adapter transforms: computed once per call. */
export interface AdapterPlan<R> {
  adapter: ModelAdapter<R>;
  request: R;
  phase: ForwardPhase;
  state: AdapterState;
  /** [B, T] float32 */
  tokenMask: tf.Tensor;
  sites: ReadonlySet<AdapterSite>;
  layers: ReadonlySet<number> | null;
}

export function layerActive<R>(plan: AdapterPlan<R> | null, layer: number): plan is AdapterPlan<R> {
  return plan !== null && (plan.layers === null || plan.layers.has(layer));
}
