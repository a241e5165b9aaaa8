/**
 * IA3 on Phi-3's fused qkv_proj / gate_up_proj, as PEFT 0.21 makes it
 * (goldens/make_peft_ia3_phi3.py: output scales on qkv_proj, o_proj, gate_up_proj, the input of
 * down_proj). The fused vectors run as per-projection output scales (q, k, v; gate, up): PEFT's
 * logits (≤ 1e-4) in forward and prefill, saved back under PEFT's fused names bit for bit, a
 * mixed batch beside a PARA row equals each row alone, and fused names are refused on a model
 * without fused projections (target_modules) and as feed-forward modules.
 */

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openSafetensorsFile } from '@para/core/node';
import { type CausalLM, loadModel } from '@para/model/node';
import type * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adapterFromBytes,
  Ia3Adapter,
  ia3ParameterCount,
  loadAdapter,
  mixedAdapter,
  ParaAdapter,
  serializeAdapter,
} from '../src/node';
import { caught, expectClose, take, testBackends, useBackend } from './helpers/backends';
import { FIXTURES, randomize } from './helpers/models';

const MODEL_FIXTURES = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'model',
  'test',
  'goldens',
  'fixtures',
);
const DIR = join(FIXTURES, 'arch-phi3-ia3');
const BACKENDS = testBackends();

describe.each(BACKENDS.length > 0 ? BACKENDS : (['cpu'] as const))(
  'Phi-3 IA3 on the fused qkv_proj / gate_up_proj, %s',
  (backend) => {
    let phi3: CausalLM;
    let qwen3: CausalLM;
    let ids: number[][];
    let want: Float32Array;
    beforeAll(async () => {
      await useBackend(backend);
      phi3 = await loadModel(join(MODEL_FIXTURES, 'phi3'));
      qwen3 = await loadModel(join(MODEL_FIXTURES, 'qwen3-bf16'));
      const st = await openSafetensorsFile(join(FIXTURES, 'ia3-phi3-goldens.safetensors'));
      const idData = await st.readData('input_ids');
      const [B, T] = idData.shape as [number, number];
      ids = Array.from({ length: B }, (_, b) =>
        Array.from(idData.data.subarray(b * T, (b + 1) * T)),
      );
      want = (await st.readData('phi3_ia3_logits')).data as Float32Array;
      await st.close();
    });
    afterAll(() => {
      phi3.dispose();
      qwen3.dispose();
    });

    it("PEFT's fused IA3 gives PEFT's logits (forward and prefill)", async () => {
      const a = await loadAdapter(DIR, phi3);
      expect(a).toBeInstanceOf(Ia3Adapter);
      const base = await take(phi3.forward(ids));
      const got = await take(phi3.forward(ids, { adapter: a.attach(phi3) }));
      expectClose(got, want, 1e-4, 0, 'phi3 ia3');
      let diff = 0;
      for (let i = 0; i < want.length; i++)
        diff = Math.max(diff, Math.abs((want[i] as number) - (base[i] as number)));
      expect(diff).toBeGreaterThan(0.5);
      const V = phi3.config.vocabSize;
      const T = (ids[0] as number[]).length;
      const { logits, state } = phi3.prefill(ids, { adapter: a.attach(phi3), request: {} });
      const pre = await take(logits);
      state.dispose();
      for (let b = 0; b < ids.length; b++)
        expectClose(
          pre.subarray(b * V, (b + 1) * V),
          want.subarray((b * T + T - 1) * V, (b * T + T) * V),
          1e-4,
          0,
          `phi3 ia3 prefill row ${b}`,
        );
      a.dispose();
    });

    it("runs as per-projection scales and saves back PEFT's file bit for bit", async () => {
      const a = (await loadAdapter(DIR, phi3)) as Ia3Adapter;
      const c = phi3.config;
      expect(a.config.target_modules.slice().sort()).toEqual(
        ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'].sort(),
      );
      expect(a.vector(0, 'q_proj')?.shape).toEqual([c.numHeads * c.headDim]);
      expect(a.vector(0, 'k_proj')?.shape).toEqual([c.numKvHeads * c.headDim]);
      expect(a.vector(0, 'gate_proj')?.shape).toEqual([c.intermediateSize]);
      expect(a.vector(0, 'down_proj.input')?.shape).toEqual([c.intermediateSize]);
      expect(a.numParameters).toBe(ia3ParameterCount(a.config, c));
      expect(a.numParameters).toBe(
        c.numLayers *
          ((c.numHeads + 2 * c.numKvHeads) * c.headDim +
            c.hiddenSize +
            2 * c.intermediateSize +
            c.intermediateSize),
      );
      const st = await openSafetensorsFile(join(DIR, 'adapter_model.safetensors'));
      const specs = a.tensorSpecs();
      expect(specs.map((s) => s.name).sort()).toEqual([...st.names()].sort());
      for (const s of specs) expect(s.shape, s.name).toEqual((await st.info(s.name)).shape);
      expect(
        (await st.info('base_model.model.model.layers.0.self_attn.qkv_proj.ia3_l')).shape,
      ).toEqual([(c.numHeads + 2 * c.numKvHeads) * c.headDim, 1]);
      const saved = a.stateDict();
      expect(Object.keys(saved).sort()).toEqual([...st.names()].sort());
      for (const n of st.names()) {
        const w = await st.readData(n);
        expect(saved[n]?.shape, n).toEqual(w.shape);
        expect(await (saved[n] as tf.Tensor).data(), n).toEqual(w.data);
      }
      await st.close();
      const bytes = await serializeAdapter(a);
      const cfg = JSON.parse(bytes.config);
      const peftCfg = JSON.parse(readFileSync(join(DIR, 'adapter_config.json'), 'utf8'));
      expect(cfg.target_modules).toEqual(peftCfg.target_modules);
      expect(cfg.feedforward_modules).toEqual(peftCfg.feedforward_modules);
      const file = new Uint8Array(readFileSync(join(DIR, 'adapter_model.safetensors')));
      expect(Buffer.from(bytes.weights).equals(Buffer.from(file))).toBe(true);
      const back = await adapterFromBytes(bytes.config, bytes.weights, phi3);
      const few = [[1, 17, 43, 9, 5, 64, 23, 80]];
      expect(await take(phi3.forward(few, { adapter: back.attach(phi3) }))).toEqual(
        await take(phi3.forward(few, { adapter: a.attach(phi3) })),
      );
      back.dispose();
      a.dispose();
    });

    it('a mixed batch of the fused IA3 beside a PARA row equals each row alone', async () => {
      const ia3 = await loadAdapter(DIR, phi3);
      const para = ParaAdapter.create(phi3.config, { r: 4 }, { seed: 5 });
      randomize(para, 'phi3-para', 0.3);
      const prompts = [
        [1, 5, 9, 13, 2],
        [1, 7, 3, 3, 8, 40],
      ];
      const V = phi3.config.vocabSize;
      const { logits, state } = phi3.prefill(prompts, {
        adapter: mixedAdapter(phi3, [ia3, para]),
        request: {},
      });
      const pre = await take(logits);
      state.dispose();
      for (const [row, a] of [
        [0, ia3],
        [1, para],
      ] as const) {
        const alone = phi3.prefill([prompts[row] as number[]], {
          adapter: a.attach(phi3),
          request: {},
        });
        expectClose(
          pre.subarray(row * V, (row + 1) * V),
          await take(alone.logits),
          1e-4,
          0,
          `row ${row}`,
        );
        alone.state.dispose();
      }
      // The PARA row is changed by its adapter, so the match means something.
      const bare = phi3.prefill([prompts[1] as number[]], { request: {} });
      const b = await take(bare.logits);
      bare.state.dispose();
      let diff = 0;
      for (let i = 0; i < V; i++)
        diff = Math.max(diff, Math.abs((b[i] as number) - (pre[V + i] as number)));
      expect(diff).toBeGreaterThan(1e-3);
      para.dispose();
      ia3.dispose();
    });

    it('is refused on a model without fused projections (target_modules) and where not implemented', async () => {
      for (const e of [
        await caught(() => loadAdapter(DIR, qwen3)),
        await caught(() =>
          Ia3Adapter.create(qwen3.config, { target_modules: ['qkv_proj'] } as never),
        ),
      ])
        expect(e, String(e)).toMatchObject({ code: 'UNSUPPORTED', field: 'target_modules' });
      expect(
        await caught(() =>
          Ia3Adapter.create(phi3.config, {
            target_modules: ['qkv_proj', 'down_proj'],
            feedforward_modules: ['qkv_proj'],
          } as never),
        ),
      ).toMatchObject({ code: 'UNSUPPORTED', field: 'feedforward_modules' });
      for (const tm of [
        ['qkv_proj', 'k_proj'],
        ['model.layers.0.self_attn.qkv_proj'],
        ['gate_up_proj', 'model.layers.0.mlp.down_proj'],
      ])
        expect(
          await caught(() => Ia3Adapter.create(phi3.config, { target_modules: tm } as never)),
          JSON.stringify(tm),
        ).toMatchObject({ code: 'UNSUPPORTED', field: 'target_modules' });
    });

    it('merges into the weights: the merged model gives the adapter logits', async () => {
      const a = (await loadAdapter(DIR, phi3)) as Ia3Adapter;
      a.merge(phi3);
      expectClose(await take(phi3.forward(ids)), want, 1e-4, 0, 'merged');
      a.dispose();
    });
  },
);
