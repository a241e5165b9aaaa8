/**
 * The web demo's engine in Node (the same code the Web Worker runs), on the bundled backbone
 * and adapters as the build copies them to public/static: the mixed side-by-side batch equals
 * each tenant alone, a fine-tune lowers the loss and its exported adapter reloads exactly, a
 * cancelled run adds nothing, and bad input is a ParaError naming the file, line or field.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ParaAdapter, serializeAdapter } from '@para/adapters';
import { initBackend, ParaError } from '@para/core/node';
import { createConfig } from '@para/model';
import { directoryAccess } from '@para/model/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Assets, BARE, Engine } from '../src/engine';
import { UPLOAD_LIMITS } from '../src/limits';

const staticDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'public', 'static');

function fileAssets(root: string): Assets {
  const abs = (p: string) => join(root, p);
  return {
    location: `${root}/`,
    dir: (p) => directoryAccess(abs(p)),
    text: (p) => readFile(abs(p), 'utf8'),
  };
}

let engine: Engine;

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  engine = await Engine.load(fileAssets(staticDir));
  await engine.loadBundledAdapters();
});

afterAll(() => engine?.dispose());

async function expectParaError(
  p: Promise<unknown>,
  code: string,
  ...mentions: string[]
): Promise<ParaError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(ParaError);
  const err = e as ParaError;
  expect(err.code).toBe(code);
  for (const m of mentions) expect(err.message).toContain(m);
  return err;
}

describe('web demo engine', () => {
  it('loads the bundled backbone and every bundled adapter as a tenant', () => {
    expect(engine.info.parameters).toBe(engine.model.numParameters);
    const names = engine.listTenants().map((t) => t.name);
    expect(names.length).toBeGreaterThanOrEqual(2);
    expect(names).toEqual(engine.manifest.adapters.map((a) => a.name));
    for (const t of engine.listTenants())
      expect(t).toMatchObject({ method: 'PARA', source: 'bundled' });
  });

  it('side by side in one mixed batch gives each tenant what it gives alone', async () => {
    const tenants = [BARE, ...engine.listTenants().map((t) => t.name)];
    const prompt = 'Is quart a kind of unit of measurement?';
    const side = await engine.sideBySide(prompt, tenants, 6);
    expect(side.outputs.map((o) => o.tenant)).toEqual(tenants);
    for (const o of side.outputs) {
      const alone = await engine.generate({ prompt, tenant: o.tenant, maxNewTokens: 6 });
      expect(o.ids, o.tenant).toEqual(alone.ids);
      expect(o.text).toBe(alone.text);
    }
    // The adapters change the output (else the comparison above proves nothing).
    expect(new Set(side.outputs.map((o) => o.text)).size).toBeGreaterThan(1);
  });

  it('streams the text so far after every token', async () => {
    const seen: string[] = [];
    const r = await engine.generate({
      prompt: 'dog (noun):',
      tenant: BARE,
      maxNewTokens: 5,
      onText: (t) => seen.push(t),
    });
    expect(seen).toHaveLength(r.ids.length);
    expect(seen.at(-1)).toBe(r.text);
  });

  it('fine-tunes a PARA tenant that lowers the loss; its download reloads with the same logits', async () => {
    // Eight examples, all in every batch: the same data each step, so the loss must go down.
    const jsonl = (await readFile(join(staticDir, 'tasks', 'category', 'train.jsonl'), 'utf8'))
      .split('\n')
      .slice(0, 8)
      .join('\n');
    const steps: number[] = [];
    const r = await engine.train({
      name: 'web-test',
      jsonl,
      file: 'category/train.jsonl',
      steps: 8,
      batchSize: 8,
      lr: 1e-2,
      onEvent: (e) => e.type === 'step' && steps.push(e.step),
    });
    expect(r.reason).toBe('done');
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(r.losses[7] as number).toBeLessThan(0.8 * (r.losses[0] as number));
    expect(r.tenant).toMatchObject({ name: 'web-test', method: 'PARA', source: 'trained' });

    const files = await engine.exportAdapter('web-test');
    expect(JSON.parse(files.config)).toMatchObject({
      peft_type: 'PARA',
      base_model_name_or_path: 'assets/backbone',
    });
    await engine.addAdapter('web-test-copy', files.config, files.weights, 'uploaded');
    const prompt = 'Is dirge a kind of fabric?';
    const a = await engine.logits(prompt, 'web-test');
    const b = await engine.logits(prompt, 'web-test-copy');
    const bare = await engine.logits(prompt, BARE);
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(Array.from(a)).not.toEqual(Array.from(bare));
    engine.removeTenant('web-test-copy');
  });

  it('a cancelled fine-tune adds no tenant', async () => {
    const jsonl = (await readFile(join(staticDir, 'tasks', 'arithmetic', 'train.jsonl'), 'utf8'))
      .split('\n')
      .slice(0, 32)
      .join('\n');
    const stop = new AbortController();
    const r = await engine.train({
      name: 'cancelled',
      jsonl,
      file: 'x.jsonl',
      steps: 50,
      batchSize: 4,
      signal: stop.signal,
      onEvent: (e) => e.type === 'step' && e.step === 2 && stop.abort(),
    });
    expect(r.tenant).toBeNull();
    expect(r.reason).toBe('stopped');
    expect(r.steps).toBeLessThan(50);
    expect(engine.listTenants().map((t) => t.name)).not.toContain('cancelled');
  });

  it('bench decodes exactly the asked number of tokens (no EOS stop) for each figure', async () => {
    const r = await engine.bench(3);
    for (const g of [r.cold, r.bare, r.adapted]) {
      expect(g?.ids).toHaveLength(3);
      expect(g?.tokensPerSec).toBeGreaterThan(0);
    }
    expect(r.bare.ids).toEqual(r.cold.ids);
    expect(r.mixed.rows).toBe(engine.listTenants().length + 1);
  });

  it('tensor count stays flat across generations and fine-tunes', async () => {
    await engine.generate({ prompt: '2+2=', tenant: 'arithmetic', maxNewTokens: 3 });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++)
      await engine.generate({ prompt: '2+2=', tenant: 'arithmetic', maxNewTokens: 3 });
    await engine.sideBySide('2+2=', [BARE, 'arithmetic'], 3);
    await engine.logits('2+2=', 'arithmetic');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('bad input: malformed JSONL names the file and line; a missing field too', async () => {
    await expectParaError(
      engine.train({
        name: 't1',
        jsonl: '{"prompt":"a","completion":" b"}\n{"prompt": oops}\n',
        file: 'upload.jsonl',
        steps: 1,
      }),
      'INVALID_JSON',
      'upload.jsonl',
      'line 2',
    );
    await expectParaError(
      engine.train({ name: 't1', jsonl: '{"prompt":"a"}\n', file: 'upload.jsonl', steps: 1 }),
      'INVALID_ARGUMENT',
      'upload.jsonl',
      'completion',
    );
    await expectParaError(
      engine.train({ name: 't1', jsonl: '\n\n', file: 'empty.jsonl', steps: 1 }),
      'INVALID_ARGUMENT',
      'empty.jsonl',
      'empty',
    );
    await expectParaError(
      engine.train({ name: 'bad name!', jsonl: '', file: 'x.jsonl', steps: 1 }),
      'INVALID_ARGUMENT',
      'name',
    );
    expect(engine.listTenants().map((t) => t.name)).not.toContain('t1');
  });

  it('hostile uploads: invalid UTF-8, oversize files and a catastrophic regex are typed errors', async () => {
    const bytes = new TextEncoder().encode(
      '{"prompt":"a","completion":" b"}\n{"prompt":"\u00e9","completion":" c"}\n',
    );
    const bad = new Uint8Array([...bytes.subarray(0, 40), 0xff, 0xfe, ...bytes.subarray(40)]);
    await expectParaError(
      engine.train({ name: 't2', jsonl: bad, file: 'latin1.jsonl', steps: 1 }),
      'INVALID_ENCODING',
      'latin1.jsonl',
      'line 2',
    );
    await expectParaError(
      engine.train({
        name: 't2',
        jsonl: new Uint8Array(UPLOAD_LIMITS.jsonl + 1),
        file: 'huge.jsonl',
        steps: 1,
      }),
      'LIMIT_EXCEEDED',
      'huge.jsonl',
    );
    const files = await engine.exportAdapter('arithmetic');
    await expectParaError(
      engine.addAdapter(
        'huge',
        files.config,
        new Uint8Array(UPLOAD_LIMITS.adapterWeights + 1),
        'uploaded',
        'huge-dir',
      ),
      'LIMIT_EXCEEDED',
      'huge-dir/adapter_model.safetensors',
    );
    // A LoRA config with a catastrophic target_modules pattern: refused at once, not a hang.
    const lora = JSON.stringify({ peft_type: 'LORA', r: 2, target_modules: '(.*.*)*X' });
    await expectParaError(
      engine.addAdapter('regex', lora, files.weights, 'uploaded', 'regex-dir'),
      'INVALID_CONFIG',
      'target_modules',
    );
    expect(engine.listTenants().map((t) => t.name)).not.toContain('t2');
  });

  it('bad input: an adapter made for another backbone is refused by name or by shape', async () => {
    const mine = await engine.exportAdapter(engine.listTenants()[0]?.name as string);
    const renamed = JSON.stringify({
      ...JSON.parse(mine.config),
      base_model_name_or_path: 'meta-llama/Llama-2-7b-hf',
    });
    await expectParaError(
      engine.addAdapter('other', renamed, mine.weights, 'uploaded', 'other-dir'),
      'INVALID_CONFIG',
      'base_model_name_or_path',
      'Llama-2-7b-hf',
    );

    const otherConfig = createConfig({
      vocabSize: 96,
      hiddenSize: 64,
      intermediateSize: 48,
      numLayers: 4,
      numHeads: 4,
      numKvHeads: 2,
    });
    const small = ParaAdapter.create(otherConfig, { r: 8 });
    const files = await serializeAdapter(small, { baseModelName: 'assets/backbone' });
    small.dispose();
    await expectParaError(
      engine.addAdapter('other', files.config, files.weights, 'uploaded', 'small-dir'),
      'SHAPE_MISMATCH',
      'small-dir',
      'para.down.weight',
    );
    await expectParaError(
      engine.addAdapter('other', '{"peft_type": "PARA", ', files.weights, 'uploaded', 'broken-dir'),
      'INVALID_JSON',
      'broken-dir/adapter_config.json',
    );
    const bundled = engine.listTenants()[0]?.name as string;
    await expectParaError(
      engine.addAdapter(bundled, mine.config, mine.weights, 'uploaded'),
      'INVALID_ARGUMENT',
      'bundled',
    );
    expect(engine.listTenants().map((t) => t.name)).not.toContain('other');
  });

  it('bad input: an unknown tenant, no tenant ticked, a bad token count', async () => {
    await expectParaError(
      engine.generate({ prompt: 'x', tenant: 'nobody' }),
      'INVALID_ARGUMENT',
      'tenant',
      'nobody',
    );
    await expectParaError(engine.sideBySide('x', []), 'INVALID_ARGUMENT', 'tenants');
    await expectParaError(
      engine.generate({ prompt: 'x', tenant: BARE, maxNewTokens: 0 }),
      'INVALID_ARGUMENT',
      'maxNewTokens',
    );
  });
});
