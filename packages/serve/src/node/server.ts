/**
 * The OpenAI-compatible HTTP server (Fastify): one backbone, many tenants.
 *
 *   POST /v1/completions         prompt → text           (stream: server-sent events + [DONE])
 *   POST /v1/chat/completions    messages → reply        (the tokenizer's chat template)
 *   GET  /v1/models              the base model and every adapter (with its peft_type)
 *   POST /v1/adapters            {"name"} loads an adapter of the root now; with
 *                                "adapter_config" (object) and "adapter_model" (base64 of the
 *                                safetensors file) uploads a new one (validated, saved under the
 *                                root atomically, loaded)
 *   DELETE /v1/adapters/{name}   unloads it from memory (its files stay; the next request
 *                                loads it again)
 *   GET  /health                 {"status": "ok", running, waiting}
 *   GET  /metrics                Prometheus text (see metrics.ts)
 *
 * `model` names the base model (`modelName`) or an adapter of the registry, as in vLLM; an
 * `X-Para-Adapter` header (for load balancers that route by adapter) must name the same. Every
 * body is validated by Fastify's JSON-schema support (Ajv, no type coercion); every error is
 * OpenAI's error JSON `{"error": {"message", "type", "param", "code"}}`: 400 bad body or
 * parameter, 401 missing or wrong key (`apiKey`, `keys`), 403 a key not allowed that model (or
 * adapter management without an admin key), 404 unknown model or route, 413 body too
 * large, 429 queue full (Retry-After), 503 shutting down, 504 timed out before the first token;
 * 500 only for a bug. A client that disconnects cancels its request: its row is freed before the
 * next decode step.
 *
 * Defaults as OpenAI's API: temperature 1, top_p 1, max_tokens 16 for completions and "as many
 * as fit" for chat; an omitted seed is drawn at random (pass `seed` for reproducible samples;
 * temperature 0 is greedy). `top_k` is vLLM's extension (-1 or 0: off).
 */

import { randomInt, randomUUID } from 'node:crypto';
import { adapterFromBytes } from '@para/adapters';
import { isParaError, ParaError } from '@para/core';
import type { CausalLM } from '@para/model';
import type { ChatMessage, ParaTokenizer } from '@para/tokenizer';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify';
import {
  type CompletionRequest,
  type CompletionResult,
  Engine,
  type EngineOptions,
  type TokenLogprob,
} from '../engine';
import { isServeError } from '../errors';
import {
  ADAPTER_NAME_PATTERN,
  type AdapterLease,
  type AdapterRegistry,
  checkAdapterName,
} from '../registry';
import {
  DEFAULT_OWNER,
  type FineTuning,
  type FineTuningOptions,
  fineTunedRegistry,
  keyOwner,
  registerFineTuning,
} from './fine-tuning';
import { errorBody, HttpError, modelNotFound } from './http-error';
import { apiKeys, type KeyGrant } from './keys';
import { createMetrics, type ServerMetrics } from './metrics';

export interface ServerOptions {
  model: CausalLM;
  /** The model's tokenizer (default `model.tokenizer`). */
  tokenizer?: ParaTokenizer;
  /** The id of the base model in `model` fields and /v1/models (default "para-base"). */
  modelName?: string;
  /** Tenants' adapters; none: only the base model is served. */
  registry?: AdapterRegistry | null;
  /** The engine, or the options of one the server makes. `close()` closes it either way. */
  engine?: Engine | EngineOptions;
  /** When set, every /v1 request needs `Authorization: Bearer <apiKey>` (or a key of `keys`). */
  apiKey?: string;
  /**
   * Per-tenant keys (see keys.ts, `loadKeysFile`): each key may use only its models (403 for
   * others, and /v1/models lists only those); adapter management needs `admin`. `apiKey` is
   * an admin key for every model.
   */
  keys?: readonly { key: string; grant: KeyGrant }[];
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimit?: number;
  /** Largest POST /v1/adapters body (an upload, base64) in bytes (default 64 MiB). */
  uploadLimit?: number;
  /** How long `close()` lets running requests finish before cancelling them (default 10 s). */
  closeDeadlineMs?: number;
  /**
   * Structured logs (pino, through Fastify's `logger` option): false (default), true, or pino
   * options such as `{ level: 'info', stream: process.stderr }`.
   */
  logger?: FastifyServerOptions['logger'];
  /** GET /metrics in Prometheus' text format (default true; not behind `apiKey`). */
  metrics?: boolean;
  /**
   * OpenAI's Files and fine-tuning API (fine-tuning.ts): uploads, jobs in worker processes, and
   * their adapters served as `ft:…` models. Absent: those routes do not exist.
   */
  fineTuning?: FineTuningOptions;
}

export interface ParaServer {
  app: FastifyInstance;
  engine: Engine;
  registry: AdapterRegistry | null;
  modelName: string;
  /** The Prometheus registry of GET /metrics (null when metrics are off). */
  metrics: ServerMetrics | null;
  /** The files and fine-tuning jobs (null without `fineTuning`). */
  fineTuning: FineTuning | null;
  /** Starts listening (default 127.0.0.1, port 8000; port 0: a free port); returns the base URL. */
  listen(options?: { host?: string; port?: number }): Promise<string>;
  /** Stops admitting, finishes or cancels running requests within the deadline, closes. */
  close(): Promise<void>;
}

/** Maps a typed error (bad input, full queue, …) to its HTTP form; null for a bug. */
function httpErrorOf(e: unknown): HttpError | null {
  if (e instanceof HttpError) return e;
  if (isServeError(e)) {
    if (e.code === 'OVERLOADED')
      return new HttpError(429, e.message, 'rate_limit_error', null, 'overloaded', {
        'retry-after': String(e.retryAfterSeconds ?? 1),
      });
    if (e.code === 'CLOSED') return new HttpError(503, e.message, 'server_error', null, 'closing');
    return new HttpError(504, e.message, 'server_error', null, 'timeout');
  }
  if (isParaError(e)) {
    const p = e as ParaError;
    const param = p.field === undefined ? null : paramOf(p.field);
    if (p.code === 'FILE_NOT_FOUND' && p.field === 'model')
      return new HttpError(404, p.message, 'not_found_error', 'model', 'model_not_found');
    if (p.code === 'BACKEND_UNAVAILABLE' || p.code === 'IO_ERROR') return null;
    const code = p.code === 'UNSUPPORTED' ? 'unsupported' : p.code.toLowerCase();
    return new HttpError(400, p.message, 'invalid_request_error', param, code);
  }
  const f = e as { statusCode?: number; code?: string; message?: string; validation?: unknown };
  if (typeof f?.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) {
    return new HttpError(
      f.statusCode,
      f.message ?? 'bad request',
      'invalid_request_error',
      null,
      f.code ?? null,
    );
  }
  return null;
}

/** The engine's field names → OpenAI's parameter names. */
function paramOf(field: string): string {
  const map: Record<string, string> = {
    prompt: 'prompt',
    maxTokens: 'max_tokens',
    temperature: 'temperature',
    topP: 'top_p',
    topK: 'top_k',
    stop: 'stop',
    n: 'n',
    messages: 'messages',
    logprobs: 'logprobs',
  };
  return map[field] ?? field;
}

// ---------------------------------------------------------------------------------------------
// Schemas (Fastify validates every body with these; additional properties are ignored)
// ---------------------------------------------------------------------------------------------

const stopSchema = {
  anyOf: [
    { type: 'string', minLength: 1 },
    { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 4 },
    { type: 'null' },
  ],
};

const sampling = {
  model: { type: 'string', minLength: 1, maxLength: 256 },
  max_tokens: { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'null' }] },
  temperature: { anyOf: [{ type: 'number', minimum: 0, maximum: 2 }, { type: 'null' }] },
  top_p: {
    anyOf: [{ type: 'number', exclusiveMinimum: 0, maximum: 1 }, { type: 'null' }],
  },
  top_k: { anyOf: [{ type: 'integer', minimum: -1 }, { type: 'null' }] },
  seed: { anyOf: [{ type: 'integer' }, { type: 'null' }] },
  stop: stopSchema,
  n: { anyOf: [{ type: 'integer', minimum: 1, maximum: 128 }, { type: 'null' }] },
  stream: { anyOf: [{ type: 'boolean' }, { type: 'null' }] },
  stream_options: {
    anyOf: [
      {
        type: 'object',
        properties: { include_usage: { type: 'boolean' } },
      },
      { type: 'null' },
    ],
  },
  user: { type: 'string', maxLength: 256 },
  // vLLM's extension: keep decoding past the eos token (benchmarks with a fixed output length).
  ignore_eos: { anyOf: [{ type: 'boolean' }, { type: 'null' }] },
} as const;

const completionBody = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    ...sampling,
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 1 },
        { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 },
      ],
    },
    echo: { anyOf: [{ type: 'boolean', const: false }, { type: 'null' }] },
    logprobs: { anyOf: [{ type: 'integer', minimum: 0, maximum: 20 }, { type: 'null' }] },
    suffix: { type: 'null' },
  },
} as const;

const contentPart = {
  type: 'object',
  required: ['type', 'text'],
  properties: { type: { const: 'text' }, text: { type: 'string' } },
};

const chatBody = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    ...sampling,
    max_completion_tokens: { anyOf: [{ type: 'integer', minimum: 1 }, { type: 'null' }] },
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: 1024,
      items: {
        type: 'object',
        required: ['role', 'content'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant'] },
          content: {
            anyOf: [{ type: 'string' }, { type: 'array', items: contentPart, maxItems: 256 }],
          },
          name: { type: 'string' },
        },
      },
    },
    logprobs: { anyOf: [{ type: 'boolean' }, { type: 'null' }] },
    top_logprobs: { anyOf: [{ type: 'integer', minimum: 0, maximum: 20 }, { type: 'null' }] },
    tools: { anyOf: [{ type: 'array', maxItems: 0 }, { type: 'null' }] },
  },
} as const;

const adapterBody = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 128 },
    adapter_config: { type: 'object' },
    adapter_model: { type: 'string', minLength: 1, contentEncoding: 'base64' },
  },
  dependencies: { adapter_config: ['adapter_model'], adapter_model: ['adapter_config'] },
} as const;

interface AdapterBody {
  name: string;
  adapter_config?: Record<string, unknown>;
  adapter_model?: string;
}

interface SamplingBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  ignore_eos?: boolean | null;
}

interface CompletionBody extends SamplingBody {
  prompt: string | string[] | number[];
  logprobs?: number | null;
}

interface ChatBody extends SamplingBody {
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  messages: { role: string; content: string | { type: 'text'; text: string }[] }[];
}

// ---------------------------------------------------------------------------------------------

function finishReason(r: CompletionResult): 'stop' | 'length' {
  return r.finishReason === 'stop' ? 'stop' : 'length';
}

function usage(r: CompletionResult) {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
  };
}

export async function createServer(options: ServerOptions): Promise<ParaServer> {
  const model = options.model;
  const tokenizer = options.tokenizer ?? model.tokenizer;
  if (tokenizer === undefined || tokenizer === null) {
    throw new Error('createServer needs the model’s tokenizer (options.tokenizer)');
  }
  const tok = tokenizer as ParaTokenizer;
  const modelName = options.modelName ?? 'para-base';
  const registry =
    options.registry ??
    (options.fineTuning === undefined ? null : fineTunedRegistry(model, options.fineTuning));
  const engine =
    options.engine instanceof Engine
      ? options.engine
      : new Engine(model, { tokenizer: tok, ...(options.engine ?? {}) });
  const created = Math.floor(Date.now() / 1000);

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    return503OnClosing: true,
  });

  app.setErrorHandler((error: Error, _request, reply) => {
    const v = (error as { validation?: { instancePath?: string; params?: unknown }[] }).validation;
    if (v !== undefined) {
      const path = v[0]?.instancePath ?? '';
      const param = path.replace(/^\//, '').split('/')[0] || null;
      const missing = (v[0]?.params as { missingProperty?: string } | undefined)?.missingProperty;
      const e = new HttpError(
        400,
        error.message,
        'invalid_request_error',
        missing ?? param,
        'invalid_value',
      );
      return reply.code(400).send(errorBody(e));
    }
    const e =
      httpErrorOf(error) ??
      new HttpError(500, 'internal server error', 'server_error', null, 'internal_error');
    if (e.status === 500) app.log.error(error);
    return reply.code(e.status).headers(e.headers).send(errorBody(e));
  });

  app.setNotFoundHandler((request, reply) => {
    const e = new HttpError(
      404,
      `no route ${request.method} ${request.url}`,
      'not_found_error',
      null,
      'unknown_route',
    );
    return reply.code(404).send(errorBody(e));
  });

  const keys = apiKeys([
    ...(options.apiKey !== undefined && options.apiKey !== ''
      ? [{ key: options.apiKey, grant: { models: '*', admin: true } as KeyGrant }]
      : []),
    ...(options.keys ?? []),
  ]);
  /** The grant of each authenticated request (none when the server has no keys). */
  const grants = new WeakMap<FastifyRequest, KeyGrant>();
  /** The owner of what a request creates (fine-tuning): its key's id. */
  const owners = new WeakMap<FastifyRequest, string>();
  if (keys.size > 0) {
    app.addHook('onRequest', async (request) => {
      if (!request.url.startsWith('/v1/')) return;
      const h = request.headers.authorization;
      const m = typeof h === 'string' ? /^Bearer\s+(.+)$/i.exec(h.trim()) : null;
      const grant = m === null ? null : keys.check(m[1] as string);
      if (grant === null) {
        throw new HttpError(
          401,
          m === null
            ? 'missing API key: send Authorization: Bearer <key>'
            : 'incorrect API key provided',
          'authentication_error',
          null,
          'invalid_api_key',
        );
      }
      grants.set(request, grant);
      owners.set(request, keyOwner(m?.[1] as string));
    });
  }
  const mayUse = (request: FastifyRequest, name: string): boolean => {
    if (keys.size === 0) return true;
    const g = grants.get(request);
    return g !== undefined && (g.models === '*' || g.models.includes(name));
  };
  const requireAdmin = (request: FastifyRequest): void => {
    if (keys.size > 0 && grants.get(request)?.admin !== true) {
      throw new HttpError(
        403,
        'managing adapters needs an admin key',
        'permission_error',
        null,
        'admin_required',
      );
    }
  };

  const fineTuning =
    options.fineTuning === undefined
      ? null
      : await registerFineTuning(
          app,
          {
            modelName,
            registry,
            ownerOf: (request) =>
              keys.size === 0 ? DEFAULT_OWNER : (owners.get(request) ?? DEFAULT_OWNER),
            mayUse,
            serving: () => {
              const s = engine.stats();
              return s.running + s.waiting > 0;
            },
            log: (level, message) => app.log[level](message),
          },
          options.fineTuning,
        );

  app.get('/health', async () => ({ status: 'ok', ...engine.stats() }));

  const metrics =
    options.metrics === false
      ? null
      : createMetrics(
          engine,
          registry,
          fineTuning === null ? undefined : () => fineTuning.jobs.statusCounts(),
        );
  if (metrics !== null) {
    app.get('/metrics', async (_request, reply) => {
      const text = await metrics.register.metrics();
      return reply.header('content-type', metrics.register.contentType).send(text);
    });
  }

  /** The models the request's key may use: the base model, the adapters, its fine-tuned models. */
  async function modelList(request: FastifyRequest): Promise<Record<string, unknown>[]> {
    const data: Record<string, unknown>[] = [
      {
        id: modelName,
        object: 'model',
        created,
        owned_by: 'para',
        root: modelName,
        parent: null,
        peft_type: null,
        max_model_len: engine.maxLen,
      },
    ];
    for (const a of registry === null ? [] : await registry.list()) {
      if (a.name === modelName || fineTuning?.isJobAdapter(a.name) || !mayUse(request, a.name))
        continue;
      data.push({
        id: a.name,
        object: 'model',
        created,
        owned_by: 'para',
        root: modelName,
        parent: modelName,
        peft_type: a.peftType,
        loaded: a.loaded,
      });
    }
    if (fineTuning !== null) data.push(...fineTuning.models(request));
    return mayUse(request, modelName) ? data : data.slice(1);
  }
  const modelParam = {
    type: 'object',
    properties: { model: { type: 'string', minLength: 1, maxLength: 256 } },
    required: ['model'],
  } as const;

  app.get('/v1/models', async (request) => ({ object: 'list', data: await modelList(request) }));

  // OpenAI's "retrieve model": one entry of the list above, 404 for any other name.
  app.get<{ Params: { model: string } }>(
    '/v1/models/:model',
    { schema: { params: modelParam } },
    async (request) => {
      const name = request.params.model;
      const found = (await modelList(request)).find((m) => m.id === name);
      if (found === undefined) throw modelNotFound(name);
      return found;
    },
  );

  // OpenAI's "delete a fine-tuned model": only the key that owns it. The base model and the
  // adapters root's adapters are not deleted this way (adapters: DELETE /v1/adapters/{name}).
  app.delete<{ Params: { model: string } }>(
    '/v1/models/:model',
    { schema: { params: modelParam } },
    async (request) => {
      const name = request.params.model;
      const deleted = fineTuning === null ? null : await fineTuning.deleteModel(request, name);
      if (deleted !== null) return { id: deleted.id, object: 'model', deleted: true };
      if ((await modelList(request)).some((m) => m.id === name)) {
        throw new HttpError(
          403,
          name === modelName
            ? 'the base model cannot be deleted'
            : `${JSON.stringify(name)} is not a fine-tuned model of this key (an adapter of the adapters root is unloaded with DELETE /v1/adapters/{name})`,
          'permission_error',
          'model',
          'model_not_deletable',
        );
      }
      throw modelNotFound(name);
    },
  );

  const noRegistry = () =>
    new HttpError(
      404,
      'this server has no adapters root (start it with one to manage adapters)',
      'not_found_error',
      null,
      'no_adapters',
    );
  const adapterJson = (a: { name: string; peftType: string | null; bytes: number }) => ({
    id: a.name,
    object: 'model',
    created,
    owned_by: 'para',
    root: modelName,
    parent: modelName,
    peft_type: a.peftType,
    loaded: true,
    bytes: a.bytes,
  });

  app.post<{ Body: AdapterBody }>(
    '/v1/adapters',
    { schema: { body: adapterBody }, bodyLimit: options.uploadLimit ?? 64 * 1024 * 1024 },
    async (request) => {
      requireAdmin(request);
      if (registry === null) throw noRegistry();
      const b = request.body;
      checkAdapterName(b.name, 'name');
      if (b.name === modelName)
        throw new ParaError('INVALID_ARGUMENT', 'that is the base model’s name', { field: 'name' });
      if (b.adapter_config === undefined) return adapterJson(await registry.load(b.name));
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b.adapter_model as string)) {
        throw new ParaError('INVALID_ARGUMENT', 'adapter_model must be base64', {
          field: 'adapter_model',
          expected: 'the base64 of adapter_model.safetensors',
        });
      }
      const weights = Buffer.from(b.adapter_model as string, 'base64');
      const adapter = await adapterFromBytes(JSON.stringify(b.adapter_config), weights, model, {
        name: b.name,
        baseModelMismatch: 'warn',
        warn: (m) => request.log.warn(m),
      });
      try {
        return adapterJson(await registry.install(b.name, adapter));
      } catch (e) {
        adapter.dispose();
        throw e;
      }
    },
  );

  app.delete<{ Params: { name: string } }>('/v1/adapters/:name', async (request) => {
    requireAdmin(request);
    if (registry === null) throw noRegistry();
    const name = checkAdapterName(request.params.name, 'name');
    const known = registry.isLoaded(name) || (await registry.source.list()).includes(name);
    if (!known || !ADAPTER_NAME_PATTERN.test(name)) {
      throw new HttpError(
        404,
        `no adapter named ${JSON.stringify(name)}`,
        'not_found_error',
        'name',
        'model_not_found',
      );
    }
    const unloaded = registry.unload(name);
    return { id: name, object: 'model', unloaded, loaded: false };
  });

  /** The lease of the named tenant's adapter (null lease: the base model). */
  async function tenant(request: FastifyRequest, name: string): Promise<AdapterLease | null> {
    // A fine-tuned model: its owner's only, whatever the keys file grants (fine-tuning.ts).
    const fineTuned = fineTuning?.resolve(request, name) ?? null;
    if (fineTuned !== null) return (registry as AdapterRegistry).acquire(fineTuned);
    if (!mayUse(request, name)) {
      throw new HttpError(
        403,
        `this key may not use the model ${JSON.stringify(name)}`,
        'permission_error',
        'model',
        'model_not_allowed',
      );
    }
    if (name === modelName) return null;
    checkAdapterName(name, 'model');
    if (registry === null) throw modelNotFound(name);
    return registry.acquire(name);
  }

  const stopIds = new Set(model.config.eosTokenIds);
  if (tok.eosTokenId !== undefined) stopIds.add(tok.eosTokenId);
  const piece = (id: number) => tok.decode([id], { skipSpecialTokens: false });
  /** The tokens the text shows (a final stop token is not part of it). */
  const shown = (r: CompletionResult) => {
    const l = r.logprobs ?? [];
    const last = l[l.length - 1];
    return r.finishReason === 'stop' && last !== undefined && stopIds.has(last.token)
      ? l.slice(0, -1)
      : l;
  };
  /** Completions' logprobs object for these tokens; `start`: the text offset of the first. */
  const completionLogprobs = (l: readonly TokenLogprob[], start = 0) => {
    const tokens = l.map((t) => piece(t.token));
    const offsets: number[] = [];
    let at = start;
    for (const t of tokens) {
      offsets.push(at);
      at += t.length;
    }
    return {
      tokens,
      token_logprobs: l.map((t) => t.logprob),
      top_logprobs: l.map((t) => Object.fromEntries(t.top.map((x) => [piece(x.token), x.logprob]))),
      text_offset: offsets,
    };
  };
  const bytesOf = (text: string) => [...Buffer.from(text, 'utf8')];
  /** Chat's logprobs object for these tokens. */
  const chatLogprobs = (l: readonly TokenLogprob[]) => ({
    content: l.map((t) => {
      const s = piece(t.token);
      return {
        token: s,
        logprob: t.logprob,
        bytes: bytesOf(s),
        top_logprobs: t.top.map((x) => {
          const xs = piece(x.token);
          return { token: xs, logprob: x.logprob, bytes: bytesOf(xs) };
        }),
      };
    }),
    refusal: null,
  });

  function samplingOf(b: SamplingBody): Omit<CompletionRequest, 'prompt'> {
    return {
      ...(b.max_tokens != null ? { maxTokens: b.max_tokens } : {}),
      temperature: b.temperature ?? 1,
      topP: b.top_p ?? 1,
      topK: b.top_k == null || b.top_k < 0 ? 0 : b.top_k,
      seed: b.seed ?? randomInt(2 ** 31),
      ...(b.stop != null ? { stop: b.stop } : {}),
      ...(b.n != null ? { n: b.n } : {}),
      ...(b.ignore_eos === true ? { stopTokens: [] } : {}),
    };
  }

  /**
   * Runs one request: acquires the tenant, submits (errors before any byte is sent become
   * error JSON), streams or answers, and cancels the request if the client goes away.
   */
  async function serve(
    request: FastifyRequest,
    reply: FastifyReply,
    body: SamplingBody,
    prompt: number[],
    extra: Omit<CompletionRequest, 'prompt'>,
    shape: {
      object: string;
      chunkObject: string;
      prefix: string;
      full: (text: string, r: CompletionResult) => Record<string, unknown>;
      /** One streamed piece, with its tokens' logprobs when the request asked for them. */
      delta: (
        piece: string,
        logprobs: readonly TokenLogprob[] | undefined,
      ) => Record<string, unknown>;
      first?: Record<string, unknown>;
      last: (r: CompletionResult) => Record<string, unknown>;
    },
  ): Promise<unknown> {
    const endpoint = shape.prefix === 'cmpl' ? 'completions' : 'chat';
    const stream = body.stream === true;
    // A load balancer may route by this header (the body is opaque to it): it must agree.
    const routed = request.headers['x-para-adapter'];
    if (routed !== undefined && routed !== body.model) {
      throw new HttpError(
        400,
        `X-Para-Adapter names ${JSON.stringify(String(routed))} but the body's model is ${JSON.stringify(body.model)}`,
        'invalid_request_error',
        'model',
        'adapter_header_mismatch',
      );
    }
    const lease = await tenant(request, body.model);
    const m = metrics?.begin(endpoint);
    const log = (r: CompletionResult | null, e?: unknown) => {
      const outcome = r === null ? 'error' : r.finishReason;
      m?.end(outcome, prompt.length, r?.completionTokens ?? 0);
      request.log.info(
        {
          model: body.model,
          endpoint,
          stream,
          promptTokens: prompt.length,
          completionTokens: r?.completionTokens ?? 0,
          outcome,
          ...(e === undefined ? {} : { error: (e as Error)?.message ?? String(e) }),
        },
        'completion',
      );
    };
    const abort = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) abort.abort();
    };
    reply.raw.on('close', onClose);
    const id = `${shape.prefix}-${randomUUID().replace(/-/g, '')}`;
    const createdAt = Math.floor(Date.now() / 1000);
    // Keys in OpenAI's order: id, object, created, model, choices, usage.
    const head = (object: string) => ({ id, object, created: createdAt, model: body.model });
    const startStream = () => {
      reply.hijack();
      reply.raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
    };
    const send = (chunk: Record<string, unknown>) => {
      if (!reply.raw.destroyed)
        reply.raw.write(`data: ${JSON.stringify({ ...head(shape.chunkObject), ...chunk })}\n\n`);
    };
    try {
      let handle: ReturnType<Engine['submit']>;
      try {
        handle = engine.submit({
          ...samplingOf(body),
          ...extra,
          prompt,
          adapter: lease?.adapter ?? null,
          signal: abort.signal,
          onToken: () => m?.token(),
          ...(stream
            ? {
                onText: (piece: string, logprobs?: TokenLogprob[]) =>
                  send(shape.delta(piece, logprobs)),
              }
            : {}),
        });
      } catch (e) {
        log(null, e); // refused at once: bad parameter, queue full, closing
        throw e;
      }
      if (stream) {
        // Admitted: the headers (and chat's role chunk) go out at once. Text pieces are written
        // by onText as they decode (synchronously in the engine's loop, after this point).
        startStream();
        if (shape.first !== undefined) send(shape.first);
        let result: CompletionResult;
        try {
          result = await handle.result;
        } catch (e) {
          log(null, e);
          const err = httpErrorOf(e) ?? new HttpError(500, 'internal error', 'server_error');
          send(errorBody(err));
          reply.raw.end('data: [DONE]\n\n');
          return reply;
        }
        log(result);
        send(shape.last(result));
        if (body.stream_options?.include_usage) send({ choices: [], usage: usage(result) });
        reply.raw.end('data: [DONE]\n\n');
        return reply;
      }
      let result: CompletionResult;
      try {
        result = await handle.result;
      } catch (e) {
        log(null, e);
        throw e;
      }
      log(result);
      return reply.send({ ...head(shape.object), ...shape.full(result.text, result) });
    } finally {
      reply.raw.off('close', onClose);
      lease?.release();
    }
  }

  app.post<{ Body: CompletionBody }>(
    '/v1/completions',
    { schema: { body: completionBody } },
    async (request, reply) => {
      const b = request.body;
      const p = b.prompt;
      const prompt =
        typeof p === 'string'
          ? tok.encode(p)
          : typeof p[0] === 'string'
            ? tok.encode(p[0] as string)
            : (p as number[]);
      if (prompt.length === 0) {
        throw new HttpError(
          400,
          'the prompt encodes to no tokens',
          'invalid_request_error',
          'prompt',
          'invalid_value',
        );
      }
      const extra = {
        ...(b.max_tokens == null ? { maxTokens: 16 } : {}),
        ...(b.logprobs != null ? { logprobs: b.logprobs } : {}),
      };
      let offset = 0; // text offset of the next streamed piece
      return serve(request, reply, b, prompt, extra, {
        object: 'text_completion',
        chunkObject: 'text_completion',
        prefix: 'cmpl',
        full: (text, r) => ({
          choices: [
            {
              index: 0,
              text,
              logprobs: r.logprobs === undefined ? null : completionLogprobs(shown(r)),
              finish_reason: finishReason(r),
            },
          ],
          usage: usage(r),
        }),
        delta: (piece, l) => {
          const logprobs = l === undefined ? null : completionLogprobs(l, offset);
          offset += piece.length;
          return { choices: [{ index: 0, text: piece, logprobs, finish_reason: null }] };
        },
        last: (r) => ({
          choices: [{ index: 0, text: '', logprobs: null, finish_reason: finishReason(r) }],
        }),
      });
    },
  );

  app.post<{ Body: ChatBody }>(
    '/v1/chat/completions',
    { schema: { body: chatBody } },
    async (request, reply) => {
      const b = request.body;
      const messages: ChatMessage[] = b.messages.map((m) => ({
        role: m.role === 'developer' ? 'system' : m.role,
        content: typeof m.content === 'string' ? m.content : m.content.map((c) => c.text).join(''),
      }));
      const prompt = tok.applyChatTemplate(messages, {
        addGenerationPrompt: true,
        tokenize: true,
      }) as number[];
      const maxTokens = b.max_completion_tokens ?? b.max_tokens;
      if (b.top_logprobs != null && b.logprobs !== true) {
        throw new ParaError('INVALID_ARGUMENT', 'top_logprobs needs logprobs: true', {
          field: 'top_logprobs',
        });
      }
      const extra = {
        ...(maxTokens == null ? {} : { maxTokens }),
        ...(b.logprobs === true ? { logprobs: b.top_logprobs ?? 0 } : {}),
      };
      return serve(request, reply, b, prompt, extra, {
        object: 'chat.completion',
        chunkObject: 'chat.completion.chunk',
        prefix: 'chatcmpl',
        full: (text, r) => ({
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: text },
              logprobs: r.logprobs === undefined ? null : chatLogprobs(shown(r)),
              finish_reason: finishReason(r),
            },
          ],
          usage: usage(r),
        }),
        first: {
          choices: [
            {
              index: 0,
              delta: { role: 'assistant', content: '' },
              logprobs: null,
              finish_reason: null,
            },
          ],
        },
        delta: (piece, l) => ({
          choices: [
            {
              index: 0,
              delta: { content: piece },
              logprobs: l === undefined ? null : chatLogprobs(l),
              finish_reason: null,
            },
          ],
        }),
        last: (r) => ({
          choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason(r) }],
        }),
      });
    },
  );

  let closing: Promise<void> | null = null;
  return {
    app,
    engine,
    registry,
    modelName,
    metrics,
    fineTuning,
    async listen(o = {}) {
      return app.listen({ host: o.host ?? '127.0.0.1', port: o.port ?? 8000 });
    },
    close() {
      closing ??= (async () => {
        const deadlineMs = options.closeDeadlineMs ?? 10_000;
        // The engine stops admitting (503) and finishes or cancels what runs; Fastify stops
        // accepting connections and waits for the in-flight handlers, which end with them.
        await Promise.all([engine.close({ deadlineMs }), app.close(), fineTuning?.close()]);
      })();
      return closing;
    },
  };
}
