/**
 * The adapter registry over a directory of PEFT adapters: names validated (no path traversal,
 * symlinks out of the root refused), loaded on first use and shared, validated against the
 * base model (typed errors), a memory budget with LRU eviction of idle adapters only,
 * runtime load / unload, and loading that does not block other tenants' decoding.
 */

import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AnyAdapter, Ia3Adapter, LoraAdapter } from '@para/adapters';
import { saveAdapter } from '@para/adapters/node';
import { isParaError } from '@para/core';
import { type CausalLM, createConfig } from '@para/model';
import type { ParaTokenizer } from '@para/tokenizer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdapterRegistry,
  adapterBytes,
  checkAdapterName,
  directorySource,
  Engine,
  memorySource,
  resolveAdapterDir,
} from '../src/node';
import { ADAPTERS, BACKBONE, BUNDLED, backbone, numTensors, startBackend } from './helpers';

let model: CausalLM;
let tok: ParaTokenizer;
let root: string;
let outside: string;

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isParaError(e)) return e.code;
    throw e;
  }
  return 'OK';
}

beforeAll(async () => {
  await startBackend();
  ({ model, tokenizer: tok } = await backbone());
  root = await mkdtemp(join(tmpdir(), 'para-serve-reg-'));
  outside = await mkdtemp(join(tmpdir(), 'para-serve-out-'));
  for (const n of BUNDLED) await cp(join(ADAPTERS, n), join(root, n), { recursive: true });
  // A LoRA of the right shapes, and an adapter made for another backbone (wrong shapes).
  const lora = LoraAdapter.create(model.config, { r: 2 }, { seed: 1 });
  await saveAdapter(lora, join(root, 'lora-a'));
  lora.dispose();
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
  await saveAdapter(other, join(root, 'wrong-shapes'));
  other.dispose();
  await mkdir(join(root, 'broken'));
  await writeFile(join(root, 'broken', 'adapter_config.json'), '{"peft_type": "PARA", "r": ');
  await writeFile(join(root, 'broken', 'adapter_model.safetensors'), 'not safetensors');
  // A symbolic link out of the root, to a real adapter.
  await cp(join(ADAPTERS, 'pos'), join(outside, 'pos'), { recursive: true });
  await symlink(join(outside, 'pos'), join(root, 'escape'));
  await writeFile(join(root, 'README.md'), 'not an adapter');
});

afterAll(async () => {
  model.dispose();
  await rm(root, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

describe('adapter names', () => {
  it('accepts letters, digits, . _ - and refuses anything that could leave the root', async () => {
    for (const ok of ['pos', 'tenant-1', 'a.b_c', 'A9']) expect(checkAdapterName(ok)).toBe(ok);
    const bad = [
      '',
      '..',
      '../backbone',
      '../../etc/passwd',
      'a/b',
      'a\\b',
      '/etc',
      '.hidden',
      'a..b',
      'x'.repeat(129),
      'caf\u00e9',
      'a b',
      'a\u0000b',
      '%2e%2e',
    ];
    for (const b of bad) {
      expect(() => checkAdapterName(b), JSON.stringify(b)).toThrow(/not a valid adapter name/);
      expect(await code(resolveAdapterDir(root, b)), b).toBe('INVALID_ARGUMENT');
    }
    // Valid name, but a symlink whose target is outside the root.
    expect(await code(resolveAdapterDir(root, 'escape'))).toBe('INVALID_ARGUMENT');
    expect(await code(resolveAdapterDir(root, 'nope'))).toBe('FILE_NOT_FOUND');
    expect(await resolveAdapterDir(root, 'pos')).toMatch(/pos$/);
  });
});

describe('AdapterRegistry (directory source)', () => {
  it('lists adapters with their peft_type; loads on first use, validated; typed errors', async () => {
    const reg = new AdapterRegistry(model, directorySource(root, { baseModelName: BACKBONE }));
    const list = await reg.list();
    expect(list.map((a) => a.name)).toEqual([
      'antonym',
      'arithmetic',
      'broken',
      'category',
      'lora-a',
      'pos',
      'wrong-shapes',
    ]);
    expect(list.find((a) => a.name === 'pos')?.peftType).toBe('PARA');
    expect(list.find((a) => a.name === 'lora-a')?.peftType).toBe('LORA');
    expect(list.every((a) => !a.loaded)).toBe(true);
    expect(await code(reg.acquire('wrong-shapes'))).toMatch(/SHAPE_MISMATCH|INVALID_CONFIG/);
    expect(await code(reg.acquire('broken'))).toMatch(
      /INVALID_JSON|INVALID_CONFIG|INVALID_HEADER|FILE_TRUNCATED/,
    );
    expect(await code(reg.acquire('nope'))).toBe('FILE_NOT_FOUND');
    expect(await code(reg.acquire('../assets'))).toBe('INVALID_ARGUMENT');
    expect(await code(reg.acquire('escape'))).toBe('INVALID_ARGUMENT');
    // Concurrent first uses share one load.
    const [a, b] = await Promise.all([reg.acquire('pos'), reg.acquire('pos')]);
    expect(a.adapter).toBe(b.adapter);
    expect(reg.stats().loads).toBe(1);
    a.release();
    b.release();
    expect(reg.isLoaded('pos')).toBe(true);
    expect(reg.unload('pos')).toBe(true);
    expect(reg.isLoaded('pos')).toBe(false);
    expect(a.adapter.isDisposed).toBe(true);
    reg.dispose();
  });

  it('keeps within the memory budget: LRU idle adapters are evicted, leased ones never', async () => {
    const probe = new AdapterRegistry(model, directorySource(root));
    const one = adapterBytes((await probe.acquire('pos')).adapter);
    probe.dispose();
    const before = numTensors();
    const reg = new AdapterRegistry(model, directorySource(root), { maxBytes: 2.5 * one });
    const held = await reg.acquire('antonym'); // leased all along
    (await reg.acquire('arithmetic')).release();
    (await reg.acquire('category')).release(); // over budget: arithmetic (LRU idle) goes
    expect(reg.isLoaded('antonym')).toBe(true);
    expect(reg.isLoaded('arithmetic')).toBe(false);
    expect(reg.isLoaded('category')).toBe(true);
    expect(reg.stats().evictions).toBe(1);
    (await reg.acquire('pos')).release(); // category goes (antonym is leased)
    expect(reg.isLoaded('antonym')).toBe(true);
    expect(reg.isLoaded('category')).toBe(false);
    expect(reg.stats().bytes).toBeLessThanOrEqual(2.5 * one);
    // Unloading a leased adapter waits for its last lease.
    expect(reg.unload('antonym')).toBe(true);
    expect(held.adapter.isDisposed).toBe(false);
    held.release();
    expect(held.adapter.isDisposed).toBe(true);
    expect(await reg.load('pos')).toMatchObject({ name: 'pos', peftType: 'PARA', loaded: true });
    reg.dispose();
    expect(numTensors()).toBe(before);
    // An adapter larger than the whole budget is refused.
    const tiny = new AdapterRegistry(model, directorySource(root), { maxBytes: 16 });
    expect(await code(tiny.acquire('pos'))).toBe('LIMIT_EXCEEDED');
    expect(numTensors()).toBe(before);
  });

  it("a slow adapter load does not block other tenants' decoding", async () => {
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const made: AnyAdapter[] = [];
    const reg = new AdapterRegistry(
      model,
      memorySource({
        slow: async () => {
          await gate;
          const a = LoraAdapter.create(model.config, { r: 2 }, { seed: 3 });
          made.push(a);
          return a;
        },
      }),
    );
    const engine = new Engine(model, { maxBatch: 2, maxLen: 64 });
    const loading = reg.acquire('slow');
    // The bare tenant is served to the end while `slow` is still loading.
    const r = await engine.complete({ prompt: tok.encode('A cat is a'), maxTokens: 8 });
    expect(r.completionTokens).toBeGreaterThan(0);
    expect(made.length).toBe(0);
    open();
    const lease = await loading;
    const r2 = await engine.complete({
      prompt: tok.encode('A cat is a'),
      adapter: lease.adapter,
      maxTokens: 3,
    });
    expect(r2.completionTokens).toBe(3);
    lease.release();
    await engine.close();
    reg.dispose();
  });
});
