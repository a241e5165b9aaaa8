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
 * Per-request state is typed, one `LayerAdapterState` per layer (`ctx.state`), batch-first:
 *
 *   scale[site]   [B, 1, dim] (or [1, 1, dim] for every row): the site's output is multiplied by it
 *                 (PARA's l_q / l_v / l_u, IA3's vectors, any mix of tenants, one row each)
 *   lora[proj]    { a [B, in, r], b [B, r, out] }: y += (x · a) · b, each row its own factors
 *                 (LoRA rows gathered, Punica's BGMV idea; rows without LoRA all zeros)
 *   bias[proj]    [B, 1, out]: added after the scale (DoRA keeps the projection's bias outside
 *                 its magnitude scaling; LoRA's trained biases), rows without one zeros
 *
 * so a projection's output is y = (W x + b + (x · a) · b) ⊙ scale + bias.
 *
 * The decoder layer applies them itself at every site, in every phase (see layer.ts), so a
 * decode step calls no hook at all: the tensors an adapter put there at prefill are read back
 * (one broadcast multiply per scaled site, two batched matmuls per LoRA site). During
 * `prefill` the state is kept (`tf.keep`) and handed to every `decodeStep` of the same
 * `DecodeState`, and freed with it; rows of one state can be copied into another's free rows
 * (`AdapterState.insertRows`, continuous batching). In `forward` (training) the state lives
 * for that one call and holds ordinary tidy-scoped tensors, so gradients flow through them.
 * `transform` remains for what is not a scale or a per-row low-rank factor (LoRA training with
 * dropout on its shared factors).
 */

import * as tf from '@tensorflow/tfjs-core';
import type { LayerWeights, ProjectionName } from './weights/weights';

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

/** A LoRA update of one projection, per row: `y += (x · a) · b`. */
export interface LoraRows {
  /** `[B, in, r]` */
  readonly a: tf.Tensor;
  /** `[B, r, out]` (the scaling already folded in) */
  readonly b: tf.Tensor;
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
  /** This layer's per-row state, applied by the layer at every site (kept from prefill to the decode steps). */
  readonly state: LayerAdapterState;
  /** This layer's (frozen) backbone weights, read-only (DoRA's weight norm reads them). */
  readonly weights?: LayerWeights;
}

export interface ModelAdapter<R = unknown> {
  /** The sites whose `transform` the model calls; any others cost nothing. */
  readonly sites: readonly AdapterSite[];
  /** Only these layers (default: all). */
  readonly layers?: readonly number[];
  /**
   * Reads the layer's normalised input `h` `[B, T, d]` (after input_layernorm), before q/k/v,
   * and typically fills `ctx.state` (PARA pools h into its vectors here).
   */
  layerInput?(ctx: AdapterContext<R>, h: tf.Tensor): void;
  /**
   * Transforms a site's tensor `y` `[B, T, out]` and returns the replacement (same shape),
   * before `ctx.state` is applied. `x` is the projection's input `[B, T, in]`; at
   * `down_proj.input` it is `y` itself.
   */
  transform?(ctx: AdapterContext<R>, site: AdapterSite, y: tf.Tensor, x: tf.Tensor): tf.Tensor;
}

/**
 * The adapter state of one sequence of calls: one `LayerAdapterState` per layer. `persistent`
 * states (prefill/decode) `tf.keep` what they hold and free it in `dispose`; a `forward` state
 * only references tidy-scoped tensors.
 */
export class AdapterState {
  readonly layers: LayerAdapterState[];

  constructor(numLayers: number, persistent: boolean) {
    this.layers = Array.from({ length: numLayers }, () => new LayerAdapterState(persistent));
  }

  /** Every tensor held, for leak checks. */
  get size(): number {
    return this.layers.reduce((n, l) => n + l.size, 0);
  }

  /**
   * Copies rows `fromRows` of `from` (another state of the same model, e.g. a newcomer's
   * prefill) into rows `toRows` of this one (`batchSize` rows), site by site: a site only one
   * side has gets the identity in the other side's rows (scale 1, LoRA factors 0), LoRA ranks
   * are zero-padded to the larger. Rows not in `toRows` keep their values.
   */
  insertRows(
    from: AdapterState,
    fromRows: readonly number[],
    toRows: readonly number[],
    batchSize: number,
  ): void {
    if (from.layers.length !== this.layers.length || fromRows.length !== toRows.length) {
      throw new Error(
        'internal: insertRows needs states of the same model and one target row per source row',
      );
    }
    this.layers.forEach((l, i) => {
      l.insertRows(from.layers[i] as LayerAdapterState, fromRows, toRows, batchSize);
    });
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
  }
}

/** One layer's per-row adapter tensors (see the module comment). */
export class LayerAdapterState {
  private readonly scales = new Map<AdapterSite, tf.Tensor>();
  private readonly loras = new Map<ProjectionName, LoraRows>();
  private readonly biases = new Map<ProjectionName, tf.Tensor>();
  constructor(private readonly persistent: boolean) {}

  /** `[B or 1, 1, out]`: added to the projection's output after its scale. */
  bias(site: AdapterSite): tf.Tensor | undefined {
    return site === 'down_proj.input' ? undefined : this.biases.get(site);
  }

  /** Sets (replaces) a projection's per-row additive bias. */
  setBias(site: ProjectionName, t: tf.Tensor): void {
    const old = this.biases.get(site);
    if (old === t) return;
    this.biases.set(site, this.own(t));
    this.release(old);
  }

  /** `[B or 1, 1, dim]`: the site's output is multiplied by it. */
  scale(site: AdapterSite): tf.Tensor | undefined {
    return this.scales.get(site);
  }

  /** The per-row LoRA factors of a projection. */
  lora(site: AdapterSite): LoraRows | undefined {
    return site === 'down_proj.input' ? undefined : this.loras.get(site);
  }

  /** Sets (replaces) a site's scale. A persistent state keeps its own reference; `t` stays the caller's. */
  setScale(site: AdapterSite, t: tf.Tensor): void {
    const old = this.scales.get(site);
    if (old === t) return;
    this.scales.set(site, this.own(t));
    this.release(old);
  }

  /** Sets (replaces) a projection's per-row LoRA factors. */
  setLora(site: ProjectionName, rows: LoraRows): void {
    const old = this.loras.get(site);
    if (old?.a === rows.a && old?.b === rows.b) return;
    this.loras.set(site, { a: this.own(rows.a), b: this.own(rows.b) });
    this.release(old?.a);
    this.release(old?.b);
  }

  get size(): number {
    return this.scales.size + 2 * this.loras.size + this.biases.size;
  }

  /** See `AdapterState.insertRows`. */
  insertRows(
    from: LayerAdapterState,
    fromRows: readonly number[],
    toRows: readonly number[],
    B: number,
  ): void {
    // target row -> source row (or -1: keep)
    const src = new Array<number>(B).fill(-1);
    toRows.forEach((t, i) => {
      src[t] = fromRows[i] as number;
    });
    const pick = tf.tensor1d(
      src.map((s) => Math.max(s, 0)),
      'int32',
    ); // [B]
    const take = (shape: number[]) =>
      tf.tensor(
        src.map((s) => (s >= 0 ? 1 : 0)),
        [B, ...shape.slice(1).map(() => 1)],
        'bool',
      );
    const blend = (mine: tf.Tensor, theirs: tf.Tensor): tf.Tensor => {
      const rows = tf.gather(theirs, pick); // [B, ...]
      return tf.where(take(mine.shape), rows, mine);
    };
    const sites = new Set<AdapterSite>([...this.scales.keys(), ...from.scales.keys()]);
    for (const site of sites) {
      const next = tf.tidy(() => {
        const dim = ((this.scales.get(site) ?? from.scales.get(site)) as tf.Tensor)
          .shape[2] as number;
        const rowsOf = (t: tf.Tensor | undefined, n: number) =>
          t === undefined ? tf.ones([n, 1, dim]) : t.shape[0] === n ? t : tf.tile(t, [n, 1, 1]);
        const theirsRows = from.scales.get(site);
        const theirs = rowsOf(
          theirsRows,
          Math.max(1, ...fromRows.map((r) => r + 1), theirsRows?.shape[0] ?? 1),
        );
        return blend(rowsOf(this.scales.get(site), B), theirs); // [B, 1, dim]
      });
      this.setScale(site, next);
      next.dispose();
    }
    for (const site of new Set([...this.biases.keys(), ...from.biases.keys()])) {
      const next = tf.tidy(() => {
        const out = ((this.biases.get(site) ?? from.biases.get(site)) as tf.Tensor)
          .shape[2] as number;
        const rowsOf = (t: tf.Tensor | undefined, n: number) =>
          t === undefined ? tf.zeros([n, 1, out]) : t.shape[0] === n ? t : tf.tile(t, [n, 1, 1]);
        const theirs = from.biases.get(site);
        const nFrom = Math.max(1, ...fromRows.map((r) => r + 1), theirs?.shape[0] ?? 1);
        return blend(rowsOf(this.biases.get(site), B), rowsOf(theirs, nFrom)); // [B, 1, out]
      });
      this.setBias(site, next);
      next.dispose();
    }
    const projs = new Set<ProjectionName>([...this.loras.keys(), ...from.loras.keys()]);
    for (const site of projs) {
      const next = tf.tidy(() => {
        const mine = this.loras.get(site);
        const theirs = from.loras.get(site);
        const ref = (mine ?? theirs) as LoraRows;
        const inp = ref.a.shape[1] as number;
        const out = ref.b.shape[2] as number;
        const r = Math.max(mine?.a.shape[2] ?? 0, theirs?.a.shape[2] ?? 0);
        const nFrom = theirs?.a.shape[0] ?? Math.max(...fromRows) + 1;
        const padded = (l: LoraRows | undefined, n: number) => {
          if (l === undefined) return { a: tf.zeros([n, inp, r]), b: tf.zeros([n, r, out]) };
          const k = l.a.shape[2] as number;
          return k === r
            ? l
            : {
                a: tf.pad(l.a, [
                  [0, 0],
                  [0, 0],
                  [0, r - k],
                ]),
                b: tf.pad(l.b, [
                  [0, 0],
                  [0, r - k],
                  [0, 0],
                ]),
              };
        };
        const m = padded(mine, B);
        const t = padded(theirs, nFrom);
        return { a: blend(m.a, t.a), b: blend(m.b, t.b) }; // [B, in, r], [B, r, out]
      });
      this.setLora(site, next);
      tf.dispose([next.a, next.b]);
    }
    pick.dispose();
  }

  dispose(): void {
    if (this.persistent) {
      for (const t of this.scales.values()) this.release(t);
      for (const l of this.loras.values()) {
        this.release(l.a);
        this.release(l.b);
      }
      for (const t of this.biases.values()) this.release(t);
    }
    this.scales.clear();
    this.loras.clear();
    this.biases.clear();
  }

  // A clone shares t's data (no copy) and is ours to free, so an adapter may store its own
  // parameters here without the state ever disposing them.
  private own(t: tf.Tensor): tf.Tensor {
    return this.persistent ? tf.keep(tf.clone(t)) : t;
  }

  private release(t: tf.Tensor | undefined): void {
    if (this.persistent && t !== undefined && !t.isDisposed) t.dispose();
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
