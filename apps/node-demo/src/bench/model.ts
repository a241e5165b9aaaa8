/**
 * The backbone benchmark behind `para bench model` (universal: runs in a browser too).
 *
 * On a stated config (default d=512, 8 layers, d_ff 1376, 8 heads, vocab 4096, random init,
 * seed 0) it measures, per batch size: prefill tokens/s (B × promptLength tokens in one call)
 * and decode tokens/s (B tokens per step, `decodeSteps` steps, reading the logits back each
 * step as sampling must), with the achieved GFLOP/s (`flops.ts`) beside the same backend's
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
async function timeIt(reps: number, fn: () => Promise<void>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = now();
    await fn();
    times.push((now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] as number;
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
      const warm = model.prefill(prompts, { capacity: P + steps + 2 });
      await warm.logits.data();
      warm.logits.dispose();
      for (let i = 0; i < 2; i++) {
        const l = model.decodeStep(
          prompts.map((p) => p[i] as number),
          warm.state,
        );
        await l.data();
        l.dispose();
      }
      warm.state.dispose();

      log(`prefill: batch ${B} × ${P} tokens`);
      const prefillSeconds = await timeIt(B === 1 ? 3 : 1, async () => {
        const { logits, state } = model.prefill(prompts, { capacity: P + steps });
        await logits.data();
        logits.dispose();
        state.dispose();
      });
      rows.push(row('prefill', B, B * P, prefillSeconds, flops.prefill(B, P)));

      log(`decode: batch ${B}, ${steps} steps`);
      const { logits, state } = model.prefill(prompts, { capacity: P + steps });
      let last = await argmaxRows(logits);
      logits.dispose();
      const t0 = now();
      let decodeFlops = 0;
      for (let s = 0; s < steps; s++) {
        const l = model.decodeStep(last, state);
        decodeFlops += flops.decodeStep(B, P + s + 1);
        last = await argmaxRows(l);
        l.dispose();
      }
      const decodeSeconds = (now() - t0) / 1000;
      state.dispose();
      rows.push(row('decode', B, B * steps, decodeSeconds, decodeFlops));
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
