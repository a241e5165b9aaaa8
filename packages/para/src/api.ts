/**
 * What both entry points export: the high-level API of @para/model and @para/train, the
 * adapter methods, and the few types a program names.
 */

export {
  type AdapterMethod,
  type AnyAdapter,
  type AnyConfigInit,
  adapterMethod,
  adapterMethods,
  IA3_DEFAULTS,
  type Ia3ConfigInit,
  LORA_DEFAULTS,
  type LoraConfigInit,
  MixedBatch,
  PARA_DEFAULTS,
  type ParaConfigInit,
  registerAdapterMethod,
} from '@para/adapters';
export { isParaError, ParaError, type ParaErrorCode } from '@para/core';
export {
  CausalLM,
  type GenerateOptions,
  type GenerateResult,
  type TextGenerateOptions,
  type TextInput,
  type TokenEvent,
} from '@para/model';
export type { ChatMessage, ParaTokenizer } from '@para/tokenizer';
export {
  type ChatTurn,
  checkRecords,
  type EvalResult,
  type GetPeftModelOptions,
  getPeftModel,
  PeftModel,
  type PeftTrainOptions,
  type PeftTrainResult,
  parseJsonl,
  type TrainEvent,
  type TrainingRecord,
} from '@para/train';
