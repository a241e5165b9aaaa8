/**
 * Adapter sites: a tiny test adapter (per-row scaling, IA3-like down_proj input scaling, and a
 * PARA-like prompt-pooled scaling) gives exactly what the same change made to the weights by
 * hand gives, through forward and through prefill + cached decode.
 */

import { Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AdapterContext,
  type AdapterSite,
  CausalLM,
  type LayerWeights,
  type ModelAdapter,
  type ModelWeights,
} from '../src/index';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { tinyModel } from './helpers/models';

const PROMPTS = [
  [1, 5, 9, 13, 4],
  [1, 7],
];
const NEXT = [
  [20, 21, 22],
  [30, 31, 32],
];

/** A copy of `w` with `edit` applied to every layer (tensors not edited are shared). */
function editWeights(
  w: ModelWeights,
  edit: (l: LayerWeights) => Partial<LayerWeights>,
): ModelWeights {
  return { ...w, layers: w.layers.map((l) => ({ ...l, ...edit(l) })) };
}

/** Scales one site's output by a per-row vector: request.scale [B, 1, out]. */
function rowScaler(site: AdapterSite): ModelAdapter<{ scale: tf.Tensor }> {
  return {
    sites: [site],
    transform: (ctx, _site, y) => tf.mul(y, ctx.request.scale), // [B, T, out]
  };
}

/**
 * PARA-like: p = mean of the normalised layer input over the prompt tokens (request.promptMask
 * in a forward pass; the prompt itself at prefill), q ← q ⊙ (1 + tanh(p · W)). p is computed at
 * prefill and kept in ctx.state (as q_proj's scale) for the decode steps.
 */
function paraLike(W: tf.Tensor[]): ModelAdapter<{ promptMask?: tf.Tensor }> {
  return {
    sites: ['q_proj'],
    layerInput(ctx: AdapterContext<{ promptMask?: tf.Tensor }>, h) {
      if (ctx.phase === 'decode') return; // vectors come from the prompt only
      const m = ctx.phase === 'forward' ? (ctx.request.promptMask as tf.Tensor) : ctx.tokenMask; // [B, T]
      const m3 = tf.expandDims(m, -1); // [B, T, 1]
      const pooled = tf.div(tf.sum(tf.mul(h, m3), 1, true), tf.sum(m3, 1, true)); // [B, 1, d]
      const [B, , d] = pooled.shape as [number, number, number];
      const z = tf.reshape(tf.matMul(tf.reshape(pooled, [B, d]), W[ctx.layer] as tf.Tensor), [
        B,
        1,
        -1,
      ]); // [B, 1, qDim]
      ctx.state.setScale('q_proj', tf.add(1, tf.tanh(z))); // the layer multiplies q_proj's output by it
    },
  };
}

describe.each(testBackends())('adapter sites on %s', (backend) => {
  let model: CausalLM;
  const rng = new Rng(11);
  beforeAll(async () => {
    await useBackend(backend);
    model = tinyModel({ bias: { q: true, k: true, v: true } }, 3);
  });
  afterAll(() => model.dispose());

  it('a per-row scaling of v_proj equals scaling the weights of each row by hand (forward, prefill, decode)', async () => {
    const c = model.config;
    const kv = c.numKvHeads * c.headDim;
    const rows = PROMPTS.map(() => rng.uniformArray(kv, 0.5, 1.5));
    const scale = tf.tensor3d(Float32Array.from(rows.flatMap((r) => Array.from(r))), [2, 1, kv]); // [B, 1, kv]
    const adapter = rowScaler('v_proj');
    const { logits, state } = model.prefill(PROMPTS, { adapter, request: { scale } });
    const pre = await take(logits);
    const steps: Float32Array[] = [];
    for (let i = 0; i < 3; i++)
      steps.push(
        await take(
          model.decodeStep(
            NEXT.map((r) => r[i] as number),
            state,
          ),
        ),
      );
    state.dispose();

    const V = c.vocabSize;
    for (let b = 0; b < 2; b++) {
      const s = tf.tensor1d(rows[b] as Float32Array);
      const s2 = tf.reshape(s, [kv, 1]);
      const w = editWeights(model.weights, (l) => ({
        v_proj: {
          weight: tf.mul(l.v_proj.weight, s2),
          bias: tf.mul(l.v_proj.bias as tf.Tensor, s),
        },
      }));
      const manual = new CausalLM(c, w);
      const seq = [...(PROMPTS[b] as number[]), ...(NEXT[b] as number[])];
      const ref = await take(manual.forward([seq])); // [1, T, V]
      const p = (PROMPTS[b] as number[]).length;
      expectClose(
        pre.subarray(b * V, (b + 1) * V),
        ref.subarray((p - 1) * V, p * V),
        1e-4,
        0,
        `row ${b} prefill`,
      );
      steps.forEach((st, i) => {
        expectClose(
          st.subarray(b * V, (b + 1) * V),
          ref.subarray((p + i) * V, (p + i + 1) * V),
          1e-4,
          0,
          `row ${b} step ${i}`,
        );
      });
      tf.dispose(w.layers.flatMap((l) => [l.v_proj.weight, l.v_proj.bias as tf.Tensor]));
      tf.dispose([s, s2]);
    }
    scale.dispose();
  });

  it('scaling the input of down_proj (IA3-style) equals scaling down_proj columns', async () => {
    const c = model.config;
    const l = tf.tensor1d(rng.uniformArray(c.intermediateSize, 0.5, 1.5)); // [d_ff]
    const adapter: ModelAdapter = {
      sites: ['down_proj.input'],
      transform: (_ctx, _s, y) => tf.mul(y, l),
    };
    const ids = [PROMPTS[0] as number[]];
    const adapted = await take(model.forward(ids, { adapter }));
    const w = editWeights(model.weights, (lw) => ({
      down_proj: { weight: tf.mul(lw.down_proj.weight, l), bias: null },
    }));
    const manual = await take(new CausalLM(c, w).forward(ids));
    expectClose(adapted, manual, 1e-4, 0, 'down_proj.input');
    tf.dispose(w.layers.map((x) => x.down_proj.weight));
    l.dispose();
  });

  it('a PARA-like adapter: prompt-pooled vectors from prefill, reused by every decode step, equal teacher forcing', async () => {
    const c = model.config;
    const qDim = c.numHeads * c.headDim;
    const W = Array.from({ length: c.numLayers }, () =>
      rng.normalTensor([c.hiddenSize, qDim], 0, 0.5),
    );
    const adapter = paraLike(W);
    const before = tf.memory().numTensors;
    const { logits, state } = model.prefill(PROMPTS, { adapter, request: {} });
    const V = c.vocabSize;
    const pre = await take(logits);
    const steps: Float32Array[] = [];
    for (let i = 0; i < 3; i++)
      steps.push(
        await take(
          model.decodeStep(
            NEXT.map((r) => r[i] as number),
            state,
          ),
        ),
      );
    expect(state.adapterState?.size).toBe(c.numLayers); // one kept tensor per layer
    state.dispose();
    expect(tf.memory().numTensors).toBe(before);

    // Teacher forcing: prompt + response in one left-padded batch, pooling over the prompt only.
    const full = PROMPTS.map((p, b) => [...p, ...(NEXT[b] as number[])]);
    const T = Math.max(...full.map((r) => r.length));
    const ids = full.map((r) => [...new Array(T - r.length).fill(0), ...r]);
    const mask = full.map((r) => [
      ...new Array(T - r.length).fill(0),
      ...new Array(r.length).fill(1),
    ]);
    const promptMask = tf.tensor2d(
      full.map((r, b) => [
        ...new Array(T - r.length).fill(0),
        ...r.map((_, j) => (j < (PROMPTS[b] as number[]).length ? 1 : 0)),
      ]),
      [2, T],
      'float32',
    );
    const teacher = await take(
      model.forward(ids, { attentionMask: mask, adapter, request: { promptMask } }),
    );
    const plain = await take(model.forward(ids, { attentionMask: mask }));
    for (let b = 0; b < 2; b++) {
      const p = (PROMPTS[b] as number[]).length;
      const off = T - (full[b] as number[]).length;
      const row = (t: number, buf: Float32Array) =>
        buf.subarray((b * T + off + t) * V, (b * T + off + t + 1) * V);
      expectClose(
        pre.subarray(b * V, (b + 1) * V),
        row(p - 1, teacher),
        1e-4,
        0,
        `row ${b} prefill`,
      );
      steps.forEach((st, i) => {
        expectClose(
          st.subarray(b * V, (b + 1) * V),
          row(p + i, teacher),
          1e-4,
          0,
          `row ${b} step ${i}`,
        );
      });
      // And the adapter does change the logits.
      let diff = 0;
      for (let j = 0; j < V; j++)
        diff = Math.max(
          diff,
          Math.abs((row(p, teacher)[j] as number) - (row(p, plain)[j] as number)),
        );
      expect(diff).toBeGreaterThan(1e-3);
    }
    tf.dispose([promptMask, ...W]);
  });

  it('hooks are called only for the listed sites and layers, with [B, T, ·] tensors', async () => {
    const c = model.config;
    const calls: string[] = [];
    const adapter: ModelAdapter = {
      sites: ['k_proj', 'down_proj'],
      layers: [1],
      layerInput: (ctx, h) => {
        calls.push(`input ${ctx.layer} ${ctx.phase} [${h.shape}]`);
      },
      transform: (ctx, site, y, x) => {
        calls.push(`${site} ${ctx.layer} [${y.shape}] [${x.shape}]`);
        return y;
      },
    };
    const plain = await take(model.forward([[1, 2, 3]]));
    const same = await take(model.forward([[1, 2, 3]], { adapter }));
    expectClose(same, plain, 0, 0, 'identity adapter');
    const kv = c.numKvHeads * c.headDim;
    expect(calls).toEqual([
      `input 1 forward [1,3,${c.hiddenSize}]`,
      `k_proj 1 [1,3,${kv}] [1,3,${c.hiddenSize}]`,
      `down_proj 1 [1,3,${c.hiddenSize}] [1,3,${c.intermediateSize}]`,
    ]);
    calls.length = 0;
    const { logits, state } = model.prefill([[1, 2], [3]], { adapter });
    logits.dispose();
    tf.dispose(model.decodeStep([4, 5], state));
    state.dispose();
    expect(calls[3]).toBe(`input 1 decode [2,1,${c.hiddenSize}]`);
    expect(calls).toHaveLength(6);
  });

  it('gradients flow to adapter parameters through forward (matches finite differences)', async () => {
    const c = model.config;
    const kv = c.numKvHeads * c.headDim;
    const s = tf.variable(tf.tensor1d(rng.uniformArray(kv, 0.8, 1.2)), true, `scale_${backend}`);
    const adapter: ModelAdapter = {
      sites: ['v_proj'],
      transform: (_ctx, _site, y) => tf.mul(y, s),
    };
    const probe = rng.normalTensor([1, 4, c.vocabSize]);
    const ids = [[1, 9, 4, 33]];
    const loss = () => tf.sum(tf.mul(model.forward(ids, { adapter }), probe)) as tf.Scalar;
    const { grads, value } = tf.variableGrads(loss, [s]);
    const g = await take(grads[s.name] as tf.Tensor);
    value.dispose();
    const base = await s.data();
    for (const i of [0, kv - 1]) {
      const eps = 1e-2;
      const at = async (delta: number) => {
        const v = Float32Array.from(base);
        v[i] = (v[i] as number) + delta;
        const t = tf.tensor1d(v);
        s.assign(t);
        t.dispose();
        return (await take(tf.tidy(loss)))[0] as number;
      };
      const fd = ((await at(eps)) - (await at(-eps))) / (2 * eps);
      expect(Math.abs((g[i] as number) - fd)).toBeLessThan(2e-2 * Math.max(1, Math.abs(fd)));
    }
    tf.dispose([s, probe]);
  });
});
