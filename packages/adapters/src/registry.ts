/**
 * The adapter-method registry (in the spirit of PEFT's `register_peft_method`): everything that
 * differs between PARA, LoRA and IA3 — or a method added later — is reached through one
 * `AdapterMethod` entry keyed by `peft_type`:
 *
 *   resolveConfig     adapter_config.json (or an inline config) → the method's resolved config
 *   defaults          one set of documented defaults (config keys and the training learning rate)
 *   create            a fresh, seeded adapter for a backbone
 *   mixedLayer        its rows' contribution to a mixed-tenant batch at one layer: per-row
 *                     scales (`[n, dim]` per site) and/or per-adapter LoRA factors
 *   mixedEdges        (optional) its rows' replacement tables / LoRA factors at the embedding
 *                     lookup and the output head
 *   merge             folding the adapter into the backbone's weights, where the method can
 *
 * Tensor names, shapes (the load checks) and trainable parameters are the adapter object's own
 * (`tensorSpecs`, `parameters`), since they depend on its resolved config; an adapter object
 * knows its method (`adapter.method`). Adding a method is its own folder (config, layer, model,
 * method.ts) plus one registration line in methods.ts.
 */

import { ParaError } from '@para/core';
import type {
  AdapterSite,
  CausalLM,
  LayerWeights,
  ModelConfig,
  ProjectionName,
  TensorSpec,
} from '@para/model';
import type * as tf from '@tensorflow/tfjs-core';
import type { PeftAdapter } from './base/adapter';
import type { BaseAdapterConfig } from './base/config';

/** Batch rows served by one adapter. */
export interface MixedGroup<A> {
  adapter: A;
  rows: readonly number[];
}

/** Per-row scales of one site: row `rows[k]` is multiplied by `value[k]`. */
export interface RowScale {
  site: AdapterSite;
  rows: readonly number[];
  /** `[rows.length, dim]` */
  value: tf.Tensor;
}

/** One adapter's low-rank update of one projection, for the batch rows it serves. */
export interface RowLora {
  site: ProjectionName;
  rows: readonly number[];
  /** `[in, r]` (Aᵀ) */
  a: tf.Tensor;
  /** `[r, out]` (scaling · Bᵀ) */
  b: tf.Tensor;
}

/** Per-row additive biases of one projection (after its scale): row `rows[k]` gets `value[k]`. */
export interface RowBias {
  site: ProjectionName;
  rows: readonly number[];
  /** `[rows.length, out]` */
  value: tf.Tensor;
}

/**
 * One adapter's part at the embedding lookup or the output head, for the rows it serves: a
 * replacement weight `[V, d]` (modules_to_save) and/or a low-rank update, `a [in, r]` (Aᵀ; in = V
 * for the embedding, gathered by token id) and `b [r, out]` (scaling · Bᵀ).
 */
export interface RowEdge {
  rows: readonly number[];
  table?: tf.Tensor;
  lora?: { a: tf.Tensor; b: tf.Tensor };
}

/** What a method adds at the embedding and the head of a mixed batch (call inside a tidy). */
export interface MixedEdges {
  embedding?: RowEdge[];
  head?: RowEdge[];
}

/** What a method adds to one layer of a mixed batch (call inside a tidy). */
export interface MixedContribution {
  scales?: RowScale[];
  loras?: RowLora[];
  biases?: RowBias[];
}

export interface AdapterMethod<
  C extends BaseAdapterConfig = BaseAdapterConfig,
  A extends PeftAdapter<C> = PeftAdapter<C>,
> {
  /** `peft_type` in adapter_config.json. */
  readonly peftType: C['peft_type'];
  /** Lower-case name (`para`, `lora`, `ia3`): what a command line or a UI calls it. */
  readonly name: string;
  /** One line for help texts. */
  readonly description: string;
  /** The config defaults (PEFT key names), documented in the method's config.ts. */
  readonly defaults: Readonly<Record<string, unknown>>;
  /** Recommended optimiser settings when training this method. */
  readonly training: { readonly lr: number };
  /** The rank key of the config, if the method has one (`r`). */
  readonly rankKey: string | null;
  /** Validates a raw config (typed errors naming `file` and the key) and fills in defaults. */
  resolveConfig(raw: Readonly<Record<string, unknown>>, file: string): C;
  /** Every tensor of the adapter file for `modelConfig`, by name and shape, computed without allocating (load checks). */
  tensorSpecs(config: C, modelConfig: ModelConfig): TensorSpec[];
  /** A fresh adapter for `modelConfig` (seeded init). */
  create(modelConfig: ModelConfig, config: C, options: { seed?: number | string }): A;
  /** Whether `adapter` is one of this method's. */
  owns(adapter: PeftAdapter): adapter is A;
  /**
   * The rows' per-row tensors at `layer` of a mixed-batch prefill: `h [B, T, d]` is the layer's
   * normalised input, `promptMask [B, T]` 1 at prompt tokens, `weights` the layer's backbone
   * weights (DoRA's weight norm reads them).
   */
  mixedLayer(
    groups: readonly MixedGroup<A>[],
    layer: number,
    h: tf.Tensor,
    promptMask: tf.Tensor,
    weights?: LayerWeights,
  ): MixedContribution;
  /** The rows' part at the embedding lookup and the output head (absent: none), once per prefill. */
  mixedEdges?(groups: readonly MixedGroup<A>[]): MixedEdges;
  /** Folds the adapter into `model`'s weights; absent when the method cannot merge (say why in `mergeError`). */
  merge?(adapter: A, model: CausalLM): void;
  /** Why `merge` is impossible for this method. */
  readonly mergeError?: string;
}

const methods = new Map<string, AdapterMethod>();

/** Registers a method under its `peft_type` (a second registration of the same type is an error). */
export function registerAdapterMethod<C extends BaseAdapterConfig, A extends PeftAdapter<C>>(
  method: AdapterMethod<C, A>,
): void {
  if (methods.has(method.peftType))
    throw new ParaError(
      'INVALID_ARGUMENT',
      `adapter method ${method.peftType} is already registered`,
      { field: 'peftType' },
    );
  methods.set(method.peftType, method as unknown as AdapterMethod);
}

/** Every registered method, in registration order. */
export function adapterMethods(): AdapterMethod[] {
  return [...methods.values()];
}

/**
 * The method of a `peft_type` (`"PARA"`), or with `byName` of a lower-case name (`"para"`).
 * Unknown → UNSUPPORTED for a `peft_type`, INVALID_ARGUMENT for a name, naming the known ones
 * (and `file` / `field` when given).
 */
export function adapterMethod(
  key: string,
  where: { file?: string; field?: string; byName?: boolean } = {},
): AdapterMethod {
  const m = where.byName ? [...methods.values()].find((x) => x.name === key) : methods.get(key);
  if (m !== undefined) return m;
  throw new ParaError(
    where.byName ? 'INVALID_ARGUMENT' : 'UNSUPPORTED',
    where.byName ? `unknown adapter method ${JSON.stringify(key)}` : 'unsupported adapter type',
    {
      file: where.file,
      field: where.field ?? 'peft_type',
      expected: [...methods.values()]
        .map((x) => JSON.stringify(where.byName ? x.name : x.peftType))
        .join(', '),
      actual: JSON.stringify(key),
    },
  );
}

/** The method a raw adapter config names in `peft_type` (INVALID_CONFIG when it names none). */
export function methodOfConfig(
  raw: Readonly<Record<string, unknown>>,
  file: string,
): AdapterMethod {
  const v = raw.peft_type;
  if (typeof v !== 'string') {
    throw new ParaError(
      v === undefined ? 'INVALID_CONFIG' : 'UNSUPPORTED',
      v === undefined ? 'adapter config has no peft_type' : 'unsupported adapter type',
      {
        file,
        field: 'peft_type',
        expected: [...methods.values()].map((x) => JSON.stringify(x.peftType)).join(', '),
        actual: v === undefined ? 'nothing' : JSON.stringify(v),
      },
    );
  }
  return adapterMethod(v, { file });
}
