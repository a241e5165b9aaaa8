/**
 * Soak: ≥ 2,000 short requests (PARA_SOAK_REQUESTS to change) over loopback HTTP with random
 * tenants (bare, the four bundled PARA adapters, a LoRA and an IA3 upload), streamed and not,
 * some aborted by their client: zero failures, and tf.memory().numTensors and RSS flat (the
 * tensor count exactly back to its baseline once idle; RSS within a bound after warm-up).
 */

import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serializeAdapter } from '@para/adapters';
import type { CausalLM } from '@para/model';
import type { ParaTokenizer } from '@para/tokenizer';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AdapterRegistry, createServer, directorySource, type ParaServer } from '../src/node';
import {
  ADAPTERS,
  BUNDLED,
  backbone,
  ia3Tenant,
  loraTenant,
  numTensors,
  startBackend,
} from './helpers';

const N = Number(process.env.PARA_SOAK_REQUESTS ?? 2000);
const CONCURRENCY = 16;
let model: CausalLM;
let tok: ParaTokenizer;
let root: string;
let server: ParaServer;
let url: string;

beforeAll(async () => {
  await startBackend();
  ({ model, tokenizer: tok } = await backbone());
  root = await mkdtemp(join(tmpdir(), 'para-serve-soak-'));
  for (const n of BUNDLED) await cp(join(ADAPTERS, n), join(root, n), { recursive: true });
  server = await createServer({
    model,
    tokenizer: tok,
    registry: new AdapterRegistry(model, directorySource(root)),
    engine: { maxBatch: 8, maxLen: 48, maxQueue: 256, keepStateMs: 0 },
  });
  url = await server.listen({ port: 0 });
  for (const [name, make] of [
    ['lora', () => loraTenant(model, 9)],
    ['ia3', () => ia3Tenant(model)],
  ] as const) {
    const a = make();
    const { config, weights } = await serializeAdapter(a);
    a.dispose();
    const res = await fetch(`${url}/v1/adapters`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name,
        adapter_config: JSON.parse(config),
        adapter_model: Buffer.from(weights).toString('base64'),
      }),
    });
    expect(res.status).toBe(200);
  }
});

afterAll(async () => {
  await server?.close();
  server?.registry?.dispose();
  model?.dispose();
  await rm(root, { recursive: true, force: true });
});

it(`serves ${N} short requests of random tenants with no failure; tensors and RSS stay flat`, async () => {
  const tenants = ['para-base', ...BUNDLED, 'lora', 'ia3'];
  const prompts = [
    'Opposite of hot:',
    'A cat is a',
    '2 + 3 =',
    'Part of speech of run:',
    'The word dog is a',
  ];
  let seed = 7;
  const rnd = (k: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % k;
  };
  const one = async (i: number): Promise<string> => {
    const stream = rnd(2) === 0;
    const ctl = new AbortController();
    const abort = i % 97 === 13; // a client that goes away mid-request
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: tenants[rnd(tenants.length)],
        prompt: prompts[rnd(prompts.length)],
        max_tokens: 1 + rnd(4),
        temperature: rnd(3) === 0 ? 0 : 0.8,
        seed: i,
        stream,
      }),
      signal: ctl.signal,
    });
    if (res.status !== 200) return `status ${res.status}: ${await res.text()}`;
    if (abort) {
      ctl.abort();
      return 'aborted';
    }
    const text = await res.text();
    if (stream && !text.trimEnd().endsWith('data: [DONE]')) return `bad stream: ${text}`;
    if (!stream && !(JSON.parse(text) as { choices?: unknown[] }).choices)
      return `bad body: ${text}`;
    return 'ok';
  };
  const run = async (from: number, to: number): Promise<string[]> => {
    const out: string[] = [];
    let next = from;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < to) {
          const i = next++;
          out.push(await one(i).catch((e) => `threw: ${String(e)}`));
        }
      }),
    );
    return out;
  };
  // Warm-up: every tenant loaded, the wasm heap at its working size.
  const warm = await run(0, Math.min(200, N));
  await server.engine.idle();
  const tensors = numTensors();
  const rss = process.memoryUsage().rss;
  const rest = await run(warm.length, N);
  const outcomes = [...warm, ...rest];
  expect(outcomes.length).toBe(N);
  expect(outcomes.filter((o) => o !== 'ok' && o !== 'aborted')).toEqual([]);
  for (let i = 0; i < 200 && server.engine.stats().running > 0; i++)
    await new Promise((r) => setTimeout(r, 25));
  await server.engine.idle();
  expect(numTensors()).toBe(tensors);
  expect(server.engine.hasState).toBe(false);
  const grown = process.memoryUsage().rss - rss;
  expect(grown).toBeLessThan(128 * 1024 * 1024);
}, 900_000);
