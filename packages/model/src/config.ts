/**
 * The model configuration: one plain object describing a LLaMA-family decoder, read from (and
 * written back to) a Hugging Face `config.json`. Supported `model_type`s: `llama` (also
 * SmolLM, TinyLlama, Llama 3.x), `mistral`, `qwen2`, `qwen3` (per-head q/k RMSNorm),
 * `gemma2` and `gemma3_text` (Gemma 3's text model: (1 + w) RMSNorms, sandwich norms, GeGLU,
 * embeddings × √d, query_pre_attn_scalar, soft-capping, sliding layers interleaved with global
 * ones, a local RoPE base, qk-norm), `smollm3` (layers without RoPE, `no_rope_layers`) and
 * `olmo2` (post-norms, qk-norm over the whole projection) and `phi3` (fused qkv_proj /
 * gate_up_proj in the checkpoint, partial_rotary_factor, a sliding window on every layer).
 *
 * Sliding-window attention is per layer (`layerTypes`): Mistral's `sliding_window` covers every
 * layer; Qwen2/Qwen3 need `use_sliding_window` and take `layer_types` (else the layers from
 * `max_window_layers` on); Gemma's `layer_types` (else `sliding_window_pattern`) interleave
 * sliding and full layers. A Llama config's `sliding_window` key is ignored, as transformers does.
 * Every config field that changes the numbers is either implemented or refused with a typed
 * error naming it.
 *
 * Both config generations are read: transformers 4 (`rope_theta` + `rope_scaling` at the top
 * level, what checkpoints on the Hub carry) and transformers 5 (`rope_parameters`). We write
 * the transformers 4 form, which every transformers version loads.
 */

import { describeValue, ParaError, parseJsonText } from '@para/core';

export type ModelType =
  | 'llama'
  | 'mistral'
  | 'qwen2'
  | 'qwen3'
  | 'gemma2'
  | 'gemma3_text'
  | 'smollm3'
  | 'olmo2'
  | 'phi3';
export const MODEL_TYPES: readonly ModelType[] = [
  'llama',
  'mistral',
  'qwen2',
  'qwen3',
  'gemma2',
  'gemma3_text',
  'smollm3',
  'olmo2',
  'phi3',
];

/** Attention of one layer: over every earlier slot, or over the last `slidingWindow` slots. */
export type LayerType = 'full_attention' | 'sliding_attention';
const LAYER_TYPES: readonly LayerType[] = ['full_attention', 'sliding_attention'];

/** The gated MLP's activation: `silu` (SwiGLU, LLaMA) or `gelu_pytorch_tanh` (GeGLU, Gemma). */
export type HiddenAct = 'silu' | 'gelu_pytorch_tanh';

/**
 * RMSNorm of q and k before RoPE: none; per head over head_dim (`q_norm [hd]`: Qwen3, Gemma 3);
 * or over the whole projection (`q_norm [Hq·hd]`, `k_norm [Hkv·hd]`: OLMo 2).
 */
export type QkNorm = 'none' | 'head' | 'projection';

/**
 * Where a layer's norms sit. `pre` (LLaMA): input_layernorm before attention,
 * post_attention_layernorm before the MLP. `sandwich` (Gemma 2/3): those two plus norms of the
 * attention output (post_attention_layernorm) and around the MLP (pre_/post_feedforward).
 * `post` (OLMo 2): no input norm; the attention and MLP outputs are normalised
 * (post_attention_layernorm, post_feedforward_layernorm) before the residual add.
 */
export type NormLayout = 'pre' | 'sandwich' | 'post';

/** RoPE of one kind of layer (Gemma 3's sliding layers have their own). */
export interface RopeConfig {
  theta: number;
  scaling: RopeScaling | null;
}

/** RoPE scaling in HF's spelling (passed unchanged to `@para/ops`' `ropeInvFreq`). */
export interface RopeScaling {
  rope_type: 'default' | 'linear' | 'llama3' | 'yarn' | 'dynamic' | 'longrope';
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  /** llama3 and yarn (yarn: default max_position_embeddings, as transformers 5 fills it). */
  original_max_position_embeddings?: number;
  /** yarn's optional settings (transformers' defaults when absent). */
  attention_factor?: number;
  beta_fast?: number;
  beta_slow?: number;
  mscale?: number;
  mscale_all_dim?: number;
  truncate?: boolean;
  /** longrope (Phi-3): per-frequency divisors for short / long sequences, `[rotary_dim / 2]`. */
  short_factor?: number[];
  long_factor?: number[];
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
  /**
   * Sliding-window width (keys per query, itself included) of the `sliding_attention` layers,
   * when the config enables a window (else null, and every layer is full).
   */
  slidingWindow: number | null;
  /** Per layer (numLayers entries): full or sliding-window attention. */
  layerTypes: LayerType[];
  /** The MLP activation (HF `hidden_act`, Gemma's `hidden_activation`). */
  hiddenAct: HiddenAct;
  /** RMSNorm of q and k before RoPE (see {@link QkNorm}). */
  qkNorm: QkNorm;
  /** Gemma: RMSNorm weights are offsets, applied as `(1 + w)`. */
  normUnitOffset: boolean;
  /** Where the layer norms sit (see {@link NormLayout}). */
  normLayout: NormLayout;
  /** SmolLM3: layers that apply no RoPE to q and k (`no_rope_layers` entries 0), ascending. */
  noRopeLayers: number[];
  /**
   * Phi-3: RoPE rotates the first `trunc(head_dim · partialRotaryFactor)` dims of each head and
   * passes the rest through (1: the whole head).
   */
  partialRotaryFactor: number;
  /**
   * Phi-3: the checkpoint stores q/k/v as one `self_attn.qkv_proj` and gate/up as one
   * `mlp.gate_up_proj`. In memory they stay separate projections (the adapter sites q, k, v,
   * gate, up exist as on Llama); loading splits them, saving fuses them again.
   */
  fusedProjections: boolean;
  /** Gemma: the embeddings are multiplied by √hidden_size (in float32, our compute dtype). */
  embedScale: boolean;
  /** Gemma: attention scores scaled by `query_pre_attn_scalar^-0.5` (null: `head_dim^-0.5`). */
  queryPreAttnScalar: number | null;
  /** Gemma 2: attention scores soft-capped as `cap · tanh(s / cap)` (null: none). */
  attnLogitSoftcapping: number | null;
  /** Gemma 2/3: final logits soft-capped the same way (null: none). */
  finalLogitSoftcapping: number | null;
  /** Gemma 3: RoPE of the sliding layers (`rope_local_base_freq`); null: the global RoPE. */
  localRope: RopeConfig | null;
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
  const type = init.modelType ?? 'llama';
  const gemma = type === 'gemma2' || type === 'gemma3_text';
  const slidingWindow = init.slidingWindow ?? null;
  const config: ModelConfig = {
    modelType: type,
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
    slidingWindow,
    layerTypes:
      init.layerTypes ??
      Array.from({ length: init.numLayers }, () =>
        slidingWindow !== null && type === 'mistral' ? 'sliding_attention' : 'full_attention',
      ),
    hiddenAct: init.hiddenAct ?? (gemma ? 'gelu_pytorch_tanh' : 'silu'),
    qkNorm:
      init.qkNorm ??
      (type === 'qwen3' || type === 'gemma3_text'
        ? 'head'
        : type === 'olmo2'
          ? 'projection'
          : 'none'),
    normUnitOffset: init.normUnitOffset ?? gemma,
    normLayout: init.normLayout ?? (gemma ? 'sandwich' : type === 'olmo2' ? 'post' : 'pre'),
    noRopeLayers: init.noRopeLayers ?? [],
    partialRotaryFactor: init.partialRotaryFactor ?? 1,
    fusedProjections: init.fusedProjections ?? type === 'phi3',
    embedScale: init.embedScale ?? gemma,
    queryPreAttnScalar: init.queryPreAttnScalar ?? null,
    attnLogitSoftcapping: init.attnLogitSoftcapping ?? null,
    finalLogitSoftcapping: init.finalLogitSoftcapping ?? null,
    localRope: init.localRope ?? null,
  };
  validateConfig(config, '<config>');
  return config;
}

/** Problems found in a config.json, collected so one error names them all. */
class Problems {
  readonly missing: string[] = [];
  readonly invalid: string[] = [];
  /** Settings transformers implements and we do not: `field = value (why)`. */
  readonly unsupportedFields: string[] = [];
  unsupported: string | undefined;
}

/**
 * Parses a Hugging Face `config.json` (its text or parsed value). An unsupported `model_type`,
 * missing or invalid fields → one `ParaError` (`UNSUPPORTED` / `INVALID_CONFIG`) naming them all.
 */
export function parseHfConfig(json: string | unknown, file = 'config.json'): ModelConfig {
  let raw: unknown = json;
  if (typeof json === 'string') raw = parseJsonText(json, file, { what: 'config' });
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ParaError('INVALID_CONFIG', 'config is not a JSON object', {
      file,
      expected: 'a JSON object',
      actual: describeValue(raw, 40),
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

  const gemma = type === 'gemma2' || type === 'gemma3_text';
  const qwen = type === 'qwen2' || type === 'qwen3';
  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numLayers = int('num_hidden_layers');
  const headDimRaw = get('head_dim');
  let headDim =
    Number.isFinite(hiddenSize) && Number.isFinite(numHeads) ? hiddenSize / numHeads : Number.NaN;
  if (headDimRaw !== undefined && headDimRaw !== null) headDim = int('head_dim');
  else if (DEFAULT_HEAD_DIM[type] !== undefined) {
    // Qwen3 and Gemma configs always carry head_dim in transformers (class defaults 128, 256).
    headDim = DEFAULT_HEAD_DIM[type] as number;
  } else if (Number.isFinite(headDim) && !Number.isInteger(headDim)) {
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

  // The MLP activation: Gemma reads hidden_activation (its configs may also carry an unused
  // hidden_act); the others hidden_act.
  let hiddenAct: HiddenAct = 'silu';
  if (gemma) {
    used.add('hidden_act');
    const act = get('hidden_activation') ?? 'gelu_pytorch_tanh';
    if (act !== 'gelu_pytorch_tanh')
      p.invalid.push(`hidden_activation = ${JSON.stringify(act)} (expected "gelu_pytorch_tanh")`);
    hiddenAct = 'gelu_pytorch_tanh';
  } else {
    const act = get('hidden_act') ?? 'silu';
    if (act !== 'silu' && act !== 'swish')
      p.invalid.push(`hidden_act = ${JSON.stringify(act)} (expected "silu")`);
  }

  // RoPE: transformers 5 nests theta and scaling in rope_parameters; 4 keeps them top-level.
  // Gemma 3 has one RoPE per layer type: v5 nests {full_attention, sliding_attention}; v4 has
  // rope_theta + rope_scaling (global layers) and rope_local_base_freq (sliding layers).
  const defaultTheta = type === 'gemma3_text' ? 1e6 : type === 'smollm3' ? 2e6 : 10000;
  // partial_rotary_factor: Phi-3 implements it (for its default RoPE); elsewhere transformers'
  // scaled RoPE types would honour it, which we refuse (parseRopeScaling).
  const partialCheck = type === 'phi3' ? null : c.partial_rotary_factor;
  let partialRotaryFactor = 1;
  if (type === 'phi3') {
    const rp = c.rope_parameters;
    const raw =
      (isObjectValue(rp) ? rp.partial_rotary_factor : undefined) ?? get('partial_rotary_factor');
    if (raw !== undefined && raw !== null) {
      if (typeof raw !== 'number' || !(raw > 0 && raw <= 1))
        p.invalid.push(
          `partial_rotary_factor = ${JSON.stringify(raw)} (expected a number in (0, 1])`,
        );
      else partialRotaryFactor = raw;
    }
    used.add('partial_rotary_factor');
  }
  const ropeParams = get('rope_parameters');
  let ropeTheta: number;
  let ropeScaling: RopeScaling | null = null;
  let localRope: RopeConfig | null = null;
  const isObject = (v: unknown): v is Record<string, unknown> =>
    v !== undefined && v !== null && typeof v === 'object' && !Array.isArray(v);
  const ropeOf = (rp: Record<string, unknown>, where: string, fallback: number): RopeConfig => {
    const t = rp.rope_theta ?? fallback;
    let theta = Number.NaN;
    if (typeof t !== 'number' || !(t > 0))
      p.invalid.push(`${where}.rope_theta = ${JSON.stringify(t)} (expected a positive number)`);
    else theta = t;
    return { theta, scaling: parseRopeScaling(rp, where, p, partialCheck) };
  };
  if (
    type === 'gemma3_text' &&
    isObject(ropeParams) &&
    (isObject(ropeParams.full_attention) || isObject(ropeParams.sliding_attention))
  ) {
    const full = ropeOf(
      isObject(ropeParams.full_attention) ? ropeParams.full_attention : {},
      'rope_parameters.full_attention',
      num('rope_theta', 1e6),
    );
    ({ theta: ropeTheta, scaling: ropeScaling } = full);
    localRope = ropeOf(
      isObject(ropeParams.sliding_attention) ? ropeParams.sliding_attention : {},
      'rope_parameters.sliding_attention',
      num('rope_local_base_freq', 10000),
    );
  } else if (isObject(ropeParams)) {
    const t = ropeParams.rope_theta ?? c.rope_theta ?? defaultTheta;
    used.add('rope_theta');
    if (typeof t !== 'number' || !(t > 0)) {
      p.invalid.push(
        `rope_parameters.rope_theta = ${JSON.stringify(t)} (expected a positive number)`,
      );
      ropeTheta = Number.NaN;
    } else ropeTheta = t;
    ropeScaling = parseRopeScaling(ropeParams, 'rope_parameters', p, partialCheck);
  } else {
    ropeTheta = num('rope_theta', defaultTheta);
    const rs = get('rope_scaling');
    if (rs !== undefined && rs !== null) {
      if (typeof rs !== 'object' || Array.isArray(rs))
        p.invalid.push(`rope_scaling = ${JSON.stringify(rs)} (expected an object or null)`);
      else
        ropeScaling = parseRopeScaling(
          rs as Record<string, unknown>,
          'rope_scaling',
          p,
          partialCheck,
        );
    }
  }
  if (type === 'gemma3_text' && localRope === null)
    localRope = { theta: num('rope_local_base_freq', 10000), scaling: null };
  else used.add('rope_local_base_freq');

  let bias: BiasConfig;
  if (type === 'phi3') {
    // Phi3: no biases anywhere (Phi3Config has no attention_bias; a stray key stays unread).
    bias = { q: false, k: false, v: false, o: false, mlp: false };
  } else if (type === 'qwen2') {
    // Qwen2Attention: q/k/v always have biases, o_proj never; the MLP has none.
    bias = { q: true, k: true, v: true, o: false, mlp: false };
    used.add('attention_bias');
  } else {
    const ab = bool('attention_bias', false);
    const mlpBias = type === 'llama' || type === 'smollm3' ? bool('mlp_bias', false) : false;
    bias = { q: ab, k: ab, v: ab, o: ab, mlp: mlpBias };
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

  // Sliding windows, as each transformers class reads them.
  let slidingWindow: number | null = null;
  const swRaw = get('sliding_window');
  const swDefault = gemma ? 4096 : null; // Gemma's class default when the key is absent
  const sw = swRaw === undefined ? swDefault : swRaw;
  const useSw =
    qwen || type === 'smollm3'
      ? bool('use_sliding_window', false)
      : type !== 'llama' && type !== 'olmo2';
  if (!qwen && type !== 'smollm3') used.add('use_sliding_window');
  if (useSw && sw !== undefined && sw !== null) {
    if (typeof sw !== 'number' || !Number.isInteger(sw) || sw <= 0)
      p.invalid.push(
        `sliding_window = ${JSON.stringify(sw)} (expected a positive integer or null)`,
      );
    else slidingWindow = sw;
  }
  let layerTypes: LayerType[] = [];
  const ltRaw = get('layer_types');
  // A per-layer list is built only for a plausible depth: a hostile num_hidden_layers (1e9) must
  // not allocate here; such a config keeps an empty list and is refused against the weights
  // file's header (validateCheckpoint) before any per-layer work.
  const nL = Number.isFinite(numLayers) && numLayers <= MAX_LISTED_LAYERS ? numLayers : 0;
  // SmolLM3: no_rope_layers (1 = RoPE, 0 = none per layer), else every no_rope_layer_interval-th
  // layer goes without.
  const noRopeLayers: number[] = [];
  if (type === 'smollm3') {
    const nr = get('no_rope_layers');
    if (nr !== undefined && nr !== null) {
      if (
        !Array.isArray(nr) ||
        nr.length !== nL ||
        !nr.every((v) => v === 0 || v === 1 || typeof v === 'boolean')
      )
        p.invalid.push(
          `no_rope_layers = ${JSON.stringify(nr).slice(0, 60)} (expected ${nL} entries of 0 or 1)`,
        );
      else
        nr.forEach((v, i) => {
          if (!v) noRopeLayers.push(i);
        });
      used.add('no_rope_layer_interval');
    } else {
      const every = int('no_rope_layer_interval', { required: false, fallback: 4 });
      for (let i = 0; i < nL; i++) if ((i + 1) % every === 0) noRopeLayers.push(i);
    }
  }
  if (type === 'llama' || type === 'mistral' || type === 'olmo2' || type === 'phi3') {
    // Mistral: one window for every layer (MistralConfig ignores layer_types with a warning).
    const t: LayerType = slidingWindow !== null ? 'sliding_attention' : 'full_attention';
    layerTypes = Array.from({ length: nL }, () => t);
  } else if (ltRaw !== undefined && ltRaw !== null) {
    if (
      !Array.isArray(ltRaw) ||
      ltRaw.length !== nL ||
      !ltRaw.every((t) => (LAYER_TYPES as readonly unknown[]).includes(t))
    ) {
      const bad = Array.isArray(ltRaw)
        ? ltRaw.find((t) => !(LAYER_TYPES as readonly unknown[]).includes(t))
        : undefined;
      if (bad !== undefined)
        p.unsupportedFields.push(
          `layer_types = ${JSON.stringify(bad)} (expected "full_attention" or "sliding_attention")`,
        );
      else
        p.invalid.push(
          `layer_types = ${JSON.stringify(ltRaw).slice(0, 60)} (expected ${nL} layer types)`,
        );
    } else layerTypes = ltRaw as LayerType[];
    used.add('max_window_layers');
    used.add('sliding_window_pattern');
  } else if (type === 'smollm3') {
    // SmolLM3Config: the layers without RoPE slide (when a window is on).
    layerTypes = Array.from({ length: nL }, (_, i) =>
      noRopeLayers.includes(i) ? 'sliding_attention' : 'full_attention',
    );
  } else if (qwen) {
    const mwl = int('max_window_layers', { required: false, min: 0, fallback: 28 });
    layerTypes = Array.from({ length: nL }, (_, i) =>
      slidingWindow !== null && i >= mwl ? 'sliding_attention' : 'full_attention',
    );
  } else {
    // Gemma 2: even layers slide; Gemma 3: all but every sliding_window_pattern-th layer.
    const pattern =
      type === 'gemma2' ? 2 : int('sliding_window_pattern', { required: false, fallback: 6 });
    if (type === 'gemma2') used.add('sliding_window_pattern');
    layerTypes = Array.from({ length: nL }, (_, i) =>
      (i + 1) % pattern !== 0 ? 'sliding_attention' : 'full_attention',
    );
  }
  if (slidingWindow === null) layerTypes = layerTypes.map(() => 'full_attention');
  if (type === 'llama') used.delete('sliding_window'); // kept in extra, uninterpreted

  // Gemma's extras.
  const capping = (key: string, fallback: number | null): number | null => {
    const v = get(key);
    if (v === undefined) return fallback;
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      p.invalid.push(`${key} = ${JSON.stringify(v)} (expected a positive number or null)`);
      return null;
    }
    return v;
  };
  let queryPreAttnScalar: number | null = null;
  let attnLogitSoftcapping: number | null = null;
  let finalLogitSoftcapping: number | null = null;
  if (gemma) {
    queryPreAttnScalar = num('query_pre_attn_scalar', 256);
    // Gemma 3's attention ignores attn_logit_softcapping (transformers passes no softcap).
    if (type === 'gemma2') attnLogitSoftcapping = capping('attn_logit_softcapping', 50);
    else used.add('attn_logit_softcapping');
    finalLogitSoftcapping = capping('final_logit_softcapping', type === 'gemma2' ? 30 : null);
    if (bool('use_bidirectional_attention', false))
      p.unsupportedFields.push(
        'use_bidirectional_attention = true (bidirectional attention is not implemented)',
      );
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
    rmsNormEps: num('rms_norm_eps', type === 'olmo2' || type === 'phi3' ? 1e-5 : 1e-6),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings: int('max_position_embeddings', {
      required: false,
      fallback: DEFAULT_MAX_POSITIONS[type],
    }),
    tieWordEmbeddings: bool('tie_word_embeddings', gemma || type === 'smollm3'),
    bias,
    initializerRange: num('initializer_range', 0.02),
    bosTokenId: tokenId('bos_token_id'),
    eosTokenIds,
    padTokenId: tokenId('pad_token_id'),
    slidingWindow,
    layerTypes,
    hiddenAct,
    qkNorm:
      type === 'qwen3' || type === 'gemma3_text'
        ? 'head'
        : type === 'olmo2'
          ? 'projection'
          : 'none',
    normUnitOffset: gemma,
    normLayout: gemma ? 'sandwich' : type === 'olmo2' ? 'post' : 'pre',
    noRopeLayers,
    partialRotaryFactor,
    fusedProjections: type === 'phi3',
    embedScale: gemma,
    queryPreAttnScalar,
    attnLogitSoftcapping,
    finalLogitSoftcapping,
    localRope,
  };
  for (const k of [
    'hidden_act',
    'rms_norm_eps',
    'initializer_range',
    'tie_word_embeddings',
    'mlp_bias',
    ...(type === 'phi3' ? [] : ['attention_bias']),
  ])
    used.add(k);
  // Phi-3 longrope: transformers gives Phi3Config's top-level original_max_position_embeddings
  // (default 4096) priority over the one in rope_scaling.
  if (config.ropeScaling?.rope_type === 'longrope') {
    config.ropeScaling.original_max_position_embeddings = int('original_max_position_embeddings', {
      required: false,
      fallback: 4096,
    });
  }
  // yarn without original_max_position_embeddings: transformers 5 takes max_position_embeddings.
  for (const rs of [config.ropeScaling, config.localRope?.scaling ?? null])
    if (rs?.rope_type === 'yarn' && rs.original_max_position_embeddings === undefined)
      rs.original_max_position_embeddings = config.maxPositionEmbeddings;
  // Token ids must index the vocabulary.
  if (Number.isInteger(config.vocabSize)) {
    const V = config.vocabSize;
    const out = (key: string, id: number | null) => {
      if (id !== null && id >= V)
        p.invalid.push(`${key} = ${id} (expected a token id below vocab_size ${V})`);
    };
    out('bos_token_id', config.bosTokenId);
    out('pad_token_id', config.padTokenId);
    for (const id of eosTokenIds) out('eos_token_id', id);
  }

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
      expected: `a transformers ${CONFIG_CLASSES[type]}`,
    });
  }
  if (p.unsupportedFields.length > 0) {
    throw new ParaError(
      'UNSUPPORTED',
      `unsupported model setting: ${p.unsupportedFields.join('; ')}`,
      {
        file,
        field: p.unsupportedFields.map((s) => s.split(' ')[0] as string).join(', '),
        expected: 'settings this implementation computes exactly',
      },
    );
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
  topPartial?: unknown,
): RopeScaling | null {
  const type = rs.rope_type ?? rs.type ?? 'default';
  if (type === 'default') return null;
  if (topPartial === null) {
    // Phi-3: transformers accepts default and longrope (and renames su / yarn to longrope).
    if (type !== 'longrope' && type !== 'su' && type !== 'yarn') {
      p.unsupportedFields.push(
        `${where}.rope_type = ${JSON.stringify(type)} (Phi-3 takes "default" or "longrope")`,
      );
      return null;
    }
    const out: RopeScaling = { rope_type: 'longrope' };
    for (const k of ['short_factor', 'long_factor'] as const) {
      const v = rs[k];
      if (
        !Array.isArray(v) ||
        !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)
      )
        p.invalid.push(
          `${where}.${k} = ${JSON.stringify(v)?.slice(0, 40)} (expected a list of positive numbers)`,
        );
      else out[k] = v as number[];
    }
    for (const k of ['factor', 'attention_factor'] as const) {
      const v = rs[k];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'number' || !(v > 0))
        p.invalid.push(`${where}.${k} = ${JSON.stringify(v)} (expected a positive number)`);
      else out[k] = v;
    }
    return out; // original_max_position_embeddings: Phi3Config's top-level field, set by the caller
  }
  if (type !== 'linear' && type !== 'llama3' && type !== 'yarn' && type !== 'dynamic') {
    // longrope, su, ...: transformers implements them, we do not (yet).
    p.unsupportedFields.push(
      `${where}.rope_type = ${JSON.stringify(type)} (implemented: "default", "linear", "llama3", "yarn", "dynamic")`,
    );
    return null;
  }
  const need =
    type === 'linear' || type === 'yarn' || type === 'dynamic'
      ? ['factor']
      : ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'];
  const out: RopeScaling = { rope_type: type };
  const put = (k: string, v: unknown) => {
    (out as unknown as Record<string, unknown>)[k] = v;
  };
  for (const k of need) {
    const v = rs[k];
    if (typeof v !== 'number' || !(v > 0))
      p.invalid.push(`${where}.${k} = ${JSON.stringify(v)} (expected a positive number)`);
    else put(k, v);
  }
  if (type === 'yarn') {
    for (const k of [
      'original_max_position_embeddings',
      'attention_factor',
      'beta_fast',
      'beta_slow',
      'mscale',
      'mscale_all_dim',
    ]) {
      const v = rs[k];
      if (v === undefined || v === null) continue;
      if (
        typeof v !== 'number' ||
        !Number.isFinite(v) ||
        v < 0 ||
        (k !== 'mscale' && k !== 'mscale_all_dim' && v === 0)
      )
        p.invalid.push(`${where}.${k} = ${JSON.stringify(v)} (expected a positive number)`);
      else put(k, v);
    }
    if (rs.truncate !== undefined && rs.truncate !== null) {
      if (typeof rs.truncate !== 'boolean')
        p.invalid.push(
          `${where}.truncate = ${JSON.stringify(rs.truncate)} (expected true or false)`,
        );
      else put('truncate', rs.truncate);
    }
  }
  // transformers' linear / llama3 / yarn rotate only a partial_rotary_factor share of head_dim.
  const partial = rs.partial_rotary_factor ?? topPartial;
  if (partial !== undefined && partial !== null && partial !== 1)
    p.unsupportedFields.push(
      `${rs.partial_rotary_factor === undefined ? '' : `${where}.`}partial_rotary_factor = ${JSON.stringify(partial)} (partial RoPE is not implemented)`,
    );
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
  if (
    !Array.isArray(c.layerTypes) ||
    (c.layerTypes.length !== c.numLayers &&
      !(c.layerTypes.length === 0 && c.numLayers > MAX_LISTED_LAYERS))
  )
    bad.push(`layer_types (expected ${c.numLayers} entries)`);
  else if (!c.layerTypes.every((t) => (LAYER_TYPES as readonly string[]).includes(t)))
    bad.push('layer_types (expected "full_attention" or "sliding_attention" each)');
  else if (c.slidingWindow === null && c.layerTypes.includes('sliding_attention'))
    bad.push('layer_types (sliding layers need a sliding_window)');
  if (c.slidingWindow !== null && !(Number.isInteger(c.slidingWindow) && c.slidingWindow > 0))
    bad.push(`sliding_window = ${c.slidingWindow} (expected a positive integer)`);
  if (!['none', 'head', 'projection'].includes(c.qkNorm))
    bad.push(`qkNorm = ${c.qkNorm} (expected none, head or projection)`);
  if (!['pre', 'sandwich', 'post'].includes(c.normLayout))
    bad.push(`normLayout = ${c.normLayout} (expected pre, sandwich or post)`);
  if (!c.noRopeLayers.every((i) => Number.isInteger(i) && i >= 0 && i < c.numLayers))
    bad.push(`no_rope_layers (expected layer indices below ${c.numLayers})`);
  if (!(c.partialRotaryFactor > 0 && c.partialRotaryFactor <= 1))
    bad.push(`partial_rotary_factor = ${c.partialRotaryFactor} (expected a number in (0, 1])`);
  else if (Number.isInteger(c.headDim) && (rotaryDim(c) % 2 !== 0 || rotaryDim(c) < 2))
    bad.push(
      `partial_rotary_factor = ${c.partialRotaryFactor} (head_dim ${c.headDim} × it must truncate to an even number ≥ 2)`,
    );
  if (c.ropeScaling?.rope_type === 'longrope') {
    const n = rotaryDim(c) / 2;
    for (const k of ['short_factor', 'long_factor'] as const)
      if (c.ropeScaling[k]?.length !== n)
        bad.push(`rope_scaling.${k} (expected ${n} numbers: rotary dims / 2)`);
  }
  if (c.hiddenAct !== 'silu' && c.hiddenAct !== 'gelu_pytorch_tanh')
    bad.push(`hidden_act = ${c.hiddenAct} (expected silu or gelu_pytorch_tanh)`);
  for (const [name, v] of [
    ['query_pre_attn_scalar', c.queryPreAttnScalar],
    ['attn_logit_softcapping', c.attnLogitSoftcapping],
    ['final_logit_softcapping', c.finalLogitSoftcapping],
  ] as const)
    if (v !== null && !(Number.isFinite(v) && v > 0))
      bad.push(`${name} = ${v} (expected a positive number or null)`);
  if (c.localRope !== null && !(c.localRope.theta > 0))
    bad.push(`rope_local_base_freq = ${c.localRope.theta} (expected > 0)`);
  if (bad.length > 0) {
    throw new ParaError('INVALID_CONFIG', `bad model config: ${bad.join('; ')}`, {
      file,
      field: bad.map((s) => s.split(' ')[0]).join(', '),
    });
  }
}

/** Dims of each head that RoPE rotates: `trunc(head_dim · partial_rotary_factor)`, as transformers. */
export function rotaryDim(c: ModelConfig): number {
  return Math.trunc(c.headDim * c.partialRotaryFactor);
}

function isObjectValue(v: unknown): v is Record<string, unknown> {
  return v !== undefined && v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Deeper configs (hostile ones: no real model comes near) get no per-layer list; see parseHfConfig. */
const MAX_LISTED_LAYERS = 1 << 20;

/** transformers' class defaults for `max_position_embeddings`. */
const DEFAULT_MAX_POSITIONS: Record<ModelType, number> = {
  llama: 2048,
  mistral: 131072,
  qwen2: 32768,
  qwen3: 32768,
  gemma2: 8192,
  gemma3_text: 131072,
  smollm3: 32768,
  olmo2: 2048,
  phi3: 4096,
};

/** transformers' class defaults for `head_dim` where it is not hidden_size / heads. */
const DEFAULT_HEAD_DIM: Partial<Record<ModelType, number>> = {
  qwen3: 128,
  gemma2: 256,
  gemma3_text: 256,
};

const ARCHITECTURES: Record<ModelType, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  gemma2: 'Gemma2ForCausalLM',
  gemma3_text: 'Gemma3ForCausalLM',
  smollm3: 'SmolLM3ForCausalLM',
  olmo2: 'Olmo2ForCausalLM',
  phi3: 'Phi3ForCausalLM',
};

const CONFIG_CLASSES: Record<ModelType, string> = {
  llama: 'LlamaConfig',
  mistral: 'MistralConfig',
  qwen2: 'Qwen2Config',
  qwen3: 'Qwen3Config',
  gemma2: 'Gemma2Config',
  gemma3_text: 'Gemma3TextConfig',
  smollm3: 'SmolLM3Config',
  olmo2: 'Olmo2Config',
  phi3: 'Phi3Config',
};

/** The config as a Hugging Face `config.json` object (transformers 4 spelling, float32 weights). */
export function toHfConfig(c: ModelConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(c.extra ?? {}) };
  delete out.rope_parameters;
  const gemma = c.modelType === 'gemma2' || c.modelType === 'gemma3_text';
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
    [gemma ? 'hidden_activation' : 'hidden_act']: c.hiddenAct,
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
  switch (c.modelType) {
    case 'llama':
      out.attention_bias = c.bias.q;
      out.mlp_bias = c.bias.mlp;
      break;
    case 'mistral':
      out.attention_bias = c.bias.q;
      out.sliding_window = c.slidingWindow;
      break;
    case 'olmo2':
      out.attention_bias = c.bias.q;
      break;
    case 'phi3':
      out.sliding_window = c.slidingWindow;
      out.partial_rotary_factor = c.partialRotaryFactor;
      if (c.ropeScaling?.rope_type === 'longrope')
        out.original_max_position_embeddings = c.ropeScaling.original_max_position_embeddings;
      break;
    case 'smollm3':
      out.attention_bias = c.bias.q;
      out.mlp_bias = c.bias.mlp;
      out.use_sliding_window = c.slidingWindow !== null;
      out.sliding_window = c.slidingWindow;
      out.layer_types = c.layerTypes;
      out.no_rope_layers = Array.from({ length: c.numLayers }, (_, i) =>
        c.noRopeLayers.includes(i) ? 0 : 1,
      );
      break;
    case 'qwen2':
    case 'qwen3':
      if (c.modelType === 'qwen3') out.attention_bias = c.bias.q;
      out.use_sliding_window = c.slidingWindow !== null;
      out.sliding_window = c.slidingWindow;
      out.layer_types = c.layerTypes;
      break;
    default:
      out.attention_bias = c.bias.q;
      out.sliding_window = c.slidingWindow;
      out.layer_types = c.layerTypes;
      out.query_pre_attn_scalar = c.queryPreAttnScalar;
      out.final_logit_softcapping = c.finalLogitSoftcapping;
      if (c.modelType === 'gemma2') out.attn_logit_softcapping = c.attnLogitSoftcapping;
      if (c.modelType === 'gemma3_text' && c.localRope !== null) {
        if (c.localRope.scaling === null) out.rope_local_base_freq = c.localRope.theta;
        else {
          // Only the nested transformers 5 form carries scaling for the sliding layers.
          delete out.rope_theta;
          delete out.rope_scaling;
          out.rope_parameters = {
            full_attention: { rope_type: 'default', ...c.ropeScaling, rope_theta: c.ropeTheta },
            sliding_attention: { ...c.localRope.scaling, rope_theta: c.localRope.theta },
          };
        }
      }
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
  const qk = c.qkNorm === 'head' ? 2 * c.headDim : c.qkNorm === 'projection' ? qd + kvd : 0;
  const norms = (c.normLayout === 'sandwich' ? 4 : 2) * d + qk;
  const perLayer = attn + mlp + norms;
  return c.vocabSize * d * (c.tieWordEmbeddings ? 1 : 2) + c.numLayers * perLayer + d;
}
