import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUSED_KERNELS } from '../../ops/src/fused';
import { blasAddon } from '../src/addon';
import { type AdamWScalars, jsAdamW } from '../src/fused';
import { installBlasKernels, uninstallBlasKernels } from '../src/index';
import { seeded, status } from './helpers';

// The optimizer-level comparison with the generic path (several steps, decay per parameter,
// shared variable data, tensors flat) is in @para/train's optim-fused.test.ts; these are the
// kernel's own checks.
describe.runIf(status.available)('ParaAdamW on wasm', () => {
  beforeAll(async () => {
    await tf.setBackend('wasm');
    installBlasKernels();
  });

  afterAll(() => {
    uninstallBlasKernels();
  });

  const addon = () => blasAddon() as Required<NonNullable<ReturnType<typeof blasAddon>>>;
  const scalars: AdamWScalars = {
    lr: 3e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    bc1: 1 - 0.9 ** 3,
    bc2: 1 - 0.999 ** 3,
    gradScale: 0.61,
  };
  const head = (s: AdamWScalars, count: number) => [
    count,
    s.lr,
    s.beta1,
    1 - s.beta1,
    s.beta2,
    1 - s.beta2,
    s.bc1,
    s.bc2,
    s.eps,
    s.gradScale,
  ];

  it('the native kernel equals the JavaScript fallback bit for bit (sizes 0, 1, odd, past the thread threshold)', () => {
    const sizes = [1, 0, 7, 40_000, 3, 33_333, 1];
    const keeps = [1, 1 - 3e-3 * 0.1, 1, 1 - 3e-3 * 0.01, 1 - 3e-3 * 0.1, 1, 0.5];
    // layout per parameter (elements): p, m, v, g, then p′, m′, v′
    let at = 0;
    const slots = sizes.map((n) => {
      const o = {
        p: at,
        m: at + n,
        v: at + 2 * n,
        g: at + 3 * n,
        po: at + 4 * n,
        mo: at + 5 * n,
        vo: at + 6 * n,
      };
      at += 7 * n + 3; // unaligned gaps between parameters
      return o;
    });
    const make = () => {
      const f = new Float32Array(at);
      slots.forEach((o, i) => {
        const n = sizes[i] as number;
        f.set(seeded(n, 10 + i), o.p);
        f.set(
          seeded(n, 20 + i).map((x) => x * 0.1),
          o.m,
        );
        f.set(
          seeded(n, 30 + i).map((x) => x * x * 0.01),
          o.v,
        );
        f.set(
          seeded(n, 40 + i).map((x, j) => (j % 5 === 0 ? 0 : x * (i + 1))),
          o.g,
        );
      });
      return f;
    };
    const nat = make();
    const params = [...head(scalars, sizes.length)];
    slots.forEach((o, i) => {
      params.push(o.p * 4, o.m * 4, o.v * 4, o.g * 4, o.po * 4, o.mo * 4, o.vo * 4);
      params.push(sizes[i] as number, keeps[i] as number);
    });
    addon().adamWHeap(nat.buffer, Float64Array.from(params));
    const js = make();
    slots.forEach((o, i) => {
      jsAdamW.step(js, o, sizes[i] as number, keeps[i] as number, scalars);
    });
    let differ = 0;
    for (let i = 0; i < at; i++) if (!Object.is(nat[i], js[i])) differ++;
    expect(differ).toBe(0);
    // and the update moved every parameter with a non-zero gradient
    const o = slots[3] as (typeof slots)[number];
    expect(nat[o.po + 1]).not.toBe(nat[o.p + 1]);
    // float64 check of one element: m′, v′, p′
    const j = o.p + 1;
    const g = (nat[o.g + 1] as number) * scalars.gradScale;
    const m1 = 0.9 * (nat[o.m + 1] as number) + 0.1 * g;
    const v1 = 0.999 * (nat[o.v + 1] as number) + 0.001 * g * g;
    const p1 =
      (nat[j] as number) * (keeps[3] as number) -
      (scalars.lr * (m1 / scalars.bc1)) / (Math.sqrt(v1 / scalars.bc2) + 1e-8);
    expect(Math.abs((nat[o.mo + 1] as number) - m1)).toBeLessThan(1e-6 * Math.abs(m1) + 1e-12);
    expect(Math.abs((nat[o.vo + 1] as number) - v1)).toBeLessThan(1e-6 * Math.abs(v1) + 1e-15);
    expect(Math.abs((nat[o.po + 1] as number) - p1)).toBeLessThan(1e-6 * Math.abs(p1));
  });

  it('the addon checks counts, bounds and overlaps before writing anything', () => {
    const heap = new ArrayBuffer(1024);
    const f = new Float32Array(heap);
    f.fill(3);
    const one = (offs: number[], n: number, keep = 1, s = scalars) =>
      Float64Array.from([...head(s, 1), ...offs, n, keep]);
    // p, m, v, g at 0, 64, 128, 192; outputs at 256, 320, 384 (16 floats each)
    const ok = [0, 64, 128, 192, 256, 320, 384];
    expect(() =>
      addon().adamWHeap(
        heap,
        one(
          ok.map((o, i) => (i === 6 ? 1020 : o)),
          16,
        ),
      ),
    ).toThrow(RangeError);
    expect(() =>
      addon().adamWHeap(
        heap,
        one(
          ok.map((o, i) => (i === 4 ? 130 : o)),
          16,
        ),
      ),
    ).toThrow(/aligned/);
    // an output over an input, an output over another output
    expect(() =>
      addon().adamWHeap(
        heap,
        one(
          ok.map((o, i) => (i === 5 ? 200 : o)),
          16,
        ),
      ),
    ).toThrow(/overlaps/);
    expect(() =>
      addon().adamWHeap(
        heap,
        one(
          ok.map((o, i) => (i === 6 ? 332 : o)),
          16,
        ),
      ),
    ).toThrow(/overlaps/);
    // across parameters: parameter 1's output over parameter 0's input
    const two = Float64Array.from([
      ...head(scalars, 2),
      ...[0, 64, 128, 192, 256, 320, 384],
      16,
      1,
      ...[448, 512, 576, 640, 704, 768, 0],
      16,
      1,
    ]);
    expect(() => addon().adamWHeap(heap, two)).toThrow(/overlaps/);
    expect(() => addon().adamWHeap(heap, one(ok, 16, Number.NaN))).toThrow(/keep/);
    expect(() => addon().adamWHeap(heap, one(ok, 16, 1, { ...scalars, bc2: 0 }))).toThrow(
      /bias corrections/,
    );
    expect(() => addon().adamWHeap(heap, one(ok, 1.5))).toThrow(/size/);
    expect(() =>
      addon().adamWHeap(heap, Float64Array.from([...head(scalars, 2), ...ok, 16, 1])),
    ).toThrow(TypeError);
    expect(() => addon().adamWHeap(heap, Float64Array.from(head(scalars, 0)))).toThrow(/count/);
    expect(f.every((v) => v === 3)).toBe(true);
    // inputs may alias one another (read only): p = m = v = g
    addon().adamWHeap(heap, one([0, 0, 0, 0, 256, 320, 384], 16));
    expect(f[256]).not.toBe(3);
  });

  it('the kernel rejects inputs that break the contract', () => {
    const a = tf.zeros([2, 3]);
    const b = tf.zeros([3, 2]);
    const i = tf.zeros([2, 3], 'int32');
    const attrs = {
      count: 1,
      lr: 0.1,
      beta1: 0.9,
      beta2: 0.99,
      eps: 1e-8,
      step: 2,
      gradScale: 1,
      weightDecay: [0.1],
    };
    const run = (inputs: tf.NamedTensorMap, at: Record<string, unknown> = attrs) =>
      tf.engine().runKernel(FUSED_KERNELS.adamW, inputs, at as unknown as tf.NamedAttrMap);
    const before = tf.memory().numTensors;
    expect(() => run({ param0: a, m0: a, v0: b, grad0: a })).toThrow(/does not match/);
    expect(() => run({ param0: a, m0: a, v0: a, grad0: i })).toThrow(/float32/);
    expect(() =>
      run({ param0: a, m0: a, v0: a, grad0: a }, { ...attrs, count: 2, weightDecay: [0, 0] }),
    ).toThrow(/missing input "param1"/);
    expect(() => run({ param0: a, m0: a, v0: a, grad0: a }, { ...attrs, lr: Number.NaN })).toThrow(
      /lr/,
    );
    expect(() => run({ param0: a, m0: a, v0: a, grad0: a }, { ...attrs, step: 1.5 })).toThrow(
      /step/,
    );
    expect(tf.memory().numTensors).toBe(before);
    const out = run({ param0: a, m0: a, v0: a, grad0: a }) as tf.Tensor[];
    expect(out.map((t) => t.shape)).toEqual([
      [2, 3],
      [2, 3],
      [2, 3],
    ]);
    tf.dispose([...out, a, b, i]);
  });
});
