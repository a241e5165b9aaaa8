/**
 * NaN / ±Inf in stored weights. The safetensors reader returns values as stored (the format
 * allows any float); loaders of model weights, adapters and trainer state, where a non-finite
 * value can only mean a damaged or diverged file, read through {@link readFiniteTensor} so the
 * failure names the file and tensor at load instead of surfacing as NaN logits later.
 */

import * as tf from '@tensorflow/tfjs-core';
import { ParaError } from '../errors';
import { isFloatDtype } from './dtypes';
import type { TensorStore } from './types';

/** Index of the first NaN / ±Inf in `data`, and how many there are; null when all are finite. */
export function findNonFinite(data: ArrayLike<number>): { index: number; count: number } | null {
  let index = -1;
  let count = 0;
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    // x - x is 0 for every finite x and NaN for NaN and ±Inf.
    if (x - x !== 0) {
      if (index < 0) index = i;
      count++;
    }
  }
  return index < 0 ? null : { index, count };
}

/** Throws NON_FINITE naming `file` and tensor `name` when `data` holds NaN or ±Inf. */
export function requireFinite(data: ArrayLike<number>, name: string, file: string): void {
  const bad = findNonFinite(data);
  if (bad === null) return;
  const v = data[bad.index]!;
  throw new ParaError('NON_FINITE', 'the tensor holds NaN or infinite values', {
    file,
    field: name,
    expected: 'finite numbers (the file is damaged, or was saved from a diverged run)',
    actual: `${bad.count} of ${data.length} values non-finite, the first ${Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity'} at flat index ${bad.index}`,
  });
}

/** `store.readTensor(name)`, refusing NaN / ±Inf values with NON_FINITE (see {@link requireFinite}). */
export async function readFiniteTensor(store: TensorStore, name: string): Promise<tf.Tensor> {
  const { dtype, shape, data } = await store.readData(name);
  if (isFloatDtype(dtype)) requireFinite(data, name, store.name);
  return tf.tensor(data, shape, isFloatDtype(dtype) ? 'float32' : 'int32');
}

/**
 * Every tensor of `store` (in `names()` order) through {@link readFiniteTensor}; on failure the
 * tensors read so far are disposed and the error (NON_FINITE naming the tensor, or the read's
 * own) is thrown.
 */
export async function readAllFinite(store: TensorStore): Promise<tf.NamedTensorMap> {
  const read: [string, tf.Tensor][] = [];
  try {
    for (const name of store.names()) read.push([name, await readFiniteTensor(store, name)]);
  } catch (e) {
    tf.dispose(read.map(([, t]) => t));
    throw e;
  }
  return Object.fromEntries(read); // not `out[name] =`: a tensor may be named "__proto__"
}
