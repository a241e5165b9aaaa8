/**
 * para — PARA (Prompt Aware Representation Adjustment) for JavaScript, in one package: load a
 * Hugging Face backbone, give it a PARA, LoRA or IA3 adapter, train it on records, save it in
 * PEFT's layout, generate text. This is the browser entry (`para` resolves to ./node in Node):
 * sources are URLs, the backend is the best the browser has (WebGPU → WebGL → wasm → cpu).
 *
 *   import { loadPretrained, getPeftModel } from 'para';
 *   const { model } = await loadPretrained('/models/backbone/');
 *   const peft = getPeftModel(model, { peft_type: 'PARA' });
 *   await peft.train(records);
 *   console.log(await peft.generate('Opposite of hot:'));
 */
import { type BackendReport, initBackend } from '@para/core/browser';
import { loadPretrained as loadFrom, type Pretrained, type PretrainedSource } from '@para/model';

export * from './api';
export type { BackendReport, Pretrained, PretrainedSource };

export interface ReadyOptions {
  /** A tfjs backend by name (`webgpu`, `webgl`, `wasm`, `cpu`); default: the best that starts. */
  backend?: string;
}

let started: Promise<BackendReport> | null = null;

/** Starts the backend once (later calls return the same report). */
export function ready(options: ReadyOptions = {}): Promise<BackendReport> {
  if (started === null)
    started = initBackend({
      ...(options.backend === undefined ? {} : { backend: options.backend }),
      webgpuKernels: () => import('@para/webgpu'), // fused WGSL kernels when webgpu starts
    });
  return started;
}

/** `ready()`, then the backbone and its tokenizer from a URL (HTTP range requests). */
export async function loadPretrained(
  source: PretrainedSource,
  options: ReadyOptions = {},
): Promise<Pretrained> {
  await ready(options);
  return loadFrom(source);
}
