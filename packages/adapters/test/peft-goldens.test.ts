/**
 * Interop with Python PEFT: adapters saved by PEFT 0.21 (`save_pretrained`, see
 * goldens/make_peft_goldens.py) load unchanged and give PEFT's logits on the same
 * transformers checkpoint. Ours, saved again, load back to the same values.
 */
import { join } from 'node:path';
import { openSafetensorsFile } from '@para/core/node';
import { type CausalLM, loadModel } from '@para/model/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ia3Adapter, LoraAdapter, loadAdapter } from '../src/node';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { FIXTURES } from './helpers/models';

describe.each(testBackends())('PEFT goldens on %s', (backend) => {
  let model: CausalLM;
  let ids: number[][];
  const golden: Record<string, Float32Array> = {};
  beforeAll(async () => {
    await useBackend(backend);
    model = await loadModel(join(FIXTURES, 'base'));
    const st = await openSafetensorsFile(join(FIXTURES, 'goldens.safetensors'));
    const idData = await st.readData('input_ids');
    const [B, T] = idData.shape as [number, number];
    ids = Array.from({ length: B }, (_, b) => Array.from(idData.data.subarray(b * T, (b + 1) * T)));
    for (const n of st.names())
      if (n.endsWith('_logits')) golden[n] = (await st.readData(n)).data as Float32Array;
    await st.close();
  });
  afterAll(() => model.dispose());

  it('the backbone matches transformers', async () => {
    expectClose(
      await take(model.forward(ids)),
      golden.base_logits as Float32Array,
      1e-4,
      0,
      'base',
    );
  });

  it.each([
    ['lora', LoraAdapter],
    ['lora-qv-layer1', LoraAdapter],
    ['ia3', Ia3Adapter],
  ] as const)('%s adapter from PEFT gives PEFT logits', async (name, kind) => {
    const adapter = await loadAdapter(join(FIXTURES, name), model);
    expect(adapter).toBeInstanceOf(kind);
    const got = await take(model.forward(ids, { adapter: adapter.attach(model) }));
    const want = golden[`${name}_logits`] as Float32Array;
    expectClose(got, want, 1e-4, 0, name);
    // Far from the bare model, so the match means something.
    let diff = 0;
    for (let i = 0; i < want.length; i++)
      diff = Math.max(
        diff,
        Math.abs((want[i] as number) - ((golden.base_logits as Float32Array)[i] as number)),
      );
    expect(diff).toBeGreaterThan(0.5);
    if (adapter instanceof LoraAdapter && name === 'lora') {
      adapter.merge(model);
      expectClose(
        await take(model.forward(ids)),
        golden.lora_merged_logits as Float32Array,
        1e-4,
        0,
        'merged',
      );
      adapter.unmerge(model);
      expectClose(
        await take(model.forward(ids)),
        golden.base_logits as Float32Array,
        1e-4,
        0,
        'unmerged',
      );
    }
    if (name === 'lora-qv-layer1') {
      expect((adapter as LoraAdapter).layers).toEqual([1]);
      expect((adapter as LoraAdapter).scaling).toBeCloseTo(6 / Math.sqrt(2), 12);
    }
    adapter.dispose();
  });
});
