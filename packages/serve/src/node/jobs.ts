/**
 * Fine-tuning jobs (OpenAI's `fine_tuning.job`): their records, events and checkpoints on disk,
 * a queue with a limit on running jobs, and one worker process per running job.
 *
 *   DATA/jobs/ftjob-<24 hex>/job.json      the job (rewritten atomically at every change of state)
 *   DATA/jobs/ftjob-<24 hex>/events.jsonl  its events, appended (a torn last line is ignored)
 *   DATA/jobs/ftjob-<24 hex>/train/        the trainer's OUT: checkpoints/, metrics.jsonl, the
 *                                          adapter, .para.lock (see @para/train's trainAdapterFromFiles)
 *   ADAPTERS/<adapter>/                    the finished adapter (PEFT layout), served by the
 *                                          registry under that directory name
 *
 * Life of a job: `validating_files` (the files exist, are the caller's, are fine-tuning data) →
 * `queued` → `running` (a worker process; at most `maxRunning` at once, the rest wait in
 * creation order) → `succeeded` (the adapter is installed under ADAPTERS and `fine_tuned_model`
 * names it), `failed` (with `error`: the worker's typed error, or why the process died) or
 * `cancelled` (the process is killed).
 *
 * Names: `fine_tuned_model` is `ft:<base>:<suffix>:<8 hex>` (`ft:<base>::<8 hex>` without a
 * suffix), as OpenAI's; the registry cannot take `:` in a name (ADAPTER_NAME_PATTERN), so the
 * adapter directory is `ft-<suffix>-<8 hex>` and the job record keeps the mapping
 * (`para.adapter`). Both names reach the model only through its owner (see fine-tuning.ts).
 *
 * Restarts: every job that was not finished is queued again when the store opens. A job that was
 * running resumes from its trainer's latest exact-resume checkpoint (written every
 * `checkpoint_every` updates, and when the server stops it), starts again when it had none yet,
 * or fails with the reason (a damaged checkpoint, changed settings); a finished run whose
 * adapter was not installed yet is only installed.
 */

import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, adapterMethod } from '@para/adapters';
import { writeFileAtomic } from '@para/core/node';
import { ADAPTER_NAME_PATTERN } from '../registry';
import type { FileStore } from './files';
import { HttpError } from './http-error';
import { JobProcess, type JobProcessOutcome, workerEntry } from './job-process';
import { type Page, paginate } from './pagination';
import type { WorkerEvent, WorkerResult } from './worker-protocol';

export const JOB_ID_PATTERN = /^ftjob-[0-9a-f]{24}$/;

export type JobStatus =
  | 'validating_files'
  | 'queued'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'cancelled';

const UNFINISHED: readonly JobStatus[] = ['validating_files', 'queued', 'running'];

export interface Hyperparameters {
  n_epochs: number;
  batch_size: number;
  learning_rate_multiplier: number;
}

/** para's extension of a job: the adapter method and where its adapter goes. */
export interface ParaJobSettings {
  peft_type: string;
  r: number | null;
  /** Total updates, overriding n_epochs (null: n_epochs epochs). */
  max_steps: number | null;
  checkpoint_every: number;
  /** The learning rate: the method's default × learning_rate_multiplier. */
  learning_rate: number;
  /** The adapter's directory name under the adapters directory (the registry's name). */
  adapter: string;
  /** Updates done and in all (0 / null before the trainer starts). */
  step: number;
  total_steps: number | null;
  /** How many times the job was resumed after a server restart. */
  restarts: number;
  /** Set when its owner deleted the fine-tuned model (DELETE /v1/models/{model}). */
  model_deleted?: boolean;
}

/** OpenAI's fine-tuning job object, with para's `para` settings. */
export interface FineTuningJob {
  id: string;
  object: 'fine_tuning.job';
  created_at: number;
  error: { code: string; message: string; param: string | null } | null;
  fine_tuned_model: string | null;
  finished_at: number | null;
  hyperparameters: Hyperparameters;
  model: string;
  organization_id: string;
  result_files: string[];
  seed: number;
  status: JobStatus;
  trained_tokens: number | null;
  training_file: string;
  validation_file: string | null;
  estimated_finish: number | null;
  integrations: [];
  metadata: Record<string, string> | null;
  method: { type: 'supervised'; supervised: { hyperparameters: Hyperparameters } };
  user_provided_suffix: string | null;
  para: ParaJobSettings;
}

export interface JobEvent {
  id: string;
  object: 'fine_tuning.job.event';
  created_at: number;
  level: 'info' | 'warn' | 'error';
  message: string;
  data: Record<string, unknown>;
  type: 'message' | 'metrics';
}

export interface JobCheckpoint {
  id: string;
  object: 'fine_tuning.job.checkpoint';
  created_at: number;
  fine_tuned_model_checkpoint: string;
  fine_tuning_job_id: string;
  metrics: { step: number; train_loss?: number; valid_loss?: number };
  step_number: number;
}

interface StoredJob {
  job: FineTuningJob;
  owner: string;
  checkpoints: JobCheckpoint[];
  /** Creation order (created_at has a resolution of seconds; ids are random). */
  seq: number;
}

interface JobState extends StoredJob {
  dir: string;
  events: JobEvent[];
  /** Serialises this job's disk writes (events in order, then the record). */
  writes: Promise<void>;
  process: JobProcess | null;
  lastLoss: number | null;
  lastEvalLoss: number | null;
}

/** What POST /v1/fine_tuning/jobs asks for, its schema already checked. */
export interface JobRequest {
  model: string;
  training_file: string;
  validation_file?: string | null;
  suffix?: string | null;
  seed?: number | null;
  metadata?: Record<string, string> | null;
  hyperparameters?: Partial<Record<keyof Hyperparameters, number | 'auto'>>;
  peft_type?: string;
  r?: number | null;
  max_steps?: number | null;
  checkpoint_every?: number | null;
}

export interface JobsOptions {
  /** DATA/jobs. */
  dir: string;
  /** Where finished adapters are installed (a directory the registry serves). */
  adaptersDir: string;
  files: FileStore;
  /** The base model's id in the API (`model` of a job). */
  modelName: string;
  /** The backbone directory the workers load. */
  modelDir: string;
  /** The adapters' base_model_name_or_path (default: modelDir resolved). */
  baseModelName?: string;
  /** The tfjs backend the workers start. */
  backend: string;
  /** Jobs running at once (default 1). */
  maxRunning?: number;
  /** The workers' nice value (default 10). */
  nice?: number;
  /** Whether the server has requests running or waiting now (the workers yield while it does). */
  serving?: () => boolean;
  /** The share of time a worker trains while the server is serving (default 0.25; 1: never yields). */
  servingShare?: number;
  /** The worker script (default: dist/fine-tune-worker.js). */
  workerEntry?: string;
  /** Validation examples evaluated at most per evaluation (default 200). */
  evalLimit?: number;
  /** True when `name` is already taken by an adapter of the registry (new names avoid it). */
  nameTaken?: (name: string) => Promise<boolean>;
  log?: (level: 'info' | 'warn' | 'error', message: string, data?: Record<string, unknown>) => void;
}

const now = () => Math.floor(Date.now() / 1000);

const notFound = (id: string) =>
  new HttpError(
    404,
    `no fine-tuning job with id ${JSON.stringify(id)}`,
    'not_found_error',
    'fine_tuning_job_id',
    'job_not_found',
  );

/** A failed job's error for a worker process that died. */
const crashError = (message: string) => ({ code: 'training_process_failed', message, param: null });

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

export class FineTuningJobs {
  private readonly jobs = new Map<string, JobState>();
  private readonly queue: string[] = [];
  private closing = false;
  private readonly maxRunning: number;
  private readonly nice: number;
  private readonly idleWaiters: (() => void)[] = [];
  private seq = 0;

  private constructor(readonly options: JobsOptions) {
    this.maxRunning = options.maxRunning ?? 1;
    // Never a higher priority than the server's own (lowering nice needs privileges).
    this.nice = Math.max(options.nice ?? 10, os.getPriority());
  }

  /** Loads the jobs under `options.dir` and queues again every unfinished one. */
  static async open(options: JobsOptions): Promise<FineTuningJobs> {
    const store = new FineTuningJobs(options);
    let names: string[] = [];
    try {
      names = await readdir(options.dir);
    } catch {
      // no job yet
    }
    const loaded: JobState[] = [];
    for (const id of names) {
      if (!JOB_ID_PATTERN.test(id)) continue;
      const dir = path.join(options.dir, id);
      let stored: StoredJob;
      try {
        stored = JSON.parse(await readFile(path.join(dir, 'job.json'), 'utf8')) as StoredJob;
      } catch {
        continue; // created but never recorded: no client was told of it
      }
      if (stored?.job?.id !== id || typeof stored.owner !== 'string') continue;
      const events: JobEvent[] = [];
      try {
        for (const line of (await readFile(path.join(dir, 'events.jsonl'), 'utf8')).split('\n')) {
          if (line.trim() === '') continue;
          try {
            events.push(JSON.parse(line) as JobEvent);
          } catch {
            // the torn last line of a crash
          }
        }
      } catch {
        // no events yet
      }
      loaded.push({
        ...stored,
        checkpoints: stored.checkpoints ?? [],
        seq: typeof stored.seq === 'number' ? stored.seq : 0,
        dir,
        events,
        writes: Promise.resolve(),
        process: null,
        lastLoss: null,
        lastEvalLoss: null,
      });
    }
    // Half-installed adapters of a crash (installs rename a complete temporary directory).
    try {
      for (const n of await readdir(options.adaptersDir)) {
        if (n.startsWith('.ft-') && n.endsWith('.tmp'))
          await rm(path.join(options.adaptersDir, n), { recursive: true, force: true });
      }
    } catch {
      // no adapter installed yet
    }
    loaded.sort((a, b) => a.seq - b.seq);
    for (const s of loaded) {
      store.jobs.set(s.job.id, s);
      store.seq = Math.max(store.seq, s.seq);
      if (!UNFINISHED.includes(s.job.status)) continue;
      const was = s.job.status;
      s.job.status = 'queued';
      s.job.estimated_finish = null;
      if (was === 'running') {
        s.job.para.restarts++;
        store.event(
          s,
          'warn',
          'The server restarted during training: the job is queued to resume from its latest checkpoint',
        );
      } else {
        store.event(s, 'info', 'The server restarted: the job is queued again');
      }
      store.persist(s);
      store.queue.push(s.job.id);
    }
    store.pump();
    return store;
  }

  /** Creates a job (checks its files and settings) and queues it. */
  async create(owner: string, r: JobRequest): Promise<FineTuningJob> {
    if (this.closing) {
      throw new HttpError(503, 'the server is shutting down', 'server_error', null, 'closing');
    }
    if (r.model !== this.options.modelName) {
      throw new HttpError(
        400,
        `model ${JSON.stringify(r.model)} cannot be fine-tuned here: this server fine-tunes its base model ${JSON.stringify(this.options.modelName)}`,
        'invalid_request_error',
        'model',
        'model_not_available',
      );
    }
    const fileOf = (id: string, param: string) => {
      try {
        return this.options.files.get(owner, id);
      } catch {
        throw new HttpError(
          400,
          `${param} ${JSON.stringify(id)} is not one of your files (upload it with POST /v1/files, purpose "fine-tune")`,
          'invalid_request_error',
          param,
          'file_not_found',
        );
      }
    };
    const training = fileOf(r.training_file, 'training_file');
    const validation =
      r.validation_file == null ? null : fileOf(r.validation_file, 'validation_file');
    const method = adapterMethod(r.peft_type ?? 'PARA', { field: 'para.peft_type' });
    if (r.r != null && method.rankKey === null) {
      throw new HttpError(
        400,
        `${method.peftType} has no rank (its vectors have the model's widths): leave para.r out`,
        'invalid_request_error',
        'para.r',
        'invalid_value',
      );
    }
    const h = r.hyperparameters ?? {};
    const batch =
      h.batch_size === undefined || h.batch_size === 'auto'
        ? Math.min(16, training.records)
        : h.batch_size;
    const hyperparameters: Hyperparameters = {
      n_epochs: h.n_epochs === undefined || h.n_epochs === 'auto' ? 3 : h.n_epochs,
      batch_size: Math.max(1, batch),
      learning_rate_multiplier:
        h.learning_rate_multiplier === undefined || h.learning_rate_multiplier === 'auto'
          ? 1
          : h.learning_rate_multiplier,
    };
    const suffix = r.suffix == null || r.suffix === '' ? null : r.suffix;
    let id = '';
    let short = '';
    let adapter = '';
    for (;;) {
      id = `ftjob-${randomBytes(12).toString('hex')}`;
      short = id.slice(6, 14);
      adapter = `ft-${suffix === null ? '' : `${suffix}-`}${short}`;
      const clash =
        [...this.jobs.values()].some((s) => s.job.para.adapter === adapter) ||
        ((await this.options.nameTaken?.(adapter)) ?? false);
      if (!clash && ADAPTER_NAME_PATTERN.test(adapter)) break;
    }
    const created = now();
    const job: FineTuningJob = {
      id,
      object: 'fine_tuning.job',
      created_at: created,
      error: null,
      fine_tuned_model: null,
      finished_at: null,
      hyperparameters,
      model: r.model,
      organization_id: owner,
      result_files: [],
      seed: r.seed ?? Number.parseInt(randomBytes(4).toString('hex'), 16) % 2 ** 31,
      status: 'validating_files',
      trained_tokens: null,
      training_file: training.id,
      validation_file: validation?.id ?? null,
      estimated_finish: null,
      integrations: [],
      metadata: r.metadata ?? null,
      method: { type: 'supervised', supervised: { hyperparameters } },
      user_provided_suffix: suffix,
      para: {
        peft_type: method.peftType,
        r: method.rankKey === null ? null : (r.r ?? (method.defaults[method.rankKey] as number)),
        max_steps: r.max_steps ?? null,
        checkpoint_every: r.checkpoint_every ?? 10,
        learning_rate: method.training.lr * hyperparameters.learning_rate_multiplier,
        adapter,
        step: 0,
        total_steps: r.max_steps ?? null,
        restarts: 0,
      },
    };
    const s: JobState = {
      job,
      owner,
      checkpoints: [],
      seq: ++this.seq,
      dir: path.join(this.options.dir, id),
      events: [],
      writes: Promise.resolve(),
      process: null,
      lastLoss: null,
      lastEvalLoss: null,
    };
    await mkdir(s.dir, { recursive: true });
    this.jobs.set(id, s);
    this.event(s, 'info', `Created fine-tuning job: ${id}`);
    this.event(
      s,
      'info',
      `Validating training file: ${training.id}${validation === null ? '' : ` and validation file: ${validation.id}`}`,
    );
    // The files were validated as fine-tuning data at upload; what depends on the model (the
    // context length, the chat template) is checked by the worker before it trains.
    job.status = 'queued';
    this.event(s, 'info', 'Files validated, moving job to queued state');
    await this.persist(s);
    this.queue.push(id);
    this.pump();
    return this.view(s);
  }

  /** The owner's job (404 for another owner's or an unknown id). */
  get(owner: string, id: string): FineTuningJob {
    return this.view(this.state(owner, id));
  }

  list(owner: string, o: { after?: string; limit: number }): Page<FineTuningJob> {
    const mine = [...this.jobs.values()]
      .filter((s) => s.owner === owner)
      .sort((a, b) => b.seq - a.seq)
      .map((s) => this.view(s));
    return paginate(mine, o.after, o.limit);
  }

  /** The job's events, newest first (as OpenAI lists them). */
  events(owner: string, id: string, o: { after?: string; limit: number }): Page<JobEvent> {
    const s = this.state(owner, id);
    return paginate([...s.events].reverse(), o.after, o.limit);
  }

  checkpoints(
    owner: string,
    id: string,
    o: { after?: string; limit: number },
  ): Page<JobCheckpoint> {
    const s = this.state(owner, id);
    return paginate([...s.checkpoints].reverse(), o.after, o.limit);
  }

  async cancel(owner: string, id: string): Promise<FineTuningJob> {
    const s = this.state(owner, id);
    if (!UNFINISHED.includes(s.job.status)) {
      throw new HttpError(
        400,
        `the job is ${s.job.status}: only a validating, queued or running job can be cancelled`,
        'invalid_request_error',
        'fine_tuning_job_id',
        'job_not_cancellable',
      );
    }
    const i = this.queue.indexOf(id);
    if (i >= 0) this.queue.splice(i, 1);
    s.job.status = 'cancelled';
    s.job.finished_at = now();
    s.job.estimated_finish = null;
    this.event(s, 'info', 'Fine-tuning job cancelled');
    const p = s.process;
    p?.kill();
    await this.persist(s);
    if (p !== null) await p.exited();
    return this.view(s);
  }

  /** True when an unfinished job of anyone reads the file (it may not be deleted). */
  fileInUse(fileId: string): boolean {
    for (const s of this.jobs.values()) {
      if (
        UNFINISHED.includes(s.job.status) &&
        (s.job.training_file === fileId || s.job.validation_file === fileId)
      )
        return true;
    }
    return false;
  }

  /**
   * The job whose model `name` is: its `fine_tuned_model` (`ft:…`) or its adapter directory's
   * name; undefined when `name` is neither. Any status (callers check `succeeded`).
   */
  modelJob(name: string): { job: FineTuningJob; owner: string } | undefined {
    for (const s of this.jobs.values()) {
      if (s.job.fine_tuned_model === name || s.job.para.adapter === name)
        return { job: this.view(s), owner: s.owner };
    }
    return undefined;
  }

  /** True when `name` is the adapter directory of a job (hidden from the plain adapter list). */
  isJobAdapter(name: string): boolean {
    for (const s of this.jobs.values()) if (s.job.para.adapter === name) return true;
    return false;
  }

  /** The owner's fine-tuned models (succeeded jobs whose model was not deleted), oldest first. */
  models(owner: string): FineTuningJob[] {
    return [...this.jobs.values()]
      .filter((s) => s.owner === owner && s.job.status === 'succeeded' && !s.job.para.model_deleted)
      .map((s) => this.view(s));
  }

  /**
   * Deletes the owner's fine-tuned model `name` (its `ft:…` name or its adapter's name), as
   * OpenAI's DELETE /v1/models/{model}: the adapter directory is renamed aside and removed (the
   * registry sees a complete adapter or none), and the job records `para.model_deleted`, so the
   * name resolves to nothing from then on; the job itself keeps its `fine_tuned_model`, as
   * OpenAI's does. The caller unloads the adapter from the registry (requests already running on
   * it finish first). Returns the job, or null when the owner has no such model.
   */
  async deleteModel(name: string, owner: string): Promise<FineTuningJob | null> {
    const s = [...this.jobs.values()].find(
      (j) =>
        (j.job.fine_tuned_model === name || j.job.para.adapter === name) &&
        j.owner === owner &&
        j.job.status === 'succeeded' &&
        !j.job.para.model_deleted,
    );
    if (s === undefined) return null;
    s.job.para.model_deleted = true;
    await this.persist(s);
    const target = path.join(this.options.adaptersDir, s.job.para.adapter);
    const aside = path.join(
      this.options.adaptersDir,
      `.${s.job.para.adapter}.${randomBytes(4).toString('hex')}.deleted`,
    );
    try {
      await rename(target, aside);
      await rm(aside, { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    this.event(s, 'info', `Fine-tuned model deleted: ${s.job.fine_tuned_model}`, {
      model: s.job.fine_tuned_model,
    });
    return this.view(s);
  }

  /** Jobs by status (GET /metrics). */
  statusCounts(): Record<JobStatus, number> {
    const counts: Record<JobStatus, number> = {
      validating_files: 0,
      queued: 0,
      running: 0,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
    };
    for (const s of this.jobs.values()) counts[s.job.status]++;
    return counts;
  }

  /** Pids of the running workers (tests and benchmarks). */
  workerPids(): number[] {
    const out: number[] = [];
    for (const s of this.jobs.values()) if (s.process?.pid !== undefined) out.push(s.process.pid);
    return out;
  }

  /** Resolves when no job is running or queued. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.runningCount() === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /**
   * Stops admitting jobs and stops the running ones: each is asked to checkpoint and stop, and is
   * killed after `graceMs`. Their records stay `running`, so the next start resumes them.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.closing = true;
    const running = [...this.jobs.values()].filter((s) => s.process !== null);
    await Promise.all(running.map((s) => s.process?.stop(graceMs)));
    await Promise.all([...this.jobs.values()].map((s) => s.writes));
  }

  // -------------------------------------------------------------------------------------------

  private state(owner: string, id: string): JobState {
    const s = JOB_ID_PATTERN.test(id) ? this.jobs.get(id) : undefined;
    if (s === undefined || s.owner !== owner) throw notFound(id);
    return s;
  }

  private view(s: JobState): FineTuningJob {
    return structuredClone(s.job);
  }

  private runningCount(): number {
    let n = 0;
    for (const s of this.jobs.values()) if (s.process !== null) n++;
    return n;
  }

  private event(
    s: JobState,
    level: JobEvent['level'],
    message: string,
    data: Record<string, unknown> = {},
    type: JobEvent['type'] = 'message',
  ): void {
    const e: JobEvent = {
      id: `ftevent-${randomBytes(12).toString('hex')}`,
      object: 'fine_tuning.job.event',
      created_at: now(),
      level,
      message,
      data,
      type,
    };
    s.events.push(e);
    const file = path.join(s.dir, 'events.jsonl');
    s.writes = s.writes
      .then(() => mkdir(s.dir, { recursive: true }))
      .then(() => appendFile(file, `${JSON.stringify(e)}\n`))
      .catch((err) => this.options.log?.('error', `cannot record an event of ${s.job.id}: ${err}`));
  }

  private persist(s: JobState): Promise<void> {
    const stored: StoredJob = {
      job: s.job,
      owner: s.owner,
      checkpoints: s.checkpoints,
      seq: s.seq,
    };
    const text = `${JSON.stringify(stored, null, 2)}\n`;
    s.writes = s.writes
      .then(() => mkdir(s.dir, { recursive: true }))
      .then(() => writeFileAtomic(path.join(s.dir, 'job.json'), text))
      .catch((err) => this.options.log?.('error', `cannot record job ${s.job.id}: ${err}`));
    return s.writes;
  }

  private pump(): void {
    while (!this.closing && this.queue.length > 0 && this.runningCount() < this.maxRunning) {
      const id = this.queue.shift() as string;
      const s = this.jobs.get(id);
      if (s === undefined || s.job.status !== 'queued') continue;
      this.start(s);
    }
    if (this.queue.length === 0 && this.runningCount() === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private start(s: JobState): void {
    const { job } = s;
    const files = this.options.files;
    const trainingFile = files.contentPath(job.training_file);
    const validationFile =
      job.validation_file === null ? null : files.contentPath(job.validation_file);
    job.status = 'running';
    this.event(s, 'info', 'Fine-tuning job started');
    void this.persist(s);
    const method = adapterMethod(job.para.peft_type);
    let entry: string;
    try {
      entry = workerEntry(this.options.workerEntry);
    } catch (e) {
      void this.fail(s, crashError((e as Error).message));
      return;
    }
    s.process = new JobProcess(
      entry,
      {
        jobId: job.id,
        modelDir: path.resolve(this.options.modelDir),
        baseModelName: this.options.baseModelName ?? path.resolve(this.options.modelDir),
        backend: this.options.backend,
        method: method.name,
        r: job.para.r,
        trainingFile,
        validationFile,
        out: path.join(s.dir, 'train'),
        steps: job.para.max_steps,
        epochs: job.hyperparameters.n_epochs,
        batchSize: job.hyperparameters.batch_size,
        lr: job.para.learning_rate,
        seed: job.seed,
        checkpointEvery: job.para.checkpoint_every,
        evalLimit: this.options.evalLimit ?? 200,
        nice: this.nice,
        servingShare: this.options.servingShare ?? 0.25,
      },
      {
        onReady: (info) =>
          this.options.log?.(
            'info',
            `fine-tuning job ${job.id}: worker ${info.pid} (nice ${info.nice}, ${info.backend})`,
          ),
        onEvent: (e) => this.onWorkerEvent(s, e),
        onLog: (level, message) => {
          if (/skipped \d+ of/.test(message)) this.event(s, 'warn', message);
          if (message.startsWith('waiting for pid')) this.event(s, 'info', message);
          this.options.log?.(level, `fine-tuning job ${job.id}: ${message}`);
        },
        onExit: (outcome) => {
          s.process = null;
          void this.onWorkerExit(s, outcome).finally(() => this.pump());
        },
      },
    );
    // Sampled now: the last state the watcher saw may be stale when no worker was running.
    this.servingNow = this.options.serving?.() ?? false;
    for (const j of this.jobs.values()) j.process?.setServing(this.servingNow);
    this.watchServing();
  }

  /** The serving state the workers were last told. */
  private servingNow = false;
  private servingTimer: ReturnType<typeof setInterval> | null = null;

  /**
   * While a worker runs, samples whether the server is serving (every 20 ms: a decode step
   * takes longer) and tells the workers when that changes, so they yield the cores to it.
   */
  private watchServing(): void {
    const serving = this.options.serving;
    if (serving === undefined || this.servingTimer !== null) return;
    const timer = setInterval(() => {
      const workers = [...this.jobs.values()].filter((j) => j.process !== null);
      if (workers.length === 0) {
        clearInterval(timer);
        this.servingTimer = null;
        return;
      }
      const busy = serving();
      if (busy === this.servingNow) return;
      this.servingNow = busy;
      for (const j of workers) j.process?.setServing(busy);
    }, 20);
    timer.unref?.();
    this.servingTimer = timer;
  }

  private onWorkerEvent(s: JobState, e: WorkerEvent): void {
    const { job } = s;
    if (job.status !== 'running') return;
    switch (e.type) {
      case 'start':
        job.para.total_steps = e.totalSteps;
        job.para.step = e.step;
        if (e.resumed)
          this.event(
            s,
            'info',
            `Resumed from the checkpoint at step ${e.step} of ${e.totalSteps}`,
            { step: e.step, total_steps: e.totalSteps },
          );
        else
          this.event(s, 'info', `Training ${e.totalSteps} steps (${e.stepsPerEpoch} per epoch)`, {
            total_steps: e.totalSteps,
          });
        break;
      case 'step':
        job.para.step = e.step;
        job.para.total_steps = e.totalSteps;
        job.estimated_finish = Math.ceil((Date.now() + e.etaMs) / 1000);
        s.lastLoss = e.loss;
        this.event(
          s,
          'info',
          `Step ${e.step}/${e.totalSteps}: training loss=${e.loss.toFixed(4)}`,
          {
            step: e.step,
            train_loss: e.loss,
            total_steps: e.totalSteps,
            learning_rate: e.lr,
            epoch: e.epoch,
            tokens_per_second: e.tokensPerSec,
          },
          'metrics',
        );
        break;
      case 'eval':
        s.lastEvalLoss = e.loss;
        this.event(
          s,
          'info',
          `Step ${e.step}/${job.para.total_steps ?? '?'}: validation loss=${e.loss === null ? 'n/a' : e.loss.toFixed(4)}${e.exactMatch === null ? '' : `, exact match=${e.exactMatch.toFixed(4)}`}`,
          {
            step: e.step,
            valid_loss: e.loss,
            valid_exact_match: e.exactMatch,
            total_steps: job.para.total_steps,
            best: e.best,
          },
          'metrics',
        );
        break;
      case 'checkpoint': {
        const metrics: JobCheckpoint['metrics'] = { step: e.step };
        if (s.lastLoss !== null) metrics.train_loss = s.lastLoss;
        if (s.lastEvalLoss !== null) metrics.valid_loss = s.lastEvalLoss;
        s.checkpoints.push({
          id: `ftckpt-${randomBytes(12).toString('hex')}`,
          object: 'fine_tuning.job.checkpoint',
          created_at: now(),
          // Only the latest checkpoint is kept (for exact resume); it is trainer state, not a
          // servable model: the name says which step it is.
          fine_tuned_model_checkpoint: `${this.modelId(s)}:ckpt-step-${e.step}`,
          fine_tuning_job_id: job.id,
          metrics,
          step_number: e.step,
        });
        this.event(s, 'info', `Checkpoint created at step ${e.step}`, { step: e.step });
        void this.persist(s);
        break;
      }
      case 'nan':
        this.event(s, 'error', `Step ${e.step}: the loss is NaN or infinite`, { step: e.step });
        break;
    }
  }

  private modelId(s: JobState): string {
    return `ft:${this.options.modelName}:${s.job.user_provided_suffix ?? ''}:${s.job.id.slice(6, 14)}`;
  }

  private async onWorkerExit(s: JobState, outcome: JobProcessOutcome): Promise<void> {
    const { job } = s;
    // A cancelled job's process was killed on purpose; a closing server's workers stop (or are
    // killed) and their jobs stay `running` on disk, to resume at the next start.
    if (job.status !== 'running' || this.closing) return;
    if (outcome.kind === 'done' && outcome.result.reason === 'stopped') {
      this.queue.unshift(job.id);
      job.status = 'queued';
      await this.persist(s);
      return;
    }
    if (outcome.kind === 'done') {
      await this.succeed(s, outcome.result);
      return;
    }
    await this.fail(s, outcome.kind === 'error' ? outcome.error : crashError(outcome.message));
  }

  private async succeed(s: JobState, r: WorkerResult): Promise<void> {
    const { job } = s;
    try {
      await this.install(s);
    } catch (e) {
      await this.fail(s, crashError(`cannot install the adapter: ${(e as Error).message}`));
      return;
    }
    job.status = 'succeeded';
    job.fine_tuned_model = this.modelId(s);
    job.finished_at = now();
    job.estimated_finish = null;
    job.trained_tokens = r.tokensSeen;
    job.para.step = r.step;
    job.para.total_steps = r.totalSteps;
    job.para.peft_type = r.peftType;
    this.event(s, 'info', `New fine-tuned model created: ${job.fine_tuned_model}`, {
      model: job.fine_tuned_model,
      adapter: job.para.adapter,
      parameters: r.parameters,
    });
    this.event(s, 'info', 'The job has successfully completed', {
      step: r.step,
      train_loss: r.lastLoss,
      trained_tokens: r.tokensSeen,
      // In this process's run (a resumed job: since its restart).
      serving_pauses: r.servingPauses ?? 0,
      serving_pause_ms: Math.round(r.servingPauseMs ?? 0),
    });
    await this.persist(s);
  }

  private async fail(s: JobState, error: FineTuningJob['error']): Promise<void> {
    const { job } = s;
    job.status = 'failed';
    job.error = error;
    job.finished_at = now();
    job.estimated_finish = null;
    this.event(s, 'error', `Fine-tuning job failed: ${error?.message ?? 'unknown error'}`, {
      code: error?.code ?? null,
      param: error?.param ?? null,
    });
    await this.persist(s);
  }

  /**
   * Copies the trained adapter from the job's OUT into ADAPTERS/<adapter>: written into a
   * temporary directory (each file atomically) and renamed into place, so the registry sees
   * either no adapter or a complete one.
   */
  private async install(s: JobState): Promise<void> {
    const out = path.join(s.dir, 'train');
    const target = path.join(this.options.adaptersDir, s.job.para.adapter);
    if (await isFile(path.join(target, ADAPTER_CONFIG_FILE))) return; // installed before a restart
    await mkdir(this.options.adaptersDir, { recursive: true });
    const tmp = path.join(
      this.options.adaptersDir,
      `.${s.job.para.adapter}.${randomBytes(4).toString('hex')}.tmp`,
    );
    await mkdir(tmp);
    try {
      for (const f of [ADAPTER_WEIGHTS_FILE, ADAPTER_CONFIG_FILE])
        await writeFileAtomic(path.join(tmp, f), await readFile(path.join(out, f)));
      await rm(target, { recursive: true, force: true });
      await rename(tmp, target);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw e;
    }
  }
}
