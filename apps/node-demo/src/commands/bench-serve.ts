/**
 * `para bench serve [--model bench|DIR] [--concurrency 1,8,32] [--requests N] [--prompt-length N]
 * [--new-tokens N] [--rounds N] [--no-sequential] [--json] [--backend NAME]`: throughput and
 * latency of the OpenAI-compatible server under C closed-loop clients, each its own tenant —
 * PARA tenants, LoRA tenants (matched parameter count) and the bare model — and the same
 * requests served by sequential `generate` calls. See bench/serve.ts for what is timed.
 */

import { CausalLM, createConfig, loadPretrained } from '@para/model/node';
import type { Command } from 'commander';
import { defaultBackboneDir } from '../backbone';
import { startBackend } from '../backend';
import { BENCH_CONFIG } from '../bench/model';
import { runServeBench, type ServeBenchResult } from '../bench/serve';
import { positiveIntFlag, positiveIntListFlag } from '../flags';

export interface ServeBenchOutput extends ServeBenchResult {
  model: string;
  backendDetail: string | undefined;
  command: string;
}

const f = (x: number | null | undefined, d = 1) =>
  x == null || Number.isNaN(x) ? '—' : x.toFixed(d);

export function formatServeBench(r: ServeBenchOutput): string {
  const c = r.config;
  const lines = [
    `para bench serve — backend ${r.backend}${r.backendDetail ? ` (${r.backendDetail})` : ''}`,
    `model: ${r.model} (d=${c.hiddenSize}, ${c.numLayers} layers, d_ff ${c.intermediateSize}, vocab ${c.vocabSize}); server max batch ${r.maxBatch}`,
    `each client its own tenant, ${r.requestsPerClient} streamed requests per client, prompt ${r.promptLength} tokens, ${r.newTokens} new tokens (ignore_eos), greedy; best of ${r.rounds} rounds per cell`,
    `per tenant: PARA r=${r.paraRank} (q/v/up) ${r.parameters.para} params, LoRA q+v r=${r.loraRank} ${r.parameters.lora} params`,
    '',
    `${'C'.padStart(3)} ${'variant'.padEnd(8)}${'tok/s'.padStart(9)}${'req/s'.padStart(8)}${'TTFT p50'.padStart(10)}${'p99'.padStart(8)}${'ITL p50'.padStart(9)}${'p99'.padStart(8)}   (ms)   engine busy: prefill / insert / decode`,
  ];
  const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
  for (const p of r.phases) {
    lines.push(
      `${String(p.concurrency).padStart(3)} ${p.variant.padEnd(8)}${f(p.outputTokensPerSecond).padStart(9)}${f(p.requestsPerSecond, 2).padStart(8)}${f(p.ttftMs.p50, 0).padStart(10)}${f(p.ttftMs.p99, 0).padStart(8)}${f(p.itlMs.p50).padStart(9)}${f(p.itlMs.p99).padStart(8)}          ${pct(p.engineShare.prefill)} / ${pct(p.engineShare.insert)} / ${pct(p.engineShare.decode)}`,
    );
  }
  const seq = Object.entries(r.sequential);
  if (seq.length > 0) {
    lines.push(
      '',
      `sequential generate, one request after another (${r.maxBatch} requests): ${seq.map(([v, t]) => `${v} ${f(t)}`).join(', ')} tok/s`,
    );
  }
  const q = r.ratios;
  lines.push(
    '',
    `at C=${q.concurrency}: PARA ${f(q.paraVsBare, 3)}× bare (target ≥ 0.95), ${f(q.paraVsLora, 3)}× LoRA (target ≥ 1.2), ${f(q.paraVsSequential, 2)}× sequential (target ≥ 5); bare ${f(q.bareVsSequential, 2)}× sequential`,
  );
  return lines.join('\n');
}

export function registerServeBench(bench: Command): void {
  bench
    .command('serve')
    .description(
      'server throughput and latency: C closed-loop clients, each its own tenant (PARA, LoRA, bare), vs sequential generate',
    )
    .option(
      '-m, --model <dir>',
      "'bench' (d=512, 8 layers, random init, the bundled tokenizer), 'bundled' (the bundled backbone) or a checkpoint directory",
      'bench',
    )
    .option(
      '--concurrency <list>',
      'concurrent clients per phase, comma-separated (default 1,8,32)',
    )
    .option('--requests <n>', 'requests per client per phase (default 3)')
    .option('--prompt-length <n>', 'prompt tokens (default 64)')
    .option('--new-tokens <n>', 'new tokens per request (default 64)')
    .option('--rounds <n>', 'rounds (default 2); each cell reports its best')
    .option('--no-sequential', 'skip the sequential generate baseline')
    .option('--json', 'print JSON')
    .option(
      '-b, --backend <name>',
      'start this backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .action(
      async (opts: {
        model: string;
        concurrency?: string;
        requests?: string;
        promptLength?: string;
        newTokens?: string;
        rounds?: string;
        sequential: boolean;
        json?: boolean;
        backend?: string;
      }) => {
        const concurrency = positiveIntListFlag(opts.concurrency, '--concurrency', [1, 8, 32]);
        const requestsPerClient = positiveIntFlag(opts.requests, '--requests', 3);
        const promptLength = positiveIntFlag(opts.promptLength, '--prompt-length', 64);
        const newTokens = positiveIntFlag(opts.newTokens, '--new-tokens', 64);
        const rounds = positiveIntFlag(opts.rounds, '--rounds', 2);
        const report = await startBackend(opts.backend);
        const bundled = await loadPretrained(
          opts.model === 'bench' || opts.model === 'bundled' ? defaultBackboneDir() : opts.model,
        );
        let model = bundled.model;
        if (opts.model === 'bench') {
          // The bundled tokenizer has the bench config's 4096-token vocabulary.
          bundled.model.dispose();
          model = CausalLM.random(
            createConfig({
              ...BENCH_CONFIG,
              maxPositionEmbeddings: Math.max(2048, promptLength + newTokens),
            }),
            0,
          );
        }
        try {
          const result = await runServeBench({
            model,
            tokenizer: bundled.tokenizer,
            modelName: opts.model === 'bench' ? 'bench' : 'base',
            concurrency,
            requestsPerClient,
            promptLength,
            newTokens,
            rounds,
            sequential: opts.sequential,
            onProgress: (line) => process.stderr.write(`${line}\n`),
          });
          const active = report.backends.find((b) => b.name === report.active);
          const out: ServeBenchOutput = {
            ...result,
            model: opts.model === 'bench' ? 'bench config (random init, seed 0)' : opts.model,
            backendDetail: active?.detail,
            command: `para bench serve${process.argv.slice(4).length > 0 ? ` ${process.argv.slice(4).join(' ')}` : ''}`,
          };
          process.stdout.write(
            opts.json ? `${JSON.stringify(out, null, 2)}\n` : `${formatServeBench(out)}\n`,
          );
        } finally {
          model.dispose();
        }
      },
    );
}
