/**
 * @para/train for Node: everything in the universal entry, plus files — JSONL datasets,
 * checkpoints on disk, metrics JSONL, the terminal progress bar — pretraining, and the path of
 * the bundled default backbone.
 */
export * from './index';
export { CHECKPOINT_DIR, latestCheckpoint, loadCheckpoint, saveCheckpoint } from './node/checkpoint';
export { formatDuration, metricsWriter, type ProgressOptions, progressReporter } from './node/progress';
export { type PretrainOptions, type PretrainSummary, pretrain, unigramBaseline } from './node/pretrain';
export { defaultBackboneDir, loadDataset, readJsonlFile } from './node/files';
export {
  ADAPTER_METHODS,
  type AdapterMethod,
  DEFAULT_RANK,
  datasetName,
  type EvalFilesOptions,
  evalFromFiles,
  loadBackbone,
  methodConfig,
  type TrainFilesOptions,
  type TrainFilesResult,
  trainAdapterFromFiles,
} from './node/train-files';
