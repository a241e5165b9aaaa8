import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUSED_KERNELS } from '../../ops/src/fused';
import { blasAddon } from '../src/addon';
import { jsSumSquares } from '../src/fused';
import { installBlasKernels, uninstallBlasKernels } from '../src/index';
import { seeded, status } from './helpers';

/** Σ x² in float64 over the concatenation of `xs`: the reference. */
const reference = (xs: Float32Array[]) =>
  xs.reduce((s, x) => s + x.reduce((a, v) => a + v * v, 0), 0);

// The trainer-level use (the global norm before clipping) is in @para/train's tests; these are
// the kernel's own checks.
describe.runIf(status.available)('ParaSumSquares on wasm', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    installBlasKernels();
  });

  afterAll(() => {
    uninstallBlasKernels();
  });

  const addon = () => blasAddon() as Required<NonNullable<ReturnType<typeof blasAddon>>>;

  it('equals a float64 reference over many tensors (sizes 1, odd, 0, past the thread threshold and a chunk)', () => {
    const sizes = [1, 7, 40_000, 0, 3, 333_333, 4097, 1];
    const xs = sizes.map((n, i) => seeded(n, 11 + i).map((v) => v * (i + 1)));
    const ts = xs.map((x) => tf.tensor1d(x));
    const inputs: tf.NamedTensorMap = {};
    ts.forEach((t, i) => {
      inputs[`x${i}`] = t;
    });
    const out = tf.engine().runKernel(FUSED_KERNELS.sumSquares, inputs, {
      count: ts.length,
    } as unknown as tf.NamedAttrMap) as tf.Tensor;
    expect(out.shape).toEqual([]);
    const got = out.dataSync()[0] as number;
    const want = reference(xs);
    expect(Math.abs(got - want) / want).toBeLessThan(1e-6);
    // and the generic ops in float32 agree to their own precision
    const generic = tf.tidy(() => tf.addN(ts.map((t) => tf.sum(tf.square(t)))).dataSync()[0]);
    expect(Math.abs((generic as number) - want) / want).toBeLessThan(1e-4);
    tf.dispose([out, ...ts]);
  });

  it('NaN and Infinity propagate (the trainer skips such an update)', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const a = tf.tensor1d([1, 2, 3]);
      const b = tf.tensor1d(
        Float32Array.from({ length: 50_000 }, (_, i) => (i === 777 ? bad : 0.5)),
      );
      const out = tf.engine().runKernel(FUSED_KERNELS.sumSquares, { x0: a, x1: b }, {
        count: 2,
      } as unknown as tf.NamedAttrMap) as tf.Tensor;
      const v = out.dataSync()[0] as number;
      if (Number.isNaN(bad)) expect(v).toBeNaN();
      else expect(v).toBe(Number.POSITIVE_INFINITY);
      tf.dispose([a, b, out]);
    }
  });

  it('the native kernel and the JavaScript fallback agree; bad params throw before anything is written', () => {
    const m = new Float32Array(64);
    m.set(seeded(20, 3), 0);
    m.set(seeded(9, 4), 30);
    m[50] = 7;
    const nat = m.slice();
    addon().sumSquaresHeap(nat.buffer, Float64Array.of(50 * 4, 2, 0, 20, 30 * 4, 9));
    const js = jsSumSquares(m, [
      { at: 0, n: 20 },
      { at: 30, n: 9 },
    ]);
    expect(Math.abs((nat[50] as number) - js) / js).toBeLessThan(1e-6);
    const heap = new Float32Array(16).fill(7);
    const call = (p: number[]) => () => addon().sumSquaresHeap(heap.buffer, Float64Array.from(p));
    expect(call([64, 1, 0, 4])).toThrow(/output lies outside/); // out of bounds
    expect(call([2, 1, 8, 4])).toThrow(/output lies outside/); // misaligned
    expect(call([40, 1, 0, 20])).toThrow(/input lies outside/);
    expect(call([8, 1, 0, 4])).toThrow(/overlaps/);
    expect(call([40, 1.5, 0, 4])).toThrow(/count/);
    expect(call([40, 3, 0, 4])).toThrow(/too short/);
    expect(call([40, 1, 0, -1])).toThrow(/input lies outside/);
    expect(heap.every((x) => x === 7)).toBe(true);
  });

  it('leaks no tensors', () => {
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) {
      const a = tf.ones([40, 40]);
      const out = tf.engine().runKernel(FUSED_KERNELS.sumSquares, { x0: a }, {
        count: 1,
      } as unknown as tf.NamedAttrMap) as tf.Tensor;
      expect(out.dataSync()[0]).toBe(1600);
      tf.dispose([a, out]);
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
