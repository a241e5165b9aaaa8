/**
 * The HTTP server against the real `openai` npm client (and plain fetch for the error cases),
 * on a free loopback port: completions and chat, streamed and not, for the base model and each
 * bundled adapter (greedy text identical to the library's `generate`, which `para generate`
 * runs), 16 concurrent requests across 4 adapters, the error statuses, path traversal, and a
 * client that aborts mid-stream.
 */

import type { AnyAdapter } from '@para/adapters';
import type { CausalLM } from '@para/model';
import type { ParaTokenizer } from '@para/tokenizer';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdapterRegistry,
  createServer,
  directorySource,
  Engine,
  type ParaServer,
} from '../src/node';
import { ADAPTERS, BUNDLED, backbone, bundledAdapter, startBackend } from './helpers';

const KEY = 'sk-test-key';
let model: CausalLM;
let tok: ParaTokenizer;
let server: ParaServer;
let url: string;
let client: OpenAI;
const refAdapters = new Map<string, AnyAdapter | null>();

/** The library's greedy text for one prompt (what `para generate --adapter` prints). */
async function reference(
  name: string,
  input: string | { role: string; content: string }[],
  maxNewTokens: number,
): Promise<string> {
  const a = refAdapters.get(name) ?? null;
  return model.generate(input as string, {
    maxNewTokens,
    ...(a === null ? {} : { adapter: a.attach(model), request: {} }),
  });
}

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, headers: res.headers, json: json as ErrorJson };
}

interface ErrorJson {
  error: { message: string; type: string; param: string | null; code: string | null };
}

function expectOpenAIError(json: ErrorJson, type?: string) {
  expect(Object.keys(json)).toEqual(['error']);
  expect(Object.keys(json.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(typeof json.error.message).toBe('string');
  if (type !== undefined) expect(json.error.type).toBe(type);
}

beforeAll(async () => {
  await startBackend();
  ({ model, tokenizer: tok } = await backbone());
  refAdapters.set('para-base', null);
  for (const n of BUNDLED) refAdapters.set(n, await bundledAdapter(n, model));
  const registry = new AdapterRegistry(model, directorySource(ADAPTERS));
  server = await createServer({
    model,
    tokenizer: tok,
    registry,
    engine: { maxBatch: 4, maxLen: 128, maxQueue: 64 },
    apiKey: KEY,
    bodyLimit: 64 * 1024,
  });
  url = await server.listen({ port: 0 });
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 120_000 });
});

afterAll(async () => {
  await server?.close();
  server?.registry?.dispose();
  for (const a of refAdapters.values()) a?.dispose();
  model?.dispose();
});

describe('OpenAI-compatible server', () => {
  it('binds 127.0.0.1 and answers /health and /v1/models (base model + adapters with peft_type)', async () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const h = await fetch(`${url}/health`);
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ status: 'ok' });
    const models = await client.models.list();
    const ids = models.data.map((m) => m.id);
    expect(ids).toEqual(['para-base', ...BUNDLED]);
    for (const m of models.data.slice(1))
      expect((m as unknown as { peft_type: string }).peft_type).toBe('PARA');
  });

  for (const name of ['para-base', ...BUNDLED]) {
    it(`completions and chat, streamed and not, give the library's greedy text: ${name}`, async () => {
      const prompt = 'Opposite of hot:';
      const want = await reference(name, prompt, 12);
      const r = await client.completions.create({
        model: name,
        prompt,
        max_tokens: 12,
        temperature: 0,
      });
      expect(r.object).toBe('text_completion');
      expect(r.choices[0]?.text).toBe(want);
      expect(r.usage?.prompt_tokens).toBe(tok.encode(prompt).length);
      expect(r.usage?.total_tokens).toBe(
        (r.usage?.prompt_tokens ?? 0) + (r.usage?.completion_tokens ?? 0),
      );
      const s = await client.completions.create({
        model: name,
        prompt,
        max_tokens: 12,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = '';
      let finish: string | null = null;
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const c of s) {
        text += c.choices[0]?.text ?? '';
        finish = c.choices[0]?.finish_reason ?? finish;
        if (c.usage) usage = c.usage;
      }
      expect(text).toBe(want);
      expect(finish).toBe(r.choices[0]?.finish_reason);
      expect(usage).toEqual(r.usage);

      const messages = [{ role: 'user' as const, content: 'Opposite of hot' }];
      const chatWant = await reference(name, messages, 10);
      const c = await client.chat.completions.create({
        model: name,
        messages,
        max_tokens: 10,
        temperature: 0,
      });
      expect(c.object).toBe('chat.completion');
      expect(c.choices[0]?.message.role).toBe('assistant');
      expect(c.choices[0]?.message.content).toBe(chatWant);
      const cs = await client.chat.completions.create({
        model: name,
        messages,
        max_tokens: 10,
        temperature: 0,
        stream: true,
      });
      let chatText = '';
      let role: string | undefined;
      for await (const ch of cs) {
        expect(ch.object).toBe('chat.completion.chunk');
        role ??= ch.choices[0]?.delta.role ?? undefined;
        chatText += ch.choices[0]?.delta.content ?? '';
      }
      expect(role).toBe('assistant');
      expect(chatText).toBe(chatWant);
    });
  }

  it('16 concurrent requests across 4 adapters each give the text they give alone', async () => {
    const prompts = ['Opposite of hot:', 'A cat is a', 'The word dog is a', '2 + 3 ='];
    const jobs = Array.from({ length: 16 }, (_, i) => ({
      model: BUNDLED[i % 4] as string,
      prompt: prompts[Math.floor(i / 4)] as string,
      stream: i % 2 === 0,
    }));
    const wants = await Promise.all(jobs.map((j) => reference(j.model, j.prompt, 10)));
    const got = await Promise.all(
      jobs.map(async (j) => {
        if (!j.stream) {
          const r = await client.completions.create({
            model: j.model,
            prompt: j.prompt,
            max_tokens: 10,
            temperature: 0,
          });
          return r.choices[0]?.text;
        }
        const s = await client.completions.create({
          model: j.model,
          prompt: j.prompt,
          max_tokens: 10,
          temperature: 0,
          stream: true,
        });
        let t = '';
        for await (const c of s) t += c.choices[0]?.text ?? '';
        return t;
      }),
    );
    expect(got).toEqual(wants);
    expect(new Set(wants).size).toBeGreaterThan(4);
  });

  it('errors are OpenAI error JSON with the right statuses; bad input is never a 500', async () => {
    const ok = { model: 'para-base', prompt: 'hi', max_tokens: 2 };
    // 401: no key, wrong key.
    let r = await post('/v1/completions', ok, { authorization: '' });
    expect(r.status).toBe(401);
    expectOpenAIError(r.json, 'authentication_error');
    r = await post('/v1/completions', ok, { authorization: 'Bearer nope' });
    expect(r.status).toBe(401);
    await expect(
      new OpenAI({ baseURL: `${url}/v1`, apiKey: 'wrong', maxRetries: 0 }).models.list(),
    ).rejects.toMatchObject({ status: 401 });
    // 404: unknown model, unknown route.
    r = await post('/v1/completions', { ...ok, model: 'no-such-adapter' });
    expect(r.status).toBe(404);
    expectOpenAIError(r.json);
    expect(r.json.error.param).toBe('model');
    await expect(
      client.completions.create({ model: 'no-such-adapter', prompt: 'x' }),
    ).rejects.toMatchObject({ status: 404 });
    r = await post('/v1/nothing', ok);
    expect(r.status).toBe(404);
    expectOpenAIError(r.json);
    // 400: path traversal and other bad names.
    for (const model of ['../backbone', '../../assets/backbone', '/etc/passwd', 'a/b', '..']) {
      r = await post('/v1/completions', { ...ok, model });
      expect(r.status, model).toBe(400);
      expectOpenAIError(r.json, 'invalid_request_error');
      expect(r.json.error.param).toBe('model');
    }
    // 400: schema violations (missing, wrong types, out of range), n > 1, too long.
    const bad: [unknown, string | null][] = [
      [{ prompt: 'x' }, 'model'],
      [{ model: 'para-base' }, 'prompt'],
      [{ ...ok, temperature: '1' }, 'temperature'],
      [{ ...ok, temperature: 5 }, 'temperature'],
      [{ ...ok, max_tokens: 0 }, 'max_tokens'],
      [{ ...ok, max_tokens: 1.5 }, 'max_tokens'],
      [{ ...ok, top_p: 0 }, 'top_p'],
      [{ ...ok, prompt: 42 }, 'prompt'],
      [{ ...ok, stop: [''] }, 'stop'],
      [{ ...ok, n: 2 }, 'n'],
      [{ ...ok, max_tokens: 500 }, 'max_tokens'],
      [{ ...ok, prompt: [999999] }, 'prompt'],
      [{ ...ok, logprobs: 30 }, 'logprobs'],
      [{ ...ok, ignore_eos: 'yes' }, 'ignore_eos'],
    ];
    for (const [body, param] of bad) {
      r = await post('/v1/completions', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expectOpenAIError(r.json, 'invalid_request_error');
      expect(r.json.error.param, JSON.stringify(body)).toBe(param);
    }
    r = await post('/v1/chat/completions', { model: 'para-base', messages: [{ role: 'x' }] });
    expect(r.status).toBe(400);
    expectOpenAIError(r.json);
    r = await post('/v1/chat/completions', { model: 'para-base', messages: [] });
    expect(r.status).toBe(400);
    r = await post('/v1/completions', '{"model": "para-base", "prompt": ');
    expect(r.status).toBe(400);
    expectOpenAIError(r.json);
    r = await post('/v1/completions', '[]');
    expect(r.status).toBe(400);
    // X-Para-Adapter (load balancers route by it) must agree with the body's model.
    r = await post('/v1/completions', { ...ok, model: 'pos' }, { 'x-para-adapter': 'antonym' });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('adapter_header_mismatch');
    r = await post('/v1/completions', { ...ok, model: 'pos' }, { 'x-para-adapter': 'pos' });
    expect(r.status).toBe(200);
    // 413: body past the limit.
    r = await post('/v1/completions', { ...ok, prompt: 'x'.repeat(100_000) });
    expect(r.status).toBe(413);
    expectOpenAIError(r.json);
    // 400 through the client too, streamed or not.
    await expect(
      client.completions.create({ model: 'para-base', prompt: 'x', n: 2, stream: true }),
    ).rejects.toMatchObject({ status: 400 });
    await expect(
      client.chat.completions.create({
        model: 'para-base',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: 1000,
      }),
    ).rejects.toMatchObject({ status: 400 });
  });

  it('logprobs: completions (top alternatives per token) and chat (content with bytes)', async () => {
    const r = await client.completions.create({
      model: 'antonym',
      prompt: 'Opposite of hot:',
      max_tokens: 5,
      temperature: 0,
      logprobs: 3,
    });
    const lp = r.choices[0]?.logprobs;
    expect(lp?.tokens?.join('')).toBe(r.choices[0]?.text);
    expect(lp?.token_logprobs?.length).toBe(lp?.tokens?.length);
    for (const [i, top] of (lp?.top_logprobs ?? []).entries()) {
      const values = Object.values(top);
      expect(values.length).toBeLessThanOrEqual(3);
      // Greedy: the chosen token is the most probable one.
      expect(lp?.token_logprobs?.[i]).toBeCloseTo(Math.max(...values), 6);
      expect(Math.max(...values)).toBeLessThanOrEqual(0);
    }
    const c = await client.chat.completions.create({
      model: 'pos',
      messages: [{ role: 'user', content: 'run' }],
      max_tokens: 4,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    });
    const content = c.choices[0]?.logprobs?.content ?? [];
    expect(content.map((t) => t.token).join('')).toBe(c.choices[0]?.message.content);
    for (const t of content) {
      expect(t.top_logprobs.length).toBe(2);
      expect(t.bytes).toEqual([...Buffer.from(t.token, 'utf8')]);
      expect(t.logprob).toBeCloseTo(t.top_logprobs[0]?.logprob ?? Number.NaN, 6);
    }
    const plain = await client.completions.create({ model: 'pos', prompt: 'x', max_tokens: 2 });
    expect(plain.choices[0]?.logprobs).toBeNull();
  });

  it('logprobs stream too: the chunks carry what the whole response carries', async () => {
    for (const model of ['para-base', 'antonym']) {
      const body = {
        model,
        prompt: 'Opposite of cold:',
        max_tokens: 6,
        temperature: 0,
        logprobs: 2,
      };
      const whole = (await client.completions.create(body)).choices[0]?.logprobs;
      const s = await client.completions.create({ ...body, stream: true });
      const tokens: string[] = [];
      const values: number[] = [];
      const offsets: number[] = [];
      const tops: Record<string, number>[] = [];
      let text = '';
      for await (const chunk of s) {
        const c = chunk.choices[0];
        text += c?.text ?? '';
        const l = c?.logprobs;
        if (l == null) continue;
        tokens.push(...(l.tokens ?? []));
        values.push(...(l.token_logprobs ?? []));
        offsets.push(...(l.text_offset ?? []));
        tops.push(...(l.top_logprobs ?? []));
      }
      expect(tokens, model).toEqual(whole?.tokens);
      expect(offsets, model).toEqual(whole?.text_offset);
      expect(tops, model).toEqual(whole?.top_logprobs);
      expect(values.length).toBe(whole?.token_logprobs?.length);
      for (const [i, v] of values.entries())
        expect(v).toBeCloseTo(whole?.token_logprobs?.[i] ?? 0, 5);
      expect(tokens.join('')).toBe(text);
    }
    const chatBody = {
      model: 'pos',
      messages: [{ role: 'user' as const, content: 'run' }],
      max_tokens: 4,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    };
    const whole = (await client.chat.completions.create(chatBody)).choices[0]?.logprobs?.content;
    const streamed: { token: string; bytes: number[] | null }[] = [];
    for await (const chunk of await client.chat.completions.create({ ...chatBody, stream: true }))
      for (const t of chunk.choices[0]?.logprobs?.content ?? [])
        streamed.push({ token: t.token, bytes: t.bytes });
    expect(streamed).toEqual(whole?.map((t) => ({ token: t.token, bytes: t.bytes })));
  });

  it('ignore_eos (vLLM’s extension) decodes max_tokens tokens past the eos token', async () => {
    // The bare model ends "Opposite of hot:" early on eos; with ignore_eos it runs to max_tokens.
    const ok = { model: 'para-base', prompt: 'Opposite of hot:', temperature: 0 };
    const stopped = await post('/v1/completions', { ...ok, max_tokens: 40 });
    expect(stopped.status).toBe(200);
    const r = await post('/v1/completions', { ...ok, max_tokens: 40, ignore_eos: true });
    expect(r.status).toBe(200);
    type Completion = {
      usage: { completion_tokens: number };
      choices: { finish_reason: string }[];
    };
    const full = r.json as unknown as Completion;
    const early = stopped.json as unknown as Completion;
    expect(full.usage.completion_tokens).toBe(40);
    expect(full.choices[0]?.finish_reason).toBe('length');
    if (early.choices[0]?.finish_reason === 'stop')
      expect(early.usage.completion_tokens).toBeLessThan(40);
  });

  it('a client that aborts mid-stream frees its slot; the next request is served', async () => {
    const before = server.engine.stats().finished;
    const ctl = new AbortController();
    const s = await client.completions.create(
      {
        model: 'para-base',
        prompt: 'Opposite of hot:',
        max_tokens: 100,
        temperature: 0,
        stream: true,
      },
      { signal: ctl.signal },
    );
    let chunks = 0;
    try {
      for await (const _c of s) {
        if (++chunks === 3) ctl.abort();
      }
    } catch {
      // an AbortError, depending on where the client was when it aborted
    }
    expect(chunks).toBe(3); // nothing after the abort
    for (let i = 0; i < 200 && server.engine.stats().finished === before; i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(server.engine.stats().running).toBe(0);
    const want = await reference('pos', 'A cat is a', 6);
    const r = await client.completions.create({
      model: 'pos',
      prompt: 'A cat is a',
      max_tokens: 6,
      temperature: 0,
    });
    expect(r.choices[0]?.text).toBe(want);
  });
});

describe('operations: /metrics and structured logs', () => {
  it('GET /metrics is Prometheus text with request, token, latency and adapter-cache metrics', async () => {
    // Runs on its own as well: a few requests first (after the tests above there are more).
    for (let i = 0; i < 2; i++)
      await client.completions.create({
        model: 'pos',
        prompt: 'A cat is a',
        max_tokens: 3,
        temperature: 0,
      });
    await client.chat.completions.create({
      model: 'pos',
      messages: [{ role: 'user', content: 'run' }],
      max_tokens: 3,
      temperature: 0,
    });
    expect((await post('/v1/completions', { model: 'pos', prompt: 'x', n: 2 })).status).toBe(400);
    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    const value = (line: string): number => {
      const m = new RegExp(`^${line.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
      return m === null ? Number.NaN : Number(m[1]);
    };
    expect(value('para_requests_total{endpoint="completions",outcome="length"}')).toBeGreaterThan(
      0,
    );
    expect(value('para_requests_total{endpoint="chat",outcome="length"}')).toBeGreaterThan(0);
    expect(value('para_requests_total{endpoint="completions",outcome="error"}')).toBeGreaterThan(0);
    expect(value('para_generated_tokens_total')).toBeGreaterThanOrEqual(9);
    expect(value('para_prompt_tokens_total')).toBeGreaterThan(10);
    expect(value('para_time_to_first_token_seconds_count')).toBeGreaterThanOrEqual(3);
    expect(value('para_inter_token_latency_seconds_count')).toBeGreaterThanOrEqual(6);
    expect(
      value('para_request_duration_seconds_count{endpoint="completions"}'),
    ).toBeGreaterThanOrEqual(3);
    expect(value('para_requests_running')).toBe(0);
    expect(value('para_requests_waiting')).toBe(0);
    expect(value('para_adapter_cache_loads_total')).toBeGreaterThanOrEqual(1);
    expect(value('para_adapter_cache_hits_total')).toBeGreaterThanOrEqual(2);
    expect(value('para_adapter_cache_evictions_total')).toBe(0);
    expect(value('para_adapters_loaded')).toBe(value('para_adapter_cache_loads_total'));
    expect(value('para_adapter_bytes')).toBeGreaterThan(0);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
  });

  it('logs one structured (pino JSON) line per completion', async () => {
    const lines: string[] = [];
    const stream = { write: (l: string) => lines.push(l) };
    const s = await createServer({ model, tokenizer: tok, logger: { level: 'info', stream } });
    const base = await s.listen({ port: 0 });
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'para-base', prompt: 'hi', max_tokens: 2 }),
    });
    expect(res.status).toBe(200);
    await s.close();
    const logs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const done = logs.find((l) => l.msg === 'completion');
    expect(done).toMatchObject({ model: 'para-base', endpoint: 'completions' });
    expect(done?.promptTokens).toBe(tok.encode('hi').length);
    expect(done?.completionTokens).toBe(2);
    expect(typeof done?.reqId).toBe('string');
  });
});

describe('a full queue and shutdown', () => {
  it('429 with Retry-After when the queue is full; close() drains then refuses', async () => {
    const engine = new Engine(model, { tokenizer: tok, maxBatch: 1, maxLen: 128, maxQueue: 1 });
    const s = await createServer({ model, tokenizer: tok, engine, closeDeadlineMs: 100 });
    const base = await s.listen({ port: 0 });
    const prompt = tok.encode('Opposite of hot:');
    const busy = engine.submit({ prompt, maxTokens: 100, stopTokens: [] });
    const queued = engine.submit({ prompt, maxTokens: 2 });
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'para-base', prompt: 'hi', max_tokens: 2 }),
    });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('1');
    const j = (await res.json()) as ErrorJson;
    expectOpenAIError(j, 'rate_limit_error');
    const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
    await expect(
      c.completions.create({ model: 'para-base', prompt: 'hi', max_tokens: 2 }),
    ).rejects.toMatchObject({ status: 429 });
    await Promise.all([busy.result, queued.result]);
    // A stream in flight at close: it ends (cancelled past the deadline) with [DONE].
    const stream = await c.completions.create({
      model: 'para-base',
      prompt: 'Opposite of hot:',
      max_tokens: 120,
      temperature: 0,
      stream: true,
    });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const closed = s.close();
    let rest = 0;
    for (;;) {
      const n = await it.next();
      if (n.done) break;
      rest++;
    }
    await closed;
    expect(rest).toBeLessThan(120);
    expect(() => engine.submit({ prompt })).toThrow(/shutting down/);
    await expect(fetch(`${base}/health`)).rejects.toThrow();
  });
});
