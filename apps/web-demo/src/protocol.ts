/**
 * Messages between the page (main.ts) and the engine's Web Worker (worker.ts). Each request has
 * an id; the worker answers with one `result` or `error` for it, and may send `event`s for it
 * before (generation text, training steps).
 */
import type { BackendReport } from '@para/core';
import type { ExampleRow, Manifest, ModelInfo, TenantInfo } from './engine';

export type Request =
  | {
      type: 'init';
      backend?: string;
      assetBase: string;
      wasmPaths: string;
      /**
       * `generic`: start webgpu without @para/webgpu's fused WGSL kernels (tfjs's generic ops
       * only, `?kernels=generic`); `fused` (default): with them. Other backends ignore it.
       */
      kernels?: 'fused' | 'generic';
    }
  | { type: 'generate'; prompt: string; tenant: string; maxNewTokens?: number }
  | { type: 'side-by-side'; prompt: string; tenants: string[]; maxNewTokens?: number }
  | {
      type: 'train';
      name: string;
      /** Text of a bundled task, or an uploaded file's bytes. */
      jsonl: string | Uint8Array;
      file: string;
      steps: number;
      lr?: number;
      r?: number;
      batchSize?: number;
      seed?: number;
      /** The bundled task the data is, if it is one. */
      task?: string;
    }
  | { type: 'cancel-train' }
  | { type: 'add-adapter'; name: string; config: string; weights: ArrayBuffer; file: string }
  | { type: 'export-adapter'; tenant: string }
  | { type: 'logits'; prompt: string; tenant: string }
  | { type: 'read-task'; task: string; split: 'train' | 'test' }
  | { type: 'bench'; tokens: number }
  /** Decode tokens/s after a warm-up (the page's backend choice). */
  | { type: 'quick-bench'; tokens: number }
  | { type: 'examples'; task: string; count: number }
  | { type: 'run-examples'; rows: ExampleRow[]; maxNewTokens?: number }
  | { type: 'evaluate'; tenant: string; task: string; limit: number }
  | { type: 'vectors'; tenant: string; prompt: string };

export interface InitResult {
  report: BackendReport;
  info: ModelInfo;
  tenants: TenantInfo[];
  tasks: string[];
  manifest: Manifest;
}

export type WorkerEvent =
  | { kind: 'text'; text: string; tokens: number; tokensPerSec: number }
  | { kind: 'train-start'; totalSteps: number; parameters: number }
  | {
      kind: 'train-step';
      step: number;
      totalSteps: number;
      loss: number;
      tokensPerSec: number;
      lr: number;
      etaMs: number;
      elapsedMs: number;
    }
  | { kind: 'load'; loaded: number; total: number | null }
  | { kind: 'eval-progress'; done: number; total: number };

/** A ParaError (or any error) as plain data. */
export interface ErrorData {
  name: string;
  code?: string;
  message: string;
  file?: string;
  field?: string;
  expected?: string;
  actual?: string;
}

export type WorkerMessage =
  | { id: number; type: 'result'; value: unknown }
  | { id: number; type: 'error'; error: ErrorData }
  | { id: number; type: 'event'; event: WorkerEvent };
