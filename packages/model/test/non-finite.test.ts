/**
 * Bad numbers are named (issue 13): NaN or ±Inf stored in a checkpoint's weights is refused at
 * load with NON_FINITE naming the file and the tensor, instead of loading and printing NaN logits.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isParaError } from '@para/core/node';
import { poisonSafetensors } from '@para/test-utils/files';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CausalLM } from '../src/index';
import { loadModel, saveModel } from '../src/node';
import { caught, useBackend } from './helpers/backends';
import { tinyConfig } from './helpers/models';

let dir: string;
beforeAll(async () => {
  await useBackend('cpu');
  dir = await mkdtemp(join(tmpdir(), 'para-nonfinite-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A saved tiny model whose tensor `name` has `value` at flat index 3. */
async function poisoned(name: string, value: number): Promise<string> {
  const out = await mkdtemp(join(dir, 'm-'));
  const m = CausalLM.random(tinyConfig({ numLayers: 2 }), 1);
  await saveModel(m, out);
  m.dispose();
  await poisonSafetensors(join(out, 'model.safetensors'), name, value, 3);
  return out;
}

describe('non-finite weights', () => {
  it.each([
    ['model.layers.1.mlp.down_proj.weight', Number.NaN, 'NaN'],
    ['model.norm.weight', Number.POSITIVE_INFINITY, 'Infinity'],
    ['model.embed_tokens.weight', Number.NEGATIVE_INFINITY, '-Infinity'],
  ])('%s = %d is refused at load, naming the file and tensor', async (name, value, shown) => {
    const out = await poisoned(name, value);
    const before = tf.memory().numTensors;
    const e = await caught(() => loadModel(out));
    expect(isParaError(e, 'NON_FINITE')).toBe(true);
    const err = e as { file: string; field: string; actual: string };
    expect(err.file).toContain('model.safetensors');
    expect(err.field).toBe(name);
    expect(err.actual).toContain(`first ${shown} at flat index 3`);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a clean checkpoint still loads', async () => {
    const out = await mkdtemp(join(dir, 'ok-'));
    const m = CausalLM.random(tinyConfig({ numLayers: 2 }), 1);
    await saveModel(m, out);
    m.dispose();
    const loaded = await loadModel(out);
    loaded.dispose();
  });
});
