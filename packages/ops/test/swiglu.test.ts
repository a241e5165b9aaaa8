import { isParaError, Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { linear, swiglu } from '../src';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { dot, numericGrad, refSwiglu } from './helpers/reference';

/** y[n, o] = Σ_i x[n, i] · W[o, i] + b[o]. */
function refLinear(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number> | null,
  N: number,
  I: number,
  O: number,
): Float64Array {
  const y = new Float64Array(N * O);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++) {
      let s = b === null ? 0 : (b[o] as number);
      for (let i = 0; i < I; i++) s += (x[n * I + i] as number) * (w[o * I + i] as number);
      y[n * O + o] = s;
    }
  return y;
}

for (const backend of testBackends()) {
  describe(`swiglu and linear on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    it('swiglu matches silu(gate) · up', async () => {
      const rng = new Rng(31);
      const shape = [2, 3, 10];
      const g = rng.normalArray(60, 0, 3);
      const u = rng.normalArray(60);
      const y = swiglu(tf.tensor(g, shape), tf.tensor(u, shape));
      expect(y.shape).toEqual(shape);
      expectClose(await take(y), refSwiglu(g, u), 1e-5, 1e-5);
    });

    it('swiglu has the gradient of the reference w.r.t. gate and up', async () => {
      const rng = new Rng(32);
      const g = rng.normalArray(12, 0, 2);
      const u = rng.normalArray(12);
      const R = rng.normalArray(12);
      const Rt = tf.tensor2d(R, [3, 4]);
      const [dg, du] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(swiglu(a, b), Rt)))([
        tf.tensor2d(g, [3, 4]),
        tf.tensor2d(u, [3, 4]),
      ]);
      expectClose(
        await take(dg as tf.Tensor),
        numericGrad((xs) => dot(refSwiglu(xs, u), R), g),
        1e-4,
        1e-4,
        'dgate',
      );
      expectClose(
        await take(du as tf.Tensor),
        numericGrad((xs) => dot(refSwiglu(g, xs), R), u),
        1e-4,
        1e-4,
        'dup',
      );
      Rt.dispose();
    });

    it('linear uses the HF [out, in] layout over [B, T, in] and has gradients', async () => {
      const rng = new Rng(33);
      const [B, T, I, O] = [2, 3, 5, 4];
      const x = rng.normalArray(B * T * I);
      const w = rng.normalArray(O * I);
      const b = rng.normalArray(O);
      const y = linear(tf.tensor3d(x, [B, T, I]), tf.tensor2d(w, [O, I]), tf.tensor1d(b));
      expect(y.shape).toEqual([B, T, O]);
      expectClose(await take(y), refLinear(x, w, b, B * T, I, O), 1e-5, 1e-5);
      const R = rng.normalArray(B * T * O);
      const Rt = tf.tensor3d(R, [B, T, O]);
      const [dx, dw] = tf.grads((a: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(linear(a, c), Rt)))([
        tf.tensor3d(x, [B, T, I]),
        tf.tensor2d(w, [O, I]),
      ]);
      expectClose(
        await take(dx as tf.Tensor),
        numericGrad((xs) => dot(refLinear(xs, w, null, B * T, I, O), R), x),
        1e-4,
        1e-4,
        'dx',
      );
      expectClose(
        await take(dw as tf.Tensor),
        numericGrad((ws) => dot(refLinear(x, ws, null, B * T, I, O), R), w),
        1e-4,
        1e-4,
        'dw',
      );
      Rt.dispose();
    });
  });
}

describe('swiglu / linear validation', () => {
  it('rejects mismatched shapes', async () => {
    await useBackend('cpu');
    const err = (() => {
      try {
        swiglu(tf.zeros([2, 3]), tf.zeros([2, 4]));
      } catch (e) {
        return e;
      }
    })();
    expect(isParaError(err, 'SHAPE_MISMATCH')).toBe(true);
    expect(err).toMatchObject({ field: 'up', actual: '[2, 4]' });
    expect(() => linear(tf.zeros([2, 3]), tf.zeros([3, 4]))).toThrow(/weight/);
  });
});
