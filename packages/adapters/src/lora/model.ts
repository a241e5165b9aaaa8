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
  AdapterState,
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
import { EDGE_MODULE_KEYS, type EdgeModule, type TargetModule } from '../base/config';
import { kaimingUniform } from '../base/init';
import type { AdapterRequest } from '../base/request';
import type { AdapterMethod } from '../registry';
import {
  type LoraConfig,
  type LoraConfigInit,
  loraBiasTargets,
  loraConfigJson,
  loraEdgeTargets,
  loraKeySettings,
  loraModuleSettings,
  loraSavedModules,
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

/**
 * LoRA on the embedding or the output head (PEFT's `lora.Embedding` / `lora.Linear` on lm_head):
 *
 *   embed_tokens   E[x] + scaling · (A[:, x])ᵀ Bᵀ    A = lora_embedding_A [r, V], B = lora_embedding_B [d, r]
 *   lm_head        W h + scaling · B A h             A = lora_A [r, d], B = lora_B [V, r]
 */
export interface LoraEdge {
  edge: EdgeModule;
  A: tf.Variable;
  B: tf.Variable;
  r: number;
  scaling: number;
}

/** A tensor spec the file may lack (PEFT's saved base layers, `save_embedding_layers`). */
export type OptionalTensorSpec = TensorSpec & { optional?: boolean };

/**
 * PEFT's names at lm_head / embed_tokens: the LoRA factors, the base layer PEFT saves beside them
 * (`….base_layer.weight`, save_embedding_layers) and a modules_to_save copy (`….weight`).
 */
export function loraEdgeNames(edge: EdgeModule): {
  A: string;
  B: string;
  base: string;
  saved: string;
} {
  const p = `base_model.model.${EDGE_MODULE_KEYS[edge]}`;
  return edge === 'embed_tokens'
    ? {
        A: `${p}.lora_embedding_A`,
        B: `${p}.lora_embedding_B`,
        base: `${p}.base_layer.weight`,
        saved: `${p}.weight`,
      }
    : {
        A: `${p}.lora_A.weight`,
        B: `${p}.lora_B.weight`,
        base: `${p}.base_layer.weight`,
        saved: `${p}.weight`,
      };
}

/** `[r, in]`, `[out, r]` of an edge's LoRA (in = V for the embedding, d for the head). */
function edgeShapes(edge: EdgeModule, m: ModelConfig, r: number): { A: number[]; B: number[] } {
  const V = m.vocabSize;
  const d = m.hiddenSize;
  return edge === 'embed_tokens' ? { A: [r, V], B: [d, r] } : { A: [r, d], B: [V, r] };
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
  const byKey = loraKeySettings(c);
  const table = [modelConfig.vocabSize, modelConfig.hiddenSize];
  for (const e of loraEdgeTargets(c)) {
    const n = loraEdgeNames(e);
    const sh = edgeShapes(e, modelConfig, byKey(EDGE_MODULE_KEYS[e]).r);
    specs.push({ name: n.A, shape: sh.A }, { name: n.B, shape: sh.B });
    specs.push({ name: n.base, shape: table, optional: true } as OptionalTensorSpec);
  }
  for (const e of loraSavedModules(c)) specs.push({ name: loraEdgeNames(e).saved, shape: table });
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
  /** The backbone's embedding table / lm_head weight a merge replaced (unmerge puts them back exactly). */
  private readonly mergedEdges = new Map<EdgeModule, tf.Tensor>();
  /** LoRA on embed_tokens / lm_head. */
  private readonly edges = new Map<EdgeModule, LoraEdge>();
  /** modules_to_save: trained full copies `[V, d]` of embed_tokens / lm_head. */
  private readonly copies = new Map<EdgeModule, tf.Variable>();
  /** Base layers PEFT saved beside an edge's LoRA (`….base_layer.weight`), as loaded (frozen). */
  private readonly baseLayers = new Map<EdgeModule, tf.Tensor>();
  /** Loaded base layers found equal to the backbone's (`prepareFor`): no replacement needed. */
  private readonly baseSame = new Set<EdgeModule>();
  /**
   * Base layers equal to a backbone's are not kept twice: the entry in `baseLayers` is then that
   * model's own tensor (not ours to free), saved back from there.
   */
  private readonly baseShared = new Set<EdgeModule>();

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
    const byKey = loraKeySettings(config);
    for (const edge of loraEdgeTargets(config)) {
      const { r, scaling } = byKey(EDGE_MODULE_KEYS[edge]);
      const n = loraEdgeNames(edge);
      const sh = edgeShapes(edge, modelConfig, r);
      let A: tf.Variable;
      let B: tf.Variable;
      if (edge === 'embed_tokens') {
        // PEFT: A zeros and B ~ N(0, 1) (true / "gaussian"), both ~ N(0, 1) with false.
        A = this.addParam(
          n.A,
          config.init_lora_weights === false
            ? rng.fork(n.A).normalTensor(sh.A, 0, 1)
            : tf.zeros(sh.A),
        );
        B = this.addParam(n.B, rng.fork(n.B).normalTensor(sh.B, 0, 1));
      } else {
        const inp = modelConfig.hiddenSize;
        A =
          config.init_lora_weights === 'gaussian'
            ? this.addParam(n.A, rng.fork(n.A).normalTensor(sh.A, 0, 1 / r))
            : this.addParam(n.A, kaimingUniform(rng.fork(n.A), sh.A, inp));
        B = this.addParam(
          n.B,
          config.init_lora_weights === false
            ? kaimingUniform(rng.fork(n.B), sh.B, r)
            : tf.zeros(sh.B),
        );
      }
      this.edges.set(edge, { edge, A, B, r, scaling });
    }
    for (const edge of loraSavedModules(config)) {
      const V = modelConfig.vocabSize;
      this.copies.set(
        edge,
        this.addParam(loraEdgeNames(edge).saved, tf.zeros([V, modelConfig.hiddenSize])),
      );
    }
    this.siteList = [...sites];
    this.layerList = [...layers].sort((a, b) => a - b);
    this.pending = config.use_dora || this.biases.size > 0 || this.copies.size > 0;
  }

  /** LoRA on embed_tokens / lm_head, if the adapter has it. */
  edge(edge: EdgeModule): LoraEdge | undefined {
    return this.edges.get(edge);
  }

  /**
   * The weight `[V, d]` this adapter's rows use instead of the backbone's embedding table or
   * lm_head weight (a modules_to_save copy, or a base layer PEFT saved that differs from the
   * backbone's), or undefined: the backbone's.
   */
  replacement(edge: EdgeModule): tf.Tensor | undefined {
    const copy = this.copies.get(edge);
    if (copy !== undefined) {
      this.checkDoraReady();
      return copy;
    }
    if (this.baseSame.has(edge)) return undefined;
    const t = this.baseLayers.get(edge);
    if (t?.isDisposed) throw this.sharedBaseGone(edge);
    return t;
  }

  private sharedBaseGone(edge: EdgeModule): ParaError {
    return new ParaError(
      'INVALID_ARGUMENT',
      `the saved ${edge} base layer of this adapter was the backbone's own tensor, and that model was disposed`,
      { field: loraEdgeNames(edge).base, expected: 'the model the adapter was loaded with, alive' },
    );
  }

  /**
   * Fills the embedding / head state of `state` for B rows all of this adapter (training
   * forwards): the replacement tables and the LoRA factors, batch dim 1.
   */
  private fillEdges(state: AdapterState, B: number): void {
    for (const edge of ['embed_tokens', 'lm_head'] as const) {
      const target = edge === 'embed_tokens' ? state.embedding : state.head;
      const table = this.replacement(edge);
      if (table !== undefined) target.setTables([table], new Array<number>(B).fill(0));
      const e = this.edges.get(edge);
      if (e === undefined) continue;
      const [r, inp] = e.A.shape as [number, number];
      const out = e.B.shape[0] as number;
      target.setLora({
        a: tf.reshape(tf.transpose(e.A), [1, inp, r]), // [1, in, r]
        b: tf.reshape(tf.mul(tf.transpose(e.B), e.scaling), [1, r, out]), // [1, r, out]
      });
    }
  }

  /** Whether the adapter touches the embedding or the output head. */
  get hasEdges(): boolean {
    return this.edges.size > 0 || this.copies.size > 0 || this.baseLayers.size > 0;
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
    if (this.baseCheckedFor !== model) this.baseSame.clear(); // checked for another model
  }

  /**
   * The base layers PEFT saved (`….base_layer.weight`) that equal `model`'s own need no
   * replacement (no extra gather / head matmul per row): compared here, once per model
   * (`loadAdapter` with a CausalLM calls it). Until then, or when they differ, the adapter's rows
   * use the saved ones, as PEFT's load would.
   */
  override async prepareFor(model: CausalLM): Promise<void> {
    this.baseSame.clear();
    for (const [edge, t] of this.baseLayers) {
      const w = edge === 'embed_tokens' ? model.weights.embedTokens : model.weights.lmHead;
      if (t === w) {
        this.baseSame.add(edge);
        continue;
      }
      if (t.isDisposed) continue;
      const eq = tf.tidy(() => tf.all(tf.equal(t, w)));
      const same = (await eq.data())[0] === 1;
      eq.dispose();
      if (!same) continue;
      this.baseSame.add(edge);
      // Not kept twice ([V, d] each): the backbone's tensor stands for it from now on.
      if (!this.baseShared.has(edge)) t.dispose();
      this.baseLayers.set(edge, w);
      this.baseShared.add(edge);
    }
    this.baseCheckedFor = model;
  }

  private baseCheckedFor: CausalLM | null = null;

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
    for (const [edge, v] of this.copies)
      v.assign(edge === 'embed_tokens' ? model.weights.embedTokens : model.weights.lmHead);
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
      const what = this.config.use_dora
        ? 'DoRA magnitudes'
        : this.biases.size > 0
          ? 'trained biases'
          : 'modules_to_save copies';
      throw new ParaError(
        'INVALID_ARGUMENT',
        `this LoRA adapter's ${what} are initialised from the backbone's weights: attach it to the model (adapter.attach(model) with the CausalLM, or initFromBackbone(model)) first`,
        {
          field: this.config.use_dora
            ? 'lora_magnitude_vector'
            : this.biases.size > 0
              ? 'bias'
              : 'modules_to_save',
          expected: `${what} initialised or loaded`,
        },
      );
    }
  }

  override loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>, file?: string): void {
    const made: tf.Tensor[] = [];
    const rest = splitFusedTensors(this.fused, tensors, this.modelConfig, made);
    const bases = new Map<EdgeModule, tf.Tensor>();
    for (const edge of this.edges.keys()) {
      const name = loraEdgeNames(edge).base;
      const t = rest[name];
      if (t === undefined) continue;
      delete rest[name];
      const want = [this.modelConfig.vocabSize, this.modelConfig.hiddenSize];
      if (t.shape.length !== 2 || t.shape[0] !== want[0] || t.shape[1] !== want[1])
        throw new ParaError('SHAPE_MISMATCH', 'adapter tensor has the wrong shape for the model', {
          file,
          field: name,
          expected: `[${want.join(', ')}]`,
          actual: `[${t.shape.join(', ')}]`,
        });
      bases.set(edge, t);
    }
    try {
      super.loadStateDict(rest, file);
    } finally {
      tf.dispose(made);
    }
    for (const [edge, t] of this.baseLayers) if (!this.baseShared.has(edge)) t.dispose();
    this.baseLayers.clear();
    this.baseShared.clear();
    this.baseSame.clear();
    this.baseCheckedFor = null;
    for (const [edge, t] of bases)
      this.baseLayers.set(
        edge,
        tf.keep(t.dtype === 'float32' ? tf.clone(t) : tf.cast(t, 'float32')),
      );
    this.pending = false;
  }

  override stateDict(): Record<string, tf.Tensor> {
    this.checkDoraReady();
    const out = fuseStateDict(this.fused, super.stateDict(), this.fusedCache);
    for (const [edge, t] of this.baseLayers) {
      if (t.isDisposed) throw this.sharedBaseGone(edge);
      out[loraEdgeNames(edge).base] = t;
    }
    return out;
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
      modelInput: (ctx) => {
        if (!this.hasEdges) return;
        if (
          this.training &&
          ctx.phase === 'forward' &&
          this.config.lora_dropout > 0 &&
          this.edges.has('lm_head')
        )
          throw new ParaError(
            'UNSUPPORTED',
            "LoRA dropout on lm_head's input is not implemented: train with lora_dropout 0, or without lm_head in target_modules",
            {
              field: 'lora_dropout',
              expected: '0 with lm_head in target_modules',
              actual: String(this.config.lora_dropout),
            },
          );
        this.fillEdges(ctx.state, ctx.tokenMask.shape[0] as number);
      },
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
    if (this.hasEdges && model.config.tieWordEmbeddings)
      throw new ParaError(
        'UNSUPPORTED',
        'merging LoRA on embed_tokens / lm_head or modules_to_save into a backbone with tied embeddings is not implemented (the one tensor would change both modules): run it unmerged',
        {
          field: this.copies.size > 0 ? 'modules_to_save' : 'target_modules',
          expected:
            'an adapter of the decoder layers only, or a backbone without tie_word_embeddings',
        },
      );
    this.checkModel(model.config);
    this.bindModel(model);
    this.applyDelta(model, 1);
    this.mergeEdges(model);
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
    this.unmergeEdges(model);
    this.mergedInto = null;
  }

  // embed_tokens: E ← (copy or E) + s·(B·A)ᵀ ([V, d]); lm_head: W ← (copy or W) + s·B·A. The
  // originals are kept (a copy cannot be subtracted back; a saved base layer may share them).
  private mergeEdges(model: CausalLM): void {
    for (const edge of ['embed_tokens', 'lm_head'] as const) {
      const table = this.replacement(edge);
      const e = this.edges.get(edge);
      if (table === undefined && e === undefined) continue;
      const w = model.weights;
      const orig = edge === 'embed_tokens' ? w.embedTokens : w.lmHead;
      const merged = tf.tidy(() => {
        const base = table ?? orig; // [V, d]
        if (e === undefined) return tf.clone(base);
        const delta = tf.mul(tf.matMul(e.B, e.A), e.scaling); // embed [d, V], head [V, d]
        return tf.add(base, edge === 'embed_tokens' ? tf.transpose(delta) : delta); // [V, d]
      });
      if (edge === 'embed_tokens') w.embedTokens = merged;
      else w.lmHead = merged;
      this.mergedEdges.set(edge, orig);
    }
  }

  private unmergeEdges(model: CausalLM): void {
    const w = model.weights;
    for (const [edge, orig] of this.mergedEdges) {
      if (edge === 'embed_tokens') {
        w.embedTokens.dispose();
        w.embedTokens = orig;
      } else {
        w.lmHead.dispose();
        w.lmHead = orig;
      }
    }
    this.mergedEdges.clear();
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
    for (const [edge, t] of this.baseLayers) if (!this.baseShared.has(edge)) t.dispose();
    this.baseLayers.clear();
    this.baseShared.clear();
    this.biases.clear();
    for (const c of this.fusedCache.values()) c.t.dispose();
    this.fusedCache.clear();
    super.dispose();
  }
}
