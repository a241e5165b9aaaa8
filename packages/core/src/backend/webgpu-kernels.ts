/**
 * Installing @para/webgpu's fused WGSL kernels when para starts the webgpu backend. @para/core
 * cannot import @para/webgpu (that package's tests depend on this one), so the module is handed
 * in by whoever can reach it: the Node entry imports it from the application (as @para/blas),
 * the browser entry takes a loader (`initBackend({ webgpuKernels: () => import('@para/webgpu') })`).
 */

/** What is used of @para/webgpu. */
export interface WebGpuKernelsModule {
  installWebGpuKernels(): boolean;
  WEBGPU_KERNEL_NAMES: readonly string[];
}

/**
 * Load and install the kernels; returns the phrase the backend report carries
 * (`fused kernels: @para/webgpu WGSL (ParaRmsNorm, …)` or why not). Never throws: the webgpu
 * backend works without them (tfjs's generic kernels).
 */
export async function installWebGpuKernelsFrom(
  load: (() => Promise<WebGpuKernelsModule>) | undefined,
  disabledBy: string | undefined,
): Promise<string> {
  if (disabledBy !== undefined) return `fused kernels: off (${disabledBy})`;
  if (load === undefined) return 'fused kernels: none (@para/webgpu not provided)';
  let mod: WebGpuKernelsModule;
  try {
    const loaded = (await load()) as WebGpuKernelsModule & { default?: WebGpuKernelsModule };
    // Resolved through require (Node's fallback from the application) it is the CommonJS build.
    mod = typeof loaded.installWebGpuKernels === 'function' ? loaded : (loaded.default ?? loaded);
  } catch (e) {
    const m = e instanceof Error ? e.message : String(e);
    return /Cannot find (module|package)|Failed to resolve|ERR_MODULE_NOT_FOUND/.test(m)
      ? 'fused kernels: none (@para/webgpu is not installed)'
      : `fused kernels: none (@para/webgpu failed to load: ${m.split('\n')[0]})`;
  }
  if (typeof mod?.installWebGpuKernels !== 'function')
    return 'fused kernels: none (@para/webgpu has no installWebGpuKernels)';
  const all = mod.installWebGpuKernels();
  const names = [...(mod.WEBGPU_KERNEL_NAMES ?? [])].filter((n) => !n.endsWith('Grad'));
  return `fused kernels: @para/webgpu WGSL${all ? '' : ' (some names were taken by other kernels)'} (${names.join(', ')})`;
}

interface AdapterLike {
  limits?: { maxStorageBuffersPerShaderStage?: number };
  requestDevice(descriptor?: { requiredLimits?: Record<string, number> }): Promise<unknown>;
}

/**
 * Make `gpu.requestAdapter()`'s adapters request devices with the adapter's own
 * `maxStorageBuffersPerShaderStage` (tfjs-backend-webgpu asks for the default, 8): @para/webgpu's
 * fused RoPE + KV-cache write binds up to 11 buffers (q′, the two caches, q, k, v, cos, sin and
 * the q/k/v scales) and otherwise applies the scales in dispatches of their own. Call before
 * the webgpu backend requests its device. Changes nothing if the objects cannot be patched.
 */
export function raiseStorageBufferLimit(gpu: {
  requestAdapter(options?: Record<string, unknown>): Promise<unknown>;
}): void {
  const request = gpu.requestAdapter.bind(gpu);
  try {
    gpu.requestAdapter = async (options?: Record<string, unknown>) => {
      const adapter = (await request(options)) as AdapterLike | null;
      const max = adapter?.limits?.maxStorageBuffersPerShaderStage;
      if (adapter === null || typeof max !== 'number') return adapter;
      const requestDevice = adapter.requestDevice.bind(adapter);
      try {
        adapter.requestDevice = (descriptor = {}) =>
          requestDevice({
            ...descriptor,
            requiredLimits: { ...descriptor.requiredLimits, maxStorageBuffersPerShaderStage: max },
          });
      } catch {
        // a frozen adapter: the default limit
      }
      return adapter;
    };
  } catch {
    // a read-only requestAdapter: the default limit
  }
}
