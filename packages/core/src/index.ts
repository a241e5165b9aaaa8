/**
 * @para/core — the universal entry (no Node built-ins): typed errors, seeded RNG, tensor
 * lifetime helpers, safetensors over any byte source, and backend-selection machinery.
 * Use `@para/core/node` or `@para/core/browser` for `initBackend` with each platform's order.
 */
import './backend/gradients';

export { type GradientRegistration, gradientRegistration } from './backend/gradients';
export {
  BACKEND_NAMES,
  type BackendCandidate,
  type BackendName,
  type BackendReport,
  type BackendState,
  type BackendStatus,
  importOptional,
  parseBackendName,
  type SelectBackendOptions,
  selectBackendFrom,
} from './backend/select';
export {
  installWasmKernelReplacements,
  registerWasmKernels,
  WASM_EXTRA_KERNELS,
  WASM_REPLACED_KERNELS,
} from './backend/wasm-kernels';
export {
  installWasmMatmulFix,
  uninstallWasmMatmulFix,
  wasmMatmulFixInstalled,
} from './backend/wasm-matmul';
export { installWebGpuKernelsFrom, type WebGpuKernelsModule } from './backend/webgpu-kernels';
export * from './errors';
export * from './json';
export * from './rng';
export * from './safetensors/index';
export * from './tensors';
