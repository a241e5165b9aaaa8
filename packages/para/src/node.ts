/**
 * para in Node: the same API as the browser entry, with directory paths for models and
 * adapters (`PeftModel.save(dir)`, `PeftModel.fromPretrained(model, dir)`) and the Node backend
 * order: tensorflow (when @tensorflow/tfjs-node(-gpu) is installed and loads) → wasm (with
 * OpenBLAS matmuls through @para/blas where libopenblas0 is installed) → cpu.
 */
import { type BackendReport, initBackend, installOptionalBlas } from '@para/core/node';
import {
  loadPretrained as loadFrom,
  type Pretrained,
  type PretrainedSource,
} from '@para/model/node';
// Registers directory support for PeftModel.save / fromPretrained.
import '@para/train/node';

export * from './api';
export type { BackendReport, Pretrained, PretrainedSource };

export interface ReadyOptions {
  /** A tfjs backend by name (`tensorflow`, `wasm`, `cpu`, `webgpu`); default: PARA_BACKEND, else the best that starts. */
  backend?: string;
}

/** The backend report of `ready()`, with what runs the wasm backend's matmuls. */
export interface NodeBackendReport extends BackendReport {
  /** What runs the wasm backend's matmuls (OpenBLAS via @para/blas, or why not); null on other backends. */
  matmul: string | null;
}

let started: Promise<NodeBackendReport> | null = null;

/** Starts the backend once (later calls return the same report). */
export function ready(options: ReadyOptions = {}): Promise<NodeBackendReport> {
  if (started !== null) return started;
  started = (async () => {
    const report = await initBackend({
      ...(options.backend === undefined ? {} : { backend: options.backend }),
      webgpuKernels: () => import('@para/webgpu'), // fused WGSL kernels when webgpu starts
    });
    const matmul = report.active === 'wasm' ? await installOptionalBlas() : null;
    return { ...report, matmul };
  })();
  return started;
}

/** `ready()`, then the backbone and its tokenizer from a directory (or a URL). */
export async function loadPretrained(
  source: PretrainedSource,
  options: ReadyOptions = {},
): Promise<Pretrained> {
  await ready(options);
  return loadFrom(source);
}
