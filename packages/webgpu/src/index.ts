/**
 * @para/webgpu — fused WGSL kernels for TensorFlow.js's webgpu backend.
 *
 * Registers for `webgpu` the kernel names @para/ops dispatches to (contract in
 * packages/ops/src/fused.ts): `ParaRmsNorm`, `ParaAddRmsNorm`, `ParaSwiGlu` (their Grad kernels
 * too), `ParaRope`, and the forward-only `ParaSwiGluScaled`, `ParaRopeKvWrite` (RoPE + the KV
 * cache write) and `ParaAttention` — each one dispatch where tfjs's generic path runs three to
 * seven. Browser and Node alike (no Node built-ins). @para/core's webgpu start-up installs them
 * when it can load this package; by hand, once the webgpu backend is imported:
 *
 * ```ts
 * import '@tensorflow/tfjs-backend-webgpu';
 * import { installWebGpuKernels } from '@para/webgpu';
 * installWebGpuKernels();
 * await tf.setBackend('webgpu');
 * ```
 */
export {
  installWebGpuKernels,
  uninstallWebGpuKernels,
  WEBGPU_KERNEL_NAMES,
  webGpuKernelsInstalled,
} from './kernels';
export type { WebGpuProgram } from './programs';
