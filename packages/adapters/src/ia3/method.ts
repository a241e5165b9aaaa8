/**
 * IA3 in the adapter-method registry. Its vectors do not depend on the prompt: in a mixed batch
 * each IA3 tenant's rows get its vector at every site it scales.
 */

import * as tf from '@tensorflow/tfjs-core';
import type { PeftAdapter } from '../base/adapter';
import type { AdapterMethod, MixedContribution, RowScale } from '../registry';
import { IA3_DEFAULTS, type Ia3Config, resolveIa3Config } from './config';
import { Ia3Adapter, ia3TensorSpecs } from './model';

export const IA3_METHOD: AdapterMethod<Ia3Config, Ia3Adapter> = {
  peftType: 'IA3',
  name: 'ia3',
  description: 'IA3: learned vectors scale k, v and the input of down_proj (PEFT-compatible)',
  defaults: IA3_DEFAULTS,
  training: { lr: 3e-3 },
  rankKey: null,
  resolveConfig: (raw, file) => resolveIa3Config(raw, file),
  create: (modelConfig, config, options) => Ia3Adapter.fromConfig(modelConfig, config, options),
  tensorSpecs: (config, modelConfig) => ia3TensorSpecs(config, modelConfig),
  owns: (a: PeftAdapter): a is Ia3Adapter => a instanceof Ia3Adapter,
  mixedLayer(groups, layer): MixedContribution {
    const scales: RowScale[] = [];
    for (const { adapter, rows } of groups) {
      for (const site of adapter.sites) {
        const v = adapter.vector(layer, site); // [dim]
        if (v === undefined) continue;
        scales.push({ site, rows, value: tf.tile(tf.reshape(v, [1, -1]), [rows.length, 1]) }); // [n, dim]
      }
    }
    return { scales };
  },
  merge: (adapter, model) => adapter.merge(model),
};
