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
          rope_scaling: { rope_type: 'linear' },
          hidden_act: 'gelu',
        },
        'cfg.json',
      ),
    );
    expect(isParaError(e, 'INVALID_CONFIG')).toBe(true);
    for (const s of [
      'missing hidden_size, vocab_size',
      'num_key_value_heads = 3',
      'rope_scaling.factor',
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

describe('parseHfConfig: Qwen3, Gemma 2, Gemma 3 and sliding windows', () => {
  const arch = (name: string) =>
    JSON.parse(readFileSync(join(FIXTURES, name, 'config.json'), 'utf8')) as Record<
      string,
      unknown
    >;

  it("applies each transformers class's defaults", () => {
    const q3 = parseHfConfig({ ...base, model_type: 'qwen3' });
    expect(q3).toMatchObject({
      headDim: 128, // Qwen3Config.head_dim, not hidden / heads
      qkNorm: 'head',
      normUnitOffset: false,
      slidingWindow: null,
      maxPositionEmbeddings: 32768,
    });
    expect(q3.bias).toEqual({ q: false, k: false, v: false, o: false, mlp: false });
    expect(parseHfConfig({ ...base, model_type: 'qwen3', attention_bias: true }).bias.o).toBe(true);
    const g2 = parseHfConfig({ ...base, num_hidden_layers: 3, model_type: 'gemma2' });
    expect(g2).toMatchObject({
      headDim: 256,
      hiddenAct: 'gelu_pytorch_tanh',
      tieWordEmbeddings: true,
      slidingWindow: 4096,
      layerTypes: ['sliding_attention', 'full_attention', 'sliding_attention'],
      queryPreAttnScalar: 256,
      attnLogitSoftcapping: 50,
      finalLogitSoftcapping: 30,
      qkNorm: 'none',
      normLayout: 'sandwich',
      embedScale: true,
      localRope: null,
      maxPositionEmbeddings: 8192,
    });
    // An explicit null switches soft-capping off.
    expect(
      parseHfConfig({ ...base, model_type: 'gemma2', final_logit_softcapping: null })
        .finalLogitSoftcapping,
    ).toBeNull();
    const g3 = parseHfConfig({ ...base, num_hidden_layers: 7, model_type: 'gemma3_text' });
    expect(g3).toMatchObject({
      qkNorm: 'head',
      ropeTheta: 1e6,
      localRope: { theta: 10000, scaling: null },
      attnLogitSoftcapping: null,
      finalLogitSoftcapping: null,
    });
    // sliding_window_pattern 6: every 6th layer is global.
    expect(g3.layerTypes.map((t) => t[0])).toEqual(['s', 's', 's', 's', 's', 'f', 's']);
    expect(
      parseHfConfig({
        ...base,
        num_hidden_layers: 4,
        model_type: 'gemma3_text',
        sliding_window_pattern: 2,
      }).layerTypes.map((t) => t[0]),
    ).toEqual(['s', 'f', 's', 'f']);
  });

  it('Gemma 3: the transformers 4 spelling (rope_theta, rope_local_base_freq, rope_scaling) reads as the nested v5 one', () => {
    const v5 = arch('gemma3-bf16');
    const { rope_parameters: _r, layer_types: _l, ...rest } = v5;
    const v4 = {
      ...rest,
      rope_theta: 1e6,
      rope_local_base_freq: 10000,
      rope_scaling: { rope_type: 'linear', factor: 2 },
      sliding_window_pattern: 3,
    };
    const { extra: _a, ...a } = parseHfConfig(v5);
    const { extra: _b, ...b } = parseHfConfig(v4);
    expect(b).toEqual(a);
  });

  it('sliding windows: Mistral on every layer, Qwen only with use_sliding_window (layer_types, else max_window_layers), a Llama key ignored', () => {
    expect(parseHfConfig({ ...base, model_type: 'mistral', sliding_window: 8 }).layerTypes).toEqual(
      ['sliding_attention', 'sliding_attention'],
    );
    const q = { ...base, num_hidden_layers: 4, sliding_window: 8, use_sliding_window: true };
    expect(parseHfConfig({ ...q, model_type: 'qwen2', max_window_layers: 3 }).layerTypes).toEqual([
      'full_attention',
      'full_attention',
      'full_attention',
      'sliding_attention',
    ]);
    expect(
      parseHfConfig({
        ...q,
        model_type: 'qwen3',
        max_window_layers: 3,
        layer_types: ['sliding_attention', 'full_attention', 'full_attention', 'full_attention'],
      }).layerTypes[0],
    ).toBe('sliding_attention');
    // use_sliding_window false: no window whatever layer_types say (transformers sets it to None).
    const off = parseHfConfig({
      ...q,
      model_type: 'qwen3',
      use_sliding_window: false,
      layer_types: ['sliding_attention', 'full_attention', 'full_attention', 'full_attention'],
    });
    expect([off.slidingWindow, off.layerTypes[0]]).toEqual([null, 'full_attention']);
    const llama = parseHfConfig({ ...base, sliding_window: 16 });
    expect(llama.slidingWindow).toBeNull();
    expect(llama.layerTypes).toEqual(['full_attention', 'full_attention']);
    expect(llama.extra?.sliding_window).toBe(16); // kept, uninterpreted, for a save
  });

  it('settings transformers implements and we do not are UNSUPPORTED naming the field', () => {
    for (const rope_scaling of [
      { rope_type: 'proportional', factor: 2 },
      { rope_type: 'longrope', short_factor: [1], long_factor: [2] },
    ]) {
      const e0 = error(() => parseHfConfig({ ...base, rope_scaling }, 'r/config.json'));
      expect(isParaError(e0, 'UNSUPPORTED'), rope_scaling.rope_type).toBe(true);
      expect(e0.field).toBe('rope_scaling.rope_type');
      expect(e0.message).toContain(`"${rope_scaling.rope_type}"`);
    }
    const e = error(() =>
      parseHfConfig(
        { ...base, model_type: 'gemma3_text', use_bidirectional_attention: true },
        'g/config.json',
      ),
    );
    expect(isParaError(e, 'UNSUPPORTED')).toBe(true);
    expect(e.field).toBe('use_bidirectional_attention');
    expect(e.message).toContain('g/config.json');
    // transformers' scaled RoPE types rotate only partial_rotary_factor of head_dim; default ignores it.
    const ep = error(() =>
      parseHfConfig({
        ...base,
        partial_rotary_factor: 0.5,
        rope_scaling: { rope_type: 'linear', factor: 2 },
      }),
    );
    expect(isParaError(ep, 'UNSUPPORTED')).toBe(true);
    expect(ep.field).toBe('partial_rotary_factor');
    expect(parseHfConfig({ ...base, partial_rotary_factor: 0.5 }).ropeScaling).toBeNull();
    const e2 = error(() =>
      parseHfConfig({
        ...base,
        model_type: 'gemma2',
        layer_types: ['chunked_attention', 'full_attention'],
      }),
    );
    expect(isParaError(e2, 'UNSUPPORTED')).toBe(true);
    expect(e2.field).toBe('layer_types');
    const e3 = error(() =>
      parseHfConfig({ ...base, model_type: 'gemma2', hidden_activation: 'gelu' }),
    );
    expect(isParaError(e3, 'INVALID_CONFIG')).toBe(true);
    expect(e3.message).toContain('hidden_activation');
    const e4 = error(() =>
      parseHfConfig({ ...base, model_type: 'gemma2', layer_types: ['full_attention'] }),
    );
    expect(isParaError(e4, 'INVALID_CONFIG')).toBe(true);
    expect(e4.message).toContain('layer_types');
    const e5 = error(() =>
      parseHfConfig({ ...base, model_type: 'gemma2', attn_logit_softcapping: -1 }),
    );
    expect(e5.message).toContain('attn_logit_softcapping');
  });

  it('pad / bos / eos token ids outside the vocabulary are INVALID_CONFIG naming config.json and the field', () => {
    for (const [field, value] of [
      ['pad_token_id', 100],
      ['pad_token_id', -1],
      ['bos_token_id', 100],
      ['bos_token_id', -3],
      ['eos_token_id', 100],
      ['eos_token_id', [2, 100]],
      ['eos_token_id', [-1]],
    ] as const) {
      const e = error(() => parseHfConfig({ ...base, [field]: value }, 'm/config.json'));
      expect(isParaError(e, 'INVALID_CONFIG'), `${field} ${value}`).toBe(true);
      expect(e.field, `${field} ${value}`).toContain(field);
      expect(e.message).toContain('m/config.json');
      expect(e.message).toContain(field);
    }
    expect(parseHfConfig({ ...base, pad_token_id: 99, eos_token_id: [0, 99] }).padTokenId).toBe(99);
  });

  it('SmolLM3 and OLMo 2 defaults: no_rope_layers from the interval, post-norms, eps 1e-5', () => {
    const smol = parseHfConfig({ ...base, num_hidden_layers: 8, model_type: 'smollm3' });
    expect(smol).toMatchObject({
      noRopeLayers: [3, 7], // no_rope_layer_interval 4
      ropeTheta: 2e6,
      tieWordEmbeddings: true,
      slidingWindow: null,
      qkNorm: 'none',
      normLayout: 'pre',
    });
    const sw = parseHfConfig({
      ...base,
      num_hidden_layers: 4,
      model_type: 'smollm3',
      no_rope_layers: [1, 0, 0, 1],
      use_sliding_window: true,
      sliding_window: 16,
    });
    expect([sw.noRopeLayers, sw.layerTypes.map((t) => t[0])]).toEqual([
      [1, 2],
      ['f', 's', 's', 'f'],
    ]);
    expect(
      error(() => parseHfConfig({ ...base, model_type: 'smollm3', no_rope_layers: [1] })).message,
    ).toContain('no_rope_layers');
    const olmo = parseHfConfig({ ...base, model_type: 'olmo2', sliding_window: 4 });
    expect(olmo).toMatchObject({
      qkNorm: 'projection',
      normLayout: 'post',
      rmsNormEps: 1e-5,
      slidingWindow: null,
      tieWordEmbeddings: false,
    });
  });

  it('yarn RoPE scaling: factor required, the optional settings kept, original_max_position_embeddings defaults to max_position_embeddings', () => {
    const y = parseHfConfig({
      ...base,
      model_type: 'qwen3',
      max_position_embeddings: 4096,
      rope_scaling: { rope_type: 'yarn', factor: 4, beta_fast: 16 },
    });
    expect(y.ropeScaling).toEqual({
      rope_type: 'yarn',
      factor: 4,
      beta_fast: 16,
      original_max_position_embeddings: 4096,
    });
    expect(
      error(() => parseHfConfig({ ...base, rope_scaling: { rope_type: 'yarn' } })).message,
    ).toContain('rope_scaling.factor');
    const back = parseHfConfig(JSON.parse(JSON.stringify(toHfConfig(y))));
    expect(back.ropeScaling).toEqual(y.ropeScaling);
  });

  it('Phi-3: partial_rotary_factor (top level or in rope_parameters), no biases, longrope / su refused', () => {
    const phi = parseHfConfig({
      ...base,
      model_type: 'phi3',
      partial_rotary_factor: 0.75,
      attention_bias: true, // not a Phi3Config field: transformers ignores it
      sliding_window: 7,
    });
    expect(phi).toMatchObject({
      partialRotaryFactor: 0.75,
      fusedProjections: true,
      rmsNormEps: 1e-5,
      slidingWindow: 7,
      maxPositionEmbeddings: 4096,
    });
    expect(phi.bias).toEqual({ q: false, k: false, v: false, o: false, mlp: false });
    expect(
      parseHfConfig({
        ...base,
        model_type: 'phi3',
        rope_parameters: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.5 },
      }).partialRotaryFactor,
    ).toBe(0.5);
    // longrope (su / yarn are its old names in Phi-3 configs); the top-level
    // original_max_position_embeddings wins, as in Phi3Config (default 4096).
    const f = [1, 2, 3, 4, 5, 6, 7, 8];
    for (const rope_scaling of [
      {
        rope_type: 'longrope',
        short_factor: f,
        long_factor: f,
        original_max_position_embeddings: 99,
      },
      { type: 'su', short_factor: f, long_factor: f },
      { type: 'yarn', short_factor: f, long_factor: f },
    ]) {
      const lr = parseHfConfig({ ...base, model_type: 'phi3', rope_scaling });
      expect(lr.ropeScaling).toEqual({
        rope_type: 'longrope',
        short_factor: f,
        long_factor: f,
        original_max_position_embeddings: 4096,
      });
    }
    expect(
      parseHfConfig({
        ...base,
        model_type: 'phi3',
        original_max_position_embeddings: 64,
        rope_scaling: { type: 'longrope', short_factor: f, long_factor: f, factor: 2 },
      }).ropeScaling,
    ).toMatchObject({ original_max_position_embeddings: 64, factor: 2 });
    const e = error(() =>
      parseHfConfig({
        ...base,
        model_type: 'phi3',
        rope_scaling: { rope_type: 'linear', factor: 2 },
      }),
    );
    expect(isParaError(e, 'UNSUPPORTED')).toBe(true);
    expect(e.field).toBe('rope_scaling.rope_type');
    // One factor per rotary frequency (head_dim 16 → 8).
    expect(() =>
      parseHfConfig({
        ...base,
        model_type: 'phi3',
        rope_scaling: { type: 'longrope', short_factor: [1, 2], long_factor: [1, 2] },
      }),
    ).toThrow('short_factor');
    // head_dim 16 × 0.3 = 4.8 → 4 rotary dims (even): fine; × 0.1 → 1: refused.
    expect(() =>
      parseHfConfig({ ...base, model_type: 'phi3', partial_rotary_factor: 0.1 }),
    ).toThrow('partial_rotary_factor');
  });

  it('toHfConfig → parseHfConfig round-trips the new architectures', () => {
    for (const cfg of [
      { ...base, model_type: 'qwen3', attention_bias: true, head_dim: 32 },
      { ...base, model_type: 'qwen3', use_sliding_window: true, sliding_window: 3 },
      { ...base, model_type: 'gemma2', attn_logit_softcapping: null, sliding_window: 3 },
      {
        ...base,
        model_type: 'gemma3_text',
        rope_local_base_freq: 5000,
        final_logit_softcapping: 7,
      },
      {
        ...base,
        model_type: 'gemma3_text',
        rope_parameters: {
          full_attention: { rope_type: 'default', rope_theta: 1e6 },
          sliding_attention: { rope_type: 'linear', factor: 2, rope_theta: 1e4 },
        },
      },
    ]) {
      const c = parseHfConfig(cfg);
      const back = parseHfConfig(JSON.parse(JSON.stringify(toHfConfig(c))));
      const { extra: _a, ...x } = c;
      const { extra: _b, ...y } = back;
      expect(y, String(cfg.model_type)).toEqual(x);
    }
  });
});
