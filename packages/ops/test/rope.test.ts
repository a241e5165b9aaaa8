import { isParaError, Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { applyRope, ropeCosSin, ropeInvFreq, swapHalves } from '../src';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { dot, numericGrad, refInvFreq, refRope } from './helpers/reference';

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('ropeInvFreq', () => {
  it('default: 1 / theta^(2i/hd)', () => {
    expectClose(ropeInvFreq({ headDim: 64, theta: 10000 }), refInvFreq(64, 10000), 0, 1e-6);
    expectClose(ropeInvFreq({ headDim: 8 }), refInvFreq(8, 10000), 0, 1e-6);
    expect(ropeInvFreq({ headDim: 8, scaling: { rope_type: 'default' } })).toEqual(
      ropeInvFreq({ headDim: 8 }),
    );
  });

  it('linear scaling divides by the factor (legacy "type" key too)', () => {
    const ref = Array.from(refInvFreq(16, 10000), (f) => f / 4);
    expectClose(
      ropeInvFreq({ headDim: 16, scaling: { rope_type: 'linear', factor: 4 } }),
      ref,
      0,
      1e-6,
    );
    expectClose(ropeInvFreq({ headDim: 16, scaling: { type: 'linear', factor: 4 } }), ref, 0, 1e-6);
  });

  it('llama3 scaling matches transformers (_compute_llama3_parameters)', () => {
    // Expected values computed independently with numpy in float32, transcribing transformers'
    // `_compute_default_rope_parameters` + `_compute_llama3_parameters` line by line
    // (wavelen = 2π / inv_freq; > orig/low → inv/factor; < orig/high → kept; else
    // (1 - s)·inv/factor + s·inv with s = (orig/wavelen - low) / (high - low)).
    // Llama 3.1 8B: head_dim 128, rope_theta 500000, factor 8, low 1, high 4, orig 8192.
    const llama31 = ropeInvFreq({
      headDim: 128,
      theta: 500000,
      scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    });
    const expected31: Record<number, number> = {
      0: 1.0, // high frequency: unchanged
      1: 0.8146172165870667,
      14: 0.05666961893439293,
      28: 0.0032114461064338684, // last unchanged
      29: 0.0021665706299245358, // medium: interpolated (unscaled 0.0026160990819334984)
      30: 0.0013718936825171113,
      31: 0.0008567514596506953,
      32: 0.0005248460220173001,
      33: 0.0003126936499029398,
      34: 0.0001785077911335975, // last interpolated
      35: 9.556212899042293e-5, // low frequency: divided by 8 (unscaled 0.0007644970319233835)
      50: 4.411534519022098e-6,
      63: 3.068925877869333e-7,
    };
    expect(llama31.length).toBe(64);
    for (const [i, v] of Object.entries(expected31)) {
      expect(Math.abs((llama31[Number(i)] as number) - v), `inv_freq[${i}]`).toBeLessThanOrEqual(
        2e-7 * v,
      );
    }
    // Llama 3.2 1B: head_dim 64, rope_theta 500000, factor 32, low 1, high 4, orig 8192.
    const llama32 = ropeInvFreq({
      headDim: 64,
      theta: 500000,
      scaling: {
        rope_type: 'llama3',
        factor: 32,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    });
    const expected32: Record<number, number> = {
      14: 0.0032114461064338684,
      15: 0.0012905480107292533,
      16: 0.000429556705057621,
      17: 9.708286233944818e-5,
      18: 1.9461638657958247e-5,
      31: 9.41830720080361e-8,
    };
    for (const [i, v] of Object.entries(expected32)) {
      expect(Math.abs((llama32[Number(i)] as number) - v), `inv_freq[${i}]`).toBeLessThanOrEqual(
        2e-7 * v,
      );
    }
  });

  it('rejects unknown scaling types and bad fields with typed errors', () => {
    const e1 = caught(() =>
      ropeInvFreq({ headDim: 8, scaling: { rope_type: 'proportional', factor: 2 } }),
    );
    expect(isParaError(e1, 'UNSUPPORTED')).toBe(true);
    expect(e1).toMatchObject({ field: 'rope_scaling.rope_type' });
    const e2 = caught(() =>
      ropeInvFreq({
        headDim: 8,
        scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 },
      }),
    );
    expect(isParaError(e2, 'INVALID_CONFIG')).toBe(true);
    expect(e2).toMatchObject({ field: 'rope_scaling.original_max_position_embeddings' });
    const e3 = caught(() => ropeInvFreq({ headDim: 7 }));
    expect(e3).toMatchObject({ code: 'INVALID_CONFIG', field: 'head_dim' });
    const e4 = caught(() => ropeInvFreq({ headDim: 8, scaling: { rope_type: 'linear' } }));
    expect(e4).toMatchObject({ code: 'INVALID_CONFIG', field: 'rope_scaling.factor' });
  });
});

for (const backend of testBackends()) {
  describe(`RoPE on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    const hd = 8;
    const inv = ropeInvFreq({ headDim: hd, theta: 100 });

    /** cos/sin [B, 1, T, hd] as HF: float32 angle p·inv, halves repeated. */
    function refCosSin(positions: number[][]): { cos: number[]; sin: number[] } {
      const cos: number[] = [];
      const sin: number[] = [];
      for (const row of positions)
        for (const p of row)
          for (let j = 0; j < hd; j++) {
            const a = Math.fround(p * (inv[j % (hd / 2)] as number));
            cos.push(Math.cos(a));
            sin.push(Math.sin(a));
          }
      return { cos, sin };
    }

    it('ropeCosSin from host positions matches the formula, per row', async () => {
      const positions = [
        [0, 1, 2, 3],
        [1, 1, 0, 1], // a left-padded row: pads get 1, real tokens 0, 1
      ];
      const { cos, sin } = ropeCosSin(positions, inv);
      expect(cos.shape).toEqual([2, 1, 4, hd]);
      const ref = refCosSin(positions);
      expectClose(await take(cos), ref.cos, 1e-6, 0);
      expectClose(await take(sin), ref.sin, 1e-6, 0);
    });

    it('ropeCosSin from an int32 tensor (device path) is accurate at large positions', async () => {
      const positions = [
        [0, 7, 100, 4095],
        [2047, 3000, 8191, 5],
      ];
      const { cos, sin } = ropeCosSin(tf.tensor2d(positions, [2, 4], 'int32'), inv);
      const ref = refCosSin(positions);
      expectClose(await take(cos), ref.cos, 2e-5, 0);
      expectClose(await take(sin), ref.sin, 2e-5, 0);
    });

    it('applyRope matches the naive rotate_half rotation with per-row positions', async () => {
      const rng = new Rng(3);
      const [B, H, T] = [2, 3, 4];
      const positions = [
        [0, 1, 2, 3],
        [5, 6, 7, 8],
      ];
      const x = rng.normalArray(B * H * T * hd); // [B, H, T, hd]
      const { cos, sin } = ropeCosSin(positions, inv);
      const y = applyRope(tf.tensor4d(x, [B, H, T, hd]), cos, sin);
      expect(y.shape).toEqual([B, H, T, hd]);
      expectClose(await take(y), refRope(x, [B, H, T, hd], positions, Array.from(inv)), 1e-5, 1e-5);
      tf.dispose([cos, sin]);
    });

    it('scores after RoPE depend only on the relative position', async () => {
      const rng = new Rng(4);
      const q = tf.tensor4d(rng.normalArray(hd), [1, 1, 1, hd]);
      const k = tf.tensor4d(rng.normalArray(hd), [1, 1, 1, hd]);
      const score = async (m: number, n: number) => {
        const a = ropeCosSin([[m]], inv);
        const b = ropeCosSin([[n]], inv);
        const s = tf.sum(tf.mul(applyRope(q, a.cos, a.sin), applyRope(k, b.cos, b.sin)));
        tf.dispose([a.cos, a.sin, b.cos, b.sin]);
        return (await take(s))[0] as number;
      };
      const s1 = await score(5, 2);
      const s2 = await score(13, 10);
      const s3 = await score(13, 9);
      expect(Math.abs(s1 - s2)).toBeLessThan(1e-4);
      expect(Math.abs(s1 - s3)).toBeGreaterThan(1e-3);
      tf.dispose([q, k]);
    });

    it('has the gradient of the reference w.r.t. x', async () => {
      const rng = new Rng(5);
      const [B, H, T] = [2, 2, 3];
      const positions = [
        [3, 4, 5],
        [0, 1, 9],
      ];
      const x = rng.normalArray(B * H * T * hd);
      const R = rng.normalArray(B * H * T * hd);
      const { cos, sin } = ropeCosSin(positions, inv);
      const Rt = tf.tensor4d(R, [B, H, T, hd]);
      const xt = tf.tensor4d(x, [B, H, T, hd]);
      const g = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(applyRope(a, cos, sin), Rt)))(xt);
      const num = numericGrad(
        (xs) => dot(refRope(xs, [B, H, T, hd], positions, Array.from(inv)), R),
        x,
      );
      expectClose(await take(g), num, 1e-4, 1e-4);
      tf.dispose([cos, sin, Rt, xt]);
    });

    it('with sinSigned (swap halves, fewer kernels) gives the same values bit for bit, and the same gradient', async () => {
      const rng = new Rng(6);
      const [B, H, T] = [2, 3, 4];
      const positions = [
        [0, 1, 2, 3],
        [1, 1, 0, 1],
      ];
      const x = rng.normalArray(B * H * T * hd);
      const R = rng.normalArray(B * H * T * hd);
      const host = ropeCosSin(positions, inv, { signedSin: true });
      const device = ropeCosSin(tf.tensor2d(positions, [B, T], 'int32'), inv, { signedSin: true });
      expect(ropeCosSin(positions, inv).sinSigned).toBeUndefined();
      const sinValues = await take(tf.clone(host.sin));
      const expectedSigned = sinValues.map((v, i) => (i % hd < hd / 2 ? -v : v));
      expect(await take(tf.clone(host.sinSigned as tf.Tensor))).toEqual(expectedSigned);
      expectClose(await take(tf.clone(device.sinSigned as tf.Tensor)), expectedSigned, 2e-5, 0);
      const xt = tf.tensor4d(x, [B, H, T, hd]);
      const Rt = tf.tensor4d(R, [B, H, T, hd]);
      const plain = await take(applyRope(xt, host.cos, host.sin));
      const swapped = await take(applyRope(xt, host.cos, host.sin, host.sinSigned));
      expect(swapped).toEqual(plain);
      const g = tf.grad((a: tf.Tensor) =>
        tf.sum(tf.mul(applyRope(a, host.cos, host.sin, host.sinSigned), Rt)),
      )(xt);
      const num = numericGrad(
        (xs) => dot(refRope(xs, [B, H, T, hd], positions, Array.from(inv)), R),
        x,
      );
      expectClose(await take(g), num, 1e-4, 1e-4);
      expect(await take(swapHalves(tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8], [2, 4])))).toEqual([
        3, 4, 1, 2, 7, 8, 5, 6,
      ]);
      tf.dispose([
        host.cos,
        host.sin,
        host.sinSigned as tf.Tensor,
        device.cos,
        device.sin,
        device.sinSigned as tf.Tensor,
        xt,
        Rt,
      ]);
    });

    it('validates shapes', () => {
      const x = tf.zeros([1, 2, 3, hd]);
      const { cos, sin } = ropeCosSin([[0, 1]], inv); // T = 2, x has T = 3
      const err = caught(() => applyRope(x, cos, sin));
      expect(isParaError(err, 'SHAPE_MISMATCH')).toBe(true);
      expect(err).toMatchObject({
        field: 'cos',
        expected: `[?, 1, 3, ${hd}]`,
        actual: `[1, 1, 2, ${hd}]`,
      });
      expect(caught(() => applyRope(tf.zeros([2, 3, hd]), cos, sin))).toMatchObject({
        code: 'SHAPE_MISMATCH',
        field: 'x',
      });
      tf.dispose([x, cos, sin]);
    });
  });
}
