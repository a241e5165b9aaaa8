/**
 * What every adapter config shares, and the validation helpers the method configs use.
 *
 * Configs use PEFT's own key names (`r`, `lora_alpha`, `target_modules`, ...), exactly as they
 * appear in `adapter_config.json`, so a config object and its JSON file are the same thing.
 * Every check throws a `ParaError` naming the file (when the config came from one), the key,
 * what was expected and what was found.
 */

import { describeValue, ParaError, parseJsonText } from '@para/core';
import { PROJECTIONS, type ProjectionName } from '@para/model';
import { RE2JS } from 're2js';

/** The methods this package implements (`peft_type` in adapter_config.json). */
/** The built-in methods' `peft_type`s; a registered method may add others (see registry.ts). */
export type PeftType = 'PARA' | 'LORA' | 'IA3';

/** Keys every adapter_config.json carries. */
export interface BaseAdapterConfig {
  /** The method (`PARA`, `LORA`, `IA3`, or another registered one). */
  peft_type: string;
  /** The backbone the adapter was trained on (a path or a hub id); informational, may be null. */
  base_model_name_or_path: string | null;
}

/** The name used in messages when a config did not come from a file. */
export const INLINE_CONFIG = '<adapter config>';

/** Reads and checks the keys of one raw config object, throwing typed errors that name the key. */
export class ConfigReader {
  constructor(
    readonly raw: Readonly<Record<string, unknown>>,
    readonly file: string = INLINE_CONFIG,
  ) {}

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  fail(
    key: string,
    expected: string,
    code: 'INVALID_CONFIG' | 'UNSUPPORTED' = 'INVALID_CONFIG',
    message?: string,
  ): never {
    const actual = this.raw[key];
    throw new ParaError(
      code,
      message ??
        (code === 'UNSUPPORTED' ? 'unsupported adapter setting' : 'invalid adapter setting'),
      {
        file: this.file,
        field: key,
        expected,
        actual: describeValue(actual, 120),
      },
    );
  }

  /** A positive integer (or `def` when absent). */
  positiveInt(key: string, def?: number): number {
    if (!this.has(key)) {
      if (def === undefined) this.fail(key, 'a positive integer');
      return def;
    }
    const v = this.raw[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      this.fail(key, 'a positive integer');
    return v;
  }

  /** A finite number within [min, max]. */
  number(
    key: string,
    def: number,
    min = Number.NEGATIVE_INFINITY,
    max = Number.POSITIVE_INFINITY,
  ): number {
    if (!this.has(key)) return def;
    const v = this.raw[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      this.fail(key, `a number in [${min}, ${max}]`);
    }
    return v;
  }

  bool(key: string, def: boolean): boolean {
    if (!this.has(key)) return def;
    const v = this.raw[key];
    if (typeof v !== 'boolean') this.fail(key, 'true or false');
    return v;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], def: T): T {
    if (!this.has(key)) return def;
    const v = this.raw[key];
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      this.fail(key, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
    }
    return v as T;
  }

  stringOrNull(key: string): string | null {
    if (!this.has(key)) return null;
    const v = this.raw[key];
    if (typeof v !== 'string') this.fail(key, 'a string or null');
    return v;
  }

  /**
   * A list of module names, each one of `allowed`, without duplicates, non-empty; kept in the
   * order given (PARA's `para.up.weight` rows follow it).
   */
  moduleList<T extends string>(key: string, allowed: readonly T[], def: readonly T[] | null): T[] {
    if (!this.has(key)) {
      if (def === null) this.fail(key, `a non-empty list of ${allowed.join(', ')}`);
      return [...def];
    }
    const v = this.raw[key];
    const expected = `a non-empty list of distinct names from ${allowed.join(', ')}`;
    if (!Array.isArray(v) || v.length === 0) this.fail(key, expected);
    const out: T[] = [];
    for (const m of v) {
      if (
        typeof m !== 'string' ||
        !(allowed as readonly string[]).includes(m) ||
        out.includes(m as T)
      )
        this.fail(key, expected);
      out.push(m as T);
    }
    return out;
  }

  /**
   * A `target_modules` list as PEFT reads it: distinct non-empty strings, kept as written (so
   * saving writes back what was read). Each entry is matched as PEFT's
   * `check_target_module_exists` does (see `peftListMatch`): a projection name (`q_proj`), or a
   * dotted module path (`self_attn.q_proj`, `model.layers.1.self_attn.q_proj` — what PEFT writes
   * for "all-linear" on a small model). An entry that can name a module other than a decoder
   * layer's projection (`lm_head`, `embed_tokens`, `self_attn`, `mlp`, a norm, a whole layer) is
   * UNSUPPORTED; a list none of whose entries can name a projection is INVALID_CONFIG (PEFT:
   * "Target modules ... not found"). Other entries match nothing, and PEFT ignores them too —
   * among them `base_model.model.model.layers.1.mlp.up_proj`: PEFT matches the base model's
   * module names, not the `base_model.model.` tensor names.
   */
  targetModuleList(
    key: string,
    def: readonly string[],
    method: string,
    /** Keys of other modules the method adapts (LoRA: `model.embed_tokens`, `lm_head`). */
    alsoAdapts: readonly string[] = [],
  ): string[] {
    if (!this.has(key)) return [...def];
    const v = this.raw[key];
    const expected =
      'a non-empty list of distinct module names (q_proj, self_attn.q_proj, model.layers.0.self_attn.q_proj, ...)';
    if (!Array.isArray(v) || v.length === 0) this.fail(key, expected);
    const out: string[] = [];
    for (const m of v) {
      if (typeof m !== 'string' || m === '' || out.includes(m)) this.fail(key, expected);
      out.push(m);
    }
    const edge = (e: string) => alsoAdapts.some((k) => peftListMatch(k, e));
    const other = out.find(
      (e) => !edge(e) && OTHER_MODULES.some((t) => !alsoAdapts.includes(t) && entryCanMatch(e, t)),
    );
    if (other !== undefined) {
      this.fail(
        key,
        `names of the decoder layers' projections (${method} on "${other}" is not implemented)`,
        'UNSUPPORTED',
      );
    }
    if (!out.some((e) => entryProjections(e).length > 0 || edge(e))) {
      const prefixed = out.find((e) => e.startsWith('base_model.'));
      this.fail(
        key,
        prefixed === undefined
          ? `names matching ${ALL_PROJECTIONS.join(', ')} as PEFT matches them`
          : `module names of the base model (PEFT matches "${prefixed.replace(/^base_model\.model\./, '')}", not "${prefixed}")`,
        'INVALID_CONFIG',
        'target_modules matches no module of the model',
      );
    }
    return out;
  }

  /** `null`, or a non-negative integer, or a list of them (PEFT's `layers_to_transform`). */
  layerList(key: string): number[] | null {
    if (!this.has(key)) return null;
    const v = this.raw[key];
    const list = typeof v === 'number' ? [v] : v;
    if (
      !Array.isArray(list) ||
      list.length === 0 ||
      !list.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)
    ) {
      this.fail(key, 'null, a layer index or a non-empty list of layer indices');
    }
    return [...new Set(list as number[])].sort((a, b) => a - b);
  }

  /** The key must be absent, null, or equal to one of `accepted` (values whose meaning we implement). */
  onlyDefault(key: string, accepted: readonly unknown[], what: string): void {
    if (!this.has(key)) return;
    const v = this.raw[key];
    const empty =
      (Array.isArray(v) && v.length === 0) ||
      (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);
    if (empty || accepted.some((a) => a === v)) return;
    this.fail(key, what, 'UNSUPPORTED');
  }
}

/**
 * The modules outside the decoder layers that LoRA can adapt or replace (PEFT's LoRA on
 * embed_tokens / lm_head, modules_to_save), by short name → key in the transformers model.
 */
export type EdgeModule = 'embed_tokens' | 'lm_head';
export const EDGE_MODULE_KEYS: Readonly<Record<EdgeModule, string>> = {
  embed_tokens: 'model.embed_tokens',
  lm_head: 'lm_head',
};

/** The projections of a decoder layer (HF module names), as `target_modules` spells them. */
export type TargetModule = ProjectionName;
export const ALL_PROJECTIONS: readonly TargetModule[] = PROJECTIONS;

function submoduleOf(p: TargetModule): 'self_attn' | 'mlp' {
  return p === 'gate_proj' || p === 'up_proj' || p === 'down_proj' ? 'mlp' : 'self_attn';
}

/**
 * PEFT's key of a projection: its name in the transformers model's `named_modules()`
 * (`model.layers.1.self_attn.q_proj`; the tensor names add `base_model.model.` in front).
 */
export function moduleKey(layer: number, p: TargetModule): string {
  return `model.layers.${layer}.${submoduleOf(p)}.${p}`;
}

/**
 * PEFT's match of a `target_modules` list entry (tuners_utils.check_target_module_exists): the
 * module's key equals the entry or ends with "." + entry.
 */
export function peftListMatch(key: string, entry: string): boolean {
  return key === entry || key.endsWith(`.${entry}`);
}

/** The other modules of a Llama-family causal LM (`{i}`: a layer index), which no method adapts. */
const OTHER_MODULES = [
  '',
  'model',
  'model.embed_tokens',
  'model.layers',
  'model.layers.{i}',
  'model.layers.{i}.self_attn',
  'model.layers.{i}.self_attn.q_norm',
  'model.layers.{i}.self_attn.k_norm',
  'model.layers.{i}.mlp',
  'model.layers.{i}.mlp.act_fn',
  'model.layers.{i}.input_layernorm',
  'model.layers.{i}.post_attention_layernorm',
  'model.norm',
  'model.rotary_emb',
  'lm_head',
];

/** Whether a list entry matches `template`'s key in some layer (PEFT's match, `{i}` any index). */
function entryCanMatch(entry: string, template: string): boolean {
  const e = entry.split('.');
  const t = template.split('.');
  if (e.length > t.length) return false;
  const off = t.length - e.length;
  return e.every((seg, k) =>
    t[off + k] === '{i}' ? /^(0|[1-9]\d*)$/.test(seg) : t[off + k] === seg,
  );
}

/** The projections a list entry can match in some layer. */
export function entryProjections(entry: string): TargetModule[] {
  return ALL_PROJECTIONS.filter((p) =>
    entryCanMatch(entry, `model.layers.{i}.${submoduleOf(p)}.${p}`),
  );
}

/** Whether a list entry is a bare projection name (the only form PARA takes). */
export function isProjectionName(entry: string): entry is TargetModule {
  return (ALL_PROJECTIONS as readonly string[]).includes(entry);
}

/**
 * A compiled module pattern: `fullMatch(key)` is Python's `re.fullmatch(pattern, key)`,
 * `lookingAt(key)` is `re.match(pattern, key)` (anchored at the start only).
 */
export interface ModulePattern {
  readonly source: string;
  fullMatch(key: string): boolean;
  lookingAt(key: string): boolean;
}

/** Longer `target_modules` patterns are refused (PEFT's are a few dozen characters). */
export const MAX_MODULE_PATTERN_LENGTH = 4096;

/**
 * Compiles a `target_modules` regex with RE2JS, a linear-time matcher (no backtracking), so a
 * pattern from an untrusted adapter_config.json such as `(.*.*)*X` cannot hang the process the
 * way JavaScript's `RegExp` would. RE2 syntax is Python's `re` without backreferences and
 * lookaround; such a pattern is refused with a typed error rather than matched differently.
 */
export function compileModulePattern(
  pattern: string,
  file: string = INLINE_CONFIG,
  field = 'target_modules',
): ModulePattern {
  const bad = (expected: string, code: 'INVALID_CONFIG' | 'LIMIT_EXCEEDED' | 'UNSUPPORTED') =>
    new ParaError(code, `bad ${field} pattern`, {
      file,
      field,
      expected,
      actual: JSON.stringify(pattern.length > 200 ? `${pattern.slice(0, 200)}…` : pattern),
    });
  if (pattern.length > MAX_MODULE_PATTERN_LENGTH)
    throw bad(`a pattern of at most ${MAX_MODULE_PATTERN_LENGTH} characters`, 'LIMIT_EXCEEDED');
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (e) {
    const unsupported = /Perl syntax|escape sequence/.test((e as Error).message);
    throw bad(
      `a list of module names, "all-linear", or a regular expression in RE2 syntax (${(e as Error).message}${unsupported ? '; backreferences and lookaround are not supported' : ''})`,
      unsupported ? 'UNSUPPORTED' : 'INVALID_CONFIG',
    );
  }
  return {
    source: pattern,
    fullMatch: (key) => re.matches(key),
    lookingAt: (key) => re.matcher(key).lookingAt(),
  };
}

/** Keys of modules other than the projections that `re` fully matches (checked for layers < numLayers). */
export function otherModulesMatching(re: ModulePattern, numLayers: number): string[] {
  const keys = OTHER_MODULES.flatMap((t) =>
    t.includes('{i}')
      ? Array.from({ length: numLayers }, (_, i) => t.replace('{i}', String(i)))
      : [t],
  );
  return keys.filter((k) => re.fullMatch(k));
}

/**
 * The (layer, projection) pairs a `target_modules` list selects on a model with `numLayers`
 * layers, as PEFT selects them: a module whose key equals an entry is adapted; one whose key
 * ends with "." + an entry is adapted if its layer is in `layers_to_transform` (null: all).
 * In layer order, then in the order the list first names each projection.
 */
export function listTargets(
  list: readonly string[],
  numLayers: number,
  layersToTransform: readonly number[] | null,
): { layer: number; module: TargetModule }[] {
  const order: TargetModule[] = [];
  for (const e of list) for (const p of entryProjections(e)) if (!order.includes(p)) order.push(p);
  const out: { layer: number; module: TargetModule }[] = [];
  for (let i = 0; i < numLayers; i++) {
    for (const p of order) {
      const key = moduleKey(i, p);
      const exact = list.includes(key);
      const suffix = list.some((e) => key.endsWith(`.${e}`));
      if (exact || (suffix && (layersToTransform === null || layersToTransform.includes(i))))
        out.push({ layer: i, module: p });
    }
  }
  return out;
}

/** Parses `adapter_config.json` text (or an already-parsed value) into a plain object. */
export function parseConfigJson(json: string | unknown, file: string): Record<string, unknown> {
  let raw: unknown = json;
  if (typeof json === 'string') raw = parseJsonText(json, file, { what: 'adapter config' });
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ParaError('INVALID_CONFIG', 'adapter config is not a JSON object', {
      file,
      expected: 'a JSON object',
      actual: describeValue(raw, 40),
    });
  }
  return raw as Record<string, unknown>;
}
