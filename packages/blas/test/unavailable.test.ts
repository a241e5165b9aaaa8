import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, expect, it } from 'vitest';

// This file's process loads @para/blas with the addon disabled, as where it cannot load.
let blas: typeof import('../src/index');

beforeAll(async () => {
  process.env.PARA_BLAS_DISABLE = '1';
  blas = await import('../src/index');
  await tf.setBackend('wasm');
});

afterAll(() => {
  delete process.env.PARA_BLAS_DISABLE;
});

it('loadBlas says why, installBlasKernels changes nothing, and matMul still works on stock wasm', () => {
  const s = blas.loadBlas();
  expect(s.available).toBe(false);
  expect(s.reason).toMatch(/PARA_BLAS_DISABLE/);
  const before = tf.getKernel('BatchMatMul', 'wasm');
  expect(blas.installBlasKernels()).toBe(false);
  expect(blas.blasKernelsInstalled()).toBe(false);
  expect(blas.uninstallBlasKernels()).toBe(false);
  expect(tf.getKernel('BatchMatMul', 'wasm')).toBe(before);
  const c = tf.matMul(
    tf.tensor2d([1, 2, 3, 4], [2, 2]),
    tf.tensor2d([1, 0, 0, 1], [2, 2]),
    false,
    true,
  );
  expect(Array.from(c.dataSync())).toEqual([1, 2, 3, 4]);
});

it('sgemm and heapMatMul throw a clear error', () => {
  expect(() =>
    blas.sgemm(new Float32Array(1), new Float32Array(1), new Float32Array(1), 1, 1, 1),
  ).toThrow(/unavailable.*PARA_BLAS_DISABLE/);
  expect(() =>
    blas.heapMatMul(new ArrayBuffer(64), { a: 0, b: 0, c: 16, m: 1, n: 1, k: 1 }),
  ).toThrow(/unavailable/);
});
