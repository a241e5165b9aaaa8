/**
 * PARA attached to the backbone: per-layer vector generators (layer.ts) wired to the model's
 * adapter sites.
 *
 *   layerInput(ctx, h)     forward: pool the prompt part of h, generate l_q, l_v, l_u ([B, 1, dim]
 *                          each) and set them as the layer's scales (ctx.state); the layer then
 *                          computes y ⊙ l_t at each target. Inference (prefill, then decode steps
 *                          that reuse the vectors) goes through a MixedBatch: para/method.ts.
 *
 * Parameters (PEFT names, see io/): base_model.model.model.layers.{i}.para.down.weight [r, d],
 * para.down.bias [r], para.up.weight [D, r] (row blocks in target_modules order), para.up.bias [D],
 * para.pool.weight [1, d] (attention pooler).
 *
 * Initialisation (seeded): W_down and b_down as torch's nn.Linear (Kaiming-uniform with a = √5,
 * i.e. U(±1/√d)), so z carries the prompt's signal from the first step; W_up and b_up zero, so a
 * fresh adapter is exactly the identity; pool.weight zero, so the attention pooler starts as a
 * mean over the prompt (softmax of equal scores) and learns where to look.
 */

import { ParaError, Rng } from '@para/core';
import type {
  AdapterContext,
  AdapterSite,
  ModelAdapter,
  ModelConfig,
  TensorSpec,
} from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { layerPrefix, PeftAdapter } from '../base/adapter';
import { kaimingUniform } from '../base/init';
import { type AdapterRequest, promptMask } from '../base/request';
import type { AdapterMethod } from '../registry';
import {
  type ParaConfig,
  type ParaConfigInit,
  type ParaTarget,
  paraConfigJson,
  paraTargetDims,
  resolveParaConfig,
} from './config';
import { type ParaLayerWeights, paraVectors } from './layer';
import { PARA_METHOD } from './method';

export interface ParaCreateOptions {
  /** Seed of W_down / b_down (default 0). */
  seed?: number | string;
}

export class ParaAdapter extends PeftAdapter<ParaConfig> {
  readonly peftType = 'PARA' as const;
  /** Output width of each target (d_q, d_v, d_ff), in target order. */
  readonly dims: readonly number[];
  private readonly layerWeights: ParaLayerWeights[] = [];
  private hooks: ModelAdapter<AdapterRequest> | null = null;

  private constructor(config: ParaConfig, modelConfig: ModelConfig, seed: number | string) {
    super(config, modelConfig);
    this.dims = paraTargetDims(config, modelConfig);
    const d = modelConfig.hiddenSize;
    const D = this.dims.reduce((a, b) => a + b, 0);
    const { r } = config;
    const rng = new Rng(seed);
    for (let i = 0; i < modelConfig.numLayers; i++) {
      const n = paraTensorNames(i);
      const down = this.addParam(n.down, kaimingUniform(rng.fork(n.down), [r, d], d)); // [r, d]
      const downBias = config.use_bias
        ? this.addParam(n.downBias, kaimingUniform(rng.fork(n.downBias), [r], d))
        : null; // [r]
      const up = this.addParam(n.up, tf.zeros([D, r])); // [D, r]
      const upBias = config.use_bias ? this.addParam(n.upBias, tf.zeros([D])) : null; // [D]
      const pool = config.pooler === 'attention' ? this.addParam(n.pool, tf.zeros([1, d])) : null; // [1, d]
      this.layerWeights.push({ down, downBias, up, upBias, pool });
    }
  }

  /** A new PARA adapter for `modelConfig` (defaults: see PARA_DEFAULTS), the identity until trained. */
  static create(
    modelConfig: ModelConfig,
    init: ParaConfigInit = {},
    options: ParaCreateOptions = {},
  ): ParaAdapter {
    return new ParaAdapter(resolveParaConfig(init), modelConfig, options.seed ?? 0);
  }

  /** From an already resolved config (loading: the values are replaced by the file's). */
  static fromConfig(
    modelConfig: ModelConfig,
    config: ParaConfig,
    options: ParaCreateOptions = {},
  ): ParaAdapter {
    return new ParaAdapter(config, modelConfig, options.seed ?? 0);
  }

  get targets(): readonly ParaTarget[] {
    return this.config.target_modules;
  }

  get sites(): readonly AdapterSite[] {
    return this.config.target_modules;
  }

  /** Layer `i`'s parameters. */
  layer(i: number): ParaLayerWeights {
    const w = this.layerWeights[i];
    if (w === undefined)
      throw new ParaError('INVALID_ARGUMENT', 'no such layer', {
        field: 'layer',
        expected: `0..${this.layerWeights.length - 1}`,
        actual: String(i),
      });
    return w;
  }

  /**
   * Layer `i`'s adjusting vectors from its normalised input `h [B, T, d]` and a prompt mask
   * `[B, T]`: one `[B, 1, dim]` tensor per target, in target order.
   */
  vectors(i: number, h: tf.Tensor, mask: tf.Tensor): tf.Tensor[] {
    this.checkAlive();
    return paraVectors(
      h,
      mask,
      this.layer(i),
      this.config.pooler,
      this.config.activation,
      this.dims,
    );
  }

  tensorSpecs(modelConfig: ModelConfig = this.modelConfig): TensorSpec[] {
    return paraTensorSpecs(this.config, modelConfig);
  }

  toConfigJson(): Record<string, unknown> {
    return paraConfigJson(this.config);
  }

  get method(): AdapterMethod {
    return PARA_METHOD as unknown as AdapterMethod;
  }

  protected trainingHooks(): ModelAdapter<AdapterRequest> {
    this.checkAlive();
    if (this.hooks !== null) return this.hooks;
    const targets = this.config.target_modules;
    this.hooks = {
      sites: [],
      layerInput: (ctx: AdapterContext<AdapterRequest>, h: tf.Tensor) => {
        const vs = this.vectors(ctx.layer, h, promptMask(ctx)); // [B, 1, dim] each
        vs.forEach((v, j) => {
          ctx.state.setScale(targets[j] as ParaTarget, v);
        });
      },
    };
    return this.hooks;
  }
}

/** Every tensor of a PARA adapter file for `modelConfig`, by name and shape (nothing allocated). */
export function paraTensorSpecs(c: ParaConfig, modelConfig: ModelConfig): TensorSpec[] {
  const d = modelConfig.hiddenSize;
  const D = paraTargetDims(c, modelConfig).reduce((a, b) => a + b, 0);
  const specs: TensorSpec[] = [];
  for (let i = 0; i < modelConfig.numLayers; i++) {
    const n = paraTensorNames(i);
    specs.push({ name: n.down, shape: [c.r, d] });
    if (c.use_bias) specs.push({ name: n.downBias, shape: [c.r] });
    specs.push({ name: n.up, shape: [D, c.r] });
    if (c.use_bias) specs.push({ name: n.upBias, shape: [D] });
    if (c.pooler === 'attention') specs.push({ name: n.pool, shape: [1, d] });
  }
  return specs;
}

/** PEFT-style tensor names of layer i's PARA parameters. */
export function paraTensorNames(i: number): {
  down: string;
  downBias: string;
  up: string;
  upBias: string;
  pool: string;
} {
  const p = `${layerPrefix(i)}para.`;
  return {
    down: `${p}down.weight`,
    downBias: `${p}down.bias`,
    up: `${p}up.weight`,
    upBias: `${p}up.bias`,
    pool: `${p}pool.weight`,
  };
}
