/**
 * Gradients of every PARA parameter (down/up weights and biases, the attention pooler's w), for
 * every pooler, through the whole model: tf.variableGrads against central finite differences of
 * the same float32 loss, on the largest-gradient coordinate and a random one of each tensor.
 * The loss reads response positions only, so what reaches the parameters flows through the
 * prompt-pooled vectors into every position, as in training.
 */

import { Rng } from '@para/core';
import type { CausalLM } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ParaActivation, ParaAdapter, type ParaPooler } from '../src/index';
import { take, testBackends, useBackend } from './helpers/backends';
import { leftPad, randomize, tinyModel } from './helpers/models';

const CASES: [ParaPooler, ParaActivation][] = [
  ['last', 'relu'],
  ['mean', 'silu'],
  ['max', 'tanh'],
  ['attention', 'gelu'],
];

describe.each(testBackends())('PARA gradients on %s', (backend) => {
  let model: CausalLM;
  beforeAll(async () => {
    await useBackend(backend);
    model = tinyModel(
      { hiddenSize: 16, intermediateSize: 24, numHeads: 2, numKvHeads: 1, vocabSize: 32 },
      4,
    );
  });
  afterAll(() => model.dispose());

  it.each(CASES)(
    'tf.grads match central differences for every parameter (%s pooler, %s)',
    async (pooler, activation) => {
      const para = ParaAdapter.create(
        model.config,
        { pooler, activation, use_bias: true, r: 3 },
        { seed: 9 },
      );
      randomize(para, `grad-${pooler}`, 0.4);
      const adapter = para.attach(model);
      const prompts = [
        [1, 5, 9, 13, 4],
        [1, 7, 30],
      ];
      const responses = [
        [20, 21],
        [11, 12, 13],
      ];
      const { ids, mask, T } = leftPad(
        prompts.map((p, b) => [...p, ...(responses[b] as number[])]),
      );
      const promptLengths = prompts.map((p) => p.length);
      const V = model.config.vocabSize;
      // Weights on response positions only.
      const rng = new Rng(`probe-${pooler}`);
      const w = new Float32Array(2 * T * V);
      ids.forEach((_row, b) => {
        const start = T - (responses[b] as number[]).length;
        for (let t = start; t < T; t++)
          for (let j = 0; j < V; j++) w[(b * T + t) * V + j] = rng.normal();
      });
      const probe = tf.tensor3d(w, [2, T, V]);
      const loss = () =>
        tf.sum(
          tf.mul(
            model.forward(ids, { attentionMask: mask, adapter, request: { promptLengths } }),
            probe,
          ),
        ) as tf.Scalar;

      const params = para.parameters();
      const { value, grads } = tf.variableGrads(loss, params);
      value.dispose();
      const eps = 1e-2;
      let checked = 0;
      for (const [name, v] of para.namedParameters()) {
        const g = await take(grads[v.name] as tf.Tensor);
        const base = (await v.data()) as Float32Array;
        let imax = 0;
        for (let i = 0; i < g.length; i++)
          if (Math.abs(g[i] as number) > Math.abs(g[imax] as number)) imax = i;
        expect(Math.abs(g[imax] as number), `${name}: some gradient reaches it`).toBeGreaterThan(
          1e-4,
        );
        for (const i of new Set([imax, rng.int(g.length)])) {
          const at = async (delta: number) => {
            const x = Float32Array.from(base);
            x[i] = (x[i] as number) + delta;
            const t = tf.tensor(x, v.shape);
            v.assign(t);
            t.dispose();
            return (await take(tf.tidy(loss)))[0] as number;
          };
          const fd = ((await at(eps)) - (await at(-eps))) / (2 * eps);
          const gi = g[i] as number;
          expect(
            Math.abs(gi - fd),
            `${name}[${i}]: grad ${gi}, finite difference ${fd}`,
          ).toBeLessThanOrEqual(0.03 * Math.max(Math.abs(gi), Math.abs(fd)) + 2e-3);
          checked++;
        }
        const t = tf.tensor(base, v.shape);
        v.assign(t);
        t.dispose();
      }
      expect(checked).toBeGreaterThanOrEqual(params.length);
      probe.dispose();
      para.dispose();
    },
  );
});
