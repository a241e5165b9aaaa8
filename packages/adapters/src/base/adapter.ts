/**
 * The common adapter interface (in the spirit of PEFT's `BaseTuner` + `BaseTunerLayer`):
 *
 *   config            the method's settings, PEFT key names (adapter_config.json)
 *   parameters        tf.Variables, named by their PEFT tensor names
 *   numParameters     trainable parameter count
 *   method            its entry in the adapter-method registry (registry.ts)
 *   attach(model)     checks the adapter fits the model, returns the `ModelAdapter` hooks that
 *                     `CausalLM.forward / prefill / decodeStep` call: in `forward` the method's
 *                     own differentiable hooks (training), at prefill a `MixedBatch` whose rows
 *                     all use this adapter (inference has one path: mixed/mixed.ts)
 *   stateDict / loadStateDict   tensors by PEFT name, shapes checked (save/load: see io/)
 *   checkModel        validation against a model config: typed error naming the tensor and both shapes
 *
 * Per-request state (PARA's vectors, per-row LoRA stacks in a mixed batch) lives in the model's
 * typed per-layer `ctx.state`, beside the KV cache, never in the adapter object: one adapter
 * serves any number of concurrent requests.
 */

import { ParaError } from '@para/core';
import type { AdapterSite, CausalLM, ModelAdapter, ModelConfig, TensorSpec } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { MixedBatch } from '../mixed/mixed';
import type { AdapterMethod } from '../registry';
import type { BaseAdapterConfig } from './config';
import type { AdapterRequest } from './request';

let nextAdapterId = 0;

/** The PEFT tensor-name prefix of layer `i`'s modules: `base_model.model.model.layers.{i}.` */
export function layerPrefix(i: number): string {
  return `base_model.model.model.layers.${i}.`;
}

/** `self_attn` or `mlp`: where a projection lives in the HF module tree. */
export function moduleOf(p: string): 'self_attn' | 'mlp' {
  return p === 'gate_proj' || p === 'up_proj' || p === 'down_proj' ? 'mlp' : 'self_attn';
}

/** `base_model.model.model.layers.{i}.self_attn.q_proj` */
export function projectionPath(i: number, p: string): string {
  return `${layerPrefix(i)}${moduleOf(p)}.${p}`;
}

function shapeText(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

export abstract class PeftAdapter<C extends BaseAdapterConfig = BaseAdapterConfig> {
  /** `peft_type` of its config (the registry key of its method). */
  abstract readonly peftType: string;
  /** The resolved config (defaults filled in), PEFT key names. */
  readonly config: Readonly<C>;
  /** The backbone config the adapter was built for. */
  readonly modelConfig: ModelConfig;
  /** Unique per process; prefixes the variable names (tfjs needs them unique). */
  readonly id: number;
  /** Training mode (LoRA dropout is active in `forward` passes only while true). */
  training = false;
  private readonly params = new Map<string, tf.Variable>();
  private disposed = false;

  protected constructor(config: C, modelConfig: ModelConfig) {
    this.config = Object.freeze({ ...config });
    this.modelConfig = modelConfig;
    this.id = nextAdapterId++;
  }

  /** Every tensor of the adapter file, by PEFT name, with the shape this model needs. */
  abstract tensorSpecs(modelConfig?: ModelConfig): TensorSpec[];

  /** The method's differentiable hooks for a teacher-forced `forward` (training). Use `attach`. */
  protected abstract trainingHooks(): ModelAdapter<AdapterRequest>;

  /** This adapter's entry in the method registry. */
  abstract get method(): AdapterMethod;

  /**
   * Called with the backbone when the adapter meets it (`attach(model)`, a `MixedBatch` of the
   * model): a method whose fresh parameters are computed from the backbone's weights (DoRA's
   * magnitudes, ‖W‖ per row) initialises them here. Default: nothing.
   */
  bindModel(_model: CausalLM): void {}

  /**
   * Asynchronous preparation for `model` after a load (reads tensor data; `loadAdapter` with a
   * CausalLM awaits it). Default: nothing.
   */
  async prepareFor(_model: CausalLM): Promise<void> {}

  /** Whether the adapter is folded into a model's weights (then it must not also run as an adapter). */
  get isMerged(): boolean {
    return false;
  }

  /** The sites this adapter transforms. */
  abstract get sites(): readonly AdapterSite[];

  /** adapter_config.json as an object (PEFT keys). */
  abstract toConfigJson(): Record<string, unknown>;

  /**
   * Checks the adapter fits `model` and returns its hooks for `forward` (the method's own,
   * differentiable) and `prefill` / `decodeStep` (a `MixedBatch` of this one tenant, built for
   * each prefill's batch size).
   */
  attach(model: CausalLM | ModelConfig): ModelAdapter<AdapterRequest> {
    this.checkAlive();
    const modelConfig = 'config' in model ? model.config : model;
    this.checkModel(modelConfig);
    if ('config' in model) this.bindModel(model);
    if (this.isMerged) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        'this adapter is merged into the model weights: run the model without it',
        { field: 'adapter', expected: 'an unmerged adapter' },
      );
    }
    const own = this.trainingHooks();
    let batch: { size: number; hooks: ModelAdapter<AdapterRequest> } | null = null;
    const batchOf = (B: number) => {
      if (batch?.size !== B)
        batch = {
          size: B,
          hooks: new MixedBatch(
            'config' in model ? model : modelConfig,
            new Array<PeftAdapter>(B).fill(this),
          ).modelAdapter(),
        };
      return batch.hooks;
    };
    const hooks: ModelAdapter<AdapterRequest> = {
      sites: own.sites,
      modelInput: (ctx) => {
        if (ctx.phase === 'forward') return own.modelInput?.(ctx);
        if (ctx.phase === 'decode') return; // the state was built at prefill
        batchOf(ctx.tokenMask.shape[0] as number).modelInput?.(ctx);
      },
      layerInput: (ctx, h) => {
        if (ctx.phase === 'forward') return own.layerInput?.(ctx, h);
        if (ctx.phase === 'decode') return; // the state was built at prefill
        batchOf(h.shape[0] as number).layerInput?.(ctx, h);
      },
    };
    const transform = own.transform;
    if (transform !== undefined)
      hooks.transform = (ctx, site, y, x) =>
        ctx.phase === 'forward' ? transform(ctx, site, y, x) : y;
    return own.layers === undefined ? hooks : { ...hooks, layers: own.layers };
  }

  /**
   * Throws `SHAPE_MISMATCH` naming the first tensor whose shape differs between this adapter and
   * what `modelConfig` needs (or that the model has no layer for), with both shapes.
   */
  checkModel(modelConfig: ModelConfig, file?: string): void {
    const need = new Map(this.tensorSpecs(modelConfig).map((s) => [s.name, s.shape]));
    for (const s of this.tensorSpecs()) {
      const want = need.get(s.name);
      if (want === undefined) {
        throw new ParaError(
          'SHAPE_MISMATCH',
          `the adapter does not fit the model (${modelConfig.numLayers} layers)`,
          {
            file,
            field: s.name,
            expected: `no such tensor for a ${modelConfig.numLayers}-layer model`,
            actual: `${shapeText(s.shape)} in the adapter`,
          },
        );
      }
      if (want.length !== s.shape.length || want.some((d, i) => d !== s.shape[i])) {
        throw new ParaError(
          'SHAPE_MISMATCH',
          'the adapter does not fit the model (a different base model?)',
          {
            file,
            field: s.name,
            expected: `${shapeText(want)} for the model (d=${modelConfig.hiddenSize}, d_ff=${modelConfig.intermediateSize})`,
            actual: `${shapeText(s.shape)} in the adapter`,
          },
        );
      }
    }
    const own = new Set(this.tensorSpecs().map((s) => s.name));
    for (const [name, shape] of need) {
      if (!own.has(name)) {
        throw new ParaError(
          'SHAPE_MISMATCH',
          `the adapter does not fit the model (${modelConfig.numLayers} layers; the adapter was made for ${this.modelConfig.numLayers})`,
          {
            file,
            field: name,
            expected: `${shapeText(shape)} for the model`,
            actual: 'no such tensor in the adapter',
          },
        );
      }
    }
  }

  // --- parameters -------------------------------------------------------------------------

  /** Registers a parameter (the adapter takes ownership of `init`). */
  protected addParam(name: string, init: tf.Tensor): tf.Variable {
    const v = tf.variable(init, true, `${this.peftType.toLowerCase()}${this.id}/${name}`);
    init.dispose();
    this.params.set(name, v);
    return v;
  }

  protected param(name: string): tf.Variable {
    const v = this.params.get(name);
    if (v === undefined) throw new Error(`internal: no parameter ${name}`);
    return v;
  }

  /** Trainable variables, in file order. */
  parameters(): tf.Variable[] {
    this.checkAlive();
    return [...this.params.values()];
  }

  /** PEFT name → variable. */
  namedParameters(): ReadonlyMap<string, tf.Variable> {
    this.checkAlive();
    return this.params;
  }

  /** Number of trainable parameters. */
  get numParameters(): number {
    let n = 0;
    for (const v of this.params.values()) n += v.size;
    return n;
  }

  /** The tensors to save, by PEFT name (the live variables: do not dispose them). */
  stateDict(): Record<string, tf.Tensor> {
    this.checkAlive();
    return Object.fromEntries(this.params);
  }

  /**
   * Replaces every parameter with `tensors` (PEFT names). All names and shapes are checked
   * before anything is assigned: a missing tensor is `TENSOR_NOT_FOUND`, an unexpected one or a
   * wrong shape `SHAPE_MISMATCH`, each naming the tensor (and both shapes).
   */
  loadStateDict(tensors: Readonly<Record<string, tf.Tensor>>, file?: string): void {
    this.checkAlive();
    const names = Object.keys(tensors);
    for (const [name, v] of this.params) {
      const t = tensors[name];
      if (t === undefined) {
        throw new ParaError('TENSOR_NOT_FOUND', `the ${this.peftType} adapter needs this tensor`, {
          file,
          field: name,
          expected: `a tensor ${shapeText(v.shape)}`,
          actual: names.length === 0 ? 'no tensors' : `${names.length} other tensors`,
        });
      }
      if (t.shape.length !== v.shape.length || t.shape.some((d, i) => d !== v.shape[i])) {
        throw new ParaError('SHAPE_MISMATCH', 'adapter tensor has the wrong shape for the model', {
          file,
          field: name,
          expected: shapeText(v.shape),
          actual: shapeText(t.shape),
        });
      }
    }
    const extra = names.filter((n) => !this.params.has(n));
    if (extra.length > 0) {
      throw new ParaError(
        'SHAPE_MISMATCH',
        `unexpected tensor for this ${this.peftType} config (${extra.length} in all)`,
        {
          file,
          field: extra[0],
          expected: `only the ${this.params.size} tensors of the config (e.g. ${[...this.params.keys()][0]})`,
          actual: `[${(tensors[extra[0] as string] as tf.Tensor).shape.join(', ')}]`,
        },
      );
    }
    for (const [name, v] of this.params) {
      const t = tensors[name] as tf.Tensor;
      tf.tidy(() => v.assign(t.dtype === 'float32' ? t : tf.cast(t, 'float32')));
    }
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }

  protected checkAlive(): void {
    if (this.disposed)
      throw new ParaError('INVALID_ARGUMENT', 'the adapter was disposed', { field: 'adapter' });
  }
}
