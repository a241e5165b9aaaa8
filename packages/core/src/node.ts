/**
 * @para/core for Node: everything in the universal entry, plus backend selection with the Node
 * order (tensorflow → wasm → cpu; webgpu through Dawn on request), PARA_BACKEND, where
 * tfjs-node is installed and whether its binding is built, and safetensors files read through
 * file handles and written atomically.
 */
import { type BackendReport, type SelectBackendOptions, selectBackendFrom } from './backend/select';
import { type NodeBackendOptions, nodeBackendCandidates } from './node/backends';

export * from './index';
export {
  importFromApp,
  installOptionalBlas,
  installOptionalWebGpuKernels,
  type NodeBackendOptions,
  nodeBackendCandidates,
  openblasCoretypeWarning,
  tensorflowSetupCommand,
} from './node/backends';
export * from './node/safetensors-node';
export * from './node/tensorflow';

/**
 * Start the best backend on Node. `options.backend` wins, then the PARA_BACKEND environment
 * variable; an explicit choice that cannot start throws BACKEND_UNAVAILABLE.
 */
export function initBackend(
  options: SelectBackendOptions & NodeBackendOptions = {},
): Promise<BackendReport> {
  return selectBackendFrom('node', nodeBackendCandidates(options), {
    envBackend: process.env.PARA_BACKEND,
    ...options,
  });
}
