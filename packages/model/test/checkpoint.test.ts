/**
 * Checkpoints: save → load round trips (exact in F32, rounded as specified in F16/BF16), the HF
 * layout (names, tied heads, config.json), seeded init, and the one-error-lists-all validation.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  bf16BitsToFloat32,
  f16BitsToFloat32,
  float32ToBF16Bits,
  float32ToF16Bits,
  isParaError,
  openCheckpoint,
  writeSafetensorsFile,
} from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CausalLM, initWeights, namedWeights, parseHfConfig, tensorSpecs } from '../src/index';
import { loadModel, saveModel } from '../src/node';
import { caught, take, testBackends, useBackend } from './helpers/backends';
import { FIXTURES, tinyConfig } from './helpers/models';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'para-model-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function allValues(m: CausalLM): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of Object.entries(namedWeights(m.config, m.weights)))
    out.set(name, (await t.data()) as Float32Array);
  return out;
}

describe.each(testBackends())('save and load on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  it('F32: save → load is exact (weights, config and logits)', async () => {
    const model = CausalLM.random(
      tinyConfig({ bias: { q: true, k: true, v: true, o: true, mlp: true }, eosTokenIds: [2, 5] }),
      1,
    );
    const out = join(dir, `f32-${backend}`);
    await saveModel(model, out);
    const back = await loadModel(out);
    const { extra: _a, ...c1 } = model.config;
    const { extra: _b, ...c2 } = back.config;
    expect(c2).toEqual(c1);
    const [a, b] = [await allValues(model), await allValues(back)];
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [name, v] of a) expect(b.get(name), name).toEqual(v);
    const ids = [[1, 2, 3, 4]];
    expect(await take(back.forward(ids))).toEqual(await take(model.forward(ids)));
    model.dispose();
    back.dispose();
  });

  it('F16 and BF16: saved weights load as the rounded float32 values', async () => {
    const model = CausalLM.random(tinyConfig({ numLayers: 1, tieWordEmbeddings: true }), 2);
    const a = await allValues(model);
    for (const [dtype, round] of [
      ['F16', (x: number) => f16BitsToFloat32(float32ToF16Bits(x))],
      ['BF16', (x: number) => bf16BitsToFloat32(float32ToBF16Bits(x))],
    ] as const) {
      const out = join(dir, `${dtype}-${backend}`);
      await saveModel(model, out, { dtype });
      const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
      expect(cfg.torch_dtype).toBe(dtype === 'F16' ? 'float16' : 'bfloat16');
      const back = await loadModel(out);
      const b = await allValues(back);
      for (const [name, v] of a) expect(b.get(name), `${dtype} ${name}`).toEqual(v.map(round));
      back.dispose();
    }
    model.dispose();
  });
});

describe('checkpoint layout and validation', () => {
  beforeAll(async () => {
    await useBackend(testBackends()[0] ?? 'cpu');
  });

  it('writes HF names, omits lm_head when tied, and a config.json transformers reads', async () => {
    for (const tied of [false, true]) {
      const config = tinyConfig({ tieWordEmbeddings: tied, modelType: 'qwen2' });
      const model = CausalLM.random(config, 3);
      const out = join(dir, `layout-${tied}`);
      await saveModel(model, out);
      const store = await openCheckpoint(out);
      const names = store.names();
      await store.close();
      expect(names).toContain('model.layers.1.self_attn.q_proj.bias');
      expect(names).toContain('model.layers.0.mlp.down_proj.weight');
      expect(names.includes('lm_head.weight')).toBe(!tied);
      expect(names).toHaveLength(tensorSpecs(config).length);
      const json = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
      expect(json).toMatchObject({
        model_type: 'qwen2',
        architectures: ['Qwen2ForCausalLM'],
        tie_word_embeddings: tied,
        hidden_size: 32,
        num_key_value_heads: 2,
        head_dim: 8,
      });
      expect(parseHfConfig(json).bias.q).toBe(true);
      model.dispose();
    }
  });

  it('a loaded HF checkpoint saves back to the same tensors and config fields', async () => {
    const model = await loadModel(join(FIXTURES, 'llama3-bf16'));
    const out = join(dir, 'resave');
    await saveModel(model, out, { dtype: 'BF16' });
    const back = await loadModel(out);
    expect(back.config.ropeScaling).toEqual(model.config.ropeScaling);
    expect(back.config.eosTokenIds).toEqual([2, 0]);
    const [a, b] = [await allValues(model), await allValues(back)];
    for (const [name, v] of a) expect(b.get(name), name).toEqual(v);
    model.dispose();
    back.dispose();
  });

  it('seeded init: same seed, same weights; HF-style statistics', async () => {
    const config = tinyConfig({ bias: { q: true }, padTokenId: 0 });
    const [a, b, c] = [initWeights(config, 5), initWeights(config, 5), initWeights(config, 6)];
    const va = await a.layers[0]?.q_proj.weight.data();
    expect(await b.layers[0]?.q_proj.weight.data()).toEqual(va);
    expect(await c.layers[0]?.q_proj.weight.data()).not.toEqual(va);
    const vals = Array.from(va as Float32Array);
    const std = Math.sqrt(vals.reduce((s, x) => s + x * x, 0) / vals.length);
    expect(std).toBeGreaterThan(0.09);
    expect(std).toBeLessThan(0.11);
    expect(Array.from(await a.layers[1]!.inputLayernorm!.data())).toEqual(
      new Array(config.hiddenSize).fill(1),
    );
    expect(Array.from(await a.layers[1]!.q_proj.bias!.data())).toEqual(
      new Array(config.hiddenSize).fill(0),
    );
    const emb = await a.embedTokens.data();
    expect(Array.from(emb.subarray(0, config.hiddenSize))).toEqual(
      new Array(config.hiddenSize).fill(0),
    ); // padding row
    for (const w of [a, b, c]) new CausalLM(config, w).dispose();
  });

  it('missing, unexpected and mis-shaped tensors are listed in ONE error', async () => {
    const config = tinyConfig({ numLayers: 1 });
    const model = CausalLM.random(config, 4);
    const tensors: Record<string, tf.Tensor> = { ...namedWeights(config, model.weights) };
    delete tensors['model.layers.0.self_attn.k_proj.weight'];
    delete tensors['model.norm.weight'];
    tensors['model.layers.0.self_attn.q_proj.weight'] = tf.zeros([8, 8]);
    tensors['model.layers.7.mlp.up_proj.weight'] = tf.zeros([2, 2]);
    const out = join(dir, 'broken');
    await mkdir(out, { recursive: true });
    await writeSafetensorsFile(join(out, 'model.safetensors'), tensors);
    await writeFile(
      join(out, 'config.json'),
      JSON.stringify({
        model_type: 'llama',
        vocab_size: 64,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        num_key_value_heads: 2,
      }),
    );
    const before = tf.memory().numTensors;
    const e = await caught(() => loadModel(out));
    expect(tf.memory().numTensors).toBe(before);
    expect(isParaError(e, 'TENSOR_NOT_FOUND')).toBe(true);
    const msg = (e as Error).message;
    expect(msg).toContain('model.layers.0.self_attn.k_proj.weight');
    expect(msg).toContain('model.norm.weight');
    expect(msg).toContain('unexpected 1: model.layers.7.mlp.up_proj.weight');
    expect(msg).toContain('model.layers.0.self_attn.q_proj.weight [8, 8] (expected [32, 32])');
    expect(msg).toContain(join(out, 'model.safetensors'));
    tf.dispose(tensors['model.layers.0.self_attn.q_proj.weight'] as tf.Tensor);
    tf.dispose(tensors['model.layers.7.mlp.up_proj.weight'] as tf.Tensor);
    model.dispose();
  });

  it('a config that does not fit the weights is a typed error (SHAPE_MISMATCH)', async () => {
    const out = join(dir, 'wrong-config');
    const model = CausalLM.random(tinyConfig(), 5);
    await saveModel(model, out);
    model.dispose();
    const json = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    await writeFile(join(out, 'config.json'), JSON.stringify({ ...json, intermediate_size: 40 }));
    const e = await caught(() => loadModel(out));
    expect(isParaError(e, 'SHAPE_MISMATCH')).toBe(true);
    expect((e as Error).message).toContain('mis-shaped 6');
  });

  it('missing directories, config.json or weights are FILE_NOT_FOUND naming the path', async () => {
    const e1 = await caught(() => loadModel(join(dir, 'nope')));
    expect(isParaError(e1, 'FILE_NOT_FOUND')).toBe(true);
    expect((e1 as Error).message).toContain(join(dir, 'nope'));
    const empty = join(dir, 'empty');
    await mkdir(empty, { recursive: true });
    const e2 = await caught(() => loadModel(empty));
    expect(isParaError(e2, 'FILE_NOT_FOUND')).toBe(true);
    expect((e2 as Error).message).toContain('config.json');
    await writeFile(
      join(empty, 'config.json'),
      await readFile(join(FIXTURES, 'llama', 'config.json')),
    );
    const e3 = await caught(() => loadModel(empty));
    expect(isParaError(e3, 'FILE_NOT_FOUND')).toBe(true);
    expect((e3 as Error).message).toContain('model.safetensors.index.json');
    const e4 = await caught(() => loadModel(join(empty, 'config.json')));
    expect(isParaError(e4, 'INVALID_ARGUMENT')).toBe(true);
  });
});
