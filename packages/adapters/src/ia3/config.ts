/**
 * IA3's settings, PEFT's `IA3Config` keys (adapter_config.json with `peft_type: "IA3"`).
 *
 * PEFT's defaults for llama-family models: target k_proj, v_proj and down_proj, with down_proj
 * a feed-forward module (its INPUT is scaled; the others' outputs are).
 *
 * target_modules and feedforward_modules are lists of projection names or of dotted module
 * paths (`model.layers.0.self_attn.k_proj`, what PEFT writes for "all-linear" on a small model),
 * matched as PEFT matches them. The adapter scales the same projections in every layer, so paths
 * must select each named projection in every layer of the model (checked once the model is
 * known, see `ia3VectorShape`): IA3 on some layers only is UNSUPPORTED.
 *
 * On Phi-3, target_modules may name the fused qkv_proj / gate_up_proj (bare names): each is
 * resolved to its parts, scaled by their rows of PEFT's fused output vector (ia3/fused.ts).
 */

import { ParaError } from '@para/core';
import type { ModelConfig } from '@para/model';
import { projectionShape } from '@para/model';
import {
  type BaseAdapterConfig,
  ConfigReader,
  entryProjections,
  INLINE_CONFIG,
  isProjectionName,
  moduleKey,
  peftListMatch,
  type TargetModule,
} from '../base/config';
import { expandFusedList } from '../lora/fused';
import { fusedTargetLists } from './fused';

export interface Ia3Config extends BaseAdapterConfig {
  peft_type: 'IA3';
  /** The projections scaled, in every layer. */
  target_modules: TargetModule[];
  /** A subset of target_modules whose input (not output) is scaled. Only down_proj is supported. */
  feedforward_modules: TargetModule[];
  /**
   * The lists as adapter_config.json wrote them when they are module paths rather than
   * projection names (feedforward_modules null when the file had none); saved back unchanged.
   */
  module_paths?: { target_modules: string[]; feedforward_modules: string[] | null } | null;
  /**
   * The lists as adapter_config.json wrote them when target_modules names Phi-3's fused
   * modules (qkv_proj, gate_up_proj; target_modules above then holds their parts, each scaled
   * by its rows of the fused vector): saved back unchanged (see ia3/fused.ts).
   */
  fused_targets?: { target_modules: string[]; feedforward_modules: string[] | null } | null;
  fan_in_fan_out: boolean;
  /** true: vectors start at 1 (the identity); false: N(0, 1) as PEFT's unset init. */
  init_ia3_weights: boolean;
}

export type Ia3ConfigInit = Partial<Omit<Ia3Config, 'peft_type'>> & { peft_type?: 'IA3' };

export const IA3_DEFAULTS = {
  target_modules: ['k_proj', 'v_proj', 'down_proj'] as TargetModule[],
  feedforward_modules: ['down_proj'] as TargetModule[],
} as const;

export function resolveIa3Config(
  init: Ia3ConfigInit | Readonly<Record<string, unknown>>,
  file = INLINE_CONFIG,
): Ia3Config {
  let c = new ConfigReader(init as Record<string, unknown>, file);
  if (c.has('peft_type') && c.raw.peft_type !== 'IA3') c.fail('peft_type', '"IA3"');
  const fusedWritten = fusedTargetLists(c);
  if (fusedWritten !== null)
    c = new ConfigReader(
      { ...c.raw, target_modules: expandFusedList(fusedWritten.target_modules) },
      file,
    );
  const written = c.targetModuleList('target_modules', IA3_DEFAULTS.target_modules, 'IA3');
  const paths = !written.every(isProjectionName);
  const targets: TargetModule[] = [];
  for (const e of written)
    for (const p of entryProjections(e)) if (!targets.includes(p)) targets.push(p);
  let ffWritten: string[] | null = null;
  if (c.has('feedforward_modules')) {
    const v = c.raw.feedforward_modules;
    // PEFT: "`feedforward_modules` should be a subset of `target_modules`" (as strings).
    if (
      !Array.isArray(v) ||
      !v.every((e, i) => typeof e === 'string' && written.includes(e) && v.indexOf(e) === i)
    ) {
      c.fail(
        'feedforward_modules',
        `a list of distinct entries of target_modules (${written.join(', ')})`,
      );
    }
    ffWritten = v as string[];
  }
  // PEFT's feed-forward match is `key.endswith(entry)`; its llama default is ["down_proj"].
  const ffEntries = ffWritten ?? [...IA3_DEFAULTS.feedforward_modules];
  const sampleLayers = [
    0,
    ...written.flatMap((e) =>
      e
        .split('.')
        .filter((s) => /^(0|[1-9]\d*)$/.test(s))
        .map(Number),
    ),
  ];
  const ff = targets.filter((p) =>
    sampleLayers.some((i) => ffEntries.some((e) => moduleKey(i, p).endsWith(e))),
  );
  const unsupported = ff.find((m) => m !== 'down_proj');
  if (unsupported !== undefined) {
    c.fail(
      'feedforward_modules',
      '["down_proj"] or [] (the model exposes the input of down_proj only)',
      'UNSUPPORTED',
    );
  }
  c.onlyDefault('modules_to_save', [], 'null (modules_to_save is not implemented)');
  c.onlyDefault('exclude_modules', [], 'null (exclude_modules is not implemented)');
  return {
    peft_type: 'IA3',
    base_model_name_or_path: c.stringOrNull('base_model_name_or_path'),
    target_modules: targets,
    feedforward_modules: ff,
    module_paths: paths ? { target_modules: written, feedforward_modules: ffWritten } : null,
    fused_targets: fusedWritten,
    fan_in_fan_out: c.bool('fan_in_fan_out', false),
    init_ia3_weights: c.bool('init_ia3_weights', true),
  };
}

const checkedLayers = new WeakMap<Ia3Config, number>();

/**
 * With module paths: checks, as PEFT would select modules on a model with `numLayers` layers,
 * that every projection of target_modules is selected in every layer and is feed-forward in all
 * of them or none, the only selections this adapter implements.
 */
function checkModulePaths(c: Ia3Config, numLayers: number): void {
  const mp = c.module_paths;
  if (mp === null || mp === undefined || checkedLayers.get(c) === numLayers) return;
  const ffEntries = mp.feedforward_modules ?? [...IA3_DEFAULTS.feedforward_modules];
  for (const p of c.target_modules) {
    for (let i = 0; i < numLayers; i++) {
      const key = moduleKey(i, p);
      const problem = !mp.target_modules.some((e) => peftListMatch(key, e))
        ? `not ${key} (IA3 on some layers only is not implemented: name ${p} in every layer, or just "${p}")`
        : ffEntries.some((e) => key.endsWith(e)) !== c.feedforward_modules.includes(p)
          ? `${key} feed-forward in every layer or none`
          : null;
      if (problem !== null) {
        throw new ParaError('UNSUPPORTED', 'unsupported adapter setting', {
          field: 'target_modules',
          expected: `module paths selecting ${p} in all ${numLayers} layers`,
          actual: problem,
        });
      }
    }
  }
  checkedLayers.set(c, numLayers);
}

export function ia3ConfigJson(c: Ia3Config): Record<string, unknown> {
  const mp = c.module_paths;
  const ft = c.fused_targets;
  return {
    peft_type: 'IA3',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: c.base_model_name_or_path,
    target_modules: ft
      ? [...ft.target_modules]
      : mp
        ? [...mp.target_modules]
        : [...c.target_modules],
    feedforward_modules: ft
      ? [...(ft.feedforward_modules ?? c.feedforward_modules)]
      : mp
        ? mp.feedforward_modules === null
          ? null
          : [...mp.feedforward_modules]
        : [...c.feedforward_modules],
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
export function ia3VectorShape(
  c: Ia3Config,
  m: ModelConfig,
  module: TargetModule,
): { dim: number; shape: [number, number] } {
  checkModulePaths(c, m.numLayers);
  const [out, inp] = projectionShape(m, module);
  return c.feedforward_modules.includes(module)
    ? { dim: inp, shape: [1, inp] }
    : { dim: out, shape: [out, 1] };
}

export function ia3ParameterCount(c: Ia3Config, m: ModelConfig): number {
  checkModulePaths(c, m.numLayers);
  return m.numLayers * c.target_modules.reduce((n, t) => n + ia3VectorShape(c, m, t).dim, 0);
}

/** The model site an IA3 target scales: its output, or for a feed-forward module its input. */
export function ia3Site(c: Ia3Config, module: TargetModule): 'down_proj.input' | TargetModule {
  if (!c.feedforward_modules.includes(module)) return module;
  if (module !== 'down_proj')
    throw new ParaError('UNSUPPORTED', 'feed-forward IA3 is implemented for down_proj only', {
      field: 'feedforward_modules',
      actual: module,
    });
  return 'down_proj.input';
}
