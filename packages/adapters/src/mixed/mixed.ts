/**
 * Mixed-tenant batches: THE inference path for adapters. One prefill / decode step runs a batch
 * whose rows use different adapters (PARA, IA3, LoRA, of any configs, or any registered method)
 * or none; a single tenant is a batch whose rows all name it. The backbone's matmuls run once
 * for the whole batch; at prefill each method adds its rows' part (see registry.ts) and the
 * batch turns it into the model's typed per-row state (`ctx.state`, see @para/model adapter.ts):
 *
 *   PARA   each row's vectors from its own prompt, IA3 each tenant's vectors: merged into ONE
 *          `[B, 1, dim]` scale per site (rows without one get ones), so a site costs one
 *          broadcast multiply per decode step however many tenants and methods the batch holds.
 *   LoRA   per-row gathered factors A_rows `[B, in, r_max]`, (scaling·B)_rows `[B, r_max, out]`
 *          (ranks zero-padded to the batch's largest, rows without LoRA all zeros): two batched
 *          matmuls per site per decode step. DoRA rows add their magnitude/‖W + s·B·A‖ as the
 *          site's scale and, on biased projections, a per-row bias (`[B, 1, out]`, zeros elsewhere).
 *          LoRA on embed_tokens / lm_head and modules_to_save copies go to the model's embedding
 *          and head state (`AdapterState.embedding` / `.head`): per-row gathered factors and
 *          per-row replacement tables (one gather / head matmul per distinct table).
 *
 * Built once per layer at prefill and kept beside the KV cache; a decode step calls no adapter
 * code at all. Inference only: LoRA dropout never applies here.
 */

import { ParaError } from '@para/core';
import type {
  AdapterContext,
  AdapterSite,
  CausalLM,
  EdgeAdapterState,
  ModelAdapter,
  ModelConfig,
  ModelInputContext,
  ProjectionName,
} from '@para/model';
import { projectionShape } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { PeftAdapter } from '../base/adapter';
import { type AdapterRequest, promptMask } from '../base/request';
import type { AdapterMethod, MixedGroup, RowBias, RowEdge, RowLora, RowScale } from '../registry';

/** Width of the tensor a site carries: a projection's output, or d_ff for down_proj.input. */
function siteDim(m: ModelConfig, site: AdapterSite): number {
  return site === 'down_proj.input' ? m.intermediateSize : projectionShape(m, site)[0];
}

export class MixedBatch {
  readonly modelConfig: ModelConfig;
  /** The adapter of each batch row (null: the bare backbone). */
  readonly rows: readonly (PeftAdapter | null)[];
  /** Per method, its adapters and their rows. */
  private readonly groups: { method: AdapterMethod; groups: MixedGroup<PeftAdapter>[] }[] = [];
  private hooks: ModelAdapter<AdapterRequest> | null = null;

  constructor(model: CausalLM | ModelConfig, rows: readonly (PeftAdapter | null)[]) {
    this.modelConfig = 'config' in model ? model.config : model;
    if (!Array.isArray(rows) || rows.length === 0) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        'a mixed batch needs one entry (an adapter or null) per row',
        { field: 'rows', expected: 'a non-empty array' },
      );
    }
    this.rows = [...rows];
    const byAdapter = new Map<PeftAdapter, number[]>();
    rows.forEach((a, b) => {
      if (a === null) return;
      if (!(a instanceof PeftAdapter)) {
        throw new ParaError('INVALID_ARGUMENT', `row ${b}: not an adapter of @para/adapters`, {
          field: `rows[${b}]`,
          expected: 'an adapter (PARA, LoRA, IA3, …) or null',
        });
      }
      if (a.isDisposed)
        throw new ParaError('INVALID_ARGUMENT', `row ${b}: the adapter was disposed`, {
          field: `rows[${b}]`,
        });
      if (a.isMerged) {
        throw new ParaError(
          'INVALID_ARGUMENT',
          `row ${b}: an adapter merged into the weights cannot serve one row of a batch`,
          { field: `rows[${b}]`, expected: 'an unmerged adapter' },
        );
      }
      const list = byAdapter.get(a);
      if (list === undefined) {
        a.checkModel(this.modelConfig);
        if ('config' in model) a.bindModel(model);
        byAdapter.set(a, [b]);
      } else list.push(b);
    });
    const byMethod = new Map<AdapterMethod, MixedGroup<PeftAdapter>[]>();
    for (const [adapter, r] of byAdapter) {
      const method = adapter.method;
      const list = byMethod.get(method) ?? [];
      list.push({ adapter, rows: r });
      byMethod.set(method, list);
    }
    for (const [method, groups] of byMethod) this.groups.push({ method, groups });
  }

  get batchSize(): number {
    return this.rows.length;
  }

  /** The hooks for `prefill` (and the `decodeStep`s of its state) over this batch (rows in this order). */
  modelAdapter(): ModelAdapter<AdapterRequest> {
    if (this.hooks !== null) return this.hooks;
    this.hooks = {
      sites: [],
      modelInput: (ctx: ModelInputContext<AdapterRequest>) => {
        if (ctx.phase === 'decode') return; // built at prefill
        this.buildEdges(ctx);
      },
      layerInput: (ctx: AdapterContext<AdapterRequest>, h: tf.Tensor) => {
        if (ctx.phase === 'decode') return; // everything per-row was built at prefill
        const B = h.shape[0] as number;
        if (B !== this.rows.length) {
          throw new ParaError('SHAPE_MISMATCH', 'the batch does not match the mixed batch rows', {
            field: 'rows',
            expected: `${this.rows.length} rows`,
            actual: `${B} rows`,
          });
        }
        this.buildLayer(ctx, h);
      },
    };
    return this.hooks;
  }

  /** Every method's part at the embedding and the head → per-row tables and gathered LoRA factors. */
  private buildEdges(ctx: ModelInputContext<AdapterRequest>): void {
    const B = this.rows.length;
    if ((ctx.tokenMask.shape[0] as number) !== B) {
      throw new ParaError('SHAPE_MISMATCH', 'the batch does not match the mixed batch rows', {
        field: 'rows',
        expected: `${B} rows`,
        actual: `${ctx.tokenMask.shape[0]} rows`,
      });
    }
    const embedding: RowEdge[] = [];
    const head: RowEdge[] = [];
    for (const { method, groups } of this.groups) {
      const e = method.mixedEdges?.(groups);
      embedding.push(...(e?.embedding ?? []));
      head.push(...(e?.head ?? []));
    }
    const fill = (target: EdgeAdapterState, pieces: RowEdge[]) => {
      if (pieces.length === 0) return;
      const tables: tf.Tensor[] = [];
      const rowTable = new Array<number>(B).fill(-1);
      for (const p of pieces) {
        if (p.table === undefined) continue;
        let k = tables.indexOf(p.table);
        if (k < 0) k = tables.push(p.table) - 1;
        for (const r of p.rows) rowTable[r] = k;
      }
      if (tables.length > 0) target.setTables(tables, rowTable);
      const loras = pieces.filter((p) => p.lora !== undefined) as (RowEdge & {
        lora: { a: tf.Tensor; b: tf.Tensor };
      })[];
      if (loras.length === 0) return;
      const ref = loras[0] as (typeof loras)[number];
      const inp = ref.lora.a.shape[0] as number;
      const out = ref.lora.b.shape[1] as number;
      const rMax = Math.max(...loras.map((p) => p.lora.a.shape[1] as number));
      const aTable: tf.Tensor[] = [tf.zeros([1, inp, rMax])]; // table row 0: no LoRA
      const bTable: tf.Tensor[] = [tf.zeros([1, rMax, out])];
      const index = new Int32Array(B);
      loras.forEach((p, j) => {
        const r = p.lora.a.shape[1] as number;
        aTable.push(
          tf.reshape(
            tf.pad(p.lora.a, [
              [0, 0],
              [0, rMax - r],
            ]),
            [1, inp, rMax],
          ),
        );
        bTable.push(
          tf.reshape(
            tf.pad(p.lora.b, [
              [0, rMax - r],
              [0, 0],
            ]),
            [1, rMax, out],
          ),
        );
        for (const row of p.rows) index[row] = j + 1;
      });
      const idx = tf.tensor1d(index, 'int32');
      target.setLora({
        a: tf.gather(tf.concat(aTable, 0), idx),
        b: tf.gather(tf.concat(bTable, 0), idx),
      }); // [B, in, r_max], [B, r_max, out]
    };
    fill(ctx.state.embedding, embedding);
    fill(ctx.state.head, head);
  }

  /** Every method's contribution at this layer → one scale per site and gathered LoRA factors. */
  private buildLayer(ctx: AdapterContext<AdapterRequest>, h: tf.Tensor): void {
    if (this.groups.length === 0) return;
    const mask = promptMask(ctx); // [B, T]
    const scales = new Map<AdapterSite, RowScale[]>();
    const loras = new Map<ProjectionName, RowLora[]>();
    const biases = new Map<ProjectionName, RowBias[]>();
    for (const { method, groups } of this.groups) {
      const c = method.mixedLayer(groups, ctx.layer, h, mask, ctx.weights);
      for (const s of c.scales ?? []) scales.set(s.site, [...(scales.get(s.site) ?? []), s]);
      for (const l of c.loras ?? []) loras.set(l.site, [...(loras.get(l.site) ?? []), l]);
      for (const b of c.biases ?? []) biases.set(b.site, [...(biases.get(b.site) ?? []), b]);
    }
    const B = this.rows.length;
    for (const [site, pieces] of biases) {
      const out = projectionShape(this.modelConfig, site)[0];
      const table: tf.Tensor[] = [tf.zeros([1, out])]; // row 0 of the table: no bias
      const index = new Int32Array(B);
      let next = 1;
      for (const p of pieces) {
        table.push(p.value); // [n, out]
        p.rows.forEach((r, k) => {
          index[r] = next + k;
        });
        next += p.rows.length;
      }
      const bias = tf.gather(tf.concat(table, 0), tf.tensor1d(index, 'int32')); // [B, out]
      ctx.state.setBias(site, tf.reshape(bias, [B, 1, out])); // [B, 1, out]
    }
    for (const [site, pieces] of scales) {
      const dim = siteDim(this.modelConfig, site);
      const table: tf.Tensor[] = [tf.ones([1, dim])]; // row 0 of the table: the identity
      const index = new Int32Array(B); // table row of each batch row
      let next = 1;
      for (const p of pieces) {
        table.push(p.value); // [n, dim]
        p.rows.forEach((r, k) => {
          index[r] = next + k;
        });
        next += p.rows.length;
      }
      const scale = tf.reshape(tf.gather(tf.concat(table, 0), tf.tensor1d(index, 'int32')), [
        B,
        1,
        dim,
      ]); // [B, 1, dim]
      ctx.state.setScale(site, scale);
    }
    for (const [site, pieces] of loras) {
      const [out, inp] = projectionShape(this.modelConfig, site);
      const rMax = Math.max(...pieces.map((p) => p.a.shape[1] as number));
      const aTable: tf.Tensor[] = [tf.zeros([1, inp, rMax])]; // table row 0: no LoRA
      const bTable: tf.Tensor[] = [tf.zeros([1, rMax, out])];
      const index = new Int32Array(B);
      pieces.forEach((p, j) => {
        const r = p.a.shape[1] as number;
        aTable.push(
          tf.reshape(
            r === rMax
              ? p.a
              : tf.pad(p.a, [
                  [0, 0],
                  [0, rMax - r],
                ]),
            [1, inp, rMax],
          ),
        );
        bTable.push(
          tf.reshape(
            r === rMax
              ? p.b
              : tf.pad(p.b, [
                  [0, rMax - r],
                  [0, 0],
                ]),
            [1, rMax, out],
          ),
        );
        for (const row of p.rows) index[row] = j + 1;
      });
      const idx = tf.tensor1d(index, 'int32');
      ctx.state.setLora(site, {
        a: tf.gather(tf.concat(aTable, 0), idx),
        b: tf.gather(tf.concat(bTable, 0), idx),
      }); // [B, in, r_max], [B, r_max, out]
    }
  }
}

/** Hooks for a batch whose row `b` uses `rows[b]` (or no adapter when null). */
export function mixedAdapter(
  model: CausalLM | ModelConfig,
  rows: readonly (PeftAdapter | null)[],
): ModelAdapter<AdapterRequest> {
  return new MixedBatch(model, rows).modelAdapter();
}
