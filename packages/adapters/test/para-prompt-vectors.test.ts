/**
 * paraPromptVectors: the vectors PARA generates for a prompt, read back per layer and target —
 * equal to what prefill (the mixed-batch inference path) stores as the layer's scales, 1 for a
 * fresh adapter, different for different prompts, and no tensors left behind.
 */

import type { AdapterContext, CausalLM, ModelAdapter } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdapterRequest, ParaAdapter, type ParaTarget, paraPromptVectors } from '../src/index';
import { expectClose, testBackends, useBackend } from './helpers/backends';
import { randomize, tinyModel } from './helpers/models';

/** The scales prefill stores per layer (target order), copied out. */
async function prefillScales(model: CausalLM, para: ParaAdapter, ids: number[]) {
  const inner = para.attach(model);
  const seen: tf.Tensor[][] = [];
  const adapter: ModelAdapter<AdapterRequest> = {
    ...inner,
    layerInput(ctx: AdapterContext<AdapterRequest>, h: tf.Tensor) {
      inner.layerInput?.(ctx, h);
      if (ctx.phase === 'prefill')
        seen[ctx.layer] = para.targets.map((t: ParaTarget) =>
          tf.keep(tf.reshape(ctx.state.scale(t) as tf.Tensor, [-1])),
        );
    },
  };
  const { logits, state } = model.prefill([ids], { adapter, request: {} });
  logits.dispose();
  state.dispose();
  const out: Float32Array[][] = [];
  for (const l of seen)
    out.push(await Promise.all(l.map(async (t) => (await t.data()) as Float32Array)));
  tf.dispose(seen.flat());
  return out;
}

describe.each(testBackends())('paraPromptVectors on %s', (backend) => {
  let model: CausalLM;
  beforeAll(async () => {
    await useBackend(backend);
    model = tinyModel({}, 3);
  });
  afterAll(() => model.dispose());

  it('equals the scales prefill computes, layer by layer, and depends on the prompt', async () => {
    const para = ParaAdapter.create(model.config, { r: 4 }, { seed: 2 });
    randomize(para, 'prompt-vectors', 0.3);
    const a = [1, 5, 9, 13, 4];
    const b = [1, 7, 30];
    const before = tf.memory().numTensors;
    const v = await paraPromptVectors(model, para, a);
    expect(tf.memory().numTensors).toBe(before);
    expect(v.targets).toEqual(para.targets);
    expect(v.dims).toEqual(para.dims);
    expect(v.layers).toHaveLength(model.config.numLayers);
    const ref = await prefillScales(model, para, a);
    v.layers.forEach((layer, i) => {
      layer.forEach((values, j) => {
        expect(values).toHaveLength(para.dims[j] as number);
        expectClose(values, ref[i]?.[j] as Float32Array, 1e-5, 1e-5, `layer ${i} target ${j}`);
      });
    });
    const w = await paraPromptVectors(model, para, b);
    const diff = Math.max(
      ...v.layers.flatMap((l, i) =>
        l.flatMap((x, j) => [...x].map((y, k) => Math.abs(y - (w.layers[i]?.[j]?.[k] as number)))),
      ),
    );
    expect(diff).toBeGreaterThan(1e-3);
    para.dispose();
  });

  it('a fresh adapter generates exactly 1 everywhere', async () => {
    const para = ParaAdapter.create(model.config, {}, { seed: 1 });
    const v = await paraPromptVectors(model, para, [1, 5, 9]);
    for (const layer of v.layers)
      for (const x of layer) expect([...x].every((y) => y === 1)).toBe(true);
    para.dispose();
  });
});
