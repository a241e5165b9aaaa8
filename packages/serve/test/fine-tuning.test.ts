/**
 * OpenAI's Files and fine-tuning API on the server, with the real `openai` client: a tenant
 * uploads a slice of a bundled task, fine-tunes a PARA adapter in a worker process, and calls
 * `fine_tuned_model` on the same server — greedy text identical to the library's `generate` with
 * the saved adapter (what `para generate --adapter` prints), and the adapter directory a valid
 * PEFT-layout PARA adapter. Also: a bad file (400 naming the line), a job that cannot train
 * (failed, with the reason), the running-job limit (queued), cancelling a running job (its
 * process ends), per-key isolation (404), and a server restart on the same data directory
 * (finished models still serve, the running job resumes from its checkpoint).
 *
 * The worker script is the built dist/fine-tune-worker.js (turbo builds before testing; by
 * hand: `pnpm --filter @para/serve build`).
 */

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import { join } from 'node:path';
import type { AnyAdapter } from '@para/adapters';
import { loadAdapter } from '@para/adapters/node';
import type { CausalLM } from '@para/model';
import type { ParaTokenizer } from '@para/tokenizer';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdapterRegistry,
  createServer,
  directorySource,
  type FineTuningJob,
  type ParaServer,
  unionSource,
} from '../src/node';
import { ADAPTERS, BACKBONE, backbone, REPO, startBackend } from './helpers';

const KEY_A = 'sk-tenant-a-0001';
const KEY_B = 'sk-tenant-b-0002';
const MODEL = 'backbone';
const TASK = readFileSync(join(REPO, 'data', 'tasks', 'pos', 'train.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '');
const SLICE = `${TASK.slice(0, 32).join('\n')}\n`;

let model: CausalLM;
let tok: ParaTokenizer;
let data: string;
let server: ParaServer | null = null;
let url: string;
let a: OpenAI;
let b: OpenAI;
const servers: ParaServer[] = [];
const loaded: AnyAdapter[] = [];

/**
 * `workerNice`: the jobs' OS priority. The tests train at the server's own priority (0) unless
 * they check the default (10): under a loaded CI machine (turbo runs several packages' tests at
 * once) a niced worker gets a small share of the CPU and a few steps can take minutes.
 */
async function start(options: { workerNice?: number } = { workerNice: 0 }): Promise<void> {
  const registry = new AdapterRegistry(
    model,
    unionSource([
      directorySource(ADAPTERS),
      directorySource(join(data, 'adapters'), { baseModelMismatch: 'warn' }),
    ]),
  );
  server = await createServer({
    model,
    tokenizer: tok,
    modelName: MODEL,
    registry,
    engine: { maxBatch: 4, maxLen: 128 },
    keys: [
      { key: KEY_A, grant: { models: [MODEL], admin: false } },
      // "*" grants every model of the adapters root — never another tenant's fine-tuned one.
      { key: KEY_B, grant: { models: '*', admin: false } },
    ],
    fineTuning: {
      dataDir: data,
      modelDir: BACKBONE,
      stopGraceMs: 60_000,
      ...(options.workerNice === undefined ? {} : { workerNice: options.workerNice }),
    },
  });
  servers.push(server);
  url = await server.listen({ port: 0 });
  const opts = { baseURL: `${url}/v1`, maxRetries: 0, timeout: 120_000 };
  a = new OpenAI({ ...opts, apiKey: KEY_A });
  b = new OpenAI({ ...opts, apiKey: KEY_B });
}

async function stop(): Promise<void> {
  const s = server;
  server = null;
  await s?.close();
  s?.registry?.dispose();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls the job until `done(job)` (or fails after `ms`). */
async function until(
  client: OpenAI,
  id: string,
  done: (j: FineTuningJob) => boolean,
  ms = 600_000,
): Promise<FineTuningJob> {
  const t0 = Date.now();
  for (;;) {
    const j = (await client.fineTuning.jobs.retrieve(id)) as unknown as FineTuningJob;
    if (done(j)) return j;
    if (Date.now() - t0 > ms)
      throw new Error(`job ${id} is still ${j.status} after ${ms} ms: ${JSON.stringify(j.error)}`);
    await sleep(250);
  }
}

const finished = (j: FineTuningJob) => ['succeeded', 'failed', 'cancelled'].includes(j.status);

async function allEvents(client: OpenAI, id: string) {
  const out: OpenAI.FineTuning.Jobs.FineTuningJobEvent[] = [];
  for await (const e of client.fineTuning.jobs.listEvents(id, { limit: 50 })) out.push(e);
  return out;
}

async function upload(client: OpenAI, text: string, name = 'pos.jsonl') {
  return client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'fine-tune' });
}

/** A job with para's extension (the openai client passes unknown keys through). */
async function createJob(
  client: OpenAI,
  file: string,
  extra: Record<string, unknown>,
): Promise<FineTuningJob> {
  return (await client.fineTuning.jobs.create({
    model: MODEL,
    training_file: file,
    seed: 7,
    method: {
      type: 'supervised',
      supervised: { hyperparameters: { batch_size: 8, learning_rate_multiplier: 3 } },
    },
    ...extra,
  } as OpenAI.FineTuning.JobCreateParams)) as unknown as FineTuningJob;
}

/** The library's greedy text with the job's saved adapter (what `para generate --adapter` prints). */
async function reference(
  dir: string,
  input: string | { role: string; content: string }[],
  n: number,
) {
  const adapter = await loadAdapter(dir, model, { baseModelMismatch: 'warn', warn: () => {} });
  loaded.push(adapter);
  return model.generate(input as string, {
    maxNewTokens: n,
    adapter: adapter.attach(model),
    request: {},
  });
}

async function get(path: string, key: string) {
  const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${key}` } });
  return {
    status: res.status,
    json: (await res.json()) as Record<string, Record<string, unknown>>,
  };
}

beforeAll(async () => {
  await startBackend();
  ({ model, tokenizer: tok } = await backbone());
  data = await mkdtemp(join(os.tmpdir(), 'para-ft-'));
  await start();
});

afterAll(async () => {
  for (const s of servers) {
    await s.close().catch(() => undefined);
    s.registry?.dispose();
  }
  for (const x of loaded) x.dispose();
  model?.dispose();
  if (data !== undefined) await rm(data, { recursive: true, force: true });
});

let fileId = '';
let done: FineTuningJob;
const PROMPT = 'Part of speech of bewail:';
let wantText = '';

describe('files', () => {
  it('uploads a JSONL slice of a bundled task; list, retrieve and content show OpenAI’s file object', async () => {
    const f = await upload(a, SLICE);
    fileId = f.id;
    expect(f).toMatchObject({
      object: 'file',
      bytes: Buffer.byteLength(SLICE),
      filename: 'pos.jsonl',
      purpose: 'fine-tune',
      status: 'processed',
    });
    expect(f.id).toMatch(/^file-[0-9a-f]{24}$/);
    expect(typeof f.created_at).toBe('number');
    expect((await a.files.retrieve(f.id)).id).toBe(f.id);
    const list = [];
    for await (const x of a.files.list()) list.push(x.id);
    expect(list).toEqual([f.id]);
    expect(await (await a.files.content(f.id)).text()).toBe(SLICE);
  });

  it('refuses a bad file with a 400 naming its first bad line', async () => {
    const bad = `${TASK.slice(0, 2).join('\n')}\n{"prompt": "Part of speech of x:"}\n${TASK[3]}\n`;
    const e = await upload(a, bad, 'bad.jsonl').catch((x) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect(e.status).toBe(400);
    expect(e.error).toMatchObject({
      type: 'invalid_request_error',
      param: 'file',
      code: 'invalid_file_format',
    });
    expect(e.error.message).toContain('bad.jsonl:3');
    expect(e.error.message).toContain('completion');
    const notJson = await upload(a, `${TASK[0]}\n{oops\n`, 'x.jsonl').catch((x) => x);
    expect(notJson.status).toBe(400);
    expect(notJson.error.message).toContain('x.jsonl:2');
    const purpose = await a.files
      .create({ file: await toFile(Buffer.from(SLICE), 'p.jsonl'), purpose: 'batch' })
      .catch((x) => x);
    expect(purpose.status).toBe(400);
    expect(purpose.error.param).toBe('purpose');
    const list = [];
    for await (const x of a.files.list()) list.push(x.id);
    expect(list).toEqual([fileId]); // nothing stored
  });
});

describe('fine-tuning jobs', () => {
  it('trains a PARA adapter to succeeded; events, checkpoints; fine_tuned_model serves the saved adapter’s greedy text', async () => {
    const created = await createJob(a, fileId, {
      suffix: 'pos',
      para: { max_steps: 12, checkpoint_every: 4 },
    });
    expect(created).toMatchObject({
      object: 'fine_tuning.job',
      model: MODEL,
      training_file: fileId,
      validation_file: null,
      fine_tuned_model: null,
      seed: 7,
      hyperparameters: { batch_size: 8, learning_rate_multiplier: 3, n_epochs: 3 },
      para: { peft_type: 'PARA', r: 8, max_steps: 12 },
    });
    expect(['queued', 'running']).toContain(created.status);
    expect(created.id).toMatch(/^ftjob-[0-9a-f]{24}$/);
    done = await until(a, created.id, finished);
    expect(done.error).toBeNull();
    expect(done.status).toBe('succeeded');
    expect(done.fine_tuned_model).toBe(`ft:${MODEL}:pos:${created.id.slice(6, 14)}`);
    expect(done.trained_tokens).toBeGreaterThan(0);
    expect(done.finished_at).toBeGreaterThanOrEqual(done.created_at);
    expect(done.para).toMatchObject({
      step: 12,
      total_steps: 12,
      adapter: `ft-pos-${created.id.slice(6, 14)}`,
    });

    const events = await allEvents(a, created.id);
    const steps = events
      .filter((e) => e.type === 'metrics')
      .map((e) => e.data as { step: number; train_loss: number });
    expect(steps.map((s) => s.step).sort((x, y) => x - y)).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ]);
    for (const s of steps) expect(Number.isFinite(s.train_loss)).toBe(true);
    const messages = events.map((e) => e.message);
    expect(messages).toContain('Fine-tuning job started');
    expect(messages).toContain('The job has successfully completed');
    expect(messages[0]).toBe('The job has successfully completed'); // newest first
    const ckpts = [];
    for await (const c of a.fineTuning.jobs.checkpoints.list(created.id)) ckpts.push(c.step_number);
    expect(ckpts).toEqual([8, 4]);

    // The adapter directory: PEFT layout, PARA, loadable.
    const dir = join(data, 'adapters', done.para.adapter);
    const config = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8'));
    expect(config.peft_type).toBe('PARA');
    expect(config.r).toBe(8);
    const ft = done.fine_tuned_model as string;

    wantText = await reference(dir, PROMPT, 4);
    expect(wantText.trim()).not.toBe(''); // a real answer, not an immediate end of text
    const r = await a.completions.create({
      model: ft,
      prompt: PROMPT,
      max_tokens: 4,
      temperature: 0,
    });
    expect(r.choices[0]?.text).toBe(wantText);
    const messagesIn = [{ role: 'user' as const, content: 'Part of speech of gaily?' }];
    const wantChat = await reference(dir, messagesIn, 6);
    const c = await a.chat.completions.create({
      model: ft,
      messages: messagesIn,
      max_tokens: 6,
      temperature: 0,
    });
    expect(c.choices[0]?.message.content).toBe(wantChat);
    // Streamed too.
    let text = '';
    for await (const chunk of await a.completions.create({
      model: ft,
      prompt: PROMPT,
      max_tokens: 4,
      temperature: 0,
      stream: true,
    }))
      text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(wantText);

    const ids = (await a.models.list()).data.map((m) => m.id);
    expect(ids).toContain(ft);
    expect(ids).not.toContain(done.para.adapter);
  });

  it('a job trained while requests are being served yields between its updates (and still succeeds)', async () => {
    const f = await upload(a, `${TASK.slice(0, 16).join('\n')}\n`, 'yield.jsonl');
    let serving = true;
    let served = 0;
    const traffic = (async () => {
      while (serving) {
        await a.completions.create({
          model: MODEL,
          prompt: PROMPT,
          max_tokens: 100,
          temperature: 0,
          ignore_eos: true,
        } as OpenAI.CompletionCreateParamsNonStreaming);
        served++;
      }
    })();
    try {
      const job = await createJob(a, f.id, { suffix: 'yield', para: { max_steps: 4 } });
      const end = await until(a, job.id, finished);
      expect(end.status, JSON.stringify(end.error)).toBe('succeeded');
      const completed = (await allEvents(a, job.id)).find(
        (e) => e.message === 'The job has successfully completed',
      );
      // Requests ran throughout, so the worker paused after at least one of its updates.
      expect(
        (completed?.data as { serving_pauses?: number } | undefined)?.serving_pauses,
      ).toBeGreaterThan(0);
    } finally {
      serving = false;
      await traffic;
    }
    expect(served).toBeGreaterThan(0);
  });

  it('isolates tenants: another key gets 404 for the file, the job and the model, and does not see them listed', async () => {
    const ft = done.fine_tuned_model as string;
    for (const p of [
      `/v1/files/${fileId}`,
      `/v1/fine_tuning/jobs/${done.id}`,
      `/v1/fine_tuning/jobs/${done.id}/events`,
    ]) {
      const r = await get(p, KEY_B);
      expect(r.status, p).toBe(404);
      expect(Object.keys(r.json.error ?? {}).sort()).toEqual(['code', 'message', 'param', 'type']);
    }
    const call = await b.completions
      .create({ model: ft, prompt: PROMPT, max_tokens: 2 })
      .catch((x) => x);
    expect(call.status).toBe(404);
    expect(call.error.code).toBe('model_not_found');
    // Nor by the adapter's directory name.
    const byDir = await b.completions
      .create({ model: done.para.adapter, prompt: PROMPT, max_tokens: 2 })
      .catch((x) => x);
    expect(byDir.status).toBe(404);
    const ids = (await b.models.list()).data.map((m) => m.id);
    expect(ids).not.toContain(ft);
    expect(ids).not.toContain(done.para.adapter);
    expect(ids).toContain('pos'); // its own grant still works
    const files = [];
    for await (const x of b.files.list()) files.push(x.id);
    expect(files).toEqual([]);
    const jobs = [];
    for await (const x of b.fineTuning.jobs.list()) jobs.push(x.id);
    expect(jobs).toEqual([]);
    const del = await b.files.delete(fileId).catch((x) => x);
    expect(del.status).toBe(404);
    const cancel = await b.fineTuning.jobs.cancel(done.id).catch((x) => x);
    expect(cancel.status).toBe(404);
    // B may not train on A's file.
    const steal = await createJob(b, fileId, {}).catch((x) => x);
    expect(steal.status).toBe(400);
    expect(steal.error.param).toBe('training_file');
  });

  it('fails a job whose examples cannot train, with the reason', async () => {
    const long = `${'word '.repeat(400)}:`;
    const f = await upload(
      a,
      `${JSON.stringify({ prompt: long, completion: ' noun' })}\n`,
      'long.jsonl',
    );
    const j = await createJob(a, f.id, { para: { max_steps: 2 } });
    const end = await until(a, j.id, finished);
    expect(end.status).toBe('failed');
    expect(end.error).toMatchObject({ param: 'training_file', code: 'invalid_training_file' });
    expect(end.error?.message).toContain('context');
    expect(end.error?.message).not.toContain(data); // no server paths
    expect(end.fine_tuned_model).toBeNull();
  });

  it('runs one job at a time (the next, a LoRA one, is queued) at lowered OS priority; cancelling a running job ends its process', async () => {
    // The default priority (nice 10) this time.
    await stop();
    await start({});
    const long = await createJob(a, fileId, { para: { max_steps: 5000, checkpoint_every: 0 } });
    const dev = await upload(a, `${TASK.slice(32, 48).join('\n')}\n`, 'dev.jsonl');
    const next = await createJob(a, fileId, {
      validation_file: dev.id,
      suffix: 'second',
      para: { peft_type: 'LORA', r: 4, max_steps: 3 },
    });
    await until(a, long.id, (j) => j.status === 'running' && j.para.step >= 1);
    expect((await a.fineTuning.jobs.retrieve(next.id)).status).toBe('queued');
    const pids = server?.fineTuning?.jobs.workerPids() ?? [];
    expect(pids).toHaveLength(1);
    const pid = pids[0] as number;
    expect(os.getPriority(pid)).toBe(Math.max(10, os.getPriority()));
    const inUse = await a.files.delete(fileId).catch((x) => x);
    expect(inUse.status).toBe(400);
    expect(inUse.error.code).toBe('file_in_use');
    const c = await a.fineTuning.jobs.cancel(long.id);
    expect(c.status).toBe('cancelled');
    expect(() => process.kill(pid, 0)).toThrow(); // gone
    const again = await a.fineTuning.jobs.cancel(long.id).catch((x) => x);
    expect(again.status).toBe(400);
    const second = await until(a, next.id, finished);
    expect(second.status).toBe('succeeded');
    expect(second.validation_file).toBe(dev.id);
    const evals = (await allEvents(a, next.id))
      .map((e) => e.data as { valid_loss?: number; valid_exact_match?: number })
      .filter((d) => d.valid_loss !== undefined);
    expect(evals.length).toBeGreaterThan(0);
    for (const d of evals) {
      expect(Number.isFinite(d.valid_loss)).toBe(true);
      expect(d.valid_exact_match).toBeGreaterThanOrEqual(0);
    }
    // para's extension chose LoRA: a PEFT LoRA adapter, served with its own greedy text.
    const loraDir = join(data, 'adapters', second.para.adapter);
    expect(JSON.parse(await readFile(join(loraDir, 'adapter_config.json'), 'utf8'))).toMatchObject({
      peft_type: 'LORA',
      r: 4,
    });
    const lr = await a.completions.create({
      model: second.fine_tuned_model as string,
      prompt: PROMPT,
      max_tokens: 4,
      temperature: 0,
    });
    expect(lr.choices[0]?.text).toBe(await reference(loraDir, PROMPT, 4));
    expect((await a.fineTuning.jobs.retrieve(long.id)).status).toBe('cancelled');
    const page = await a.fineTuning.jobs.list({ limit: 2 });
    expect(page.data.map((j) => j.id)).toEqual([next.id, long.id]);
    expect(page.has_more).toBe(true);
  });

  it('keeps everything across a restart: finished models serve, the running job resumes from its checkpoint', async () => {
    const running = await createJob(a, fileId, {
      suffix: 'resume',
      para: { max_steps: 40, checkpoint_every: 3 },
    });
    await until(a, running.id, (j) => j.status === 'running' && j.para.step >= 4);
    await stop(); // the worker checkpoints and stops; the job stays "running" on disk
    // As after a kill -9 of the server: this job's previous worker, still exiting, holds the
    // trainer's lock. The resumed worker waits for it instead of failing the job.
    const orphan = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
      stdio: 'ignore',
    });
    await writeFile(
      join(data, 'jobs', running.id, 'train', '.para.lock'),
      JSON.stringify({
        pid: orphan.pid,
        hostname: os.hostname(),
        startedAt: new Date().toISOString(),
        command: `para serve fine-tuning job ${running.id}`,
      }),
    );
    try {
      await start();
      let waiting: string | undefined;
      let job = await a.fineTuning.jobs.retrieve(running.id);
      for (const t0 = Date.now(); waiting === undefined && Date.now() - t0 < 600_000; ) {
        await sleep(250);
        waiting = (await allEvents(a, running.id))
          .map((e) => e.message)
          .find((m) => m.startsWith('waiting for pid'));
        job = await a.fineTuning.jobs.retrieve(running.id);
        if (finished(job as unknown as FineTuningJob)) break;
      }
      expect(job.status, JSON.stringify(job.error)).toBe('running');
      expect(waiting).toContain(`pid ${orphan.pid} `);
    } finally {
      orphan.kill('SIGKILL');
    }
    const ft = done.fine_tuned_model as string;
    const r = await a.completions.create({
      model: ft,
      prompt: PROMPT,
      max_tokens: 4,
      temperature: 0,
    });
    expect(r.choices[0]?.text).toBe(wantText);
    const end = await until(a, running.id, finished);
    expect(end.error).toBeNull();
    expect(end.status).toBe('succeeded');
    expect(end.para).toMatchObject({ step: 40, restarts: 1 });
    const events = await allEvents(a, running.id);
    const resumed = events.find((e) => e.message.startsWith('Resumed from the checkpoint at step'));
    expect(resumed).toBeDefined();
    expect((resumed?.data as { step?: number } | undefined)?.step).toBeGreaterThanOrEqual(3);
    const steps = events
      .filter((e) => e.type === 'metrics')
      .map((e) => (e.data as { step: number }).step);
    expect(Math.max(...steps)).toBe(40);
    const c = await a.completions.create({
      model: end.fine_tuned_model as string,
      prompt: PROMPT,
      max_tokens: 4,
      temperature: 0,
    });
    expect(c.choices[0]?.text).toBe(
      await reference(join(data, 'adapters', end.para.adapter), PROMPT, 4),
    );
    const files = [];
    for await (const x of a.files.list()) files.push(x.id);
    expect(files).toContain(fileId);
    expect(await a.files.delete(fileId)).toEqual({ id: fileId, object: 'file', deleted: true });
    expect((await a.files.retrieve(fileId).catch((x) => x)).status).toBe(404);
  });

  it('retrieves and deletes a fine-tuned model (models.retrieve / models.delete), only its owner; metrics count jobs by status', async () => {
    const ft = done.fine_tuned_model as string;
    expect(await a.models.retrieve(ft)).toMatchObject({
      id: ft,
      object: 'model',
      peft_type: 'PARA',
      fine_tuning_job: done.id,
    });
    expect(await a.models.retrieve(MODEL)).toMatchObject({ id: MODEL, parent: null });
    for (const [client, name] of [
      [b, ft],
      [a, 'no-such-model'],
    ] as const) {
      const e = await client.models.retrieve(name).catch((x) => x);
      expect(e.status, name).toBe(404);
      expect(e.error.code).toBe('model_not_found');
    }
    expect((await b.models.delete(ft).catch((x) => x)).status).toBe(404); // not B's
    const base = await a.models.delete(MODEL).catch((x) => x);
    expect(base.status).toBe(403);
    expect(base.error.code).toBe('model_not_deletable');
    const metrics = await fetch(`${url}/metrics`, {
      headers: { authorization: `Bearer ${KEY_A}` },
    });
    const text = await metrics.text();
    const succeeded = /^para_fine_tuning_jobs\{status="succeeded"\} (\d+)$/m.exec(text);
    expect(Number(succeeded?.[1])).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/^para_fine_tuning_jobs\{status="cancelled"\} 1$/m);

    expect(await a.models.delete(ft)).toEqual({ id: ft, object: 'model', deleted: true });
    expect(existsSync(join(data, 'adapters', done.para.adapter))).toBe(false);
    expect((await a.models.list()).data.map((m) => m.id)).not.toContain(ft);
    const gone = await a.completions
      .create({ model: ft, prompt: PROMPT, max_tokens: 2 })
      .catch((x) => x);
    expect(gone.status).toBe(404);
    expect((await a.models.delete(ft).catch((x) => x)).status).toBe(404);
    // The job keeps its fine_tuned_model (as OpenAI's does); the deletion survives a restart.
    expect((await a.fineTuning.jobs.retrieve(done.id)).fine_tuned_model).toBe(ft);
    await stop();
    await start();
    expect((await a.models.retrieve(ft).catch((x) => x)).status).toBe(404);
  });
});

describe('a server without keys', () => {
  it('has one owner, refuses an upload past its size limit (413) and a non-multipart upload (400)', async () => {
    const dir = await mkdtemp(join(os.tmpdir(), 'para-ft-open-'));
    const s = await createServer({
      model,
      tokenizer: tok,
      modelName: MODEL,
      fineTuning: { dataDir: dir, modelDir: BACKBONE, maxFileBytes: 1024 },
    });
    servers.push(s);
    try {
      const u = await s.listen({ port: 0 });
      const c = new OpenAI({ baseURL: `${u}/v1`, apiKey: 'anything', maxRetries: 0 });
      const small = await upload(c, `${TASK.slice(0, 4).join('\n')}\n`);
      const other = new OpenAI({ baseURL: `${u}/v1`, apiKey: 'another', maxRetries: 0 });
      expect((await other.files.retrieve(small.id)).id).toBe(small.id); // no keys: one owner
      const big = await upload(c, SLICE).catch((x) => x);
      expect(big.status).toBe(413);
      expect(Object.keys(big.error).sort()).toEqual(['code', 'message', 'param', 'type']);
      const json = await fetch(`${u}/v1/files`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ purpose: 'fine-tune' }),
      });
      expect(json.status).toBe(400);
      expect(((await json.json()) as { error: { param: string } }).error.param).toBe('file');
      const unknown = await fetch(`${u}/v1/fine_tuning/jobs/ftjob-000000000000000000000000`);
      expect(unknown.status).toBe(404);
      const traversal = await fetch(`${u}/v1/files/..%2F..%2Fetc%2Fpasswd`);
      expect(traversal.status).toBe(404);
      const list = await c.fineTuning.jobs.list();
      expect(list.data).toEqual([]);
      expect(list.has_more).toBe(false);
    } finally {
      await s.close();
      s.registry?.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
