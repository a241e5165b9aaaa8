/**
 * LoRA in the adapter-method registry. In a mixed batch each LoRA tenant contributes its
 * factors per adapted projection (Aᵀ `[in, r]`, scaling·Bᵀ `[r, out]`); the batch gathers them
 * per row (Punica's BGMV idea), so rows of different tenants decode in one step.
 */

import * as tf from '@tensorflow/tfjs-core';
import type { PeftAdapter } from '../base/adapter';
import type { AdapterMethod, MixedContribution, RowLora } from '../registry';
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
  mixedLayer(groups, layer): MixedContribution {
    const loras: RowLora[] = [];
    for (const { adapter, rows } of groups) {
      for (const site of adapter.sites) {
        if (site === 'down_proj.input') continue;
        const m = adapter.module(layer, site);
        if (m === undefined) continue;
        loras.push({
          site,
          rows,
          a: tf.transpose(m.A),
          b: tf.mul(tf.transpose(m.B), m.scaling),
        }); // [in, r], [r, out]
      }
    }
    return { loras };
  },
  merge: (adapter, model) => adapter.merge(model),
};
