/**
 * Adapter files in PEFT's layout (universal: bytes in, bytes out; `@para/adapters/node` adds
 * directories on disk):
 *
 *   adapter_config.json        peft_type (PARA | LORA | IA3), the method's keys, target_modules,
 *                              base_model_name_or_path
 *   adapter_model.safetensors  tensors by PEFT name, `{"format": "pt"}` metadata
 *
 * LoRA and IA3 use PEFT's names and shapes exactly, so adapters saved by Python PEFT
 * (`save_pretrained`) load here and ours load there:
 *   base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight  [r, in]
 *   base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight  [out, r]
 *   base_model.model.model.layers.{i}.self_attn.k_proj.ia3_l          [out, 1]
 *   base_model.model.model.layers.{i}.mlp.down_proj.ia3_l             [1, in]   (feed-forward)
 * PARA (no PEFT upstream) follows the same scheme:
 *   base_model.model.model.layers.{i}.para.down.weight [r, d], para.down.bias [r],
 *   para.up.weight [d_q + d_v + d_ff, r] (row blocks in target_modules order), para.up.bias,
 *   para.pool.weight [1, d] (attention pooler).
 */

import {
  ArrayBufferSource,
  type CheckpointAccess,
  type FloatStorageDtype,
  MAX_HEADER_BYTES,
  ParaError,
  readFiniteTensor,
  readWhole,
  SafetensorsReader,
  serializeSafetensors,
  type TensorStore,
} from '@para/core';
import type { CausalLM, ModelConfig, TensorSpec } from '@para/model';
import type * as tf from '@tensorflow/tfjs-core';
import { type AnyAdapter, createAdapter } from '../any';
import { parseConfigJson } from '../base/config';
import { methodOfConfig } from '../methods';
import { checkConfigStamp } from './stamp';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

export interface SaveAdapterOptions {
  /** Storage dtype (default F32). */
  dtype?: FloatStorageDtype;
  /** Written as base_model_name_or_path (default: the adapter config's). */
  baseModelName?: string | null;
}

export interface AdapterFiles {
  /** adapter_config.json text. */
  configJson: string;
  /** Tensors by PEFT name (the adapter's live variables: do not dispose). */
  tensors: Record<string, tf.Tensor>;
  metadata: Record<string, string>;
  dtype: FloatStorageDtype;
}

export interface LoadAdapterOptions {
  /**
   * When given, an adapter whose config names another base model is an INVALID_CONFIG error
   * (compared by the last path segment, so a hub id and a local copy match).
   */
  baseModelName?: string;
  /**
   * What a base-model mismatch (see `baseModelName`) does: `'error'` (default) throws
   * INVALID_CONFIG; `'warn'` passes the message to `warn` and loads the adapter anyway (the CLI:
   * a user may have renamed or copied the backbone, but should hear about it).
   */
  baseModelMismatch?: 'error' | 'warn';
  /** Receives warnings (default: `console.warn`). */
  warn?: (message: string) => void;
  /** Seed for the throwaway init before the file's values are assigned (irrelevant to results). */
  seed?: number;
}

/** What to write for `adapter`. */
export function adapterFiles(adapter: AnyAdapter, options: SaveAdapterOptions = {}): AdapterFiles {
  const config = adapter.toConfigJson();
  if (options.baseModelName !== undefined) config.base_model_name_or_path = options.baseModelName;
  return {
    configJson: `${JSON.stringify(config, null, 2)}\n`,
    tensors: adapter.stateDict(),
    metadata: { format: 'pt' },
    dtype: options.dtype ?? 'F32',
  };
}

/** The two files as bytes (for a browser download, or any store). */
export async function serializeAdapter(
  adapter: AnyAdapter,
  options: SaveAdapterOptions = {},
): Promise<{ config: string; weights: Uint8Array }> {
  const f = adapterFiles(adapter, options);
  return {
    config: f.configJson,
    weights: await serializeSafetensors(f.tensors, { metadata: f.metadata, dtype: f.dtype }),
  };
}

/**
 * A new adapter (fresh init) from adapter_config.json's text or value, for `modelConfig`.
 * Unknown or unsupported settings → typed errors naming the key and the file.
 */
export function adapterFromConfig(
  json: string | unknown,
  modelConfig: ModelConfig,
  file = ADAPTER_CONFIG_FILE,
  seed = 0,
): AnyAdapter {
  return createAdapter(modelConfig, parseConfigJson(json, file), { seed, file });
}

function shapeText(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/**
 * Checks a tensor store's names and shapes (header only, nothing read) against what `adapter`
 * needs on its model: a missing tensor → TENSOR_NOT_FOUND; a wrong shape, a tensor for a layer
 * the model lacks or any other unexpected tensor → SHAPE_MISMATCH; each names the tensor (and
 * both shapes).
 */
export async function checkAdapterTensors(adapter: AnyAdapter, store: TensorStore): Promise<void> {
  await checkTensorSpecs(adapter.tensorSpecs(), adapter.peftType, adapter.modelConfig, store);
}

/** `checkAdapterTensors` from the specs a config implies (before any adapter is allocated). */
async function checkTensorSpecs(
  specs: readonly TensorSpec[],
  peftType: string,
  modelConfig: ModelConfig,
  store: TensorStore,
): Promise<void> {
  const adapter = { peftType, modelConfig };
  const expected = new Set(specs.map((s) => s.name));
  for (const s of specs) {
    if (!store.has(s.name)) {
      if ((s as { optional?: boolean }).optional === true) continue; // e.g. PEFT's saved base layers
      throw new ParaError('TENSOR_NOT_FOUND', `the ${adapter.peftType} config needs this tensor`, {
        file: store.name,
        field: s.name,
        expected: `a tensor ${shapeText(s.shape)}`,
        actual: 'no such tensor in the file',
      });
    }
    const info = await store.info(s.name);
    if (info.shape.length !== s.shape.length || info.shape.some((d, i) => d !== s.shape[i])) {
      throw new ParaError(
        'SHAPE_MISMATCH',
        'adapter tensor does not fit the model (a different base model?)',
        {
          file: store.name,
          field: s.name,
          expected: `${shapeText(s.shape)} for the model (d=${adapter.modelConfig.hiddenSize}, d_ff=${adapter.modelConfig.intermediateSize}, ${adapter.modelConfig.numLayers} layers)`,
          actual: `${shapeText(info.shape)} in the file`,
        },
      );
    }
    if (!['F32', 'F16', 'BF16'].includes(info.dtype)) {
      throw new ParaError('UNKNOWN_DTYPE', 'adapter tensors must be floating point', {
        file: store.name,
        field: s.name,
        expected: 'F32, F16 or BF16',
        actual: info.dtype,
      });
    }
  }
  const extra = store.names().filter((n) => !expected.has(n));
  if (extra.length > 0) {
    const name = extra[0] as string;
    const layer = /\.layers\.(\d+)\./.exec(name)?.[1];
    const info = await store.info(name);
    throw new ParaError(
      'SHAPE_MISMATCH',
      layer !== undefined && Number(layer) >= adapter.modelConfig.numLayers
        ? `the adapter has tensors for layer ${layer} but the model has ${adapter.modelConfig.numLayers} layers (a different base model?)`
        : `unexpected tensor for this ${adapter.peftType} config (${extra.length} in all)`,
      {
        file: store.name,
        field: name,
        expected: `only the ${specs.length} tensors the config implies`,
        actual: `${shapeText(info.shape)} in the file`,
      },
    );
  }
}

/** Reads every tensor of `store` into `adapter` (checked first; on failure nothing is assigned). */
export async function loadAdapterTensors(adapter: AnyAdapter, store: TensorStore): Promise<void> {
  await checkAdapterTensors(adapter, store);
  const read: Record<string, tf.Tensor> = {};
  try {
    for (const { name } of adapter.tensorSpecs())
      if (store.has(name)) read[name] = await readFiniteTensor(store, name); // optional ones may be absent
    adapter.loadStateDict(read, store.name);
  } finally {
    for (const t of Object.values(read)) t.dispose();
  }
}

/** Checks the adapter config's base model name against `expected` (last path segments compared). */
export function checkBaseModel(
  adapter: AnyAdapter,
  expected: string | undefined,
  file: string,
): void {
  checkBaseModelName(adapter.config.base_model_name_or_path, expected, file);
}

function checkBaseModelName(
  name: string | null,
  expected: string | undefined,
  file: string,
  options: LoadAdapterOptions = {},
): void {
  if (expected === undefined || name === null || name === '') return;
  const tail = (s: string) =>
    s
      .replace(/[\\/]+$/, '')
      .split(/[\\/]/)
      .pop() ?? s;
  if (tail(name) !== tail(expected)) {
    const e = new ParaError('INVALID_CONFIG', 'the adapter was made for another base model', {
      file,
      field: 'base_model_name_or_path',
      expected: JSON.stringify(expected),
      actual: JSON.stringify(name),
    });
    if (options.baseModelMismatch !== 'warn') throw e;
    (options.warn ?? ((m: string) => console.warn(m)))(
      `${e.message}; loading it anyway: its shapes fit this model, but it was trained on another`,
    );
  }
}

/**
 * Loads an adapter directory reached through `access` (files on disk in Node, URLs in a browser)
 * for `model`. Errors: FILE_NOT_FOUND (no adapter_config.json / adapter_model.safetensors),
 * INVALID_JSON / INVALID_CONFIG / UNSUPPORTED (the config), TENSOR_NOT_FOUND / SHAPE_MISMATCH
 * (tensors vs the model), each naming the file and the field or tensor.
 */
export async function loadAdapterFrom(
  access: CheckpointAccess,
  model: CausalLM | ModelConfig,
  options: LoadAdapterOptions = {},
): Promise<AnyAdapter> {
  const modelConfig = 'config' in model ? model.config : model;
  for (const f of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]) {
    if (!(await access.exists(f))) {
      const bin = f === ADAPTER_WEIGHTS_FILE && (await access.exists('adapter_model.bin'));
      throw new ParaError(
        'FILE_NOT_FOUND',
        bin
          ? 'only adapter_model.bin (pickle) found: save the adapter with safetensors'
          : `no ${f} in the adapter directory`,
        {
          file: access.location,
          field: f,
          expected: `an adapter directory (${ADAPTER_CONFIG_FILE} + ${ADAPTER_WEIGHTS_FILE})`,
        },
      );
    }
  }
  const src = await access.open(ADAPTER_CONFIG_FILE);
  let text: string;
  try {
    text = new TextDecoder().decode(await readWhole(src, MAX_HEADER_BYTES));
  } finally {
    await src.close?.();
  }
  const store = await SafetensorsReader.open(await access.open(ADAPTER_WEIGHTS_FILE));
  try {
    const adapter = await loadChecked(text, src.name, store, modelConfig, options);
    if ('config' in model) await adapter.prepareFor(model);
    return adapter;
  } finally {
    await store.close();
  }
}

/**
 * The config, then the file's header against the shapes the config implies, and only then the
 * adapter's allocation and its tensors: a config whose `r` (or any size) disagrees with the
 * weights file is refused before anything is allocated.
 */
async function loadChecked(
  configText: string,
  configFile: string,
  store: TensorStore,
  modelConfig: ModelConfig,
  options: LoadAdapterOptions,
): Promise<AnyAdapter> {
  const raw = parseConfigJson(configText, configFile);
  const method = methodOfConfig(raw, configFile);
  const config = method.resolveConfig(raw, configFile);
  checkBaseModelName(config.base_model_name_or_path, options.baseModelName, configFile, options);
  await checkTensorSpecs(
    method.tensorSpecs(config, modelConfig),
    method.peftType,
    modelConfig,
    store,
  );
  // Weights saved with another config (an interrupted save, an edited config) are refused.
  checkConfigStamp(
    raw,
    configFile,
    (store as { metadata?: Record<string, string> }).metadata,
    store.name,
  );
  const adapter = method.create(modelConfig, config, { seed: options.seed ?? 0 });
  try {
    await loadAdapterTensors(adapter, store);
    return adapter;
  } catch (e) {
    adapter.dispose();
    throw e;
  }
}

/** Loads an adapter from the two files' contents (e.g. a browser upload). */
export async function adapterFromBytes(
  config: string,
  weights: ArrayBuffer | ArrayBufferView,
  model: CausalLM | ModelConfig,
  options: LoadAdapterOptions & { name?: string } = {},
): Promise<AnyAdapter> {
  const modelConfig = 'config' in model ? model.config : model;
  const name = options.name ?? '<memory>';
  const store = await SafetensorsReader.open(
    new ArrayBufferSource(weights, `${name}/${ADAPTER_WEIGHTS_FILE}`),
  );
  const adapter = await loadChecked(
    config,
    `${name}/${ADAPTER_CONFIG_FILE}`,
    store,
    modelConfig,
    options,
  );
  if ('config' in model) await adapter.prepareFor(model);
  return adapter;
}
