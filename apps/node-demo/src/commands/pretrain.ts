/**
 * `para pretrain --input FILE... --out DIR [--config small|tiny] [--steps N] [--tokenizer DIR]`
 *
 * Trains a LLaMA-style backbone from scratch (every parameter) on text files with one document
 * per line, with its own byte-level BPE tokenizer unless `--tokenizer` is given, and writes it
 * in the Hugging Face layout (config.json, model.safetensors, tokenizer.json,
 * tokenizer_config.json) plus training_summary.json and metrics.jsonl. The committed default
 * backbone (assets/backbone) was made this way; its README.md says with which command.
 */

import { BACKBONE_PRESETS, formatDuration, pretrain } from '@para/train/node';
import type { Command } from 'commander';
import { parseNumber, startBackend } from './train';

interface PretrainFlags {
  input?: string[];
  out?: string;
  config?: string;
  steps?: string;
  tokenizer?: string;
  seed?: string;
  lr?: string;
  resume?: boolean;
  force?: boolean;
  allowInvalidUtf8?: boolean;
  keepCheckpoints?: boolean;
  plain?: boolean;
  quiet?: boolean;
  json?: boolean;
  backend?: string;
}

export function registerPretrainCommand(program: Command): void {
  program
    .command('pretrain')
    .description(
      'pretrain a LLaMA-style backbone from scratch on text files (one document per line)',
    )
    .requiredOption('--input <files...>', 'UTF-8 text files, one document per line')
    .requiredOption('--out <dir>', 'output directory (Hugging Face layout)')
    .option(
      '--config <name>',
      `model size and recipe: ${Object.keys(BACKBONE_PRESETS).join(' | ')} (default small)`,
    )
    .option('--steps <n>', "optimizer updates (default: the recipe's)")
    .option('--tokenizer <dir>', 'use this tokenizer instead of training one on the inputs')
    .option('--seed <n>', 'seed of the init, the held-out split and the data order (default 0)')
    .option('--lr <x>', "peak learning rate (default: the recipe's)")
    .option('--resume', 'continue an interrupted run from OUT/checkpoints')
    .option(
      '--force',
      "start afresh in an OUT holding an interrupted run's checkpoint (discarding it)",
    )
    .option(
      '--allow-invalid-utf8',
      'replace bytes of the inputs that are not UTF-8 with U+FFFD (default: an error naming the line)',
    )
    .option('--keep-checkpoints', 'keep OUT/checkpoints after the run finishes')
    .option('--plain', 'plain progress lines even on a terminal')
    .option('-q, --quiet', 'no progress output')
    .option('--json', 'print the training summary as JSON')
    .option(
      '-b, --backend <name>',
      'tfjs backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .action(async (f: PretrainFlags) => {
      await startBackend(f.backend, f.quiet === true);
      const s = await pretrain({
        inputs: f.input ?? [],
        out: f.out as string,
        ...(f.config === undefined ? {} : { config: f.config }),
        steps: parseNumber(f.steps, '--steps', 'int'),
        ...(f.tokenizer === undefined ? {} : { tokenizer: f.tokenizer }),
        seed: parseNumber(f.seed, '--seed', 'nonneg-int'),
        lr: parseNumber(f.lr, '--lr', 'positive'),
        resume: f.resume === true,
        force: f.force === true,
        allowInvalidUtf8: f.allowInvalidUtf8 === true,
        keepCheckpoints: f.keepCheckpoints === true,
        plain: f.plain === true,
        progress: f.quiet !== true,
        ...(f.quiet ? { log: () => undefined } : {}),
        command: `para pretrain ${process.argv
          .slice(2)
          .filter((a) => a !== 'pretrain')
          .join(' ')}`,
      });
      if (f.json) {
        process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        `wrote ${f.out}: ${s.parameters.toLocaleString('en-US')} parameters, ${s.steps} steps, ${s.tokensSeen.toLocaleString('en-US')} tokens in ${formatDuration(s.elapsedMs)} (${Math.round(s.tokensPerSec)} tok/s); held-out loss ${s.heldOutLoss.toFixed(4)} vs unigram ${s.unigramCrossEntropy.toFixed(4)} nats/token\n`,
      );
    });
}
