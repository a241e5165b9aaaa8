/**
 * The fine-tuning worker: a child process (`child_process.fork` of dist/fine-tune-worker.js by
 * job-process.ts) that trains ONE job with para's trainer (`trainAdapterFromFiles`, what
 * `para train` runs) out of the serving process's event loop, and reports over IPC (see
 * worker-protocol.ts).
 *
 * - Priority: it lowers its own OS priority first (nice, default 10) for every thread it has,
 *   and again after the backend started (OpenBLAS starts its threads then), so on a small
 *   machine the serving process's decode steps win the cores.
 * - Exact resume: the job's OUT holds the trainer's checkpoints (every `checkpointEvery`
 *   updates, and when stopped); a job that was running when the server went away resumes from
 *   the latest one (`resume: true`) with the same settings, or starts afresh when none was
 *   written yet. A finished run whose adapter is already in OUT is not trained again.
 * - Yielding: while the server says it is serving (`serving` messages), the worker pauses
 *   after each update, for stepTime · (1/servingShare − 1) (at most 10 s) or until serving goes
 *   idle, so decode steps get the cores most of the time and training still advances.
 * - It exits when its parent goes away (IPC disconnect), so a killed server never leaves a
 *   trainer behind holding OUT's lock.
 */

import { readdir, readFile, stat } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '@para/adapters';
import { initBackend, isParaError } from '@para/core/node';
import {
  hasCheckpoint,
  latestCheckpoint,
  readOutLock,
  type TrainEvent,
  trainAdapterFromFiles,
} from '@para/train/node';
import type {
  FromWorker,
  ToWorker,
  WorkerEvent,
  WorkerJobSpec,
  WorkerResult,
} from './worker-protocol';

const send = (m: FromWorker): Promise<void> =>
  new Promise((resolve) => {
    if (process.send === undefined || !process.connected) return resolve();
    process.send(m, undefined, {}, () => resolve());
  });

/**
 * Sets `nice` on every thread of this process (Linux: /proc/self/task), else on the process;
 * never a higher priority than the process has (that needs privileges): max(nice, its own).
 */
async function renice(wanted: number): Promise<number> {
  let nice = wanted;
  try {
    nice = Math.max(wanted, os.getPriority());
  } catch {
    // keep the wanted value
  }
  let tids: number[] = [];
  try {
    tids = (await readdir('/proc/self/task')).map(Number).filter((n) => Number.isInteger(n));
  } catch {
    // not Linux: the process only
  }
  for (const tid of tids.length > 0 ? tids : [0]) {
    try {
      os.setPriority(tid, nice);
    } catch {
      // a thread that ended meanwhile, or a platform that refuses
    }
  }
  try {
    return os.getPriority();
  } catch {
    return 0;
  }
}

function wireEvent(e: TrainEvent): WorkerEvent | null {
  switch (e.type) {
    case 'start':
      return {
        type: 'start',
        step: e.step,
        totalSteps: e.totalSteps,
        resumed: e.resumed,
        stepsPerEpoch: e.stepsPerEpoch,
      };
    case 'step':
      return {
        type: 'step',
        step: e.step,
        totalSteps: e.totalSteps,
        epoch: e.epoch,
        loss: e.loss,
        lr: e.lr,
        tokensPerSec: e.tokensPerSec,
        etaMs: e.etaMs,
      };
    case 'eval':
      return {
        type: 'eval',
        step: e.step,
        loss: Number.isFinite(e.metrics.loss) ? e.metrics.loss : null,
        exactMatch: e.metrics.exact_match ?? null,
        best: e.best,
      };
    case 'checkpoint':
      return { type: 'checkpoint', step: e.step };
    case 'nan':
      return { type: 'nan', step: e.step };
    default:
      return null;
  }
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

interface Summary {
  steps: number;
  totalSteps: number;
  tokensSeen: number;
  finalTrainLoss: number | null;
  parameters: number;
}

/** The command this job's workers write into OUT's lock. */
const lockCommand = (jobId: string) => `para serve fine-tuning job ${jobId}`;

/**
 * A server killed with -9 leaves its worker running until that worker sees its IPC channel close
 * (at its next turn of the event loop: after the update it is computing). A restart that resumes
 * the job at once finds OUT locked by that same job's previous worker; wait for it to exit (up
 * to 60 s, then the trainer's LOCKED error names it) rather than fail the resumed job. A lock of
 * anything else is not waited for.
 */
async function waitForPreviousWorker(spec: WorkerJobSpec, stop: AbortSignal): Promise<void> {
  const deadline = Date.now() + 60_000;
  let told = false;
  while (!stop.aborted && Date.now() < deadline) {
    const held = await readOutLock(spec.out);
    if (held === null || held.pid === process.pid || held.command !== lockCommand(spec.jobId))
      return;
    if (!told) {
      told = true;
      await send({
        type: 'log',
        level: 'info',
        message: `waiting for pid ${held.pid} (this job's worker before the restart) to exit`,
      });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function run(spec: WorkerJobSpec, stop: AbortSignal): Promise<void> {
  const nice = await renice(spec.nice);
  const report = await initBackend({ backend: spec.backend, probe: false });
  await renice(spec.nice);
  await send({ type: 'ready', pid: process.pid, nice, backend: report.active });
  const yieldToServing = yielder(spec.servingShare ?? 1, stop);
  await waitForPreviousWorker(spec, stop);
  const summaryFile = path.join(spec.out, 'train_summary.json');
  const configFile = path.join(spec.out, ADAPTER_CONFIG_FILE);
  // A run that finished (adapter and summary written) before the server went away is not
  // trained again: the server only has to install its adapter.
  const finished =
    (await isFile(summaryFile)) &&
    (await isFile(configFile)) &&
    (await isFile(path.join(spec.out, ADAPTER_WEIGHTS_FILE)));
  const resume =
    !finished && (await hasCheckpoint(spec.out)) && (await latestCheckpoint(spec.out)) !== null;
  let result: Omit<WorkerResult, 'peftType' | 'servingPauses' | 'servingPauseMs'>;
  if (finished) {
    await send({
      type: 'log',
      level: 'info',
      message: 'the adapter was trained before the restart',
    });
    const s = JSON.parse(await readFile(summaryFile, 'utf8')) as Summary;
    result = {
      reason: 'done',
      step: s.steps,
      totalSteps: s.totalSteps,
      tokensSeen: s.tokensSeen,
      lastLoss: s.finalTrainLoss,
      parameters: s.parameters,
    };
  } else {
    const r = await trainAdapterFromFiles({
      method: spec.method,
      data: spec.trainingFile,
      ...(spec.validationFile === null ? {} : { evalData: spec.validationFile }),
      model: spec.modelDir,
      baseModelName: spec.baseModelName,
      out: spec.out,
      ...(spec.steps === null ? { epochs: spec.epochs } : { steps: spec.steps }),
      lr: spec.lr,
      batchSize: spec.batchSize,
      ...(spec.r === null ? {} : { r: spec.r }),
      seed: spec.seed,
      checkpointEvery: spec.checkpointEvery,
      evalLimit: spec.evalLimit,
      keepCheckpoints: false,
      // Without a checkpoint there is nothing to resume: OUT holds at most a run that never
      // reached its first checkpoint, started again from step 0.
      ...(resume ? { resume: true } : { force: true }),
      quiet: true,
      command: lockCommand(spec.jobId),
      log: (message) => void send({ type: 'log', level: 'info', message }),
      onEvent: (e) => {
        const w = wireEvent(e);
        if (w !== null) void send({ type: 'event', event: w });
        return yieldToServing(e);
      },
      signal: stop,
    });
    result = {
      // 'nan' never returns here: trainAdapterFromFiles throws for it.
      reason:
        r.result.reason === 'stopped'
          ? 'stopped'
          : r.result.reason === 'early-stop'
            ? 'early-stop'
            : 'done',
      step: r.result.step,
      totalSteps: r.result.totalSteps,
      tokensSeen: r.result.tokensSeen,
      lastLoss: r.result.lastLoss,
      parameters: r.parameters,
    };
  }
  let peftType = 'PARA';
  if (result.reason !== 'stopped') {
    const config = JSON.parse(await readFile(configFile, 'utf8')) as { peft_type?: unknown };
    if (typeof config.peft_type === 'string') peftType = config.peft_type;
  }
  await send({
    type: 'done',
    result: { ...result, peftType, servingPauses: serving.pauses, servingPauseMs: serving.pauseMs },
  });
}

/** The typed error as the job's `error` object (`param` names the file it came from, if any). */
function jobError(
  e: unknown,
  spec: WorkerJobSpec | null,
): {
  code: string;
  message: string;
  param: string | null;
} {
  if (isParaError(e)) {
    const file = e.file ?? '';
    const param =
      spec !== null && file.startsWith(spec.trainingFile)
        ? 'training_file'
        : spec?.validationFile != null && file.startsWith(spec.validationFile)
          ? 'validation_file'
          : null;
    // Paths of the server's data directory are not the client's business: name the file by role.
    let message = e.message;
    if (spec !== null) {
      message = message.split(spec.trainingFile).join('training_file');
      if (spec.validationFile !== null)
        message = message.split(spec.validationFile).join('validation_file');
      message = message.split(spec.out).join('<job>');
      message = message.split(spec.modelDir).join('<model>');
    }
    const code =
      param !== null
        ? `invalid_${param}`
        : e.code === 'LIMIT_EXCEEDED'
          ? 'limit_exceeded'
          : e.code.toLowerCase();
    return { code, message, param };
  }
  return {
    code: 'internal_error',
    message: `training failed: ${e instanceof Error ? e.message : String(e)}`,
    param: null,
  };
}

/** What the server last said about serving, and who waits for it to go idle. */
const serving = { busy: false, idle: [] as (() => void)[], pauses: 0, pauseMs: 0 };

/**
 * An onEvent hook that yields between updates while the server serves: after a `step` event it
 * waits stepTime · (1/share − 1) ms (at most 10 s), ending early when serving goes idle or the
 * job is stopped.
 */
function yielder(share: number, stop: AbortSignal): (e: TrainEvent) => Promise<void> | undefined {
  let last = performance.now();
  return (e) => {
    const now = performance.now();
    // Only an update's own time counts: loading, evaluations and checkpoints restart the clock.
    if (e.type !== 'step') {
      last = now;
      return undefined;
    }
    const stepMs = now - last;
    last = now;
    if (!serving.busy || share >= 1 || stop.aborted) return undefined;
    const pause = Math.min(10_000, stepMs * (1 / share - 1));
    serving.pauses++;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        stop.removeEventListener('abort', done);
        serving.idle = serving.idle.filter((f) => f !== done);
        serving.pauseMs += performance.now() - now;
        last = performance.now(); // the pause is not the next update's time
        resolve();
      };
      const timer = setTimeout(done, pause);
      stop.addEventListener('abort', done);
      serving.idle.push(done);
    });
  };
}

function main(): void {
  const stop = new AbortController();
  let spec: WorkerJobSpec | null = null;
  process.on('disconnect', () => process.exit(3));
  process.on('message', (m: ToWorker) => {
    if (m.type === 'stop') {
      stop.abort();
      return;
    }
    if (m.type === 'serving') {
      serving.busy = m.busy;
      if (!m.busy) for (const wake of serving.idle.splice(0)) wake();
      return;
    }
    if (m.type !== 'start' || spec !== null) return;
    spec = m.spec;
    run(m.spec, stop.signal).then(
      () => process.exit(0),
      async (e) => {
        await send({ type: 'error', error: jobError(e, spec) });
        process.exit(1);
      },
    );
  });
}

main();
