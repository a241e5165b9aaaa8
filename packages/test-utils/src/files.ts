/** Node test helpers that damage files on purpose (hostile-input tests). */
import { openSafetensorsFile, writeSafetensorsFile } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';

/**
 * Rewrites one tensor of a safetensors file with `value` at flat index `index` (NaN, ±Inf, or a
 * huge finite number); `name` picks the tensor by name or by a predicate on the sorted names.
 * Returns the tensor's name.
 */
export async function poisonSafetensors(
  file: string,
  name: string | ((n: string) => boolean),
  value: number,
  index = 0,
): Promise<string> {
  const r = await openSafetensorsFile(file);
  const all = await r.readAll();
  await r.close();
  const picked = typeof name === 'string' ? name : Object.keys(all).sort().find(name);
  if (picked === undefined || all[picked] === undefined) {
    tf.dispose(Object.values(all));
    throw new Error(`${file}: no tensor to poison (${String(name)})`);
  }
  const t = all[picked];
  const values = (await t.data()) as Float32Array;
  values[index] = value;
  all[picked] = tf.tensor(values, t.shape);
  t.dispose();
  await writeSafetensorsFile(file, all);
  tf.dispose(Object.values(all));
  return picked;
}
