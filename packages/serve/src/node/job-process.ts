/**
 * One fine-tuning job's child process: forks the worker entry (dist/fine-tune-worker.js), lowers
 * its OS priority at once (the worker lowers every one of its threads too), sends it the job and
 * turns what it says into callbacks. The process ends with exactly one `onExit` outcome:
 * `done` (its result), `error` (the job's error object), or `crashed` (it died without saying
 * why: killed, out of memory, a bug), so a job never stays "running" for a process that is gone.
 */

import { type ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { ParaError } from '@para/core';
import type { FromWorker, WorkerEvent, WorkerJobSpec, WorkerResult } from './worker-protocol';

export type JobProcessOutcome =
  | { kind: 'done'; result: WorkerResult }
  | { kind: 'error'; error: { code: string; message: string; param: string | null } }
  | { kind: 'crashed'; message: string };

export interface JobProcessHandlers {
  onReady?(info: { pid: number; nice: number; backend: string }): void;
  onEvent(event: WorkerEvent): void;
  onLog?(level: 'info' | 'warn', message: string): void;
  onExit(outcome: JobProcessOutcome): void;
}

/**
 * The worker script: `entry` when given, else dist/fine-tune-worker.js beside this module (the
 * built package) or, when this module runs from src/ (tests), the package's dist/.
 */
export function workerEntry(entry?: string): string {
  if (entry !== undefined) return entry;
  const candidates = [
    new URL('./fine-tune-worker.js', import.meta.url),
    new URL('../../dist/fine-tune-worker.js', import.meta.url),
  ].map((u) => fileURLToPath(u));
  const found = candidates.find((f) => existsSync(f));
  if (found === undefined) {
    throw new ParaError('FILE_NOT_FOUND', 'the fine-tuning worker script is not built', {
      file: candidates[candidates.length - 1],
      expected: 'dist/fine-tune-worker.js (pnpm --filter @para/serve build)',
    });
  }
  return found;
}

export class JobProcess {
  readonly child: ChildProcess;
  private ended = false;
  private outcome: JobProcessOutcome | null = null;
  private stderrTail = '';

  constructor(entry: string, spec: WorkerJobSpec, handlers: JobProcessHandlers) {
    this.child = fork(entry, [], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'json',
      env: process.env,
      // Not the server's own flags (an inspector port, a loader of a test runner).
      execArgv: [],
    });
    const pid = this.child.pid;
    if (pid !== undefined) {
      try {
        os.setPriority(pid, spec.nice); // the worker never ends above the server's own nice
      } catch {
        // the worker lowers its own priority as its first act
      }
    }
    this.child.stderr?.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-4000);
    });
    this.child.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'ready':
          handlers.onReady?.({ pid: m.pid, nice: m.nice, backend: m.backend });
          break;
        case 'event':
          handlers.onEvent(m.event);
          break;
        case 'log':
          handlers.onLog?.(m.level, m.message);
          break;
        case 'done':
          this.outcome ??= { kind: 'done', result: m.result };
          break;
        case 'error':
          this.outcome ??= { kind: 'error', error: m.error };
          break;
      }
    });
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (this.ended) return;
      this.ended = true;
      const last = this.stderrTail
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !/^\d{4}-\d\d-\d\d .*(cpu_feature_guard|I tensorflow)/.test(l))
        .slice(-3)
        .join(' | ');
      handlers.onExit(
        this.outcome ?? {
          kind: 'crashed',
          message: `the training process ${signal !== null ? `was killed (${signal})` : `exited with code ${code}`} before finishing${last === '' ? '' : `: ${last.slice(0, 500)}`}`,
        },
      );
    };
    this.child.on('exit', finish);
    this.child.on('error', (e) => {
      this.outcome ??= {
        kind: 'crashed',
        message: `cannot run the training process: ${e.message}`,
      };
      if (this.child.pid === undefined) finish(null, null); // never started: no 'exit' follows
    });
    this.child.send({ type: 'start', spec });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Tells the worker whether the server is serving requests now (it yields while it is). */
  setServing(busy: boolean): void {
    if (this.ended || !this.child.connected) return;
    try {
      // With a callback a failed write (EPIPE: the worker sent `done` and exited) is reported
      // there, not as the process's 'error' event, which would fail the job.
      this.child.send({ type: 'serving', busy }, () => undefined);
    } catch {
      // the channel closed: it is exiting
    }
  }

  get running(): boolean {
    return !this.ended;
  }

  /** Asks the worker to checkpoint and stop between updates; kills it after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (this.ended) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    try {
      if (this.child.connected) this.child.send({ type: 'stop' }, () => undefined);
    } catch {
      // the channel closed: it is exiting
    }
    const timer = setTimeout(() => this.kill(), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Ends the worker now (SIGKILL); `onExit` follows. */
  kill(): void {
    if (!this.ended) this.child.kill('SIGKILL');
  }

  /** Resolves once the process has exited. */
  exited(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((r) => this.child.once('exit', () => r()));
  }
}
