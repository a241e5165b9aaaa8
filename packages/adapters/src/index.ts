/**
 * @para/adapters — PARA (Prompt Aware Representation Adjustment, arXiv 2502.01033) with LoRA and
 * IA3 baselines behind one interface, for `@para/model`'s adapter sites: configs with PEFT's
 * keys, seeded init, parameter counts, attach → `ModelAdapter` hooks, per-request state in the
 * model's decode state, save/load in PEFT's layout, and mixed-tenant batches. Universal (no
 * Node built-ins); `@para/adapters/node` adds adapter directories on disk.
 */

export { type AnyAdapter, type AnyConfigInit, createAdapter } from './any';
export { layerPrefix, moduleOf, PeftAdapter, projectionPath } from './base/adapter';
export {
  ALL_PROJECTIONS,
  type BaseAdapterConfig,
  ConfigReader,
  INLINE_CONFIG,
  type PeftType,
  parseConfigJson,
  type TargetModule,
} from './base/config';
export { kaimingUniform } from './base/init';
export { type AdapterRequest, checkPromptLengths, promptMask } from './base/request';
export {
  IA3_DEFAULTS,
  type Ia3Config,
  type Ia3ConfigInit,
  ia3ConfigJson,
  ia3ParameterCount,
  ia3Site,
  ia3VectorShape,
  resolveIa3Config,
} from './ia3/config';
export { ia3Scale, ia3Vector } from './ia3/layer';
export { IA3_METHOD } from './ia3/method';
export { Ia3Adapter, type Ia3CreateOptions, ia3TensorName } from './ia3/model';
export {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type AdapterFiles,
  adapterFiles,
  adapterFromBytes,
  adapterFromConfig,
  checkAdapterTensors,
  checkBaseModel,
  type LoadAdapterOptions,
  loadAdapterFrom,
  loadAdapterTensors,
  type SaveAdapterOptions,
  serializeAdapter,
} from './io/peft';
export {
  LORA_DEFAULTS,
  type LoraConfig,
  type LoraConfigInit,
  type LoraModuleSettings,
  loraConfigJson,
  loraModuleSettings,
  loraParameterCount,
  loraScaling,
  loraTargets,
  resolveLoraConfig,
} from './lora/config';
export {
  doraWeightNorm,
  doraWeightNormDetached,
  loraDelta,
  loraDeltaWeight,
  seededDropout,
} from './lora/layer';
export { LORA_METHOD } from './lora/method';
export {
  LoraAdapter,
  type LoraCreateOptions,
  type LoraModule,
  loraTensorNames,
} from './lora/model';
export { adapterMethod, adapterMethods, methodOfConfig, registerAdapterMethod } from './methods';
export { MixedBatch, mixedAdapter } from './mixed/mixed';
export {
  PARA_ACTIVATIONS,
  PARA_DEFAULTS,
  PARA_POOLERS,
  PARA_TARGETS,
  type ParaActivation,
  type ParaConfig,
  type ParaConfigInit,
  type ParaPooler,
  type ParaTarget,
  paraConfigJson,
  paraParameterCount,
  paraTargetDims,
  resolveParaConfig,
} from './para/config';
export { activate, generateVectors, type ParaLayerWeights, paraVectors, pool } from './para/layer';
export { PARA_METHOD } from './para/method';
export { ParaAdapter, type ParaCreateOptions, paraTensorNames } from './para/model';
export { type ParaPromptVectors, paraPromptVectors } from './para/prompt-vectors';
export type {
  AdapterMethod,
  MixedContribution,
  MixedGroup,
  RowLora,
  RowScale,
} from './registry';
