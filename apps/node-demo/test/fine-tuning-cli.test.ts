/**
 * `para serve --data-dir` killed with SIGKILL during a fine-tuning job: the built CLI as a child
 * process, the real `openai` client. A finished job's model answers as `para generate --adapter`
 * does with its adapter directory; after `kill -9` the worker process goes too (it exits when its
 * parent's IPC channel closes); a new `para serve` on the same data directory still serves the
 * finished model and resumes the killed job from its checkpoint to `succeeded`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, paraRunner, repo } from './helpers/cli';

const para = paraRunner('wasm');
const children: ChildProcess[] = [];
let data: string;

interface Running {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `para serve --port 0 --data-dir DATA` and resolves once it prints its URL. */
function serve(): Promise<Running> {
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--data-dir', data], {
    env: { ...process.env, PARA_BACKEND: 'wasm' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d) => {
      out += String(d);
      const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m && out.includes('Ctrl-C'))
        resolve({ child, url: m[1] as string, stderr: () => err, exit });
    });
    child.stderr?.on('data', (d) => {
      err += String(d);
    });
    exit.then(({ code }) => reject(new Error(`para serve exited (${code}): ${err}`)));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Job {
  id: string;
  status: string;
  fine_tuned_model: string | null;
  error: unknown;
  para: { step: number; adapter: string; restarts: number };
}

async function until(client: OpenAI, id: string, ok: (j: Job) => boolean, ms = 300_000) {
  const t0 = Date.now();
  for (;;) {
    const j = (await client.fineTuning.jobs.retrieve(id)) as unknown as Job;
    if (ok(j)) return j;
    if (Date.now() - t0 > ms)
      throw new Error(`job ${id}: still ${j.status} (${JSON.stringify(j)})`);
    await sleep(300);
  }
}

const over = (j: Job) => ['succeeded', 'failed', 'cancelled'].includes(j.status);

function client(url: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 120_000 });
}

function job(c: OpenAI, file: string, para: Record<string, unknown>, suffix: string) {
  return c.fineTuning.jobs.create({
    model: 'backbone',
    training_file: file,
    suffix,
    seed: 3,
    hyperparameters: { batch_size: 8, learning_rate_multiplier: 3 },
    para,
  } as OpenAI.FineTuning.JobCreateParams) as unknown as Promise<Job>;
}

/** What `para generate --adapter DIR` prints for the prompt (greedy). */
function generate(adapterDir: string, prompt: string): string {
  const g = para([
    'generate',
    '--adapter',
    adapterDir,
    '--prompt',
    prompt,
    '--max-new-tokens',
    '4',
    '--json',
  ]);
  expect(g.code, g.stderr).toBe(0);
  return (JSON.parse(g.stdout) as { text: string }).text;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  data = await mkdtemp(join(tmpdir(), 'para-serve-ft-'));
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (data !== undefined) await rm(data, { recursive: true, force: true });
});

describe('para serve --data-dir', () => {
  it('kill -9 during a job: the worker goes too; a restart serves the finished model and resumes the job', async () => {
    const lines = readFileSync(join(repo, 'data', 'tasks', 'pos', 'train.jsonl'), 'utf8')
      .split('\n')
      .slice(0, 32)
      .join('\n');
    const prompt = 'Part of speech of bewail:';
    const s1 = await serve();
    const c1 = client(s1.url);
    const file = await c1.files.create({
      file: await toFile(Buffer.from(`${lines}\n`), 'pos.jsonl'),
      purpose: 'fine-tune',
    });
    const first = await job(c1, file.id, { max_steps: 6 }, 'quick');
    const done = await until(c1, first.id, over);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    const ft = done.fine_tuned_model as string;
    const want = generate(join(data, 'adapters', done.para.adapter), prompt);
    const r1 = await c1.completions.create({ model: ft, prompt, max_tokens: 4, temperature: 0 });
    expect(r1.choices[0]?.text).toBe(want);

    const long = await job(c1, file.id, { max_steps: 45, checkpoint_every: 3 }, 'killed');
    await until(c1, long.id, (j) => j.status === 'running' && j.para.step >= 4);
    // This job's worker (the first job's worker, already gone, logged the same line before it).
    const started = new RegExp(`job ${long.id}: worker (\\d+) \\(nice 10`).exec(s1.stderr());
    const pid = Number(started?.[1] ?? Number.NaN);
    expect(Number.isInteger(pid)).toBe(true);
    s1.child.kill('SIGKILL');
    expect((await s1.exit).signal).toBe('SIGKILL');
    // The worker exits when its parent's IPC channel closes: no orphan holds the job's lock.
    const t0 = Date.now();
    while (alive(pid) && Date.now() - t0 < 30_000) await sleep(100);
    expect(alive(pid)).toBe(false);

    const s2 = await serve();
    const c2 = client(s2.url);
    const r2 = await c2.completions.create({ model: ft, prompt, max_tokens: 4, temperature: 0 });
    expect(r2.choices[0]?.text).toBe(want);
    const end = await until(c2, long.id, over);
    expect(end.status, JSON.stringify(end.error)).toBe('succeeded');
    expect(end.para).toMatchObject({ step: 45, restarts: 1 });
    const events = [];
    for await (const e of c2.fineTuning.jobs.listEvents(long.id, { limit: 100 })) events.push(e);
    const resumed = events.find((e) => e.message.startsWith('Resumed from the checkpoint at step'));
    expect(resumed, events.map((e) => e.message).join('\n')).toBeDefined();
    const r3 = await c2.completions.create({
      model: end.fine_tuned_model as string,
      prompt,
      max_tokens: 4,
      temperature: 0,
    });
    expect(r3.choices[0]?.text).toBe(generate(join(data, 'adapters', end.para.adapter), prompt));
    const models = (await c2.models.list()).data.map((m) => m.id);
    expect(models).toEqual(expect.arrayContaining([ft, end.fine_tuned_model]));
    s2.child.kill('SIGTERM');
    expect((await s2.exit).code).toBe(0);
  });
});
