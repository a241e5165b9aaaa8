/**
 * IA3's settings, PEFT's `IA3Config` keys (adapter_config.json with `peft_type: "IA3"`).
 *
 * PEFT's defaults for llama-family models: target k_proj, v_proj and down_proj, with down_proj
 * a feed-forward module (its INPUT is scaled; the others' outputs are).
 */

import { ParaError } from '@para/core';
import type { ModelConfig } from '@para/model';
import { projectionShape } from '@para/model';
import { ALL_PROJECTIONS, type BaseAdapterConfig, ConfigReader, INLINE_CONFIG, type TargetModule } from '../base/config';

export interface Ia3Config extends BaseAdapterConfig {
  peft_type: 'IA3';
  target_modules: TargetModule[];
  /** A subset of target_modules whose input (not output) is scaled. Only down_proj is supported. */
  feedforward_modules: TargetModule[];
  fan_in_fan_out: boolean;
  /** true: vectors start at 1 (the identity); false: N(0, 1) as PEFT's unset init. */
  init_ia3_weights: boolean;
}

export type Ia3ConfigInit = Partial<Omit<Ia3Config, 'peft_type'>> & { peft_type?: 'IA3' };

export const IA3_DEFAULTS = {
  target_modules: ['k_proj', 'v_proj', 'down_proj'] as TargetModule[],
  feedforward_modules: ['down_proj'] as TargetModule[],
} as const;

export function resolveIa3Config(init: Ia3ConfigInit | Readonly<Record<string, unknown>>, file = INLINE_CONFIG): Ia3Config {
  const c = new ConfigReader(init as Record<string, unknown>, file);
  if (c.has('peft_type') && c.raw.peft_type !== 'IA3') c.fail('peft_type', '"IA3"');
  const targets = c.moduleList('target_modules', ALL_PROJECTIONS, IA3_DEFAULTS.target_modules);
  const ff = c.has('feedforward_modules')
    ? c.moduleList('feedforward_modules', ALL_PROJECTIONS, null)
    : IA3_DEFAULTS.feedforward_modules.filter((m) => targets.includes(m));
  const notTarget = ff.find((m) => !targets.includes(m));
  if (notTarget !== undefined) c.fail('feedforward_modules', `a subset of target_modules (${targets.join(', ')})`);
  const unsupported = ff.find((m) => m !== 'down_proj');
  if (unsupported !== undefined) {
    c.fail('feedforward_modules', '["down_proj"] or [] (the model exposes the input of down_proj only)', 'UNSUPPORTED');
  }
  c.onlyDefault('modules_to_save', [], 'null (modules_to_save is not implemented)');
  c.onlyDefault('exclude_modules', [], 'null (exclude_modules is not implemented)');
  return {
    peft_type: 'IA3',
    base_model_name_or_path: c.stringOrNull('base_model_name_or_path'),
    target_modules: targets,
    feedforward_modules: ff,
    fan_in_fan_out: c.bool('fan_in_fan_out', false),
    init_ia3_weights: c.bool('init_ia3_weights', true),
  };
}

export function ia3ConfigJson(c: Ia3Config): Record<string, unknown> {
  return {
    peft_type: 'IA3',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: c.base_model_name_or_path,
    target_modules: [...c.target_modules],
    feedforward_modules: [...c.feedforward_modules],
    fan_in_fan_out: false,
    init_ia3_weights: c.init_ia3_weights,
    modules_to_save: null,
    inference_mode: true,
  };
}

/**
 * The scaled width of a target and PEFT's `ia3_l` shape: `[out, 1]` for an output-scaled module,
 * `[1, in]` for a feed-forward (input-scaled) one.
 */
export function ia3VectorShape(c: Ia3Config, m: ModelConfig, module: TargetModule): { dim: number; shape: [number, number] } {
  const [out, inp] = projectionShape(m, module);
  return c.feedforward_modules.includes(module) ? { dim: inp, shape: [1, inp] } : { dim: out, shape: [out, 1] };
}

export function ia3ParameterCount(c: Ia3Config, m: ModelConfig): number {
  return m.numLayers * c.target_modules.reduce((n, t) => n + ia3VectorShape(c, m, t).dim, 0);
}

/** The model site an IA3 target scales: its output, or for a feed-forward module its input. */
export function ia3Site(c: Ia3Config, module: TargetModule): 'down_proj.input' | TargetModule {
  if (!c.feedforward_modules.includes(module)) return module;
  if (module !== 'down_proj') throw new ParaError('UNSUPPORTED', 'feed-forward IA3 is implemented for down_proj only', { field: 'feedforward_modules', actual: module });
  return 'down_proj.input';
}
