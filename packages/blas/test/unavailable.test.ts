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

it('no fused kernels are registered; @para/ops runs its generic path (same values)', async () => {
  expect(blas.installFusedKernels()).toBe(false);
  expect(blas.fusedKernelsProblem()).toMatch(/unavailable/);
  expect(blas.fusedThreads()).toBeUndefined();
  for (const name of blas.FUSED_KERNEL_NAMES) expect(tf.getKernel(name, 'wasm')).toBeUndefined();
  const { rmsNorm, swiglu } = await import('../../ops/src/index');
  const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
  const w = tf.tensor1d([1, 0.5, 2]);
  const info = await tf.profile(() => [rmsNorm(x, w, 0), swiglu(x, x)]);
  expect(info.kernelNames.filter((k) => k.startsWith('Para'))).toEqual([]);
  const [y, s] = info.result as tf.Tensor[];
  const inv = [1 / Math.sqrt(14 / 3), 1 / Math.sqrt(77 / 3)];
  const expected = [1, 2, 3, 4, 5, 6].map(
    (v, i) => v * (inv[Math.floor(i / 3)] as number) * ([1, 0.5, 2][i % 3] as number),
  );
  const got = (y as tf.Tensor).dataSync();
  for (let i = 0; i < 6; i++) expect(got[i]).toBeCloseTo(expected[i] as number, 5);
  expect((s as tf.Tensor).dataSync()[0]).toBeCloseTo(1 / (1 + Math.exp(-1)), 5);
  tf.dispose([x, w, y as tf.Tensor, s as tf.Tensor]);
});
