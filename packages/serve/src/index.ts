/**
 * @para/serve — multi-tenant serving of one backbone: continuous batching over one preallocated
 * KV cache whose rows join and leave (PARA, LoRA, IA3 and bare rows in one decode step), and an
 * adapter registry (load on use, memory budget, LRU eviction). Universal (no Node built-ins);
 * `@para/serve/node` adds adapter directories on disk and the OpenAI-compatible HTTP server.
 */

export {
  type CompletionHandle,
  type CompletionRequest,
  type CompletionResult,
  Engine,
  type EngineFinishReason,
  type EngineOptions,
  type EngineStats,
  type TokenLogprob,
  tokenLogprob,
} from './engine';
export { isServeError, ServeError, type ServeErrorCode } from './errors';
export {
  ADAPTER_NAME_PATTERN,
  type AdapterInfo,
  type AdapterLease,
  AdapterRegistry,
  type AdapterSource,
  adapterBytes,
  checkAdapterName,
  memorySource,
  type RegistryOptions,
  type RegistryStats,
} from './registry';
