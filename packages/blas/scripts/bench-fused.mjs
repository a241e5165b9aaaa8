#!/usr/bin/env node
// A/B of @para/blas's fused kernels (RMSNorm, SwiGLU, RoPE) in ONE process: every timed call
// alternates between the fused kernels installed and uninstalled (the generic tfjs ops), so the
// load of a shared machine hits both sides alike. Prints per-workload medians and off/on ratios.
//
//   pnpm build && node packages/blas/scripts/bench-fused.mjs [--rounds 5] [--json] [--adamw]
//
// --adamw: only the optimizer (ParaAdamW alone toggled, every other fused kernel installed):
// AdamW.apply over each method's trainable parameters alone, A/B alternating; then the whole
// update (trainer.trainStep) A/B and its kernel count with and without ParaAdamW.
//
// Workloads: `para bench train`'s (PARA r=8, LoRA r=8 on q,v and full fine-tuning on the bundled
// backbone; 16 task examples and 8 packed rows of 256) and `para bench model`'s (d=512, 8 layers,
// prompt 64: prefill and 64 decode steps at batch 1 and 32), wasm backend with OpenBLAS. The
// workspace packages are loaded as the `para` CLI sees them (apps/node-demo's dependencies).
import { BENCH_MODEL_CONFIG, loadWorkspace, trainWorkloads } from './workloads.mjs';

const args = process.argv.slice(2);
const rounds = Number(args[args.indexOf('--rounds') + 1]) || 5;
const json = args.includes('--json');

const { tf, blas, train, adapters, modelPkg } = await loadWorkspace();
const say = json ? () => {} : (s) => console.log(s);
say(
  `wasm + OpenBLAS; fused kernels: ${blas.fusedThreads()} threads; ${rounds} rounds, alternating`,
);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/**
 * Time `fn` alternately with the fused kernels on and off; returns the medians (ms). When `fn`
 * returns a number, that is the time (ms) of the part it timed itself.
 */
async function ab(fn, perRound = 1) {
  const t = { on: [], off: [] };
  const side = async (on) => {
    if (on) blas.installFusedKernels();
    else blas.uninstallFusedKernels();
    const t0 = performance.now();
    const own = await fn();
    t[on ? 'on' : 'off'].push(typeof own === 'number' ? own : performance.now() - t0);
  };
  await side(true); // warm-up, both sides
  await side(false);
  t.on.length = 0;
  t.off.length = 0;
  for (let r = 0; r < rounds * perRound; r++) {
    const first = r % 2 === 0;
    await side(first);
    await side(!first);
  }
  blas.installFusedKernels();
  return { on: median(t.on), off: median(t.off) };
}

const results = [];
const kernels = [];
/** Kernels one call of `fn` launches, fused on and off. */
async function kernelCounts(fn) {
  const count = async (on) => {
    if (on) blas.installFusedKernels();
    else blas.uninstallFusedKernels();
    const p = await tf.profile(fn);
    return p.kernels.length;
  };
  const c = { on: await count(true), off: await count(false) };
  blas.installFusedKernels();
  return c;
}
function report(label, ms, perSecond) {
  const row = {
    label,
    onMs: ms.on,
    offMs: ms.off,
    onPerSec: perSecond / (ms.on / 1000),
    offPerSec: perSecond / (ms.off / 1000),
    speedup: ms.off / ms.on,
  };
  results.push(row);
  say(
    `${label.padEnd(40)} fused ${row.onPerSec.toFixed(1).padStart(8)}  generic ${row.offPerSec.toFixed(1).padStart(8)} tok/s  ×${row.speedup.toFixed(2)}`,
  );
}

// --- training updates (as `para bench train`) ---
const { model, taskBatch, packed, setups } = await trainWorkloads({ train, adapters });
if (args.includes('--adamw')) {
  // ParaAdamW alone on/off (the other fused kernels stay installed on both sides).
  const adamW = tf.getKernel('ParaAdamW', 'wasm');
  if (adamW === undefined) {
    console.error('ParaAdamW is not registered');
    process.exit(1);
  }
  const setAdamW = (on) => {
    const have = tf.getKernel('ParaAdamW', 'wasm') !== undefined;
    if (on && !have) tf.registerKernel(adamW);
    if (!on && have) tf.unregisterKernel('ParaAdamW', 'wasm');
  };
  const abAdamW = async (fn, n) => {
    const t = { on: [], off: [] };
    const side = async (on) => {
      setAdamW(on);
      const t0 = performance.now();
      await fn();
      t[on ? 'on' : 'off'].push(performance.now() - t0);
    };
    for (let r = -1; r < n; r++) {
      const first = r % 2 === 0;
      await side(first);
      await side(!first);
      if (r === -1) {
        t.on.length = 0;
        t.off.length = 0;
      }
    }
    setAdamW(true);
    return { on: median(t.on), off: median(t.off) };
  };
  const countAdamW = async (fn) => {
    const c = {};
    for (const on of [true, false]) {
      setAdamW(on);
      const p = await tf.profile(fn);
      c[on ? 'on' : 'off'] = p.kernels.length;
    }
    setAdamW(true);
    return c;
  };
  const os = await import('node:os');
  say(
    `load average at start: ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  const rowsA = [];
  for (const [method, make] of setups) {
    const adapter = make?.();
    const t = adapter ? train.adapterTrainable(model, adapter) : train.fullTrainable(model);
    const params = t.parameters;
    let elems = 0;
    for (const v of params.values()) elems += v.size;
    // the optimizer alone, gradients fixed (the same tensors every call)
    const opt = new train.AdamW(params, { weightDecay: 0.01 });
    const grads = Object.fromEntries(
      [...params].map(([n, v], i) => [
        n,
        tf.mul(tf.randomNormal(v.shape, 0, 1, 'float32', i), 1e-3),
      ]),
    );
    const reps = 20;
    const tensors0 = tf.memory().numTensors;
    const opMs = await abAdamW(async () => {
      for (let i = 0; i < reps; i++) opt.apply(grads, 1e-9);
      await [...params.values()][0].data(); // wasm is synchronous; this only syncs the read
    }, rounds * 2);
    if (tf.memory().numTensors !== tensors0) throw new Error('tensors leaked');
    const opK = await countAdamW(() => opt.apply(grads, 1e-9));
    const row = {
      label: `AdamW.apply, ${method} (${params.size} tensors, ${elems} elements)`,
      onMs: opMs.on / reps,
      offMs: opMs.off / reps,
      speedup: opMs.off / opMs.on,
      kernelsOn: opK.on,
      kernelsOff: opK.off,
    };
    rowsA.push(row);
    say(
      `${row.label.padEnd(64)} ParaAdamW ${row.onMs.toFixed(3)} ms  generic ${row.offMs.toFixed(3)} ms  ×${row.speedup.toFixed(2)}  kernels ${opK.on} vs ${opK.off}`,
    );
    opt.dispose();
    tf.dispose(Object.values(grads));
    // the whole update (forward, backward, optimizer) on the packed 8×256 batch
    const trainer = new train.Trainer(t, { lr: 1e-6, totalSteps: 1000 });
    const stepMs = await abAdamW(() => trainer.trainStep([packed]), rounds);
    const stepK = await countAdamW(() => trainer.trainStep([packed]));
    const srow = {
      label: `update ${method}, 8×256 packed`,
      onMs: stepMs.on,
      offMs: stepMs.off,
      speedup: stepMs.off / stepMs.on,
      kernelsOn: stepK.on,
      kernelsOff: stepK.off,
    };
    rowsA.push(srow);
    say(
      `${srow.label.padEnd(64)} ParaAdamW ${srow.onMs.toFixed(1)} ms  generic ${srow.offMs.toFixed(1)} ms  ×${srow.speedup.toFixed(2)}  kernels ${stepK.on} vs ${stepK.off}`,
    );
    trainer.dispose();
    if (adapter) adapter.dispose();
    else t.model.dispose();
  }
  say(
    `load average at end: ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  if (json)
    console.log(JSON.stringify({ rounds, threads: blas.fusedThreads(), rows: rowsA }, null, 2));
  process.exit(0);
}

for (const [method, make] of setups) {
  const adapter = make?.();
  const t = adapter ? train.adapterTrainable(model, adapter) : train.fullTrainable(model);
  const trainer = new train.Trainer(t, { lr: 1e-6, totalSteps: 1000 });
  for (const [workload, batch] of [
    ['16 task examples', taskBatch],
    ['8×256 packed', packed],
  ]) {
    const ms = await ab(() => trainer.trainStep([batch]));
    report(`train ${method}, ${workload}`, ms, batch.tokens);
    if (method === 'LoRA r=8 (q,v)' && workload === '8×256 packed') {
      const k = await kernelCounts(() => trainer.trainStep([batch]));
      kernels.push({ what: `train ${method}, ${workload}: kernels per update`, ...k });
    }
  }
  trainer.dispose();
  if (adapter) adapter.dispose();
  else t.model.dispose();
}
model.dispose();

// --- prefill and decode (as `para bench model`) ---
const config = modelPkg.createConfig(BENCH_MODEL_CONFIG);
const lm = modelPkg.CausalLM.random(config, 0);
const [P, steps] = [64, 64];
for (const B of [1, 32]) {
  const prompts = Array.from({ length: B }, (_, b) =>
    Array.from({ length: P }, (_, t) => (1 + b * 131 + t * 17) % config.vocabSize),
  );
  const prefill = await ab(async () => {
    const { logits, state } = lm.prefill(prompts, { capacity: P + steps });
    await logits.data();
    logits.dispose();
    state.dispose();
  });
  report(`prefill batch ${B} × ${P}`, prefill, B * P);
  if (B === 1) {
    const { logits: l0, state: s0 } = lm.prefill(prompts, { capacity: P + 8 });
    l0.dispose();
    const k = await kernelCounts(async () => {
      const l = lm.decodeStep(
        prompts.map((p) => p[P - 1]),
        s0,
      );
      await l.data();
      l.dispose();
    });
    s0.dispose();
    kernels.push({ what: 'decode step (8 layers): kernels', ...k });
  }
  // Decode: per round a prefill (capacity P + steps, as `para bench model`), then its `steps`
  // decode steps alternating on/off step by step (finer than whole loops, so a load spike hits
  // both sides); tokens/s from the median step.
  const t = { on: [], off: [] };
  for (let r = 0; r < rounds; r++) {
    const { logits, state } = lm.prefill(prompts, { capacity: P + steps });
    logits.dispose();
    let last = prompts.map((p) => p[P - 1]);
    for (let i = 0; i < steps; i++) {
      const on = (i + r) % 2 === 0;
      if (on) blas.installFusedKernels();
      else blas.uninstallFusedKernels();
      const t0 = performance.now();
      const l = lm.decodeStep(last, state); // [B, V] logits of the new token
      const ids = tf.argMax(l, -1);
      last = Array.from(await ids.data());
      if (r > 0 || i > 1) t[on ? 'on' : 'off'].push(performance.now() - t0);
      tf.dispose([l, ids]);
    }
    state.dispose();
  }
  blas.installFusedKernels();
  report(
    `decode batch ${B} (median of ${t.on.length} steps per side)`,
    { on: median(t.on), off: median(t.off) },
    B,
  );
}
lm.dispose();
for (const k of kernels) say(`${k.what.padEnd(56)} fused ${k.on}  generic ${k.off}`);
if (json)
  console.log(
    JSON.stringify({ rounds, threads: blas.fusedThreads(), rows: results, kernels }, null, 2),
  );
