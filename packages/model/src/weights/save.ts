/**
 * Saving in the Hugging Face layout: `config.json` + `model.safetensors` with transformers'
 * tensor names and `{"format": "pt"}` metadata, so transformers (and this package) load it.
 * The byte-level writing is the platform's (`@para/model/node` writes files atomically).
 */

import type { FloatStorageDtype } from '@para/core';
import type * as tf from '@tensorflow/tfjs-core';
import { type ModelConfig, toHfConfig } from '../config';
import { type ModelWeights, namedWeights, toCheckpointTensors } from './weights';

export interface SaveOptions {
  /** Storage dtype of the weights (default F32). */
  dtype?: FloatStorageDtype;
}

export interface CheckpointFiles {
  /** `config.json` text. */
  configJson: string;
  /** Tensors by HF name (`lm_head.weight` omitted when tied, as transformers saves). */
  tensors: Record<string, tf.Tensor>;
  /**
   * Tensors made for the file rather than the model's own (Phi-3's fused qkv_proj /
   * gate_up_proj): dispose them once written.
   */
  made: tf.Tensor[];
  /** safetensors `__metadata__`. */
  metadata: Record<string, string>;
  dtype: FloatStorageDtype;
}

const TORCH_DTYPE: Record<FloatStorageDtype, string> = {
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
};

export function checkpointFiles(
  config: ModelConfig,
  weights: ModelWeights,
  options: SaveOptions = {},
): CheckpointFiles {
  const dtype = options.dtype ?? 'F32';
  const hf = toHfConfig(config);
  hf.torch_dtype = TORCH_DTYPE[dtype];
  if ('dtype' in hf) hf.dtype = TORCH_DTYPE[dtype];
  const { tensors, made } = toCheckpointTensors(config, namedWeights(config, weights));
  return {
    configJson: `${JSON.stringify(hf, null, 2)}\n`,
    tensors,
    made,
    metadata: { format: 'pt' },
    dtype,
  };
}
