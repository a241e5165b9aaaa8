import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import '../src/backend/gradients';
import { selectBackendFrom } from '../src/backend/select';
import { nodeBackendCandidates, openblasCoretypeWarning } from '../src/node/backends';
import { Rng } from '../src/rng';
import { testBackends, useBackend, values } from './helpers/backends';

describe('Node backend order', () => {
  it('reports the active backend and why the others are not', async () => {
    const report = await selectBackendFrom('node', nodeBackendCandidates(), {});
    expect(report.platform).toBe('node');
    expect(tf.getBackend()).toBe(report.active);
    const names = report.backends.map((b) => b.name);
    expect(names).toEqual(['tensorflow', 'wasm', 'cpu', 'webgpu']);
    const tensorflow = report.backends[0];
    if (report.active !== 'tensorflow') {
      // Where tfjs-node(-gpu) is missing or its native library fails, the reason says which.
      expect(tensorflow?.state).toBe('unavailable');
      expect(tensorflow?.reason).toMatch(/tfjs-node-gpu/);
      expect(report.active).toBe('wasm');
    }
    expect(report.backends.find((b) => b.name === 'webgpu')?.onRequestOnly).toBe(true);
  });
});

describe('OPENBLAS_CORETYPE', () => {
  const cpuinfo = (flags: string) => `processor\t: 0\nflags\t\t: ${flags}\nbugs\t\t: none\n`;
  it('warns when it pins OpenBLAS below the CPU (AVX2 kernels on an AVX-512 CPU), and only then', () => {
    const avx512 = cpuinfo('fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl');
    expect(openblasCoretypeWarning({ OPENBLAS_CORETYPE: 'Haswell' }, avx512)).toMatch(
      /OPENBLAS_CORETYPE=Haswell .*AVX-512.*unset it/,
    );
    expect(openblasCoretypeWarning({ OPENBLAS_CORETYPE: 'SkylakeX' }, avx512)).toBeUndefined();
    expect(openblasCoretypeWarning({ OPENBLAS_CORETYPE: 'cooperlake' }, avx512)).toBeUndefined();
    expect(openblasCoretypeWarning({}, avx512)).toBeUndefined();
    expect(openblasCoretypeWarning({ OPENBLAS_CORETYPE: '' }, avx512)).toBeUndefined();
    expect(
      openblasCoretypeWarning({ OPENBLAS_CORETYPE: 'Haswell' }, cpuinfo('avx avx2 fma')),
    ).toBeUndefined();
    expect(
      openblasCoretypeWarning({ OPENBLAS_CORETYPE: 'Haswell' }, 'no flags line'),
    ).toBeUndefined();
  });
});

/** f(x) = Σ softplus(x ⊙ w) · x, a smooth function whose gradient exercises several kernels. */
function f(x: tf.Tensor, w: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.sum(tf.mul(tf.softplus(tf.mul(x, w)), x)));
}

for (const backend of testBackends()) {
  describe(`gradients on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    it('starts', () => {
      expect(tf.getBackend()).toBe(backend);
    });

    it('tf.grad matches central finite differences', async () => {
      const rng = new Rng(7);
      const x = rng.normalTensor([6]); // [6]
      const w = rng.normalTensor([6]); // [6]
      const g = tf.grad((t: tf.Tensor) => f(t, w))(x);
      const analytic = await values(g);
      const xs = await values(x);
      const eps = 1e-2;
      for (let i = 0; i < xs.length; i++) {
        const plus = xs.slice();
        const minus = xs.slice();
        plus[i] = (plus[i] as number) + eps;
        minus[i] = (minus[i] as number) - eps;
        const fp = (await values(f(tf.tensor(plus), w)))[0] as number;
        const fm = (await values(f(tf.tensor(minus), w)))[0] as number;
        expect(analytic[i]).toBeCloseTo((fp - fm) / (2 * eps), 2);
      }
      tf.dispose([x, w, g]);
    });

    it('gather (embedding lookup) has a gradient equal to the cpu backend', async () => {
      const rng = new Rng(3);
      const tableValues = rng.normalArray(5 * 4); // [vocab=5, d=4]
      const upValues = rng.normalArray(2 * 3 * 4); // [B=2, T=3, d=4] upstream weights
      const ids = [
        [0, 2, 2],
        [4, 0, 1],
      ]; // [B, T]
      const gatherGrad = async () => {
        const table = tf.tensor2d(tableValues, [5, 4]);
        const idx = tf.tensor2d(ids, [2, 3], 'int32');
        const up = tf.tensor3d(upValues, [2, 3, 4]);
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, idx), up)))(table);
        const out = await values(g);
        tf.dispose([table, idx, up, g]);
        return out;
      };
      const here = await gatherGrad();
      await useBackend('cpu');
      const onCpu = await gatherGrad();
      await useBackend(backend);
      expect(here.length).toBe(20);
      for (let i = 0; i < here.length; i++) expect(here[i]).toBeCloseTo(onCpu[i] as number, 5);
      // Row 3 is never looked up: its gradient is exactly zero; row 2 is looked up twice.
      expect(here.slice(12, 16)).toEqual([0, 0, 0, 0]);
      const row2 = here.slice(8, 12);
      for (let j = 0; j < 4; j++)
        expect(row2[j]).toBeCloseTo((upValues[4 + j] as number) + (upValues[8 + j] as number), 5);
    });

    it('chained ops are registered', () => {
      const t = tf.tensor([1, 2, 3, 4]);
      expect((t as unknown as { reshape(s: number[]): tf.Tensor }).reshape([2, 2]).shape).toEqual([
        2, 2,
      ]);
      t.dispose();
    });
  });
}
