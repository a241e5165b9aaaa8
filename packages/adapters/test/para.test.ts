/**
 * PARA on the backbone: exact identity when fresh, prompt-only vectors (padding and response
 * tokens never reach the pool), teacher forcing = prefill + cached decode, and a flat tensor
 * count over decode steps. On every backend in PARA_TEST_BACKENDS.
 */

import type { AdapterContext, CausalLM, ModelAdapter } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AdapterRequest,
  PARA_POOLERS,
  ParaAdapter,
  type ParaPooler,
  type ParaTarget,
} from '../src/index';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { at, leftPad, randomize, tinyModel } from './helpers/models';

const PROMPTS = [
  [1, 5, 9, 13, 4, 22],
  [1, 7, 30],
];
const RESPONSES = [
  [20, 21, 22],
  [30, 31, 32],
];

/** Wraps PARA's hooks to copy out the vectors layerInput stores (layer → target → values). */
function capturing(inner: ModelAdapter<AdapterRequest>, targets: readonly string[]) {
  const seen: tf.Tensor[][] = [];
  const adapter: ModelAdapter<AdapterRequest> = {
    sites: inner.sites,
    layerInput(ctx: AdapterContext<AdapterRequest>, h: tf.Tensor) {
      inner.layerInput?.(ctx, h);
      if (ctx.phase !== 'decode')
        seen[ctx.layer] = targets.map((t) =>
          tf.keep(tf.clone(ctx.state.scale(t as ParaTarget) as tf.Tensor)),
        );
    },
    transform: inner.transform,
  };
  return {
    adapter,
    async values(): Promise<Float32Array[][]> {
      const out: Float32Array[][] = [];
      for (const layer of seen)
        out.push(await Promise.all(layer.map(async (t) => (await t.data()) as Float32Array)));
      tf.dispose(seen.flat());
      seen.length = 0;
      return out;
    },
  };
}

describe.each(testBackends())('PARA on %s', (backend) => {
  let model: CausalLM;
  beforeAll(async () => {
    await useBackend(backend);
    model = tinyModel({ bias: { q: true, v: true } }, 3);
  });
  afterAll(() => model.dispose());

  it('a fresh adapter leaves the logits bit-identical (forward, prefill, decode; every pooler)', async () => {
    const { ids, mask } = leftPad(PROMPTS.map((p, b) => [...p, ...(RESPONSES[b] as number[])]));
    const plain = await take(model.forward(ids, { attentionMask: mask }));
    const pre = model.prefill(PROMPTS);
    const plainPre = await take(pre.logits);
    const plainStep = await take(model.decodeStep([20, 30], pre.state));
    pre.state.dispose();
    for (const pooler of PARA_POOLERS) {
      const para = ParaAdapter.create(
        model.config,
        { pooler, use_bias: true, activation: pooler === 'max' ? 'tanh' : 'gelu' },
        { seed: 5 },
      );
      const adapter = para.attach(model);
      const adapted = await take(
        model.forward(ids, {
          attentionMask: mask,
          adapter,
          request: { promptLengths: PROMPTS.map((p) => p.length) },
        }),
      );
      expect(
        Buffer.from(adapted.buffer).equals(Buffer.from(plain.buffer)),
        `${pooler}: forward logits bit-identical`,
      ).toBe(true);
      const { logits, state } = model.prefill(PROMPTS, { adapter, request: {} });
      const a = await take(logits);
      const s = await take(model.decodeStep([20, 30], state));
      state.dispose();
      expect(Buffer.from(a.buffer).equals(Buffer.from(plainPre.buffer)), `${pooler}: prefill`).toBe(
        true,
      );
      expect(Buffer.from(s.buffer).equals(Buffer.from(plainStep.buffer)), `${pooler}: decode`).toBe(
        true,
      );
      para.dispose();
    }
  });

  it.each(PARA_POOLERS)(
    'teacher-forced response logits equal prefill + cached decode (%s pooler)',
    async (pooler: ParaPooler) => {
      const para = ParaAdapter.create(model.config, { pooler, use_bias: true, r: 6 }, { seed: 1 });
      randomize(para, `teacher-${pooler}`, 0.3);
      const adapter = para.attach(model);
      const V = model.config.vocabSize;
      const { logits, state } = model.prefill(PROMPTS, { adapter, request: {} });
      const pre = await take(logits);
      const steps: Float32Array[] = [];
      for (let i = 0; i < 3; i++)
        steps.push(
          await take(
            model.decodeStep(
              RESPONSES.map((r) => r[i] as number),
              state,
            ),
          ),
        );
      state.dispose();

      const full = PROMPTS.map((p, b) => [...p, ...(RESPONSES[b] as number[])]);
      const { ids, mask, T } = leftPad(full);
      const promptLengths = PROMPTS.map((p) => p.length);
      const teacher = await take(
        model.forward(ids, { attentionMask: mask, adapter, request: { promptLengths } }),
      );
      const plain = await take(model.forward(ids, { attentionMask: mask }));
      for (let b = 0; b < 2; b++) {
        const p = promptLengths[b] as number;
        const off = T - (full[b] as number[]).length;
        expectClose(
          pre.subarray(b * V, (b + 1) * V),
          at(teacher, b, off + p - 1, T, V),
          1e-4,
          0,
          `row ${b} prefill`,
        );
        steps.forEach((st, i) => {
          expectClose(
            st.subarray(b * V, (b + 1) * V),
            at(teacher, b, off + p + i, T, V),
            1e-4,
            0,
            `row ${b} step ${i}`,
          );
        });
        let diff = 0;
        const x = at(teacher, b, off + p, T, V);
        const y = at(plain, b, off + p, T, V);
        for (let j = 0; j < V; j++)
          diff = Math.max(diff, Math.abs((x[j] as number) - (y[j] as number)));
        expect(diff, 'the adapter changes the logits').toBeGreaterThan(1e-3);
      }
      para.dispose();
    },
  );

  it.each(PARA_POOLERS)(
    'the pool sees only prompt tokens: response and padding leave the vectors unchanged (%s)',
    async (pooler: ParaPooler) => {
      const para = ParaAdapter.create(model.config, { pooler, use_bias: true, r: 4 }, { seed: 2 });
      randomize(para, `pool-${pooler}`, 0.3);
      const cap = capturing(para.attach(model), para.targets);
      const promptLengths = PROMPTS.map((p) => p.length);
      const run = async (responses: number[][], extraPad: number) => {
        const full = PROMPTS.map((p, b) => [...p, ...(responses[b] as number[])]);
        const { ids, mask } = leftPad(full.map((r) => r));
        const padded = ids.map((r) => [...new Array(extraPad).fill(0), ...r]);
        const pmask = mask.map((r) => [...new Array(extraPad).fill(0), ...r]);
        tf.dispose(
          model.forward(padded, {
            attentionMask: pmask,
            adapter: cap.adapter,
            request: { promptLengths },
          }),
        );
        return cap.values();
      };
      const a = await run(RESPONSES, 0);
      const same = await run(
        [
          [50, 51, 52],
          [60, 61, 62],
        ],
        0,
      ); // other response tokens, same shapes
      const b = await run([[50, 51, 52, 53, 54], [60]], 2); // other responses, other lengths, more padding
      // The prompts alone, through prefill (no promptLengths: the whole prompt is the prompt).
      const { logits, state } = model.prefill(PROMPTS, { adapter: cap.adapter, request: {} });
      logits.dispose();
      state.dispose();
      const c = await cap.values();
      expect(a.length).toBe(model.config.numLayers);
      a.forEach((layer, l) => {
        layer.forEach((v, t) => {
          // Same shapes: the response tokens enter only as exact zeros, so the vectors are bit-identical.
          expect(
            Buffer.from(v.buffer).equals(
              Buffer.from(((same[l] as Float32Array[])[t] as Float32Array).buffer),
            ),
            `layer ${l} target ${t}: other response tokens`,
          ).toBe(true);
          // Other lengths change the backends' reduction order (a few ulps), nothing more.
          expectClose(
            v,
            b[l]?.[t] as Float32Array,
            2e-6,
            2e-6,
            `layer ${l} target ${t}: other response lengths and padding`,
          );
          expectClose(
            v,
            c[l]?.[t] as Float32Array,
            2e-6,
            2e-6,
            `layer ${l} target ${t}: prefill of the prompt alone`,
          );
        });
      });
      // And the vectors do depend on the prompt.
      tf.dispose(
        model.forward([[1, 8, 8, 8, 8, 8, 20]], {
          adapter: cap.adapter,
          request: { promptLengths: [6] },
        }),
      );
      const d = await cap.values();
      let diff = 0;
      const v0 = d[1]?.[0] as Float32Array;
      const w0 = ((a[1] as Float32Array[])[0] as Float32Array).subarray(0, v0.length);
      for (let j = 0; j < v0.length; j++)
        diff = Math.max(diff, Math.abs((v0[j] as number) - (w0[j] as number)));
      expect(diff).toBeGreaterThan(1e-4);
      para.dispose();
    },
  );

  it('the vectors are [B, 1, dim] per target, kept in the decode state; decode keeps tf.memory() flat', async () => {
    const para = ParaAdapter.create(
      model.config,
      { target_modules: ['up_proj', 'q_proj'] },
      { seed: 3 },
    );
    randomize(para, 'mem', 0.2);
    const adapter = para.attach(model);
    const before = tf.memory().numTensors;
    const { logits, state } = model.prefill(PROMPTS, { adapter, request: {} });
    logits.dispose();
    expect(state.adapterState?.size).toBe(2 * model.config.numLayers);
    const l0 = state.adapterState?.layers[0];
    expect(l0?.scale('up_proj')?.shape).toEqual([2, 1, model.config.intermediateSize]);
    expect(l0?.scale('q_proj')?.shape).toEqual([
      2,
      1,
      model.config.numHeads * model.config.headDim,
    ]);
    expect(l0?.scale('v_proj')).toBeUndefined();
    tf.dispose(model.decodeStep([3, 4], state));
    const counts: number[] = [];
    for (let i = 0; i < 20; i++) {
      tf.dispose(model.decodeStep([5 + i, 6 + i], state));
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts).size).toBe(1);
    state.dispose();
    expect(tf.memory().numTensors).toBe(before);
    para.dispose();
  });

  it('bad prompt lengths are typed errors', async () => {
    const para = ParaAdapter.create(model.config);
    const adapter = para.attach(model);
    for (const promptLengths of [[3], [0, 2], [1.5, 2]]) {
      expect(() =>
        model.forward(
          [
            [1, 2, 3],
            [4, 5, 6],
          ],
          { adapter, request: { promptLengths } },
        ),
      ).toThrow(/promptLengths/);
    }
    para.dispose();
  });
});
