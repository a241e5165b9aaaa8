/**
 * The multi-tenant benchmark behind `para bench multitenant` (universal: runs in a browser too).
 *
 * On the backbone bench config (BENCH_CONFIG of ./model.ts: d=512, 8 layers, d_ff 1376,
 * 8 heads, vocab 4096, random init seed 0), B concurrent sequences (default 32), each its own
 * tenant with its own adapter, prompt P tokens (64), N new tokens (64), greedy, logits read back
 * every step as sampling must. One prefill and one decode step per call for the whole batch:
 *
 *   base   no adapter
 *   para   PARA r=12 on q/v/up (mean pooler, gelu) per tenant: [B, 1, dim] vectors from the
 *          prefill, one broadcast multiply per target per decode step
 *   lora   LoRA on q_proj + v_proj with the rank whose parameter count is closest to PARA's,
 *          unmerged, per-row gathered factors (BGMV): two batched matmuls per site per step
 *   ia3    IA3 (k, v, down_proj input) per tenant: [B, 1, dim] vectors, one multiply per target
 *
 * Every adapter has non-identity random weights. In each round the four batches are prefilled,
 * then decode side by side, one step of each in turn (order rotating), so load from other
 * processes hits every variant alike. Decode figures come from the quietest round (least total
 * decode time), prefill figures are each variant's best.
 * Decode tokens/s = B·N / decode seconds; prefill tokens/s = B·P / prefill seconds.
 */

import {
  type AdapterRequest,
  type AnyAdapter,
  Ia3Adapter,
  ia3ParameterCount,
  LoraAdapter,
  loraParameterCount,
  MixedBatch,
  ParaAdapter,
  paraParameterCount,
  resolveIa3Config,
  resolveLoraConfig,
  resolveParaConfig,
} from '@para/adapters';
import {
  ADAPTER_SITES,
  type AdapterContext,
  type AdapterSite,
  CausalLM,
  createConfig,
  type DecodeState,
  type LayerAdapterState,
  type ModelAdapter,
  type ModelConfig,
  type ModelConfigInit,
  projectionShape,
} from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { BENCH_CONFIG } from './model';

export type MultitenantVariant = 'base' | 'para' | 'lora' | 'ia3';
export const MULTITENANT_VARIANTS: readonly MultitenantVariant[] = ['base', 'para', 'lora', 'ia3'];

export interface MultitenantBenchOptions {
  config?: Partial<ModelConfigInit>;
  /** Concurrent sequences (default 32), each its own tenant. */
  batch?: number;
  promptLength?: number;
  newTokens?: number;
  /** PARA bottleneck (default 12). */
  paraRank?: number;
  /** Rounds (default 2); decode figures come from the quietest. */
  rounds?: number;
  variants?: readonly MultitenantVariant[];
  seed?: number;
  /** Also profile decode steps per variant (tf.profile: kernel counts and times). */
  profile?: boolean;
  onProgress?: (line: string) => void;
}

/** Kernels of one decode step (averaged over a few steps), by kernel name. */
export interface DecodeProfile {
  /** Wall milliseconds of one decode step, logits read back (median of the profiled steps). */
  stepMs: number;
  /** Kernel launches per step. */
  kernels: number;
  /** Sum of the kernels' own times per step (ms). */
  kernelMs: number;
  byKernel: { name: string; count: number; ms: number }[];
  /**
   * The adapter's own work in one decode step, timed alone (median of 30 runs): its
   * `transform` hook at every site of every layer on the step's real per-row state, with inputs
   * of the step's shapes. 0 for base.
   */
  adapterMs: number;
}

export interface MultitenantTiming {
  prefillSeconds: number;
  decodeSeconds: number;
}

export interface MultitenantBenchResult {
  backend: string;
  batch: number;
  tenants: number;
  /** Decode tokens/s of each variant (the keys the CLI's --json promises), from the quietest round. */
  base: number | null;
  para: number | null;
  lora: number | null;
  ia3: number | null;
  /** Prefill tokens/s of each variant (each its best round). */
  prefill: Record<MultitenantVariant, number | null>;
  ratios: {
    paraVsBase: number | null;
    paraVsLora: number | null;
    loraVsBase: number | null;
    ia3VsBase: number | null;
  };
  promptLength: number;
  newTokens: number;
  rounds: number;
  /** The round (1-based) the decode figures come from. */
  quietestRound: number;
  /** Trainable parameters per tenant. */
  parameters: { para: number; lora: number; ia3: number };
  paraRank: number;
  loraRank: number;
  config: ModelConfig;
  /** Every round's seconds, per variant. */
  timings: Record<MultitenantVariant, MultitenantTiming[]>;
  /** With `profile`: one decode step's kernels per variant. */
  profile?: Partial<Record<MultitenantVariant, DecodeProfile>>;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** The LoRA rank (q_proj + v_proj) whose parameter count is closest to PARA's (ties: the smaller). */
export function matchingLoraRank(model: ModelConfig, paraRank = 12): number {
  const target = paraParameterCount(resolveParaConfig({ r: paraRank }), model);
  let best = 1;
  let bestDiff = Number.POSITIVE_INFINITY;
  for (let r = 1; r <= 4 * model.hiddenSize; r++) {
    const diff = Math.abs(
      loraParameterCount(resolveLoraConfig({ r, target_modules: ['q_proj', 'v_proj'] }), model) -
        target,
    );
    if (diff < bestDiff) {
      best = r;
      bestDiff = diff;
    }
  }
  return best;
}

/** Seeded small non-zero weights, so no adapter is the identity. */
function perturb(a: AnyAdapter, seed: number): void {
  let i = 0;
  for (const v of a.parameters()) {
    const mean = a instanceof Ia3Adapter ? 1 : 0;
    const t = tf.randomNormal(
      v.shape,
      mean,
      a instanceof LoraAdapter ? 0.02 : 0.05,
      'float32',
      seed * 1000 + i++,
    );
    v.assign(t);
    t.dispose();
  }
}

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

export async function runMultitenantBench(
  options: MultitenantBenchOptions = {},
): Promise<MultitenantBenchResult> {
  const config = createConfig({ ...BENCH_CONFIG, ...options.config });
  const B = options.batch ?? 32;
  const P = options.promptLength ?? 64;
  const N = options.newTokens ?? 64;
  const rounds = options.rounds ?? 2;
  const paraRank = options.paraRank ?? 12;
  const variants = options.variants ?? MULTITENANT_VARIANTS;
  const log = options.onProgress ?? (() => undefined);
  const loraRank = matchingLoraRank(config, paraRank);
  const parameters = {
    para: paraParameterCount(resolveParaConfig({ r: paraRank }), config),
    lora: loraParameterCount(
      resolveLoraConfig({ r: loraRank, target_modules: ['q_proj', 'v_proj'] }),
      config,
    ),
    ia3: ia3ParameterCount(resolveIa3Config({}), config),
  };
  log(
    `model: d=${config.hiddenSize}, ${config.numLayers} layers, random init (seed ${options.seed ?? 0}); ${B} sequences × ${P} prompt + ${N} new tokens, ${B} tenants`,
  );
  log(
    `adapters per tenant: PARA r=${paraRank} ${parameters.para} params, LoRA q+v r=${loraRank} ${parameters.lora}, IA3 ${parameters.ia3}`,
  );
  const model = CausalLM.random(config, options.seed ?? 0);
  const owned: AnyAdapter[] = [];
  const adapters = new Map<MultitenantVariant, ModelAdapter<AdapterRequest> | null>();
  try {
    const tenants = (make: (t: number) => AnyAdapter) =>
      Array.from({ length: B }, (_, t) => {
        const a = make(t);
        perturb(a, t + 1);
        owned.push(a);
        return a;
      });
    for (const v of variants) {
      if (v === 'base') adapters.set(v, null);
      if (v === 'para')
        adapters.set(
          v,
          new MixedBatch(
            model,
            tenants((t) => ParaAdapter.create(config, { r: paraRank }, { seed: t })),
          ).modelAdapter(),
        );
      if (v === 'lora')
        adapters.set(
          v,
          new MixedBatch(
            model,
            tenants((t) =>
              LoraAdapter.create(
                config,
                { r: loraRank, lora_alpha: 2 * loraRank, target_modules: ['q_proj', 'v_proj'] },
                { seed: t },
              ),
            ),
          ).modelAdapter(),
        );
      if (v === 'ia3')
        adapters.set(
          v,
          new MixedBatch(
            model,
            tenants(() => Ia3Adapter.create(config)),
          ).modelAdapter(),
        );
    }
    const prompts = Array.from({ length: B }, (_, b) =>
      Array.from({ length: P }, (_, t) => (1 + b * 131 + t * 17) % config.vocabSize),
    );
    const opts = (v: MultitenantVariant) => {
      const adapter = adapters.get(v) ?? null;
      // The KV cache holds the prompt and every decoded token.
      const capacity = P + N;
      return adapter === null ? { capacity } : { adapter, request: {}, capacity };
    };
    // Warm-up, one untimed round per variant: kernels, shader compiles, the wasm heap, and on
    // Node V8's optimisation of the per-kernel JavaScript (it compiles on a core OpenBLAS's
    // threads would use; bench/peer/peer.py warms PyTorch the same way).
    for (const v of variants) {
      const { logits, state } = model.prefill(prompts, opts(v));
      let last = await argmaxRows(logits);
      logits.dispose();
      for (let s = 0; s < N; s++) {
        const l = model.decodeStep(last, state);
        last = await argmaxRows(l);
        l.dispose();
      }
      state.dispose();
    }
    const timings = Object.fromEntries(
      MULTITENANT_VARIANTS.map((v) => [v, [] as MultitenantTiming[]]),
    ) as Record<MultitenantVariant, MultitenantTiming[]>;
    for (let round = 0; round < rounds; round++) {
      // All variants decode side by side, one step each in turn (the order rotating every
      // step), so load from other processes lands on every variant alike.
      const live = new Map<
        MultitenantVariant,
        { state: DecodeState<AdapterRequest>; last: number[]; prefill: number; decode: number }
      >();
      try {
        for (const v of variants) {
          const t0 = now();
          const { logits, state } = model.prefill(prompts, opts(v));
          const last = await argmaxRows(logits);
          logits.dispose();
          live.set(v, { state, last, prefill: now() - t0, decode: 0 });
        }
        for (let s = 0; s < N; s++) {
          for (let k = 0; k < variants.length; k++) {
            const e = live.get(variants[(s + k) % variants.length] as MultitenantVariant);
            if (e === undefined) continue;
            const t0 = now();
            const l = model.decodeStep(e.last, e.state);
            e.last = await argmaxRows(l);
            l.dispose();
            e.decode += now() - t0;
          }
        }
      } finally {
        for (const e of live.values()) e.state.dispose();
      }
      for (const [v, e] of live) {
        timings[v].push({ prefillSeconds: e.prefill / 1000, decodeSeconds: e.decode / 1000 });
        log(
          `round ${round + 1}/${rounds} ${v.padEnd(4)}: prefill ${((B * P * 1000) / e.prefill).toFixed(1)} tok/s, decode ${((B * N * 1000) / e.decode).toFixed(1)} tok/s`,
        );
      }
    }
    let profile: Partial<Record<MultitenantVariant, DecodeProfile>> | undefined;
    if (options.profile) {
      profile = {};
      for (const v of variants) {
        log(`profile ${v}`);
        profile[v] = await profileDecode(model, prompts, opts(v));
      }
    }
    const best = (
      v: MultitenantVariant,
      k: keyof MultitenantTiming,
      tokens: number,
    ): number | null => {
      const ts = timings[v];
      return ts.length === 0 ? null : tokens / Math.min(...ts.map((t) => t[k]));
    };
    // Decode figures all come from one round, the quietest (least total decode time): the
    // variants ran interleaved in it, so their ratios are like for like.
    let quietest = 0;
    const roundTotal = (r: number) =>
      variants.reduce((a, v) => a + (timings[v][r]?.decodeSeconds ?? 0), 0);
    for (let r = 1; r < rounds; r++) if (roundTotal(r) < roundTotal(quietest)) quietest = r;
    const decode = Object.fromEntries(
      MULTITENANT_VARIANTS.map((v) => {
        const t = timings[v][quietest];
        return [v, t === undefined ? null : (B * N) / t.decodeSeconds];
      }),
    ) as Record<MultitenantVariant, number | null>;
    const prefill = Object.fromEntries(
      MULTITENANT_VARIANTS.map((v) => [v, best(v, 'prefillSeconds', B * P)]),
    ) as Record<MultitenantVariant, number | null>;
    const ratio = (a: number | null, b: number | null) => (a === null || b === null ? null : a / b);
    return {
      backend: tf.getBackend(),
      batch: B,
      tenants: B,
      base: decode.base,
      para: decode.para,
      lora: decode.lora,
      ia3: decode.ia3,
      prefill,
      ratios: {
        paraVsBase: ratio(decode.para, decode.base),
        paraVsLora: ratio(decode.para, decode.lora),
        loraVsBase: ratio(decode.lora, decode.base),
        ia3VsBase: ratio(decode.ia3, decode.base),
      },
      promptLength: P,
      newTokens: N,
      rounds,
      quietestRound: quietest + 1,
      parameters,
      paraRank,
      loraRank,
      config,
      timings,
      ...(profile === undefined ? {} : { profile }),
    };
  } finally {
    for (const a of owned) a.dispose();
    model.dispose();
  }
}

/** tf.profile over a few decode steps (after a prefill and a warm-up step), per kernel name. */
async function profileDecode(
  model: CausalLM,
  prompts: number[][],
  opts: { adapter?: ModelAdapter<AdapterRequest>; request?: AdapterRequest },
): Promise<DecodeProfile> {
  const STEPS = 5;
  const { logits, state } = model.prefill(prompts, {
    ...opts,
    capacity: (prompts[0] as number[]).length + STEPS + 2,
  });
  let last = await argmaxRows(logits);
  logits.dispose();
  const by = new Map<string, { count: number; ms: number }>();
  const walls: number[] = [];
  let kernels = 0;
  try {
    for (let s = 0; s < STEPS + 1; s++) {
      const t0 = now();
      const info = await tf.profile(async () => {
        const l = model.decodeStep(last, state);
        last = await argmaxRows(l);
        l.dispose();
      });
      if (s === 0) continue; // warm-up
      walls.push(now() - t0);
      kernels += info.kernels.length;
      for (const k of info.kernels) {
        const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
        const e = by.get(k.name) ?? { count: 0, ms: 0 };
        e.count += 1;
        e.ms += ms;
        by.set(k.name, e);
      }
    }
  } finally {
    state.dispose();
  }
  walls.sort((a, b) => a - b);
  const adapterMs = opts.adapter === undefined ? 0 : await timeHooks(model, prompts, opts.adapter);
  const byKernel = [...by.entries()]
    .map(([name, e]) => ({ name, count: e.count / STEPS, ms: e.ms / STEPS }))
    .sort((a, b) => b.ms - a.ms);
  return {
    stepMs: walls[Math.floor(walls.length / 2)] as number,
    kernels: kernels / STEPS,
    kernelMs: byKernel.reduce((a, k) => a + k.ms, 0),
    byKernel,
    adapterMs,
  };
}

/**
 * Median ms of one decode step's adapter work alone, on prefill state: at every site of every
 * layer, the adapter's `transform` (if it has one) and the per-row state the layer applies
 * (LoRA rows `y += (x · a) · b`, scales `y ⊙ s`), as `decoderLayer` does it.
 */
async function timeHooks(
  model: CausalLM,
  prompts: number[][],
  adapter: ModelAdapter<AdapterRequest>,
): Promise<number> {
  const c = model.config;
  const B = prompts.length;
  const { logits, state } = model.prefill(prompts, { adapter, request: {} });
  logits.dispose();
  const store = state.adapterState;
  const tokenMask = tf.ones([B, 1]);
  const shapes = new Map<AdapterSite, { x: tf.Tensor; y: tf.Tensor }>();
  for (const site of ADAPTER_SITES) {
    const [out, inp] =
      site === 'down_proj.input'
        ? [c.intermediateSize, c.intermediateSize]
        : projectionShape(c, site);
    const x = tf.randomNormal([B, 1, inp], 0, 1, 'float32', 1); // [B, 1, in]
    shapes.set(site, {
      x,
      y: site === 'down_proj.input' ? x : tf.randomNormal([B, 1, out], 0, 1, 'float32', 2),
    }); // [B, 1, out]
  }
  const apply = (
    ctx: AdapterContext<AdapterRequest>,
    site: AdapterSite,
    y0: tf.Tensor,
    x: tf.Tensor,
  ): tf.Tensor | null => {
    let y = y0;
    let touched = false;
    if (adapter.sites.includes(site) && adapter.transform !== undefined) {
      y = adapter.transform(ctx, site, y, x);
      touched = true;
    }
    const rows: LayerAdapterState | undefined = ctx.state;
    const lora = rows?.lora(site);
    if (lora !== undefined) {
      y = tf.add(y, tf.matMul(tf.matMul(x, lora.a), lora.b));
      touched = true;
    }
    const scale = rows?.scale(site);
    if (scale !== undefined) {
      y = tf.mul(y, scale);
      touched = true;
    }
    return touched ? y : null;
  };
  const run = async () => {
    const outs = tf.tidy(() => {
      const last: tf.Tensor[] = [];
      for (let layer = 0; layer < c.numLayers; layer++) {
        if (adapter.layers !== undefined && !adapter.layers.includes(layer)) continue;
        const ctx: AdapterContext<AdapterRequest> = {
          phase: 'decode',
          layer,
          request: {},
          tokenMask,
          state: store?.layers[layer] as LayerAdapterState,
        };
        for (const [site, { x, y }] of shapes) {
          const out = apply(ctx, site, y, x);
          if (out !== null) last.push(out);
        }
      }
      return [last.length === 0 ? tf.zeros([1]) : (last[last.length - 1] as tf.Tensor)];
    });
    await (outs[0] as tf.Tensor).data(); // the backend's queue is done
    tf.dispose(outs);
  };
  try {
    for (let i = 0; i < 3; i++) await run();
    const times: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = now();
      await run();
      times.push(now() - t0);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)] as number;
  } finally {
    state.dispose();
    tokenMask.dispose();
    const seen = new Set<tf.Tensor>();
    for (const { x, y } of shapes.values())
      for (const t of [x, y])
        if (!seen.has(t)) {
          seen.add(t);
          t.dispose();
        }
  }
}
