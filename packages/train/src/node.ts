/**
 * @para/train for Node: everything in the universal entry, plus files — JSONL datasets,
 * checkpoints on disk, metrics JSONL, the terminal progress bar — pretraining, and the path of
 * the bundled default backbone.
 */
import { saveAdapter } from '@para/adapters/node';
import { directoryAccess } from '@para/model/node';
import { setAdapterDirectoryIO } from './peft-model';

export * from './index';
export {
  CHECKPOINT_DIR,
  checkTrainerState,
  hasCheckpoint,
  type LoadCheckpointOptions,
  latestCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
} from './node/checkpoint';
export {
  acquireOutLock,
  checkOutLock,
  LOCK_FILE,
  loadDataset,
  type OutLock,
  type OutLockInfo,
  readJsonlFile,
  readOutLock,
  readTextFile,
  withOutLock,
} from './node/files';
export {
  type PretrainOptions,
  type PretrainSummary,
  pretrain,
  unigramBaseline,
} from './node/pretrain';
export {
  formatDuration,
  metricsWriter,
  type ProgressOptions,
  progressReporter,
} from './node/progress';
export {
  ACTIVATION_FACTOR,
  ADAPTER_METHODS,
  checkNoInterruptedRun,
  checkStepMemory,
  datasetName,
  defaultMemoryLimit,
  defaultRank,
  type EvalFilesOptions,
  estimateStepMemory,
  evalFromFiles,
  loadBackbone,
  MEMORY_SAFETY_FACTOR,
  type MethodName,
  methodConfig,
  type TrainFilesOptions,
  type TrainFilesResult,
  trainAdapterFromFiles,
  WASM_MEMORY_LIMIT,
} from './node/train-files';

// PeftModel.save(dir) / PeftModel.fromPretrained(model, dir) reach directories through this.
setAdapterDirectoryIO({
  access: directoryAccess,
  save: async (adapter, dir, options) => {
    await saveAdapter(adapter, dir, options);
  },
});
