/**
 * The baselines: LoRA (init, equality with W + s·B·A written into the weights by hand, merge →
 * unmerge, dropout) and IA3 (init, equality with scaled weights), through forward and through
 * prefill + cached decode.
 */

import { CausalLM, type LayerWeights, type ModelWeights, PROJECTIONS } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ia3Adapter, LoraAdapter, type LoraModule, MixedBatch } from '../src/index';
import { caught, expectClose, take, testBackends, useBackend } from './helpers/backends';
import { randomize, tinyModel } from './helpers/models';

const IDS = [
  [1, 5, 9, 13, 4, 22, 7],
  [1, 7, 30, 31, 8, 9, 10],
];

function editWeights(
  w: ModelWeights,
  edit: (l: LayerWeights, i: number) => Partial<LayerWeights>,
): { weights: ModelWeights; made: tf.Tensor[] } {
  const made: tf.Tensor[] = [];
  const layers = w.layers.map((l, i) => {
    const e = edit(l, i);
    for (const v of Object.values(e))
      if (v && typeof v === 'object' && 'weight' in v) made.push(v.weight as tf.Tensor);
    return { ...l, ...e };
  });
  return { weights: { ...w, layers }, made };
}

describe.each(testBackends())('LoRA and IA3 on %s', (backend) => {
  let model: CausalLM;
  beforeAll(async () => {
    await useBackend(backend);
    model = tinyModel({}, 5);
  });
  afterAll(() => model.dispose());

  it('LoRA init: A Kaiming-uniform (|A| ≤ 1/√in), B zero, the identity (bit-identical logits)', async () => {
    const lora = LoraAdapter.create(
      model.config,
      { r: 4, lora_alpha: 8, target_modules: [...PROJECTIONS] },
      { seed: 1 },
    );
    expect(lora.scaling).toBe(2);
    expect(lora.allModules()).toHaveLength(7 * model.config.numLayers);
    for (const m of lora.allModules()) {
      const inDim = m.A.shape[1] as number;
      const a = (await m.A.data()) as Float32Array;
      expect(Math.max(...Array.from(a, Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(inDim));
      expect(Math.max(...Array.from(a, Math.abs))).toBeGreaterThan(0.5 / Math.sqrt(inDim));
      expect(Array.from((await m.B.data()) as Float32Array).every((x) => x === 0)).toBe(true);
    }
    const plain = await take(model.forward(IDS));
    const adapted = await take(model.forward(IDS, { adapter: lora.attach(model) }));
    expect(Buffer.from(adapted.buffer).equals(Buffer.from(plain.buffer))).toBe(true);
    lora.dispose();
  });

  it('LoRA equals W + (alpha/r)·B·A written into the weights, in forward and in cached decode', async () => {
    const lora = LoraAdapter.create(
      model.config,
      {
        r: 3,
        lora_alpha: 5,
        target_modules: ['q_proj', 'v_proj', 'o_proj', 'down_proj', 'gate_proj'],
      },
      { seed: 2 },
    );
    randomize(lora, 'lora-eq', 0.2);
    const adapter = lora.attach(model);
    const { weights, made } = editWeights(model.weights, (l, i) => {
      const e: Partial<LayerWeights> = {};
      for (const p of PROJECTIONS) {
        const m = lora.module(i, p) as LoraModule | undefined;
        if (m)
          e[p] = {
            weight: tf.tidy(() => tf.add(l[p].weight, tf.mul(tf.matMul(m.B, m.A), lora.scaling))),
            bias: l[p].bias,
          };
      }
      return e;
    });
    const manual = new CausalLM(model.config, weights);
    const want = await take(manual.forward(IDS));
    expectClose(await take(model.forward(IDS, { adapter })), want, 1e-4, 0, 'forward');
    const V = model.config.vocabSize;
    const { logits, state } = model.prefill(
      IDS.map((r) => r.slice(0, 5)),
      { adapter },
    );
    expectClose(
      await take(logits),
      [...want.subarray(4 * V, 5 * V), ...want.subarray((7 + 4) * V, (7 + 5) * V)],
      1e-4,
      0,
      'prefill',
    );
    const step = await take(model.decodeStep([22, 9], state));
    state.dispose();
    expectClose(
      step,
      [...want.subarray(5 * V, 6 * V), ...want.subarray((7 + 5) * V, (7 + 6) * V)],
      1e-4,
      0,
      'decode',
    );
    tf.dispose(made);
    lora.dispose();
  });

  it('LoRA merge → unmerge restores the weights (float32 rounding); merged logits equal unmerged', async () => {
    const own = tinyModel({}, 5);
    const lora = LoraAdapter.create(
      own.config,
      { r: 4, lora_alpha: 16, target_modules: ['q_proj', 'k_proj', 'up_proj', 'down_proj'] },
      { seed: 3 },
    );
    randomize(lora, 'merge', 0.3);
    const before = await Promise.all(
      own.weights.layers.map((l) =>
        Promise.all(PROJECTIONS.map(async (p) => (await l[p].weight.data()) as Float32Array)),
      ),
    );
    const unmerged = await take(own.forward(IDS, { adapter: lora.attach(own) }));
    const n = tf.memory().numTensors;
    lora.merge(own);
    expect(lora.merged).toBe(own);
    expect(tf.memory().numTensors).toBe(n);
    expect(() => lora.attach(own)).toThrow(/merged/);
    expect(() => new MixedBatch(own, [lora, null])).toThrow(/merged/);
    const merged = await take(own.forward(IDS));
    expectClose(merged, unmerged, 1e-4, 0, 'merged vs unmerged');
    // The merge did change q_proj.
    const q = (await own.weights.layers[0]?.q_proj.weight.data()) as Float32Array;
    const q0 = (before[0] as Float32Array[])[0] as Float32Array;
    expect(q.some((x, i) => Math.abs(x - (q0[i] as number)) > 1e-3)).toBe(true);
    lora.unmerge(own);
    expect(lora.merged).toBeNull();
    for (let i = 0; i < own.config.numLayers; i++) {
      for (const [k, p] of PROJECTIONS.entries()) {
        const now = (await own.weights.layers[i]?.[p].weight.data()) as Float32Array;
        expectClose(now, before[i]?.[k] as Float32Array, 2e-7, 1e-6, `layer ${i} ${p}`);
      }
    }
    expect(((await caught(() => lora.unmerge(own))) as Error).message).toMatch(/not merged/);
    expectClose(
      await take(own.forward(IDS, { adapter: lora.attach(own) })),
      unmerged,
      1e-5,
      0,
      'after unmerge',
    );
    lora.dispose();
    own.dispose();
  });

  it('LoRA dropout acts only in training forward passes, seeded', async () => {
    const make = () => {
      const l = LoraAdapter.create(model.config, { r: 2, lora_dropout: 0.5 }, { seed: 4 });
      randomize(l, 'drop', 0.3);
      return l;
    };
    const a = make();
    const b = make();
    const evalOut = await take(model.forward(IDS, { adapter: a.attach(model) }));
    a.training = true;
    b.training = true;
    const trainA = await take(model.forward(IDS, { adapter: a.attach(model) }));
    const trainB = await take(model.forward(IDS, { adapter: b.attach(model) }));
    expect(Buffer.from(trainA.buffer).equals(Buffer.from(trainB.buffer))).toBe(true);
    expect(trainA.some((x, i) => Math.abs(x - (evalOut[i] as number)) > 1e-4)).toBe(true);
    // prefill / decode never drop.
    const { logits, state } = model.prefill(IDS, { adapter: a.attach(model) });
    expectClose(
      await take(logits),
      [6, 13].flatMap((t) => Array.from(evalOut.subarray(t * 64, (t + 1) * 64))),
      1e-5,
      0,
      'prefill in training mode',
    );
    state.dispose();
    a.dispose();
    b.dispose();
  });

  it('IA3 init is the identity (bit-identical); perturbed it equals k/v rows and down_proj columns scaled by hand', async () => {
    const ia3 = Ia3Adapter.create(model.config);
    expect(ia3.config.target_modules).toEqual(['k_proj', 'v_proj', 'down_proj']);
    expect(ia3.config.feedforward_modules).toEqual(['down_proj']);
    expect(ia3.sites).toEqual(['k_proj', 'v_proj', 'down_proj.input']);
    const kv = model.config.numKvHeads * model.config.headDim;
    expect(ia3.numParameters).toBe(
      model.config.numLayers * (2 * kv + model.config.intermediateSize),
    );
    const plain = await take(model.forward(IDS));
    const same = await take(model.forward(IDS, { adapter: ia3.attach(model) }));
    expect(Buffer.from(same.buffer).equals(Buffer.from(plain.buffer))).toBe(true);

    randomize(ia3, 'ia3', 0.3, 1);
    const named = ia3.namedParameters();
    const vec = (i: number, p: string) =>
      named.get(
        `base_model.model.model.layers.${i}.${p === 'down_proj' ? 'mlp' : 'self_attn'}.${p}.ia3_l`,
      ) as tf.Variable;
    expect(vec(0, 'k_proj').shape).toEqual([kv, 1]);
    expect(vec(0, 'down_proj').shape).toEqual([1, model.config.intermediateSize]);
    const { weights, made } = editWeights(model.weights, (l, i) => ({
      k_proj: { weight: tf.mul(l.k_proj.weight, vec(i, 'k_proj')), bias: null }, // rows [out, 1]
      v_proj: { weight: tf.mul(l.v_proj.weight, vec(i, 'v_proj')), bias: null },
      down_proj: { weight: tf.mul(l.down_proj.weight, vec(i, 'down_proj')), bias: null }, // columns [1, in]
    }));
    const want = await take(new CausalLM(model.config, weights).forward(IDS));
    expectClose(
      await take(model.forward(IDS, { adapter: ia3.attach(model) })),
      want,
      1e-4,
      0,
      'IA3 forward',
    );
    const { logits, state } = model.prefill(
      IDS.map((r) => r.slice(0, 6)),
      { adapter: ia3.attach(model) },
    );
    logits.dispose();
    const step = await take(model.decodeStep([7, 10], state));
    state.dispose();
    expectClose(
      step,
      [...want.subarray(6 * 64, 7 * 64), ...want.subarray(13 * 64, 14 * 64)],
      1e-4,
      0,
      'IA3 decode',
    );
    tf.dispose(made);
    ia3.dispose();
  });
});
