/**
 * The engine: concurrent requests of several tenants (bare, PARA, LoRA, IA3) join and leave one
 * running batch, and each gets exactly the tokens and text it gets decoding alone; per-request
 * sampling, stop strings, cancellation, timeouts, the bounded queue, and a flat tensor count.
 */

import type { AnyAdapter } from '@para/adapters';
import { isParaError } from '@para/core';
import type { CausalLM } from '@para/model';
import type { ParaTokenizer } from '@para/tokenizer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CompletionResult, Engine, isServeError } from '../src/index';
import {
  alone,
  BUNDLED,
  backbone,
  bundledAdapter,
  ia3Tenant,
  loraTenant,
  numTensors,
  startBackend,
} from './helpers';

let model: CausalLM;
let tok: ParaTokenizer;
let tenants: { name: string; adapter: AnyAdapter | null }[];
let stops: number[];

const PROMPTS = [
  'Opposite of hot:',
  'The category of apple is',
  '2 + 3 =',
  'Part of speech of run:',
  'A cat is a',
  'Antonym of big:',
  'The word dog is a',
];

beforeAll(async () => {
  await startBackend();
  ({ model, tokenizer: tok } = await backbone());
  stops = [...new Set([...model.config.eosTokenIds, tok.eosTokenId as number])];
  tenants = [{ name: 'bare', adapter: null }];
  for (const n of BUNDLED) tenants.push({ name: n, adapter: await bundledAdapter(n, model) });
  tenants.push({ name: 'lora', adapter: loraTenant(model) });
  tenants.push({ name: 'ia3', adapter: ia3Tenant(model) });
});

afterAll(() => {
  for (const t of tenants) t.adapter?.dispose();
  model.dispose();
});

describe('Engine', () => {
  it('concurrent requests across tenants each get the greedy tokens and text they get alone', async () => {
    const engine = new Engine(model, { maxBatch: 3, maxLen: 64 });
    const jobs = tenants.map((t, i) => ({
      ...t,
      prompt: tok.encode(PROMPTS[i % PROMPTS.length] as string),
      maxTokens: 4 + ((i * 5) % 9), // different lengths: rows leave at different steps
    }));
    const streamed: string[] = jobs.map(() => '');
    const results = await Promise.all(
      jobs.map((j, i) =>
        engine.complete({
          prompt: j.prompt,
          adapter: j.adapter,
          maxTokens: j.maxTokens,
          onText: (p) => {
            streamed[i] += p;
          },
        }),
      ),
    );
    expect(engine.stats().steps).toBeGreaterThan(0);
    // Newcomers waiting together were prefilled together (ragged prompts, mixed tenants).
    expect(engine.stats().prefills).toBeLessThan(jobs.length);
    for (const [i, j] of jobs.entries()) {
      const ref = await alone(model, j.adapter, j.prompt, j.maxTokens, stops);
      const r = results[i];
      expect(r?.tokens, j.name).toEqual(ref);
      const text = await model.generate(PROMPTS[i % PROMPTS.length] as string, {
        maxNewTokens: j.maxTokens,
        ...(j.adapter === null ? {} : { adapter: j.adapter.attach(model), request: {} }),
      });
      expect(r?.text, j.name).toBe(text);
      expect(streamed[i]).toBe(text);
      expect(r?.promptTokens).toBe(j.prompt.length);
      expect(r?.completionTokens).toBe(ref.length);
      expect(r?.finishReason).toBe(ref.length < j.maxTokens ? 'stop' : 'length');
    }
    // The tenants really differ (the comparison can fail).
    const texts = new Set(
      await Promise.all(
        tenants.map((t) =>
          engine
            .complete({
              prompt: tok.encode(PROMPTS[0] as string),
              adapter: t.adapter,
              maxTokens: 6,
            })
            .then((r) => r.tokens.join(',')),
        ),
      ),
    );
    expect(texts.size).toBeGreaterThan(3);
    await engine.close();
  });

  it('samples per request as generate does (temperature, top_k, top_p, seed) and applies stop strings', async () => {
    const engine = new Engine(model, { maxBatch: 4, maxLen: 64 });
    const settings = [
      { temperature: 0.9, seed: 5 },
      { temperature: 1.2, topK: 20, seed: 7 },
      { temperature: 0.7, topP: 0.8, seed: 11 },
      { temperature: 1, topK: 50, topP: 0.9, seed: 3 },
      { temperature: 0 },
    ];
    const prompt = tok.encode('A cat is a');
    const adapter = tenants[1]?.adapter ?? null;
    const got = await Promise.all(
      settings.map((s) => engine.complete({ prompt, adapter, maxTokens: 10, ...s })),
    );
    for (const [i, s] of settings.entries())
      expect(got[i]?.tokens).toEqual(await alone(model, adapter, prompt, 10, stops, s));
    expect(new Set(got.map((g) => g.tokens.join(','))).size).toBeGreaterThan(2);

    // Stop strings: the text is cut before the stop string, as in model.generate.
    const full = await engine.complete({ prompt, adapter, maxTokens: 12 });
    const word = full.text.trim().split(/\s+/)[1] ?? full.text.trim().slice(1, 3);
    expect(word.length).toBeGreaterThan(0);
    let streamed = '';
    const cut = await engine.complete({
      prompt,
      adapter,
      maxTokens: 12,
      stop: [word, 'zzzz-never'],
      onText: (p) => {
        streamed += p;
      },
    });
    const ref = await model.generate('A cat is a', {
      maxNewTokens: 12,
      stop: [word, 'zzzz-never'],
      ...(adapter === null ? {} : { adapter: adapter.attach(model), request: {} }),
    });
    expect(cut.text).toBe(ref);
    expect(streamed).toBe(ref);
    expect(cut.finishReason).toBe('stop');
    expect(cut.text.includes(word)).toBe(false);
    await engine.close();
  });

  it('refuses bad requests with typed errors, n > 1 clearly, and a full queue as OVERLOADED', async () => {
    const engine = new Engine(model, { maxBatch: 1, maxLen: 32, maxQueue: 1 });
    const prompt = tok.encode('A cat is a');
    const bad = [
      { prompt: [], maxTokens: 1 },
      { prompt: [model.config.vocabSize], maxTokens: 1 },
      { prompt, n: 2 },
      { prompt, maxTokens: 0 },
      { prompt, maxTokens: 40 },
      { prompt, temperature: -1 },
      { prompt, topP: 2 },
      { prompt, stop: [''] },
    ];
    for (const b of bad) {
      let err: unknown;
      try {
        engine.submit(b);
      } catch (e) {
        err = e;
      }
      expect(isParaError(err), JSON.stringify(b)).toBe(true);
    }
    let n2: unknown;
    try {
      engine.submit({ prompt, n: 2 });
    } catch (e) {
      n2 = e;
    }
    expect(String((n2 as Error).message)).toMatch(/n = 1/);
    // One row + one waiting: the third is refused at once.
    const a = engine.submit({ prompt, maxTokens: 20 });
    const b = engine.submit({ prompt, maxTokens: 2 });
    let over: unknown;
    try {
      engine.submit({ prompt, maxTokens: 2 });
    } catch (e) {
      over = e;
    }
    expect(isServeError(over, 'OVERLOADED')).toBe(true);
    await Promise.all([a.result, b.result]);
    await engine.close();
    expect(() => engine.submit({ prompt })).toThrow(/shutting down/);
  });

  it('a cancelled request frees its row at the next step; a queued request past its deadline times out', async () => {
    const engine = new Engine(model, { maxBatch: 1, maxLen: 64 });
    const prompt = tok.encode('A cat is a');
    const ctl = new AbortController();
    let n = 0;
    const long = engine.submit({
      prompt,
      maxTokens: 50,
      stopTokens: [],
      signal: ctl.signal,
      onToken: () => {
        if (++n === 3) ctl.abort();
      },
    });
    const next = engine.submit({ prompt, maxTokens: 3 });
    const r = await long.result;
    expect(r.finishReason).toBe('cancelled');
    expect(r.tokens.length).toBeLessThan(6);
    expect((await next.result).tokens).toEqual(await alone(model, null, prompt, 3, stops));

    // A request waiting behind a long one past its deadline: TIMEOUT, the long one unharmed.
    const busy = engine.submit({ prompt, maxTokens: 30, stopTokens: [] });
    const late = engine.submit({ prompt, maxTokens: 3, timeoutMs: 1 });
    await expect(late.result).rejects.toSatisfy((e) => isServeError(e, 'TIMEOUT'));
    expect((await busy.result).tokens.length).toBe(30);
    // Aborted while waiting: leaves the queue at once.
    const busy2 = engine.submit({ prompt, maxTokens: 10, stopTokens: [] });
    const ctl2 = new AbortController();
    const waiting = engine.submit({ prompt, maxTokens: 3, signal: ctl2.signal });
    ctl2.abort();
    expect((await waiting.result).finishReason).toBe('cancelled');
    await busy2.result;
    await engine.close();
  });

  it('close() past its deadline cancels running requests', async () => {
    const engine = new Engine(model, { maxBatch: 2, maxLen: 200 });
    const prompt = tok.encode('A cat is a');
    const r = engine.submit({ prompt, maxTokens: 150, stopTokens: [] });
    let started = false;
    const first = new Promise<void>((res) => {
      const s = engine.submit({
        prompt,
        maxTokens: 150,
        stopTokens: [],
        onToken: () => {
          if (!started) {
            started = true;
            res();
          }
        },
      });
      s.result.catch(() => undefined);
    });
    await first;
    await engine.close({ deadlineMs: 20 });
    expect((await r.result).finishReason).toBe('cancelled');
    expect(engine.hasState).toBe(false);
  });

  it('sizes the running state to the requests: grows for newcomers, shrinks when rows leave; tokens as alone', async () => {
    const engine = new Engine(model, { maxBatch: 8, maxLen: 64 });
    const prompts = PROMPTS.map((p) => tok.encode(p));
    const long = tenants[1] as (typeof tenants)[number];
    const sizes: number[] = [];
    let joined = false;
    const others: Promise<CompletionResult>[] = [];
    const first = engine.complete({
      prompt: prompts[0] as number[],
      adapter: long.adapter,
      maxTokens: 14,
      stopTokens: [],
      onToken: () => {
        sizes.push(engine.stats().rows);
        if (joined) return;
        joined = true;
        // Five newcomers of mixed tenants join the running request (8 rows: the next power of two).
        for (let i = 1; i <= 5; i++) {
          const t = tenants[(i + 1) % tenants.length] as (typeof tenants)[number];
          others.push(
            engine.complete({
              prompt: prompts[i] as number[],
              adapter: t.adapter,
              maxTokens: 2 + i,
            }),
          );
        }
      },
    });
    const r = await first;
    const rest = await Promise.all(others);
    expect(sizes[0]).toBe(1); // alone: a state of one row
    expect(Math.max(...sizes)).toBe(8);
    // Shrunk once at most a quarter of the rows ran (8 → 2 with two left; 2 rows stay for one).
    expect(sizes.at(-1)).toBeLessThanOrEqual(2);
    expect(engine.stats().resizes).toBeGreaterThanOrEqual(3);
    expect(r.tokens).toEqual(await alone(model, long.adapter, prompts[0] as number[], 14, []));
    for (const [k, res] of rest.entries()) {
      const i = k + 1;
      const t = tenants[(i + 1) % tenants.length] as (typeof tenants)[number];
      expect(res.tokens, t.name).toEqual(
        await alone(model, t.adapter, prompts[i] as number[], 2 + i, stops),
      );
    }
    await engine.close();
  });

  it('preallocate: all maxBatch rows from the first request on', async () => {
    const engine = new Engine(model, { maxBatch: 4, maxLen: 32, preallocate: true });
    let rows = 0;
    await engine.complete({
      prompt: tok.encode('Opposite of hot:'),
      maxTokens: 2,
      onToken: () => {
        rows = engine.stats().rows;
      },
    });
    expect(rows).toBe(4);
    await engine.close();
  });

  it('keeps the running state keepStateMs after going idle, then frees it', async () => {
    const before = numTensors();
    const engine = new Engine(model, { maxBatch: 2, maxLen: 32, keepStateMs: 200 });
    const prompt = tok.encode('Opposite of hot:');
    await engine.complete({ prompt, maxTokens: 2 });
    await engine.idle();
    expect(engine.hasState).toBe(true); // kept for the next request
    await engine.complete({ prompt, maxTokens: 2 });
    expect(engine.stats().prefills).toBe(2);
    // Freed once idle for keepStateMs (polled: no timing assertion).
    for (let i = 0; i < 600 && engine.hasState; i++) await new Promise((r) => setTimeout(r, 50));
    expect(engine.hasState).toBe(false);
    expect(numTensors()).toBe(before);
    await engine.close();
  });

  it('a newcomer whose batched prefill fails fails alone; the others are served', async () => {
    const engine = new Engine(model, { maxBatch: 4, maxLen: 64 });
    const prompts = PROMPTS.slice(0, 3).map((p) => tok.encode(p));
    const good = tenants.find((t) => t.adapter !== null)?.adapter ?? null;
    // The first request is prefilled at once (alone); the next two wait and are prefilled
    // together. A tenant's adapter disposed after `submit` accepted it makes that prefill throw.
    const doomed = await bundledAdapter('pos', model);
    const first = engine.complete({ prompt: prompts[2] as number[], maxTokens: 3 });
    const results = await Promise.allSettled([
      engine.complete({ prompt: prompts[0] as number[], adapter: good, maxTokens: 3 }),
      (() => {
        const h = engine.complete({
          prompt: prompts[1] as number[],
          adapter: doomed,
          maxTokens: 3,
        });
        doomed.dispose();
        return h;
      })(),
      first,
    ]);
    expect(results[0]?.status).toBe('fulfilled');
    expect(results[2]?.status).toBe('fulfilled');
    expect(results[1]?.status).toBe('rejected');
    for (const i of [0, 2]) {
      const r = results[i] as PromiseFulfilledResult<CompletionResult>;
      const adapter = i === 0 ? good : null;
      expect(r.value.tokens).toEqual(await alone(model, adapter, prompts[i] as number[], 3, stops));
    }
    await engine.close();
  });

  it('logprobs are the log-softmax of the teacher-forced logits, with the top alternatives', async () => {
    const engine = new Engine(model, { maxBatch: 2, maxLen: 64 });
    const prompt = tok.encode('Opposite of hot:');
    const adapter = tenants[1]?.adapter ?? null;
    const r = await engine.complete({
      prompt,
      adapter,
      maxTokens: 6,
      temperature: 0.9,
      seed: 3,
      stopTokens: [],
      logprobs: 4,
    });
    expect(r.logprobs?.length).toBe(6);
    // Reference: one teacher-forced forward pass over prompt + new tokens (except the last).
    const ids = [...prompt, ...r.tokens.slice(0, -1)];
    // PARA pools the prompt only: the forward pass is told where the prompt ends.
    const logits = model.forward([ids], {
      ...(adapter === null
        ? {}
        : { adapter: adapter.attach(model), request: { promptLengths: [prompt.length] } }),
    });
    const V = model.config.vocabSize;
    const all = (await logits.data()) as Float32Array;
    logits.dispose();
    for (const [s, lp] of (r.logprobs ?? []).entries()) {
      const row = Array.from(all.subarray((prompt.length - 1 + s) * V, (prompt.length + s) * V));
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
      expect(lp.token).toBe(r.tokens[s]);
      expect(lp.logprob).toBeCloseTo((row[lp.token] as number) - lse, 3);
      const order = row.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
      expect(lp.top.map((t) => t.token)).toEqual(order.slice(0, 4).map((o) => o[1]));
      expect(lp.top[0]?.logprob).toBeCloseTo((order[0]?.[0] as number) - lse, 3);
    }
    expect(() => engine.submit({ prompt, logprobs: 21 })).toThrow(/logprobs/);
    expect((await engine.complete({ prompt, maxTokens: 2 })).logprobs).toBeUndefined();
    await engine.close();
  });

  it('keeps tf.memory().numTensors flat over a few hundred requests of random tenants', async () => {
    const engine = new Engine(model, { maxBatch: 6, maxLen: 32, maxQueue: 1000, keepStateMs: 0 });
    const prompts = PROMPTS.map((p) => tok.encode(p));
    await engine.complete({ prompt: prompts[0] as number[], maxTokens: 1 });
    await engine.idle();
    const before = numTensors();
    let seed = 1;
    const rnd = (k: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % k;
    };
    const all: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      const t = tenants[rnd(tenants.length)] as (typeof tenants)[number];
      const ctl = new AbortController();
      const p = engine
        .complete({
          prompt: prompts[rnd(prompts.length)] as number[],
          adapter: t.adapter,
          maxTokens: 1 + rnd(4),
          temperature: rnd(2) === 0 ? 0 : 0.8,
          seed: i,
          signal: ctl.signal,
        })
        .then((r) => r.finishReason);
      if (i % 37 === 5) setTimeout(() => ctl.abort(), 1);
      all.push(p);
      if (i % 50 === 49) await Promise.all(all.slice(-50));
    }
    const reasons = await Promise.all(all);
    expect(reasons.filter((r) => r === 'cancelled').length).toBeLessThan(20);
    await engine.idle();
    expect(engine.hasState).toBe(false);
    expect(numTensors()).toBe(before);
    expect(engine.stats().finished).toBe(301);
    await engine.close();
  });
});
