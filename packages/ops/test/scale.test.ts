import { isParaError, Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { scaleRows } from '../src';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { dot, numericGrad } from './helpers/reference';

/** y[b, t, f] = x[b, t, f] · s[b | 0, f], in float64. */
function refScale(x: ArrayLike<number>, s: ArrayLike<number>, T: number, F: number, sb: number) {
  return Float64Array.from(x, (v, i) => {
    const b = sb === 1 ? 0 : Math.floor(i / (T * F));
    return v * (s[b * F + (i % F)] as number);
  });
}

for (const backend of testBackends()) {
  describe(`scaleRows on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    for (const sb of [1, 2]) {
      it(`x [2, 3, 5] ⊙ scale [${sb}, 1, 5]: the reference and its gradients`, async () => {
        const [B, T, F] = [2, 3, 5];
        const rng = new Rng(40 + sb);
        const x = rng.normalArray(B * T * F);
        const s = rng.normalArray(sb * F, 1, 0.5);
        const R = rng.normalArray(B * T * F);
        const xt = tf.tensor3d(x, [B, T, F]);
        const st = tf.tensor3d(s, [sb, 1, F]);
        const Rt = tf.tensor3d(R, [B, T, F]);
        const y = scaleRows(xt, st);
        expect(y.shape).toEqual([B, T, F]);
        expectClose(await take(y), refScale(x, s, T, F, sb), 1e-6, 1e-6);
        const [dx, ds] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(scaleRows(a, b), Rt)),
        )([xt, st]);
        expect((ds as tf.Tensor).shape).toEqual([sb, 1, F]);
        expectClose(
          await take(dx as tf.Tensor),
          numericGrad((v) => dot(refScale(v, s, T, F, sb), R), x),
          1e-4,
          1e-4,
          'dx',
        );
        expectClose(
          await take(ds as tf.Tensor),
          numericGrad((v) => dot(refScale(x, v, T, F, sb), R), s),
          1e-4,
          1e-4,
          'dscale',
        );
        tf.dispose([xt, st, Rt]);
      });
    }
  });
}

describe('scaleRows validation', () => {
  it('rejects a scale that does not broadcast over the rows of x (SHAPE_MISMATCH)', async () => {
    await useBackend('cpu');
    const err = (() => {
      try {
        scaleRows(tf.zeros([2, 3, 4]), tf.zeros([2, 3, 4]));
      } catch (e) {
        return e;
      }
    })();
    expect(isParaError(err, 'SHAPE_MISMATCH')).toBe(true);
    expect(err).toMatchObject({ field: 'scale', expected: '[2, 1, 4]' });
    expect(() => scaleRows(tf.zeros([2, 3, 4]), tf.zeros([3, 1, 4]))).toThrow(/scale/);
    expect(() => scaleRows(tf.zeros([3, 4]), tf.zeros([1, 1, 4]))).toThrow(/\[B, T, F\]/);
  });
});
