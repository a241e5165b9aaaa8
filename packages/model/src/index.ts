/**
 * @para/model — a LLaMA-family decoder (Llama, Mistral, Qwen2, SmolLM) on TensorFlow.js:
 * Hugging Face config and checkpoints, forward / prefill / decode with a KV cache, batched
 * streaming generation, and adapter sites for PARA, LoRA and IA3. Universal (no Node
 * built-ins); `@para/model/node` adds loading and saving directories.
 */

export {
  ADAPTER_SITES,
  type AdapterContext,
  type AdapterSite,
  AdapterState,
  EdgeAdapterState,
  type ForwardPhase,
  LayerAdapterState,
  type LoraRows,
  type ModelAdapter,
  type ModelInputContext,
} from './adapter';
export {
  type BiasConfig,
  countParameters,
  createConfig,
  type HiddenAct,
  type LayerType,
  MODEL_TYPES,
  type ModelConfig,
  type ModelConfigInit,
  type ModelType,
  type NormLayout,
  parseHfConfig,
  type QkNorm,
  type RopeConfig,
  type RopeScaling,
  rotaryDim,
  toHfConfig,
  validateConfig,
} from './config';
export { type ModelFlops, modelFlops } from './flops';
export {
  type FinishReason,
  type GenerateOptions,
  type GenerateResult,
  generate,
  generateStream,
  type TokenEvent,
} from './generate';
export { decoderLayer, type LayerCall } from './layer';
export {
  type AdapterOptions,
  CausalLM,
  DEFAULT_DECODE_SLOTS,
  DecodeState,
  type DecodeStepOptions,
  type ForwardOptions,
  type InsertRowsOptions,
  type PrefillOptions,
  type TokenIds,
  type TokenMask,
} from './model';
export {
  asUrl,
  loadPretrained,
  loadPretrainedFrom,
  loadTokenizerFrom,
  type Pretrained,
  type PretrainedSource,
} from './pretrained';
export {
  encodeTextInput,
  generateText,
  streamText,
  streamTextRows,
  type TextGenerateOptions,
  type TextInput,
  type TextTokenizer,
} from './text';
export { type TextDecoder, TokenText } from './token-text';
export { loadCheckpoint, loadWeights, readConfig, validateCheckpoint } from './weights/checkpoint';
export { initWeights } from './weights/init';
export { type CheckpointFiles, checkpointFiles, type SaveOptions } from './weights/save';
export {
  allWeightTensors,
  checkpointTensorSpecs,
  fromCheckpointTensors,
  hasBias,
  type LayerWeights,
  type Linear,
  type ModelWeights,
  namedWeights,
  PROJECTIONS,
  type ProjectionName,
  projectionName,
  projectionShape,
  type TensorSpec,
  tensorSpecs,
  toCheckpointTensors,
  weightsFromNamed,
} from './weights/weights';

import type { CheckpointAccess } from '@para/core';
import { CausalLM } from './model';
import { loadCheckpoint } from './weights/checkpoint';

/** Loads a model from any checkpoint location (e.g. `urlCheckpointAccess(baseUrl)` in a browser). */
export async function loadModelFrom(access: CheckpointAccess): Promise<CausalLM> {
  const { config, weights } = await loadCheckpoint(access);
  return new CausalLM(config, weights);
}
