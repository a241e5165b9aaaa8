import { initBackend } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import { installWebGpuKernels, WEBGPU_KERNEL_NAMES } from '../src/index';

/**
 * Whether PARA_TEST_BACKENDS (default cpu,wasm,webgpu, as every package's numeric tests) lists
 * `backend`: this package's tests run on webgpu (the greedy comparison on wasm too) and skip,
 * saying so, where it is left out. A listed backend that cannot start fails the run.
 */
export function listed(backend: string): boolean {
  return (process.env.PARA_TEST_BACKENDS ?? 'cpu,wasm,webgpu')
    .split(',')
    .map((s) => s.trim())
    .includes(backend);
}

/**
 * Start the webgpu backend (Dawn in Node) and install this package's kernels from the sources
 * under test. @para/core's start-up installs the kernels of the built package (dist, another
 * module instance); those are unregistered first so that the tests exercise src.
 */
export async function useWebGpu(): Promise<void> {
  if (tf.getBackend() !== 'webgpu') await initBackend({ backend: 'webgpu' });
  expect(tf.getBackend()).toBe('webgpu');
  if (!installWebGpuKernels()) {
    for (const name of WEBGPU_KERNEL_NAMES)
      if (tf.getKernel(name, 'webgpu') !== undefined) tf.unregisterKernel(name, 'webgpu');
  }
  expect(installWebGpuKernels()).toBe(true);
}

/** Seeded uniform values in [-scale, scale). */
export function seeded(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 0x100000000) * 2 - 1) * scale;
  }
  return out;
}

/** |a − e| ≤ atol + rtol·|e| everywhere; returns the max abs error. */
export function expectNear(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  label: string,
  atol = 1e-5,
  rtol = 0,
): number {
  expect(actual.length, `${label} length`).toBe(expected.length);
  let worst = 0;
  let bad = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    const err = Math.abs(a - e);
    if (!(err <= atol + rtol * Math.abs(e))) {
      if (bad < 0) bad = i;
    }
    if (err > worst || Number.isNaN(err))
      worst = Number.isNaN(err) ? Number.POSITIVE_INFINITY : err;
  }
  if (bad >= 0) {
    expect.fail(
      `${label}: index ${bad} got ${actual[bad]}, expected ${expected[bad]} (max abs error ${worst})`,
    );
  }
  return worst;
}
