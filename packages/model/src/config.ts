/**
 * The model configuration: one plain object describing a LLaMA-family decoder, read from (and
 * written back to) a Hugging Face `config.json`. Supported `model_type`s: `llama` (also
 * SmolLM, TinyLlama, Llama 3.x), `mistral` and `qwen2`.
 *
 * Both config generations are read: transformers 4 (`rope_theta` + `rope_scaling` at the top
 * level, what checkpoints on the Hub carry) and transformers 5 (`rope_parameters`). We write
 * the transformers 4 form, which every transformers version loads.
 */

import { ParaError } from '@para/core';

export type ModelType = 'llama' | 'mistral' | 'qwen2';
export const MODEL_TYPES: readonly ModelType[] = ['llama', 'mistral', 'qwen2'];

/** RoPE scaling in HF's spelling (passed unchanged to `@para/ops`' `ropeInvFreq`). */
export interface RopeScaling {
  rope_type: 'default' | 'linear' | 'llama3';
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

/** Which linear layers carry a bias (llama: `attention_bias` covers q/k/v/o, `mlp_bias` the MLP; qwen2: q/k/v). */
export interface BiasConfig {
  q: boolean;
  k: boolean;
  v: boolean;
  o: boolean;
  mlp: boolean;
}

export interface ModelConfig {
  modelType: ModelType;
  vocabSize: number;
  /** d: the residual stream width (HF `hidden_size`). */
  hiddenSize: number;
  /** d_ff: the MLP width (HF `intermediate_size`). */
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  /** Grouped-query attention: heads of keys/values (= numHeads for plain multi-head attention). */
  numKvHeads: number;
  /** Per-head width (HF `head_dim`, default hiddenSize / numHeads). */
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bias: BiasConfig;
  /** Std of the normal init of new weights (HF `initializer_range`). */
  initializerRange: number;
  bosTokenId: number | null;
  /** Stop tokens (HF `eos_token_id`, a number or a list). */
  eosTokenIds: number[];
  padTokenId: number | null;
  /** Mistral/Qwen2 sliding-window attention width, when the config enables it (else null). */
  slidingWindow: number | null;
  /** Keys of the source config.json we do not interpret, kept so a save round-trips them. */
  extra?: Record<string, unknown>;
}

/** Fields a caller may set when building a config by hand (the rest get LLaMA defaults). */
export type ModelConfigInit = Partial<Omit<ModelConfig, 'bias'>> & {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  bias?: Partial<BiasConfig>;
};

/** A config from explicit values, with LLaMA defaults for the rest; validated. */
export function createConfig(init: ModelConfigInit): ModelConfig {
  const numHeads = init.numHeads;
  const config: ModelConfig = {
    modelType: init.modelType ?? 'llama',
    vocabSize: init.vocabSize,
    hiddenSize: init.hiddenSize,
    intermediateSize: init.intermediateSize,
    numLayers: init.numLayers,
    numHeads,
    numKvHeads: init.numKvHeads ?? numHeads,
    headDim: init.headDim ?? init.hiddenSize / numHeads,
    rmsNormEps: init.rmsNormEps ?? 1e-6,
    ropeTheta: init.ropeTheta ?? 10000,
    ropeScaling: init.ropeScaling ?? null,
    maxPositionEmbeddings: init.maxPositionEmbeddings ?? 2048,
    tieWordEmbeddings: init.tieWordEmbeddings ?? false,
    bias: {
      q: false,
      k: false,
      v: false,
      o: false,
      mlp: false,
      ...(init.modelType === 'qwen2' ? { q: true, k: true, v: true } : {}),
      ...init.bias,
    },
    initializerRange: init.initializerRange ?? 0.02,
    bosTokenId: init.bosTokenId ?? 1,
    eosTokenIds: init.eosTokenIds ?? [2],
    padTokenId: init.padTokenId ?? null,
    slidingWindow: init.slidingWindow ?? null,
  };
  validateConfig(config, '<config>');
  return config;
}

/** Problems found in a config.json, collected so one error names them all. */
class Problems {
  readonly missing: string[] = [];
  readonly invalid: string[] = [];
  unsupported: string | undefined;
}

/**
 * Parses a Hugging Face `config.json` (its text or parsed value). An unsupported `model_type`,
 * missing or invalid fields → one `ParaError` (`UNSUPPORTED` / `INVALID_CONFIG`) naming them all.
 */
export function parseHfConfig(json: string | unknown, file = 'config.json'): ModelConfig {
  let raw: unknown = json;
  if (typeof json === 'string') {
    try {
      raw = JSON.parse(json);
    } catch (cause) {
      throw new ParaError('INVALID_JSON', 'config is not valid JSON', {
        file,
        expected: 'a JSON object',
        actual: cause instanceof Error ? cause.message : String(cause),
        cause,
      });
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ParaError('INVALID_CONFIG', 'config is not a JSON object', {
      file,
      expected: 'a JSON object',
      actual: JSON.stringify(raw)?.slice(0, 40),
    });
  }
  const c = raw as Record<string, unknown>;
  const p = new Problems();
  const used = new Set<string>();
  const get = (key: string): unknown => {
    used.add(key);
    return c[key];
  };

  const modelType = get('model_type');
  if (modelType === undefined) p.missing.push('model_type');
  else if (
    typeof modelType !== 'string' ||
    !(MODEL_TYPES as readonly string[]).includes(modelType)
  ) {
    p.unsupported = JSON.stringify(modelType);
  }
  const type = (typeof modelType === 'string' ? modelType : 'llama') as ModelType;

  const int = (
    key: string,
    opts: { required?: boolean; min?: number; fallback?: number } = {},
  ): number => {
    const v = get(key);
    if (v === undefined || v === null) {
      if (opts.required !== false) p.missing.push(key);
      return opts.fallback ?? Number.NaN;
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < (opts.min ?? 1)) {
      p.invalid.push(`${key} = ${JSON.stringify(v)} (expected an integer ≥ ${opts.min ?? 1})`);
      return Number.NaN;
    }
    return v;
  };
  const num = (key: string, fallback: number | undefined, positive = true): number => {
    const v = get(key);
    if (v === undefined || v === null) {
      if (fallback === undefined) p.missing.push(key);
      return fallback ?? Number.NaN;
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || (positive && v <= 0)) {
      p.invalid.push(
        `${key} = ${JSON.stringify(v)} (expected a ${positive ? 'positive ' : ''}number)`,
      );
      return Number.NaN;
    }
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = get(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') {
      p.invalid.push(`${key} = ${JSON.stringify(v)} (expected true or false)`);
      return fallback;
    }
    return v;
  };
  const tokenId = (key: string): number | null => {
    const v = get(key);
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      p.invalid.push(`${key} = ${JSON.stringify(v)} (expected a token id)`);
      return null;
    }
    return v;
  };

  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numLayers = int('num_hidden_layers');
  const headDimRaw = get('head_dim');
  let headDim =
    Number.isFinite(hiddenSize) && Number.isFinite(numHeads) ? hiddenSize / numHeads : Number.NaN;
  if (headDimRaw !== undefined && headDimRaw !== null) headDim = int('head_dim');
  else if (Number.isFinite(headDim) && !Number.isInteger(headDim)) {
    p.invalid.push(
      `hidden_size / num_attention_heads = ${headDim} (expected an integer, or an explicit head_dim)`,
    );
  }
  const numKvHeads = int('num_key_value_heads', { required: false, fallback: numHeads });
  if (Number.isFinite(numKvHeads) && Number.isFinite(numHeads) && numHeads % numKvHeads !== 0) {
    p.invalid.push(
      `num_key_value_heads = ${numKvHeads} (expected a divisor of num_attention_heads = ${numHeads})`,
    );
  }
  if (Number.isFinite(headDim) && headDim % 2 !== 0)
    p.invalid.push(`head_dim = ${headDim} (expected an even number for RoPE)`);

  const act = get('hidden_act') ?? 'silu';
  if (act !== 'silu' && act !== 'swish')
    p.invalid.push(`hidden_act = ${JSON.stringify(act)} (expected "silu")`);

  // RoPE: transformers 5 nests theta and scaling in rope_parameters; 4 keeps them top-level.
  const ropeParams = get('rope_parameters');
  let ropeTheta: number;
  let ropeScaling: RopeScaling | null = null;
  if (
    ropeParams !== undefined &&
    ropeParams !== null &&
    typeof ropeParams === 'object' &&
    !Array.isArray(ropeParams)
  ) {
    const rp = ropeParams as Record<string, unknown>;
    const t = rp.rope_theta ?? c.rope_theta;
    used.add('rope_theta');
    if (typeof t !== 'number' || !(t > 0)) {
      p.invalid.push(
        `rope_parameters.rope_theta = ${JSON.stringify(t)} (expected a positive number)`,
      );
      ropeTheta = Number.NaN;
    } else ropeTheta = t;
    ropeScaling = parseRopeScaling(rp, 'rope_parameters', p);
  } else {
    ropeTheta = num('rope_theta', 10000);
    const rs = get('rope_scaling');
    if (rs !== undefined && rs !== null) {
      if (typeof rs !== 'object' || Array.isArray(rs))
        p.invalid.push(`rope_scaling = ${JSON.stringify(rs)} (expected an object or null)`);
      else ropeScaling = parseRopeScaling(rs as Record<string, unknown>, 'rope_scaling', p);
    }
  }

  let bias: BiasConfig;
  if (type === 'qwen2') {
    // Qwen2Attention: q/k/v always have biases, o_proj never; the MLP has none.
    bias = { q: true, k: true, v: true, o: false, mlp: false };
    used.add('attention_bias');
  } else {
    const ab = bool('attention_bias', false);
    bias = { q: ab, k: ab, v: ab, o: ab, mlp: type === 'llama' ? bool('mlp_bias', false) : false };
  }

  const eosRaw = get('eos_token_id');
  let eosTokenIds: number[] = [];
  if (typeof eosRaw === 'number' && Number.isInteger(eosRaw) && eosRaw >= 0) eosTokenIds = [eosRaw];
  else if (
    Array.isArray(eosRaw) &&
    eosRaw.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)
  )
    eosTokenIds = eosRaw as number[];
  else if (eosRaw !== undefined && eosRaw !== null)
    p.invalid.push(
      `eos_token_id = ${JSON.stringify(eosRaw)} (expected a token id or a list of them)`,
    );

  let slidingWindow: number | null = null;
  const sw = get('sliding_window');
  const useSw = type === 'qwen2' ? bool('use_sliding_window', false) : true;
  if (type !== 'qwen2') used.add('use_sliding_window');
  if (useSw && sw !== undefined && sw !== null) {
    if (typeof sw !== 'number' || !Number.isInteger(sw) || sw <= 0)
      p.invalid.push(
        `sliding_window = ${JSON.stringify(sw)} (expected a positive integer or null)`,
      );
    else slidingWindow = sw;
  }

  const config: ModelConfig = {
    modelType: type,
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings: int('max_position_embeddings', {
      required: false,
      fallback: DEFAULT_MAX_POSITIONS[type],
    }),
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    bias,
    initializerRange: num('initializer_range', 0.02),
    bosTokenId: tokenId('bos_token_id'),
    eosTokenIds,
    padTokenId: tokenId('pad_token_id'),
    slidingWindow,
  };
  for (const k of [
    'hidden_act',
    'rms_norm_eps',
    'initializer_range',
    'tie_word_embeddings',
    'mlp_bias',
    'attention_bias',
  ])
    used.add(k);

  if (p.unsupported !== undefined) {
    throw new ParaError('UNSUPPORTED', `model_type ${p.unsupported} is not supported`, {
      file,
      field: 'model_type',
      expected: MODEL_TYPES.map((t) => `"${t}"`).join(', '),
      actual: p.unsupported,
    });
  }
  if (p.missing.length > 0 || p.invalid.length > 0) {
    const parts: string[] = [];
    if (p.missing.length > 0) parts.push(`missing ${p.missing.join(', ')}`);
    if (p.invalid.length > 0) parts.push(`invalid ${p.invalid.join('; ')}`);
    throw new ParaError('INVALID_CONFIG', `bad model config: ${parts.join('; ')}`, {
      file,
      field: [...p.missing, ...p.invalid.map((s) => s.split(' ')[0] as string)].join(', '),
      expected: 'a transformers LlamaConfig / MistralConfig / Qwen2Config',
    });
  }
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) if (!used.has(k)) extra[k] = v;
  config.extra = extra;
  validateConfig(config, file);
  return config;
}

function parseRopeScaling(
  rs: Record<string, unknown>,
  where: string,
  p: Problems,
): RopeScaling | null {
  const type = rs.rope_type ?? rs.type ?? 'default';
  if (type === 'default') return null;
  if (type !== 'linear' && type !== 'llama3') {
    p.invalid.push(
      `${where}.rope_type = ${JSON.stringify(type)} (expected "default", "linear" or "llama3")`,
    );
    return null;
  }
  const need =
    type === 'linear'
      ? ['factor']
      : ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'];
  const out: RopeScaling = { rope_type: type };
  for (const k of need) {
    const v = rs[k];
    if (typeof v !== 'number' || !(v > 0))
      p.invalid.push(`${where}.${k} = ${JSON.stringify(v)} (expected a positive number)`);
    else (out as unknown as Record<string, number>)[k] = v;
  }
  return out;
}

/** Structural checks shared by hand-made and parsed configs. */
export function validateConfig(c: ModelConfig, file: string): void {
  const bad: string[] = [];
  const posInt = (name: string, v: number) => {
    if (!Number.isInteger(v) || v <= 0) bad.push(`${name} = ${v} (expected a positive integer)`);
  };
  posInt('vocab_size', c.vocabSize);
  posInt('hidden_size', c.hiddenSize);
  posInt('intermediate_size', c.intermediateSize);
  posInt('num_hidden_layers', c.numLayers);
  posInt('num_attention_heads', c.numHeads);
  posInt('num_key_value_heads', c.numKvHeads);
  posInt('head_dim', c.headDim);
  posInt('max_position_embeddings', c.maxPositionEmbeddings);
  if (Number.isInteger(c.headDim) && c.headDim % 2 !== 0)
    bad.push(`head_dim = ${c.headDim} (expected even)`);
  if (c.numKvHeads > 0 && c.numHeads % c.numKvHeads !== 0)
    bad.push(`num_key_value_heads = ${c.numKvHeads} (expected a divisor of ${c.numHeads})`);
  if (!(c.rmsNormEps > 0)) bad.push(`rms_norm_eps = ${c.rmsNormEps} (expected > 0)`);
  if (!(c.ropeTheta > 0)) bad.push(`rope_theta = ${c.ropeTheta} (expected > 0)`);
  for (const id of c.eosTokenIds)
    if (!(id >= 0 && id < c.vocabSize))
      bad.push(`eos_token_id ${id} (expected < vocab_size ${c.vocabSize})`);
  if (bad.length > 0) {
    throw new ParaError('INVALID_CONFIG', `bad model config: ${bad.join('; ')}`, {
      file,
      field: bad.map((s) => s.split(' ')[0]).join(', '),
    });
  }
}

/** transformers' class defaults for `max_position_embeddings`. */
const DEFAULT_MAX_POSITIONS: Record<ModelType, number> = {
  llama: 2048,
  mistral: 131072,
  qwen2: 32768,
};

const ARCHITECTURES: Record<ModelType, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

/** The config as a Hugging Face `config.json` object (transformers 4 spelling, float32 weights). */
export function toHfConfig(c: ModelConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(c.extra ?? {}) };
  delete out.rope_parameters;
  Object.assign(out, {
    architectures: [ARCHITECTURES[c.modelType]],
    model_type: c.modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    max_position_embeddings: c.maxPositionEmbeddings,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling,
    tie_word_embeddings: c.tieWordEmbeddings,
    initializer_range: c.initializerRange,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
    pad_token_id: c.padTokenId,
    torch_dtype: 'float32',
  });
  if (c.modelType === 'llama') {
    out.attention_bias = c.bias.q;
    out.mlp_bias = c.bias.mlp;
  } else if (c.modelType === 'mistral') {
    out.attention_bias = c.bias.q;
    out.sliding_window = c.slidingWindow;
  } else {
    out.use_sliding_window = c.slidingWindow !== null;
    out.sliding_window = c.slidingWindow;
  }
  if (c.eosTokenIds.length === 0) out.eos_token_id = null;
  return out;
}

/** Parameter count of a config (embedding counted once when tied). */
export function countParameters(c: ModelConfig): number {
  const d = c.hiddenSize;
  const qd = c.numHeads * c.headDim;
  const kvd = c.numKvHeads * c.headDim;
  const b = c.bias;
  const attn =
    d * qd +
    2 * d * kvd +
    qd * d +
    (b.q ? qd : 0) +
    (b.k ? kvd : 0) +
    (b.v ? kvd : 0) +
    (b.o ? d : 0);
  const mlp = 3 * d * c.intermediateSize + (b.mlp ? 2 * c.intermediateSize + d : 0);
  const perLayer = attn + mlp + 2 * d;
  return c.vocabSize * d * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * perLayer + d;
}
