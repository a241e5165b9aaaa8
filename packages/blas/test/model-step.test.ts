/**
 * End to end with the fused kernels on and off (issue 16): a full training step of a small
 * decoder (forward over a left-padded batch, the weighted cross-entropy, the gradient of every
 * weight) and a cached greedy decode give the same numbers within 1e-5 of each tensor's scale.
 * The model and the loss come from source (relative imports: neither is a dependency of this
 * package); on and off is `installFusedKernels` / `uninstallFusedKernels`, so every fused
 * kernel @para/blas registers (RMSNorm, SwiGLU, RoPE, attention, cross-entropy) takes part.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CausalLM, createConfig } from '../../model/src/index';
import { weightedCrossEntropy } from '../../train/src/loss';
import { fullTrainable, type TrainableModel } from '../../train/src/trainable';
import {
  installBlasKernels,
  installFusedKernels,
  uninstallBlasKernels,
  uninstallFusedKernels,
} from '../src/index';
import { status } from './helpers';

function withFused<T>(on: boolean, fn: () => T): T {
  if (on) installFusedKernels();
  else uninstallFusedKernels();
  try {
    return fn();
  } finally {
    installFusedKernels();
  }
}

/** max |a − b| / max(1, max |b|) */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  let scale = 1;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i] as number));
  for (let i = 0; i < b.length; i++)
    worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst / scale;
}

describe.runIf(status.available)('a training step and a decode, fused kernels on vs off', () => {
  let model: CausalLM;
  let full: TrainableModel; // the same weights as tf.Variables (full fine-tuning)

  beforeAll(async () => {
    await tf.setBackend('wasm');
    installBlasKernels();
    model = CausalLM.random(
      createConfig({
        vocabSize: 96,
        hiddenSize: 64,
        intermediateSize: 112,
        numLayers: 2,
        numHeads: 4,
        numKvHeads: 2,
        maxPositionEmbeddings: 128,
        rmsNormEps: 1e-5,
        initializerRange: 0.1,
        bosTokenId: 1,
        eosTokenIds: [2],
      }),
      11,
    );
    // One class, two declarations for tsc: this test imports the model's source, while
    // train's source sees @para/model's built types.
    full = fullTrainable(model as unknown as Parameters<typeof fullTrainable>[0]);
  });

  afterAll(() => {
    full.model.dispose();
    model.dispose();
    uninstallBlasKernels();
  });

  it('loss and the gradient of every weight (left-padded batch of 3 × 20)', () => {
    const [B, T, V] = [3, 20, 96];
    const ids = Array.from({ length: B }, (_, b) =>
      Array.from({ length: T }, (_, t) => 3 + ((b * 31 + t * 17) % (V - 3))),
    );
    const mask = ids.map((_, b) => Array.from({ length: T }, (_, t) => (t < 3 * b ? 0 : 1)));
    const targets = tf.tensor1d(
      ids.flatMap((row) => [...row.slice(1), 2]),
      'int32',
    ); // [B·T]
    const weights = tf.tensor1d(mask.flat().map((m) => m / 40)); // [B·T]
    const step = () =>
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const logits = full.model.forward(ids, { attentionMask: mask }); // [B, T, V]
          return weightedCrossEntropy(tf.reshape(logits, [B * T, V]), targets, weights);
        });
        const names = Object.keys(grads).sort();
        return { value, names, grads: names.map((n) => grads[n] as tf.Tensor) };
      });
    const read = (r: ReturnType<typeof step>) => {
      const out = {
        value: r.value.dataSync()[0] as number,
        names: r.names,
        grads: r.grads.map((g) => g.dataSync().slice()),
      };
      tf.dispose([r.value, ...r.grads]);
      return out;
    };
    const before = tf.memory().numTensors;
    const fusedProfile = withFused(true, () => read(step()));
    const generic = withFused(false, () => read(step()));
    expect(tf.memory().numTensors).toBe(before);
    expect(Number.isFinite(generic.value)).toBe(true);
    expect(Math.abs(fusedProfile.value - generic.value) / Math.abs(generic.value)).toBeLessThan(
      1e-5,
    );
    expect(fusedProfile.names).toEqual(generic.names);
    expect(generic.names.length).toBeGreaterThan(10);
    generic.grads.forEach((g, i) => {
      const d = relDiff(fusedProfile.grads[i] as Float32Array, g);
      expect(d, `${generic.names[i]}: ${d}`).toBeLessThan(1e-5);
    });
    tf.dispose([targets, weights]);
  });

  it('the fused step runs the fused kernels (attention and cross-entropy included)', async () => {
    const ids = [[1, 5, 9, 13, 20, 21, 22, 23]];
    const t = tf.tensor1d([5, 9, 13, 20, 21, 22, 23, 2], 'int32');
    const w = tf.fill([8], 1 / 8);
    const prof = await tf.profile(() =>
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() =>
          weightedCrossEntropy(tf.reshape(full.model.forward(ids), [8, 96]), t, w),
        );
        tf.dispose(Object.values(grads));
        return value;
      }),
    );
    tf.dispose(prof.result as tf.Tensor);
    for (const k of [
      'ParaAttention',
      'ParaAttentionGrad',
      'ParaCrossEntropy',
      'ParaCrossEntropyGrad',
      'ParaRmsNorm',
      'ParaSwiGlu',
      'ParaRope',
    ])
      expect(prof.kernelNames).toContain(k);
    expect(prof.kernelNames).not.toContain('Softmax');
    tf.dispose([t, w]);
  });

  it('a cached greedy decode (two prompts of different lengths, 6 steps): the same logits and tokens', () => {
    const run = () => {
      const { logits, state } = model.prefill(
        [
          [1, 5, 9, 13, 20],
          [1, 7, 3],
        ],
        { capacity: 16 },
      );
      const steps: Float32Array[] = [logits.dataSync().slice() as Float32Array];
      const tokens: number[][] = [];
      let last = logits;
      for (let s = 0; s < 6; s++) {
        const next = tf.tidy(() => Array.from(tf.argMax(last, -1).dataSync()));
        last.dispose();
        tokens.push(next);
        last = model.decodeStep(next, state);
        steps.push(last.dataSync().slice() as Float32Array);
      }
      last.dispose();
      state.dispose();
      return { steps, tokens };
    };
    const before = tf.memory().numTensors;
    const fused = withFused(true, run);
    const generic = withFused(false, run);
    expect(tf.memory().numTensors).toBe(before);
    expect(fused.tokens).toEqual(generic.tokens);
    generic.steps.forEach((g, i) => {
      expect(relDiff(fused.steps[i] as Float32Array, g), `step ${i}`).toBeLessThan(1e-5);
    });
  });
});
