#!/usr/bin/env node
// Where the time of one call goes, kernel by kernel (tf.profile): for issue 16's rows that miss
// their target, the profile that says why. wasm + OpenBLAS + the fused kernels.
//
//   pnpm build && node packages/blas/scripts/profile-kernels.mjs [--json]
//
// Workloads: one update of `para bench train` (PARA r=8, LoRA r=8 on q,v, full fine-tuning; 16
// task examples of the bundled backbone), and `para bench model`'s prefill of 1 × 64 tokens and
// one decode step at batch 1 (d=512, 8 layers). Per workload: the wall time of an unprofiled
// call (median of 5 after ≥ 3 s of warm-up calls), the number of kernels, the summed kernel time of one
// profiled call, and the kernels by time. "Outside kernels" = wall time − kernel time: tfjs's
// per-kernel dispatch, tidy and tensor bookkeeping, and the model's own JavaScript.
import { BENCH_MODEL_CONFIG, loadWorkspace, trainWorkloads } from './workloads.mjs';

const json = process.argv.includes('--json');
const { tf, train, adapters, modelPkg } = await loadWorkspace();

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const out = [];
async function profile(label, fn) {
  // Warm-up: at least 2 calls and 3 s (V8 optimises the per-kernel JavaScript over the first few
  // thousand kernel calls; timing before that measures the compiler, as `para bench` avoids too).
  const warmStart = performance.now();
  for (let i = 0; i < 2 || performance.now() - warmStart < 3000; i++) await fn();
  const wall = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await fn();
    wall.push(performance.now() - t0);
  }
  const p = await tf.profile(fn);
  const by = new Map();
  let kernelMs = 0;
  for (const k of p.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    kernelMs += ms;
    const e = by.get(k.name) ?? { name: k.name, count: 0, ms: 0 };
    e.count++;
    e.ms += ms;
    by.set(k.name, e);
  }
  const row = {
    label,
    wallMs: median(wall),
    kernels: p.kernels.length,
    kernelMs,
    byKernel: [...by.values()].sort((a, b) => b.ms - a.ms),
  };
  out.push(row);
  if (!json) {
    console.log(
      `\n${label}: ${row.wallMs.toFixed(1)} ms per call (unprofiled); ${row.kernels} kernels, ` +
        `${kernelMs.toFixed(1)} ms inside them (profiled call), ${(row.wallMs - kernelMs).toFixed(1)} ms outside`,
    );
    for (const e of row.byKernel.slice(0, 12))
      console.log(
        `  ${e.name.padEnd(24)} ${String(e.count).padStart(5)} ${e.ms.toFixed(2).padStart(9)} ms`,
      );
  }
}

// --- training updates (as `para bench train`, 16 task examples) ---
const { model, taskBatch: batch, setups } = await trainWorkloads({ train, adapters });
for (const [method, make] of setups) {
  const adapter = make?.();
  const t = adapter ? train.adapterTrainable(model, adapter) : train.fullTrainable(model);
  const trainer = new train.Trainer(t, { lr: 1e-6, totalSteps: 1000 });
  await profile(`update ${method}, 16 task examples (${batch.tokens} tokens)`, () =>
    trainer.trainStep([batch]),
  );
  trainer.dispose();
  if (adapter) adapter.dispose();
  else t.model.dispose();
}
model.dispose();

// --- prefill and decode (as `para bench model`) ---
const config = modelPkg.createConfig(BENCH_MODEL_CONFIG);
const lm = modelPkg.CausalLM.random(config, 0);
const prompt = [Array.from({ length: 64 }, (_, t) => (1 + t * 17) % config.vocabSize)];
await profile('prefill 1 × 64 (bench model config)', async () => {
  const { logits, state } = lm.prefill(prompt, { capacity: 128 });
  await logits.data();
  logits.dispose();
  state.dispose();
});
const { logits, state } = lm.prefill(prompt, { capacity: 64 + 1024 });
logits.dispose();
await profile('decode step, batch 1 (bench model config)', async () => {
  const l = lm.decodeStep([5], state);
  await l.data();
  l.dispose();
});
state.dispose();
lm.dispose();
if (json) console.log(JSON.stringify(out, null, 2));
