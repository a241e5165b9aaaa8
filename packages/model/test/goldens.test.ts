/**
 * Goldens computed independently by Hugging Face transformers (see goldens/make_goldens.py and
 * goldens/make_goldens_arch.py): tiny checkpoints (Llama, Llama 3 RoPE scaling in BF16, Qwen2
 * with biases and tied embeddings in F16, Mistral sharded with linear RoPE scaling, SmolLM-style
 * tied with head_dim ≠ d/heads; then Qwen3, Qwen3 + yarn, Llama + dynamic RoPE, sliding-window
 * Qwen2/Qwen3/Mistral, Gemma 2, Gemma 3 text, SmolLM3, OLMo 2, Phi-3 and Phi-3 longrope), their
 * teacher-forced logits over a left-padded batch, and greedy `generate` output (for
 * phi3-longrope the cache-free loop; see make_goldens_arch.py). These tests never run Python.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSafetensorsFile } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CausalLM } from '../src/index';
import { loadModel } from '../src/node';
import { maxAbsDiff, take, testBackends, useBackend } from './helpers/backends';
import { FIXTURES, GOLDEN_MODELS } from './helpers/models';

interface Golden {
  storage_dtype: string;
  input_ids: number[][];
  attention_mask: number[][];
  eos_token_ids: number[];
  max_new_tokens: number;
  greedy_new_tokens: number[][];
  versions: Record<string, string>;
}

const goldens = new Map<string, { json: Golden; logits: Float32Array }>();

beforeAll(async () => {
  for (const name of GOLDEN_MODELS) {
    const dir = join(FIXTURES, name);
    const json = JSON.parse(readFileSync(join(dir, 'goldens.json'), 'utf8')) as Golden;
    const reader = await openSafetensorsFile(join(dir, 'goldens.safetensors'));
    const { data } = await reader.readData('logits');
    await reader.close();
    goldens.set(name, { json, logits: data as Float32Array });
  }
});

describe.each(testBackends())('HF transformers goldens on %s', (backend) => {
  const models = new Map<string, CausalLM>();
  beforeAll(async () => {
    await useBackend(backend);
    for (const name of GOLDEN_MODELS) models.set(name, await loadModel(join(FIXTURES, name)));
  });
  afterAll(() => {
    for (const m of models.values()) m.dispose();
  });

  it.each(GOLDEN_MODELS)('%s: logits of a left-padded batch match transformers', async (name) => {
    const model = models.get(name) as CausalLM;
    const g = goldens.get(name) as { json: Golden; logits: Float32Array };
    const { input_ids: ids, attention_mask: mask } = g.json;
    const logits = await take(model.forward(ids, { attentionMask: mask }));
    const [T, V] = [(ids[0] as number[]).length, model.config.vocabSize];
    // Padding positions carry no meaning (HF's and ours differ there): compare real tokens only.
    const real = (i: number) =>
      (mask[Math.floor(i / (T * V))] as number[])[Math.floor(i / V) % T] === 1;
    const err = maxAbsDiff(logits, g.logits, real);
    expect(err, `${name} max abs error`).toBeLessThan(1e-4);
    // And the logits are not trivially small: the comparison means something.
    expect(Math.max(...Array.from(g.logits).map(Math.abs))).toBeGreaterThan(0.5);
  });

  it.each(GOLDEN_MODELS)('%s: greedy generation matches transformers generate()', async (name) => {
    const model = models.get(name) as CausalLM;
    const g = goldens.get(name) as { json: Golden; logits: Float32Array };
    // The unpadded prompts, ragged: generate pads them itself.
    const prompts = g.json.input_ids.map((row, b) =>
      row.filter((_, t) => (g.json.attention_mask[b] as number[])[t] === 1),
    );
    const out = await model.generate(prompts, {
      maxNewTokens: g.json.max_new_tokens,
      stopTokens: g.json.eos_token_ids,
    });
    expect(out.tokens).toEqual(g.json.greedy_new_tokens);
    out.tokens.forEach((row, b) => {
      expect(out.finishReasons[b]).toBe(
        g.json.eos_token_ids.includes(row[row.length - 1] as number) ? 'stop' : 'length',
      );
    });
  });

  it('the fixtures cover every storage dtype and layout', () => {
    expect(new Set([...goldens.values()].map((g) => g.json.storage_dtype))).toEqual(
      new Set(['float32', 'bfloat16', 'float16']),
    );
    expect(models.get('qwen2-tied-f16')?.config.bias).toEqual({
      q: true,
      k: true,
      v: true,
      o: false,
      mlp: false,
    });
    expect(models.get('smollm-tied')?.weights.lmHead).toBe(
      models.get('smollm-tied')?.weights.embedTokens,
    );
    expect(models.get('llama3-bf16')?.config.ropeScaling?.rope_type).toBe('llama3');
    expect(models.get('mistral-sharded')?.config.ropeScaling?.rope_type).toBe('linear');
    expect(tf.getBackend()).toBe(backend);
  });
});
