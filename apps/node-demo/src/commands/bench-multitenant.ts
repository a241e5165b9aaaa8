/**
 * `para bench multitenant [--json] [--backend NAME]`: decode (and prefill) tokens/s of one batch
 * of 32 concurrent sequences, each its own tenant with its own adapter, on the backbone bench
 * config (d=512, 8 layers): base (no adapter), PARA r=12 (q/v/up), LoRA on q+v with the rank
 * whose parameter count is closest to PARA's (unmerged, per-row gathered) and IA3. See
 * bench/multitenant.ts for what is timed.
 */

import type { BackendReport } from '@para/core/node';
import type { Command } from 'commander';
import { startBackend } from '../backend';
import { type MultitenantBenchResult, runMultitenantBench } from '../bench/multitenant';
import { positiveIntFlag } from '../flags';

export interface MultitenantBenchOutput extends MultitenantBenchResult {
  backendDetail: string | undefined;
  command: string;
}

const f = (x: number | null, d = 1) => (x === null ? '—' : x.toFixed(d));

export function formatMultitenantBench(r: MultitenantBenchOutput): string {
  const c = r.config;
  const lines = [
    `para bench multitenant — backend ${r.backend}${r.backendDetail ? ` (${r.backendDetail})` : ''}`,
    `config: d=${c.hiddenSize}, ${c.numLayers} layers, d_ff ${c.intermediateSize}, ${c.numHeads} heads, vocab ${c.vocabSize}, random init (seed 0)`,
    `${r.batch} concurrent sequences, ${r.tenants} tenants (one adapter each), prompt ${r.promptLength} tokens, ${r.newTokens} new tokens; decode from the quietest of ${r.rounds} rounds (variants interleaved step by step), prefill best of ${r.rounds}`,
    `per tenant: PARA r=${r.paraRank} (q/v/up) ${r.parameters.para} params, LoRA q+v r=${r.loraRank} ${r.parameters.lora}, IA3 ${r.parameters.ia3}`,
    '',
    `${'variant'.padEnd(9)}${'decode tok/s'.padStart(14)}${'vs base'.padStart(9)}${'prefill tok/s'.padStart(15)}`,
  ];
  for (const v of ['base', 'para', 'lora', 'ia3'] as const) {
    const d = r[v];
    lines.push(
      `${v.padEnd(9)}${f(d).padStart(14)}${(d === null || r.base === null ? '—' : `${(d / r.base).toFixed(3)}×`).padStart(9)}${f(r.prefill[v]).padStart(15)}`,
    );
  }
  lines.push(
    '',
    `PARA decode: ${f(r.ratios.paraVsBase, 3)}× base (target ≥ 0.95), ${f(r.ratios.paraVsLora, 3)}× LoRA (target ≥ 1.2)`,
  );
  const p = r.profile;
  if (p !== undefined) {
    lines.push(
      '',
      'decode step profile (tf.profile, mean of 5 steps; kernel ms exclude dispatch and read-back):',
    );
    const base = p.base;
    for (const v of ['base', 'para', 'lora', 'ia3'] as const) {
      const x = p[v];
      if (x === undefined) continue;
      lines.push(
        `  ${v.padEnd(5)} step ${x.stepMs.toFixed(2)} ms wall, ${x.kernels.toFixed(0)} kernels, ${x.kernelMs.toFixed(2)} ms in kernels; top: ${x.byKernel
          .slice(0, 4)
          .map((k) => `${k.name} ${k.count.toFixed(0)}× ${k.ms.toFixed(2)} ms`)
          .join(', ')}`,
      );
      if (base !== undefined && v !== 'base') {
        const extra = x.byKernel
          .map((k) => {
            const b = base.byKernel.find((e) => e.name === k.name);
            return { name: k.name, count: k.count - (b?.count ?? 0), ms: k.ms - (b?.ms ?? 0) };
          })
          .filter((k) => k.count > 0)
          .map(
            (k) =>
              `+${k.count.toFixed(0)} ${k.name} (${k.ms >= 0 ? '+' : ''}${k.ms.toFixed(2)} ms)`,
          );
        lines.push(
          `        vs base: ${extra.join(', ') || 'no extra kernels'}; the adapter's hooks alone: ${x.adapterMs.toFixed(2)} ms per step (${((100 * x.adapterMs) / base.stepMs).toFixed(1)}% of the base step)`,
        );
      }
    }
    if (p.base !== undefined && p.para !== undefined && p.lora !== undefined) {
      const b = p.base.stepMs;
      lines.push(
        `  from the hooks alone: PARA ≈ ${(b / (b + p.para.adapterMs)).toFixed(3)}× base, LoRA ≈ ${(b / (b + p.lora.adapterMs)).toFixed(3)}× base, PARA ≈ ${((b + p.lora.adapterMs) / (b + p.para.adapterMs)).toFixed(3)}× LoRA`,
      );
    }
  }
  return lines.join('\n');
}

export function registerMultitenantBench(bench: Command): void {
  bench
    .command('multitenant')
    .description(
      'decode tokens/s of 32 sequences with 32 different adapters in one batch: base, PARA, LoRA (per-row gathered), IA3',
    )
    .option('--json', 'print JSON')
    .option(
      '-b, --backend <name>',
      'start this backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .option('--batch <n>', 'concurrent sequences = tenants (default 32)')
    .option('--prompt-length <n>', 'prompt tokens (default 64)')
    .option('--new-tokens <n>', 'decode steps (default 64)')
    .option(
      '--rounds <n>',
      'rounds (default 2); decode figures from the quietest, prefill the best',
    )
    .option('--profile', 'also profile decode steps (kernel counts and times per variant)')
    .action(
      async (opts: {
        json?: boolean;
        backend?: string;
        batch?: string;
        promptLength?: string;
        newTokens?: string;
        rounds?: string;
        profile?: boolean;
      }) => {
        const batch = positiveIntFlag(opts.batch, '--batch', 32);
        const promptLength = positiveIntFlag(opts.promptLength, '--prompt-length', 64);
        const newTokens = positiveIntFlag(opts.newTokens, '--new-tokens', 64);
        const rounds = positiveIntFlag(opts.rounds, '--rounds', 2);
        const report: BackendReport = await startBackend(opts.backend);
        const result = await runMultitenantBench({
          batch,
          promptLength,
          newTokens,
          rounds,
          profile: opts.profile === true,
          onProgress: (line) => process.stderr.write(`${line}\n`),
        });
        const active = report.backends.find((b) => b.name === report.active);
        const out: MultitenantBenchOutput = {
          ...result,
          backendDetail: active?.detail,
          command: `para bench multitenant${opts.backend ? ` --backend ${opts.backend}` : ''}${opts.profile ? ' --profile' : ''}`,
        };
        process.stdout.write(
          opts.json ? `${JSON.stringify(out, null, 2)}\n` : `${formatMultitenantBench(out)}\n`,
        );
      },
    );
}
