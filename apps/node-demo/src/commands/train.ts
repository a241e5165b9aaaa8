/**
 * `para train --method para|lora|ia3 --data FILE [--eval-data FILE] [--model DIR] [--out DIR]
 * [--steps N | --epochs N] [--lr X] [--batch-size N] [--r N] [--seed N] [--resume]`
 *
 * Fine-tunes an adapter on a JSONL dataset (`{"prompt", "completion"}` or `{"messages"}` lines)
 * with the backbone frozen, and writes it in PEFT's layout to OUT (default
 * `adapters/<dataset>-<method>`). Progress goes to stderr (a bar on a terminal, plain lines
 * otherwise); stdout gets one summary line (or `--json`). `--model` defaults to the bundled
 * backbone (assets/backbone).
 */
import type { Command } from 'commander';
import { initBackend, ParaError } from '@para/core/node';
import { ADAPTER_METHODS, type AdapterMethod, DECAY_KINDS, type DecayKind, formatDuration, trainAdapterFromFiles } from '@para/train/node';

/** A flag's value as a number: integer ≥ min, or any positive number. */
export function parseNumber(value: string | undefined, flag: string, kind: 'int' | 'positive' | 'nonneg-int' | 'nonneg', min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const ok =
    value.trim() !== '' &&
    Number.isFinite(n) &&
    (kind === 'positive' ? n > 0 : kind === 'nonneg' ? n >= 0 : Number.isInteger(n) && n >= (kind === 'nonneg-int' ? 0 : min));
  if (!ok) {
    const expected = { positive: 'a positive number', nonneg: 'a number ≥ 0', 'nonneg-int': 'an integer ≥ 0', int: `an integer ≥ ${min}` }[kind];
    throw new ParaError('INVALID_ARGUMENT', `bad value for ${flag}`, { field: flag, expected, actual: JSON.stringify(value) });
  }
  return n;
}

function parseDecay(value: string | undefined): DecayKind | undefined {
  if (value === undefined) return undefined;
  if (!(DECAY_KINDS as readonly string[]).includes(value)) {
    throw new ParaError('INVALID_ARGUMENT', 'bad value for --decay', { field: '--decay', expected: DECAY_KINDS.join(' | '), actual: JSON.stringify(value) });
  }
  return value as DecayKind;
}

/** Starts the backend (`--backend`, PARA_BACKEND, else the best one) and says which on stderr. */
export async function startBackend(backend: string | undefined, quiet = false): Promise<string> {
  const report = await initBackend({ backend, probe: false });
  const active = report.backends.find((b) => b.name === report.active);
  if (!quiet) process.stderr.write(`backend: ${report.active}${active?.detail ? ` (${active.detail})` : ''}\n`);
  return report.active;
}

interface TrainFlags {
  method?: string;
  data?: string;
  evalData?: string;
  model?: string;
  out?: string;
  steps?: string;
  epochs?: string;
  lr?: string;
  batchSize?: string;
  microBatchSize?: string;
  r?: string;
  seed?: string;
  warmupSteps?: string;
  decay?: string;
  weightDecay?: string;
  maxGradNorm?: string;
  resume?: boolean;
  strict?: boolean;
  evalEvery?: string;
  evalLimit?: string;
  patience?: string;
  checkpointEvery?: string;
  keepCheckpoints?: boolean;
  stopAfter?: string;
  plain?: boolean;
  quiet?: boolean;
  json?: boolean;
  backend?: string;
}

export function registerTrainCommand(program: Command): void {
  program
    .command('train')
    .description('fine-tune a PARA, LoRA or IA3 adapter on a JSONL dataset (the backbone stays frozen)')
    .requiredOption('--method <name>', `adapter method: ${ADAPTER_METHODS.join(' | ')}`)
    .requiredOption('--data <file>', 'training data: JSONL, {"prompt", "completion"} or {"messages": [...]} per line')
    .option('--eval-data <file>', 'dev data: evaluated during training (loss, exact match); the best adapter is kept')
    .option('--model <dir>', 'backbone directory (default: the bundled backbone, assets/backbone)')
    .option('--out <dir>', 'output directory (default: adapters/<dataset>-<method>)')
    .option('--steps <n>', 'optimizer updates (default: one epoch)')
    .option('--epochs <n>', 'passes over the data (instead of --steps)')
    .option('--lr <x>', 'peak learning rate (default 3e-3), linear warm-up over 6% then linear decay')
    .option('--batch-size <n>', 'examples per update (default 16)')
    .option('--micro-batch-size <n>', 'examples per forward/backward pass; gradients are accumulated (default: --batch-size)')
    .option('--r <n>', 'rank: PARA bottleneck width or LoRA rank (default 8; not for IA3)')
    .option('--seed <n>', 'seed of the adapter init and the data order (default 0)')
    .option('--warmup-steps <n>', 'linear warm-up updates (default 6% of the run)')
    .option('--decay <kind>', `learning-rate decay after the warm-up: ${DECAY_KINDS.join(' | ')} (default linear, to 0)`)
    .option('--weight-decay <x>', 'AdamW decoupled weight decay on matrices (default 0)')
    .option('--max-grad-norm <x>', 'clip gradients to this global norm (default 1; 0: no clipping)')
    .option('--resume', 'continue the interrupted run in --out exactly where its last checkpoint left off')
    .option('--strict', 'fail on an example longer than the context instead of skipping it')
    .option('--eval-every <n>', 'evaluate every N updates (default: 4 times per run)')
    .option('--eval-limit <n>', 'evaluate on the first N dev examples only')
    .option('--patience <n>', 'early stopping: stop after N evaluations without improvement')
    .option('--checkpoint-every <n>', 'write a checkpoint every N updates, to continue from with --resume (default: none)')
    .option('--keep-checkpoints', 'keep OUT/checkpoints after the run finishes')
    .option('--stop-after <n>', 'stop after N updates, leaving a checkpoint to continue from with --resume')
    .option('--plain', 'plain progress lines even on a terminal')
    .option('-q, --quiet', 'no progress output')
    .option('--json', 'print the summary as JSON')
    .option('-b, --backend <name>', 'tfjs backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND')
    .action(async (f: TrainFlags) => {
      await startBackend(f.backend, f.quiet === true);
      if (f.steps !== undefined && f.epochs !== undefined) {
        throw new ParaError('INVALID_ARGUMENT', 'give --steps or --epochs, not both', { field: '--steps' });
      }
      const r = await trainAdapterFromFiles({
        method: f.method as AdapterMethod,
        data: f.data as string,
        ...(f.evalData === undefined ? {} : { evalData: f.evalData }),
        ...(f.model === undefined ? {} : { model: f.model }),
        ...(f.out === undefined ? {} : { out: f.out }),
        steps: parseNumber(f.steps, '--steps', 'int'),
        epochs: parseNumber(f.epochs, '--epochs', 'positive'),
        lr: parseNumber(f.lr, '--lr', 'positive'),
        batchSize: parseNumber(f.batchSize, '--batch-size', 'int'),
        microBatchSize: parseNumber(f.microBatchSize, '--micro-batch-size', 'int'),
        r: parseNumber(f.r, '--r', 'int'),
        seed: parseNumber(f.seed, '--seed', 'nonneg-int'),
        warmupSteps: parseNumber(f.warmupSteps, '--warmup-steps', 'nonneg-int'),
        decay: parseDecay(f.decay),
        weightDecay: parseNumber(f.weightDecay, '--weight-decay', 'nonneg'),
        maxGradNorm: parseNumber(f.maxGradNorm, '--max-grad-norm', 'nonneg'),
        resume: f.resume === true,
        strict: f.strict === true,
        evalEvery: parseNumber(f.evalEvery, '--eval-every', 'int'),
        evalLimit: parseNumber(f.evalLimit, '--eval-limit', 'int'),
        patience: parseNumber(f.patience, '--patience', 'int'),
        checkpointEvery: parseNumber(f.checkpointEvery, '--checkpoint-every', 'int'),
        keepCheckpoints: f.keepCheckpoints === true,
        stopAtStep: parseNumber(f.stopAfter, '--stop-after', 'int'),
        plain: f.plain === true,
        quiet: f.quiet === true,
        ...(f.quiet ? { log: () => undefined } : {}),
      });
      const best = r.result.best;
      const summary = {
        out: r.out,
        method: r.method,
        parameters: r.parameters,
        steps: r.result.step,
        stopped: r.result.reason,
        train_loss: r.result.lastLoss,
        tokens_per_sec: r.result.tokensSeen / (r.result.elapsedMs / 1000),
        elapsed_s: r.result.elapsedMs / 1000,
        best: best === null ? null : { step: best.step, ...best.metrics },
        skipped: r.skipped,
      };
      if (f.json) {
        process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
        return;
      }
      const bestText = best === null ? '' : `; best at step ${best.step}: ${best.metrics.exact_match === undefined ? '' : `exact match ${(100 * best.metrics.exact_match).toFixed(1)}%, `}dev loss ${best.metrics.loss.toFixed(4)}`;
      process.stdout.write(
        `${r.adapterSaved ? `wrote ${r.out}` : `stopped (${r.result.reason}); checkpoint in ${r.out}`}: ${r.method.toUpperCase()} adapter, ${r.parameters.toLocaleString('en-US')} parameters, ${r.result.step} steps in ${formatDuration(r.result.elapsedMs)} (${Math.round(summary.tokens_per_sec)} tok/s), final train loss ${r.result.lastLoss?.toFixed(4) ?? '-'}${bestText}\n`,
      );
    });
}
