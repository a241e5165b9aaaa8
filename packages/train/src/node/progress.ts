/**
 * Training progress for a terminal and for logs, and metrics as JSONL.
 *
 * On a TTY a `cli-progress` bar (step, loss, learning rate, tokens/s, ETA) is redrawn in place,
 * with evaluations printed above it; otherwise (a pipe, CI, a log file) one plain line every
 * `logEvery` updates (and for every evaluation, checkpoint and stop), so logs stay readable.
 */

import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import cliProgress from 'cli-progress';
import type { TrainEvent } from '../trainer';

export interface ProgressOptions {
  /** Default process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Force the plain-line mode (default: plain unless the stream is a TTY). */
  plain?: boolean;
  /** Plain mode: a line every N updates (default: about 20 lines per run, at least every 1). */
  logEvery?: number;
  /** Prefix of every line (e.g. the tenant's name). */
  label?: string;
  /** No output at all. */
  quiet?: boolean;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

function fmtMetrics(m: Record<string, number | undefined>): string {
  return Object.entries(m)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k} ${k === 'n' ? v : (v as number).toFixed(4)}`)
    .join(', ');
}

/** Returns an event handler that draws progress. Call `close()` (the returned object's) at the end. */
export function progressReporter(options: ProgressOptions = {}): {
  onEvent: (e: TrainEvent) => void;
  close: () => void;
} {
  const stream = options.stream ?? process.stderr;
  const label = options.label ? `${options.label}: ` : '';
  if (options.quiet) return { onEvent: () => undefined, close: () => undefined };
  const tty = options.plain !== true && stream.isTTY === true;
  let bar: cliProgress.SingleBar | null = null;
  let logEvery = options.logEvery ?? 0;
  const line = (s: string) => {
    if (bar !== null) {
      // Print above the bar: clear it, write, redraw.
      stream.write(`\r\x1b[K${s}\n`);
      bar.updateETA();
      bar.render();
    } else stream.write(`${s}\n`);
  };
  const onEvent = (e: TrainEvent) => {
    switch (e.type) {
      case 'start':
        if (logEvery === 0) logEvery = Math.max(1, Math.round((e.totalSteps - e.step) / 20));
        line(
          `${label}${e.resumed ? `resuming at step ${e.step}` : 'training'}: ${e.totalSteps} steps, ${e.parameters.toLocaleString('en-US')} trainable parameters, ${e.stepsPerEpoch} steps per epoch`,
        );
        if (tty) {
          bar = new cliProgress.SingleBar(
            {
              stream,
              format: `${label}{bar} {value}/{total} | loss {loss} | lr {lr} | {tps} tok/s | {elapsedText} elapsed | ETA {etaText}`,
              barsize: 24,
              hideCursor: true,
              clearOnComplete: false,
              etaBuffer: 20,
              fps: 5,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(e.totalSteps, e.step, {
            loss: '-',
            lr: '-',
            tps: '-',
            elapsedText: '0s',
            etaText: '?',
          });
        }
        break;
      case 'step':
        if (bar !== null) {
          bar.update(e.step, {
            loss: e.loss.toFixed(4),
            lr: e.lr.toExponential(2),
            tps: Math.round(e.tokensPerSec),
            elapsedText: formatDuration(e.elapsedMs),
            etaText: formatDuration(e.etaMs),
          });
        } else if (e.step % logEvery === 0 || e.step === e.totalSteps) {
          line(
            `${label}step ${e.step}/${e.totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} grad-norm ${e.gradNorm.toFixed(3)} ${Math.round(e.tokensPerSec)} tok/s elapsed ${formatDuration(e.elapsedMs)} eta ${formatDuration(e.etaMs)}`,
          );
        }
        break;
      case 'eval':
        line(
          `${label}eval at step ${e.step}: ${fmtMetrics(e.metrics)}${e.best ? ' (best so far)' : ''} [${formatDuration(e.ms)}]`,
        );
        break;
      case 'checkpoint':
        if (bar === null) line(`${label}checkpoint at step ${e.step}: ${e.path}`);
        break;
      case 'nan':
        line(
          `${label}stopped at step ${e.step}: the loss is ${e.loss} (gradient norm ${e.gradNorm}); no update was applied. ${e.lastCheckpoint === null ? 'No checkpoint was written yet.' : `The last good checkpoint is ${e.lastCheckpoint}.`} Try a lower learning rate (lr).`,
        );
        break;
      case 'early-stop':
        line(
          `${label}early stop at step ${e.step}: no improvement in ${e.patience} evaluations (best at step ${e.bestStep})`,
        );
        break;
      case 'done':
        break;
    }
  };
  return {
    onEvent,
    close: () => {
      if (bar !== null) {
        bar.stop();
        bar = null;
      }
    },
  };
}

/**
 * Appends events as JSON lines to `file`. On resume (`fromStep`), lines of later steps (written
 * after the checkpoint by the interrupted run) are dropped first, so the file reads like one
 * uninterrupted run.
 */
export function metricsWriter(
  file: string,
  fromStep: number | null = null,
): (e: TrainEvent) => void {
  if (fromStep === null) writeFileSync(file, '');
  else if (existsSync(file)) {
    const kept = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => {
        if (l.trim() === '') return false;
        try {
          const step = (JSON.parse(l) as { step?: unknown }).step;
          return typeof step !== 'number' || step <= fromStep;
        } catch {
          return false;
        }
      });
    writeFileSync(file, kept.map((l) => `${l}\n`).join(''));
  }
  return (e: TrainEvent) => {
    if (e.type === 'step') {
      const { type, step, epoch, loss, lr, gradNorm, tokens, lossTokens, tokensPerSec, elapsedMs } =
        e;
      appendFileSync(
        file,
        `${JSON.stringify({ type, step, epoch, loss, lr, grad_norm: gradNorm, tokens, loss_tokens: lossTokens, tokens_per_sec: tokensPerSec, elapsed_ms: elapsedMs, time: new Date().toISOString() })}\n`,
      );
    } else if (e.type === 'eval') {
      appendFileSync(
        file,
        `${JSON.stringify({ type: 'eval', step: e.step, ...e.metrics, best: e.best, time: new Date().toISOString() })}\n`,
      );
    } else if (
      e.type === 'nan' ||
      e.type === 'early-stop' ||
      e.type === 'done' ||
      e.type === 'start'
    ) {
      appendFileSync(file, `${JSON.stringify({ ...e, time: new Date().toISOString() })}\n`);
    }
  };
}
