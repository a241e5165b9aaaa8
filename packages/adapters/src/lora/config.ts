/**
 * LoRA's settings, PEFT's `LoraConfig` keys (adapter_config.json with `peft_type: "LORA"`).
 *
 * Implemented: r, lora_alpha, lora_dropout, target_modules (a list of projection names or
 * dotted module paths, "all-linear", or a regex string, each matched as PEFT matches them — see
 * `loraTargets`), layers_to_transform, use_rslora, fan_in_fan_out (ignored for nn.Linear, as PEFT does),
 * init_lora_weights (true | false | "gaussian", used only when creating), rank_pattern and
 * alpha_pattern (per-module r and alpha, PEFT's `get_pattern_key` rule — see
 * `loraModuleSettings`), use_dora (DoRA: `lora_magnitude_vector` per adapted projection,
 * PEFT's formula, weight norm detached in training, bias outside the scaling), bias ("none",
 * "all": every bias of the backbone trained, "lora_only": those of the adapted projections;
 * saved as PEFT does, `….base_layer.bias` / `….bias`), LoRA on `embed_tokens` (PEFT's
 * `lora_embedding_A` [r, V] / `lora_embedding_B` [d, r]: E[x] + s·(A[:, x])ᵀ Bᵀ) and on
 * `lm_head` (a LoRA linear on the head) when target_modules names them (see `loraEdgeTargets`;
 * PEFT's saved `….base_layer.weight` beside them load too), modules_to_save ["lm_head"] /
 * ["embed_tokens"] (trained full copies, saved as `base_model.model.lm_head.weight` /
 * `….model.embed_tokens.weight`, used instead of the backbone's module for the adapter's rows;
 * see `loraSavedModules`). With tied embeddings each module is adapted or copied on its own, as
 * PEFT does without ensure_weight_tying. A fresh adapter's DoRA magnitudes (‖W‖), trained
 * biases and modules_to_save copies (the backbone's) are read from the backbone it is first
 * attached to. Keys whose non-default values change the computation and are not implemented
 * (lora_bias, layer_replication, exclude_modules, target_parameters, trainable_token_indices,
 * ensure_weight_tying, aLoRA, QA-LoRA, BD-LoRA, initialisations that rewrite the base weights,
 * DoRA on embed_tokens / lm_head, modules_to_save of other modules, targets such as model.norm)
 * are an UNSUPPORTED error; other PEFT bookkeeping keys are ignored. Merging an adapter with
 * embed_tokens / lm_head parts into a backbone with tied embeddings is UNSUPPORTED.
 */

import { describeValue, ParaError } from '@para/core';
import type { ModelConfig } from '@para/model';
import { hasBias, projectionShape } from '@para/model';
import {
  ALL_PROJECTIONS,
  type BaseAdapterConfig,
  ConfigReader,
  compileModulePattern,
  EDGE_MODULE_KEYS,
  type EdgeModule,
  INLINE_CONFIG,
  listTargets,
  moduleKey,
  otherModulesMatching,
  type TargetModule,
} from '../base/config';
import {
  expandFusedTargets,
  fusedTargetList,
  fusedTargetsAsWritten,
  loraFusedGroups,
} from './fused';

export interface LoraConfig extends BaseAdapterConfig {
  peft_type: 'LORA';
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  /**
   * As written in adapter_config.json (and written back so): a list of projection names or
   * module paths (`model.layers.1.self_attn.q_proj`), or "all-linear", or a regex string
   * (see `loraTargets`).
   */
  target_modules: string[] | string;
  /** Only these layers (null: all). */
  layers_to_transform: number[] | null;
  /**
   * PEFT's `bias`: "none"; "all" trains every bias of the model (each biased projection of every
   * layer, adapted or not); "lora_only" the biases of the adapted projections. A trained bias
   * replaces the backbone's in that projection (saved as `…q_proj.base_layer.bias` for an adapted
   * projection, `…k_proj.bias` for another). On a backbone without biases there is nothing to train.
   */
  bias: 'none' | 'lora_only' | 'all';
  fan_in_fan_out: boolean;
  /** Scaling alpha/√r instead of alpha/r. */
  use_rslora: boolean;
  /** true: A Kaiming-uniform, B zero (PEFT's default); false: both Kaiming-uniform; "gaussian": A ~ N(0, 1/r), B zero. */
  init_lora_weights: boolean | 'gaussian';
  /**
   * Per-module ranks, PEFT's `rank_pattern`: a module whose key (`model.layers.1.self_attn.q_proj`)
   * Python-`re.match`es `(.*\.)?(KEY)$` takes the value of the first such KEY (in file order),
   * else `r`. See `loraModuleSettings`.
   */
  rank_pattern: Record<string, number>;
  /** Per-module alphas, PEFT's `alpha_pattern` (matched as `rank_pattern`), else `lora_alpha`. */
  alpha_pattern: Record<string, number>;
  /**
   * DoRA (Liu et al. 2024, PEFT's `use_dora`): each adapted projection also has a magnitude
   * vector m `[out]` (`lora_magnitude_vector`) and computes
   * `y = m / ‖W + s·B·A‖_row ⊙ (W x + s·B·A x) + bias`, the row norm detached in training.
   */
  use_dora: boolean;
  /**
   * PEFT's `modules_to_save`, as written (null: none): `"lm_head"` / `"embed_tokens"` (any
   * entry PEFT's `key.endswith(entry)` matches to them) train a full copy of that module, saved
   * with the adapter (`base_model.model.lm_head.weight`, `….model.embed_tokens.weight`) and used
   * instead of the backbone's for this adapter's rows. See `loraSavedModules`.
   */
  modules_to_save: string[] | null;
}

export type LoraConfigInit = Partial<Omit<LoraConfig, 'peft_type'>> & { peft_type?: 'LORA' };

export const LORA_DEFAULTS = {
  r: 8,
  lora_alpha: 8,
  lora_dropout: 0,
  /** PEFT's default for llama-family models. */
  target_modules: ['q_proj', 'v_proj'] as TargetModule[],
} as const;

export function resolveLoraConfig(
  init: LoraConfigInit | Readonly<Record<string, unknown>>,
  file = INLINE_CONFIG,
): LoraConfig {
  const c = new ConfigReader(expandFusedTargets(init as Record<string, unknown>, file), file);
  if (c.has('peft_type') && c.raw.peft_type !== 'LORA') c.fail('peft_type', '"LORA"');
  let targets: string[] | string;
  if (typeof c.raw.target_modules === 'string') {
    targets = c.raw.target_modules;
    if (targets.toLowerCase() !== 'all-linear') compileModulePattern(targets, file);
    // PEFT's LoraConfig refuses this too: a string selects layers by itself.
    if (c.has('layers_to_transform'))
      c.fail(
        'layers_to_transform',
        'null when target_modules is a string ("all-linear" or a regex), as PEFT requires',
      );
  } else
    targets = c.targetModuleList(
      'target_modules',
      LORA_DEFAULTS.target_modules,
      'LoRA',
      Object.values(EDGE_MODULE_KEYS),
    );
  const modules_to_save = modulesToSave(c);
  c.onlyDefault(
    'ensure_weight_tying',
    [false],
    'false (ensure_weight_tying is not implemented: with tied embeddings, LoRA on embed_tokens / lm_head and modules_to_save adapt each module on its own, as PEFT does without it)',
  );
  c.onlyDefault('layer_replication', [], 'null (layer_replication is not implemented)');
  c.onlyDefault('lora_bias', [false], 'false (a bias on lora_B is not implemented)');
  c.onlyDefault('exclude_modules', [], 'null (exclude_modules is not implemented)');
  c.onlyDefault('target_parameters', [], 'null (target_parameters is not implemented)');
  c.onlyDefault(
    'trainable_token_indices',
    [],
    'null (trainable_token_indices is not implemented; modules_to_save ["embed_tokens"] trains the whole embedding)',
  );
  c.onlyDefault('alora_invocation_tokens', [], 'null (aLoRA is not implemented)');
  c.onlyDefault('use_qalora', [false], 'false (QA-LoRA is not implemented)');
  c.onlyDefault('use_bdlora', [false], 'null or false (not implemented)');
  // PiSSA, OLoRA, LoftQ and similar initialisations also rewrite the base weights, so their
  // adapters do not apply to the original backbone.
  const init_lora_weights = c.has('init_lora_weights') ? c.raw.init_lora_weights : true;
  if (
    !(init_lora_weights === true || init_lora_weights === false || init_lora_weights === 'gaussian')
  ) {
    c.fail(
      'init_lora_weights',
      'true, false or "gaussian" (initialisations that rewrite the base weights are not implemented)',
      'UNSUPPORTED',
    );
  }
  const config: LoraConfig = {
    peft_type: 'LORA',
    base_model_name_or_path: c.stringOrNull('base_model_name_or_path'),
    r: c.positiveInt('r', LORA_DEFAULTS.r),
    lora_alpha: c.number('lora_alpha', LORA_DEFAULTS.lora_alpha, Number.MIN_VALUE),
    lora_dropout: c.number('lora_dropout', LORA_DEFAULTS.lora_dropout, 0, 0.999999),
    target_modules: fusedTargetsAsWritten(init as Record<string, unknown>, targets),
    layers_to_transform: c.layerList('layers_to_transform'),
    bias: c.oneOf('bias', ['none', 'lora_only', 'all'] as const, 'none'),
    fan_in_fan_out: c.bool('fan_in_fan_out', false),
    use_rslora: c.bool('use_rslora', false),
    init_lora_weights: init_lora_weights as boolean | 'gaussian',
    use_dora: c.bool('use_dora', false),
    rank_pattern: patternMap(
      c,
      'rank_pattern',
      'a positive integer',
      (v) => Number.isInteger(v) && v >= 1,
    ),
    alpha_pattern: patternMap(c, 'alpha_pattern', 'a positive number', (v) => v > 0),
    modules_to_save,
  };
  edgeChecks(config, file);
  return config;
}

/** modules_to_save: null or a list of names PEFT's `key.endswith(name)` matches to lm_head / embed_tokens only. */
function modulesToSave(c: ConfigReader): string[] | null {
  if (!c.has('modules_to_save')) return null;
  const v = c.raw.modules_to_save;
  const expected = 'null or a list of distinct module names ("lm_head", "embed_tokens")';
  if (!Array.isArray(v)) c.fail('modules_to_save', expected);
  const list = v as unknown[];
  if (list.length === 0) return null;
  const out: string[] = [];
  list.forEach((e, i) => {
    if (typeof e !== 'string' || e === '' || out.includes(e)) c.fail('modules_to_save', expected);
    const field = `modules_to_save[${i}]`;
    const other = otherModuleKeys().find((k) => k.endsWith(e));
    if (other !== undefined)
      throw new ParaError('UNSUPPORTED', 'unsupported adapter setting', {
        file: c.file,
        field,
        expected: `names of lm_head or embed_tokens (a saved copy of ${other} is not implemented)`,
        actual: JSON.stringify(e),
      });
    if (!Object.values(EDGE_MODULE_KEYS).some((k) => k.endsWith(e)))
      throw new ParaError('INVALID_CONFIG', 'modules_to_save names no module of the model', {
        file: c.file,
        field,
        expected: '"lm_head" or "embed_tokens"',
        actual: JSON.stringify(e),
      });
    out.push(e);
  });
  return out;
}

/** Keys of modules that are neither lm_head nor embed_tokens (layer 0 standing for every layer). */
function otherModuleKeys(): string[] {
  const keys = ['model', 'model.norm', 'model.rotary_emb', 'model.layers', 'model.layers.0'];
  for (const p of ALL_PROJECTIONS) keys.push(moduleKey(0, p));
  for (const s of ['self_attn', 'mlp', 'input_layernorm', 'post_attention_layernorm', 'mlp.act_fn'])
    keys.push(`model.layers.0.${s}`);
  keys.push('model.layers.0.self_attn.q_norm', 'model.layers.0.self_attn.k_norm');
  return keys;
}

/** lm_head / embed_tokens both adapted by LoRA and saved whole, or DoRA on them: refused. */
function edgeChecks(c: LoraConfig, file: string): void {
  const lora = loraEdgeTargets(c, file);
  const saved = loraSavedModules(c);
  const both = lora.find((e) => saved.includes(e));
  if (both !== undefined)
    throw new ParaError('UNSUPPORTED', 'unsupported adapter setting', {
      file,
      field: 'modules_to_save',
      expected: `modules LoRA does not also adapt (${both} is in target_modules too)`,
      actual: JSON.stringify(c.modules_to_save),
    });
  if (c.use_dora && lora.length > 0)
    throw new ParaError('UNSUPPORTED', 'unsupported adapter setting', {
      file,
      field: 'use_dora',
      expected: `false when target_modules names ${lora[0]} (DoRA on the embedding or the output head is not implemented)`,
      actual: 'true',
    });
}

/**
 * The modules outside the decoder layers LoRA adapts, as PEFT selects them by their keys
 * (`model.embed_tokens`, `lm_head`): a list entry equal to the key, or one the key ends with
 * "." + entry when layers_to_transform is null (PEFT finds no layer index in these keys); a
 * regex string matching the whole key; "all-linear" leaves out both (PEFT skips the output head).
 */
export function loraEdgeTargets(c: LoraConfig, file = INLINE_CONFIG): EdgeModule[] {
  const out: EdgeModule[] = [];
  const list = Array.isArray(c.target_modules) ? c.target_modules : null;
  if (list === null && (c.target_modules as string).toLowerCase() === 'all-linear') return out;
  const re = list === null ? compileModulePattern(c.target_modules as string, file) : null;
  for (const [edge, key] of Object.entries(EDGE_MODULE_KEYS) as [EdgeModule, string][]) {
    const hit =
      re !== null
        ? re.fullMatch(key)
        : (list as string[]).some(
            (e) => e === key || (c.layers_to_transform === null && key.endsWith(`.${e}`)),
          );
    if (hit) out.push(edge);
  }
  return out;
}

/** The modules whose full copies the adapter trains and saves (modules_to_save). */
export function loraSavedModules(c: LoraConfig): EdgeModule[] {
  const list = c.modules_to_save ?? [];
  return (Object.entries(EDGE_MODULE_KEYS) as [EdgeModule, string][])
    .filter(([, key]) => list.some((e) => key.endsWith(e)))
    .map(([edge]) => edge);
}

/** Longer rank_pattern / alpha_pattern maps are refused (PEFT's have a handful of keys). */
export const MAX_PATTERN_KEYS = 1024;

/** PEFT's `get_pattern_key` regex for one pattern key: `re.match(rf"(.*\.)?({key})$", module_key)`. */
function patternRegex(key: string): string {
  return `(.*\\.)?(${key})$`;
}

function patternMap(
  c: ConfigReader,
  field: 'rank_pattern' | 'alpha_pattern',
  what: string,
  ok: (v: number) => boolean,
): Record<string, number> {
  if (!c.has(field)) return {};
  const v = c.raw[field];
  if (typeof v !== 'object' || Array.isArray(v) || v === null)
    c.fail(field, `an object mapping module names or regexes to ${what}s`);
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > MAX_PATTERN_KEYS)
    throw new ParaError('LIMIT_EXCEEDED', `${field} has too many keys`, {
      file: c.file,
      field,
      expected: `at most ${MAX_PATTERN_KEYS} keys`,
      actual: `${entries.length} keys`,
    });
  const out: Record<string, number> = {};
  for (const [key, value] of entries) {
    if (typeof value !== 'number' || !Number.isFinite(value) || !ok(value)) {
      throw new ParaError('INVALID_CONFIG', 'invalid adapter setting', {
        file: c.file,
        field: `${field}[${JSON.stringify(key)}]`,
        expected: what,
        actual: describeValue(value, 60),
      });
    }
    compileModulePattern(patternRegex(key), c.file, `${field}[${JSON.stringify(key)}]`);
    out[key] = value;
  }
  return out;
}

/** r, alpha and scaling of one adapted module. */
export interface LoraModuleSettings {
  r: number;
  alpha: number;
  /** alpha/r (alpha/√r with rsLoRA), with this module's r and alpha. */
  scaling: number;
}

/**
 * Each module's r, alpha and scaling, as PEFT's `LoraModel._create_and_replace` picks them:
 * `get_pattern_key(rank_pattern.keys(), key)` is the first pattern key K (in the file's order)
 * for which `re.match(rf"(.*\.)?({K})$", key)` succeeds; the module takes `rank_pattern[K]`,
 * else `r` (alpha likewise). The patterns run on RE2 (linear time); `key` is the module's name
 * in the transformers model (`model.layers.1.self_attn.q_proj`).
 */
export function loraModuleSettings(
  c: LoraConfig,
  file = INLINE_CONFIG,
): (layer: number, module: TargetModule) => LoraModuleSettings {
  const byKey = loraKeySettings(c, file);
  return (layer, module) => byKey(moduleKey(layer, module));
}

/** `loraModuleSettings` by module key (`lm_head`, `model.embed_tokens`, `model.layers.1.self_attn.q_proj`). */
export function loraKeySettings(
  c: LoraConfig,
  file = INLINE_CONFIG,
): (key: string) => LoraModuleSettings {
  const compile = (field: 'rank_pattern' | 'alpha_pattern') =>
    Object.entries(c[field]).map(
      ([k, v]) =>
        [compileModulePattern(patternRegex(k), file, `${field}[${JSON.stringify(k)}]`), v] as const,
    );
  const ranks = compile('rank_pattern');
  const alphas = compile('alpha_pattern');
  return (key) => {
    const r = ranks.find(([re]) => re.lookingAt(key))?.[1] ?? c.r;
    const alpha = alphas.find(([re]) => re.lookingAt(key))?.[1] ?? c.lora_alpha;
    return { r, alpha, scaling: c.use_rslora ? alpha / Math.sqrt(r) : alpha / r };
  };
}

export function loraConfigJson(c: LoraConfig): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: c.base_model_name_or_path,
    r: c.r,
    lora_alpha: c.lora_alpha,
    lora_dropout: c.lora_dropout,
    target_modules: Array.isArray(c.target_modules) ? [...c.target_modules] : c.target_modules,
    layers_to_transform: c.layers_to_transform,
    bias: c.bias,
    fan_in_fan_out: false,
    use_rslora: c.use_rslora,
    use_dora: c.use_dora,
    init_lora_weights: c.init_lora_weights,
    rank_pattern: { ...c.rank_pattern },
    alpha_pattern: { ...c.alpha_pattern },
    modules_to_save: c.modules_to_save === null ? null : [...c.modules_to_save],
    inference_mode: true,
  };
}

/** alpha/r (or alpha/√r with rsLoRA): the scaling of a module no rank_pattern / alpha_pattern key names. */
export function loraScaling(c: LoraConfig): number {
  return c.use_rslora ? c.lora_alpha / Math.sqrt(c.r) : c.lora_alpha / c.r;
}

/**
 * The (layer, projection) pairs LoRA adapts, in layer order then target order, as PEFT selects
 * them against each module's key `model.layers.{i}.self_attn.q_proj` (its name in the
 * transformers model): a list entry matches a key equal to it (then regardless of
 * layers_to_transform) or a key ending with "." + the entry (then only in layers_to_transform),
 * so `["model.layers.1.self_attn.q_proj", "model.layers.0.mlp.down_proj"]` adapts exactly those
 * two; a regex string must match a whole key; "all-linear" (any case) is every projection (PEFT
 * leaves out only the output head).
 */
export function loraTargets(
  c: LoraConfig,
  m: ModelConfig,
  file = INLINE_CONFIG,
): { layer: number; module: TargetModule }[] {
  const layers = c.layers_to_transform ?? Array.from({ length: m.numLayers }, (_, i) => i);
  const out: { layer: number; module: TargetModule }[] = [];
  const list = Array.isArray(c.target_modules) ? c.target_modules : null;
  const re =
    list === null && (c.target_modules as string).toLowerCase() !== 'all-linear'
      ? compileModulePattern(c.target_modules as string, file)
      : null;
  if (re !== null) {
    const edgeKeys: string[] = Object.values(EDGE_MODULE_KEYS);
    const other = otherModulesMatching(re, m.numLayers).filter((k) => !edgeKeys.includes(k));
    if (other.length > 0) {
      throw new ParaError('UNSUPPORTED', 'unsupported adapter setting', {
        file,
        field: 'target_modules',
        expected: `a pattern matching only the decoder layers' projections (LoRA on ${other[0]} is not implemented)`,
        actual: JSON.stringify(c.target_modules),
      });
    }
  }
  for (const i of layers) {
    if (i >= m.numLayers) {
      throw new ParaError(
        'INVALID_CONFIG',
        'layers_to_transform names a layer the model does not have',
        {
          file,
          field: 'layers_to_transform',
          expected: `layer indices below ${m.numLayers}`,
          actual: String(i),
        },
      );
    }
    if (list !== null) continue;
    for (const p of ALL_PROJECTIONS) {
      if (re !== null && !re.fullMatch(moduleKey(i, p))) continue;
      out.push({ layer: i, module: p });
    }
  }
  if (list !== null)
    out.push(...listTargets(fusedTargetList(list, m, file), m.numLayers, c.layers_to_transform));
  if (out.length === 0 && loraEdgeTargets(c, file).length === 0) {
    throw new ParaError('INVALID_CONFIG', 'target_modules matches no module of the model', {
      file,
      field: 'target_modules',
      expected:
        'names or a pattern matching q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj',
      actual: JSON.stringify(c.target_modules),
    });
  }
  return out;
}

/**
 * The projections whose bias the adapter trains (PEFT's `bias`, see `LoraConfig.bias`): with
 * "all" every biased projection of the model, with "lora_only" the biased adapted ones; in layer
 * order. `adapted`: whether LoRA also adapts it (PEFT then names the bias `base_layer.bias`).
 */
export function loraBiasTargets(
  c: LoraConfig,
  m: ModelConfig,
  targets: readonly { layer: number; module: TargetModule }[] = loraTargets(c, m),
): { layer: number; module: TargetModule; adapted: boolean }[] {
  if (c.bias === 'none') return [];
  const adapted = new Set(targets.map((t) => `${t.layer}.${t.module}`));
  const out: { layer: number; module: TargetModule; adapted: boolean }[] = [];
  for (let i = 0; i < m.numLayers; i++)
    for (const p of ALL_PROJECTIONS) {
      const a = adapted.has(`${i}.${p}`);
      if (hasBias(m, p) && (a || c.bias === 'all')) out.push({ layer: i, module: p, adapted: a });
    }
  return out;
}

/** Parameters: r·(in + out) per adapted projection (its own r), out per DoRA magnitude and trained bias. */
export function loraParameterCount(c: LoraConfig, m: ModelConfig): number {
  const settings = loraModuleSettings(c);
  const targets = loraTargets(c, m);
  const lora = targets.reduce((n, t) => {
    const [out, inp] = projectionShape(m, t.module);
    return n + settings(t.layer, t.module).r * (inp + out) + (c.use_dora ? out : 0);
  }, 0);
  const byKey = loraKeySettings(c);
  const V = m.vocabSize;
  const d = m.hiddenSize;
  const edges =
    loraEdgeTargets(c).reduce((n, e) => n + byKey(EDGE_MODULE_KEYS[e]).r * (V + d), 0) +
    loraSavedModules(c).length * V * d;
  // Phi-3's fused LoRAs: one A [r, d] per fused module, shared by its parts (see fused.ts).
  const shared = [...new Set(loraFusedGroups(c, m, targets).values())].reduce(
    (n, g) => n + (g.parts.length - 1) * settings(g.layer, g.parts[0] as TargetModule).r * d,
    0,
  );
  return loraBiasTargets(c, m, targets).reduce(
    (n, t) => n + projectionShape(m, t.module)[0],
    lora + edges - shared,
  );
}
