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
 * (Both residual adds run inside the following norm's op, `addRmsNorm`: the second one in the next
 * layer's input_layernorm, or the final norm; see layer.ts. The math is as drawn.)
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
 * so a projection's output is y = (W x + b + (x · a) · b) ⊙ scale + bias. Beside the layers,
 * `AdapterState.embedding` and `.head` (`EdgeAdapterState`) hold per-row replacement tables and
 * low-rank deltas of the embedding lookup and the output head (PEFT's modules_to_save, LoRA on
 * embed_tokens / lm_head), filled by `modelInput` and applied by the model in every phase.
 *
 * The decoder layer applies them itself at every site, in every phase (see layer.ts), so a
 * decode step calls no hook at all: the tensors an adapter put there at prefill are read back
 * (one broadcast multiply per scaled site, or none where the backend's fused RoPE + KV-write and
 * SwiGLU kernels fold the q/k/v and up scales in; two batched matmuls per LoRA site). During
 * `prefill` the state is kept (`tf.keep`) and handed to every `decodeStep` of the same
 * `DecodeState`, and freed with it; rows of one state can be copied into another's free rows
 * (`AdapterState.insertRows`, continuous batching). In `forward` (training) the state lives
 * for that one call and holds ordinary tidy-scoped tensors, so gradients flow through them.
 * `transform` remains for what is not a scale or a per-row low-rank factor (LoRA training with
 * dropout on its shared factors).
 */

import { writeKVSlots } from '@para/ops';
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
  /**
   * Called once per call (every phase) before the embedding lookup; typically fills
   * `ctx.state.embedding` / `ctx.state.head` (see `EdgeAdapterState`), which the model applies
   * at the lookup and the output head, in every phase.
   */
  modelInput?(ctx: ModelInputContext<R>): void;
}

/**
 * The adapter state of one sequence of calls: one `LayerAdapterState` per layer. `persistent`
 * states (prefill/decode) `tf.keep` what they hold and free it in `dispose`; a `forward` state
 * only references tidy-scoped tensors.
 */
export class AdapterState {
  readonly layers: LayerAdapterState[];
  /** Per-row state at the embedding lookup (empty unless an adapter sets it). */
  readonly embedding: EdgeAdapterState;
  /** Per-row state at the output head (empty unless an adapter sets it). */
  readonly head: EdgeAdapterState;

  constructor(numLayers: number, persistent: boolean) {
    this.layers = Array.from({ length: numLayers }, () => new LayerAdapterState(persistent));
    this.embedding = new EdgeAdapterState(persistent);
    this.head = new EdgeAdapterState(persistent);
  }

  /** Every tensor held, for leak checks. */
  get size(): number {
    return this.layers.reduce((n, l) => n + l.size, this.embedding.size + this.head.size);
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
    this.embedding.insertRows(from.embedding, fromRows, toRows, batchSize);
    this.head.insertRows(from.head, fromRows, toRows, batchSize);
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
    this.embedding.dispose();
    this.head.dispose();
  }
}

/** One layer's per-row adapter tensors (see the module comment). */
export class LayerAdapterState {
  private readonly scales = new Map<AdapterSite, tf.Tensor>();
  private readonly loras = new Map<ProjectionName, LoraRows>();
  private readonly biases = new Map<ProjectionName, tf.Tensor>();
  /** Tensors held here that are row storage this state allocated (see `insertRows`). */
  private readonly rowStorage = new WeakSet<tf.Tensor>();
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

  /**
   * See `AdapterState.insertRows`. Every per-row tensor of a site becomes `[B, ...]` storage that
   * this state allocated itself (the first insert at a site computes it: one concat + gather);
   * later inserts copy only the inserted rows into that storage in place where the backend
   * allows (ops' `writeKVSlots`, as the KV cache does: O(rows inserted), not O(B)). In-place
   * writes are sound because such storage is shared with no other tensor: it is a gather's
   * output held only by this state, and what `scale` / `lora` / `bias` hand out is read within
   * the step that asked for it. Anything a caller set (`setScale`, ...) is never written to.
   */
  insertRows(
    from: LayerAdapterState,
    fromRows: readonly number[],
    toRows: readonly number[],
    B: number,
  ): void {
    if (!this.persistent) {
      throw new Error('internal: insertRows needs a persistent (decode) adapter state');
    }
    const nFrom = (t: tf.Tensor | undefined) =>
      Math.max(1, ...fromRows.map((r) => r + 1), t?.shape[0] ?? 1);
    const rowsOf = (t: tf.Tensor | undefined, n: number, fill: 0 | 1, shape: number[]) =>
      t === undefined
        ? tf.fill([n, ...shape], fill)
        : t.shape[0] === n
          ? t
          : tf.tile(t, [n, ...shape.map(() => 1)]);
    for (const site of new Set<AdapterSite>([...this.scales.keys(), ...from.scales.keys()])) {
      const mine = this.scales.get(site);
      const theirs = from.scales.get(site);
      const rest = ((mine ?? theirs) as tf.Tensor).shape.slice(1); // [1, dim]
      const next = this.placeRows(
        mine,
        () => rowsOf(mine, B, 1, rest),
        () => rowsOf(theirs, nFrom(theirs), 1, rest),
        fromRows,
        toRows,
        B,
      ); // [B, 1, dim]
      this.setStorage(
        next,
        mine,
        (t) => this.setScale(site, t),
        () => this.scales.get(site),
      );
    }
    for (const site of new Set([...this.biases.keys(), ...from.biases.keys()])) {
      const mine = this.biases.get(site);
      const theirs = from.biases.get(site);
      const rest = ((mine ?? theirs) as tf.Tensor).shape.slice(1); // [1, out]
      const next = this.placeRows(
        mine,
        () => rowsOf(mine, B, 0, rest),
        () => rowsOf(theirs, nFrom(theirs), 0, rest),
        fromRows,
        toRows,
        B,
      ); // [B, 1, out]
      this.setStorage(
        next,
        mine,
        (t) => this.setBias(site, t),
        () => this.biases.get(site),
      );
    }
    for (const site of new Set<ProjectionName>([...this.loras.keys(), ...from.loras.keys()])) {
      const mine = this.loras.get(site);
      const theirs = from.loras.get(site);
      const ref = (mine ?? theirs) as LoraRows;
      const inp = ref.a.shape[1] as number;
      const out = ref.b.shape[2] as number;
      // One rank for every row: the larger of the two (a row of lower rank is zero-padded).
      const r = Math.max(mine?.a.shape[2] ?? 0, theirs?.a.shape[2] ?? 0);
      const n = theirs?.a.shape[0] ?? Math.max(...fromRows) + 1;
      const padded = (l: LoraRows | undefined, rows: number, part: 'a' | 'b') => {
        if (l === undefined) return tf.zeros(part === 'a' ? [rows, inp, r] : [rows, r, out]);
        const k = l.a.shape[2] as number;
        if (k === r) return l[part];
        return part === 'a'
          ? tf.pad(l.a, [
              [0, 0],
              [0, 0],
              [0, r - k],
            ])
          : tf.pad(l.b, [
              [0, 0],
              [0, r - k],
              [0, 0],
            ]);
      };
      // Mine is written in place only where its rank already is r.
      const keep = mine !== undefined && mine.a.shape[2] === r ? mine : undefined;
      const a = this.placeRows(
        keep?.a,
        () => padded(mine, B, 'a'),
        () => padded(theirs, n, 'a'),
        fromRows,
        toRows,
        B,
      ); // [B, in, r]
      const b = this.placeRows(
        keep?.b,
        () => padded(mine, B, 'b'),
        () => padded(theirs, n, 'b'),
        fromRows,
        toRows,
        B,
      ); // [B, r, out]
      if (a === mine?.a && b === mine?.b) continue;
      this.setLora(site, { a, b });
      const now = this.loras.get(site) as LoraRows;
      this.rowStorage.add(now.a);
      this.rowStorage.add(now.b);
      if (a !== mine?.a) a.dispose();
      if (b !== mine?.b) b.dispose();
    }
  }

  /**
   * `out[toRows[i]] = theirs[fromRows[i]]`, every other row of `out` mine's (`[B, ...rest]`;
   * theirs `[n, ...rest]`). When `mine` is this state's own row storage of B rows, the rows are
   * copied into it in place where the backend allows and `mine` itself is returned; otherwise
   * (or on a backend without in-place writes) a new tensor: one concat and one gather.
   */
  private placeRows(
    mine: tf.Tensor | undefined,
    mineRows: () => tf.Tensor,
    theirRows: () => tf.Tensor,
    fromRows: readonly number[],
    toRows: readonly number[],
    B: number,
  ): tf.Tensor {
    if (mine !== undefined && this.rowStorage.has(mine) && mine.shape[0] === B) {
      return tf.tidy(() => {
        const per = mine.size / B;
        const theirs = theirRows(); // [n, ...rest]
        const view = tf.reshape(mine, [B, 1, 1, per]); // shares mine's storage
        const written = writeKVSlots(
          view,
          tf.reshape(theirs, [theirs.shape[0] as number, 1, 1, per]),
          fromRows.map((s, i) => ({ src: s, row: toRows[i] as number, start: 0 })),
        );
        // In place: mine holds the rows now. Functional backends: a new [B, ...rest] tensor.
        return written === view ? mine : tf.reshape(written, mine.shape);
      });
    }
    return tf.tidy(() => {
      const index = Array.from({ length: B }, (_, b) => b);
      toRows.forEach((t, i) => {
        index[t] = B + (fromRows[i] as number);
      });
      const both = tf.concat([mineRows(), theirRows()], 0); // [B + n, ...rest]
      return tf.gather(both, tf.tensor1d(index, 'int32')); // [B, ...rest]: fresh storage
    });
  }

  /** Stores `next` (unless it is `mine`, written in place) as a site's row storage. */
  private setStorage(
    next: tf.Tensor,
    mine: tf.Tensor | undefined,
    set: (t: tf.Tensor) => void,
    get: () => tf.Tensor | undefined,
  ): void {
    if (next === mine) return;
    set(next);
    this.rowStorage.add(get() as tf.Tensor);
    next.dispose();
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

/**
 * What `ModelAdapter.modelInput` sees: once per call, before the embedding lookup, with the
 * whole model's state (its `embedding` and `head` are applied by the model, see
 * `EdgeAdapterState`).
 */
export interface ModelInputContext<R = unknown> {
  readonly phase: ForwardPhase;
  readonly request: R;
  /** `[B, T]` float32, as `AdapterContext.tokenMask`. */
  readonly tokenMask: tf.Tensor;
  readonly state: AdapterState;
}

/**
 * The per-row state at the embedding lookup (`AdapterState.embedding`) or at the output head
 * (`AdapterState.head`), batch-first like a layer's:
 *
 *   tables, rows   replacement weights `[V, d]` (a tenant's own embedding table or lm_head weight,
 *                  PEFT's modules_to_save); row b uses `tables[rows[b]]` instead of the backbone's
 *                  (-1: the backbone's). Host indices: one gather / matmul per distinct table.
 *   lora           per-row low-rank delta. Embedding: `a [B or 1, V, r]` (Aᵀ, gathered by token id),
 *                  `b [B or 1, r, d]` (scaling·Bᵀ): x += a[b, id] · b. Head: `a [B or 1, d, r]`,
 *                  `b [B or 1, r, V]`: logits += (h · a) · b. Rows without one: zeros.
 *
 * so the embedding is `(rows[b] < 0 ? E : tables[rows[b]])[id] + a[b, id] · b` (before Gemma's √d,
 * which scales the whole module's output, as PEFT's embed_scale does) and the logits
 * `h · (rows[b] < 0 ? W : tables[rows[b]])ᵀ + (h · a) · b` (before final soft-capping). Empty
 * (the default): the model computes exactly what it computes without an adapter.
 */
export class EdgeAdapterState {
  private tableList: tf.Tensor[] = [];
  private rowList: number[] = [];
  private loraRows: LoraRows | undefined;
  constructor(private readonly persistent: boolean) {}

  /** Replacement weights `[V, d]`. */
  get tables(): readonly tf.Tensor[] {
    return this.tableList;
  }

  /** Per batch row, the index in `tables` (-1: the backbone's). */
  get rows(): readonly number[] {
    return this.rowList;
  }

  get lora(): LoraRows | undefined {
    return this.loraRows;
  }

  get empty(): boolean {
    return this.loraRows === undefined && !this.rowList.some((r) => r >= 0);
  }

  get size(): number {
    return this.tableList.length + (this.loraRows === undefined ? 0 : 2);
  }

  /** Sets (replaces) the replacement tables and each row's index in them. */
  setTables(tables: readonly tf.Tensor[], rows: readonly number[]): void {
    if (rows.some((r) => !Number.isInteger(r) || r < -1 || r >= tables.length))
      throw new Error('internal: an edge row names no table');
    const old = this.tableList;
    this.tableList = tables.map((t) => this.own(t)); // a clone shares the data: old ones may go
    for (const t of old) this.release(t);
    this.rowList = [...rows];
  }

  /** Sets (replaces) the per-row low-rank delta. */
  setLora(rows: LoraRows): void {
    const old = this.loraRows;
    if (old?.a === rows.a && old?.b === rows.b) return;
    this.loraRows = { a: this.own(rows.a), b: this.own(rows.b) };
    this.release(old?.a);
    this.release(old?.b);
  }

  /** The embedding lookup: `x = E[ids]` `[B, T, d]` of the backbone → this state's rows. */
  applyEmbedding(x: tf.Tensor, ids: tf.Tensor): tf.Tensor {
    const [B, T, d] = x.shape as [number, number, number];
    let y = this.override(x, B, (w) => tf.gather(w, ids)); // [B, T, d]
    const l = this.loraRows;
    if (l !== undefined) {
      const V = l.a.shape[1] as number;
      const r = l.a.shape[2] as number;
      let delta: tf.Tensor;
      if (l.a.shape[0] === 1) {
        const rows = tf.gather(tf.reshape(l.a, [V, r]), tf.reshape(ids, [B * T])); // [B·T, r]
        delta = tf.reshape(tf.matMul(rows, tf.reshape(l.b, [r, d])), [B, T, d]); // [B, T, d]
      } else {
        const offset = tf.mul(tf.range(0, B, 1, 'int32'), tf.scalar(V, 'int32')); // [B]
        const index = tf.add(ids, tf.reshape(offset, [B, 1])); // [B, T]: b·V + id
        const rows = tf.gather(tf.reshape(l.a, [B * V, r]), index); // [B, T, r]
        delta = tf.matMul(rows, l.b); // [B, T, d]
      }
      y = tf.add(y, delta);
    }
    return y;
  }

  /** The output head: normalised `h [B, T, d]` and the backbone's weight `[V, d]` → logits `[B, T, V]`. */
  applyHead(h: tf.Tensor, weight: tf.Tensor, head: (w: tf.Tensor) => tf.Tensor): tf.Tensor {
    const [B, T, d] = h.shape as [number, number, number];
    const all = this.rowList.length === B && this.rowList.every((r) => r === this.rowList[0]);
    let y =
      all && (this.rowList[0] as number) >= 0
        ? head(this.tableList[this.rowList[0] as number] as tf.Tensor) // every row replaced by one table
        : this.override(head(weight), B, head); // [B, T, V]
    const l = this.loraRows;
    if (l !== undefined) {
      const r = l.a.shape[2] as number;
      const V = l.b.shape[2] as number;
      const delta =
        l.a.shape[0] === 1
          ? tf.reshape(
              tf.matMul(
                tf.matMul(tf.reshape(h, [B * T, d]), tf.reshape(l.a, [d, r])),
                tf.reshape(l.b, [r, V]),
              ),
              [B, T, V],
            )
          : tf.matMul(tf.matMul(h, l.a), l.b); // [B, T, V]
      y = tf.add(y, delta);
    }
    return y;
  }

  // Rows with a table take `compute(table)`, the others keep `base` [B, T, ·].
  private override(base: tf.Tensor, B: number, compute: (w: tf.Tensor) => tf.Tensor): tf.Tensor {
    let y = base;
    this.tableList.forEach((w, k) => {
      const mine = this.rowList.map((r) => r === k);
      if (!mine.some(Boolean)) return;
      const v = compute(w);
      y = mine.every(Boolean) ? v : tf.where(tf.tensor(mine, [B, 1, 1], 'bool'), v, y);
    });
    return y;
  }

  /** See `AdapterState.insertRows`: tables are shared by reference, LoRA ranks zero-padded. */
  insertRows(
    from: EdgeAdapterState,
    fromRows: readonly number[],
    toRows: readonly number[],
    B: number,
  ): void {
    if (this.size === 0 && from.size === 0) return;
    // Tables: the union, then only those some row uses.
    const mine = this.rowList.length === B ? [...this.rowList] : new Array<number>(B).fill(-1);
    const union = [...this.tableList];
    toRows.forEach((t, i) => {
      const r = from.rowList[fromRows[i] as number] ?? -1;
      if (r < 0) {
        mine[t] = -1;
        return;
      }
      const w = from.tableList[r] as tf.Tensor;
      let k = union.findIndex((u) => u === w || u.dataId === w.dataId);
      if (k < 0) k = union.push(w) - 1;
      mine[t] = k;
    });
    const used = union.filter((_, k) => mine.includes(k));
    this.setTables(
      used,
      mine.map((k) => (k < 0 ? -1 : used.indexOf(union[k] as tf.Tensor))),
    );
    // LoRA rows.
    const a0 = this.loraRows;
    const a1 = from.loraRows;
    if (a0 === undefined && a1 === undefined) return;
    const next = tf.tidy(() => {
      const ref = (a0 ?? a1) as LoraRows;
      const inp = ref.a.shape[1] as number;
      const out = ref.b.shape[2] as number;
      const r = Math.max(a0?.a.shape[2] ?? 0, a1?.a.shape[2] ?? 0);
      const nFrom = Math.max(1, ...fromRows.map((x) => x + 1), a1?.a.shape[0] ?? 1);
      const rowsOf = (l: LoraRows | undefined, n: number) => {
        if (l === undefined) return { a: tf.zeros([n, inp, r]), b: tf.zeros([n, r, out]) };
        const k = l.a.shape[2] as number;
        let a = l.a;
        let b = l.b;
        if (a.shape[0] !== n) {
          a = tf.tile(a, [n, 1, 1]);
          b = tf.tile(b, [n, 1, 1]);
        }
        if (k === r) return { a, b };
        return {
          a: tf.pad(a, [
            [0, 0],
            [0, 0],
            [0, r - k],
          ]),
          b: tf.pad(b, [
            [0, 0],
            [0, r - k],
            [0, 0],
          ]),
        };
      };
      const src = new Array<number>(B).fill(-1);
      toRows.forEach((t, i) => {
        src[t] = fromRows[i] as number;
      });
      const pick = tf.tensor1d(
        src.map((s) => Math.max(s, 0)),
        'int32',
      ); // [B]
      const take = tf.tensor(
        src.map((s) => s >= 0),
        [B, 1, 1],
        'bool',
      );
      const m = rowsOf(a0, B);
      const t = rowsOf(a1, nFrom);
      return {
        a: tf.where(take, tf.gather(t.a, pick), m.a),
        b: tf.where(take, tf.gather(t.b, pick), m.b),
      }; // [B, in, r], [B, r, out]
    });
    this.setLora(next);
    tf.dispose([next.a, next.b]);
  }

  dispose(): void {
    for (const t of this.tableList) this.release(t);
    this.release(this.loraRows?.a);
    this.release(this.loraRows?.b);
    this.tableList = [];
    this.rowList = [];
    this.loraRows = undefined;
  }

  private own(t: tf.Tensor): tf.Tensor {
    return this.persistent ? tf.keep(tf.clone(t)) : t;
  }

  private release(t: tf.Tensor | undefined): void {
    if (this.persistent && t !== undefined && !t.isDisposed) t.dispose();
  }
}
