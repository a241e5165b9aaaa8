/**
 * `para bench matmul`: GFLOP/s of the wasm backend's matmul kernels on the shapes a transformer
 * uses, for stock tfjs-backend-wasm, wasm + @para/core's transpose/batch fix, and wasm +
 * @para/blas (OpenBLAS), with raw OpenBLAS sgemm on plain arrays as the ceiling, all in one run;
 * plus a small transformer training step (tokens/s) under each kernel set.
 */

import {
  importFromApp,
  initBackend,
  installWasmMatmulFix,
  ParaError,
  Rng,
  uninstallWasmMatmulFix,
} from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { medianMs } from './timing';

export type KernelSet = 'stock' | 'fix' | 'blas';

export interface MatmulShape {
  name: string;
  a: number[];
  b: number[];
  transposeA: boolean;
  transposeB: boolean;
}

/** The shapes of the issue: square, transposed (every gradient), decode, attention, linear layer. */
export const MATMUL_SHAPES: MatmulShape[] = [
  { name: '1024³', a: [1024, 1024], b: [1024, 1024], transposeA: false, transposeB: false },
  { name: '512³ transposeA', a: [512, 512], b: [512, 512], transposeA: true, transposeB: false },
  { name: '512³ transposeB', a: [512, 512], b: [512, 512], transposeA: false, transposeB: true },
  {
    name: '[32,512]×[512,1376] decode',
    a: [32, 512],
    b: [512, 1376],
    transposeA: false,
    transposeB: false,
  },
  {
    name: '[64,128,64]×[64,64,128] attention',
    a: [64, 128, 64],
    b: [64, 64, 128],
    transposeA: false,
    transposeB: false,
  },
  {
    name: '[8,128,512]×[512,512] linear',
    a: [8, 128, 512],
    b: [512, 512],
    transposeA: false,
    transposeB: false,
  },
];

interface BlasModule {
  loadBlas(): { available: boolean; reason?: string; openblas?: string; threads?: number };
  installBlasKernels(): boolean;
  uninstallBlasKernels(): void;
  sgemm(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    n: number,
    k: number,
    transA?: boolean,
    transB?: boolean,
  ): void;
}

async function loadBlasModule(): Promise<{ blas?: BlasModule; reason?: string }> {
  try {
    // The same module instance @para/core's Node entry installed the kernels from.
    const blas = await importFromApp<BlasModule>('@para/blas');
    const status = blas.loadBlas();
    return status.available ? { blas } : { reason: status.reason ?? 'OpenBLAS unavailable' };
  } catch (e) {
    return { reason: `@para/blas failed to load: ${(e as Error).message}` };
  }
}

/** Switch the wasm backend's BatchMatMul/_FusedMatMul to one kernel set. */
function useKernels(set: KernelSet, blas: BlasModule | undefined): void {
  blas?.uninstallBlasKernels();
  uninstallWasmMatmulFix();
  if (set === 'stock') return;
  installWasmMatmulFix();
  if (set === 'blas') {
    if (blas === undefined || !blas.installBlasKernels())
      throw new Error('OpenBLAS kernels unavailable');
  }
}

/** FLOPs of one matmul: 2·M·N·K per batch. */
function matmulFlops(s: MatmulShape): number {
  const a = s.a;
  const rank = a.length;
  const m = s.transposeA ? (a[rank - 1] as number) : (a[rank - 2] as number);
  const k = s.transposeA ? (a[rank - 2] as number) : (a[rank - 1] as number);
  const n = s.transposeB ? (s.b[s.b.length - 2] as number) : (s.b[s.b.length - 1] as number);
  const batch = a.slice(0, -2).reduce((x, y) => x * y, 1);
  return 2 * batch * m * n * k;
}

async function timeKernel(s: MatmulShape, rng: Rng): Promise<number> {
  const a = rng.normalTensor(s.a);
  const b = rng.normalTensor(s.b);
  const ms = await medianMs(async () => {
    // wasm kernels run synchronously: the product is complete when matMul returns. (Reading the
    // result back would add a copy out of the heap that raw sgemm does not pay.)
    tf.matMul(a, b, s.transposeA, s.transposeB).dispose();
  });
  tf.dispose([a, b]);
  return matmulFlops(s) / (ms * 1e6);
}

async function timeRawSgemm(s: MatmulShape, blas: BlasModule, rng: Rng): Promise<number> {
  const a = rng.normalArray(s.a.reduce((x, y) => x * y, 1));
  const b = rng.normalArray(s.b.reduce((x, y) => x * y, 1));
  const rank = s.a.length;
  const m = s.transposeA ? (s.a[rank - 1] as number) : (s.a[rank - 2] as number);
  const k = s.transposeA ? (s.a[rank - 2] as number) : (s.a[rank - 1] as number);
  const n = s.transposeB ? (s.b[s.b.length - 2] as number) : (s.b[s.b.length - 1] as number);
  const batchA = s.a.slice(0, -2).reduce((x, y) => x * y, 1);
  const batchB = s.b.slice(0, -2).reduce((x, y) => x * y, 1);
  const c = new Float32Array(batchA * m * n);
  const ms = await medianMs(() => {
    if (batchB === 1) {
      // [B,M,K]×[K,N] is one [B·M,K]×[K,N] GEMM (as the kernels do).
      blas.sgemm(a, b, c, batchA * m, n, k, s.transposeA, s.transposeB);
      return;
    }
    for (let i = 0; i < batchA; i++) {
      blas.sgemm(
        a.subarray(i * m * k, (i + 1) * m * k),
        b.subarray(i * k * n, (i + 1) * k * n),
        c.subarray(i * m * n, (i + 1) * m * n),
        m,
        n,
        k,
        s.transposeA,
        s.transposeB,
      );
    }
  });
  return matmulFlops(s) / (ms * 1e6);
}

/** Config of the small transformer whose training step is timed. */
export const TRAIN_STEP_CONFIG = {
  layers: 2,
  d: 512,
  heads: 8,
  ffn: 1376,
  vocab: 2048,
  batch: 4,
  seq: 128,
};

/**
 * A LLaMA-style training step written with plain tfjs ops (embedding, RMSNorm, causal
 * multi-head attention, SwiGLU MLP, tied-free LM head, cross-entropy, SGD) — the kernel mix of
 * real training, independent of @para/model. Returns tokens/s.
 */
async function timeTrainStep(rng: Rng): Promise<number> {
  const { layers, d, heads, ffn, vocab, batch, seq } = TRAIN_STEP_CONFIG;
  const hd = d / heads;
  const init = (shape: number[]) => tf.variable(rng.normalTensor(shape, 0, 0.02));
  const params = {
    embed: init([vocab, d]),
    head: init([d, vocab]),
    layers: Array.from({ length: layers }, () => ({
      wq: init([d, d]),
      wk: init([d, d]),
      wv: init([d, d]),
      wo: init([d, d]),
      wg: init([d, ffn]),
      wu: init([d, ffn]),
      wd: init([ffn, d]),
    })),
  };
  const ids = tf.tensor2d(
    Array.from({ length: batch * seq }, () => rng.int(vocab)),
    [batch, seq],
    'int32',
  ); // [B, T]
  const targets = tf.oneHot(
    tf.reshape(
      tf.tensor2d(
        Array.from({ length: batch * seq }, () => rng.int(vocab)),
        [batch, seq],
        'int32',
      ),
      [-1],
    ),
    vocab,
  ); // [B·T, V]
  const causal = tf.linalg.bandPart(tf.ones([seq, seq]), -1, 0); // [T, T] lower triangle
  const maskAdd = tf.mul(tf.sub(1, causal), -1e9); // [T, T]
  const optimizer = tf.train.sgd(0.01);
  const rms = (x: tf.Tensor) => tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-5)));
  const loss = () =>
    tf.tidy(() => {
      let x = tf.reshape(tf.gather(params.embed, tf.reshape(ids, [-1])), [batch * seq, d]); // [B·T, d]
      for (const l of params.layers) {
        const h = rms(x);
        const split = (t: tf.Tensor) =>
          tf.transpose(tf.reshape(t, [batch, seq, heads, hd]), [0, 2, 1, 3]); // [B, H, T, hd]
        const q = split(tf.matMul(h, l.wq));
        const k = split(tf.matMul(h, l.wk));
        const v = split(tf.matMul(h, l.wv));
        const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd)), maskAdd); // [B, H, T, T]
        const att = tf.matMul(tf.softmax(scores), v); // [B, H, T, hd]
        const merged = tf.reshape(tf.transpose(att, [0, 2, 1, 3]), [batch * seq, d]); // [B·T, d]
        x = tf.add(x, tf.matMul(merged, l.wo));
        const h2 = rms(x);
        const gate = tf.matMul(h2, l.wg); // [B·T, ffn]
        x = tf.add(x, tf.matMul(tf.mul(tf.mul(gate, tf.sigmoid(gate)), tf.matMul(h2, l.wu)), l.wd));
      }
      const logits = tf.matMul(rms(x), params.head); // [B·T, V]
      return tf.losses.softmaxCrossEntropy(targets, logits) as tf.Scalar;
    });
  const ms = await medianMs(
    async () => {
      const cost = optimizer.minimize(loss, true);
      await cost?.data();
      cost?.dispose();
    },
    { budgetMs: 4000, minReps: 2, maxReps: 10 },
  );
  tf.dispose([
    ids,
    targets,
    causal,
    maskAdd,
    params.embed,
    params.head,
    ...params.layers.flatMap((l) => Object.values(l)),
  ]);
  optimizer.dispose();
  return (batch * seq) / (ms / 1000);
}

export interface MatmulBenchResult {
  backend: 'wasm';
  openblas: string | null;
  blasUnavailable: string | null;
  unit: 'GFLOP/s';
  shapes: {
    name: string;
    stock: number;
    fix: number;
    blas: number | null;
    rawSgemm: number | null;
  }[];
  trainStep: {
    config: typeof TRAIN_STEP_CONFIG;
    unit: 'tokens/s';
    stock: number | null;
    fix: number;
    blas: number | null;
  };
}

export async function runMatmulBench(
  opts: { skipStockTraining?: boolean; onProgress?: (line: string) => void } = {},
): Promise<MatmulBenchResult> {
  await initBackend({ backend: 'wasm' });
  if (tf.getBackend() !== 'wasm')
    throw new ParaError('BACKEND_UNAVAILABLE', 'the matmul benchmark needs the wasm backend');
  const { blas, reason } = await loadBlasModule();
  const status = blas?.loadBlas();
  const rng = new Rng(0);
  const shapes: MatmulBenchResult['shapes'] = [];
  for (const s of MATMUL_SHAPES) {
    useKernels('stock', blas);
    const stock = await timeKernel(s, rng);
    useKernels('fix', blas);
    const fix = await timeKernel(s, rng);
    let b: number | null = null;
    let raw: number | null = null;
    if (blas) {
      useKernels('blas', blas);
      b = await timeKernel(s, rng);
      raw = await timeRawSgemm(s, blas, rng);
    }
    shapes.push({ name: s.name, stock, fix, blas: b, rawSgemm: raw });
    opts.onProgress?.(`matmul ${s.name}: done`);
  }
  let stockStep: number | null = null;
  if (!opts.skipStockTraining) {
    useKernels('stock', blas);
    stockStep = await timeTrainStep(rng);
    opts.onProgress?.('training step, stock: done');
  }
  useKernels('fix', blas);
  const fixStep = await timeTrainStep(rng);
  opts.onProgress?.('training step, fix: done');
  let blasStep: number | null = null;
  if (blas) {
    useKernels('blas', blas);
    blasStep = await timeTrainStep(rng);
    opts.onProgress?.('training step, blas: done');
  }
  // Leave the best kernels installed.
  useKernels(blas ? 'blas' : 'fix', blas);
  return {
    backend: 'wasm',
    openblas: status?.openblas ?? null,
    blasUnavailable: blas ? null : (reason ?? null),
    unit: 'GFLOP/s',
    shapes,
    trainStep: {
      config: TRAIN_STEP_CONFIG,
      unit: 'tokens/s',
      stock: stockStep,
      fix: fixStep,
      blas: blasStep,
    },
  };
}

export function formatMatmulBench(r: MatmulBenchResult): string {
  const f = (x: number | null) => (x === null ? '—' : x.toFixed(1));
  const ratio = (x: number | null, y: number | null) =>
    x === null || y === null ? '—' : `${(x / y).toFixed(2)}×`;
  const lines = [
    `wasm backend matmul, GFLOP/s (median; OpenBLAS: ${r.openblas ?? `unavailable — ${r.blasUnavailable}`})`,
    '',
    `| shape | stock wasm | wasm + fix | wasm + BLAS | raw sgemm | BLAS / raw |`,
    '|---|---|---|---|---|---|',
    ...r.shapes.map(
      (s) =>
        `| ${s.name} | ${f(s.stock)} | ${f(s.fix)} | ${f(s.blas)} | ${f(s.rawSgemm)} | ${ratio(s.blas, s.rawSgemm)} |`,
    ),
    '',
    `training step (${r.trainStep.config.layers} layers, d=${r.trainStep.config.d}, ffn ${r.trainStep.config.ffn}, batch ${r.trainStep.config.batch}×${r.trainStep.config.seq}), tokens/s:`,
    `  stock ${f(r.trainStep.stock)}   fix ${f(r.trainStep.fix)} (${ratio(r.trainStep.fix, r.trainStep.stock)})   BLAS ${f(r.trainStep.blas)} (${ratio(r.trainStep.blas, r.trainStep.stock)})`,
  ];
  return lines.join('\n');
}
