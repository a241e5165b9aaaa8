/**
 * The backbone benchmark behind `para bench model` (universal: runs in a browser too).
 *
 * On a stated config (default d=512, 8 layers, d_ff 1376, 8 heads, vocab 4096, random init,
 * seed 0) it measures, per batch size: prefill tokens/s (B × promptLength tokens in one call)
 * and decode tokens/s (B tokens per step, `decodeSteps` steps, reading the logits back each
 * step as sampling must), medians of `reps` rounds of [prefill, decode] after `warmup` untimed ones, with the achieved GFLOP/s (`flops.ts`) beside the same backend's
 * plain matmul GFLOP/s ([n, n] × [n, n]) measured in the same run.
 */

import {
  CausalLM,
  countParameters,
  createConfig,
  type ModelConfig,
  type ModelConfigInit,
  modelFlops,
} from '@para/model';
import * as tf from '@tensorflow/tfjs-core';

export interface ModelBenchOptions {
  config?: Partial<ModelConfigInit>;
  batchSizes?: number[];
  promptLength?: number;
  decodeSteps?: number;
  /** Timed rounds of [prefill, decode] per batch size (default 3); each phase's median. */
  reps?: number;
  /** Untimed rounds of [prefill, decode] before them (default 2). */
  warmup?: number;
  /** Side of the square matmul baseline (default 1024). */
  matmulSize?: number;
  seed?: number;
  onProgress?: (line: string) => void;
}

export interface ModelBenchRow {
  phase: 'prefill' | 'decode';
  batch: number;
  /** Tokens processed in the timed section. */
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  gflops: number;
  gflopPerSecond: number;
}

export interface ModelBenchResult {
  backend: string;
  config: ModelConfig;
  parameters: number;
  promptLength: number;
  decodeSteps: number;
  rows: ModelBenchRow[];
  matmul: { size: number; seconds: number; gflopPerSecond: number };
}

export const BENCH_CONFIG: ModelConfigInit = {
  vocabSize: 4096,
  hiddenSize: 512,
  intermediateSize: 1376,
  numLayers: 8,
  numHeads: 8,
  numKvHeads: 8,
  maxPositionEmbeddings: 2048,
};

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** Median seconds of `reps` runs of an async op that ends with a device sync. */
const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function timeIt(reps: number, fn: () => Promise<void>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = now();
    await fn();
    times.push((now() - t0) / 1000);
  }
  return median(times);
}

/** Plain matmul GFLOP/s on the active backend. */
export async function matmulGflops(
  n = 1024,
  reps = 5,
): Promise<{ size: number; seconds: number; gflopPerSecond: number }> {
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  const run = async () => {
    const c = tf.matMul(a, b); // [n, n]
    await c.data();
    c.dispose();
  };
  await run(); // warm-up (kernel setup, shader compile)
  const seconds = await timeIt(reps, run);
  tf.dispose([a, b]);
  return { size: n, seconds, gflopPerSecond: (2 * n ** 3) / seconds / 1e9 };
}

export async function runModelBench(options: ModelBenchOptions = {}): Promise<ModelBenchResult> {
  const config = createConfig({ ...BENCH_CONFIG, ...options.config });
  const batchSizes = options.batchSizes ?? [1, 32];
  const P = options.promptLength ?? 64;
  const steps = options.decodeSteps ?? 64;
  const reps = options.reps ?? 3;
  const warmup = options.warmup ?? 2;
  const log = options.onProgress ?? (() => undefined);
  const flops = modelFlops(config);

  log(
    `init: random weights (seed ${options.seed ?? 0}), ${(countParameters(config) / 1e6).toFixed(1)}M parameters`,
  );
  const model = CausalLM.random(config, options.seed ?? 0);
  const rows: ModelBenchRow[] = [];
  try {
    log(`matmul baseline [${options.matmulSize ?? 1024}]²`);
    const matmul = await matmulGflops(options.matmulSize ?? 1024);
    for (const B of batchSizes) {
      // Prompts of P tokens (all real), ids spread over the vocabulary.
      const prompts = Array.from({ length: B }, (_, b) =>
        Array.from({ length: P }, (_, t) => (1 + b * 131 + t * 17) % config.vocabSize),
      );
      // `warmup` untimed rounds, then `reps` timed rounds of [prefill, `steps` greedy decode
      // steps]; each phase's median. On Node, V8 keeps optimising the per-kernel JavaScript
      // (tfjs's dispatch, the model's decode step) for the first few thousand kernel calls, and
      // while it compiles it takes a core from OpenBLAS's two threads: on the default config a
      // decode step at batch 1 went 8.0 → 4.4 ms over the first five rounds, a batch-1 prefill
      // 58 → 30 ms (BENCHMARKS.md, issue 16). The rounds time the steady state a server runs in;
      // bench/peer/peer.py times transformers the same way (Python has no such warm-up).
      log(`prefill + decode: batch ${B} × ${P} tokens, ${steps} steps, ${warmup} + ${reps} rounds`);
      const prefillTimes: number[] = [];
      const decodeTimes: number[] = [];
      let decodeFlops = 0;
      for (let s = 0; s < steps; s++) decodeFlops += flops.decodeStep(B, P + s + 1);
      for (let r = 0; r < warmup + reps; r++) {
        const t0 = now();
        const { logits, state } = model.prefill(prompts, { capacity: P + steps });
        let last = await argmaxRows(logits);
        logits.dispose();
        const t1 = now();
        for (let s = 0; s < steps; s++) {
          const l = model.decodeStep(last, state);
          last = await argmaxRows(l);
          l.dispose();
        }
        const t2 = now();
        state.dispose();
        if (r < warmup) continue;
        prefillTimes.push((t1 - t0) / 1000);
        decodeTimes.push((t2 - t1) / 1000);
      }
      rows.push(row('prefill', B, B * P, median(prefillTimes), flops.prefill(B, P)));
      rows.push(row('decode', B, B * steps, median(decodeTimes), decodeFlops));
    }
    return {
      backend: tf.getBackend(),
      config,
      parameters: model.numParameters,
      promptLength: P,
      decodeSteps: steps,
      rows,
      matmul,
    };
  } finally {
    model.dispose();
  }
}

function row(
  phase: 'prefill' | 'decode',
  batch: number,
  tokens: number,
  seconds: number,
  flop: number,
): ModelBenchRow {
  return {
    phase,
    batch,
    tokens,
    seconds,
    tokensPerSecond: tokens / seconds,
    gflops: flop / 1e9,
    gflopPerSecond: flop / seconds / 1e9,
  };
}

/** Greedy next tokens of logits `[B, V]` (host argmax, as generation does). */
async function argmaxRows(logits: tf.Tensor): Promise<number[]> {
  const [B, V] = logits.shape as [number, number];
  const data = await logits.data();
  return Array.from({ length: B }, (_, b) => {
    let best = 0;
    for (let i = 1; i < V; i++)
      if ((data[b * V + i] as number) > (data[b * V + best] as number)) best = i;
    return best;
  });
}
