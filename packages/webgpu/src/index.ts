/**
 * @para/webgpu — fused WGSL kernels for TensorFlow.js's webgpu backend.
 *
 * Registers `ParaRmsNorm`, `ParaRmsNormGrad`, `ParaSwiGlu`, `ParaSwiGluGrad` and `ParaRope`
 * (forward and inverse) for `webgpu`, the kernel names @para/ops dispatches to (contract in
 * packages/ops/src/fused.ts): each is one WebGPU dispatch where tfjs's generic path runs three to
 * six. Browser and Node alike (no Node built-ins). The caller installs them once the webgpu
 * backend is imported:
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
