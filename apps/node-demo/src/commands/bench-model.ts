/**
 * `para bench model [--json] [--backend NAME]`: prefill and decode tokens/s of the backbone at
 * batch 1 and 32 on a stated config (d=512, 8 layers, d_ff 1376, 8 heads, vocab 4096, random
 * init, seed 0; prompt 64 tokens, 64 decode steps), achieved GFLOP/s, and the same backend's
 * plain [1024, 1024] × [1024, 1024] matmul GFLOP/s measured in the same run.
 */

import type { BackendReport } from '@para/core/node';
import type { Command } from 'commander';
import { startBackend } from '../backend';
import { type ModelBenchResult, runModelBench } from '../bench/model';
import { nonNegativeIntFlag, positiveIntFlag } from '../flags';

export interface ModelBenchOutput extends ModelBenchResult {
  backendDetail: string | undefined;
  command: string;
}

export function formatModelBench(r: ModelBenchOutput): string {
  const c = r.config;
  const lines = [
    `para bench model — backend ${r.backend}${r.backendDetail ? ` (${r.backendDetail})` : ''}`,
    `config: d=${c.hiddenSize}, ${c.numLayers} layers, d_ff ${c.intermediateSize}, ${c.numHeads} heads (${c.numKvHeads} kv), vocab ${c.vocabSize}; ${(r.parameters / 1e6).toFixed(1)}M parameters, random init (seed 0)`,
    `prompt ${r.promptLength} tokens, ${r.decodeSteps} decode steps; GFLOP = 2·matmul params·tokens + attention (flops.ts)`,
    '',
    `${'phase'.padEnd(8)}${'batch'.padStart(6)}${'tokens'.padStart(8)}${'seconds'.padStart(10)}${'tokens/s'.padStart(11)}${'GFLOP/s'.padStart(10)}${'of matmul'.padStart(11)}`,
  ];
  for (const x of r.rows) {
    lines.push(
      `${x.phase.padEnd(8)}${String(x.batch).padStart(6)}${String(x.tokens).padStart(8)}${x.seconds.toFixed(3).padStart(10)}${x.tokensPerSecond.toFixed(1).padStart(11)}${x.gflopPerSecond.toFixed(2).padStart(10)}${`${((100 * x.gflopPerSecond) / r.matmul.gflopPerSecond).toFixed(0)}%`.padStart(11)}`,
    );
  }
  lines.push(
    '',
    `plain matmul [${r.matmul.size}, ${r.matmul.size}] × [${r.matmul.size}, ${r.matmul.size}] on ${r.backend}: ${r.matmul.gflopPerSecond.toFixed(2)} GFLOP/s`,
  );
  return lines.join('\n');
}

export function registerModelBench(bench: Command): void {
  bench
    .command('model')
    .description(
      'backbone prefill/decode tokens/s at batch 1 and 32 (d=512, 8 layers, vocab 4096), with same-run matmul GFLOP/s',
    )
    .option('--json', 'print JSON')
    .option(
      '-b, --backend <name>',
      'start this backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .option('--batch <list>', 'batch sizes, comma-separated (default 1,32)')
    .option('--prompt-length <n>', 'prompt tokens (default 64)')
    .option('--decode-steps <n>', 'decode steps (default 64)')
    .option('--reps <n>', 'timed rounds of [prefill, decode] per batch size; medians (default 3)')
    .option('--warmup <n>', 'untimed rounds before them (default 2)')
    .action(
      async (opts: {
        json?: boolean;
        backend?: string;
        batch?: string;
        promptLength?: string;
        decodeSteps?: string;
        reps?: string;
        warmup?: string;
      }) => {
        const batchSizes =
          opts.batch === undefined
            ? [1, 32]
            : opts.batch.split(',').map((b) => positiveIntFlag(b, '--batch', 1));
        const promptLength = positiveIntFlag(opts.promptLength, '--prompt-length', 64);
        const decodeSteps = positiveIntFlag(opts.decodeSteps, '--decode-steps', 64);
        const reps = positiveIntFlag(opts.reps, '--reps', 3);
        const warmup = nonNegativeIntFlag(opts.warmup, '--warmup', 2);
        const report: BackendReport = await startBackend(opts.backend);
        const result = await runModelBench({
          batchSizes,
          promptLength,
          decodeSteps,
          reps,
          warmup,
          onProgress: (line) => process.stderr.write(`${line}\n`),
        });
        const active = report.backends.find((b) => b.name === report.active);
        const out: ModelBenchOutput = {
          ...result,
          backendDetail: active?.detail,
          command: `para bench model${opts.backend ? ` --backend ${opts.backend}` : ''}`,
        };
        process.stdout.write(
          opts.json ? `${JSON.stringify(out, null, 2)}\n` : `${formatModelBench(out)}\n`,
        );
      },
    );
}
