/**
 * What both entry points export: the high-level API of @para/model and @para/train, the
 * adapter methods, and the few types a program names.
 */
export { ParaError, isParaError, type ParaErrorCode } from '@para/core';
export { CausalLM, type GenerateOptions, type GenerateResult, type TextGenerateOptions, type TextInput, type TokenEvent } from '@para/model';
export type { ChatMessage, ParaTokenizer } from '@para/tokenizer';
export {
  type AdapterMethod,
  adapterMethod,
  adapterMethods,
  type AnyAdapter,
  type AnyConfigInit,
  IA3_DEFAULTS,
  type Ia3ConfigInit,
  LORA_DEFAULTS,
  type LoraConfigInit,
  MixedBatch,
  PARA_DEFAULTS,
  type ParaConfigInit,
  registerAdapterMethod,
} from '@para/adapters';
export {
  checkRecords,
  type ChatTurn,
  type EvalResult,
  getPeftModel,
  type GetPeftModelOptions,
  parseJsonl,
  PeftModel,
  type PeftTrainOptions,
  type PeftTrainResult,
  type TrainEvent,
  type TrainingRecord,
} from '@para/train';
