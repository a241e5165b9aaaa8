import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's Node entry registers no gradients; @para/core registers them as a side effect.
import '@para/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { blasKernelsInstalled, installBlasKernels } from '../src/index';
import {
  expectAddonLoaded,
  expectClose,
  type Input,
  input,
  type Result,
  runOn,
  status,
} from './helpers';

it('the addon loads (required with PARA_BLAS_REQUIRED=1; otherwise the rest skip where it cannot)', () => {
  expectAddonLoaded();
});

/** Gradients of Σ f(a, b, ...) ⊙ w with respect to every input but w, concatenated. */
function gradsOf(f: (...t: tf.Tensor[]) => tf.Tensor) {
  return (...ts: tf.Tensor[]): tf.Tensor => {
    const w = ts[ts.length - 1] as tf.Tensor;
    const xs = ts.slice(0, -1);
    const gs = tf.grads((...args: tf.Tensor[]) => tf.sum(tf.mul(f(...args), w)))(xs);
    return tf.concat(gs.map((g) => tf.reshape(g, [-1])));
  };
}

const CASES: Array<[string, number[], number[], number, number, number]> = [
  ['rank 2', [], [], 5, 7, 6],
  ['rank 3', [3], [3], 4, 6, 5],
  ['rank 4', [2, 2], [2, 2], 3, 4, 5],
  ['M=1', [], [], 1, 7, 6],
  ['N=1', [], [], 5, 1, 6],
  ['K=1', [], [], 5, 7, 1],
  ['batched M=1', [3], [3], 1, 5, 4],
];

describe.runIf(status.available)('gradients through the OpenBLAS kernels equal cpu', () => {
  beforeAll(async () => {
    // Installed before the wasm backend starts: the kept setupFunc must run at its initialisation.
    expect(installBlasKernels()).toBe(true);
    await tf.setBackend('wasm');
    expect(blasKernelsInstalled()).toBe(true);
  });

  it('the fallback to the original kernel works when installed before the backend started (setupFunc kept)', async () => {
    // More than 8 batch dims of size > 1 are left to the original kernel, which needs its setupFunc.
    const batch = [2, 2, 2, 2, 2, 2, 2, 2, 2];
    const inputs = [input([...batch, 2, 3], 21), input([...batch, 3, 2], 22)];
    const f = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b);
    expectClose(await runOn('wasm', inputs, f), await runOn('cpu', inputs, f), 3, 'rank 11');
  });

  async function compare(
    inputs: Input[],
    f: (...t: tf.Tensor[]) => tf.Tensor,
    terms: number,
    label: string,
  ): Promise<Result> {
    const g = gradsOf(f);
    const ours = await runOn('wasm', inputs, g);
    expectClose(ours, await runOn('cpu', inputs, g), terms, label);
    return ours;
  }

  for (const [label, batchA, batchB, m, n, k] of CASES) {
    it(`matMul ${label}, every transpose`, async () => {
      for (const [tA, tB] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ] as const) {
        const a = input(tA ? [...batchA, k, m] : [...batchA, m, k], 1);
        const b = input(tB ? [...batchB, n, k] : [...batchB, k, n], 2);
        const w = input([...batchA, m, n], 3);
        await compare(
          [a, b, w],
          (x, y) => tf.matMul(x as tf.Tensor, y as tf.Tensor, tA, tB),
          Math.max(m, n, k) * 2,
          `${label} tA=${tA} tB=${tB}`,
        );
      }
    });
  }

  for (const activation of ['linear', 'relu', 'sigmoid', 'elu'] as const) {
    it(`fused matMul + bias + ${activation} (a 2-D linear layer), both transposes of b`, async () => {
      for (const tB of [false, true]) {
        const x = input([6, 5], 4);
        const weight = input(tB ? [7, 5] : [5, 7], 5);
        const bias = input([7], 6);
        const w = input([6, 7], 7);
        const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
          tf.fused.matMul({ a, b, transposeB: tB, bias: c, activation });
        await compare(
          [x, weight, bias, w],
          f as (...t: tf.Tensor[]) => tf.Tensor,
          12,
          `${activation} tB=${tB}`,
        );
      }
    });
  }

  it('a two-layer MLP loss and all its gradients equal cpu', async () => {
    const inputs = [
      input([8, 16], 11),
      input([16, 32], 12),
      input([32], 13),
      input([32, 4], 14),
      input([8, 4], 15),
    ];
    const f = (x: tf.Tensor, w1: tf.Tensor, b1: tf.Tensor, w2: tf.Tensor) => {
      const h = tf.relu(tf.add(tf.matMul(x, w1), b1));
      return tf.matMul(h, w2);
    };
    await compare(inputs, f as (...t: tf.Tensor[]) => tf.Tensor, 64, 'mlp');
  });
});
