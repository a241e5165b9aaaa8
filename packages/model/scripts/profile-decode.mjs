// Decode speed and kernel launches per decoded token on the bundled default backbone:
//   node scripts/profile-decode.mjs [backend]        (wasm, cpu, webgpu — Dawn in Node; default wasm)
// Greedy, batch 1, a 6-token prompt; ms per token over 16 tokens after a warm-up, then the kernels
// tfjs runs for one extra decode step (the difference between 3 and 2 new tokens). On webgpu the
// fused WGSL kernels of @para/webgpu (packages/webgpu, built) are installed as para's start-up
// does (PARA_FUSED=0: the generic path), and GPU dispatches per step are counted too.

import { fileURLToPath } from 'node:url';
import { initBackend } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { loadModel } from '../dist/node.js';

const backend = process.argv[2] ?? 'wasm';
const report = await initBackend({
  backend,
  // This package does not depend on @para/webgpu (it depends on this one): its build, by path.
  webgpuKernels: () => import('../../webgpu/dist/index.js'),
});
console.log(`${backend}: ${report.backends.find((b) => b.name === report.active)?.detail ?? ''}`);
const model = await loadModel(fileURLToPath(new URL('../../../assets/backbone', import.meta.url)));
const ids = [1, 200, 300, 400, 500, 600];
const run = (n) => model.generate([ids], { maxNewTokens: n, stopTokens: [] });
await run(16);
const t0 = performance.now();
await run(16);
const msPerToken = (performance.now() - t0) / 16;
const pass = globalThis.GPUComputePassEncoder?.prototype;
let dispatches = 0;
const kernels = async (n) => {
  const original = pass?.dispatchWorkgroups;
  const start = dispatches;
  if (pass)
    pass.dispatchWorkgroups = function (...a) {
      dispatches++;
      return original.apply(this, a);
    };
  try {
    return {
      names: (await tf.profile(() => run(n))).kernels.map((k) => k.name),
      n: dispatches - start,
    };
  } finally {
    if (pass) pass.dispatchWorkgroups = original;
  }
};
const { names: two, n: d2 } = await kernels(2);
const { names: three, n: d3 } = await kernels(3);
const step = new Map();
for (const k of three) step.set(k, (step.get(k) ?? 0) + 1);
for (const k of two) step.set(k, (step.get(k) ?? 0) - 1);
const rows = [...step].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
const launches = rows.filter(([k]) => k !== 'Reshape').reduce((s, [, n]) => s + n, 0);
console.log(
  `${tf.getBackend()}: ${msPerToken.toFixed(1)} ms per decoded token; one decode step runs ${three.length - two.length} kernels (${launches} besides Reshape)${pass ? `, ${d3 - d2} GPU dispatches` : ''}:`,
);
console.log(rows.map(([k, n]) => `${k} ${n}`).join(', '));
model.dispose();
