// The workloads @para/blas's scripts time and profile (bench-fused.mjs, profile-kernels.mjs):
// the workspace packages loaded as the `para` CLI sees them (apps/node-demo's dependencies) on
// wasm with OpenBLAS and the fused kernels; `para bench train`'s batches and methods; `para
// bench model`'s config.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const app = createRequire(join(root, 'apps', 'node-demo', 'package.json'));
const load = (spec) => import(pathToFileURL(app.resolve(spec)).href);

/** The packages, after starting wasm with OpenBLAS and the fused kernels (exits if they are missing). */
export async function loadWorkspace() {
  const [{ initBackend }, tf, blas, train, adapters, modelPkg] = await Promise.all([
    load('@para/core/node'),
    load('@tensorflow/tfjs-core'),
    load('@para/blas'),
    load('@para/train/node'),
    load('@para/adapters/node'),
    load('@para/model'),
  ]);
  await initBackend({ backend: 'wasm' });
  // (Resolved this way the packages load as CommonJS, where @para/core's optional import of
  // @para/blas does not find it: install the kernels here, as @para/core does on the ESM path.)
  blas.installBlasKernels();
  if (!blas.blasKernelsInstalled() || !blas.fusedKernelsInstalled()) {
    console.error(`fused kernels not installed: ${blas.fusedKernelsProblem() ?? 'unknown'}`);
    process.exit(1);
  }
  return { tf, blas, train, adapters, modelPkg };
}

/**
 * `para bench train`'s workloads on the bundled backbone: 16 task examples (antonym), 8 packed
 * rows of 256, and the methods (PARA r=8, LoRA r=8 on q,v, full fine-tuning: `make` null).
 */
export async function trainWorkloads({ train, adapters }) {
  const { model, tokenizer } = await train.loadBackbone(join(root, 'assets', 'backbone'));
  const data = await train.loadDataset(
    join(root, 'data', 'tasks', 'antonym', 'train.jsonl'),
    tokenizer,
    { maxLength: 256 },
  );
  const taskBatch = train.collate(data.examples.slice(0, 16), model.config.padTokenId ?? 0);
  const rng = (i) => (i * 2654435761) % model.config.vocabSize;
  const windows = Array.from({ length: 8 }, (_, b) =>
    Array.from({ length: 257 }, (_, t) => 4 + (rng(b * 257 + t) % (model.config.vocabSize - 4))),
  );
  const packed = { ...train.collateWindows(windows), promptLengths: windows.map(() => 128) };
  const setups = [
    ['PARA r=8', () => adapters.createAdapter(model.config, train.methodConfig('para', 8, null))],
    [
      'LoRA r=8 (q,v)',
      () => adapters.createAdapter(model.config, train.methodConfig('lora', 8, null)),
    ],
    ['full fine-tuning', null],
  ];
  return { model, taskBatch, packed, setups };
}

/** `para bench model`'s config (BENCH_CONFIG of apps/node-demo/src/bench/model.ts). */
export const BENCH_MODEL_CONFIG = {
  vocabSize: 4096,
  hiddenSize: 512,
  intermediateSize: 1376,
  numLayers: 8,
  numHeads: 8,
  numKvHeads: 8,
  maxPositionEmbeddings: 2048,
};
