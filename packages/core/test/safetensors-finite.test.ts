/** Non-finite values in a stored tensor: found with their count and first index, refused by name. */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ArrayBufferSource,
  findNonFinite,
  readAllFinite,
  readFiniteTensor,
  SafetensorsReader,
  serializeSafetensors,
} from '../src/safetensors';
import { expectParaError, rejection } from './safetensors-helpers';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const open = async (tensors: Record<string, tf.Tensor>, name: string) =>
  SafetensorsReader.open(new ArrayBufferSource(await serializeSafetensors(tensors), name));

describe('finite tensors', () => {
  it('findNonFinite: the first bad index and how many', () => {
    expect(findNonFinite(new Float32Array([1, 2, 3]))).toBeNull();
    expect(findNonFinite(new Float32Array([1, Number.NaN, 3, Number.POSITIVE_INFINITY]))).toEqual({
      index: 1,
      count: 2,
    });
  });

  it('readAllFinite reads every tensor of a clean file; NaN is NON_FINITE naming the file and tensor, nothing leaks', async () => {
    const a = tf.tensor([1, 2, 3]);
    const b = tf.tensor([[4, 5]]);
    const ids = tf.tensor([7, 8], [2], 'int32');
    const clean = await open({ a, b, ids }, 'clean.safetensors');
    const all = await readAllFinite(clean);
    expect(Object.keys(all).sort()).toEqual(['a', 'b', 'ids']);
    expect(Array.from(await (all.b as tf.Tensor).data())).toEqual([4, 5]);
    expect((all.ids as tf.Tensor).dtype).toBe('int32');
    tf.dispose(Object.values(all));

    const bad = tf.tensor([1, Number.NaN, Number.NEGATIVE_INFINITY]);
    const damaged = await open({ a, z_bad: bad }, 'damaged.safetensors');
    const before = tf.memory().numTensors;
    const e = await rejection(readAllFinite(damaged));
    expectParaError(e, 'NON_FINITE', 'damaged.safetensors', 'z_bad');
    expect(String(e)).toContain('2 of 3');
    expect(tf.memory().numTensors).toBe(before); // `a`, read first, was disposed
    expectParaError(
      await rejection(readFiniteTensor(damaged, 'z_bad')),
      'NON_FINITE',
      'damaged.safetensors',
      'z_bad',
    );
    tf.dispose([a, b, ids, bad]);
  });
});
