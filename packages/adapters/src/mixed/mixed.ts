/**
 * Mixed-tenant batches: ONE forward / prefill / decode step over a batch whose rows use
 * different adapters (PARA, IA3, LoRA, of any configs) or none. The backbone's matmuls run once
 * for the whole batch; each method adds only its per-row part:
 *
 *   PARA   per-row vectors stacked to [B, 1, dim] (rows without PARA at a site get ones),
 *          computed once at prefill from each row's prompt, then one broadcast multiply per
 *          target per decode step: y ⊙ l.
 *   IA3    the same [B, 1, dim] stack of each row's (prompt-independent) vectors.
 *   LoRA   per-row gathered low-rank factors (Punica's BGMV idea): A_rows [B, in, r_max] and
 *          (scaling·B)_rows [B, r_max, out] (ranks zero-padded to the batch's largest, rows
 *          without LoRA all zeros), gathered once at prefill, then two batched matmuls per site
 *          per decode step: y + (x A_rows) B_rows.
 *
 * PARA and IA3 scale tables at the same site are merged into one [B, 1, dim] tensor, so a site
 * costs one multiply however many tenants and methods the batch holds. All per-row tensors are
 * request state in ctx.cache (batch-first, kept from prefill to the decode steps).
 *
 * Inference only: LoRA dropout never applies here. Rows of one adapter are computed together.
 */

import * as tf from '@tensorflow/tfjs-core';
import { ParaError } from '@para/core';
import type { AdapterContext, AdapterSite, CausalLM, ModelAdapter, ModelConfig } from '@para/model';
import { projectionShape } from '@para/model';
import type { AnyAdapter } from '../any';
import type { PeftAdapter } from '../base/adapter';
import type { BaseAdapterConfig, TargetModule } from '../base/config';
import { type AdapterRequest, promptMask } from '../base/request';
import { Ia3Adapter } from '../ia3/model';
import { LoraAdapter } from '../lora/model';
import { generateRows, pool, splitTargets } from '../para/layer';
import { ParaAdapter } from '../para/model';

interface Group<A> {
  adapter: A;
  rows: number[];
}

const SCALE = (site: string) => `mixed.scale.${site}`;
const LORA_A = (site: string) => `mixed.lora.${site}.A`;
const LORA_B = (site: string) => `mixed.lora.${site}.B`;

/** PARA tenants sharing a generator shape, and the batch rows they serve. */
interface ParaKind {
  adapters: ParaAdapter[];
  /** Batch rows, grouped by adapter. */
  rows: number[];
  /** For each entry of `rows`, its adapter's index in `adapters`. */
  rowAdapter: number[];
}

const isRange = (xs: readonly number[], n: number) => xs.length === n && xs.every((x, i) => x === i);

/**
 * One kind's vectors at `layer`: `h [B, T, d]`, `mask [B, T]` → target → `[n, 1, dim]` over
 * `kind.rows`. One tenant: its own `vectors`. Several: pool all their rows at once, then the
 * generator with per-row stacked parameters (two batched matmuls).
 */
function kindVectors(kind: ParaKind, layer: number, h: tf.Tensor, mask: tf.Tensor): Map<string, tf.Tensor> {
  const first = kind.adapters[0] as ParaAdapter;
  const B = h.shape[0] as number;
  const idx = isRange(kind.rows, B) ? null : tf.tensor1d(kind.rows, 'int32');
  const hRows = idx === null ? h : tf.gather(h, idx); // [n, T, d]
  const mRows = idx === null ? mask : tf.gather(mask, idx); // [n, T]
  const targets = first.targets;
  if (kind.adapters.length === 1) {
    const vs = first.vectors(layer, hRows, mRows); // [n, 1, dim] per target
    return new Map(targets.map((t, j) => [t, vs[j] as tf.Tensor]));
  }
  // Per-row parameters: stack the tenants' tensors, then gather one per row (skipped when every
  // row is its own tenant, in order).
  const perRow = isRange(kind.rowAdapter, kind.adapters.length) ? null : tf.tensor1d(kind.rowAdapter, 'int32');
  const rowsOf = (get: (a: ParaAdapter) => tf.Tensor): tf.Tensor => {
    const stacked = tf.stack(kind.adapters.map(get)); // [k, ...]
    return perRow === null ? stacked : tf.gather(stacked, perRow); // [n, ...]
  };
  const { pooler, activation, use_bias } = first.config;
  const poolW = pooler === 'attention' ? rowsOf((a) => a.layer(layer).pool as tf.Tensor) : null; // [n, 1, d]
  const p = pool(hRows, mRows, pooler, poolW); // [n, d]
  const l = generateRows(
    p,
    rowsOf((a) => a.layer(layer).down), // [n, r, d]
    use_bias ? rowsOf((a) => a.layer(layer).downBias as tf.Tensor) : null, // [n, r]
    rowsOf((a) => a.layer(layer).up), // [n, D, r]
    use_bias ? rowsOf((a) => a.layer(layer).upBias as tf.Tensor) : null, // [n, D]
    activation,
  ); // [n, 1, D]
  const vs = splitTargets(l, first.dims);
  return new Map(targets.map((t, j) => [t, vs[j] as tf.Tensor]));
}

/** Width of the tensor a site carries: a projection's output, or d_ff for down_proj.input. */
function siteDim(m: ModelConfig, site: AdapterSite): number {
  return site === 'down_proj.input' ? m.intermediateSize : projectionShape(m, site)[0];
}

export class MixedBatch {
  readonly modelConfig: ModelConfig;
  /** The adapter of each batch row (null: the bare backbone). */
  readonly rows: readonly (AnyAdapter | null)[];
  private readonly para: Group<ParaAdapter>[] = [];
  private readonly ia3: Group<Ia3Adapter>[] = [];
  private readonly lora: Group<LoraAdapter>[] = [];
  private readonly paraKinds: ParaKind[];
  private readonly scaleSites: AdapterSite[];
  private readonly loraSites: AdapterSite[];
  private hooks: ModelAdapter<AdapterRequest> | null = null;

  constructor(model: CausalLM | ModelConfig, rows: readonly (AnyAdapter | null)[]) {
    this.modelConfig = 'config' in model ? model.config : model;
    if (!Array.isArray(rows) || rows.length === 0) {
      throw new ParaError('INVALID_ARGUMENT', 'a mixed batch needs one entry (an adapter or null) per row', { field: 'rows', expected: 'a non-empty array' });
    }
    this.rows = [...rows];
    const groups = new Map<AnyAdapter, number[]>();
    rows.forEach((a, b) => {
      if (a === null) return;
      if (!(a instanceof ParaAdapter || a instanceof LoraAdapter || a instanceof Ia3Adapter)) {
        throw new ParaError('INVALID_ARGUMENT', `row ${b}: not an adapter of @para/adapters`, { field: `rows[${b}]`, expected: 'a ParaAdapter, LoraAdapter, Ia3Adapter or null' });
      }
      if (a.isDisposed) throw new ParaError('INVALID_ARGUMENT', `row ${b}: the adapter was disposed`, { field: `rows[${b}]` });
      if (a instanceof LoraAdapter && a.merged !== null) {
        throw new ParaError('INVALID_ARGUMENT', `row ${b}: a merged LoRA adapter cannot serve one row of a batch`, { field: `rows[${b}]`, expected: 'an unmerged LoRA adapter' });
      }
      const list = groups.get(a);
      if (list === undefined) {
        (a as PeftAdapter<BaseAdapterConfig>).checkModel(this.modelConfig);
        groups.set(a, [b]);
      } else list.push(b);
    });
    const scaleSites = new Set<AdapterSite>();
    const loraSites = new Set<AdapterSite>();
    for (const [adapter, r] of groups) {
      if (adapter instanceof ParaAdapter) this.para.push({ adapter, rows: r });
      else if (adapter instanceof Ia3Adapter) this.ia3.push({ adapter, rows: r });
      else this.lora.push({ adapter, rows: r });
      for (const s of adapter.sites) (adapter instanceof LoraAdapter ? loraSites : scaleSites).add(s);
    }
    this.scaleSites = [...scaleSites];
    this.loraSites = [...loraSites];
    // PARA tenants with the same generator shape (pooler, activation, r, biases, targets) are
    // computed together with per-row stacked parameters.
    const kinds = new Map<string, ParaKind>();
    for (const { adapter, rows: r } of this.para) {
      const c = adapter.config;
      const key = `${c.pooler}|${c.activation}|${c.r}|${c.use_bias}|${c.target_modules.join(',')}`;
      let kind = kinds.get(key);
      if (kind === undefined) {
        kind = { adapters: [], rows: [], rowAdapter: [] };
        kinds.set(key, kind);
      }
      const j = kind.adapters.length;
      kind.adapters.push(adapter);
      for (const row of r) {
        kind.rows.push(row);
        kind.rowAdapter.push(j);
      }
    }
    this.paraKinds = [...kinds.values()];
  }

  get batchSize(): number {
    return this.rows.length;
  }

  /** The hooks for `prefill` / `decodeStep` / `forward` over this batch (rows in this order). */
  modelAdapter(): ModelAdapter<AdapterRequest> {
    if (this.hooks !== null) return this.hooks;
    const sites = [...new Set([...this.scaleSites, ...this.loraSites])];
    this.hooks = {
      sites,
      layerInput: (ctx: AdapterContext<AdapterRequest>, h: tf.Tensor) => {
        if (ctx.phase === 'decode') return; // everything per-row was built at prefill
        const B = h.shape[0] as number;
        if (B !== this.rows.length) {
          throw new ParaError('SHAPE_MISMATCH', 'the batch does not match the mixed batch rows', { field: 'rows', expected: `${this.rows.length} rows`, actual: `${B} rows` });
        }
        this.buildScales(ctx, h);
        this.buildLora(ctx);
      },
      transform: (ctx: AdapterContext<AdapterRequest>, site: AdapterSite, y: tf.Tensor, x: tf.Tensor) => {
        let out = y; // [B, T, dim]
        const A = ctx.cache.get(LORA_A(site)); // [B, in, r]
        if (A !== undefined) {
          const Bm = ctx.cache.get(LORA_B(site)) as tf.Tensor; // [B, r, out]
          out = tf.add(out, tf.matMul(tf.matMul(x, A), Bm)); // [B, T, out]
        }
        const s = ctx.cache.get(SCALE(site)); // [B, 1, dim]
        if (s !== undefined) out = tf.mul(out, s);
        return out;
      },
    };
    return this.hooks;
  }

  /** PARA and IA3 rows → one [B, 1, dim] scale per site (ones for other rows). */
  private buildScales(ctx: AdapterContext<AdapterRequest>, h: tf.Tensor): void {
    if (this.scaleSites.length === 0) return;
    const B = this.rows.length;
    const layer = ctx.layer;
    // PARA vectors of each kind's rows, computed once per layer: [n, 1, dim] per target.
    const paraVectors = new Map<ParaKind, Map<string, tf.Tensor>>();
    if (this.paraKinds.length > 0) {
      const mask = promptMask(ctx); // [B, T]
      for (const kind of this.paraKinds) paraVectors.set(kind, kindVectors(kind, layer, h, mask));
    }
    for (const site of this.scaleSites) {
      const dim = siteDim(this.modelConfig, site);
      const pieces: tf.Tensor[] = [tf.ones([1, dim])]; // row 0 of the table: the identity
      const index = new Int32Array(B); // table row of each batch row
      let next = 1;
      for (const kind of this.paraKinds) {
        const v = paraVectors.get(kind)?.get(site);
        if (v === undefined) continue;
        pieces.push(tf.reshape(v, [kind.rows.length, dim])); // [n, dim]
        kind.rows.forEach((r, k) => {
          index[r] = next + k;
        });
        next += kind.rows.length;
      }
      for (const { adapter, rows } of this.ia3) {
        const v = adapter.vector(layer, site); // [dim]
        if (v === undefined) continue;
        pieces.push(tf.reshape(v, [1, dim]));
        for (const r of rows) index[r] = next;
        next += 1;
      }
      if (next === 1) continue; // no tenant scales this site
      const table = tf.concat(pieces, 0); // [next, dim]
      const scale = tf.reshape(tf.gather(table, tf.tensor1d(index, 'int32')), [B, 1, dim]); // [B, 1, dim]
      ctx.cache.set(SCALE(site), scale);
    }
  }

  /** LoRA rows → per-row factors A_rows [B, in, r_max], (s·B)_rows [B, r_max, out] per site. */
  private buildLora(ctx: AdapterContext<AdapterRequest>): void {
    if (this.loraSites.length === 0) return;
    const B = this.rows.length;
    const layer = ctx.layer;
    for (const site of this.loraSites) {
      const mods = this.lora.map((g) => ({ g, m: g.adapter.module(layer, site as TargetModule) })).filter((e) => e.m !== undefined);
      if (mods.length === 0) continue;
      const [out, inp] = projectionShape(this.modelConfig, site as TargetModule);
      const rMax = Math.max(...mods.map((e) => e.g.adapter.config.r));
      const aPieces: tf.Tensor[] = [tf.zeros([1, inp, rMax])]; // table row 0: no LoRA
      const bPieces: tf.Tensor[] = [tf.zeros([1, rMax, out])];
      const index = new Int32Array(B);
      mods.forEach(({ g, m }, j) => {
        const mod = m as NonNullable<typeof m>;
        const r = g.adapter.config.r;
        const a = tf.transpose(mod.A); // [in, r]
        const bT = tf.mul(tf.transpose(mod.B), g.adapter.scaling); // [r, out]
        aPieces.push(tf.reshape(r === rMax ? a : tf.pad(a, [[0, 0], [0, rMax - r]]), [1, inp, rMax]));
        bPieces.push(tf.reshape(r === rMax ? bT : tf.pad(bT, [[0, rMax - r], [0, 0]]), [1, rMax, out]));
        for (const row of g.rows) index[row] = j + 1;
      });
      const idx = tf.tensor1d(index, 'int32');
      ctx.cache.set(LORA_A(site), tf.gather(tf.concat(aPieces, 0), idx)); // [B, in, r_max]
      ctx.cache.set(LORA_B(site), tf.gather(tf.concat(bPieces, 0), idx)); // [B, r_max, out]
    }
  }
}

/** Hooks for a batch whose row `b` uses `rows[b]` (or no adapter when null). */
export function mixedAdapter(model: CausalLM | ModelConfig, rows: readonly (AnyAdapter | null)[]): ModelAdapter<AdapterRequest> {
  return new MixedBatch(model, rows).modelAdapter();
}
