#!/usr/bin/env node
// Decode speed and dispatches per decoded token of the bundled backbone on webgpu in Node (Dawn;
// on this machine Mesa llvmpipe through OpenGL ES), the generic tfjs path against this package's
// fused kernels, in the same process and alternating (rounds), so the ratio holds on a loaded
// machine:
//   pnpm --filter @para/webgpu build && node packages/webgpu/scripts/bench-decode.mjs [--rounds 3] [--tokens 32] [--batch 1]
// Greedy, a 6-token prompt; decode tokens/s = steps × batch / decode wall time (the model's own
// timings, prefill excluded); best round per side. Dispatches: GPUComputePassEncoder
// dispatchWorkgroups calls in one decode step (the difference between 3 and 2 new tokens): every
// program, the KV-cache writes and this package's multi-output kernels included.
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { initBackend } from '@para/core/node';
import { loadModel } from '@para/model/node';
import * as tf from '@tensorflow/tfjs-core';
import { installWebGpuKernels, uninstallWebGpuKernels } from '../dist/index.js';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const rounds = arg('rounds', 3);
const tokens = arg('tokens', 32);
const batch = arg('batch', 1);

// The kernels are installed (and uninstalled) here, from this build, not by the start-up.
const report = await initBackend({ backend: 'webgpu', webgpuKernels: false });
const device = report.backends.find((b) => b.name === 'webgpu')?.detail ?? 'Dawn';
const model = await loadModel(fileURLToPath(new URL('../../../assets/backbone', import.meta.url)));
const ids = Array.from({ length: batch }, (_, b) => [1, 200 + b, 300, 400, 500, 600]);
const run = (n) => model.generate(ids, { maxNewTokens: n, stopTokens: [] });
const sides = {
  generic: () => uninstallWebGpuKernels(),
  fused: () => installWebGpuKernels(),
};

async function dispatchesPerStep() {
  const pass = globalThis.GPUComputePassEncoder.prototype;
  const original = pass.dispatchWorkgroups;
  const count = async (n) => {
    let k = 0;
    pass.dispatchWorkgroups = function (...a) {
      k++;
      return original.apply(this, a);
    };
    try {
      await run(n);
    } finally {
      pass.dispatchWorkgroups = original;
    }
    return k;
  };
  return (await count(3)) - (await count(2));
}

const result = {};
for (const [name, use] of Object.entries(sides)) {
  use();
  await run(3); // pipelines compiled
  result[name] = { dispatches: await dispatchesPerStep(), tokensPerSecond: [] };
}
const load0 = loadavg()[0];
for (let r = 0; r < rounds; r++) {
  for (const [name, use] of Object.entries(sides)) {
    use();
    const { timings } = await run(tokens);
    result[name].tokensPerSecond.push((timings.decodeSteps * batch * 1000) / timings.decodeMs);
  }
}
const best = (xs) => Math.max(...xs);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const g = result.generic;
const f = result.fused;
console.log(`backend: ${tf.getBackend()} (${device})`);
console.log(
  `load average ${load0.toFixed(1)} → ${loadavg()[0].toFixed(1)} (${rounds} rounds, batch ${batch}, ${tokens} new tokens)`,
);
for (const [name, s] of Object.entries(result)) {
  console.log(
    `${name.padEnd(8)} ${String(s.dispatches).padStart(4)} dispatches/token   decode best ${best(s.tokensPerSecond).toFixed(2)}, median ${median(s.tokensPerSecond).toFixed(2)} tokens/s (rounds: ${s.tokensPerSecond.map((x) => x.toFixed(2)).join(', ')})`,
  );
}
console.log(
  `fused/generic: dispatches ×${(f.dispatches / g.dispatches).toFixed(2)}, tokens/s ×${(best(f.tokensPerSecond) / best(g.tokensPerSecond)).toFixed(2)} (best), ×${(median(f.tokensPerSecond) / median(g.tokensPerSecond)).toFixed(2)} (median)`,
);
model.dispose();
