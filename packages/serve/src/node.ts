/**
 * @para/serve for Node: everything in the universal entry, plus adapter directories on disk
 * (`directorySource`, `unionSource`), the OpenAI-compatible HTTP server (`createServer`,
 * Fastify) and its Files and fine-tuning API (`fineTuning` option; jobs train in worker
 * processes, dist/fine-tune-worker.js).
 */

export * from './index';
export {
  type DirectorySourceOptions,
  directorySource,
  resolveAdapterDir,
} from './node/directory';
export { type FileObject, type FileRecord, FileStore } from './node/files';
export {
  DEFAULT_OWNER,
  type FineTuning,
  type FineTuningContext,
  type FineTuningOptions,
  fineTunedAdaptersDir,
  fineTunedRegistry,
  keyOwner,
  registerFineTuning,
} from './node/fine-tuning';
export { errorBody, HttpError, type OpenAIErrorType } from './node/http-error';
export {
  type FineTuningJob,
  FineTuningJobs,
  type JobCheckpoint,
  type JobEvent,
  type JobRequest,
  type JobStatus,
} from './node/jobs';
export { type ApiKeys, apiKeys, type KeyGrant, loadKeysFile, parseKeys } from './node/keys';
export { createServer, type ParaServer, type ServerOptions } from './node/server';
export { unionSource } from './node/union-source';
