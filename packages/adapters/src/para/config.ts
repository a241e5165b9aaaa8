/**
 * PARA's settings (adapter_config.json with `peft_type: "PARA"`), see DESIGN.md "The method".
 */

import type { ModelConfig } from '@para/model';
import { projectionShape } from '@para/model';
import { type BaseAdapterConfig, ConfigReader, INLINE_CONFIG } from '../base/config';

export type ParaPooler = 'last' | 'mean' | 'max' | 'attention';
export const PARA_POOLERS: readonly ParaPooler[] = ['last', 'mean', 'max', 'attention'];

export type ParaActivation = 'gelu' | 'relu' | 'silu' | 'tanh' | 'identity';
export const PARA_ACTIVATIONS: readonly ParaActivation[] = [
  'gelu',
  'relu',
  'silu',
  'tanh',
  'identity',
];

/** The three representations PARA can scale. */
export type ParaTarget = 'q_proj' | 'v_proj' | 'up_proj';
export const PARA_TARGETS: readonly ParaTarget[] = ['q_proj', 'v_proj', 'up_proj'];

export interface ParaConfig extends BaseAdapterConfig {
  peft_type: 'PARA';
  /** Bottleneck width of the vector generator. */
  r: number;
  /** How the prompt's hidden states become one vector. */
  pooler: ParaPooler;
  /** Between W_down and W_up. `gelu` is the erf form (torch's default). */
  activation: ParaActivation;
  /** Which outputs are scaled, in the order of `para.up.weight`'s row blocks. */
  target_modules: ParaTarget[];
  /** b_down and b_up. */
  use_bias: boolean;
}

/** What a caller may give; the rest gets the defaults. */
export type ParaConfigInit = Partial<Omit<ParaConfig, 'peft_type'>> & { peft_type?: 'PARA' };

/**
 * Defaults — the one set para uses everywhere (library, CLI, web demo): r = 8 (the same rank as
 * LoRA's default, so `para` vs `lora` compares like with like; the paper's 8.9M parameters on
 * LLaMA-2-7B are r = 12), no biases, all three targets, mean pooling (at layer 0 the last
 * token's normalised input is only its own embedding; the mean sees the whole prompt at every
 * layer), gelu. Training: learning rate 3e-3 (PARA_METHOD.training).
 */
export const PARA_DEFAULTS: Readonly<Omit<ParaConfig, 'peft_type' | 'base_model_name_or_path'>> = {
  r: 8,
  pooler: 'mean',
  activation: 'gelu',
  target_modules: ['q_proj', 'v_proj', 'up_proj'],
  use_bias: false,
};

/** Fills defaults and validates (typed errors name the key and the file). */
export function resolveParaConfig(
  init: ParaConfigInit | Readonly<Record<string, unknown>>,
  file = INLINE_CONFIG,
): ParaConfig {
  const c = new ConfigReader(init as Record<string, unknown>, file);
  if (c.has('peft_type') && c.raw.peft_type !== 'PARA') c.fail('peft_type', '"PARA"');
  return {
    peft_type: 'PARA',
    base_model_name_or_path: c.stringOrNull('base_model_name_or_path'),
    r: c.positiveInt('r', PARA_DEFAULTS.r),
    pooler: c.oneOf('pooler', PARA_POOLERS, PARA_DEFAULTS.pooler),
    activation: c.oneOf('activation', PARA_ACTIVATIONS, PARA_DEFAULTS.activation),
    target_modules: c.moduleList('target_modules', PARA_TARGETS, PARA_DEFAULTS.target_modules),
    use_bias: c.bool('use_bias', PARA_DEFAULTS.use_bias),
  };
}

/** adapter_config.json for PARA. */
export function paraConfigJson(c: ParaConfig): Record<string, unknown> {
  return {
    peft_type: 'PARA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: c.base_model_name_or_path,
    r: c.r,
    pooler: c.pooler,
    activation: c.activation,
    target_modules: [...c.target_modules],
    use_bias: c.use_bias,
    inference_mode: true,
  };
}

/** Output width of each target on this model: d_q, d_v, d_ff. */
export function paraTargetDims(c: ParaConfig, m: ModelConfig): number[] {
  return c.target_modules.map((t) => projectionShape(m, t)[0]);
}

/**
 * Trainable parameters: per layer r·d + r·(Σ target dims), plus r + Σ dims with biases, plus d
 * for the attention pooler's w. (LLaMA-2-7B, r = 12, defaults: 8,945,664.)
 */
export function paraParameterCount(c: ParaConfig, m: ModelConfig): number {
  const d = m.hiddenSize;
  const D = paraTargetDims(c, m).reduce((a, b) => a + b, 0);
  const perLayer =
    c.r * d + c.r * D + (c.use_bias ? c.r + D : 0) + (c.pooler === 'attention' ? d : 0);
  return perLayer * m.numLayers;
}
