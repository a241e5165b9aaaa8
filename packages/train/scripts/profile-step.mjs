// Kernel time breakdown of one training update on the default backbone:
//   node scripts/profile-step.mjs [para|lora|full] [B] [T]

import { createAdapter } from '@para/adapters';
import { initBackend } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import {
  adapterTrainable,
  collateWindows,
  fullTrainable,
  loadBackbone,
  methodConfig,
  Trainer,
} from '../dist/node.js';

await initBackend();
const [method = 'para', Bs = '8', Ts = '256'] = process.argv.slice(2);
const B = Number(Bs),
  T = Number(Ts);
const { model } = await loadBackbone();
const t =
  method === 'full'
    ? fullTrainable(model)
    : adapterTrainable(model, createAdapter(model.config, methodConfig(method, 8, null)));
const trainer = new Trainer(t, { lr: 1e-6, totalSteps: 100 });
const windows = Array.from({ length: B }, (_, b) =>
  Array.from({ length: T + 1 }, (_, i) => 4 + ((b * 7919 + i * 104729) % 4000)),
);
const batch = { ...collateWindows(windows), promptLengths: windows.map(() => Math.floor(T / 2)) };
await trainer.trainStep([batch]);
await trainer.trainStep([batch]);
const t0 = performance.now();
const prof = await tf.profile(() => trainer.trainStep([batch]));
const wall = performance.now() - t0;
const agg = new Map();
for (const k of prof.kernels) {
  const ms = await k.kernelTimeMs;
  const a = agg.get(k.name) ?? { ms: 0, n: 0 };
  a.ms += typeof ms === 'number' ? ms : 0;
  a.n++;
  agg.set(k.name, a);
}
const rows = [...agg.entries()].sort((a, b) => b[1].ms - a[1].ms);
const total = rows.reduce((s, [, a]) => s + a.ms, 0);
console.log(
  `${method} ${B}x${T}: wall ${wall.toFixed(0)} ms (profiled), kernels ${total.toFixed(0)} ms`,
);
for (const [n, a] of rows.slice(0, 12))
  console.log(
    `${n.padEnd(22)} ${a.ms.toFixed(1).padStart(8)} ms ${((100 * a.ms) / total).toFixed(1).padStart(5)}% (${a.n} calls)`,
  );
