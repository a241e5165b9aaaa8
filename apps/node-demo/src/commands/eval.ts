/**
 * `para eval --data FILE [--model DIR] [--adapter DIR] [--json]`
 *
 * Loss (teacher-forced, completion tokens) and exact match (greedy decoding stopping at EOS or
 * a newline; output and reference trimmed) of the backbone, or of the backbone with an adapter,
 * on a JSONL dataset. `--json` prints `{"exact_match", "loss", "n"}`.
 */

import { evalFromFiles } from '@para/train/node';
import type { Command } from 'commander';
import { defaultBackboneDir } from '../backbone';
import { parseNumber, startBackend } from './train';

interface EvalFlags {
  data?: string;
  model?: string;
  adapter?: string;
  json?: boolean;
  limit?: string;
  batchSize?: string;
  strict?: boolean;
  allowInvalidUtf8?: boolean;
  show?: string;
  backend?: string;
}

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description(
      'loss and exact match of the backbone (with an adapter, if given) on a JSONL dataset',
    )
    .requiredOption(
      '--data <file>',
      'JSONL: {"prompt", "completion"} or {"messages": [...]} per line',
    )
    .option('--model <dir>', 'backbone directory (default: the bundled backbone, assets/backbone)')
    .option(
      '--adapter <dir>',
      'adapter directory (adapter_config.json + adapter_model.safetensors)',
    )
    .option('--json', 'print {"exact_match", "loss", "n"}')
    .option('--limit <n>', 'only the first N examples')
    .option('--batch-size <n>', 'rows per batch (default 32)')
    .option('--strict', 'fail on an example longer than the context instead of skipping it')
    .option(
      '--allow-invalid-utf8',
      'replace bytes of the data file that are not UTF-8 with U+FFFD (default: an error naming the line)',
    )
    .option('--show <n>', 'print the first N predictions (prompt, reference, output) to stderr')
    .option(
      '-b, --backend <name>',
      'tfjs backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .action(async (f: EvalFlags) => {
      await startBackend(f.backend, f.json === true);
      const show = parseNumber(f.show, '--show', 'nonneg-int') ?? 0;
      const r = await evalFromFiles({
        data: f.data as string,
        model: f.model ?? defaultBackboneDir(),
        ...(f.adapter === undefined ? {} : { adapter: f.adapter }),
        limit: parseNumber(f.limit, '--limit', 'int'),
        batchSize: parseNumber(f.batchSize, '--batch-size', 'int'),
        strict: f.strict === true,
        allowInvalidUtf8: f.allowInvalidUtf8 === true,
        keepPredictions: show > 0,
      });
      for (const p of (r.predictions ?? []).slice(0, show)) {
        process.stderr.write(
          `${p.correct ? '✓' : '✗'} ${JSON.stringify(p.prompt)} → ${JSON.stringify(p.output)} (reference ${JSON.stringify(p.reference)})\n`,
        );
      }
      const out = { exact_match: r.exact_match ?? 0, loss: r.loss, n: r.n };
      if (f.json) process.stdout.write(`${JSON.stringify(out)}\n`);
      else
        process.stdout.write(
          `exact match ${(100 * out.exact_match).toFixed(1)}% (${Math.round(out.exact_match * out.n)}/${out.n}), loss ${out.loss.toFixed(4)}${r.skipped > 0 ? `, ${r.skipped} skipped as too long` : ''}\n`,
        );
    });
}
