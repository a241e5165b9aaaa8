import { isParaError, Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { rmsNorm } from '../src';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { dot, numericGrad, refRmsNorm } from './helpers/reference';

for (const backend of testBackends()) {
  describe(`rmsNorm on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    it('matches the naive reference', async () => {
      const rng = new Rng(1);
      const [B, T, d] = [2, 3, 16];
      const x = rng.normalArray(B * T * d, 0, 3); // [B, T, d]
      const w = rng.normalArray(d); // [d]
      const eps = 1e-5;
      const y = rmsNorm(tf.tensor3d(x, [B, T, d]), tf.tensor1d(w), eps);
      expect(y.shape).toEqual([B, T, d]);
      expectClose(await take(y), refRmsNorm(x, w, d, eps), 1e-5, 1e-5);
    });

    it('has the gradient of the reference (w.r.t. x and weight)', async () => {
      const rng = new Rng(2);
      const [N, d] = [3, 8];
      const x = rng.normalArray(N * d); // [N, d]
      const w = rng.normalArray(d); // [d]
      const R = rng.normalArray(N * d); // [N, d] upstream weights
      const eps = 1e-6;
      const xt = tf.tensor2d(x, [N, d]);
      const wt = tf.tensor1d(w);
      const Rt = tf.tensor2d(R, [N, d]);
      const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(rmsNorm(a, b, eps), Rt)),
      )([xt, wt]);
      const numX = numericGrad((xs) => dot(refRmsNorm(xs, w, d, eps), R), x);
      const numW = numericGrad((ws) => dot(refRmsNorm(x, ws, d, eps), R), w);
      expectClose(await take(gx as tf.Tensor), numX, 1e-4, 1e-4, 'dx');
      expectClose(await take(gw as tf.Tensor), numW, 1e-4, 1e-4, 'dw');
      tf.dispose([xt, wt, Rt]);
    });
  });
}

describe('rmsNorm validation', () => {
  it('names the bad argument', async () => {
    await useBackend('cpu');
    const x = tf.zeros([2, 4]);
    const err = (() => {
      try {
        rmsNorm(x, tf.ones([5]));
      } catch (e) {
        return e;
      }
    })();
    expect(isParaError(err, 'SHAPE_MISMATCH')).toBe(true);
    expect(err).toMatchObject({ field: 'weight', expected: '[4]', actual: '[5]' });
    expect(() => rmsNorm(x, tf.ones([4]), -1)).toThrow(/eps/);
    tf.dispose(x);
  });
});
