/**
 * An adapter directory never holds a config and weights of different saves (issue 13): the
 * weights record their config's sha256, so a save interrupted between the two files (or a config
 * edited afterwards) is a typed error on load, while cosmetic edits, PEFT's own files and a
 * plain round trip load as before; a crashed save's temp directory is ignored and cleaned up.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isParaError, openSafetensorsFile, writeSafetensorsFile } from '@para/core/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalConfigJson, sha256Hex } from '../src/io/stamp';
import {
  type AnyAdapter,
  adapterFromBytes,
  CONFIG_STAMP_KEY,
  LoraAdapter,
  loadAdapter,
  saveAdapter,
  saveAdapterTestHooks,
  serializeAdapter,
} from '../src/node';
import { caught, useBackend } from './helpers/backends';
import { randomize, tinyModel } from './helpers/models';

async function values(a: AnyAdapter): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [n, v] of a.namedParameters()) out[n] = (await v.data()) as Float32Array;
  return out;
}

describe('atomic adapter directories', () => {
  let dir: string;
  beforeAll(async () => {
    await useBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'para-atomic-save-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('sha256 agrees with node:crypto (empty, short, multi-block, non-ASCII)', () => {
    for (const s of ['', 'abc', 'x'.repeat(55), 'y'.repeat(56), 'z'.repeat(1000), 'é∑😀']) {
      expect(sha256Hex(s)).toBe(createHash('sha256').update(s, 'utf8').digest('hex'));
    }
  });

  it('round trip is exact, into a new and into an existing directory (which keeps its other files)', async () => {
    const model = tinyModel();
    const a = LoraAdapter.create(model.config, { r: 3, lora_alpha: 6 }, { seed: 1 });
    randomize(a, 'a', 0.4);
    const fresh = join(dir, 'fresh');
    await saveAdapter(a, fresh);
    const back = await loadAdapter(fresh, model);
    expect(await values(back)).toEqual(await values(a));
    back.dispose();

    const out = join(dir, 'out');
    await mkdir(out);
    await writeFile(join(out, 'metrics.jsonl'), '{"type":"step"}\n');
    await saveAdapter(a, out);
    randomize(a, 'b', 0.4);
    await saveAdapter(a, out);
    const again = await loadAdapter(out, model);
    expect(await values(again)).toEqual(await values(a));
    again.dispose();
    expect((await readdir(out)).sort()).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'metrics.jsonl',
    ]);
    // no temp directory left beside it
    expect((await readdir(dir)).filter((e) => e.startsWith('.'))).toEqual([]);
    const st = await openSafetensorsFile(join(out, 'adapter_model.safetensors'));
    const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
    expect(st.metadata[CONFIG_STAMP_KEY]).toBe(sha256Hex(canonicalConfigJson(cfg)));
    await st.close();
    a.dispose();
    model.dispose();
  });

  it('weights of save A with the config of save B (same shapes): a typed error naming both files', async () => {
    const model = tinyModel();
    const a = LoraAdapter.create(model.config, { r: 3, lora_alpha: 6 }, { seed: 1 });
    const b = LoraAdapter.create(model.config, { r: 3, lora_alpha: 24 }, { seed: 2 });
    await saveAdapter(a, join(dir, 'A'));
    await saveAdapter(b, join(dir, 'B'));
    const mixed = join(dir, 'mixed');
    await mkdir(mixed);
    await copyFile(
      join(dir, 'A', 'adapter_model.safetensors'),
      join(mixed, 'adapter_model.safetensors'),
    );
    await copyFile(join(dir, 'B', 'adapter_config.json'), join(mixed, 'adapter_config.json'));
    const e = await caught(() => loadAdapter(mixed, model));
    expect(isParaError(e, 'INVALID_CONFIG'), String(e)).toBe(true);
    const pe = e as { file?: string; field?: string; message: string; expected?: string };
    expect(pe.file).toBe(join(mixed, 'adapter_config.json'));
    expect(pe.field).toBe(CONFIG_STAMP_KEY);
    expect(pe.message).toContain('adapter_model.safetensors');
    expect(pe.message).toMatch(/interrupted/);
    expect(pe.message).toMatch(/edited/);
    expect(pe.message).toMatch(/Save the adapter again/);
    // the universal loader (bytes) checks it too
    const cfgB = await readFile(join(mixed, 'adapter_config.json'), 'utf8');
    const wA = await readFile(join(mixed, 'adapter_model.safetensors'));
    const e2 = await caught(() => adapterFromBytes(cfgB, wA, model));
    expect(isParaError(e2, 'INVALID_CONFIG'), String(e2)).toBe(true);
    a.dispose();
    b.dispose();
    model.dispose();
  });

  it('a save that fails between the two renames leaves a directory that load refuses (never a silent mix)', async () => {
    const model = tinyModel();
    const a = LoraAdapter.create(model.config, { r: 3, lora_alpha: 6 }, { seed: 1 });
    const b = LoraAdapter.create(model.config, { r: 3, lora_alpha: 12 }, { seed: 3 });
    const out = join(dir, 'crash');
    await saveAdapter(a, out);
    saveAdapterTestHooks.afterWeights = () => {
      throw new Error('simulated crash');
    };
    try {
      await expect(saveAdapter(b, out)).rejects.toThrow(/simulated crash/);
    } finally {
      delete saveAdapterTestHooks.afterWeights;
    }
    const e = await caught(() => loadAdapter(out, model));
    expect(isParaError(e, 'INVALID_CONFIG'), String(e)).toBe(true);
    // the next save repairs it
    await saveAdapter(b, out);
    const back = await loadAdapter(out, model);
    expect((back.config as { lora_alpha?: number }).lora_alpha).toBe(12);
    expect(await values(back)).toEqual(await values(b));
    back.dispose();
    a.dispose();
    b.dispose();
    model.dispose();
  });

  it('cosmetic edits (base_model_name_or_path, revision, inference_mode) keep it loadable; other edits do not', async () => {
    const model = tinyModel();
    const a = LoraAdapter.create(model.config, { r: 2, lora_alpha: 4 }, { seed: 1 });
    const out = join(dir, 'edited');
    await saveAdapter(a, out);
    const file = join(out, 'adapter_config.json');
    const cfg = JSON.parse(await readFile(file, 'utf8'));
    await writeFile(
      file,
      JSON.stringify({
        ...cfg,
        base_model_name_or_path: 'someone/else',
        revision: 'main',
        inference_mode: false,
      }),
    );
    const ok = await loadAdapter(out, model);
    expect(await values(ok)).toEqual(await values(a));
    ok.dispose();
    await writeFile(file, JSON.stringify({ ...cfg, lora_alpha: 99 }, null, 2));
    const e = await caught(() => loadAdapter(out, model));
    expect(isParaError(e, 'INVALID_CONFIG'), String(e)).toBe(true);
    a.dispose();
    model.dispose();
  });

  it('weights without a stamp (PEFT, serializeAdapter) load as before, whatever the config says', async () => {
    const model = tinyModel();
    const a = LoraAdapter.create(model.config, { r: 2, lora_alpha: 4 }, { seed: 1 });
    randomize(a, 'c', 0.4);
    const out = join(dir, 'peft');
    await mkdir(out);
    const bytes = await serializeAdapter(a);
    await writeFile(join(out, 'adapter_model.safetensors'), bytes.weights);
    await writeFile(
      join(out, 'adapter_config.json'),
      JSON.stringify({ ...JSON.parse(bytes.config), lora_alpha: 8 }),
    );
    const back = await loadAdapter(out, model);
    expect((back.config as { lora_alpha?: number }).lora_alpha).toBe(8);
    expect(await values(back)).toEqual(await values(a));
    back.dispose();
    a.dispose();
    model.dispose();
  });

  it("a crashed save's temp directory is ignored by loading and removed by the next save", async () => {
    const model = tinyModel();
    const a = LoraAdapter.create(model.config, { r: 2 }, { seed: 1 });
    const out = join(dir, 'leftover');
    await saveAdapter(a, out);
    const junk = join(dir, '.leftover.saving-dead');
    await mkdir(junk);
    await writeSafetensorsFile(join(junk, 'adapter_model.safetensors'), {}, {});
    await writeFile(join(junk, 'adapter_config.json'), '{"peft_type": "LORA", "r": 64}');
    const back = await loadAdapter(out, model);
    expect((back.config as { r?: number }).r).toBe(2);
    back.dispose();
    await saveAdapter(a, out);
    expect((await readdir(dir)).includes('.leftover.saving-dead')).toBe(false);
    a.dispose();
    model.dispose();
  });
});
