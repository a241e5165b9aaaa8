/**
 * OpenAI's Files and fine-tuning API on the serving server: a tenant uploads JSONL, starts a
 * job, and calls the tuned model by name on the same server, with no restart.
 *
 *   POST   /v1/files                               multipart (`file`, `purpose: "fine-tune"`); validated, stored
 *   GET    /v1/files                               the caller's files (`purpose`, `order`, `after`, `limit`)
 *   GET    /v1/files/{file_id}                     one file object
 *   GET    /v1/files/{file_id}/content             its bytes
 *   DELETE /v1/files/{file_id}                     removes it (not while an unfinished job reads it)
 *   POST   /v1/fine_tuning/jobs                    creates a job (see JobRequest; `para` extension)
 *   GET    /v1/fine_tuning/jobs                    the caller's jobs, newest first (`after`, `limit`)
 *   GET    /v1/fine_tuning/jobs/{id}               one job
 *   POST   /v1/fine_tuning/jobs/{id}/cancel        cancels it (its process is killed)
 *   GET    /v1/fine_tuning/jobs/{id}/events        its events, newest first (step, loss, eval loss)
 *   GET    /v1/fine_tuning/jobs/{id}/checkpoints   the checkpoints it wrote
 *
 * Ownership: every file, job and fine-tuned model belongs to the API key that created it (its
 * SHA-256 prefix is stored, never the key; with no keys configured there is one owner). Another
 * key gets 404 for them, as if they did not exist — also for the model: `ft:…` names answer 404
 * to anyone but their owner, whatever the keys file grants (`"*"` and admin keys included). The
 * owner may always use its own fine-tuned models; creating a job needs a key that may use the
 * base model. Fine-tuned models are listed by GET /v1/models for their owner only.
 */

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import multipart from '@fastify/multipart';
import { ParaError } from '@para/core';
import type { CausalLM } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AdapterRegistry } from '../registry';
import { directorySource } from './directory';
import { FileStore, fileObject } from './files';
import { HttpError, modelNotFound } from './http-error';
import { FineTuningJobs, type JobRequest } from './jobs';

export interface FineTuningOptions {
  /**
   * The data directory: `files/` (uploads), `jobs/` (records, events, checkpoints) and, unless
   * `adaptersDir` says otherwise, `adapters/` (the fine-tuned adapters). Created on first use.
   */
  dataDir: string;
  /** The backbone directory the training processes load (the served model's). */
  modelDir: string;
  /**
   * Where finished adapters are installed (default `DATA/adapters`). The server's registry must
   * serve this directory (`unionSource([directorySource(root), directorySource(adaptersDir)])`);
   * createServer makes such a registry when it is given none.
   */
  adaptersDir?: string;
  /** The adapters' base_model_name_or_path (default: modelDir, resolved). */
  baseModelName?: string;
  /** Largest upload in bytes (default 32 MiB). */
  maxFileBytes?: number;
  /** Jobs training at once (default 1); the others wait in the queue. */
  maxRunningJobs?: number;
  /** The training processes' nice value (default 10: serving keeps the cores). */
  workerNice?: number;
  /**
   * While requests are being served, the share of wall time a job may spend training (default
   * 0.25): after each update the worker pauses until serving goes idle, or for 3× the update's
   * time at the default. 1: never yields (then only `workerNice` protects serving).
   */
  servingShare?: number;
  /** The worker script (default: the package's dist/fine-tune-worker.js). */
  workerEntry?: string;
  /** The tfjs backend the workers start (default: the server's, `tf.getBackend()`). */
  backend?: string;
  /** How long close() lets a running job checkpoint before killing it (default 10 s). */
  stopGraceMs?: number;
  /** Validation examples evaluated at most per evaluation (default 200). */
  evalLimit?: number;
}

/** What the server gives the fine-tuning routes. */
export interface FineTuningContext {
  modelName: string;
  registry: AdapterRegistry | null;
  /** The owner of a request: its key's id, or "default" when the server has no keys. */
  ownerOf(request: FastifyRequest): string;
  /** Whether the request's key may use a model of the keys file (the base model, adapters). */
  mayUse(request: FastifyRequest, name: string): boolean;
  /** Whether requests are running or waiting now (training yields while they are). */
  serving?: () => boolean;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

export interface FineTuning {
  files: FileStore;
  jobs: FineTuningJobs;
  /**
   * For a fine-tuned model's name (`ft:…`, or its adapter directory's name): the registry name
   * of its adapter when the request's key owns it (404 otherwise). null for any other name.
   */
  resolve(request: FastifyRequest, name: string): string | null;
  /** GET /v1/models entries of the request's fine-tuned models. */
  models(request: FastifyRequest): Record<string, unknown>[];
  /** True for a fine-tuned adapter's directory name (not listed as a plain adapter). */
  isJobAdapter(name: string): boolean;
  /**
   * DELETE /v1/models/{model} of a fine-tuned model the request's key owns: deletes it (see
   * `FineTuningJobs.deleteModel`) and unloads its adapter. null when `name` is no fine-tuned
   * model at all; a 404 when it is one the key does not own (or already deleted).
   */
  deleteModel(request: FastifyRequest, name: string): Promise<{ id: string } | null>;
  /** Stops the running jobs (they resume at the next start); waits for their records. */
  close(): Promise<void>;
}

/** The owner id of an API key: a prefix of its SHA-256 (the key itself is never stored). */
export function keyOwner(key: string): string {
  return `key-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

/** The owner of every file, job and model on a server without keys. */
export const DEFAULT_OWNER = 'default';

/** The fine-tuned adapters' directory of these options. */
export function fineTunedAdaptersDir(options: FineTuningOptions): string {
  return path.resolve(options.adaptersDir ?? path.join(options.dataDir, 'adapters'));
}

/** A registry serving only the fine-tuned adapters (a server given fine-tuning but no registry). */
export function fineTunedRegistry(model: CausalLM, options: FineTuningOptions): AdapterRegistry {
  return new AdapterRegistry(
    model,
    directorySource(fineTunedAdaptersDir(options), { baseModelMismatch: 'warn' }),
  );
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

const limitQuery = { type: 'string', pattern: '^[0-9]{1,6}$' } as const;

const listQuery = {
  type: 'object',
  properties: { after: { type: 'string', maxLength: 128 }, limit: limitQuery },
} as const;

const filesQuery = {
  type: 'object',
  properties: {
    after: { type: 'string', maxLength: 128 },
    limit: limitQuery,
    order: { enum: ['asc', 'desc'] },
    purpose: { type: 'string', maxLength: 64 },
  },
} as const;

const fileParams = {
  type: 'object',
  required: ['file_id'],
  properties: { file_id: { type: 'string', maxLength: 128 } },
} as const;

const jobParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 128 } },
} as const;

const auto = { const: 'auto' } as const;

const hyperparameters = {
  type: 'object',
  properties: {
    n_epochs: { anyOf: [auto, { type: 'integer', minimum: 1, maximum: 1000 }] },
    batch_size: { anyOf: [auto, { type: 'integer', minimum: 1, maximum: 1024 }, { type: 'null' }] },
    learning_rate_multiplier: {
      anyOf: [auto, { type: 'number', exclusiveMinimum: 0, maximum: 1000 }],
    },
  },
} as const;

const jobBody = {
  type: 'object',
  required: ['model', 'training_file'],
  properties: {
    model: { type: 'string', minLength: 1, maxLength: 256 },
    training_file: { type: 'string', minLength: 1, maxLength: 128 },
    validation_file: {
      anyOf: [{ type: 'string', minLength: 1, maxLength: 128 }, { type: 'null' }],
    },
    // Part of the adapter's directory name too: letters, digits, "_" and "-".
    suffix: {
      anyOf: [{ type: 'string', maxLength: 40, pattern: '^[A-Za-z0-9_-]*$' }, { type: 'null' }],
    },
    seed: { anyOf: [{ type: 'integer', minimum: 0, maximum: 2147483647 }, { type: 'null' }] },
    hyperparameters,
    method: {
      type: 'object',
      required: ['type'],
      properties: {
        type: { enum: ['supervised', 'dpo', 'reinforcement'] },
        supervised: { type: 'object', properties: { hyperparameters } },
      },
    },
    metadata: {
      anyOf: [
        {
          type: 'object',
          maxProperties: 16,
          propertyNames: { maxLength: 64 },
          additionalProperties: { type: 'string', maxLength: 512 },
        },
        { type: 'null' },
      ],
    },
    integrations: { anyOf: [{ type: 'array', maxItems: 0 }, { type: 'null' }] },
    // para's extension: the adapter method, its rank, a fixed number of updates, checkpoints.
    para: {
      type: 'object',
      additionalProperties: false,
      properties: {
        peft_type: { enum: ['PARA', 'LORA', 'IA3', 'para', 'lora', 'ia3'] },
        r: { type: 'integer', minimum: 1, maximum: 4096 },
        max_steps: { type: 'integer', minimum: 1, maximum: 1000000 },
        checkpoint_every: { type: 'integer', minimum: 0, maximum: 1000000 },
      },
    },
  },
} as const;

type Hyper = JobRequest['hyperparameters'];

interface JobBody {
  model: string;
  training_file: string;
  validation_file?: string | null;
  suffix?: string | null;
  seed?: number | null;
  hyperparameters?: Hyper & { batch_size?: number | 'auto' | null };
  method?: { type: string; supervised?: { hyperparameters?: Hyper } };
  metadata?: Record<string, string> | null;
  para?: { peft_type?: string; r?: number; max_steps?: number; checkpoint_every?: number };
}

interface ListQuery {
  after?: string;
  limit?: string;
}

function limitOf(q: ListQuery, fallback: number, max: number): number {
  if (q.limit === undefined) return fallback;
  const n = Number(q.limit);
  if (n < 1 || n > max) {
    throw new HttpError(
      400,
      `limit must be between 1 and ${max}`,
      'invalid_request_error',
      'limit',
      'invalid_value',
    );
  }
  return n;
}

const badRequest = (message: string, param: string, code = 'invalid_value') =>
  new HttpError(400, message, 'invalid_request_error', param, code);

// ---------------------------------------------------------------------------------------------

/** Opens the data directory, registers the routes on `app`, and starts queued jobs. */
export async function registerFineTuning(
  app: FastifyInstance,
  ctx: FineTuningContext,
  options: FineTuningOptions,
): Promise<FineTuning> {
  const dataDir = path.resolve(options.dataDir);
  const share = options.servingShare;
  if (share !== undefined && !(typeof share === 'number' && share > 0 && share <= 1)) {
    throw new ParaError('INVALID_ARGUMENT', 'servingShare must be a number in (0, 1]', {
      field: 'servingShare',
      expected: 'a share of time, e.g. 0.25 (1: training never yields to serving)',
      actual: String(share),
    });
  }
  const adaptersDir = fineTunedAdaptersDir(options);
  const maxFileBytes = options.maxFileBytes ?? 32 * 1024 * 1024;
  const files = await FileStore.open(path.join(dataDir, 'files'), { maxBytes: maxFileBytes });
  const jobs = await FineTuningJobs.open({
    dir: path.join(dataDir, 'jobs'),
    adaptersDir,
    files,
    modelName: ctx.modelName,
    modelDir: options.modelDir,
    ...(options.baseModelName === undefined ? {} : { baseModelName: options.baseModelName }),
    backend: options.backend ?? tf.getBackend(),
    ...(options.maxRunningJobs === undefined ? {} : { maxRunning: options.maxRunningJobs }),
    ...(options.workerNice === undefined ? {} : { nice: options.workerNice }),
    ...(options.servingShare === undefined ? {} : { servingShare: options.servingShare }),
    ...(ctx.serving === undefined ? {} : { serving: ctx.serving }),
    ...(options.workerEntry === undefined ? {} : { workerEntry: options.workerEntry }),
    ...(options.evalLimit === undefined ? {} : { evalLimit: options.evalLimit }),
    nameTaken: async (name) =>
      ctx.registry !== null && (await ctx.registry.source.list()).includes(name),
    ...(ctx.log === undefined ? {} : { log: ctx.log }),
  });

  // Uploads: multipart only in this scope (the rest of the server takes JSON bodies).
  await app.register(async (scope) => {
    await scope.register(multipart, {
      limits: { fileSize: maxFileBytes, files: 1, fields: 8, fieldSize: 1024, parts: 10 },
    });
    scope.post('/v1/files', async (request) => {
      if (!request.isMultipart()) {
        throw badRequest(
          'upload the file as multipart/form-data with the fields "file" and "purpose"',
          'file',
          'invalid_content_type',
        );
      }
      let purpose: string | undefined;
      let upload: { filename: string; bytes: Buffer } | undefined;
      for await (const part of request.parts()) {
        if (part.type === 'file') {
          if (part.fieldname !== 'file' || upload !== undefined) {
            part.file.resume();
            throw badRequest('send one file, in the field "file"', 'file');
          }
          upload = { filename: part.filename, bytes: await part.toBuffer() };
        } else if (part.fieldname === 'purpose') {
          purpose = String(part.value);
        }
      }
      if (upload === undefined) throw badRequest('no file: send it in the field "file"', 'file');
      if (purpose === undefined)
        throw badRequest('missing field "purpose" ("fine-tune")', 'purpose');
      const r = await files.create(ctx.ownerOf(request), upload.filename, purpose, upload.bytes);
      return fileObject(r);
    });
  });

  app.get<{ Querystring: ListQuery & { order?: 'asc' | 'desc'; purpose?: string } }>(
    '/v1/files',
    { schema: { querystring: filesQuery } },
    async (request) => {
      const q = request.query;
      return files.list(ctx.ownerOf(request), {
        ...(q.after === undefined ? {} : { after: q.after }),
        limit: limitOf(q, 10000, 10000),
        order: q.order ?? 'desc',
        ...(q.purpose === undefined ? {} : { purpose: q.purpose }),
      });
    },
  );

  app.get<{ Params: { file_id: string } }>(
    '/v1/files/:file_id',
    { schema: { params: fileParams } },
    async (request) => fileObject(files.get(ctx.ownerOf(request), request.params.file_id)),
  );

  app.get<{ Params: { file_id: string } }>(
    '/v1/files/:file_id/content',
    { schema: { params: fileParams } },
    async (request, reply) => {
      const f = files.get(ctx.ownerOf(request), request.params.file_id);
      const bytes = await readFile(files.contentPath(f.id));
      return reply.header('content-type', 'application/octet-stream').send(bytes);
    },
  );

  app.delete<{ Params: { file_id: string } }>(
    '/v1/files/:file_id',
    { schema: { params: fileParams } },
    async (request) => {
      const owner = ctx.ownerOf(request);
      const id = request.params.file_id;
      files.get(owner, id);
      if (jobs.fileInUse(id)) {
        throw badRequest(
          'a fine-tuning job that has not finished reads this file: cancel it or let it finish first',
          'file_id',
          'file_in_use',
        );
      }
      await files.delete(owner, id);
      return { id, object: 'file', deleted: true };
    },
  );

  app.post<{ Body: JobBody }>(
    '/v1/fine_tuning/jobs',
    { schema: { body: jobBody } },
    async (request) => {
      const b = request.body;
      if (!ctx.mayUse(request, b.model)) {
        throw new HttpError(
          403,
          `this key may not use the model ${JSON.stringify(b.model)}`,
          'permission_error',
          'model',
          'model_not_allowed',
        );
      }
      if (b.method !== undefined && b.method.type !== 'supervised') {
        throw badRequest(
          `method ${JSON.stringify(b.method.type)} is not supported: para fine-tunes with "supervised"`,
          'method.type',
          'unsupported',
        );
      }
      const fromMethod = b.method?.supervised?.hyperparameters;
      if (fromMethod !== undefined && b.hyperparameters !== undefined) {
        throw badRequest(
          'give hyperparameters in method.supervised.hyperparameters or in hyperparameters, not both',
          'hyperparameters',
        );
      }
      const h = fromMethod ?? b.hyperparameters;
      const hp: NonNullable<Hyper> = {};
      if (h?.n_epochs !== undefined) hp.n_epochs = h.n_epochs;
      if (h?.batch_size != null) hp.batch_size = h.batch_size;
      if (h?.learning_rate_multiplier !== undefined)
        hp.learning_rate_multiplier = h.learning_rate_multiplier;
      const p = b.para ?? {};
      return jobs.create(ctx.ownerOf(request), {
        model: b.model,
        training_file: b.training_file,
        validation_file: b.validation_file ?? null,
        suffix: b.suffix ?? null,
        seed: b.seed ?? null,
        metadata: b.metadata ?? null,
        hyperparameters: hp,
        ...(p.peft_type === undefined ? {} : { peft_type: p.peft_type.toUpperCase() }),
        ...(p.r === undefined ? {} : { r: p.r }),
        ...(p.max_steps === undefined ? {} : { max_steps: p.max_steps }),
        ...(p.checkpoint_every === undefined ? {} : { checkpoint_every: p.checkpoint_every }),
      });
    },
  );

  app.get<{ Querystring: ListQuery }>(
    '/v1/fine_tuning/jobs',
    { schema: { querystring: listQuery } },
    async (request) => {
      const q = request.query;
      return jobs.list(ctx.ownerOf(request), {
        ...(q.after === undefined ? {} : { after: q.after }),
        limit: limitOf(q, 20, 100),
      });
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/fine_tuning/jobs/:id',
    { schema: { params: jobParams } },
    async (request) => jobs.get(ctx.ownerOf(request), request.params.id),
  );

  app.post<{ Params: { id: string } }>(
    '/v1/fine_tuning/jobs/:id/cancel',
    { schema: { params: jobParams } },
    async (request) => jobs.cancel(ctx.ownerOf(request), request.params.id),
  );

  app.get<{ Params: { id: string }; Querystring: ListQuery }>(
    '/v1/fine_tuning/jobs/:id/events',
    { schema: { params: jobParams, querystring: listQuery } },
    async (request) => {
      const q = request.query;
      return jobs.events(ctx.ownerOf(request), request.params.id, {
        ...(q.after === undefined ? {} : { after: q.after }),
        limit: limitOf(q, 20, 10000),
      });
    },
  );

  app.get<{ Params: { id: string }; Querystring: ListQuery }>(
    '/v1/fine_tuning/jobs/:id/checkpoints',
    { schema: { params: jobParams, querystring: listQuery } },
    async (request) => {
      const q = request.query;
      return jobs.checkpoints(ctx.ownerOf(request), request.params.id, {
        ...(q.after === undefined ? {} : { after: q.after }),
        limit: limitOf(q, 10, 100),
      });
    },
  );

  const notFound = modelNotFound;

  return {
    files,
    jobs,
    resolve(request, name) {
      const m = jobs.modelJob(name);
      if (m === undefined) {
        if (name.startsWith('ft:')) throw notFound(name);
        return null;
      }
      if (
        m.owner !== ctx.ownerOf(request) ||
        m.job.status !== 'succeeded' ||
        m.job.para.model_deleted === true
      )
        throw notFound(name);
      return m.job.para.adapter;
    },
    async deleteModel(request, name) {
      if (jobs.modelJob(name) === undefined) {
        if (name.startsWith('ft:')) throw notFound(name);
        return null;
      }
      const job = await jobs.deleteModel(name, ctx.ownerOf(request));
      if (job === null) throw notFound(name);
      ctx.registry?.unload(job.para.adapter);
      return { id: job.fine_tuned_model as string };
    },
    models(request) {
      return jobs.models(ctx.ownerOf(request)).map((j) => ({
        id: j.fine_tuned_model,
        object: 'model',
        created: j.finished_at,
        owned_by: j.organization_id,
        root: ctx.modelName,
        parent: ctx.modelName,
        peft_type: j.para.peft_type,
        loaded: ctx.registry?.isLoaded(j.para.adapter) ?? false,
        fine_tuning_job: j.id,
      }));
    },
    isJobAdapter: (name) => jobs.isJobAdapter(name),
    close: () => jobs.close(options.stopGraceMs ?? 10_000),
  };
}
