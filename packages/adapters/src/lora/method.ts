/**
 * LoRA in the adapter-method registry. In a mixed batch each LoRA tenant contributes its
 * factors per adapted projection (Aᵀ `[in, r]`, scaling·Bᵀ `[r, out]`); the batch gathers them
 * per row (Punica's BGMV idea), so rows of different tenants decode in one step. A DoRA tenant
 * adds its m / ‖W + s·B·A‖ per site as the rows' scale (the norm computed once per adapter
 * and weights, see `LoraAdapter.doraFactor`) and, on a biased projection, (1 − f) ⊙ bias as
 * the rows' bias, so the bias stays outside the magnitude scaling as in PEFT.
 */

import * as tf from '@tensorflow/tfjs-core';
import type { PeftAdapter } from '../base/adapter';
import type {
  AdapterMethod,
  MixedContribution,
  MixedEdges,
  RowBias,
  RowEdge,
  RowLora,
  RowScale,
} from '../registry';
import { LORA_DEFAULTS, type LoraConfig, resolveLoraConfig } from './config';
import { LoraAdapter, loraTensorSpecs } from './model';

export const LORA_METHOD: AdapterMethod<LoraConfig, LoraAdapter> = {
  peftType: 'LORA',
  name: 'lora',
  description: 'LoRA: a low-rank update B·A of chosen projections (PEFT-compatible)',
  defaults: LORA_DEFAULTS,
  training: { lr: 3e-3 },
  rankKey: 'r',
  resolveConfig: (raw, file) => resolveLoraConfig(raw, file),
  create: (modelConfig, config, options) => LoraAdapter.fromConfig(modelConfig, config, options),
  tensorSpecs: (config, modelConfig) => loraTensorSpecs(config, modelConfig),
  owns: (a: PeftAdapter): a is LoraAdapter => a instanceof LoraAdapter,
  mixedLayer(groups, layer, _h, _mask, weights): MixedContribution {
    const loras: RowLora[] = [];
    const scales: RowScale[] = [];
    const biases: RowBias[] = [];
    for (const { adapter, rows } of groups) {
      for (const site of adapter.sites) {
        if (site === 'down_proj.input') continue;
        const m = adapter.module(layer, site);
        const tb = adapter.trainedBias(layer, site); // [out]
        if (m === undefined && tb === undefined) continue;
        if (m !== undefined)
          loras.push({
            site,
            rows,
            a: tf.transpose(m.A),
            b: tf.mul(tf.transpose(m.B), m.scaling),
          }); // [in, r], [r, out]
        if (m?.magnitude == null && tb === undefined) continue;
        // The layer computes (W x + b + s·B·A x) ⊙ scale + bias. DoRA wants
        // f ⊙ (W x + s·B·A x) + b with f = m / ‖W + s·B·A‖ (scale f, bias (1 − f) ⊙ b); a
        // trained bias b' replaces b (bias b' − f ⊙ b, f = 1 without DoRA).
        const lin = weights?.[site];
        if (lin === undefined)
          throw new Error('internal: DoRA and LoRA biases need the layer weights');
        const n = rows.length;
        const f = m?.magnitude == null ? null : adapter.doraFactor(m, lin.weight); // [out]
        if (f !== null) scales.push({ site, rows, value: tf.tile(tf.expandDims(f, 0), [n, 1]) }); // [n, out]
        if (lin.bias === null) continue;
        const scaled = f === null ? lin.bias : tf.mul(f, lin.bias); // [out]
        biases.push({
          site,
          rows,
          value: tf.tile(tf.expandDims(tf.sub(tb ?? lin.bias, scaled), 0), [n, 1]),
        }); // [n, out]
      }
    }
    return { loras, scales, biases };
  },
  mixedEdges(groups): MixedEdges {
    const out = { embedding: [] as RowEdge[], head: [] as RowEdge[] };
    for (const { adapter, rows } of groups) {
      for (const edge of ['embed_tokens', 'lm_head'] as const) {
        const table = adapter.replacement(edge);
        const e = adapter.edge(edge);
        if (table === undefined && e === undefined) continue;
        (edge === 'embed_tokens' ? out.embedding : out.head).push({
          rows,
          table,
          lora:
            e === undefined
              ? undefined
              : { a: tf.transpose(e.A), b: tf.mul(tf.transpose(e.B), e.scaling) }, // [in, r], [r, out]
        });
      }
    }
    return out;
  },
  merge: (adapter, model) => adapter.merge(model),
};
