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
import { readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { ParaError } from '@para/core/node';
import {
  ADAPTER_METHODS,
  BUNDLED_BACKBONE_NAME,
  checkOutLock,
  DECAY_KINDS,
  type DecayKind,
  datasetName,
  formatDuration,
  LOCK_FILE,
  type MethodName,
  trainAdapterFromFiles,
} from '@para/train/node';
import type { Command } from 'commander';
import { defaultBackboneDir } from '../backbone';
import { startBackend } from '../backend';
import { CliExit } from '../errors';
import { commandPrefix, shellQuote } from '../shell';

/** A flag's value as a number: integer ≥ min, or any positive number. */
export function parseNumber(
  value: string | undefined,
  flag: string,
  kind: 'int' | 'positive' | 'nonneg-int' | 'nonneg',
  min = 1,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const ok =
    value.trim() !== '' &&
    Number.isFinite(n) &&
    (kind === 'positive'
      ? n > 0
      : kind === 'nonneg'
        ? n >= 0
        : Number.isInteger(n) && n >= (kind === 'nonneg-int' ? 0 : min));
  if (!ok) {
    const expected = {
      positive: 'a positive number',
      nonneg: 'a number ≥ 0',
      'nonneg-int': 'an integer ≥ 0',
      int: `an integer ≥ ${min}`,
    }[kind];
    throw new ParaError('INVALID_ARGUMENT', `bad value for ${flag}`, {
      field: flag,
      expected,
      actual: JSON.stringify(value),
    });
  }
  return n;
}

function parseDecay(value: string | undefined): DecayKind | undefined {
  if (value === undefined) return undefined;
  if (!(DECAY_KINDS as readonly string[]).includes(value)) {
    throw new ParaError('INVALID_ARGUMENT', 'bad value for --decay', {
      field: '--decay',
      expected: DECAY_KINDS.join(' | '),
      actual: JSON.stringify(value),
    });
  }
  return value as DecayKind;
}

export { startBackend };

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
  allowInvalidUtf8?: boolean;
  evalEvery?: string;
  evalLimit?: string;
  patience?: string;
  checkpointEvery?: string;
  keepCheckpoints?: boolean;
  force?: boolean;
  stopAfter?: string;
  plain?: boolean;
  quiet?: boolean;
  json?: boolean;
  backend?: string;
}

export function registerTrainCommand(program: Command): void {
  program
    .command('train')
    .description(
      'fine-tune a PARA, LoRA or IA3 adapter on a JSONL dataset (the backbone stays frozen)',
    )
    .requiredOption('--method <name>', `adapter method: ${ADAPTER_METHODS.join(' | ')}`)
    .requiredOption(
      '--data <file>',
      'training data: JSONL, {"prompt", "completion"} or {"messages": [...]} per line',
    )
    .option(
      '--eval-data <file>',
      'dev data: evaluated during training (loss, exact match); the best adapter is kept',
    )
    .option('--model <dir>', 'backbone directory (default: the bundled backbone, assets/backbone)')
    .option('--out <dir>', 'output directory (default: adapters/<dataset>-<method>)')
    .option('--steps <n>', 'optimizer updates (default: one epoch)')
    .option('--epochs <n>', 'passes over the data (instead of --steps)')
    .option(
      '--lr <x>',
      'peak learning rate (default 3e-3), linear warm-up over 6% then linear decay',
    )
    .option('--batch-size <n>', 'examples per update (default 16)')
    .option(
      '--micro-batch-size <n>',
      'examples per forward/backward pass; gradients are accumulated (default: --batch-size)',
    )
    .option('--r <n>', 'rank: PARA bottleneck width or LoRA rank (default 8; not for IA3)')
    .option('--seed <n>', 'seed of the adapter init and the data order (default 0)')
    .option('--warmup-steps <n>', 'linear warm-up updates (default 6% of the run)')
    .option(
      '--decay <kind>',
      `learning-rate decay after the warm-up: ${DECAY_KINDS.join(' | ')} (default linear, to 0)`,
    )
    .option('--weight-decay <x>', 'AdamW decoupled weight decay on matrices (default 0)')
    .option('--max-grad-norm <x>', 'clip gradients to this global norm (default 1; 0: no clipping)')
    .option(
      '--resume',
      'continue the interrupted run in --out exactly where its last checkpoint left off',
    )
    .option(
      '--force',
      'train into a non-empty --out, replacing what is there (its old checkpoints are removed)',
    )
    .option('--strict', 'fail on an example longer than the context instead of skipping it')
    .option(
      '--allow-invalid-utf8',
      'replace bytes of the data files that are not UTF-8 with U+FFFD (default: an error naming the line)',
    )
    .option('--eval-every <n>', 'evaluate every N updates (default: 4 times per run)')
    .option('--eval-limit <n>', 'evaluate on the first N dev examples only')
    .option('--patience <n>', 'early stopping: stop after N evaluations without improvement')
    .option(
      '--checkpoint-every <n>',
      'write a checkpoint every N updates, to continue from with --resume (default: none)',
    )
    .option('--keep-checkpoints', 'keep OUT/checkpoints after the run finishes')
    .option(
      '--stop-after <n>',
      'stop after N updates, leaving a checkpoint to continue from with --resume',
    )
    .option('--plain', 'plain progress lines even on a terminal')
    .option('-q, --quiet', 'no progress output')
    .option('--json', 'print the summary as JSON')
    .option(
      '-b, --backend <name>',
      'tfjs backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .action(async (f: TrainFlags) => {
      const out = f.out ?? path.join('adapters', `${datasetName(f.data as string)}-${f.method}`);
      // A run in progress there: LOCKED (naming its pid), before "not empty" (its files).
      await checkOutLock(out);
      if (f.resume !== true && f.force !== true && (await nonEmptyDir(out))) {
        throw new ParaError('INVALID_ARGUMENT', 'the output directory is not empty', {
          file: out,
          field: '--out',
          expected:
            'a new or empty directory (--resume continues the run in it, --force trains over it)',
        });
      }
      await startBackend(f.backend, f.quiet === true);
      if (f.steps !== undefined && f.epochs !== undefined) {
        throw new ParaError('INVALID_ARGUMENT', 'give --steps or --epochs, not both', {
          field: '--steps',
        });
      }
      // Ctrl-C: stop after the current update, write a checkpoint, print how to resume.
      // Node runs a signal handler only when the event loop turns; where the training loop
      // never yields to it (an @para/train that awaits only promises between updates), a
      // handler would hold Ctrl-C back until the run ends, so it is removed again at the second
      // update and Ctrl-C quits at once, as without one.
      const abort = new AbortController();
      let yieldProbe: 'none' | 'scheduled' | 'done' = 'none';
      let turned = false;
      let step = 0;
      let stepAtAbort: number | undefined;
      let lastCheckpoint: string | null = null;
      const onSigint = () => {
        if (abort.signal.aborted) {
          process.stderr.write(
            '\npara: interrupted again: exiting without waiting for the checkpoint\n',
          );
          process.exit(130);
        }
        stepAtAbort = step;
        abort.abort();
        process.stderr.write(
          '\npara: interrupted: writing a checkpoint after this update (Ctrl-C again to quit at once)\n',
        );
      };
      const options: Parameters<typeof trainAdapterFromFiles>[0] & { signal?: AbortSignal } = {
        method: f.method as MethodName,
        data: f.data as string,
        ...(f.evalData === undefined ? {} : { evalData: f.evalData }),
        // The bundled backbone is recorded by its repository path, not this machine's absolute one.
        ...(f.model === undefined
          ? { model: defaultBackboneDir(), baseModelName: BUNDLED_BACKBONE_NAME }
          : { model: f.model }),
        out,
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
        // An old run's checkpoints must not be what a later --resume picks up: the library
        // discards them (under the directory's lock) only with --force.
        force: f.force === true,
        strict: f.strict === true,
        allowInvalidUtf8: f.allowInvalidUtf8 === true,
        evalEvery: parseNumber(f.evalEvery, '--eval-every', 'int'),
        evalLimit: parseNumber(f.evalLimit, '--eval-limit', 'int'),
        patience: parseNumber(f.patience, '--patience', 'int'),
        checkpointEvery: parseNumber(f.checkpointEvery, '--checkpoint-every', 'int'),
        keepCheckpoints: f.keepCheckpoints === true,
        stopAtStep: parseNumber(f.stopAfter, '--stop-after', 'int'),
        plain: f.plain === true,
        quiet: f.quiet === true,
        ...(f.quiet ? { log: () => undefined } : {}),
        // Not in TrainFilesOptions yet: forwarded once @para/train passes it on to finetune().
        signal: abort.signal,
        onEvent: (e) => {
          if (e.type === 'checkpoint') lastCheckpoint = e.path;
          if (e.type !== 'step') return;
          step = e.step;
          if (yieldProbe === 'none') {
            yieldProbe = 'scheduled';
            setImmediate(() => {
              turned = true;
            });
          } else if (yieldProbe === 'scheduled') {
            yieldProbe = 'done';
            if (!turned && !abort.signal.aborted) process.off('SIGINT', onSigint);
          }
          // The update running at Ctrl-C may finish; a later one means the signal is ignored.
          if (stepAtAbort !== undefined && e.step > stepAtAbort + 1) {
            process.stderr.write(
              `para: this @para/train ignores the abort signal (trainAdapterFromFiles does not pass \`signal\` to finetune), so no checkpoint was written at step ${step}.${lastCheckpoint === null ? ' No checkpoint was written before either (--checkpoint-every N writes them).' : ` The last checkpoint is ${lastCheckpoint}; continue from it with:\n  ${resumeCommand(out)}`}\n`,
            );
            process.exit(130);
          }
        },
      };
      process.on('SIGINT', onSigint);
      let r: Awaited<ReturnType<typeof trainAdapterFromFiles>>;
      try {
        r = await trainAdapterFromFiles(options);
      } finally {
        process.off('SIGINT', onSigint);
      }
      const interrupted = abort.signal.aborted && r.result.reason === 'stopped';
      if (interrupted) {
        process.stderr.write(
          `para: stopped at step ${r.result.step}${r.result.lastCheckpoint === null ? '' : `; checkpoint ${r.result.lastCheckpoint}`}. Continue with:\n  ${resumeCommand(out)}\n`,
        );
      }
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
        if (interrupted) throw new CliExit(130);
        return;
      }
      const bestText =
        best === null
          ? ''
          : `; best at step ${best.step}: ${best.metrics.exact_match === undefined ? '' : `exact match ${(100 * best.metrics.exact_match).toFixed(1)}%, `}dev loss ${best.metrics.loss.toFixed(4)}`;
      process.stdout.write(
        `${r.adapterSaved ? `wrote ${r.out}` : `stopped (${r.result.reason}); checkpoint in ${r.out}`}: ${r.method.toUpperCase()} adapter, ${r.parameters.toLocaleString('en-US')} parameters, ${r.result.step} steps in ${formatDuration(r.result.elapsedMs)} (${Math.round(summary.tokens_per_sec)} tok/s), final train loss ${r.result.lastLoss?.toFixed(4) ?? '-'}${bestText}\n`,
      );
      if (interrupted) throw new CliExit(130);
    });
}

/** True when `dir` exists and has something in it (a stale lock file aside). */
async function nonEmptyDir(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).some((e) => e !== LOCK_FILE);
  } catch {
    return false;
  }
}

/**
 * This run's command line with `--resume` (and `--out`), without what must not repeat:
 * `--force`, `--stop-after N`.
 */
export function resumeCommand(
  out: string,
  argv: readonly string[] = process.argv.slice(2),
): string {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--force' || a === '--resume' || a.startsWith('--stop-after=')) continue;
    if (a === '--stop-after') {
      i++;
      continue;
    }
    args.push(a);
  }
  if (!args.some((a) => a === '--out' || a.startsWith('--out='))) args.push('--out', out);
  return `${commandPrefix()} ${[...args, '--resume'].map(shellQuote).join(' ')}`;
}
