/**
 * `para bench train [--quality] [--json] [--model DIR]`
 *
 * Speed (default): training tokens/s and achieved GFLOP/s of one optimizer update for PARA,
 * LoRA and full fine-tuning on the default backbone, on two workloads: a batch of 16 task
 * examples (short rows, the fine-tuning case) and 8 packed rows of 256 tokens (the pretraining
 * case). FLOPs are the model FLOPs the update needs: full fine-tuning 3× the forward pass
 * (forward, gradients of activations, gradients of weights), adapter training 2× (a frozen
 * weight needs no weight gradient) — adapter FLOPs themselves are ignored (< 2%).
 *
 * Quality (`--quality`): PARA vs LoRA vs IA3 at matched parameter budgets on the bundled tasks,
 * exact match on each task's test split, median of 3 seeds, with the bare backbone for reference.
 */
import * as path from 'node:path';
import { createAdapter } from '@para/adapters/node';
import { modelFlops } from '@para/model';
import {
  adapterTrainable,
  collate,
  collateWindows,
  evaluateDataset,
  finetune,
  fullTrainable,
  loadBackbone,
  loadDataset,
  type MethodName,
  methodConfig,
  type TokenizedDataset,
  type TokenizerLike,
  type TrainableModel,
  Trainer,
} from '@para/train/node';
import type { Command } from 'commander';
import { defaultBackboneDir } from '../backbone';
import { medianMs } from '../bench/timing';
import { parseNumber, startBackend } from './train';

interface BenchTrainFlags {
  quality?: boolean;
  json?: boolean;
  model?: string;
  steps?: string;
  seeds?: string;
  tasks?: string;
  lr?: string;
  backend?: string;
}

/**
 * Matched budgets on the default backbone (d = 256, d_kv = 128, d_ff = 688, 4 layers). LoRA
 * keeps alpha = 2r, as in the recorded table (BENCHMARKS.md), not the library default (8).
 */
export const QUALITY_METHODS: {
  label: string;
  method: MethodName;
  r?: number;
  extra?: Record<string, unknown>;
}[] = [
  { label: 'PARA r=4', method: 'para', r: 4 },
  { label: 'LoRA r=6 (q,v)', method: 'lora', r: 6, extra: { lora_alpha: 12 } },
  { label: 'IA3', method: 'ia3' },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function speed(f: BenchTrainFlags, say: (s: string) => void) {
  const backbone = await loadBackbone(f.model ?? defaultBackboneDir());
  const { model, tokenizer } = backbone;
  const data = await loadDataset(
    path.join(
      path.dirname(path.dirname(path.resolve(backbone.dir))),
      'data',
      'tasks',
      'antonym',
      'train.jsonl',
    ),
    tokenizer as TokenizerLike,
    { maxLength: 256 },
  );
  const pad = model.config.padTokenId ?? 0;
  const taskBatch = collate(data.examples.slice(0, 16), pad);
  const rng = (i: number) => (i * 2654435761) % model.config.vocabSize;
  const windows = Array.from({ length: 8 }, (_, b) =>
    Array.from({ length: 257 }, (_, t) => 4 + (rng(b * 257 + t) % (model.config.vocabSize - 4))),
  );
  const packed = { ...collateWindows(windows), promptLengths: windows.map(() => 128) };
  const flops = modelFlops(model.config);
  const rows: {
    method: string;
    workload: string;
    batch: string;
    ms: number;
    tokensPerSec: number;
    gflops: number;
  }[] = [];
  const setups: {
    method: string;
    make: () => { t: TrainableModel; dispose: () => void };
    factor: number;
  }[] = [
    {
      method: 'PARA r=8',
      factor: 2,
      make: () => {
        const a = createAdapter(model.config, methodConfig('para', 8, null));
        return { t: adapterTrainable(model, a), dispose: () => a.dispose() };
      },
    },
    {
      method: 'LoRA r=8 (q,v)',
      factor: 2,
      make: () => {
        const a = createAdapter(model.config, methodConfig('lora', 8, null));
        return { t: adapterTrainable(model, a), dispose: () => a.dispose() };
      },
    },
    {
      method: 'full fine-tuning',
      factor: 3,
      make: () => {
        const t = fullTrainable(model);
        return { t, dispose: () => t.model.dispose() };
      },
    },
  ];
  for (const s of setups) {
    const { t, dispose } = s.make();
    const trainer = new Trainer(t, { lr: 1e-6, totalSteps: 1000 });
    for (const [workload, batch] of [
      ['16 task examples', taskBatch],
      ['8 × 256 packed', packed],
    ] as const) {
      const [B, T] = [batch.ids.length, batch.ids[0]!.length];
      const ms = await medianMs(
        async () => {
          await trainer.trainStep([batch]);
        },
        // bench/peer/peer.py times PyTorch with the same warm-up and budget
        { budgetMs: 6000, minReps: 3, maxReps: 20, warmupMs: 3000 },
      );
      const row = {
        method: s.method,
        workload,
        batch: `${B}×${T}`,
        ms,
        tokensPerSec: (batch.tokens / ms) * 1000,
        gflops: (s.factor * flops.prefill(B, T)) / (ms / 1000) / 1e9,
      };
      rows.push(row);
      say(
        `${row.method.padEnd(18)} ${workload.padEnd(18)} ${row.batch.padEnd(8)} ${ms.toFixed(0).padStart(6)} ms/update ${Math.round(row.tokensPerSec).toString().padStart(6)} tok/s ${row.gflops.toFixed(1).padStart(6)} GFLOP/s`,
      );
    }
    trainer.dispose();
    dispose();
  }
  model.dispose();
  return { backbone: backbone.dir, parameters: model.numParameters, rows };
}

async function quality(f: BenchTrainFlags, say: (s: string) => void) {
  const backbone = await loadBackbone(f.model ?? defaultBackboneDir());
  const { model, tokenizer } = backbone;
  const tok = tokenizer as TokenizerLike;
  const tasksDir = path.join(
    path.dirname(path.dirname(path.resolve(backbone.dir))),
    'data',
    'tasks',
  );
  const tasks =
    f.tasks === undefined
      ? ['arithmetic', 'category', 'antonym', 'pos']
      : f.tasks.split(',').map((s) => s.trim());
  const seeds = f.seeds === undefined ? [0, 1, 2] : f.seeds.split(',').map((s) => Number(s));
  const steps = parseNumber(f.steps, '--steps', 'int') ?? 300;
  const lr = parseNumber(f.lr, '--lr', 'positive') ?? 3e-3;
  const results: {
    task: string;
    method: string;
    parameters: number;
    seeds: number[];
    exactMatch: number[];
    loss: number[];
    median: number;
    medianLoss: number;
  }[] = [];
  for (const task of tasks) {
    const maxLength = model.config.maxPositionEmbeddings;
    const train: TokenizedDataset = await loadDataset(
      path.join(tasksDir, task, 'train.jsonl'),
      tok,
      { maxLength },
    );
    const test: TokenizedDataset = await loadDataset(path.join(tasksDir, task, 'test.jsonl'), tok, {
      maxLength,
    });
    const bare = await evaluateDataset(model, tok, test);
    results.push({
      task,
      method: 'bare backbone',
      parameters: 0,
      seeds: [],
      exactMatch: [bare.exact_match ?? 0],
      loss: [bare.loss],
      median: bare.exact_match ?? 0,
      medianLoss: bare.loss,
    });
    say(
      `${task}: bare backbone exact match ${(100 * (bare.exact_match ?? 0)).toFixed(1)}%, loss ${bare.loss.toFixed(3)}`,
    );
    for (const m of QUALITY_METHODS) {
      const em: number[] = [];
      const losses: number[] = [];
      let parameters = 0;
      for (const seed of seeds) {
        const adapter = createAdapter(
          model.config,
          { ...methodConfig(m.method, m.r, null), ...m.extra },
          { seed },
        );
        parameters = adapter.numParameters;
        const t0 = performance.now();
        await finetune({ model, tokenizer: tok, adapter, train, steps, lr, batchSize: 16, seed });
        const r = await evaluateDataset(model, tok, test, { adapter: adapter.attach(model) });
        adapter.dispose();
        em.push(r.exact_match ?? 0);
        losses.push(r.loss);
        say(
          `${task}: ${m.label} seed ${seed}: exact match ${(100 * (r.exact_match ?? 0)).toFixed(1)}%, loss ${r.loss.toFixed(3)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
        );
      }
      results.push({
        task,
        method: m.label,
        parameters,
        seeds,
        exactMatch: em,
        loss: losses,
        median: median(em),
        medianLoss: median(losses),
      });
    }
  }
  model.dispose();
  return { backbone: backbone.dir, steps, lr, batchSize: 16, seeds, results };
}

export function registerTrainBench(bench: Command): void {
  bench
    .command('train')
    .description(
      'training speed (tokens/s, GFLOP/s) of PARA, LoRA and full fine-tuning; --quality: PARA vs LoRA vs IA3 on the bundled tasks',
    )
    .option(
      '--quality',
      'exact match of PARA, LoRA and IA3 at matched parameter budgets (median of 3 seeds; slow)',
    )
    .option('--steps <n>', 'training updates per run for --quality (default 300)')
    .option('--seeds <list>', 'seeds for --quality (default 0,1,2)')
    .option('--tasks <list>', 'tasks for --quality (default arithmetic,category,antonym,pos)')
    .option('--lr <x>', 'learning rate for --quality (default 3e-3, every method)')
    .option('--model <dir>', 'backbone directory (default: the bundled backbone)')
    .option('--json', 'print JSON')
    .option('-b, --backend <name>', 'tfjs backend; overrides PARA_BACKEND')
    .action(async (f: BenchTrainFlags) => {
      await startBackend(f.backend);
      const say = (s: string) => process.stderr.write(`${s}\n`);
      const result = f.quality ? await quality(f, say) : await speed(f, say);
      if (f.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else if ('rows' in result) {
        process.stdout.write(
          `| method | workload | batch | ms / update | tokens/s | GFLOP/s |\n|---|---|---|---:|---:|---:|\n`,
        );
        for (const r of result.rows)
          process.stdout.write(
            `| ${r.method} | ${r.workload} | ${r.batch} | ${r.ms.toFixed(0)} | ${Math.round(r.tokensPerSec)} | ${r.gflops.toFixed(1)} |\n`,
          );
      } else {
        process.stdout.write(
          `| task | method | trainable parameters | exact match (median) | per seed | test loss (median) |\n|---|---|---:|---:|---|---:|\n`,
        );
        for (const r of result.results) {
          process.stdout.write(
            `| ${r.task} | ${r.method} | ${r.parameters.toLocaleString('en-US')} | ${(100 * r.median).toFixed(1)}% | ${r.exactMatch.map((x) => (100 * x).toFixed(1)).join(' / ')} | ${r.medianLoss.toFixed(3)} |\n`,
          );
        }
      }
    });
}
