/**
 * @para/train — training for para, platform-neutral (Node, and a browser Web Worker): JSONL
 * datasets and tokenisation, length-bucketed left-padded batches with completion-only loss
 * masks and per-row prompt lengths, AdamW, schedules, clipping, gradient accumulation,
 * evaluation (loss and exact match), keep-best, early stopping and exactly resumable training
 * state. `@para/train/node` adds files, checkpoints, progress bars and pretraining.
 */
export {
  type Batch,
  batchShape,
  bucketedBatches,
  collate,
  collateWindows,
  microBatches,
  sortedBatches,
  type TokenizedExample,
} from './batch';
export {
  type ChatTurn,
  checkRecords,
  type DatasetRecord,
  type DecodeTextOptions,
  decodeUtf8Text,
  firstInvalidUtf8,
  parseJsonl,
  parseJsonlBytes,
  recordText,
  type SkippedExample,
  skippedMessage,
  type TokenizedDataset,
  type TokenizeOptions,
  type TokenizerLike,
  type TrainingRecord,
  tokenizeRecords,
} from './data';
export {
  datasetLoss,
  type EvalResult,
  type EvaluateOptions,
  evaluateDataset,
  outputText,
  type Prediction,
  stopTokenIds,
} from './evaluate';
export {
  disposeCheckpoint,
  FINETUNE_DEFAULTS,
  type FinetuneOptions,
  type FinetuneResult,
  finetune,
} from './finetune';
export { weightedCrossEntropy } from './loss';
export { AdamW, type AdamWOptions, type AdamWState, clipScale, globalNorm } from './optim';
export {
  type AdapterDirectoryIO,
  type GetPeftModelOptions,
  getPeftModel,
  PeftModel,
  type PeftTrainOptions,
  type PeftTrainResult,
  setAdapterDirectoryIO,
} from './peft-model';
export {
  ExamplePlan,
  type ExamplePlanOptions,
  epochRng,
  WindowPlan,
  type WindowPlanOptions,
} from './plan';
export {
  BACKBONE_PRESETS,
  type BackbonePreset,
  type BackbonePresetName,
  BUNDLED_BACKBONE_NAME,
  backbonePreset,
  DEFAULT_CHAT_TEMPLATE,
  presetModelConfig,
} from './presets';
export {
  DECAY_KINDS,
  type DecayKind,
  makeSchedule,
  type Schedule,
  type ScheduleOptions,
} from './schedule';
export {
  adapterTrainable,
  fullTrainable,
  type TrainableAdapter,
  type TrainableModel,
} from './trainable';
export {
  type BestMetric,
  type CheckpointData,
  type DataPlan,
  type EvalMetrics,
  type RunOptions,
  type RunResult,
  runTraining,
  type StepResult,
  type TrainEvent,
  Trainer,
  type TrainerOptions,
  type TrainerStateJson,
} from './trainer';
