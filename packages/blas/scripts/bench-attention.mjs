#!/usr/bin/env node
// A/B of @para/ops' attention alone with @para/blas's fused kernels installed and uninstalled,
// alternating call by call in ONE process (so machine load hits both sides alike). Shapes: the
// bundled backbone's training attention (8 × 256 packed: Hq 4 / Hkv 2, hd 64, causal; forward and
// forward + backward), `para bench model`'s prefill (64 tokens, 8 heads, hd 64) and decode steps
// over 128 slots at batch 1 and 32. Prints medians (ms), the ratio and the load average.
//
//   pnpm build && node packages/blas/scripts/bench-attention.mjs [--rounds 12]
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const app = createRequire(join(root, 'packages', 'model', 'package.json'));
const load = (spec) => import(pathToFileURL(app.resolve(spec)).href);
const args = process.argv.slice(2);
const rounds = Number(args[args.indexOf('--rounds') + 1]) || 12;
const [{ initBackend }, tf, blas, opsModule] = await Promise.all([
  load('@para/core/node'),
  load('@tensorflow/tfjs-core'),
  import(pathToFileURL(join(root, 'packages', 'blas', 'dist', 'index.js')).href),
  load('@para/ops'),
]);
const ops = opsModule.attentionMask ? opsModule : opsModule.default;
await initBackend({ backend: 'wasm' });
blas.installBlasKernels();
if (!blas.fusedKernelsInstalled()) {
  console.error(`fused kernels not installed: ${blas.fusedKernelsProblem() ?? 'unknown'}`);
  process.exit(1);
}
const shapes = [
  {
    name: 'train 8×256 (Hq 4/Hkv 2, hd 64)',
    B: 8,
    Hq: 4,
    Hkv: 2,
    T: 256,
    S: 256,
    hd: 64,
    grad: true,
  },
  { name: 'prefill 1×64 (8 heads, hd 64)', B: 1, Hq: 8, Hkv: 8, T: 64, S: 64, hd: 64 },
  { name: 'decode batch 1, S 128', B: 1, Hq: 8, Hkv: 8, T: 1, S: 128, hd: 64 },
  { name: 'decode batch 32, S 128', B: 32, Hq: 8, Hkv: 8, T: 1, S: 128, hd: 64 },
];
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
console.log(
  `attention A/B, wasm + OpenBLAS, fused on ${blas.fusedThreads()} threads, ${rounds} rounds`,
);
for (const c of shapes) {
  const q = tf.randomNormal([c.B, c.Hq, c.T, c.hd]); // [B, Hq, T, hd]
  const k = tf.randomNormal([c.B, c.Hkv, c.S, c.hd]); // [B, Hkv, S, hd]
  const v = tf.randomNormal([c.B, c.Hkv, c.S, c.hd]); // [B, Hkv, S, hd]
  const valid = Array.from({ length: c.B }, () => Array(c.S).fill(1));
  const mask = ops.attentionMask({ keyValid: valid, queryLength: c.T }); // [B, 1, T, S]
  const fwd = () => {
    const y = ops.attention(q, k, v, mask); // [B, Hq, T, hd]
    y.dataSync();
    y.dispose();
  };
  const bwd = () => {
    const g = tf.tidy(() => tf.grads((a, b, d) => tf.sum(ops.attention(a, b, d, mask)))([q, k, v]));
    g[0].dataSync();
    tf.dispose(g);
  };
  for (const [label, fn] of [['forward', fwd], ...(c.grad ? [['forward + backward', bwd]] : [])]) {
    const t = { on: [], off: [] };
    for (let r = 0; r < rounds + 1; r++) {
      for (const on of r % 2 ? [true, false] : [false, true]) {
        if (on) blas.installFusedKernels();
        else blas.uninstallFusedKernels();
        const t0 = performance.now();
        fn();
        if (r > 0) t[on ? 'on' : 'off'].push(performance.now() - t0); // round 0: warm-up
      }
    }
    const [on, off] = [median(t.on), median(t.off)];
    console.log(
      `${`${c.name} ${label}`.padEnd(48)} fused ${on.toFixed(2).padStart(8)} ms  generic ${off.toFixed(2).padStart(8)} ms  ×${(off / on).toFixed(2)}  (load ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')})`,
    );
  }
  blas.installFusedKernels();
  tf.dispose([q, k, v, mask]);
}
