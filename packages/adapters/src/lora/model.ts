/**
 * LoRA (Hu et al. 2021) on the backbone's projections, as PEFT's `lora.Linear`:
 *
 *   h = W x + scaling · B (A dropout(x))     A [r, in], B [out, r], scaling = alpha / r
 *
 * A is Kaiming-uniform (a = √5, PEFT's default), B zero, so a fresh adapter is the identity.
 * Dropout (seeded, inverted) acts only while `training` is true and only in `forward` passes.
 * `merge(model)` folds scaling·B·A into the model's weights (no cost at inference);
 * `unmerge(model)` subtracts it again (the weights come back to float32 rounding).
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
import { projectionShape } from '@para/model';
import { linear } from '@para/ops';
import * as tf from '@tensorflow/tfjs-core';
import { PeftAdapter, projectionPath } from '../base/adapter';
import type { TargetModule } from '../base/config';
import { kaimingUniform } from '../base/init';
import type { AdapterRequest } from '../base/request';
import type { AdapterMethod } from '../registry';
import {
  type LoraConfig,
  type LoraConfigInit,
  loraBiasTargets,
  loraConfigJson,
  loraModuleSettings,
  loraScaling,
  loraTargets,
  resolveLoraConfig,
} from './config';
import {
  type FusedCache,
  type FusedGroups,
  fusedLoraNames,
  fuseStateDict,
  fuseTensorSpecs,
  loraFusedGroups,
  splitFusedTensors,
} from './fused';
import {
  doraWeightNorm,
  doraWeightNormDetached,
  loraDelta,
  loraDeltaWeight,
  seededDropout,
} from './layer';
import { LORA_METHOD } from './method';

/** One adapted projection. */
export interface LoraModule {
  layer: number;
  module: TargetModule;
  /** [r, in] */
  A: tf.Variable;
  /** [out, r] */
  B: tf.Variable;
  /** This module's rank (rank_pattern, else r). */
  r: number;
  /** This module's alpha/r (alpha_pattern and rank_pattern applied; alpha/√r with rsLoRA). */
  scaling: number;
  /** DoRA's magnitude vector `[out]` (`lora_magnitude_vector`), or null without use_dora. */
  magnitude: tf.Variable | null;
}

export interface LoraCreateOptions {
  /** Seed of A (and of B with init_lora_weights false), and of the dropout masks (default 0). */
  seed?: number | string;
}

/**
 * Every tensor of a LoRA adapter file for `modelConfig`, by name and shape (nothing allocated);
 * `madeFor` is the model the config was written for (its layers bound layers_to_transform).
 */
export function loraTensorSpecs(
  c: LoraConfig,
  modelConfig: ModelConfig,
  madeFor: ModelConfig = modelConfig,
): TensorSpec[] {
  const specs: TensorSpec[] = [];
  const settings = loraModuleSettings(c);
  for (const { layer, module } of loraTargets(c, {
    ...modelConfig,
    numLayers: Math.max(modelConfig.numLayers, madeFor.numLayers),
  })) {
    if (layer >= modelConfig.numLayers) continue;
    const [out, inp] = projectionShape(modelConfig, module);
    const n = loraTensorNames(layer, module);
    const { r } = settings(layer, module);
    specs.push({ name: n.A, shape: [r, inp] }, { name: n.B, shape: [out, r] });
    if (c.use_dora) specs.push({ name: n.M, shape: [out] });
  }
  for (const t of loraBiasTargets(c, modelConfig, loraTargets(c, modelConfig)))
    specs.push({ name: loraBiasName(t), shape: [projectionShape(modelConfig, t.module)[0]] });
  const fused = loraFusedGroups(c, modelConfig, loraTargets(c, modelConfig));
  return fuseTensorSpecs(fused, specs, modelConfig);
}

/**
 * PEFT's name of a trained bias: `base_model.model.model.layers.{i}.self_attn.q_proj.base_layer.bias`
 * where LoRA wraps the projection, `….k_proj.bias` where it does not.
 */
export function loraBiasName(t: { layer: number; module: string; adapted: boolean }): string {
  return `${projectionPath(t.layer, t.module)}.${t.adapted ? 'base_layer.' : ''}bias`;
}

/**
 * PEFT names: `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`, `lora_B.weight`,
 * and DoRA's `lora_magnitude_vector`.
 */
export function loraTensorNames(
  layer: number,
  module: string,
): { A: string; B: string; M: string } {
  const p = projectionPath(layer, module);
  return { A: `${p}.lora_A.weight`, B: `${p}.lora_B.weight`, M: `${p}.lora_magnitude_vector` };
}

/** DoRA's weight norm of one module at inference, valid while W, A and B hold these data. */
interface NormCache {
  w: object;
  a: object;
  b: object;
  norm: tf.Tensor;
}

export class LoraAdapter extends PeftAdapter<LoraConfig> {
  readonly peftType = 'LORA' as const;
  /**
   * alpha / r (alpha / √r with rsLoRA): the scaling of modules that rank_pattern / alpha_pattern
   * do not name (each module's own is `module(...).scaling`).
   */
  readonly scaling: number;
  /** Adapted projections by `${layer}.${module}`. */
  private readonly modules = new Map<string, LoraModule>();
  /** Phi-3: the parts of fused qkv_proj / gate_up_proj LoRAs, sharing A (see fused.ts). */
  private readonly fused: FusedGroups;
  private readonly fusedCache: FusedCache = new Map();
  private readonly siteList: TargetModule[];
  private readonly layerList: number[];
  private readonly dropoutRng: Rng;
  private mergedInto: CausalLM | null = null;
  private hooks: ModelAdapter<AdapterRequest> | null = null;
  /** Fresh DoRA magnitudes and trained biases wait for the backbone's weights (`bindModel`). */
  private pending: boolean;
  /** Trained biases (PEFT's bias "all" / "lora_only") by `${layer}.${module}`, `[out]`. */
  private readonly biases = new Map<string, tf.Variable>();
  /** The backbone's biases a merge replaced, by `${layer}.${module}` (unmerge puts them back). */
  private readonly mergedBiases = new Map<string, tf.Tensor>();
  private readonly normCache = new Map<string, NormCache>();
  /** DoRA: m / ‖W + s·B·A‖ of each module while merged (unmerge divides by it). */
  private readonly mergedFactors = new Map<string, tf.Tensor>();

  private constructor(config: LoraConfig, modelConfig: ModelConfig, seed: number | string) {
    super(config, modelConfig);
    this.scaling = loraScaling(config);
    const rng = new Rng(seed);
    this.dropoutRng = rng.fork('dropout');
    this.fused = loraFusedGroups(config, modelConfig, loraTargets(config, modelConfig));
    const sharedA = new Map<string, tf.Variable>();
    const settings = loraModuleSettings(config);
    const sites = new Set<TargetModule>();
    const layers = new Set<number>();
    for (const { layer, module } of loraTargets(config, modelConfig)) {
      const { r, scaling } = settings(layer, module);
      const [out, inp] = projectionShape(modelConfig, module);
      const n = fusedLoraNames(this.fused, layer, module) ?? loraTensorNames(layer, module);
      const A =
        sharedA.get(n.A) ??
        (config.init_lora_weights === 'gaussian'
          ? this.addParam(n.A, rng.fork(n.A).normalTensor([r, inp], 0, 1 / r))
          : this.addParam(n.A, kaimingUniform(rng.fork(n.A), [r, inp], inp))); // [r, in]
      sharedA.set(n.A, A);
      const B = this.addParam(
        n.B,
        config.init_lora_weights === false
          ? kaimingUniform(rng.fork(n.B), [out, r], r)
          : tf.zeros([out, r]),
      ); // [out, r]
      const magnitude = config.use_dora ? this.addParam(n.M, tf.ones([out])) : null; // [out]
      this.modules.set(`${layer}.${module}`, { layer, module, A, B, r, scaling, magnitude });
      sites.add(module);
      layers.add(layer);
    }
    for (const t of loraBiasTargets(config, modelConfig, loraTargets(config, modelConfig))) {
      const out = projectionShape(modelConfig, t.module)[0];
      this.biases.set(`${t.layer}.${t.module}`, this.addParam(loraBiasName(t), tf.zeros([out])));
      sites.add(t.module);
      layers.add(t.layer);
    }
    this.siteList = [...sites];
    this.layerList = [...layers].sort((a, b) => a - b);
    this.pending = config.use_dora || this.biases.size > 0;
  }

  /** The trained bias `[out]` of (layer, module), if the adapter trains it. */
  trainedBias(layer: number, module: string): tf.Variable | undefined {
    const v = this.biases.get(`${layer}.${module}`);
    if (v !== undefined) this.checkDoraReady();
    return v;
  }

  /**
   * A fresh adapter's DoRA magnitudes and trained biases start from the backbone, as PEFT's do
   * (`m = ‖W + s·B·A‖` per output row, ‖W‖ with B = 0; a trained bias starts as the backbone's):
   * read the first time the adapter meets it (`attach`, a `MixedBatch`, `initFromBackbone`).
   * Loaded values are kept.
   */
  override bindModel(model: CausalLM): void {
    if (this.pending) this.initFromBackbone(model);
  }

  /** Sets every DoRA magnitude to ‖W + s·B·A‖ and every trained bias to the bias of `model`. */
  initFromBackbone(model: CausalLM): void {
    this.checkAlive();
    this.checkModel(model.config);
    for (const m of this.modules.values()) {
      if (m.magnitude === null) continue;
      const W = this.baseLinear(model, m).weight;
      tf.tidy(() => (m.magnitude as tf.Variable).assign(doraWeightNorm(W, m.A, m.B, m.scaling)));
    }
    for (const [key, v] of this.biases) {
      const [layer, module] = key.split('.') as [string, TargetModule];
      const b = this.baseLinear(model, { layer: Number(layer), module }).bias;
      if (b === null) throw new Error(`internal: ${key} has no bias in the model`);
      v.assign(b);
    }
    this.pending = false;
  }

  /** Whether the DoRA magnitudes and trained biases hold values (initialised or loaded). */
  get backboneInitialized(): boolean {
    return !this.pending;
  }

  private baseLinear(model: CausalLM, m: { layer: number; module: TargetModule }): Linear {
    const lin = model.weights.layers[m.layer]?.[m.module] as Linear | undefined;
    if (lin === undefined) throw new Error(`internal: no weight for layer ${m.layer} ${m.module}`);
    return lin;
  }

  private checkDoraReady(): void {
    if (this.pending) {
      const what = this.config.use_dora ? 'DoRA magnitudes' : 'trained biases';
      throw new ParaError(
        'INVALID_ARGUMENT',
        `this LoRA adapter's ${what} are initialised from the backbone's weights: attach it to the model (adapter.attach(model) with the CausalLM, or initFromBackbone(model)) first`,
        {
          field: this.config.use_dora ? 'lora_magnitude_vector' : 'bias',
          expected: `${what} initialised or loaded`,
        },
      );
    }
  }

  override loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>, file?: string): void {
    const made: tf.Tensor[] = [];
    try {
      super.loadStateDict(splitFusedTensors(this.fused, tensors, this.modelConfig, made), file);
    } finally {
      tf.dispose(made);
    }
    this.pending = false;
  }

  override stateDict(): Record<string, tf.Tensor> {
    this.checkDoraReady();
    return fuseStateDict(this.fused, super.stateDict(), this.fusedCache);
  }

  /**
   * DoRA at inference: `m / ‖W + s·B·A‖` `[out]` for weights `W`. The norm is computed once per
   * (W, A, B) and kept (a training step or a load replaces A's or B's data, and the norm with it).
   */
  doraFactor(m: LoraModule, W: tf.Tensor): tf.Tensor {
    this.checkDoraReady();
    const key = `${m.layer}.${m.module}`;
    let c = this.normCache.get(key);
    if (c === undefined || c.w !== W.dataId || c.a !== m.A.dataId || c.b !== m.B.dataId) {
      c?.norm.dispose();
      c = {
        w: W.dataId,
        a: m.A.dataId,
        b: m.B.dataId,
        norm: tf.keep(tf.tidy(() => doraWeightNorm(W, m.A, m.B, m.scaling))), // [out]
      };
      this.normCache.set(key, c);
    }
    return tf.div(m.magnitude as tf.Variable, c.norm); // [out]
  }

  static create(
    modelConfig: ModelConfig,
    init: LoraConfigInit = {},
    options: LoraCreateOptions = {},
  ): LoraAdapter {
    return new LoraAdapter(resolveLoraConfig(init), modelConfig, options.seed ?? 0);
  }

  static fromConfig(
    modelConfig: ModelConfig,
    config: LoraConfig,
    options: LoraCreateOptions = {},
  ): LoraAdapter {
    return new LoraAdapter(config, modelConfig, options.seed ?? 0);
  }

  get sites(): readonly AdapterSite[] {
    return this.siteList;
  }

  /** Layers with at least one adapted projection. */
  get layers(): readonly number[] {
    return this.layerList;
  }

  /** The adapted projection at (layer, module), if any. */
  module(layer: number, module: string): LoraModule | undefined {
    return this.modules.get(`${layer}.${module}`);
  }

  /** Every adapted projection. */
  allModules(): LoraModule[] {
    return [...this.modules.values()];
  }

  /** The model the deltas are merged into, or null. */
  get merged(): CausalLM | null {
    return this.mergedInto;
  }

  tensorSpecs(modelConfig: ModelConfig = this.modelConfig): TensorSpec[] {
    return loraTensorSpecs(this.config, modelConfig, this.modelConfig);
  }

  toConfigJson(): Record<string, unknown> {
    return loraConfigJson(this.config);
  }

  /** The unmerged delta of one projection applied to its input: scaling · B A x. `x [..., in]` → `[..., out]`. */
  delta(m: LoraModule, x: tf.Tensor): tf.Tensor {
    return loraDelta(x, m.A, m.B, m.scaling); // [..., out]
  }

  get method(): AdapterMethod {
    return LORA_METHOD as unknown as AdapterMethod;
  }

  override get isMerged(): boolean {
    return this.mergedInto !== null;
  }

  protected trainingHooks(): ModelAdapter<AdapterRequest> {
    this.checkAlive();
    if (this.mergedInto !== null) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        'this LoRA adapter is merged into the model weights: run the model without it, or unmerge first',
        {
          field: 'adapter',
          expected: 'an unmerged LoRA adapter',
        },
      );
    }
    if (this.hooks !== null) return this.hooks;
    this.hooks = {
      sites: this.siteList,
      layers: this.layerList,
      transform: (
        ctx: AdapterContext<AdapterRequest>,
        site: AdapterSite,
        y: tf.Tensor,
        x: tf.Tensor,
      ) => {
        if (this.mergedInto !== null)
          throw new ParaError(
            'INVALID_ARGUMENT',
            'this LoRA adapter was merged into the model weights after it was attached',
            { field: 'adapter' },
          );
        const m = this.modules.get(`${ctx.layer}.${site}`);
        const tb = this.biases.get(`${ctx.layer}.${site}`);
        if (tb !== undefined) this.checkDoraReady();
        const lin = ctx.weights?.[site as TargetModule] as Linear | undefined;
        // A trained bias replaces the backbone's: y − b + b_trained.
        const withBias = (t: tf.Tensor) =>
          tb === undefined ? t : tf.add(tf.sub(t, lin?.bias as tf.Tensor), tb); // [B, T, out]
        if (m === undefined) return withBias(y);
        const dropout = this.training && ctx.phase === 'forward' && this.config.lora_dropout > 0;
        const input = dropout ? seededDropout(x, this.config.lora_dropout, this.dropoutRng) : x;
        if (m.magnitude === null) return withBias(tf.add(y, this.delta(m, input))); // [B, T, out]
        // DoRA (PEFT's DoraLinearLayer.forward): y + (f - 1) ⊙ W x' + f ⊙ s·B·A x', with
        // f = m / ‖W + s·B·A‖ (norm detached), x' the dropped-out input; W x' is y less the
        // bias without dropout, so the bias stays outside the scaling.
        this.checkDoraReady();
        if (lin === undefined) throw new Error(`internal: no weights for ${site} in the context`);
        const f = tf.div(m.magnitude, doraWeightNormDetached(lin.weight, m.A, m.B, m.scaling)); // [out]
        const base = dropout
          ? linear(input, lin.weight)
          : lin.bias === null
            ? y
            : tf.sub(y, lin.bias); // [B, T, out]
        return tf.add(
          tf.add(withBias(y), tf.mul(tf.sub(f, 1), base)),
          tf.mul(f, this.delta(m, input)),
        ); // [B, T, out]
      },
    };
    return this.hooks;
  }

  /**
   * Adds scaling·B·A to the model's projection weights (`W ← W + s·B·A`), so inference runs the
   * plain backbone. The replaced weight tensors are disposed; `unmerge` restores them up to
   * float32 rounding.
   */
  merge(model: CausalLM): void {
    this.checkAlive();
    if (this.mergedInto !== null)
      throw new ParaError('INVALID_ARGUMENT', 'this LoRA adapter is already merged', {
        field: 'adapter',
      });
    this.checkModel(model.config);
    this.bindModel(model);
    this.applyDelta(model, 1);
    this.mergedInto = model;
  }

  /** Subtracts what `merge` added. */
  unmerge(model: CausalLM): void {
    this.checkAlive();
    if (this.mergedInto !== model) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        this.mergedInto === null
          ? 'this LoRA adapter is not merged'
          : 'this LoRA adapter is merged into another model',
        {
          field: 'model',
          expected: 'the model passed to merge()',
        },
      );
    }
    this.applyDelta(model, -1);
    this.mergedInto = null;
  }

  // LoRA: W ± s·B·A. DoRA (PEFT's merge / unmerge): W ← f ⊙ (W + s·B·A) with
  // f = m / ‖W + s·B·A‖ per output row, and back W ← W / f − s·B·A with the same f.
  private applyDelta(model: CausalLM, sign: 1 | -1): void {
    for (const m of this.modules.values()) {
      const lin = this.baseLinear(model, m);
      const old = lin.weight;
      const key = `${m.layer}.${m.module}`;
      lin.weight = tf.tidy(() => {
        if (m.magnitude === null) return tf.add(old, loraDeltaWeight(m.A, m.B, sign * m.scaling));
        if (sign === 1) {
          const f = tf.div(m.magnitude, doraWeightNorm(old, m.A, m.B, m.scaling)); // [out]
          this.mergedFactors.set(key, tf.keep(f));
          return tf.mul(tf.add(old, loraDeltaWeight(m.A, m.B, m.scaling)), tf.expandDims(f, 1));
        }
        const f = this.mergedFactors.get(key) as tf.Tensor;
        this.mergedFactors.delete(key);
        const w = tf.sub(tf.div(old, tf.expandDims(f, 1)), loraDeltaWeight(m.A, m.B, m.scaling));
        f.dispose();
        return w;
      }); // [out, in]
      old.dispose();
    }
    for (const [key, v] of this.biases) {
      const [layer, module] = key.split('.') as [string, TargetModule];
      const lin = this.baseLinear(model, { layer: Number(layer), module });
      if (sign === 1) {
        this.mergedBiases.set(key, lin.bias as tf.Tensor);
        lin.bias = tf.clone(v); // [out]
      } else {
        lin.bias?.dispose();
        lin.bias = this.mergedBiases.get(key) as tf.Tensor;
        this.mergedBiases.delete(key);
      }
    }
  }

  override dispose(): void {
    this.hooks = null;
    for (const c of this.normCache.values()) c.norm.dispose();
    this.normCache.clear();
    for (const f of this.mergedFactors.values()) f.dispose();
    this.mergedFactors.clear();
    this.biases.clear();
    for (const c of this.fusedCache.values()) c.t.dispose();
    this.fusedCache.clear();
    super.dispose();
  }
}
