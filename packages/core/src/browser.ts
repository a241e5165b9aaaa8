/**
 * @para/core for browsers: everything in the universal entry, plus backend selection in the
 * browser order (webgpu → webgl → wasm → cpu). No Node built-ins are reachable from here.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  type BackendCandidate,
  type BackendReport,
  importOptional,
  type SelectBackendOptions,
  selectBackendFrom,
} from './backend/select';
import { installWasmKernelReplacements } from './backend/wasm-kernels';
import { installWasmMatmulFix } from './backend/wasm-matmul';
import {
  installWebGpuKernelsFrom,
  raiseStorageBufferLimit,
  type WebGpuKernelsModule,
} from './backend/webgpu-kernels';

export * from './index';

export interface BrowserBackendOptions extends SelectBackendOptions {
  /** Where the tfjs wasm binaries are served (a prefix URL ending in `/`, as `setWasmPaths` takes). */
  wasmPaths?: string;
  /**
   * Let tfjs-backend-wasm use its threaded build when the page is cross-origin isolated
   * (default false). Its pthread worker breaks once bundled (Vite/rolldown: "ReferenceError: e is
   * not defined" in every worker), so it is opt-in for pages that serve tfjs unbundled.
   */
  wasmThreads?: boolean;
  /**
   * @para/webgpu's fused WGSL kernels, installed when webgpu starts: pass its loader,
   * `() => import('@para/webgpu')` (@para/core cannot import it itself), or `false` to leave
   * them out (as PARA_FUSED=0 does in Node). The backend report says which.
   */
  webgpuKernels?: (() => Promise<WebGpuKernelsModule>) | false;
}

/** Browser backends in priority order. */
export function browserBackendCandidates(options: BrowserBackendOptions = {}): BackendCandidate[] {
  return [
    {
      name: 'webgpu',
      auto: true,
      async load() {
        const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter(): Promise<unknown> } } })
          .navigator?.gpu;
        if (gpu === undefined)
          throw new Error(
            'navigator.gpu is missing (this browser has no WebGPU, or it is disabled)',
          );
        const adapter = await gpu.requestAdapter();
        if (adapter === null) throw new Error('WebGPU found no adapter');
        // The fused kernels bind more storage buffers than WebGPU's default limit of 8.
        if (typeof options.webgpuKernels === 'function') raiseStorageBufferLimit(gpu);
        await importOptional(
          '@tensorflow/tfjs-backend-webgpu',
          () => import('@tensorflow/tfjs-backend-webgpu'),
        );
        const k = options.webgpuKernels;
        return `WebGPU; ${await installWebGpuKernelsFrom(
          k === false ? undefined : k,
          k === false ? 'webgpuKernels: false' : undefined,
        )}`;
      },
    },
    {
      name: 'webgl',
      auto: true,
      async load() {
        await importOptional(
          '@tensorflow/tfjs-backend-webgl',
          () => import('@tensorflow/tfjs-backend-webgl'),
        );
        return 'WebGL';
      },
    },
    {
      name: 'wasm',
      auto: true,
      async load() {
        const wasm = await importOptional(
          '@tensorflow/tfjs-backend-wasm',
          () => import('@tensorflow/tfjs-backend-wasm'),
        );
        if (options.wasmPaths !== undefined) wasm.setWasmPaths(options.wasmPaths);
        if (options.wasmThreads !== true) tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
        installWasmMatmulFix();
        installWasmKernelReplacements();
        return 'WebAssembly (matmul fix)';
      },
    },
    {
      name: 'cpu',
      auto: true,
      async load() {
        await importOptional(
          '@tensorflow/tfjs-backend-cpu',
          () => import('@tensorflow/tfjs-backend-cpu'),
        );
        return 'plain JS';
      },
    },
  ];
}

/** Start the best backend in this browser; an explicit `backend` that cannot start throws. */
export function initBackend(options: BrowserBackendOptions = {}): Promise<BackendReport> {
  return selectBackendFrom('browser', browserBackendCandidates(options), options);
}
