/**
 * @para/blas — OpenBLAS for TensorFlow.js's wasm backend on Node.
 *
 * A Node-API addon over OpenBLAS's CBLAS replaces the wasm backend's `BatchMatMul` and
 * `_FusedMatMul` kernels, computing directly on the wasm heap (batched sgemm with broadcast
 * strides, sgemv for M or N = 1, fused bias and activation), and registers fused kernels that
 * @para/ops dispatches to (RMSNorm, SwiGLU, RoPE and their gradients, multi-threaded C on the
 * heap; PARA_FUSED=0 leaves them out). Loading never throws: where the
 * addon or libopenblas cannot load, `loadBlas()` says why and nothing is replaced.
 *
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import '@tensorflow/tfjs-backend-wasm';
 * import { installBlasKernels, loadBlas } from '@para/blas';
 * await tf.setBackend('wasm');
 * if (!installBlasKernels()) console.warn(loadBlas().reason);
 * ```
 */
export {
  type Activation,
  type BlasStatus,
  type HeapMatMulSpec,
  type HeapOperand,
  heapMatMul,
  loadBlas,
  OPENBLAS_THREAD_TIMEOUT,
  sgemm,
} from './addon';
export {
  FUSED_KERNEL_NAMES,
  fusedAttentionIsa,
  fusedKernelsInstalled,
  fusedKernelsProblem,
  fusedThreads,
  installFusedKernels,
  uninstallFusedKernels,
} from './fused';
export { blasKernelsInstalled, installBlasKernels, uninstallBlasKernels } from './kernels';
