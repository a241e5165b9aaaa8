/**
 * PARA in the adapter-method registry: config, defaults, creation, and its part of a mixed
 * batch — each row's vectors, computed at prefill from that row's prompt.
 *
 * Tenants whose generators have the same shape (pooler, activation, r, biases, targets) are
 * computed together: their rows are pooled at once, then the generator runs with per-row
 * stacked parameters (two batched matmuls) instead of once per tenant.
 */

import * as tf from '@tensorflow/tfjs-core';
import type { PeftAdapter } from '../base/adapter';
import type { AdapterMethod, MixedContribution, MixedGroup, RowScale } from '../registry';
import { PARA_DEFAULTS, type ParaConfig, resolveParaConfig } from './config';
import { generateRows, pool, splitTargets } from './layer';
import { ParaAdapter, paraTensorSpecs } from './model';

const isRange = (xs: readonly number[], n: number) =>
  xs.length === n && xs.every((x, i) => x === i);

/** Tenants sharing a generator shape, and the batch rows they serve. */
interface ParaKind {
  adapters: ParaAdapter[];
  /** Batch rows, grouped by adapter. */
  rows: number[];
  /** For each entry of `rows`, its adapter's index in `adapters`. */
  rowAdapter: number[];
}

function kinds(groups: readonly MixedGroup<ParaAdapter>[]): ParaKind[] {
  const byShape = new Map<string, ParaKind>();
  for (const { adapter, rows } of groups) {
    const c = adapter.config;
    const key = `${c.pooler}|${c.activation}|${c.r}|${c.use_bias}|${c.target_modules.join(',')}`;
    let kind = byShape.get(key);
    if (kind === undefined) {
      kind = { adapters: [], rows: [], rowAdapter: [] };
      byShape.set(key, kind);
    }
    const j = kind.adapters.length;
    kind.adapters.push(adapter);
    for (const row of rows) {
      kind.rows.push(row);
      kind.rowAdapter.push(j);
    }
  }
  return [...byShape.values()];
}

/** One kind's vectors at `layer`: one `[n, dim]` per target over `kind.rows`. */
function kindVectors(kind: ParaKind, layer: number, h: tf.Tensor, mask: tf.Tensor): tf.Tensor[] {
  const first = kind.adapters[0] as ParaAdapter;
  const B = h.shape[0] as number;
  const n = kind.rows.length;
  const idx = isRange(kind.rows, B) ? null : tf.tensor1d(kind.rows, 'int32');
  const hRows = idx === null ? h : tf.gather(h, idx); // [n, T, d]
  const mRows = idx === null ? mask : tf.gather(mask, idx); // [n, T]
  let vs: tf.Tensor[]; // [n, 1, dim] per target
  if (kind.adapters.length === 1) vs = first.vectors(layer, hRows, mRows);
  else {
    // Per-row parameters: stack the tenants' tensors, then gather one per row (skipped when
    // every row is its own tenant, in order).
    const perRow = isRange(kind.rowAdapter, kind.adapters.length)
      ? null
      : tf.tensor1d(kind.rowAdapter, 'int32');
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
    vs = splitTargets(l, first.dims);
  }
  return vs.map((v) => tf.reshape(v, [n, v.shape[2] as number])); // [n, dim]
}

export const PARA_METHOD: AdapterMethod<ParaConfig, ParaAdapter> = {
  peftType: 'PARA',
  name: 'para',
  description: 'PARA: prompt-aware vectors scale q, v and the FFN up projection',
  defaults: PARA_DEFAULTS,
  training: { lr: 3e-3 },
  rankKey: 'r',
  resolveConfig: (raw, file) => resolveParaConfig(raw, file),
  create: (modelConfig, config, options) => ParaAdapter.fromConfig(modelConfig, config, options),
  tensorSpecs: (config, modelConfig) => paraTensorSpecs(config, modelConfig),
  owns: (a: PeftAdapter): a is ParaAdapter => a instanceof ParaAdapter,
  mixedLayer(groups, layer, h, promptMask): MixedContribution {
    const scales: RowScale[] = [];
    for (const kind of kinds(groups)) {
      const vs = kindVectors(kind, layer, h, promptMask);
      (kind.adapters[0] as ParaAdapter).targets.forEach((site, j) => {
        scales.push({ site, rows: kind.rows, value: vs[j] as tf.Tensor });
      });
    }
    return { scales };
  },
  mergeError:
    'PARA cannot be merged into the weights: its vectors are computed from each prompt, so there is no fixed weight change to fold in (serve it unmerged: its decode cost is one multiply per site)',
};
