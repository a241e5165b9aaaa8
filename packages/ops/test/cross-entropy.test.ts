import * as tf from '@tensorflow/tfjs-core';
import { isParaError, Rng } from '@para/core/node';
import { beforeAll, describe, expect, it } from 'vitest';
import { maskedCrossEntropy, maskedCrossEntropySum, tokenCrossEntropy } from '../src';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { numericGrad, refMaskedCe, refNll } from './helpers/reference';

for (const backend of testBackends()) {
  describe(`masked cross-entropy on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    const [B, T, V] = [2, 4, 7];

    function setup(seed: number, scale = 2) {
      const rng = new Rng(seed);
      const logits = rng.normalArray(B * T * V, 0, scale);
      const targets = Array.from({ length: B * T }, () => rng.int(V));
      const mask = [1, 1, 0, 1, 0, 1, 1, 0];
      return { logits, targets, mask };
    }

    it('matches the naive reference (per token, sum/count, mean)', async () => {
      const { logits, targets, mask } = setup(41);
      const lt = tf.tensor3d(logits, [B, T, V]);
      const tt = tf.tensor2d(targets, [B, T], 'int32');
      const mt = tf.tensor2d(mask, [B, T]);
      const nll = refNll(logits, targets, V);
      expectClose(await take(tokenCrossEntropy(lt, tt)), nll, 1e-5, 1e-5, 'nll');
      const { sum, count } = maskedCrossEntropySum(lt, tt, mt);
      const refSum = nll.reduce((a, x, i) => a + x * (mask[i] as number), 0);
      expectClose(await take(sum), [refSum], 1e-5, 1e-5, 'sum');
      expect(await take(count)).toEqual([5]);
      expectClose(await take(maskedCrossEntropy(lt, tt, mt)), [refMaskedCe(logits, targets, mask, V)], 1e-5, 1e-5, 'mean');
      tf.dispose([lt, tt, mt]);
    });

    it('is stable for huge logits, ignores masked targets like -100, and is 0 for an empty mask', async () => {
      const { logits, targets, mask } = setup(42);
      const shifted = logits.map((x, i) => x + (i % 3 === 0 ? 1000 : 0));
      const lt = tf.tensor3d(shifted, [B, T, V]);
      const ignored = targets.map((t, i) => (mask[i] === 1 ? t : -100));
      const tt = tf.tensor2d(ignored, [B, T], 'int32');
      const mt = tf.tensor2d(mask, [B, T]);
      const loss = (await take(maskedCrossEntropy(lt, tt, mt)))[0] as number;
      expect(Number.isFinite(loss)).toBe(true);
      expect(Math.abs(loss - refMaskedCe(shifted, targets, mask, V))).toBeLessThan(1e-3); // |logits| ~ 1000
      const empty = tf.zeros([B, T]);
      expect(await take(maskedCrossEntropy(lt, tt, empty))).toEqual([0]);
      tf.dispose([lt, tt, mt, empty]);
    });

    it('has the gradient of the reference w.r.t. logits (zero on masked positions)', async () => {
      const { logits, targets, mask } = setup(43);
      const tt = tf.tensor2d(targets, [B, T], 'int32');
      const mt = tf.tensor2d(mask, [B, T]);
      const g = tf.grad((l: tf.Tensor) => maskedCrossEntropy(l, tt, mt))(tf.tensor3d(logits, [B, T, V]));
      const got = await take(g);
      expectClose(got, numericGrad((xs) => refMaskedCe(xs, targets, mask, V), logits), 1e-5, 1e-4);
      for (let n = 0; n < B * T; n++) if (mask[n] === 0) for (let j = 0; j < V; j++) expect(got[n * V + j]).toBe(0);
      tf.dispose([tt, mt]);
    });
  });
}

describe('cross-entropy validation', () => {
  it('names bad arguments', async () => {
    await useBackend('cpu');
    const logits = tf.zeros([2, 3, 5]);
    const err = (() => {
      try {
        maskedCrossEntropy(logits, tf.zeros([2, 4], 'int32'), tf.ones([2, 3]));
      } catch (e) {
        return e;
      }
    })();
    expect(isParaError(err, 'SHAPE_MISMATCH')).toBe(true);
    expect(err).toMatchObject({ field: 'targets', actual: '[2, 4]' });
    expect(() => maskedCrossEntropy(logits, tf.zeros([2, 3]), tf.ones([2, 3]))).toThrow(/int32/);
    expect(() => maskedCrossEntropy(logits, tf.zeros([2, 3], 'int32'), tf.ones([3, 2]))).toThrow(/lossMask/);
    expect(() => tokenCrossEntropy(tf.zeros([2, 5]), tf.zeros([2], 'int32'))).toThrow(/logits/);
  });
});
