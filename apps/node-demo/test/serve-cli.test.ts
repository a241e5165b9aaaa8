/**
 * `para serve` end to end: the built CLI on a free port with the bundled backbone and adapters
 * (no flags but --port 0), a request per bundled adapter whose greedy text is what
 * `para generate --adapter assets/adapters/<name>` prints, --api-key, bad flags, and SIGTERM
 * during a stream: the stream ends with [DONE] and the process exits 0.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, expectTypedError, paraRunner, repo } from './helpers/cli';

const para = paraRunner('wasm');
const children: ChildProcess[] = [];

interface Running {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** Starts `para serve ARGS --port 0` and resolves once it prints its URL. */
function serve(args: string[]): Promise<Running> {
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', ...args], {
    env: { ...process.env, PARA_BACKEND: 'wasm' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d) => {
      out += String(d);
      const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m && out.includes('Ctrl-C'))
        resolve({ child, url: m[1] as string, stdout: () => out, stderr: () => err, exit });
    });
    child.stderr?.on('data', (d) => {
      err += String(d);
    });
    exit.then((code) => reject(new Error(`para serve exited (${code}): ${err}`)));
  });
}

async function complete(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

describe('para serve', () => {
  it('with no flags serves the bundled backbone and adapters; text as para generate; SIGTERM mid-stream exits 0', async () => {
    const s = await serve([]);
    expect(s.stdout()).toContain('backbone with 4 adapters (antonym, arithmetic, category, pos)');
    expect(s.stdout()).toContain(`curl -s ${s.url}/v1/completions`);
    expect(s.stdout()).toContain(`new OpenAI({ baseURL: '${s.url}/v1'`);
    const models = (await (await fetch(`${s.url}/v1/models`)).json()) as {
      data: { id: string; peft_type: string | null }[];
    };
    expect(models.data.map((m) => [m.id, m.peft_type])).toEqual([
      ['backbone', null],
      ['antonym', 'PARA'],
      ['arithmetic', 'PARA'],
      ['category', 'PARA'],
      ['pos', 'PARA'],
    ]);
    const prompt = 'Part of speech of bewail:';
    for (const name of ['antonym', 'pos']) {
      const g = para([
        'generate',
        '--adapter',
        join(repo, 'assets', 'adapters', name),
        '--prompt',
        prompt,
        '--max-new-tokens',
        '6',
        '--json',
      ]);
      expect(g.code, g.stderr).toBe(0);
      const want = (JSON.parse(g.stdout) as { text: string }).text;
      const r = await complete(s.url, { model: name, prompt, max_tokens: 6, temperature: 0 });
      expect(r.status).toBe(200);
      expect((r.json.choices as { text: string }[])[0]?.text).toBe(want);
    }
    // SIGTERM while a stream runs: the stream still ends properly, the process exits 0.
    const res = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'backbone',
        prompt: 'Opposite of hot:',
        max_tokens: 200,
        temperature: 0,
        stream: true,
      }),
    });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = new TextDecoder().decode((await reader.read()).value);
    s.child.kill('SIGTERM');
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(await s.exit).toBe(0);
    expect(s.stderr()).toContain('SIGTERM');
    // Structured logs on stderr: one JSON line per completion.
    const logs = s
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logs.filter((l) => l.msg === 'completion').map((l) => l.model)).toEqual([
      'antonym',
      'pos',
      'backbone',
    ]);
  });

  it('--api-key protects /v1; --model with --adapters serves that root', async () => {
    const s = await serve([
      '--api-key',
      'k-123',
      '--model',
      join(repo, 'assets', 'backbone'),
      '--adapters',
      join(repo, 'assets', 'adapters'),
      '--max-batch',
      '2',
      '--max-len',
      '64',
    ]);
    expect(s.stdout()).toContain('authorization: Bearer k-123');
    const body = { model: 'category', prompt: 'x', max_tokens: 2 };
    expect((await complete(s.url, body)).status).toBe(401);
    const ok = await complete(s.url, body, { authorization: 'Bearer k-123' });
    expect(ok.status).toBe(200);
    expect(
      (await complete(s.url, { ...body, max_tokens: 100 }, { authorization: 'Bearer k-123' }))
        .status,
    ).toBe(400);
    s.child.kill('SIGINT');
    expect(await s.exit).toBe(0);
  });

  it('bad flags are typed errors (exit 2)', () => {
    expectTypedError(para(['serve', '--port', 'abc']), 'INVALID_ARGUMENT', '--port');
    expectTypedError(para(['serve', '--max-batch', '0']), 'INVALID_ARGUMENT', '--max-batch');
    expectTypedError(para(['serve', '--log-level', 'loud']), 'INVALID_ARGUMENT', '--log-level');
    expectTypedError(
      para(['serve', '--keys-file', 'no-such-keys.json']),
      'FILE_NOT_FOUND',
      'no-such-keys.json',
    );
    expectTypedError(
      para(['serve', '--max-adapter-memory', 'lots']),
      'INVALID_ARGUMENT',
      '--max-adapter-memory',
    );
  });
});

describe('para bench serve', () => {
  it('--json: tokens/s, requests/s and latency percentiles per (concurrency, variant), the sequential baseline and the ratios', () => {
    const r = para([
      'bench',
      'serve',
      '--json',
      '--model',
      'bundled',
      '--concurrency',
      '1,2',
      '--requests',
      '1',
      '--prompt-length',
      '4',
      '--new-tokens',
      '3',
      '--rounds',
      '1',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.maxBatch).toBe(2);
    expect(
      out.phases.map(
        (p: { concurrency: number; variant: string }) => `${p.concurrency} ${p.variant}`,
      ),
    ).toEqual(['1 bare', '1 para', '1 lora', '2 bare', '2 para', '2 lora']);
    for (const p of out.phases) {
      expect(p.requests).toBe(p.concurrency); // one request per client
      expect(p.outputTokensPerSecond).toBeGreaterThan(0);
      // Every request decoded its 3 tokens (ignore_eos): tokens/s = requests/s × 3.
      expect(p.outputTokensPerSecond).toBeCloseTo(3 * p.requestsPerSecond, 6);
      expect(p.ttftMs.p50).toBeGreaterThan(0);
      expect(p.ttftMs.p99).toBeGreaterThanOrEqual(p.ttftMs.p50);
      expect(p.itlMs.p99).toBeGreaterThanOrEqual(p.itlMs.p50);
      // Every request was prefilled and decoded by the engine within the phase.
      const { prefill, insert, decode } = p.engineShare;
      expect(prefill).toBeGreaterThan(0);
      expect(decode).toBeGreaterThan(0);
      expect(insert).toBeGreaterThanOrEqual(0);
      expect(prefill + insert + decode).toBeLessThanOrEqual(1.05);
    }
    for (const v of ['bare', 'para', 'lora']) expect(out.sequential[v]).toBeGreaterThan(0);
    expect(out.ratios.concurrency).toBe(2);
    expect(out.ratios.paraVsBare).toBeGreaterThan(0);
    expect(out.loraRank).toBe(18); // closest to PARA r=12 on q/v/up at d=256, d_ff=688
  });

  it('a bad --concurrency is a typed error naming the flag', () => {
    expectTypedError(
      para(['bench', 'serve', '--concurrency', '1,x']),
      'INVALID_ARGUMENT',
      '--concurrency',
    );
  });
});
