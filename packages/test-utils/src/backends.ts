/** Backend helpers for the numeric tests of @para/model and @para/adapters (shared here, not copied). */

import { type BackendName, initBackend, parseBackendName } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';

/**
 * Backends the numeric tests run on: PARA_TEST_BACKENDS (comma-separated), by default cpu, wasm
 * and webgpu (Dawn in Node). A listed backend that cannot start fails the run rather than being
 * skipped.
 */
export function testBackends(): BackendName[] {
  const raw = process.env.PARA_TEST_BACKENDS ?? 'cpu,wasm,webgpu';
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => parseBackendName(s, 'PARA_TEST_BACKENDS'));
}

/**
 * Switch the engine to `name` (starting it on first use) and check that it is active. When both
 * webgpu and tensorflow are listed, tensorflow is started before webgpu's first start: TensorFlow
 * cannot load once webgpu has brought Mesa's LLVM into the process (see @para/core/node).
 */
export async function useBackend(name: BackendName): Promise<void> {
  if (
    name === 'webgpu' &&
    tf.findBackend('webgpu') === null &&
    tf.findBackend('tensorflow') === null &&
    testBackends().includes('tensorflow')
  )
    await initBackend({ backend: 'tensorflow' });
  if (tf.getBackend() !== name) await initBackend({ backend: name });
  expect(tf.getBackend()).toBe(name);
}

/** Read a tensor's values (async: WebGPU in Node cannot `dataSync`). */
export async function values(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

/** Read and dispose. */
export async function take(t: tf.Tensor): Promise<Float32Array> {
  const out = (await t.data()) as Float32Array;
  t.dispose();
  return out;
}

/** Max |a - b| over the entries where `use(i)` holds. */
export function maxAbsDiff(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  use: (i: number) => boolean = () => true,
): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (!use(i)) continue;
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return m;
}

/** Assert |actual - expected| ≤ atol + rtol·|expected| elementwise, reporting the worst index. */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol = 1e-5,
  rtol = 0,
  label = '',
): void {
  expect(actual.length, `${label} length`).toBe(expected.length);
  let worst = -1;
  let worstExcess = 0;
  let maxErr = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    const err = Math.abs(a - e);
    if (!(err <= atol + rtol * Math.abs(e))) {
      const excess = Number.isNaN(err)
        ? Number.POSITIVE_INFINITY
        : err - (atol + rtol * Math.abs(e));
      if (worst < 0 || excess > worstExcess) {
        worst = i;
        worstExcess = excess;
      }
    }
    if (err > maxErr) maxErr = err;
  }
  if (worst >= 0) {
    expect.fail(
      `${label} index ${worst}: got ${actual[worst]}, expected ${expected[worst]} (max abs error ${maxErr}, atol ${atol}, rtol ${rtol})`,
    );
  }
}

/** The error `fn` throws (sync or async), or undefined. */
export async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  return undefined;
}
