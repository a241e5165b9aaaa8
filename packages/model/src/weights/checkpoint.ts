/**
 * Reading a Hugging Face checkpoint directory: `config.json` plus `model.safetensors` (or
 * `model.safetensors.index.json` and its shards), F32/F16/BF16, through `@para/core`'s
 * `CheckpointAccess` so the same code reads files in Node and URLs in a browser.
 */

import {
  type CheckpointAccess,
  isFloatDtype,
  MAX_HEADER_BYTES,
  openSafetensorsCheckpoint,
  ParaError,
  readFiniteTensor,
  readWhole,
  type TensorStore,
} from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import { type ModelConfig, parseHfConfig } from '../config';
import {
  checkpointTensorSpecs,
  fromCheckpointTensors,
  type ModelWeights,
  weightsFromNamed,
} from './weights';

/** Reads and parses `config.json` from a checkpoint location. */
export async function readConfig(
  access: CheckpointAccess,
  fileName = 'config.json',
): Promise<ModelConfig> {
  if (!(await access.exists(fileName))) {
    throw new ParaError('FILE_NOT_FOUND', 'no config.json in the model directory', {
      file: access.location,
      field: fileName,
      expected: 'a Hugging Face checkpoint directory (config.json + model.safetensors)',
    });
  }
  const src = await access.open(fileName);
  let bytes: Uint8Array;
  try {
    bytes = await readWhole(src, MAX_HEADER_BYTES);
  } finally {
    await src.close?.();
  }
  return parseHfConfig(new TextDecoder().decode(bytes), src.name);
}

/** Tensors a checkpoint may hold beyond the weights, which loading ignores. */
function ignorable(name: string, config: ModelConfig): boolean {
  // Older checkpoints store RoPE's buffer; tied checkpoints sometimes store the head anyway.
  return (
    name.endsWith('.rotary_emb.inv_freq') || (config.tieWordEmbeddings && name === 'lm_head.weight')
  );
}

function listed(items: string[], limit = 12): string {
  return items.length <= limit
    ? items.join(', ')
    : `${items.slice(0, limit).join(', ')} and ${items.length - limit} more`;
}

/**
 * Checks a store against a config: every expected tensor present with its shape and a float
 * dtype, nothing unexpected. All problems go into ONE error (`TENSOR_NOT_FOUND` when something
 * is missing, else `SHAPE_MISMATCH`) listing missing, unexpected and mis-shaped tensors.
 */
export async function validateCheckpoint(store: TensorStore, config: ModelConfig): Promise<void> {
  // The header bounds the work: a config that implies far more tensors than the file holds (say
  // num_hidden_layers: 1e9) is refused from a one-layer count, before listing every layer's
  // tensors. A small difference falls through to the one error below that lists them.
  const base = checkpointTensorSpecs({ ...config, numLayers: 0 }).length;
  const implied =
    base + (checkpointTensorSpecs({ ...config, numLayers: 1 }).length - base) * config.numLayers;
  const held = store.names().length;
  if (implied > held + 4096) {
    throw new ParaError(
      'TENSOR_NOT_FOUND',
      `config.json implies ${implied.toLocaleString('en-US')} tensors (${config.numLayers.toLocaleString('en-US')} layers) but the weights hold ${held}`,
      {
        file: store.name,
        field: 'num_hidden_layers',
        expected: `a config for the ${held} tensors of the weights file`,
        actual: String(config.numLayers),
      },
    );
  }
  const specs = checkpointTensorSpecs(config);
  const expected = new Set(specs.map((s) => s.name));
  const missing = specs.filter((s) => !store.has(s.name)).map((s) => s.name);
  const unexpected = store.names().filter((n) => !expected.has(n) && !ignorable(n, config));
  const present = specs.filter((s) => store.has(s.name));
  const infos = await Promise.all(present.map((s) => store.info(s.name)));
  const misShaped: string[] = [];
  present.forEach((s, i) => {
    const info = infos[i];
    if (info === undefined) return;
    const same =
      info.shape.length === s.shape.length && info.shape.every((d, j) => d === s.shape[j]);
    if (!same)
      misShaped.push(`${s.name} [${info.shape.join(', ')}] (expected [${s.shape.join(', ')}])`);
    else if (!isFloatDtype(info.dtype))
      misShaped.push(`${s.name} dtype ${info.dtype} (expected F32, F16 or BF16)`);
  });
  if (missing.length === 0 && unexpected.length === 0 && misShaped.length === 0) return;
  const parts: string[] = [];
  if (missing.length > 0) parts.push(`missing ${missing.length}: ${listed(missing)}`);
  if (unexpected.length > 0) parts.push(`unexpected ${unexpected.length}: ${listed(unexpected)}`);
  if (misShaped.length > 0) parts.push(`mis-shaped ${misShaped.length}: ${listed(misShaped)}`);
  throw new ParaError(
    missing.length > 0 ? 'TENSOR_NOT_FOUND' : 'SHAPE_MISMATCH',
    `checkpoint does not match the config (${config.modelType}, ${config.numLayers} layers, d=${config.hiddenSize}): ${parts.join('; ')}`,
    {
      file: store.name,
      field: listed(
        [...missing, ...unexpected, ...misShaped.map((s) => s.split(' ')[0] as string)],
        3,
      ),
      expected: `the ${specs.length} tensors of config.json's architecture`,
    },
  );
}

/** Validates, then reads every weight as float32. On failure nothing is left allocated. */
export async function loadWeights(store: TensorStore, config: ModelConfig): Promise<ModelWeights> {
  await validateCheckpoint(store, config);
  const named: Record<string, tf.Tensor> = {};
  try {
    for (const s of checkpointTensorSpecs(config))
      named[s.name] = await readFiniteTensor(store, s.name);
  } catch (e) {
    tf.dispose(Object.values(named));
    throw e;
  }
  return weightsFromNamed(config, fromCheckpointTensors(config, named));
}

/** Config and weights of a checkpoint directory reached through `access`. */
export async function loadCheckpoint(
  access: CheckpointAccess,
): Promise<{ config: ModelConfig; weights: ModelWeights }> {
  const config = await readConfig(access);
  const store = await openSafetensorsCheckpoint(access);
  try {
    return { config, weights: await loadWeights(store, config) };
  } finally {
    await store.close();
  }
}
