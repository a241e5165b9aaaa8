import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUSED_KERNELS } from '../../ops/src/fused';
import { blasAddon } from '../src/addon';
import { jsCrossEntropy } from '../src/fused';
import { installBlasKernels, uninstallBlasKernels } from '../src/index';
import { seeded, status } from './helpers';

// The loss-level comparison with the generic path (values, gradients, NaN) is in @para/train's
// loss-optim.test.ts; these are the kernels' own checks.
describe.runIf(status.available)('ParaCrossEntropy / ParaCrossEntropyGrad on wasm', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    installBlasKernels();
  });

  afterAll(() => {
    uninstallBlasKernels();
  });

  it('the native kernels equal the JavaScript fallback (for a shared heap) and a float64 reference', () => {
    const addon = blasAddon() as Required<NonNullable<ReturnType<typeof blasAddon>>>;
    const [N, V] = [37, 1031];
    // layout (elements): logits, targets, weights, dy, then loss, lse, dlogits
    const at = { x: 0, t: N * V, w: N * V + N, dy: N * V + 2 * N, loss: N * V + 2 * N + 1 };
    const lse = at.loss + 1;
    const dx = lse + N;
    const total = dx + N * V;
    const make = () => {
      const m = new Float32Array(total);
      m.set(
        seeded(N * V, 3).map((v) => v * 6),
        at.x,
      );
      const t = new Int32Array(m.buffer);
      for (let n = 0; n < N; n++) t[at.t + n] = n === 3 ? -4 : n === 5 ? V + 9 : (n * 131) % V;
      for (let n = 0; n < N; n++) m[at.w + n] = n % 4 === 0 ? 0 : 1 / N;
      m[at.dy] = 0.75;
      return m;
    };
    const nat = make();
    addon.crossEntropyHeap(
      nat.buffer,
      Float64Array.of(0, at.t * 4, at.w * 4, at.loss * 4, lse * 4, N, V),
    );
    addon.crossEntropyGradHeap(
      nat.buffer,
      Float64Array.of(at.dy * 4, 0, at.t * 4, at.w * 4, lse * 4, dx * 4, N, V),
    );
    const js = make();
    const i32 = new Int32Array(js.buffer);
    jsCrossEntropy.forward(js, i32, at.x, at.t, at.w, at.loss, lse, N, V);
    jsCrossEntropy.backward(js, i32, at.dy, at.x, at.t, at.w, lse, dx, N, V);
    // float64 reference of the loss
    let ref = 0;
    const tv = new Int32Array(nat.buffer);
    for (let n = 0; n < N; n++) {
      let mx = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < V; j++) mx = Math.max(mx, nat[n * V + j] as number);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp((nat[n * V + j] as number) - mx);
      const k = Math.min(Math.max(tv[at.t + n] as number, 0), V - 1);
      ref += (nat[at.w + n] as number) * (mx + Math.log(s) - (nat[n * V + k] as number));
    }
    expect(Math.abs((nat[at.loss] as number) - ref) / Math.abs(ref)).toBeLessThan(1e-6);
    expect(Math.abs((js[at.loss] as number) - ref) / Math.abs(ref)).toBeLessThan(1e-6);
    let worst = 0;
    for (let i = lse; i < total; i++)
      worst = Math.max(worst, Math.abs((nat[i] as number) - (js[i] as number)));
    expect(worst).toBeLessThan(1e-6);
    // Gradient rows sum to 0 (softmax − onehot), zero-weight rows are 0.
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let j = 0; j < V; j++) s += nat[dx + n * V + j] as number;
      expect(Math.abs(s)).toBeLessThan(1e-5);
      if (n % 4 === 0) expect(nat[dx + n * V]).toBe(0);
    }
  });

  it('the kernels reject inputs that break the contract, and the addon checks bounds', () => {
    const x = tf.zeros([2, 3]);
    const t = tf.tensor1d([0, 1], 'int32');
    const tf32 = tf.tensor1d([0, 1]);
    const w = tf.ones([2]);
    const w3 = tf.ones([3]);
    const run = (inputs: tf.NamedTensorMap) =>
      tf.engine().runKernel(FUSED_KERNELS.crossEntropy, inputs);
    expect(() => run({ logits: x, targets: tf32, weights: w })).toThrow(/int32/);
    expect(() => run({ logits: x, targets: t, weights: w3 })).toThrow(/weights/);
    expect(() => run({ logits: tf.reshape(x, [6]), targets: t, weights: w })).toThrow(/\[N, V\]/);
    const addon = blasAddon() as Required<NonNullable<ReturnType<typeof blasAddon>>>;
    const heap = new ArrayBuffer(256);
    const f = new Float32Array(heap);
    f.fill(3);
    expect(() =>
      addon.crossEntropyHeap(heap, Float64Array.of(0, 64, 96, 128, 132, 4, 100)),
    ).toThrow(RangeError);
    expect(() => addon.crossEntropyHeap(heap, Float64Array.of(0, 64, 96, 8, 132, 2, 4))).toThrow(
      /overlaps/,
    );
    expect(() => addon.crossEntropyHeap(heap, Float64Array.of(0, 64, 96, 128, 132, 2, 0))).toThrow(
      /V must/,
    );
    expect(() =>
      addon.crossEntropyGradHeap(heap, Float64Array.of(0, 4, 64, 96, 128, 8, 2, 4)),
    ).toThrow(/overlaps/);
    expect(() => addon.crossEntropyGradHeap(heap, new Float64Array(3))).toThrow(TypeError);
    expect(f.every((v) => v === 3)).toBe(true);
    tf.dispose([x, t, tf32, w, w3]);
  });
});
