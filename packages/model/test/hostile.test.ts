/**
 * Bounded work before validation (issue 13, first cases): a config.json of a few bytes that
 * implies a huge model is refused from the weights file's header, before anything is allocated
 * or any per-layer list is built.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isParaError } from '@para/core/node';
import { saveTokenizer, trainBpe } from '@para/tokenizer/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CausalLM } from '../src/index';
import { loadModel, loadPretrained, saveModel } from '../src/node';
import { caught, useBackend } from './helpers/backends';
import { tinyConfig } from './helpers/models';

let dir: string;
beforeAll(async () => {
  await useBackend('cpu');
  dir = await mkdtemp(join(tmpdir(), 'para-hostile-'));
  const m = CausalLM.random(tinyConfig({ numLayers: 2 }), 1);
  await saveModel(m, dir);
  m.dispose();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('a hostile config.json', () => {
  it.each([1e9, 1e6, 3])(
    'num_hidden_layers %d against a 2-layer weights file is a typed error, with nothing allocated',
    async (layers) => {
      const cfg = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
      cfg.num_hidden_layers = layers;
      await writeFile(join(dir, 'config.json'), JSON.stringify(cfg));
      const before = tf.memory().numTensors;
      const e = await caught(() => loadModel(dir));
      expect(isParaError(e, 'TENSOR_NOT_FOUND')).toBe(true);
      // A huge count is refused from the header alone; a small one lists what is missing.
      expect((e as Error).message).toContain(
        layers > 1000 ? 'num_hidden_layers' : 'model.layers.2.',
      );
      expect(tf.memory().numTensors).toBe(before);
    },
  );
});

describe('hostile tokenizer files beside a checkpoint', () => {
  it('tokenizer.json that is not UTF-8 is INVALID_ENCODING naming the file (not replaced silently)', async () => {
    const out = await mkdtemp(join(dir, 'tok-'));
    const m = CausalLM.random(tinyConfig({ numLayers: 1, vocabSize: 300 }), 1);
    await saveModel(m, out);
    m.dispose();
    await saveTokenizer(out, trainBpe(['the quick brown fox'], { vocabSize: 300 }));
    const file = join(out, 'tokenizer.json');
    const bytes = await readFile(file);
    const at = bytes.indexOf(0x22); // the first quote: a bad byte inside the first string
    await writeFile(
      file,
      Buffer.concat([bytes.subarray(0, at + 1), Buffer.from([0xff]), bytes.subarray(at + 1)]),
    );
    const before = tf.memory().numTensors;
    const e = await caught(() => loadPretrained(out));
    expect(isParaError(e, 'INVALID_ENCODING'), String(e)).toBe(true);
    expect((e as { file: string }).file).toContain('tokenizer.json');
    expect(tf.memory().numTensors).toBe(before);
  });
});
