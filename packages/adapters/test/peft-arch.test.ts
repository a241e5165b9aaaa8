/**
 * Adapters saved by Python PEFT 0.21 on the architecture fixtures of @para/model (Qwen3, Gemma 2,
 * Gemma 3, OLMo 2, SmolLM3, Phi-3; goldens/make_peft_arch.py) load unchanged and give PEFT's
 * logits (≤ 1e-4). LoRA on every projection (on Phi-3 the fused qkv_proj / gate_up_proj, as
 * PEFT targets them) and IA3 on k, v and down_proj's input.
 */

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openSafetensorsFile } from '@para/core/node';
import { type CausalLM, loadModel } from '@para/model/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ia3Adapter, LoraAdapter, loadAdapter } from '../src/node';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
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
] as const;

const BACKENDS = testBackends().filter((b) => b === 'cpu' || b === 'wasm');

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
