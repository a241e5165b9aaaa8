/**
 * The numeric-test helpers of @para/ops and @para/train: @para/test-utils/backends with the
 * conventions their tests were written for — `values`/`take` give plain number arrays, and
 * `expectClose` has a relative tolerance of 1e-5 by default (the shared default is absolute only).
 */
import type * as tf from '@tensorflow/tfjs-core';
import { expectClose as expectCloseShared } from './backends';

export { testBackends, useBackend } from './backends';

/** Read a tensor's values (async: WebGPU in Node cannot `dataSync`). */
export async function values(t: tf.Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

/** Read and dispose. */
export async function take(t: tf.Tensor): Promise<number[]> {
  const out = await values(t);
  t.dispose();
  return out;
}

/** Assert |actual - expected| ≤ atol + rtol·|expected| elementwise, reporting the worst index. */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol = 1e-5,
  rtol = 1e-5,
  label = '',
): void {
  expectCloseShared(actual, expected, atol, rtol, label);
}
