/**
 * @para/core — the universal entry (no Node built-ins): typed errors, seeded RNG, tensor
 * lifetime helpers, safetensors over any byte source, and backend-selection machinery.
 * Use `@para/core/node` or `@para/core/browser` for `initBackend` with each platform's order.
 */
import './backend/gradients';

export * from './errors';
export * from './rng';
export * from './tensors';
export * from './safetensors/index';
export {
  BACKEND_NAMES,
  type BackendCandidate,
  type BackendName,
  type BackendReport,
  type BackendState,
  type BackendStatus,
  type SelectBackendOptions,
  importOptional,
  parseBackendName,
  selectBackendFrom,
} from './backend/select';
export { gradientRegistration, type GradientRegistration } from './backend/gradients';
export { registerWasmKernels, WASM_EXTRA_KERNELS } from './backend/wasm-kernels';
export { installWasmMatmulFix, uninstallWasmMatmulFix, wasmMatmulFixInstalled } from './backend/wasm-matmul';
