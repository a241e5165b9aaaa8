/**
 * Mixed-tenant batches: one prefill + decode over rows with different adapters (PARA of several
 * configs, LoRA of different ranks and targets, IA3, none) equals each row run alone with its own
 * adapter; per-row state has the batch first; decode keeps tf.memory() flat.
 */

import type { CausalLM } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AnyAdapter,
  Ia3Adapter,
  LoraAdapter,
  MixedBatch,
  mixedAdapter,
  ParaAdapter,
} from '../src/index';
import { caught, expectClose, take, testBackends, useBackend } from './helpers/backends';
import { at, leftPad, randomize, tinyModel } from './helpers/models';

const PROMPTS = [
  [1, 5, 9, 13, 4, 22],
  [1, 7, 30],
  [1, 8, 8, 3, 2],
  [1, 40, 41, 42, 43, 44, 45],
  [1, 11],
  [1, 50, 12, 13],
  [1, 5, 9, 13],
  [1, 3, 3, 3, 3],
  [1, 60, 61],
  [1, 9, 9, 9, 9, 9, 9, 9],
];
const STEPS = [
  [20, 21, 22],
  [30, 31, 32],
  [33, 34, 35],
  [36, 37, 38],
  [39, 40, 41],
  [42, 43, 44],
  [45, 46, 47],
  [48, 49, 50],
  [51, 52, 53],
  [54, 55, 56],
];

describe.each(testBackends())('mixed-tenant batches on %s', (backend) => {
  let model: CausalLM;
  let rows: (AnyAdapter | null)[];
  let owned: AnyAdapter[];
  beforeAll(async () => {
    await useBackend(backend);
    model = tinyModel({ bias: { q: true, v: true } }, 6);
    const c = model.config;
    const paraA = ParaAdapter.create(c, { r: 4 }, { seed: 1 });
    const paraB = ParaAdapter.create(
      c,
      {
        r: 3,
        pooler: 'attention',
        use_bias: true,
        target_modules: ['up_proj'],
        activation: 'tanh',
      },
      { seed: 2 },
    );
    const paraC = ParaAdapter.create(
      c,
      { r: 6, pooler: 'last', target_modules: ['v_proj'] },
      { seed: 3 },
    );
    const loraX = LoraAdapter.create(c, { r: 2, lora_alpha: 4 }, { seed: 4 });
    const loraY = LoraAdapter.create(
      c,
      {
        r: 5,
        lora_alpha: 3,
        target_modules: ['v_proj', 'down_proj', 'o_proj'],
        layers_to_transform: [1],
      },
      { seed: 5 },
    );
    const ia3 = Ia3Adapter.create(c);
    // Same generator shapes as A and B: computed together with per-row stacked parameters.
    const paraD = ParaAdapter.create(c, { r: 4 }, { seed: 7 });
    const paraF = ParaAdapter.create(
      c,
      {
        r: 3,
        pooler: 'attention',
        use_bias: true,
        target_modules: ['up_proj'],
        activation: 'tanh',
      },
      { seed: 8 },
    );
    owned = [paraA, paraB, paraC, loraX, loraY, ia3, paraD, paraF];
    owned.forEach((a, i) => {
      randomize(a, `tenant${i}`, 0.3, a instanceof Ia3Adapter ? 1 : 0);
    });
    rows = [paraA, loraX, null, paraB, ia3, loraY, paraA, paraC, paraD, paraF];
  });
  afterAll(() => {
    for (const a of owned) a.dispose();
    model.dispose();
  });

  it('prefill + cached decode of a mixed batch equals each row alone with its own adapter', async () => {
    const V = model.config.vocabSize;
    const adapter = mixedAdapter(model, rows);
    const { logits, state } = model.prefill(PROMPTS, { adapter, request: {} });
    const pre = await take(logits);
    const steps: Float32Array[] = [];
    for (let i = 0; i < 3; i++)
      steps.push(
        await take(
          model.decodeStep(
            STEPS.map((s) => s[i] as number),
            state,
          ),
        ),
      );
    // Per-row state, batch first: PARA/IA3 scales [B, 1, dim], LoRA factors [B, in, r_max].
    const l1 = state.adapterState?.layers[1];
    expect(l1?.scale('q_proj')?.shape).toEqual([
      10,
      1,
      model.config.numHeads * model.config.headDim,
    ]);
    expect(l1?.scale('down_proj.input')?.shape).toEqual([10, 1, model.config.intermediateSize]);
    expect(l1?.lora('v_proj')?.a.shape).toEqual([10, model.config.hiddenSize, 5]);
    expect(l1?.lora('v_proj')?.b.shape).toEqual([
      10,
      5,
      model.config.numKvHeads * model.config.headDim,
    ]);
    expect(state.adapterState?.layers[0]?.lora('o_proj')).toBeUndefined(); // loraY: layer 1 only
    state.dispose();

    let changed = 0;
    const plain = model.prefill(PROMPTS);
    const plainPre = await take(plain.logits);
    plain.state.dispose();
    for (let b = 0; b < rows.length; b++) {
      const own = rows[b] ?? null;
      const alone = model.prefill(
        [PROMPTS[b] as number[]],
        own === null ? {} : { adapter: own.attach(model), request: {} },
      );
      expectClose(
        pre.subarray(b * V, (b + 1) * V),
        await take(alone.logits),
        1e-4,
        0,
        `row ${b} prefill`,
      );
      for (let i = 0; i < 3; i++) {
        const s = await take(model.decodeStep([(STEPS[b] as number[])[i] as number], alone.state));
        expectClose(
          (steps[i] as Float32Array).subarray(b * V, (b + 1) * V),
          s,
          1e-4,
          0,
          `row ${b} step ${i}`,
        );
      }
      alone.state.dispose();
      let d = 0;
      for (let j = 0; j < V; j++)
        d = Math.max(d, Math.abs((pre[b * V + j] as number) - (plainPre[b * V + j] as number)));
      if (d > 1e-3) changed++;
      if (own === null) expect(d).toBe(0); // the bare row is exactly the bare model
    }
    expect(changed).toBe(rows.length - 1);
  });

  it('a teacher-forced mixed batch (forward with promptLengths) equals each row alone', async () => {
    const V = model.config.vocabSize;
    const full = PROMPTS.map((p, b) => [...p, ...(STEPS[b] as number[])]);
    const { ids, mask, T } = leftPad(full);
    const promptLengths = PROMPTS.map((p) => p.length);
    const mixed = await take(
      model.forward(ids, {
        attentionMask: mask,
        adapter: mixedAdapter(model, rows),
        request: { promptLengths },
      }),
    );
    for (let b = 0; b < rows.length; b++) {
      const own = rows[b] ?? null;
      const row = full[b] as number[];
      const alone = await take(
        model.forward(
          [row],
          own === null
            ? {}
            : {
                adapter: own.attach(model),
                request: { promptLengths: [promptLengths[b] as number] },
              },
        ),
      );
      const off = T - row.length;
      for (let t = 0; t < row.length; t++)
        expectClose(
          at(mixed, b, off + t, T, V),
          at(alone, 0, t, row.length, V),
          1e-4,
          0,
          `row ${b} pos ${t}`,
        );
    }
  });

  it('decode over a mixed batch keeps tf.memory() flat; the batch must match the rows', async () => {
    const batch = new MixedBatch(model, rows);
    const before = tf.memory().numTensors;
    const { logits, state } = model.prefill(PROMPTS, {
      adapter: batch.modelAdapter(),
      request: {},
    });
    logits.dispose();
    tf.dispose(
      model.decodeStep(
        STEPS.map((s) => s[0] as number),
        state,
      ),
    );
    const counts: number[] = [];
    for (let i = 0; i < 10; i++) {
      tf.dispose(
        model.decodeStep(
          STEPS.map((s) => ((s[1] as number) + i) % 64),
          state,
        ),
      );
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts).size).toBe(1);
    state.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const e = (await caught(() =>
      model.prefill(PROMPTS.slice(0, 3), { adapter: batch.modelAdapter() }),
    )) as { code?: string };
    expect(e?.code).toBe('SHAPE_MISMATCH');
    expect(tf.memory().numTensors).toBe(before);
    const other = ParaAdapter.create({ ...model.config, hiddenSize: 64, numHeads: 4, headDim: 16 });
    expect(((await caught(() => new MixedBatch(model, [other]))) as { code?: string }).code).toBe(
      'SHAPE_MISMATCH',
    );
    other.dispose();
  });
});
