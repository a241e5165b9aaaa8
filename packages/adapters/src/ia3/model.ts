/**
 * IA3 (Liu et al. 2022) as PEFT's `ia3.Linear`: a learned vector per target module scales
 * its output (k_proj, v_proj), or for a feed-forward module its input (down_proj: the MLP
 * activation silu(gate) ⊙ up). Prompt-independent: one broadcast multiply per target in every
 * phase, no per-request state. `merge(model)` folds the vectors into the weights.
 *
 * Parameters: `base_model.model.model.layers.{i}.self_attn.k_proj.ia3_l` `[out, 1]`,
 * `...mlp.down_proj.ia3_l` `[1, in]` (PEFT's shapes), initialised to 1.
 */

import { ParaError, Rng } from '@para/core';
import type {
  AdapterContext,
  AdapterSite,
  CausalLM,
  Linear,
  ModelAdapter,
  ModelConfig,
  TensorSpec,
} from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { PeftAdapter, projectionPath } from '../base/adapter';
import type { TargetModule } from '../base/config';
import type { AdapterRequest } from '../base/request';
import type { AdapterMethod } from '../registry';
import {
  type Ia3Config,
  type Ia3ConfigInit,
  ia3ConfigJson,
  ia3Site,
  ia3VectorShape,
  resolveIa3Config,
} from './config';
import {
  fuseIa3Specs,
  fuseIa3StateDict,
  type Ia3FusedCache,
  type Ia3FusedGroup,
  ia3FusedGroups,
  splitIa3Fused,
} from './fused';
import { ia3Scale, ia3Vector } from './layer';
import { IA3_METHOD } from './method';

/** Every tensor of an IA3 adapter file for `modelConfig`, by name and shape (nothing allocated). */
export function ia3TensorSpecs(c: Ia3Config, modelConfig: ModelConfig): TensorSpec[] {
  const groups = ia3FusedGroups(c, modelConfig);
  const specs: TensorSpec[] = [];
  for (let i = 0; i < modelConfig.numLayers; i++) {
    for (const t of c.target_modules)
      specs.push({ name: ia3TensorName(i, t), shape: ia3VectorShape(c, modelConfig, t).shape });
  }
  return fuseIa3Specs(groups, specs, modelConfig);
}

/** PEFT name of an IA3 vector. */
export function ia3TensorName(layer: number, module: string): string {
  return `${projectionPath(layer, module)}.ia3_l`;
}

export interface Ia3CreateOptions {
  /** Seed for init_ia3_weights = false (default 0). */
  seed?: number | string;
}

export class Ia3Adapter extends PeftAdapter<Ia3Config> {
  readonly peftType = 'IA3' as const;
  /** Per layer: model site → the target's vector (file shape). */
  private readonly vectorsByLayer: Map<AdapterSite, { module: TargetModule; v: tf.Variable }>[] =
    [];
  private readonly siteList: AdapterSite[];
  private hooks: ModelAdapter<AdapterRequest> | null = null;
  private mergedInto: CausalLM | null = null;
  /** Phi-3: the fused qkv_proj / gate_up_proj vectors, run as their parts' (see fused.ts). */
  private readonly fused: Ia3FusedGroup[];
  private readonly fusedCache: Ia3FusedCache = new Map();

  private constructor(config: Ia3Config, modelConfig: ModelConfig, seed: number | string) {
    const fused = ia3FusedGroups(config, modelConfig); // refused before anything is allocated
    super(config, modelConfig);
    this.fused = fused;
    const rng = new Rng(seed);
    this.siteList = config.target_modules.map((t) => ia3Site(config, t));
    for (let i = 0; i < modelConfig.numLayers; i++) {
      const byLayer = new Map<AdapterSite, { module: TargetModule; v: tf.Variable }>();
      for (const t of config.target_modules) {
        const { shape } = ia3VectorShape(config, modelConfig, t);
        const name = ia3TensorName(i, t);
        const v = this.addParam(
          name,
          config.init_ia3_weights ? tf.ones(shape) : rng.fork(name).normalTensor(shape),
        ); // [out, 1] | [1, in]
        byLayer.set(ia3Site(config, t), { module: t, v });
      }
      this.vectorsByLayer.push(byLayer);
    }
  }

  static create(
    modelConfig: ModelConfig,
    init: Ia3ConfigInit = {},
    options: Ia3CreateOptions = {},
  ): Ia3Adapter {
    return new Ia3Adapter(resolveIa3Config(init), modelConfig, options.seed ?? 0);
  }

  static fromConfig(
    modelConfig: ModelConfig,
    config: Ia3Config,
    options: Ia3CreateOptions = {},
  ): Ia3Adapter {
    return new Ia3Adapter(config, modelConfig, options.seed ?? 0);
  }

  get sites(): readonly AdapterSite[] {
    return this.siteList;
  }

  /** Layer `layer`'s scaling vector at a model site, as `[dim]`, or undefined. Call inside a tidy. */
  vector(layer: number, site: AdapterSite): tf.Tensor | undefined {
    const e = this.vectorsByLayer[layer]?.get(site);
    return e === undefined ? undefined : ia3Vector(e.v); // [dim]
  }

  tensorSpecs(modelConfig: ModelConfig = this.modelConfig): TensorSpec[] {
    return ia3TensorSpecs(this.config, modelConfig);
  }

  toConfigJson(): Record<string, unknown> {
    return ia3ConfigJson(this.config);
  }

  get method(): AdapterMethod {
    return IA3_METHOD as unknown as AdapterMethod;
  }

  override get isMerged(): boolean {
    return this.mergedInto !== null;
  }

  /**
   * Folds the vectors into `model`'s weights as PEFT's `merge` does: `W ← W ⊙ ia3_l` (`[out, 1]`
   * scales output rows, and the bias; `[1, in]` for a feed-forward module scales input columns).
   * The replaced weights are disposed.
   */
  merge(model: CausalLM): void {
    this.checkAlive();
    if (this.mergedInto !== null)
      throw new ParaError('INVALID_ARGUMENT', 'this IA3 adapter is already merged', {
        field: 'adapter',
      });
    this.checkModel(model.config);
    this.vectorsByLayer.forEach((byLayer, i) => {
      for (const { module, v } of byLayer.values()) {
        const lin = model.weights.layers[i]?.[module] as Linear | undefined;
        if (lin === undefined) throw new Error(`internal: no weight for layer ${i} ${module}`);
        const old = lin.weight;
        lin.weight = tf.mul(old, v); // [out, in] ⊙ [out, 1] or [1, in]
        old.dispose();
        if (lin.bias !== null && !this.config.feedforward_modules.includes(module)) {
          const oldBias = lin.bias;
          lin.bias = tf.tidy(() => tf.mul(oldBias, tf.reshape(v, [-1]))); // [out]
          oldBias.dispose();
        }
      }
    });
    this.mergedInto = model;
  }

  override stateDict(): Record<string, tf.Tensor> {
    return fuseIa3StateDict(this.fused, super.stateDict(), this.fusedCache);
  }

  override loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>, file?: string): void {
    const made: tf.Tensor[] = [];
    const rest = splitIa3Fused(this.fused, tensors, this.modelConfig, made);
    try {
      super.loadStateDict(rest, file);
    } finally {
      tf.dispose(made);
    }
  }

  override dispose(): void {
    for (const c of this.fusedCache.values()) c.t.dispose();
    this.fusedCache.clear();
    super.dispose();
  }

  protected trainingHooks(): ModelAdapter<AdapterRequest> {
    this.checkAlive();
    if (this.hooks !== null) return this.hooks;
    this.hooks = {
      sites: this.siteList,
      transform: (ctx: AdapterContext<AdapterRequest>, site: AdapterSite, y: tf.Tensor) => {
        const l = this.vector(ctx.layer, site); // [dim]
        return l === undefined ? y : ia3Scale(y, l); // [B, T, dim]
      },
    };
    return this.hooks;
  }
}
