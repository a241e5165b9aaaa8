import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { expect } from 'vitest';
import { loadBlas } from '../src/index';
import { installBlasKernels, uninstallBlasKernels } from '../src/kernels';

/** The addon's status here. */
export const status = loadBlas();

/**
 * With PARA_BLAS_REQUIRED=1 (set by CI, which installs OpenBLAS and must prove the addon works)
 * a missing addon fails the run; without it — a fresh clone on a machine without OpenBLAS — the
 * tests that need the addon are skipped, saying why.
 */
export const optional = process.env.PARA_BLAS_REQUIRED !== '1';

export function expectAddonLoaded(): void {
  if (!optional) expect(status.available, `@para/blas did not load: ${status.reason}`).toBe(true);
  else if (!status.available)
    console.warn(
      `@para/blas tests skipped: ${status.reason} (PARA_BLAS_REQUIRED=1 makes this an error)`,
    );
}

/** Deterministic values in [-1, 1). */
export function seeded(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

export interface Input {
  shape: number[];
  data: Float32Array;
  dtype?: 'float32' | 'int32';
}

export function input(shape: number[], seed: number): Input {
  return {
    shape,
    data: seeded(
      shape.reduce((a, b) => a * b, 1),
      seed,
    ),
  };
}

export interface Result {
  shape: number[];
  values: Float32Array;
}

/** Run `fn` on `backend` with fresh tensors made from `inputs`; disposes everything it made. */
export async function runOn(
  backend: 'wasm' | 'cpu',
  inputs: Input[],
  fn: (...t: tf.Tensor[]) => tf.Tensor,
): Promise<Result> {
  await tf.setBackend(backend);
  const ts = inputs.map((i) =>
    tf.tensor(
      i.dtype === 'int32' ? Int32Array.from(i.data, Math.round) : i.data,
      i.shape,
      i.dtype ?? 'float32',
    ),
  );
  try {
    const out = tf.tidy(() => fn(...ts));
    const values = Float32Array.from(await out.data());
    const shape = out.shape.slice();
    out.dispose();
    return { shape, values };
  } finally {
    tf.dispose(ts);
    await tf.setBackend('wasm');
  }
}

/** The same on wasm with the kernels that were registered before ours. */
export async function runOnOriginal(
  inputs: Input[],
  fn: (...t: tf.Tensor[]) => tf.Tensor,
): Promise<Result> {
  const was = uninstallBlasKernels();
  try {
    return await runOn('wasm', inputs, fn);
  } finally {
    if (was) installBlasKernels();
  }
}

/**
 * Float32 rounding for sums of `terms` products of values in [-1, 1] (plus a bias): a
 * worst-case-style bound, far below any real error.
 */
export function tolerance(terms: number): number {
  return 2 ** -20 * (terms + 2);
}

export function expectClose(actual: Result, expected: Result, terms: number, label = ''): void {
  expect(actual.shape, `${label} shape`).toEqual(expected.shape);
  expect(actual.values.length).toBe(expected.values.length);
  const tol = tolerance(terms);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < actual.values.length; i++) {
    const a = actual.values[i] as number;
    const e = expected.values[i] as number;
    if (Number.isNaN(a) !== Number.isNaN(e)) {
      worst = Number.POSITIVE_INFINITY;
      at = i;
      break;
    }
    const d = Math.abs(a - e) / Math.max(1, Math.abs(e));
    if (d > worst) {
      worst = d;
      at = i;
    }
  }
  expect(
    worst,
    `${label}: worst difference ${worst} at ${at} (${actual.values[at]} vs ${expected.values[at]}), tolerance ${tol}`,
  ).toBeLessThanOrEqual(tol);
}

/** |a − e| ≤ atol + rtol·|e| everywhere (NaN only where NaN is expected). */
export function expectNear(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  label: string,
) {
  expect(actual.length, `${label} length`).toBe(expected.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] as number;
    const e = expected[i] as number;
    if (Number.isNaN(e) || Number.isNaN(a)) {
      if (Number.isNaN(e) !== Number.isNaN(a)) {
        worst = Number.POSITIVE_INFINITY;
        at = i;
        break;
      }
      continue;
    }
    if (a === e) continue; // also ±Infinity
    const d = Math.abs(a - e) / (1 + Math.abs(e));
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  expect(
    worst,
    `${label}: worst ${worst} at ${at} (${actual[at]} vs ${expected[at]}), tolerance ${tol}`,
  ).toBeLessThanOrEqual(tol);
}

/** Whether this CPU has every one of `flags` (Linux's /proc/cpuinfo; false elsewhere). */
export function cpuHas(...flags: string[]): boolean {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '';
    const have = new Set(line.trim().split(/\s+/));
    return flags.every((f) => have.has(f));
  } catch {
    return false;
  }
}
