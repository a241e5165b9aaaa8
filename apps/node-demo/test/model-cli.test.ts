/**
 * `para logits`, `para generate` and `para bench model` end to end: the CLI's output against
 * the transformers goldens of @para/model, streaming with a real tokenizer, typed errors with
 * exit code 2.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend, openSafetensorsFile, writeSafetensorsFile } from '@para/core/node';
import { CausalLM, createConfig, saveModel } from '@para/model/node';
import { loadTokenizer, saveTokenizer, trainBpeTokenizer } from '@para/tokenizer/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appDir, cli, expectTypedError, paraRunner } from './helpers/cli';

const fixtures = join(appDir, '..', '..', 'packages', 'model', 'test', 'goldens', 'fixtures');
const llama = join(fixtures, 'llama');

const para = paraRunner('cpu');

let work: string;
let withTokenizer: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'para-model-cli-'));
  withTokenizer = join(work, 'model');
  // A small model directory with a real (freshly trained) byte-level BPE tokenizer.
  const text =
    'the quick brown fox jumps over the lazy dog. a prompt aware adjustment of the hidden states. ';
  const trained = await trainBpeTokenizer({
    texts: [text.repeat(20)],
    vocabSize: 300,
    specialTokens: ['<s>', '</s>', '<pad>'],
  });
  await saveTokenizer(withTokenizer, trained);
  const tok = await loadTokenizer(withTokenizer);
  await initBackend({ backend: 'cpu' });
  const config = createConfig({
    vocabSize: tok.vocabSize,
    hiddenSize: 32,
    intermediateSize: 48,
    numLayers: 1,
    numHeads: 4,
    numKvHeads: 2,
    bosTokenId: 0,
    eosTokenIds: [1],
    initializerRange: 0.3,
  });
  const model = CausalLM.random(config, 1);
  await saveModel(model, withTokenizer);
  model.dispose();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('para logits', () => {
  it('prints only {"logits": [[...], ...]}, equal to transformers for an unpadded row', async () => {
    const reader = await openSafetensorsFile(join(llama, 'goldens.safetensors'));
    const golden = (await reader.readData('logits')).data;
    await reader.close();
    const ids = [1, 120, 7, 7, 31, 88, 12, 3, 56, 101]; // row 1 of the goldens (no padding)
    const r = para(['logits', '--model', llama, '--ids', ids.join(',')]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { logits: number[][] };
    expect(Object.keys(out)).toEqual(['logits']);
    expect(out.logits).toHaveLength(ids.length);
    const V = 128;
    let err = 0;
    out.logits.forEach((row, t) => {
      expect(row).toHaveLength(V);
      row.forEach((x, j) => {
        err = Math.max(err, Math.abs(x - (golden[(1 * ids.length + t) * V + j] as number)));
      });
    });
    expect(err).toBeLessThan(1e-4);
  });

  it('bad flags and paths are typed errors with exit code 2', () => {
    expectTypedError(para(['logits', '--model', llama]), 'INVALID_ARGUMENT', '--ids'); // neither --ids nor --prompt
    expectTypedError(
      para(['logits', '--model', llama, '--ids', '1,x,3']),
      'INVALID_ARGUMENT',
      '--ids',
      '"x"',
    );
    expectTypedError(
      para(['logits', '--model', llama, '--ids', '1,128']),
      'INVALID_ARGUMENT',
      'vocab_size 128',
    );
    expectTypedError(
      para(['logits', '--model', join(work, 'missing'), '--ids', '1']),
      'FILE_NOT_FOUND',
      join(work, 'missing'),
    );
    expectTypedError(
      para(['logits', '--model', llama, '--ids', '1', '--backend', 'cuda']),
      'INVALID_ARGUMENT',
      'backend',
    );
  });
});

describe('para logits: overflow', () => {
  it('non-finite logits are a NON_FINITE error (exit 2), never NaN printed as JSON', async () => {
    // Finite weights (so the loader accepts them) large enough that float32 overflows.
    const dir = join(work, 'overflow');
    const config = createConfig({
      vocabSize: 64,
      hiddenSize: 16,
      intermediateSize: 32,
      numLayers: 1,
      numHeads: 2,
      numKvHeads: 2,
    });
    const m = CausalLM.random(config, 1);
    await saveModel(m, dir);
    m.dispose();
    const file = join(dir, 'model.safetensors');
    const r = await openSafetensorsFile(file);
    const all = await r.readAll();
    await r.close();
    // The final norm's output times lm_head overflows; earlier huge values would be normed away.
    for (const name of ['model.norm.weight', 'lm_head.weight']) {
      const t = all[name]!;
      all[name] = tf.fill(t.shape, 3e38);
      t.dispose();
    }
    await writeSafetensorsFile(file, all);
    tf.dispose(Object.values(all));
    const out = para(['logits', '--model', dir, '--ids', '1,2,3']);
    expect(out.code, out.stderr).toBe(2);
    expect(out.stdout).toBe('');
    expect(out.stderr).toContain('NON_FINITE');
    expect(out.stderr).toContain('position 0');
  });
});

describe('para generate', () => {
  it('--ids: greedy tokens equal transformers generate(); streamed as ids without a tokenizer; --json', () => {
    const prompt = '1,17,43,99,5,64,23'; // row 0 of the goldens
    const expected = [24, 24, 24, 101, 5, 24, 5, 5];
    const json = para([
      'generate',
      '--model',
      llama,
      '--ids',
      prompt,
      '--max-new-tokens',
      '8',
      '--json',
    ]);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ ids: expected, text: '' });
    const streamed = para(['generate', '--model', llama, '--ids', prompt, '-n', '8']);
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(streamed.stdout).toBe(`${expected.join(' ')}\n`);
  });

  it('--prompt: encodes with the model directory tokenizer and streams the decoded text', async () => {
    const tok = await loadTokenizer(withTokenizer);
    const args = [
      'generate',
      '--model',
      withTokenizer,
      '--prompt',
      'the quick brown',
      '-n',
      '12',
      '--temperature',
      '0.9',
      '--top-k',
      '50',
      '--top-p',
      '0.95',
      '--seed',
      '3',
    ];
    const json = para([...args, '--json']);
    expect(json.code, json.stderr).toBe(0);
    const out = JSON.parse(json.stdout) as { ids: number[]; text: string };
    expect(out.ids.length).toBeGreaterThan(0);
    expect(out.ids.length).toBeLessThanOrEqual(12);
    expect(out.ids.slice(0, -1)).not.toContain(1); // stops at eos
    expect(out.text).toBe(tok.decode(out.ids, { skipSpecialTokens: true }));
    const streamed = para(args);
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(streamed.stdout).toBe(`${out.text}\n`);
    // Same seed, same tokens; another seed, (almost surely) others.
    expect(JSON.parse(para([...args, '--json']).stdout)).toEqual(out);
    const other = JSON.parse(para([...args.slice(0, -1), '4', '--json']).stdout) as {
      ids: number[];
    };
    expect(other.ids).not.toEqual(out.ids);
  });

  it('without --model it uses the bundled default backbone', () => {
    const backbone = join(appDir, '..', '..', 'assets', 'backbone');
    const args = ['--prompt', 'dog (noun):', '--max-new-tokens', '4', '--json'];
    const implicit = para(['generate', ...args]);
    const explicit = para(['generate', '--model', backbone, ...args]);
    expect(implicit.code).toBe(0);
    expect(JSON.parse(implicit.stdout).ids).toHaveLength(4);
    expect(implicit.stdout).toBe(explicit.stdout);
  });

  it('bad flags and paths are typed errors with exit code 2', () => {
    expectTypedError(
      para(['generate', '--model', llama, '--prompt', 'hi']),
      'FILE_NOT_FOUND',
      'tokenizer.json',
    );
    expectTypedError(para(['generate', '--model', llama]), 'INVALID_ARGUMENT', '--prompt');
    expectTypedError(
      para(['generate', '--model', llama, '--ids', '1', '--prompt', 'x']),
      'INVALID_ARGUMENT',
      '--prompt',
    );
    expectTypedError(
      para(['generate', '--model', llama, '--ids', '1', '--temperature', '-1']),
      'INVALID_ARGUMENT',
      '--temperature',
    );
    expectTypedError(
      para(['generate', '--model', llama, '--ids', '1', '--top-p', '2']),
      'INVALID_ARGUMENT',
      '--top-p',
    );
    expectTypedError(
      para(['generate', '--model', llama, '--ids', '1', '-n', '0']),
      'INVALID_ARGUMENT',
      '--max-new-tokens',
    );
    expectTypedError(
      para(['generate', '--model', llama, '--ids', '1', '-n', '1000']),
      'INVALID_ARGUMENT',
      'max_position_embeddings',
    );
    expectTypedError(
      para(['generate', '--model', join(work, 'missing'), '--ids', '1']),
      'FILE_NOT_FOUND',
      join(work, 'missing'),
    );
  });
});

describe('para bench model', () => {
  it('is listed under bench and runs (tiny settings) with --json', () => {
    const help = para(['bench', '--help']);
    expect(help.stdout).toContain('model');
    const r = spawnSync(
      process.execPath,
      [
        cli,
        'bench',
        'model',
        '--json',
        '--backend',
        'wasm',
        '--batch',
        '1,2',
        '--prompt-length',
        '4',
        '--decode-steps',
        '2',
        '--reps',
        '2',
        '--warmup',
        '0',
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.backend).toBe('wasm');
    expect(out.config).toMatchObject({
      hiddenSize: 512,
      numLayers: 8,
      intermediateSize: 1376,
      numHeads: 8,
      vocabSize: 4096,
    });
    expect(out.rows.map((x: { phase: string; batch: number }) => `${x.phase}@${x.batch}`)).toEqual([
      'prefill@1',
      'decode@1',
      'prefill@2',
      'decode@2',
    ]);
    for (const x of out.rows) expect(x.tokensPerSecond).toBeGreaterThan(0);
    expect(out.matmul.gflopPerSecond).toBeGreaterThan(0);
    expectTypedError(para(['bench', 'model', '--batch', '0']), 'INVALID_ARGUMENT', '--batch');
    expectTypedError(para(['bench', 'model', '--reps', '0']), 'INVALID_ARGUMENT', '--reps');
    expectTypedError(para(['bench', 'model', '--warmup', '-1']), 'INVALID_ARGUMENT', '--warmup');
  });
});
