/**
 * Adapters saved by Python PEFT 0.21 on the architecture fixtures of @para/model (Qwen3, Gemma 2,
 * Gemma 3, OLMo 2, SmolLM3, Phi-3; goldens/make_peft_arch.py) load unchanged and give PEFT's
 * logits (≤ 1e-4). LoRA on every projection (on Phi-3 the fused qkv_proj / gate_up_proj, as
 * PEFT targets them) and IA3 on k, v and down_proj's input. Phi-3's fused LoRA: run as
 * per-projection LoRAs sharing A, saved back under PEFT's fused names bit for bit, trained with
 * one A (finite differences), refused on models without fused projections. IA3 on the fused
 * modules: ia3-fused.test.ts.
 */

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '@para/core';
import { openSafetensorsFile } from '@para/core/node';
import { type CausalLM, loadModel } from '@para/model/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adapterFromBytes,
  Ia3Adapter,
  LoraAdapter,
  loadAdapter,
  loraParameterCount,
  mixedAdapter,
  serializeAdapter,
} from '../src/node';
import { caught, expectClose, take, testBackends, useBackend } from './helpers/backends';
import { FIXTURES } from './helpers/models';

const MODEL_FIXTURES = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'model',
  'test',
  'goldens',
  'fixtures',
);

const CASES = [
  ['qwen3-bf16', 'lora'],
  ['qwen3-bf16', 'ia3'],
  ['gemma2-f16', 'lora'],
  ['gemma2-f16', 'ia3'],
  ['gemma3-bf16', 'lora'],
  ['gemma3-bf16', 'ia3'],
  ['olmo2-bf16', 'lora'],
  ['olmo2-bf16', 'ia3'],
  ['smollm3', 'lora'],
  ['smollm3', 'ia3'],
  ['phi3', 'lora'],
] as const;

// Every backend: the adapter logits of each architecture are checked against PEFT on webgpu too.
const BACKENDS = testBackends();

describe.each(BACKENDS.length > 0 ? BACKENDS : (['cpu'] as const))(
  'PEFT adapters on every architecture, %s',
  (backend) => {
    const models = new Map<string, CausalLM>();
    let ids: number[][];
    const golden: Record<string, Float32Array> = {};
    beforeAll(async () => {
      await useBackend(backend);
      for (const name of new Set(CASES.map((c) => c[0])))
        models.set(name, await loadModel(join(MODEL_FIXTURES, name)));
      const st = await openSafetensorsFile(join(FIXTURES, 'arch-goldens.safetensors'));
      const idData = await st.readData('input_ids');
      const [B, T] = idData.shape as [number, number];
      ids = Array.from({ length: B }, (_, b) =>
        Array.from(idData.data.subarray(b * T, (b + 1) * T)),
      );
      for (const n of st.names())
        if (n.endsWith('_logits')) golden[n] = (await st.readData(n)).data as Float32Array;
      await st.close();
    });
    afterAll(() => {
      for (const m of models.values()) m.dispose();
    });

    it.each(CASES)('%s: PEFT %s adapter gives PEFT logits', async (name, method) => {
      const model = models.get(name) as CausalLM;
      const base = golden[`${name}_base_logits`] as Float32Array;
      expectClose(await take(model.forward(ids)), base, 1e-4, 0, `${name} base`);
      const adapter = await loadAdapter(join(FIXTURES, `arch-${name}-${method}`), model);
      expect(adapter).toBeInstanceOf(method === 'lora' ? LoraAdapter : Ia3Adapter);
      const want = golden[`${name}_${method}_logits`] as Float32Array;
      const got = await take(model.forward(ids, { adapter: adapter.attach(model) }));
      expectClose(got, want, 1e-4, 0, `${name} ${method}`);
      // Far from the bare model, so the match means something.
      let diff = 0;
      for (let i = 0; i < want.length; i++)
        diff = Math.max(diff, Math.abs((want[i] as number) - (base[i] as number)));
      expect(diff).toBeGreaterThan(0.5);
      // Inference (a one-tenant mixed batch) agrees: prefill's last position.
      const V = model.config.vocabSize;
      const T = (ids[0] as number[]).length;
      const { logits, state } = model.prefill(ids, { adapter: adapter.attach(model), request: {} });
      const pre = await take(logits);
      state.dispose();
      for (let b = 0; b < ids.length; b++)
        expectClose(
          pre.subarray(b * V, (b + 1) * V),
          want.subarray((b * T + T - 1) * V, (b * T + T) * V),
          1e-4,
          0,
          `${name} ${method} prefill row ${b}`,
        );
      adapter.dispose();
    });
  },
);

describe.each(BACKENDS.length > 0 ? BACKENDS : (['cpu'] as const))(
  'Phi-3 LoRA on the fused qkv_proj / gate_up_proj, %s',
  (backend) => {
    let phi3: CausalLM;
    let qwen3: CausalLM;
    const dir = join(FIXTURES, 'arch-phi3-lora');
    beforeAll(async () => {
      await useBackend(backend);
      phi3 = await loadModel(join(MODEL_FIXTURES, 'phi3'));
      qwen3 = await loadModel(join(MODEL_FIXTURES, 'qwen3-bf16'));
    });
    afterAll(() => {
      phi3.dispose();
      qwen3.dispose();
    });

    it('saves back under PEFT fused names and values, bit for bit', async () => {
      const a = (await loadAdapter(dir, phi3)) as LoraAdapter;
      const st = await openSafetensorsFile(join(dir, 'adapter_model.safetensors'));
      const bytes = await serializeAdapter(a);
      expect(JSON.parse(bytes.config).target_modules).toEqual([
        'down_proj',
        'gate_up_proj',
        'o_proj',
        'qkv_proj',
      ]);
      const saved = a.stateDict();
      expect(Object.keys(saved).sort()).toEqual([...st.names()].sort());
      for (const n of st.names()) {
        const want = await st.readData(n);
        expect(saved[n]?.shape, n).toEqual(want.shape);
        expect(await (saved[n] as tf.Tensor).data(), n).toEqual(want.data);
      }
      await st.close();
      // One A per fused module (shared by q, k, v), B per part.
      const A = a.module(0, 'q_proj')?.A;
      expect(a.module(0, 'k_proj')?.A).toBe(A);
      expect(a.module(0, 'v_proj')?.A).toBe(A);
      expect(a.module(0, 'up_proj')?.A).toBe(a.module(0, 'gate_proj')?.A);
      expect(a.module(0, 'k_proj')?.B.shape).toEqual([
        phi3.config.numKvHeads * phi3.config.headDim,
        2,
      ]);
      const back = await adapterFromBytes(bytes.config, bytes.weights, phi3);
      const ids = [[1, 17, 43, 9, 5, 64, 23, 80]];
      expect(await take(phi3.forward(ids, { adapter: back.attach(phi3) }))).toEqual(
        await take(phi3.forward(ids, { adapter: a.attach(phi3) })),
      );
      back.dispose();
      a.dispose();
    });

    it('DoRA on the fused modules (magnitudes split by rows) gives PEFT logits; saved back exactly', async () => {
      const st = await openSafetensorsFile(join(FIXTURES, 'arch-goldens.safetensors'));
      const idData = await st.readData('input_ids');
      const want = (await st.readData('phi3_dora_logits')).data as Float32Array;
      await st.close();
      const [B, T] = idData.shape as [number, number];
      const ids = Array.from({ length: B }, (_, b) =>
        Array.from(idData.data.subarray(b * T, (b + 1) * T)),
      );
      const ddir = join(FIXTURES, 'arch-phi3-dora');
      const a = (await loadAdapter(ddir, phi3)) as LoraAdapter;
      expect(a.config.use_dora).toBe(true);
      expect(a.module(1, 'v_proj')?.magnitude?.shape).toEqual([
        phi3.config.numKvHeads * phi3.config.headDim,
      ]);
      expectClose(
        await take(phi3.forward(ids, { adapter: a.attach(phi3) })),
        want,
        1e-4,
        0,
        'phi3 dora',
      );
      const file = await openSafetensorsFile(join(ddir, 'adapter_model.safetensors'));
      const saved = a.stateDict();
      expect(Object.keys(saved).sort()).toEqual([...file.names()].sort());
      for (const n of file.names())
        expect(await (saved[n] as tf.Tensor).data(), n).toEqual((await file.readData(n)).data);
      await file.close();
      a.dispose();
    });

    it('"all-linear" on Phi-3 makes PEFT\'s fused LoRAs (the same tensors as PEFT\'s file)', async () => {
      const ours = LoraAdapter.create(phi3.config, { r: 2, target_modules: 'all-linear' });
      const st = await openSafetensorsFile(join(dir, 'adapter_model.safetensors'));
      const specs = ours.tensorSpecs();
      expect(specs.map((s) => s.name).sort()).toEqual([...st.names()].sort());
      for (const s of specs) expect(s.shape, s.name).toEqual((await st.info(s.name)).shape);
      await st.close();
      ours.dispose();
    });

    it('is refused on a model without fused projections, naming target_modules (and for IA3)', async () => {
      for (const e of [
        await caught(() => loadAdapter(dir, qwen3)),
        await caught(() => LoraAdapter.create(qwen3.config, { target_modules: ['qkv_proj'] })),
        await caught(() =>
          LoraAdapter.create(qwen3.config, { target_modules: ['q_proj', 'mlp.gate_up_proj'] }),
        ),
      ])
        expect(e, String(e)).toMatchObject({ code: 'UNSUPPORTED', field: 'target_modules' });
      expect(
        await caught(() =>
          LoraAdapter.create(phi3.config, {
            target_modules: ['qkv_proj'],
            rank_pattern: { qkv_proj: 4 },
          }),
        ),
      ).toMatchObject({ code: 'UNSUPPORTED', field: 'rank_pattern' });
      // IA3 on the fused qkv_proj (ia3-fused.test.ts) exists on Phi-3 only.
      expect(
        await caught(() =>
          Ia3Adapter.create(qwen3.config, { target_modules: ['qkv_proj', 'down_proj'] } as never),
        ),
      ).toMatchObject({ code: 'UNSUPPORTED', field: 'target_modules' });
    });

    it('a fresh fused LoRA trains one A: gradients match central differences; a mixed batch equals rows alone', async () => {
      const lora = LoraAdapter.create(
        phi3.config,
        { r: 2, lora_alpha: 4, target_modules: ['qkv_proj', 'gate_up_proj'] },
        { seed: 3 },
      );
      const rng = new Rng('fused');
      for (const [n, v] of lora.namedParameters()) {
        const t = rng.fork(n).normalTensor([...v.shape], 0, 0.2);
        v.assign(t);
        t.dispose();
      }
      expect(lora.numParameters).toBe(loraParameterCount(lora.config, phi3.config));
      const names = [...lora.namedParameters().keys()];
      expect(names.filter((n) => n.endsWith('lora_A.weight'))).toEqual([
        'base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight',
        'base_model.model.model.layers.0.mlp.gate_up_proj.lora_A.weight',
        'base_model.model.model.layers.1.self_attn.qkv_proj.lora_A.weight',
        'base_model.model.model.layers.1.mlp.gate_up_proj.lora_A.weight',
      ]);
      const ids = [[1, 17, 43, 9, 5, 64, 23, 80, 3]];
      const V = phi3.config.vocabSize;
      const T = (ids[0] as number[]).length;
      const w = new Float32Array(T * V);
      for (let i = 0; i < w.length; i++) w[i] = rng.normal();
      const probe = tf.tensor3d(w, [1, T, V]);
      const adapter = lora.attach(phi3);
      const loss = () => tf.sum(tf.mul(phi3.forward(ids, { adapter }), probe)) as tf.Scalar;
      const v = lora
        .namedParameters()
        .get('base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight') as tf.Variable;
      const { value, grads } = tf.variableGrads(loss, [v]);
      value.dispose();
      const g = await take(grads[v.name] as tf.Tensor);
      const base = (await v.data()) as Float32Array;
      for (const i of [0, 37, 101]) {
        const f = async (delta: number) => {
          const x = Float32Array.from(base);
          x[i] = (x[i] as number) + delta;
          const t = tf.tensor(x, v.shape);
          v.assign(t);
          t.dispose();
          return (await take(tf.tidy(loss)))[0] as number;
        };
        const fd = ((await f(1e-2)) - (await f(-1e-2))) / 2e-2;
        expect(Math.abs((g[i] as number) - fd), `A[${i}] ${g[i]} vs ${fd}`).toBeLessThanOrEqual(
          0.03 * Math.abs(fd) + 5e-3,
        );
      }
      const t = tf.tensor(base, v.shape);
      v.assign(t);
      t.dispose();
      probe.dispose();
      // Mixed: the fused LoRA beside a bare row.
      const prompts = [
        [1, 5, 9, 13],
        [1, 7, 3, 3, 8],
      ];
      const { logits, state } = phi3.prefill(prompts, {
        adapter: mixedAdapter(phi3, [lora, null]),
        request: {},
      });
      const pre = await take(logits);
      state.dispose();
      const alone = phi3.prefill([prompts[0] as number[]], {
        adapter: lora.attach(phi3),
        request: {},
      });
      expectClose(pre.subarray(0, V), await take(alone.logits), 1e-4, 0, 'fused row');
      alone.state.dispose();
      lora.dispose();
    });
  },
);
