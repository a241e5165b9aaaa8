/** Config parsing: HF config.json of both transformers generations, defaults and typed errors. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isParaError } from '@para/core/node';
import { describe, expect, it } from 'vitest';
import { countParameters, createConfig, parseHfConfig, toHfConfig } from '../src/index';
import { FIXTURES, GOLDEN_MODELS } from './helpers/models';

const base = {
  model_type: 'llama',
  vocab_size: 100,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
};

function error(fn: () => unknown): Error & { code?: string; file?: string; field?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('no error thrown');
}

describe('parseHfConfig', () => {
  it('reads every fixture (transformers 4 and 5 spellings)', () => {
    for (const name of GOLDEN_MODELS) {
      const c = parseHfConfig(readFileSync(join(FIXTURES, name, 'config.json'), 'utf8'), name);
      expect(c.hiddenSize).toBe(64);
      expect(c.vocabSize).toBe(128);
    }
    const l3 = parseHfConfig(readFileSync(join(FIXTURES, 'llama3-bf16', 'config.json'), 'utf8'));
    expect(l3.ropeTheta).toBe(500000);
    expect(l3.ropeScaling).toEqual({
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 32,
    });
    expect(l3.eosTokenIds).toEqual([2, 0]);
    const mistral = parseHfConfig(
      readFileSync(join(FIXTURES, 'mistral-sharded', 'config.json'), 'utf8'),
    );
    expect(mistral.ropeScaling).toEqual({ rope_type: 'linear', factor: 2 }); // from the legacy "type" key
    expect(mistral.slidingWindow).toBeNull();
    const smol = parseHfConfig(readFileSync(join(FIXTURES, 'smollm-tied', 'config.json'), 'utf8'));
    expect([smol.headDim, smol.numKvHeads, smol.tieWordEmbeddings]).toEqual([32, 1, true]);
    const qwen = parseHfConfig(
      readFileSync(join(FIXTURES, 'qwen2-tied-f16', 'config.json'), 'utf8'),
    );
    expect(qwen.ropeTheta).toBe(1e6);
    expect(qwen.bosTokenId).toBeNull();
  });

  it('applies transformers defaults for optional fields', () => {
    const c = parseHfConfig(base);
    expect(c).toMatchObject({
      numKvHeads: 4,
      headDim: 16,
      rmsNormEps: 1e-6,
      ropeTheta: 10000,
      ropeScaling: null,
      tieWordEmbeddings: false,
      maxPositionEmbeddings: 2048,
      eosTokenIds: [],
    });
    expect(c.bias).toEqual({ q: false, k: false, v: false, o: false, mlp: false });
    expect(parseHfConfig({ ...base, attention_bias: true }).bias).toEqual({
      q: true,
      k: true,
      v: true,
      o: true,
      mlp: false,
    });
    expect(parseHfConfig({ ...base, model_type: 'qwen2' }).bias).toEqual({
      q: true,
      k: true,
      v: true,
      o: false,
      mlp: false,
    });
    expect(
      parseHfConfig({ ...base, model_type: 'qwen2', sliding_window: 4096 }).slidingWindow,
    ).toBeNull(); // use_sliding_window false
    expect(
      parseHfConfig({ ...base, model_type: 'mistral', sliding_window: 4096 }).slidingWindow,
    ).toBe(4096);
    expect(
      parseHfConfig({ ...base, rope_scaling: { rope_type: 'default' } }).ropeScaling,
    ).toBeNull();
  });

  it('an unsupported model_type is UNSUPPORTED naming the field', () => {
    const e = error(() => parseHfConfig({ ...base, model_type: 'gpt2' }, 'x/config.json'));
    expect(isParaError(e, 'UNSUPPORTED')).toBe(true);
    expect(e.field).toBe('model_type');
    expect(e.message).toContain('x/config.json');
    expect(e.message).toContain('"gpt2"');
  });

  it('missing and invalid fields are listed in ONE INVALID_CONFIG error', () => {
    const { hidden_size: _h, vocab_size: _v, ...rest } = base;
    const e = error(() =>
      parseHfConfig(
        {
          ...rest,
          num_key_value_heads: 3,
          rope_scaling: { rope_type: 'yarn', factor: 4 },
          hidden_act: 'gelu',
        },
        'cfg.json',
      ),
    );
    expect(isParaError(e, 'INVALID_CONFIG')).toBe(true);
    for (const s of [
      'missing hidden_size, vocab_size',
      'num_key_value_heads = 3',
      'rope_scaling.rope_type = "yarn"',
      'hidden_act = "gelu"',
      'cfg.json',
    ])
      expect(e.message).toContain(s);
    const e2 = error(() =>
      parseHfConfig({ ...base, rope_scaling: { rope_type: 'llama3', factor: 8 } }),
    );
    expect(e2.message).toContain('rope_scaling.low_freq_factor');
    expect(
      isParaError(
        error(() => parseHfConfig('{nope')),
        'INVALID_JSON',
      ),
    ).toBe(true);
    expect(
      isParaError(
        error(() => parseHfConfig([1, 2])),
        'INVALID_CONFIG',
      ),
    ).toBe(true);
    expect(
      isParaError(
        error(() => parseHfConfig({ ...base, eos_token_id: 'x' })),
        'INVALID_CONFIG',
      ),
    ).toBe(true);
    expect(
      isParaError(
        error(() => parseHfConfig({ ...base, hidden_size: 60, num_attention_heads: 8 })),
        'INVALID_CONFIG',
      ),
    ).toBe(true);
  });

  it('toHfConfig → parseHfConfig round-trips, keeping unknown keys', () => {
    const c = parseHfConfig({
      ...base,
      model_type: 'mistral',
      eos_token_id: [2, 7],
      rope_scaling: { type: 'linear', factor: 4 },
      my_key: 'kept',
    });
    const hf = toHfConfig(c);
    expect(hf.my_key).toBe('kept');
    expect(hf.eos_token_id).toEqual([2, 7]);
    const back = parseHfConfig(JSON.parse(JSON.stringify(hf)));
    const { extra: _a, ...x } = c;
    const { extra: _b, ...y } = back;
    expect(y).toEqual(x);
  });

  it('createConfig fills LLaMA defaults; countParameters matches a hand count', () => {
    const c = createConfig({
      vocabSize: 4096,
      hiddenSize: 512,
      intermediateSize: 1376,
      numLayers: 8,
      numHeads: 8,
    });
    expect(c.headDim).toBe(64);
    // per layer: 4·d² (q, k, v, o) + 3·d·d_ff + 2·d norms; embeddings and head; final norm
    expect(countParameters(c)).toBe(
      8 * (4 * 512 * 512 + 3 * 512 * 1376 + 2 * 512) + 2 * 4096 * 512 + 512,
    );
    expect(
      isParaError(
        error(() =>
          createConfig({
            vocabSize: 10,
            hiddenSize: 30,
            intermediateSize: 8,
            numLayers: 1,
            numHeads: 4,
          }),
        ),
        'INVALID_CONFIG',
      ),
    ).toBe(true);
  });
});
