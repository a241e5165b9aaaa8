import { fileURLToPath } from 'node:url';
import { loadModel } from '@para/model/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installWebGpuKernels, uninstallWebGpuKernels } from '../src/index';
import { countDecodeStep } from './decode-helpers';
import { listed, useWebGpu } from './helpers';

const BACKBONE = fileURLToPath(new URL('../../../assets/backbone', import.meta.url));
const IDS = [1, 200, 300, 400, 500, 600];

/**
 * Launches per decoded token of the bundled 4-layer backbone on webgpu (Dawn in Node), with the
 * generic tfjs path and with this package's kernels (as @para/core's start-up installs them).
 * Issue 17's budget is ≤ 12 per layer + ≤ 8 per token (56 here); since each layer's closing
 * residual add runs in the next norm (`ParaAddRmsNorm` across layers, the last one in the final
 * norm) it is 12 per layer + 3 per token (51 here), and the test fails above that.
 */
describe.skipIf(!listed('webgpu'))('dispatches per decoded token on webgpu', () => {
  let model: Awaited<ReturnType<typeof loadModel>>;
  beforeAll(async () => {
    await useWebGpu();
    model = await loadModel(BACKBONE);
  });
  afterAll(() => {
    model?.dispose();
    installWebGpuKernels();
  });

  it('go down with the fused kernels installed', async () => {
    const layers = model.config.numLayers;
    const run = (n: number) => model.generate([IDS], { maxNewTokens: n, stopTokens: [] });
    uninstallWebGpuKernels();
    await run(3); // warm-up: pipelines compiled
    const before = await countDecodeStep(run);
    installWebGpuKernels();
    await run(3);
    const after = await countDecodeStep(run);
    // 12 per layer (7 matmuls, input norm with the previous residual add, RoPE + KV write,
    // attention, residual + post-attention norm, SwiGLU) + 3 per token (embedding gather, final
    // norm with the last residual add, lm_head).
    const budget = 12 * layers + 3;
    console.log(
      `decode step, ${layers} layers: generic ${before.dispatches} dispatches (${before.kernels} kernels besides Reshape), fused ${after.dispatches} dispatches (${after.kernels} kernels); budget ${budget}\n` +
        `  generic kernels: ${before.byKernel.map(([k, n]) => `${k} ${n}`).join(', ')}\n` +
        `  fused kernels:   ${after.byKernel.map(([k, n]) => `${k} ${n}`).join(', ')}\n` +
        `  fused programs:  ${after.byProgram.map(([k, n]) => `${k} ${n}`).join(', ')}`,
    );
    expect(after.dispatches).toBeLessThan(before.dispatches);
    expect(after.kernels).toBeLessThan(before.kernels);
    // Issue 17's launch budget (≤ 12 per layer + ≤ 8 per token), lowered to what is reached.
    expect(after.dispatches).toBeLessThanOrEqual(budget);
    // The residual adds all run inside the norms: no Add kernel is left, the only plain
    // ParaRmsNorm is layer 0's input norm, and every other norm adds its residual.
    const count = (k: string) => after.byKernel.find(([name]) => name === k)?.[1] ?? 0;
    expect(count('Add')).toBe(0);
    expect(count('ParaRmsNorm')).toBe(1);
    expect(count('ParaAddRmsNorm')).toBe(2 * layers);
    expect(after.byKernel.map(([k]) => k)).toEqual(
      expect.arrayContaining([
        'ParaRmsNorm',
        'ParaAddRmsNorm',
        'ParaRopeKvWrite',
        'ParaAttention',
        'ParaSwiGlu',
      ]),
    );
    const n = tf.memory().numTensors;
    await run(3);
    expect(tf.memory().numTensors).toBe(n);
  });
});
