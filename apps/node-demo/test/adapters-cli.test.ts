/**
 * `para logits --adapter DIR [--prompt-len N]` and `para bench multitenant` end to end: PEFT
 * adapters give PEFT's logits through the CLI, a PARA adapter's vectors come from the first N
 * ids, typed errors exit with code 2, and the bench prints the promised JSON keys.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ParaAdapter, saveAdapter } from '@para/adapters/node';
import { initBackend, openSafetensorsFile } from '@para/core/node';
import { type CausalLM, createConfig, loadModel } from '@para/model/node';
import { loadTokenizer } from '@para/tokenizer/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appDir, expectTypedError, paraRunner, repo } from './helpers/cli';

const fixtures = join(appDir, '..', '..', 'packages', 'adapters', 'test', 'goldens', 'fixtures');
const base = join(fixtures, 'base');

const para = paraRunner('cpu');

function logitsOf(stdout: string): number[][] {
  return (JSON.parse(stdout) as { logits: number[][] }).logits;
}

let work: string;
let paraDir: string;
let model: CausalLM;
const IDS = [1, 17, 43, 9, 5, 64, 23, 80, 3];

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  work = await mkdtemp(join(tmpdir(), 'para-adapters-cli-'));
  model = await loadModel(base);
  // A PARA adapter away from the identity.
  const p = ParaAdapter.create(model.config, { r: 4, pooler: 'mean' }, { seed: 1 });
  for (const v of p.parameters()) {
    const t = tf.randomNormal(v.shape, 0, 0.3, 'float32', v.size);
    v.assign(t);
    t.dispose();
  }
  paraDir = join(work, 'para');
  await saveAdapter(p, paraDir);
  p.dispose();
});

afterAll(async () => {
  model.dispose();
  await rm(work, { recursive: true, force: true });
});

describe('para logits --adapter', () => {
  it('a LoRA and an IA3 adapter saved by Python PEFT give PEFT logits', async () => {
    const st = await openSafetensorsFile(join(fixtures, 'goldens.safetensors'));
    const V = model.config.vocabSize;
    for (const name of ['lora', 'ia3']) {
      const want = (await st.readData(`${name}_logits`)).data; // [2, T, V], row 0 = IDS
      const r = para([
        'logits',
        '--model',
        base,
        '--ids',
        IDS.join(','),
        '--adapter',
        join(fixtures, name),
      ]);
      expect(r.code, r.stderr).toBe(0);
      const got = logitsOf(r.stdout);
      expect(got).toHaveLength(IDS.length);
      let worst = 0;
      got.forEach((row, t) => {
        row.forEach((x, j) => {
          worst = Math.max(worst, Math.abs(x - (want[t * V + j] as number)));
        });
      });
      expect(worst, name).toBeLessThan(1e-4);
    }
    await st.close();
  });

  it('PARA: --prompt-len N pools over the first N ids (default all), as the library does', async () => {
    const { loadAdapter } = await import('@para/adapters/node');
    const adapter = await loadAdapter(paraDir, model);
    const lib = async (n: number) => {
      const t = model.forward([IDS], {
        adapter: adapter.attach(model),
        request: { promptLengths: [n] },
      });
      const d = await t.data();
      t.dispose();
      return d;
    };
    const V = model.config.vocabSize;
    const three = para([
      'logits',
      '--model',
      base,
      '--ids',
      IDS.join(','),
      '--adapter',
      paraDir,
      '--prompt-len',
      '3',
    ]);
    expect(three.code, three.stderr).toBe(0);
    const all = para(['logits', '--model', base, '--ids', IDS.join(','), '--adapter', paraDir]);
    const plain = para(['logits', '--model', base, '--ids', IDS.join(',')]);
    const want3 = await lib(3);
    const wantAll = await lib(IDS.length);
    expect(logitsOf(three.stdout).flat()).toEqual(Array.from(want3));
    expect(logitsOf(all.stdout).flat()).toEqual(Array.from(wantAll));
    // The pool differs (prompt of 3 vs 9 ids), and both differ from the bare model.
    expect(logitsOf(three.stdout)[8]).not.toEqual(logitsOf(all.stdout)[8]);
    expect(logitsOf(all.stdout)[8]).not.toEqual(logitsOf(plain.stdout)[8]);
    expect((logitsOf(three.stdout)[0] as number[]).length).toBe(V);
    adapter.dispose();
  });

  it('bad --prompt-len and mismatched adapters are typed errors (exit 2)', () => {
    expectTypedError(
      para(['logits', '--model', base, '--ids', '1,2,3', '--prompt-len', '2']),
      'INVALID_ARGUMENT',
      '--prompt-len',
      '--adapter',
    );
    expectTypedError(
      para([
        'logits',
        '--model',
        base,
        '--ids',
        '1,2,3',
        '--adapter',
        paraDir,
        '--prompt-len',
        '4',
      ]),
      'INVALID_ARGUMENT',
      '--prompt-len',
    );
    expectTypedError(
      para([
        'logits',
        '--model',
        base,
        '--ids',
        '1,2,3',
        '--adapter',
        paraDir,
        '--prompt-len',
        '0',
      ]),
      'INVALID_ARGUMENT',
      '--prompt-len',
    );
    expectTypedError(
      para(['logits', '--model', base, '--ids', '1,2,3', '--adapter', join(work, 'missing')]),
      'FILE_NOT_FOUND',
      'missing',
    );
  });

  it('an adapter whose base_model_name_or_path names another model loads with a warning', async () => {
    const p = ParaAdapter.create(
      model.config,
      { r: 4, base_model_name_or_path: 'some-org/other-model' },
      { seed: 1 },
    );
    const dir = join(work, 'other-base');
    await saveAdapter(p, dir);
    p.dispose();
    const r = para(['logits', '--model', base, '--ids', '1,2', '--adapter', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(logitsOf(r.stdout)).toHaveLength(2);
    expect(r.stderr).toMatch(/para: warning: .*adapter_config\.json.*another base model/);
    expect(r.stderr).toContain('"some-org/other-model"');
    // The adapter saved above names no base: no warning.
    const quiet = para(['logits', '--model', base, '--ids', '1,2', '--adapter', paraDir]);
    expect(quiet.stderr).not.toContain('warning');
  });

  it('an adapter for another base model names the tensor and both shapes', async () => {
    const other = createConfig({
      vocabSize: 96,
      hiddenSize: 64,
      intermediateSize: 48,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
    });
    const p = ParaAdapter.create(other, { r: 4 });
    await saveAdapter(p, join(work, 'wide'));
    p.dispose();
    const r = para(['logits', '--model', base, '--ids', '1,2,3', '--adapter', join(work, 'wide')]);
    expectTypedError(
      r,
      'SHAPE_MISMATCH',
      'base_model.model.model.layers.0.para.down.weight',
      '[4, 32]',
      '[4, 64]',
    );
  });
});

describe('para bench multitenant', () => {
  it('--json prints decode tokens/s per variant and the prefill figures', () => {
    const r = para([
      'bench',
      'multitenant',
      '--json',
      '--batch',
      '2',
      '--prompt-length',
      '4',
      '--new-tokens',
      '2',
      '--rounds',
      '1',
      '--backend',
      'wasm',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    for (const k of ['backend', 'batch', 'tenants', 'base', 'para', 'lora', 'ia3', 'prefill'])
      expect(out).toHaveProperty(k);
    expect(out.backend).toBe('wasm');
    expect([out.batch, out.tenants]).toEqual([2, 2]);
    for (const v of ['base', 'para', 'lora', 'ia3']) {
      expect(out[v]).toBeGreaterThan(0);
      expect(out.prefill[v]).toBeGreaterThan(0);
    }
    expect(out.loraRank).toBe(17); // closest to PARA r=12 on q/v/up at d=512, d_ff=1376
    expect(out.parameters.para).toBe(8 * (12 * 512 + 12 * (512 + 512 + 1376)));
  });
});

describe('para generate --adapter and para logits --prompt (bundled backbone and adapter)', () => {
  const adapter = join(repo, 'assets', 'adapters', 'category');
  const prompt = 'Is quart a kind of unit of measurement?';
  const argmax = (row: number[]) =>
    row.reduce((best, x, j) => (x > (row[best] as number) ? j : best), 0);

  it('--prompt equals --ids of the encoded prompt, and greedy generation starts at the argmax', async () => {
    const ids = (await loadTokenizer(join(repo, 'assets', 'backbone'))).encode(prompt, {
      addSpecialTokens: true,
    });
    const byPrompt = para(['logits', '--prompt', prompt, '--adapter', adapter]);
    const byIds = para(['logits', '--ids', ids.join(','), '--adapter', adapter]);
    const bare = para(['logits', '--prompt', prompt]);
    for (const r of [byPrompt, byIds, bare]) expect(r.code, r.stderr).toBe(0);
    expect(logitsOf(byPrompt.stdout)).toEqual(logitsOf(byIds.stdout));
    const adaptedLast = logitsOf(byPrompt.stdout).at(-1) as number[];
    const bareLast = logitsOf(bare.stdout).at(-1) as number[];
    expect(adaptedLast).not.toEqual(bareLast);

    const g = para(['generate', '--prompt', prompt, '--adapter', adapter, '--json', '-n', '3']);
    const gBare = para(['generate', '--prompt', prompt, '--json', '-n', '3']);
    for (const r of [g, gBare]) expect(r.code, r.stderr).toBe(0);
    const adapted = JSON.parse(g.stdout) as { ids: number[]; text: string };
    const plain = JSON.parse(gBare.stdout) as { ids: number[]; text: string };
    expect(adapted.ids[0]).toBe(argmax(adaptedLast));
    expect(plain.ids[0]).toBe(argmax(bareLast));
    expect(adapted.text).not.toBe(plain.text);
  });

  it('bad flags are typed errors', () => {
    expectTypedError(
      para(['logits', '--prompt', prompt, '--ids', '1,2']),
      'INVALID_ARGUMENT',
      '--ids/--prompt',
    );
    expectTypedError(
      para(['generate', '--prompt', prompt, '--adapter', join(work, 'missing')]),
      'FILE_NOT_FOUND',
      'missing',
    );
  });
});
