/**
 * The serving benchmark behind `para bench serve` (Node: it runs the HTTP server and a load
 * generator).
 *
 * One `@para/serve` server on loopback (the same `createServer` `para serve` runs) serves one
 * backbone and, per tenant, a PARA adapter and a LoRA adapter (matched parameter count),
 * written as PEFT directories into a temporary adapters root and loaded through the registry as
 * `para serve` loads them. A load generator in a worker thread (its own event loop, so reading
 * the streams does not wait on the server's decode steps) runs C closed-loop clients: each
 * client is its own tenant and sends R requests one after another, each a streamed completion
 * of a P-token prompt with `max_tokens` N, greedy, `ignore_eos` (every request decodes N
 * tokens). Per (C, variant):
 *
 *   output tokens/s  completion tokens of all requests / wall seconds of the phase
 *   requests/s       requests / wall seconds
 *   TTFT             request sent → first streamed text, p50 / p99 (ms)
 *   ITL              gaps between a request's streamed text chunks, p50 / p99 (ms)
 *
 * Variants: bare (the base model), para (PARA r=12 on q/v/up), lora (q_proj + v_proj at the rank
 * whose parameter count is closest to PARA's), every adapter with seeded non-identity weights.
 * Rounds run every (C, variant) phase in turn, the variant order rotating, so machine load hits
 * the variants alike; figures per cell come from its best round.
 *
 * The sequential baseline: one request per tenant (C = the largest concurrency), each through
 * one `generate` call of the library, one after another — what serving without continuous
 * batching costs — timed in every round after the served phases; its best round is reported.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  type AnyAdapter,
  LoraAdapter,
  loraParameterCount,
  mixedAdapter,
  ParaAdapter,
  paraParameterCount,
  resolveLoraConfig,
  resolveParaConfig,
  saveAdapter,
} from '@para/adapters/node';
import type { CausalLM, ModelConfig } from '@para/model/node';
import { AdapterRegistry, createServer, directorySource, type ParaServer } from '@para/serve/node';
import type { ParaTokenizer } from '@para/tokenizer';
import * as tf from '@tensorflow/tfjs-core';
import { matchingLoraRank } from './multitenant';

export type ServeVariant = 'bare' | 'para' | 'lora';
export const SERVE_VARIANTS: readonly ServeVariant[] = ['bare', 'para', 'lora'];

export interface ServeBenchOptions {
  /** The backbone: a model and its tokenizer (the caller loads or builds them). */
  model: CausalLM;
  tokenizer: ParaTokenizer;
  /** Model id in the API. */
  modelName?: string;
  /** Concurrent clients per phase (default [1, 8, 32]); each client is its own tenant. */
  concurrency?: readonly number[];
  /** Requests per client per phase (default 3). */
  requestsPerClient?: number;
  promptLength?: number;
  newTokens?: number;
  paraRank?: number;
  rounds?: number;
  variants?: readonly ServeVariant[];
  /** Also time the sequential `generate` baseline (default true). */
  sequential?: boolean;
  onProgress?: (line: string) => void;
}

export interface ServePhase {
  concurrency: number;
  variant: ServeVariant;
  requests: number;
  seconds: number;
  outputTokensPerSecond: number;
  requestsPerSecond: number;
  ttftMs: { p50: number; p99: number };
  itlMs: { p50: number; p99: number };
  /**
   * Shares of the phase's wall time the server's engine spent prefilling newcomers, copying
   * them into the running state, and in decode steps (the rest: HTTP, streaming, idle).
   */
  engineShare: { prefill: number; insert: number; decode: number };
}

export interface ServeBenchResult {
  backend: string;
  config: ModelConfig;
  promptLength: number;
  newTokens: number;
  requestsPerClient: number;
  rounds: number;
  paraRank: number;
  loraRank: number;
  parameters: { para: number; lora: number };
  maxBatch: number;
  /** Best round per (concurrency, variant). */
  phases: ServePhase[];
  /** Every round's phases. */
  allRounds: ServePhase[][];
  /** Sequential `generate` per request: output tokens/s per variant. */
  sequential: Partial<Record<ServeVariant, number>>;
  /** At the largest concurrency. */
  ratios: {
    concurrency: number;
    paraVsBare: number | null;
    paraVsLora: number | null;
    paraVsSequential: number | null;
    bareVsSequential: number | null;
  };
}

/** Seeded small non-zero weights, so no adapter is the identity. */
function perturb(a: AnyAdapter, seed: number): void {
  let i = 0;
  for (const v of a.parameters()) {
    const t = tf.randomNormal(
      v.shape,
      0,
      a instanceof LoraAdapter ? 0.02 : 0.05,
      'float32',
      seed * 1000 + i++,
    );
    v.assign(t);
    t.dispose();
  }
}

interface ClientSpec {
  model: string;
  prompt: number[];
}

interface RequestRecord {
  start: number;
  end: number;
  chunks: number[];
  completionTokens: number;
}

/*
 * The load generator: plain CommonJS run by `new Worker(code, { eval: true })`, Node's fetch,
 * each client a loop of streamed completions. Hand-written because it is ~40 lines that read
 * OpenAI's SSE chunks and stamp their arrival times; a load tool (autocannon) cannot time
 * streamed tokens.
 */
const LOAD_GENERATOR = `
const { parentPort, workerData } = require('node:worker_threads');
const { url, clients, requestsPerClient, newTokens } = workerData;
async function one(c) {
  const start = performance.now();
  const res = await fetch(url + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-para-adapter': c.model },
    body: JSON.stringify({ model: c.model, prompt: c.prompt, max_tokens: newTokens, temperature: 0,
      stream: true, stream_options: { include_usage: true }, ignore_eos: true }),
  });
  if (!res.ok) throw new Error('HTTP ' + res.status + ': ' + (await res.text()));
  const chunks = [];
  let completionTokens = 0;
  let buf = '';
  const dec = new TextDecoder();
  for await (const part of res.body) {
    buf += dec.decode(part, { stream: true });
    let i;
    while ((i = buf.indexOf('\\n\\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ')) continue;
      const data = ev.slice(6);
      if (data === '[DONE]') continue;
      const j = JSON.parse(data);
      if (j.error) throw new Error(j.error.message);
      if (j.usage) completionTokens = j.usage.completion_tokens;
      const t = j.choices && j.choices[0] && j.choices[0].text;
      if (t) chunks.push(performance.now());
    }
  }
  return { start, end: performance.now(), chunks, completionTokens };
}
(async () => {
  const records = [];
  await Promise.all(clients.map(async (c) => {
    for (let r = 0; r < requestsPerClient; r++) records.push(await one(c));
  }));
  parentPort.postMessage({ records });
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

function runLoad(
  url: string,
  clients: ClientSpec[],
  requestsPerClient: number,
  newTokens: number,
): Promise<RequestRecord[]> {
  return new Promise((resolve, reject) => {
    const w = new Worker(LOAD_GENERATOR, {
      eval: true,
      workerData: { url, clients, requestsPerClient, newTokens },
    });
    w.once('message', (m: { records?: RequestRecord[]; error?: string }) => {
      void w.terminate();
      if (m.error !== undefined) reject(new Error(`load generator: ${m.error}`));
      else resolve(m.records ?? []);
    });
    w.once('error', reject);
  });
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

type BusyMs = ReturnType<ParaServer['engine']['stats']>['busyMs'];

function summarise(
  concurrency: number,
  variant: ServeVariant,
  records: RequestRecord[],
  busy0: BusyMs,
  busy1: BusyMs,
): ServePhase {
  const t0 = Math.min(...records.map((r) => r.start));
  const t1 = Math.max(...records.map((r) => r.end));
  const seconds = (t1 - t0) / 1000;
  const tokens = records.reduce((a, r) => a + r.completionTokens, 0);
  const ttft = records
    .filter((r) => r.chunks.length > 0)
    .map((r) => (r.chunks[0] as number) - r.start);
  const itl = records.flatMap((r) => r.chunks.slice(1).map((t, i) => t - (r.chunks[i] as number)));
  return {
    concurrency,
    variant,
    requests: records.length,
    seconds,
    outputTokensPerSecond: tokens / seconds,
    requestsPerSecond: records.length / seconds,
    ttftMs: { p50: percentile(ttft, 50), p99: percentile(ttft, 99) },
    itlMs: { p50: percentile(itl, 50), p99: percentile(itl, 99) },
    engineShare: {
      prefill: (busy1.prefill - busy0.prefill) / 1000 / seconds,
      insert: (busy1.insert - busy0.insert) / 1000 / seconds,
      decode: (busy1.decode - busy0.decode) / 1000 / seconds,
    },
  };
}

export async function runServeBench(options: ServeBenchOptions): Promise<ServeBenchResult> {
  const { model, tokenizer } = options;
  const config = model.config;
  const concurrency = options.concurrency ?? [1, 8, 32];
  const R = options.requestsPerClient ?? 3;
  const P = options.promptLength ?? 64;
  const N = options.newTokens ?? 64;
  const rounds = options.rounds ?? 2;
  const paraRank = options.paraRank ?? 12;
  const variants = options.variants ?? SERVE_VARIANTS;
  const log = options.onProgress ?? (() => undefined);
  const modelName = options.modelName ?? 'base';
  const tenants = Math.max(...concurrency);
  const loraRank = matchingLoraRank(config, paraRank);
  const loraInit = { r: loraRank, lora_alpha: 2 * loraRank, target_modules: ['q_proj', 'v_proj'] };
  const parameters = {
    para: paraParameterCount(resolveParaConfig({ r: paraRank }), config),
    lora: loraParameterCount(resolveLoraConfig(loraInit), config),
  };
  const prompts = Array.from({ length: tenants }, (_, b) =>
    Array.from({ length: P }, (_, t) => 4 + ((b * 131 + t * 17) % (config.vocabSize - 4))),
  );
  const root = await mkdtemp(path.join(tmpdir(), 'para-bench-serve-'));
  const adapters = new Map<string, AnyAdapter>();
  let server: Awaited<ReturnType<typeof createServer>> | undefined;
  let registry: AdapterRegistry | undefined;
  try {
    log(
      `writing ${tenants} PARA (r=${paraRank}, ${parameters.para} params) and ${tenants} LoRA (q+v r=${loraRank}, ${parameters.lora} params) adapters to ${root}`,
    );
    for (let t = 0; t < tenants; t++) {
      if (variants.includes('para')) {
        const a = ParaAdapter.create(config, { r: paraRank }, { seed: t });
        perturb(a, t + 1);
        await saveAdapter(a, path.join(root, `para-${t}`));
        adapters.set(`para-${t}`, a);
      }
      if (variants.includes('lora')) {
        const a = LoraAdapter.create(config, loraInit, { seed: t });
        perturb(a, t + 1);
        await saveAdapter(a, path.join(root, `lora-${t}`));
        adapters.set(`lora-${t}`, a);
      }
    }
    registry = new AdapterRegistry(model, directorySource(root), { maxBytes: 4 * 1024 ** 3 });
    server = await createServer({
      model,
      tokenizer,
      registry,
      modelName,
      logger: false,
      engine: { maxBatch: tenants, maxLen: P + N, maxQueue: 4 * tenants },
    });
    const url = await server.listen({ host: '127.0.0.1', port: 0 });
    const clientsOf = (variant: ServeVariant, c: number): ClientSpec[] =>
      Array.from({ length: c }, (_, t) => ({
        model: variant === 'bare' ? modelName : `${variant}-${t}`,
        prompt: prompts[t] as number[],
      }));
    // Warm-up: every adapter loaded into the registry, kernels compiled, one request each.
    log('warm-up: one request per tenant');
    for (const v of variants) await runLoad(url, clientsOf(v, tenants), 1, 2);
    const allRounds: ServePhase[][] = [];
    const sequentialRuns: { variant: ServeVariant; tokensPerSecond: number }[] = [];
    for (let round = 0; round < rounds; round++) {
      const phases: ServePhase[] = [];
      for (const [ci, c] of concurrency.entries()) {
        for (let k = 0; k < variants.length; k++) {
          const v = variants[(round + ci + k) % variants.length] as ServeVariant;
          const busy0 = server.engine.stats().busyMs;
          const records = await runLoad(url, clientsOf(v, c), R, N);
          const busy1 = server.engine.stats().busyMs;
          const phase = summarise(c, v, records, busy0, busy1);
          phases.push(phase);
          log(
            `round ${round + 1}/${rounds} C=${c} ${v.padEnd(4)}: ${phase.outputTokensPerSecond.toFixed(1)} tok/s, ${phase.requestsPerSecond.toFixed(2)} req/s, TTFT p50 ${phase.ttftMs.p50.toFixed(0)} ms, ITL p50 ${phase.itlMs.p50.toFixed(1)} ms`,
          );
        }
      }
      allRounds.push(phases);
      if (options.sequential !== false) {
        // In every round, next to the served phases, so machine load hits both alike.
        for (const v of variants) {
          let tokens = 0;
          const t0 = performance.now();
          for (let t = 0; t < tenants; t++) {
            const adapter = v === 'bare' ? null : (adapters.get(`${v}-${t}`) ?? null);
            const r = await model.generate([prompts[t] as number[]], {
              maxNewTokens: N,
              stopTokens: [],
              ...(adapter === null ? {} : { adapter: mixedAdapter(model, [adapter]), request: {} }),
            });
            tokens += (r.tokens[0] as number[]).length;
          }
          const tokensPerSecond = tokens / ((performance.now() - t0) / 1000);
          sequentialRuns.push({ variant: v, tokensPerSecond });
          log(
            `round ${round + 1}/${rounds} sequential generate ${v}: ${tokensPerSecond.toFixed(1)} tok/s`,
          );
        }
      }
    }
    await server.close();
    server = undefined;
    registry.dispose();
    registry = undefined;
    const sequential: Partial<Record<ServeVariant, number>> = {};
    for (const v of SERVE_VARIANTS) {
      const runs = sequentialRuns.filter((r) => r.variant === v).map((r) => r.tokensPerSecond);
      if (runs.length > 0) sequential[v] = Math.max(...runs);
    }

    const phases: ServePhase[] = [];
    for (const c of concurrency)
      for (const v of variants) {
        const cells = allRounds.flatMap((r) =>
          r.filter((p) => p.concurrency === c && p.variant === v),
        );
        phases.push(
          cells.reduce((best, p) =>
            p.outputTokensPerSecond > best.outputTokensPerSecond ? p : best,
          ),
        );
      }
    const top = tenants;
    const at = (v: ServeVariant) =>
      phases.find((p) => p.concurrency === top && p.variant === v)?.outputTokensPerSecond ?? null;
    const ratio = (a: number | null | undefined, b: number | null | undefined) =>
      a == null || b == null ? null : a / b;
    return {
      backend: tf.getBackend(),
      config,
      promptLength: P,
      newTokens: N,
      requestsPerClient: R,
      rounds,
      paraRank,
      loraRank,
      parameters,
      maxBatch: tenants,
      phases,
      allRounds,
      sequential,
      ratios: {
        concurrency: top,
        paraVsBare: ratio(at('para'), at('bare')),
        paraVsLora: ratio(at('para'), at('lora')),
        paraVsSequential: ratio(at('para'), sequential.para),
        bareVsSequential: ratio(at('bare'), sequential.bare),
      },
    };
  } finally {
    if (server !== undefined) await server.close();
    registry?.dispose();
    for (const a of adapters.values()) a.dispose();
    await rm(root, { recursive: true, force: true });
  }
}
