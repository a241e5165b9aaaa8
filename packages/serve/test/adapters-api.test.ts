/**
 * Runtime adapter management over HTTP: POST /v1/adapters loads one of the root by name or
 * uploads the two PEFT files (validated against the backbone, saved under the root, served at
 * once); DELETE /v1/adapters/{name} unloads it. Names are validated (no path traversal).
 */

import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AnyAdapter, Ia3Adapter, serializeAdapter } from '@para/adapters';
import { type CausalLM, createConfig } from '@para/model';
import type { ParaTokenizer } from '@para/tokenizer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdapterRegistry, createServer, directorySource, type ParaServer } from '../src/node';
import { ADAPTERS, backbone, loraTenant, startBackend } from './helpers';

let model: CausalLM;
let tok: ParaTokenizer;
let root: string;
let server: ParaServer;
let url: string;
let lora: AnyAdapter;

async function call(method: string, path: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function upload(adapter: AnyAdapter) {
  const { config, weights } = await serializeAdapter(adapter);
  return {
    adapter_config: JSON.parse(config) as Record<string, unknown>,
    adapter_model: Buffer.from(weights).toString('base64'),
  };
}

beforeAll(async () => {
  await startBackend();
  ({ model, tokenizer: tok } = await backbone());
  root = await mkdtemp(join(tmpdir(), 'para-serve-api-'));
  for (const n of ['pos', 'antonym'])
    await cp(join(ADAPTERS, n), join(root, n), { recursive: true });
  server = await createServer({
    model,
    tokenizer: tok,
    registry: new AdapterRegistry(model, directorySource(root)),
    engine: { maxBatch: 2, maxLen: 64 },
  });
  url = await server.listen({ port: 0 });
  lora = loraTenant(model, 5);
});

afterAll(async () => {
  await server.close();
  server.registry?.dispose();
  lora.dispose();
  model.dispose();
  await rm(root, { recursive: true, force: true });
});

describe('POST/DELETE /v1/adapters', () => {
  it('loads by name, unloads, and the next request loads it again', async () => {
    let r = await call('POST', '/v1/adapters', { name: 'pos' });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ id: 'pos', peft_type: 'PARA', loaded: true });
    expect(server.registry?.isLoaded('pos')).toBe(true);
    r = await call('DELETE', '/v1/adapters/pos');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ id: 'pos', unloaded: true });
    expect(server.registry?.isLoaded('pos')).toBe(false);
    r = await call('POST', '/v1/completions', {
      model: 'pos',
      prompt: 'A cat is a',
      max_tokens: 2,
    });
    expect(r.status).toBe(200);
    expect(server.registry?.isLoaded('pos')).toBe(true);
    r = await call('DELETE', '/v1/adapters/no-such');
    expect(r.status).toBe(404);
    r = await call('DELETE', `/v1/adapters/${encodeURIComponent('../pos')}`);
    expect(r.status).toBe(400);
    r = await call('POST', '/v1/adapters', { name: 'no-such' });
    expect(r.status).toBe(404);
    for (const name of ['../pos', '..', 'a/b', '/tmp']) {
      r = await call('POST', '/v1/adapters', { name });
      expect(r.status, name).toBe(400);
      expect((r.json.error as { param: string }).param).toBe('name');
    }
  });

  it('uploads a new adapter: validated, saved under the root, served with its own text', async () => {
    const body = { name: 'uploaded-lora', ...(await upload(lora)) };
    let r = await call('POST', '/v1/adapters', body);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toMatchObject({ id: 'uploaded-lora', peft_type: 'LORA', loaded: true });
    expect((await readdir(join(root, 'uploaded-lora'))).sort()).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
    ]);
    const want = await model.generate('Opposite of hot:', {
      maxNewTokens: 8,
      adapter: lora.attach(model),
      request: {},
    });
    r = await call('POST', '/v1/completions', {
      model: 'uploaded-lora',
      prompt: 'Opposite of hot:',
      max_tokens: 8,
      temperature: 0,
    });
    expect((r.json.choices as { text: string }[])[0]?.text).toBe(want);
    const models = await call('GET', '/v1/models');
    expect((models.json.data as { id: string }[]).map((m) => m.id)).toContain('uploaded-lora');
    // The name is taken now; a new name is needed.
    r = await call('POST', '/v1/adapters', body);
    expect(r.status).toBe(400);
  });

  it('refuses uploads that do not fit the backbone or are malformed (400, nothing saved)', async () => {
    const other = Ia3Adapter.create(
      createConfig({
        vocabSize: 64,
        hiddenSize: 32,
        intermediateSize: 48,
        numLayers: 2,
        numHeads: 4,
        numKvHeads: 2,
        maxPositionEmbeddings: 64,
      }),
    );
    const wrong = await upload(other);
    other.dispose();
    const good = await upload(lora);
    const cases: Record<string, unknown>[] = [
      { name: 'wrong-shapes', ...wrong },
      { name: 'bad-base64', ...good, adapter_model: '%%%not base64%%%' },
      { name: 'garbage', ...good, adapter_model: Buffer.from('nope').toString('base64') },
      { name: 'half', adapter_config: good.adapter_config },
      { name: 'bad-config', ...good, adapter_config: { peft_type: 'NOPE' } },
      { name: '../escape', ...good },
      { name: 'pos', ...good },
    ];
    for (const c of cases) {
      const r = await call('POST', '/v1/adapters', c);
      expect(r.status, String(c.name)).toBe(400);
      expect(Object.keys(r.json)).toEqual(['error']);
    }
    expect((await readdir(root)).sort()).toEqual(['antonym', 'pos', 'uploaded-lora']);
  });
});
