import { fileURLToPath } from 'node:url';
import { type AdapterRequest, loadAdapter } from '@para/adapters/node';
import { loadModel } from '@para/model/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installWebGpuKernels, uninstallWebGpuKernels } from '../src/index';
import { listed, seeded, useWebGpu } from './helpers';

const ASSETS = fileURLToPath(new URL('../../../assets', import.meta.url));

/**
 * A training step's gradients through the whole model (the forward pass and its backward pass
 * run the fused kernels and their Grad kernels) equal those of the generic tfjs path.
 */
describe.skipIf(!listed('webgpu'))('PARA gradients through the bundled backbone on webgpu', () => {
  let model: Awaited<ReturnType<typeof loadModel>>;
  beforeAll(async () => {
    await useWebGpu();
    model = await loadModel(`${ASSETS}/backbone`);
  });
  afterAll(() => {
    model?.dispose();
    installWebGpuKernels();
  });

  it('equal with and without the fused kernels (forward loss and every adapter gradient)', async () => {
    const adapter = await loadAdapter(`${ASSETS}/adapters/pos`, model);
    const hooks = adapter.attach(model);
    const ids = [
      [1, 200, 300, 400, 500, 600, 700, 800],
      [1, 210, 310, 410, 510, 610, 710, 810],
    ];
    const request: AdapterRequest = { promptLengths: [5, 6] } as AdapterRequest;
    const V = model.config.vocabSize;
    const probe = tf.tensor3d(seeded(2 * 8 * V, 42), [2, 8, V]);
    const params = (adapter as unknown as { parameters(): tf.Variable[] }).parameters();
    const step = () =>
      tf.variableGrads(
        () => tf.sum(tf.mul(model.forward(ids, { adapter: hooks, request }), probe)) as tf.Scalar,
        params,
      );
    const read = async (r: { value: tf.Scalar; grads: tf.NamedTensorMap }) => {
      const out: Record<string, Float32Array> = { loss: (await r.value.data()) as Float32Array };
      for (const [k, g] of Object.entries(r.grads)) out[k] = (await g.data()) as Float32Array;
      tf.dispose([r.value, ...Object.values(r.grads)]);
      return out;
    };
    uninstallWebGpuKernels();
    const generic = await read(step());
    installWebGpuKernels();
    const before = tf.memory().numTensors;
    const info = await tf.profile(async () => read(step()));
    const fused = info.result as unknown as Record<string, Float32Array>;
    const names = new Set(info.kernelNames);
    // Every norm on the gradient path adds a residual (each layer's closing add runs in the next
    // norm, the last in the final norm), so the backward pass runs ParaAddRmsNormGrad; the one
    // plain ParaRmsNorm (layer 0's input norm, on the embedding) needs no gradient here.
    for (const k of [
      'ParaRmsNorm',
      'ParaAddRmsNorm',
      'ParaAddRmsNormGrad',
      'ParaSwiGlu',
      'ParaSwiGluGrad',
      'ParaRope',
    ])
      expect(names.has(k), `${k} ran`).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    expect(Object.keys(fused).sort()).toEqual(Object.keys(generic).sort());
    let worstRel = 0;
    for (const [k, want] of Object.entries(generic)) {
      const got = fused[k] as Float32Array;
      let scale = 0;
      for (const x of want) scale = Math.max(scale, Math.abs(x));
      let err = 0;
      for (let i = 0; i < want.length; i++)
        err = Math.max(err, Math.abs((got[i] as number) - (want[i] as number)));
      expect(Number.isFinite(err)).toBe(true);
      worstRel = Math.max(worstRel, err / Math.max(scale, 1e-30));
    }
    console.log(
      `PARA step: worst |fused − generic| / max|generic| over loss and gradients: ${worstRel.toExponential(2)}`,
    );
    // float32 through 4 layers, sums in another order: relative to each tensor's scale.
    expect(worstRel).toBeLessThan(2e-5); // measured 2.2e-6
    probe.dispose();
    (adapter as { dispose?: () => void }).dispose?.();
  });
});
