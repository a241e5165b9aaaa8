/**
 * Per-tenant keys: each key may use only its models (403 for the others, even unknown ones, so
 * a key learns nothing of other tenants), GET /v1/models lists only those, adapter management
 * needs an admin key; the keys file is validated with typed errors.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isParaError } from '@para/core';
import type { CausalLM } from '@para/model';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdapterRegistry,
  createServer,
  directorySource,
  loadKeysFile,
  type ParaServer,
  parseKeys,
} from '../src/node';
import { ADAPTERS, backbone, startBackend } from './helpers';

let model: CausalLM;
let server: ParaServer;
let url: string;
let dir: string;

const client = (apiKey: string) =>
  new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });

beforeAll(async () => {
  await startBackend();
  const b = await backbone();
  model = b.model;
  dir = await mkdtemp(join(tmpdir(), 'para-serve-keys-'));
  const file = join(dir, 'keys.json');
  await writeFile(
    file,
    JSON.stringify({
      keys: [
        { key: 'sk-tenant-pos', models: ['pos'] },
        { key: 'sk-tenant-two', models: ['antonym', 'para-base'] },
        { key: 'sk-operator', models: '*', admin: true },
      ],
    }),
  );
  server = await createServer({
    model,
    tokenizer: b.tokenizer,
    registry: new AdapterRegistry(model, directorySource(ADAPTERS)),
    engine: { maxBatch: 2, maxLen: 64 },
    keys: await loadKeysFile(file),
    apiKey: 'sk-the-admin',
  });
  url = await server.listen({ port: 0 });
});

afterAll(async () => {
  await server.close();
  server.registry?.dispose();
  model.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('keys file', () => {
  it('a key uses its own models only; 403 otherwise; /v1/models lists its models', async () => {
    const pos = client('sk-tenant-pos');
    expect((await pos.models.list()).data.map((m) => m.id)).toEqual(['pos']);
    const r = await pos.completions.create({ model: 'pos', prompt: 'A cat is a', max_tokens: 2 });
    expect(r.choices[0]?.text.length).toBeGreaterThan(0);
    for (const model of ['antonym', 'para-base', 'no-such-adapter']) {
      await expect(
        pos.completions.create({ model, prompt: 'x', max_tokens: 1 }),
      ).rejects.toMatchObject({ status: 403, type: 'permission_error' });
    }
    const two = client('sk-tenant-two');
    expect((await two.models.list()).data.map((m) => m.id)).toEqual(['para-base', 'antonym']);
    await expect(
      two.chat.completions.create({ model: 'pos', messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toMatchObject({ status: 403 });
    await expect(client('sk-nobody-at-all').models.list()).rejects.toMatchObject({ status: 401 });
    // Admin keys see everything; only they manage adapters.
    expect((await client('sk-operator').models.list()).data.length).toBe(5);
    expect((await client('sk-the-admin').models.list()).data.length).toBe(5);
    const post = (key: string) =>
      fetch(`${url}/v1/adapters`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ name: 'category' }),
      });
    expect((await post('sk-tenant-pos')).status).toBe(403);
    expect((await post('sk-operator')).status).toBe(200);
    const del = await fetch(`${url}/v1/adapters/category`, {
      method: 'DELETE',
      headers: { authorization: 'Bearer sk-tenant-two' },
    });
    expect(del.status).toBe(403);
    // /health and /metrics stay open (bind to loopback, or firewall them).
    expect((await fetch(`${url}/health`)).status).toBe(200);
  });

  it('refuses bad keys files with typed errors naming the field', async () => {
    const bad: [string, string][] = [
      ['{', 'INVALID_JSON'],
      ['[]', 'INVALID_CONFIG'],
      ['{"keys": [{"key": "short", "models": "*"}]}', 'INVALID_CONFIG'],
      ['{"keys": [{"key": "sk-aaaaaaaa", "models": "pos"}]}', 'INVALID_CONFIG'],
      ['{"keys": [{"key": "sk-aaaaaaaa", "models": ["pos"], "admin": "yes"}]}', 'INVALID_CONFIG'],
      [
        '{"keys": [{"key": "sk-aaaaaaaa", "models": ["a"]}, {"key": "sk-aaaaaaaa", "models": ["b"]}]}',
        'INVALID_CONFIG',
      ],
    ];
    for (const [text, code] of bad) {
      let err: unknown;
      try {
        parseKeys(text, 'keys.json');
      } catch (e) {
        err = e;
      }
      expect(isParaError(err), text).toBe(true);
      expect((err as { code: string }).code, text).toBe(code);
      expect(String((err as Error).message)).toContain('keys.json');
    }
    await expect(loadKeysFile(join(dir, 'missing.json'))).rejects.toMatchObject({
      code: 'FILE_NOT_FOUND',
    });
  });
});
