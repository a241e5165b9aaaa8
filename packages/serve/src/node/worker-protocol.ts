/**
 * What the server and a fine-tuning worker process (fine-tune-worker.ts, started with
 * `child_process.fork`) say to each other over the IPC channel. One job per process: the server
 * sends `start`, the worker streams `event`s and `log`s and ends with `done` or `error`, then
 * exits. `stop` asks it to checkpoint and stop between updates (server shutdown; the job resumes
 * from that checkpoint at the next start); cancelling a job kills the process.
 */

/** Everything a worker needs to train one job (paths absolute). */
export interface WorkerJobSpec {
  jobId: string;
  /** The backbone directory (config.json, weights, tokenizer). */
  modelDir: string;
  /** Written as the adapter's base_model_name_or_path. */
  baseModelName: string;
  /** The tfjs backend to start (the server's own). */
  backend: string;
  /** The registered adapter method: `para`, `lora`, `ia3`. */
  method: string;
  r: number | null;
  trainingFile: string;
  validationFile: string | null;
  /** The trainer's OUT: checkpoints, metrics.jsonl, the finished adapter, .para.lock. */
  out: string;
  /** Total updates (`max_steps`), or null to train `epochs` epochs. */
  steps: number | null;
  epochs: number;
  batchSize: number;
  lr: number;
  seed: number;
  /** Checkpoint every N updates (exact resume after a restart); 0: only when stopped. */
  checkpointEvery: number;
  /** Evaluate on at most this many validation examples. */
  evalLimit: number;
  /** The worker's OS priority (nice, -20..19; higher is lower priority). */
  nice: number;
  /**
   * While the server is serving requests, the share of wall time the worker may spend in
   * training steps (0 < share ≤ 1): after each update it pauses (stepTime · (1/share − 1), at
   * most 10 s) until serving goes idle. 1: it never yields.
   */
  servingShare: number;
}

/**
 * `serving`: whether the server has requests running or waiting now (sent when it changes, and
 * once after `start`).
 */
export type ToWorker =
  | { type: 'start'; spec: WorkerJobSpec }
  | { type: 'stop' }
  | { type: 'serving'; busy: boolean };

/** A training event, flattened for the wire (see TrainEvent in @para/train). */
export type WorkerEvent =
  | { type: 'start'; step: number; totalSteps: number; resumed: boolean; stepsPerEpoch: number }
  | {
      type: 'step';
      step: number;
      totalSteps: number;
      epoch: number;
      loss: number;
      lr: number;
      tokensPerSec: number;
      etaMs: number;
    }
  | {
      type: 'eval';
      step: number;
      loss: number | null;
      exactMatch: number | null;
      best: boolean;
    }
  | { type: 'checkpoint'; step: number }
  | { type: 'nan'; step: number };

export interface WorkerResult {
  /** `done`: trained to the end (the adapter is in `out`); `stopped`: asked to stop. */
  reason: 'done' | 'early-stop' | 'stopped';
  step: number;
  totalSteps: number;
  tokensSeen: number;
  lastLoss: number | null;
  /** The adapter's peft_type (as saved). */
  peftType: string;
  parameters: number;
  /** Pauses the worker took between updates to yield to serving, and their total ms. */
  servingPauses: number;
  servingPauseMs: number;
}

export type FromWorker =
  | { type: 'ready'; pid: number; nice: number; backend: string }
  | { type: 'event'; event: WorkerEvent }
  | { type: 'log'; level: 'info' | 'warn'; message: string }
  | { type: 'done'; result: WorkerResult }
  | {
      type: 'error';
      error: { code: string; message: string; param: string | null };
    };
