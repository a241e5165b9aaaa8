/**
 * The Web Worker that owns TensorFlow.js and the engine, so the page stays responsive while a
 * model generates or trains. It starts the best backend (webgpu → webgl → wasm → cpu, or the
 * one asked for) through @para/core's browser entry and answers protocol.ts requests.
 */
import { initBackend, type ParaError } from '@para/core/browser';
import { Engine, urlAssets } from './engine';
import type { ErrorData, InitResult, Request, WorkerEvent, WorkerMessage } from './protocol';

let engine: Engine | null = null;
let training: AbortController | null = null;

const post = (m: WorkerMessage, transfer: Transferable[] = []) =>
  (self as unknown as Worker).postMessage(m, transfer);
const emit = (id: number, event: WorkerEvent) => post({ id, type: 'event', event });

function errorData(e: unknown): ErrorData {
  if (e instanceof Error) {
    const p = e as Partial<ParaError>;
    const d: ErrorData = { name: e.name, message: e.message };
    for (const k of ['code', 'file', 'field', 'expected', 'actual'] as const) {
      const v = p[k];
      if (typeof v === 'string') d[k] = v;
    }
    return d;
  }
  return { name: 'Error', message: String(e) };
}

function need(): Engine {
  if (engine === null) throw new Error('the model is not loaded yet');
  return engine;
}

async function handle(id: number, r: Request): Promise<unknown> {
  switch (r.type) {
    case 'init': {
      const report = await initBackend({
        ...(r.backend ? { backend: r.backend } : {}),
        wasmPaths: r.wasmPaths,
        // @para/webgpu's fused WGSL kernels, or (?kernels=generic) tfjs's generic ops only.
        webgpuKernels: r.kernels === 'generic' ? false : () => import('@para/webgpu'),
        probe: true,
      });
      engine = await Engine.load(urlAssets(r.assetBase), (loaded, total) =>
        emit(id, { kind: 'load', loaded, total }),
      );
      const tenants = await engine.loadBundledAdapters();
      const result: InitResult = {
        report,
        info: engine.info,
        tenants,
        tasks: engine.manifest.tasks.map((t) => t.name),
        manifest: engine.manifest,
      };
      return result;
    }
    case 'generate':
      return need().generate({
        prompt: r.prompt,
        tenant: r.tenant,
        ...(r.maxNewTokens === undefined ? {} : { maxNewTokens: r.maxNewTokens }),
        onText: (text, tokens, tokensPerSec) =>
          emit(id, { kind: 'text', text, tokens, tokensPerSec }),
      });
    case 'side-by-side':
      return need().sideBySide(r.prompt, r.tenants, r.maxNewTokens);
    case 'train': {
      const e = need();
      training = new AbortController();
      try {
        return await e.train({
          name: r.name,
          jsonl: r.jsonl,
          file: r.file,
          steps: r.steps,
          ...(r.lr === undefined ? {} : { lr: r.lr }),
          ...(r.r === undefined ? {} : { r: r.r }),
          ...(r.batchSize === undefined ? {} : { batchSize: r.batchSize }),
          ...(r.seed === undefined ? {} : { seed: r.seed }),
          ...(r.task === undefined ? {} : { task: r.task }),
          signal: training.signal,
          onEvent: (ev) => {
            if (ev.type === 'start')
              emit(id, {
                kind: 'train-start',
                totalSteps: ev.totalSteps,
                parameters: ev.parameters,
              });
            if (ev.type === 'step')
              emit(id, {
                kind: 'train-step',
                step: ev.step,
                totalSteps: ev.totalSteps,
                loss: ev.loss,
                tokensPerSec: ev.tokensPerSec,
                lr: ev.lr,
                etaMs: ev.etaMs,
                elapsedMs: ev.elapsedMs,
              });
          },
        });
      } finally {
        training = null;
      }
    }
    case 'cancel-train':
      training?.abort();
      return training !== null;
    case 'add-adapter':
      return need().addAdapter(r.name, r.config, r.weights, 'uploaded', r.file);
    case 'export-adapter':
      return need().exportAdapter(r.tenant);
    case 'logits':
      return Array.from(await need().logits(r.prompt, r.tenant));
    case 'bench':
      return need().bench(r.tokens);
    case 'quick-bench':
      return need().quickBench(r.tokens);
    case 'examples':
      return (await need().records(r.task, 'test')).slice(0, r.count);
    case 'run-examples':
      return need().runExamples(r.rows, r.maxNewTokens);
    case 'evaluate':
      return need().evaluate(r.tenant, r.task, r.limit, (done, total) =>
        emit(id, { kind: 'eval-progress', done, total }),
      );
    case 'vectors':
      return need().vectors(r.tenant, r.prompt);
    case 'read-task': {
      const e = need();
      const task = e.manifest.tasks.find((t) => t.name === r.task);
      if (task === undefined) throw new Error(`no bundled task "${r.task}"`);
      return { file: task[r.split], text: await e.assets.text(task[r.split]) };
    }
  }
}

// Requests run one at a time, in order (one model, one backend); cancel-train jumps the queue.
let queue: Promise<unknown> = Promise.resolve();
self.onmessage = (m: MessageEvent<{ id: number; request: Request }>) => {
  const { id, request } = m.data;
  const run = async () => {
    try {
      const value = await handle(id, request);
      post({ id, type: 'result', value });
    } catch (e) {
      post({ id, type: 'error', error: errorData(e) });
    }
  };
  if (request.type === 'cancel-train') void run();
  else queue = queue.then(run);
};
