/**
 * Seeded random initialisation, as transformers' `LlamaPreTrainedModel._init_weights`: linear
 * and embedding weights ~ N(0, initializer_range²), biases 0, RMSNorm weights 1 (0 for Gemma's
 * `(1 + w)` norms), the padding
 * token's embedding row 0. The same seed gives the same weights on every backend.
 */

import { Rng } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from '../config';
import { type ModelWeights, tensorSpecs, weightsFromNamed } from './weights';

export function initWeights(config: ModelConfig, seed: number | string = 0): ModelWeights {
  const rng = new Rng(seed);
  const std = config.initializerRange;
  const named: Record<string, tf.Tensor> = {};
  for (const { name, shape } of tensorSpecs(config)) {
    // One forked stream per tensor, in HF module order: adding a tensor type later does not
    // shift the values of the others.
    const r = rng.fork(name);
    if (name.endsWith('norm.weight'))
      // Gemma stores (1 + w) norms as w: HF initialises them to 0, i.e. the identity scale.
      named[name] = config.normUnitOffset ? tf.zeros(shape) : tf.ones(shape); // [d] or [hd]
    else if (name.endsWith('.bias'))
      named[name] = tf.zeros(shape); // [out]
    else if (
      name === 'model.embed_tokens.weight' &&
      config.padTokenId !== null &&
      config.padTokenId < config.vocabSize
    ) {
      const values = r.normalArray((shape[0] as number) * (shape[1] as number), 0, std);
      values.fill(
        0,
        config.padTokenId * (shape[1] as number),
        (config.padTokenId + 1) * (shape[1] as number),
      );
      named[name] = tf.tensor2d(values, shape as [number, number]); // [V, d]
    } else named[name] = r.normalTensor(shape, 0, std); // [out, in] or [V, d]
  }
  return weightsFromNamed(config, named);
}
