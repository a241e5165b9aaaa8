// Decode speed and kernel launches per decoded token on the bundled default backbone:
//   node scripts/profile-decode.mjs [backend]        (wasm, cpu, webgpu — Dawn in Node; default wasm)
// Greedy, batch 1, a 6-token prompt; ms per token over 16 tokens after a warm-up, then the kernels
// tfjs runs for one extra decode step (the difference between 3 and 2 new tokens).

import { fileURLToPath } from 'node:url';
import { initBackend } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { loadModel } from '../dist/node.js';

const backend = process.argv[2] ?? 'wasm';
await initBackend({ backend });
const model = await loadModel(fileURLToPath(new URL('../../../assets/backbone', import.meta.url)));
const ids = [1, 200, 300, 400, 500, 600];
const run = (n) => model.generate([ids], { maxNewTokens: n, stopTokens: [] });
await run(16);
const t0 = performance.now();
await run(16);
const msPerToken = (performance.now() - t0) / 16;
const kernels = async (n) => (await tf.profile(() => run(n))).kernels.map((k) => k.name);
const two = await kernels(2);
const three = await kernels(3);
const step = new Map();
for (const k of three) step.set(k, (step.get(k) ?? 0) + 1);
for (const k of two) step.set(k, (step.get(k) ?? 0) - 1);
const rows = [...step].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
const launches = rows.filter(([k]) => k !== 'Reshape').reduce((s, [, n]) => s + n, 0);
console.log(
  `${tf.getBackend()}: ${msPerToken.toFixed(1)} ms per decoded token; one decode step runs ${three.length - two.length} kernels (${launches} besides Reshape):`,
);
console.log(rows.map(([k, n]) => `${k} ${n}`).join(', '));
model.dispose();
