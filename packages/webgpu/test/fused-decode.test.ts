import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
// @para/ops from source: the ops and the dispatch switch of one module instance.
import { setFusedKernelsEnabled } from '../../ops/src/fused';
import { addRmsNorm, KVCache, ropeCosSin, ropeInvFreq, swiglu } from '../../ops/src/index';
import { overrideStorageBuffersLimit } from '../src/dispatch';
import { expectNear, listed, seeded, useWebGpu } from './helpers';

async function read(ts: tf.Tensor[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const t of ts) out.push((await t.data()) as Float32Array);
  tf.dispose(ts);
  return out;
}

/** Run `fn` generic (dispatch off) and fused; every output within atol; `kernel` ran; flat. */
async function compare(
  label: string,
  kernel: string,
  fn: (fused: boolean) => tf.Tensor[],
  atol = 1e-5,
): Promise<number> {
  const before = tf.memory().numTensors;
  setFusedKernelsEnabled(false);
  let generic: Float32Array[];
  try {
    const info = await tf.profile(() => fn(false));
    expect(info.kernelNames, `${label}: generic`).not.toContain(kernel);
    generic = await read(info.result as tf.Tensor[]);
  } finally {
    setFusedKernelsEnabled(true);
  }
  const info = await tf.profile(() => fn(true));
  expect(info.kernelNames, `${label}: ${kernel} ran`).toContain(kernel);
  const fused = await read(info.result as tf.Tensor[]);
  expect(fused.length).toBe(generic.length);
  let worst = 0;
  for (let i = 0; i < fused.length; i++) {
    const e = expectNear(
      fused[i] as Float32Array,
      generic[i] as Float32Array,
      `${label} #${i}`,
      atol,
    );
    worst = Math.max(worst, e);
  }
  expect(tf.memory().numTensors, `${label}: tensors flat`).toBe(before);
  return worst;
}

describe.skipIf(!listed('webgpu'))('fused decode kernels on webgpu equal the generic path', () => {
  beforeAll(async () => {
    await useWebGpu();
  });

  for (const d of [1, 3, 257, 2048]) {
    for (const rows of [1, 7, 300]) {
      it(`ParaAddRmsNorm and its gradient, rows ${rows}, d ${d}`, async () => {
        const x = tf.tensor2d(seeded(rows * d, 3 + d + rows, 2), [rows, d]); // [rows, d]
        const r = tf.tensor2d(seeded(rows * d, 5 + d, 2), [rows, d]); // [rows, d]
        const w = tf.tensor1d(seeded(d, 7 + d, 1)); // [d]
        const dy = tf.tensor2d(seeded(rows * d, 9 + rows, 1), [rows, d]); // [rows, d]
        const ds = tf.tensor2d(seeded(rows * d, 13 + rows, 1), [rows, d]); // [rows, d]
        for (const unitOffset of [false, true]) {
          await compare(`addRmsNorm ${rows}x${d}`, 'ParaAddRmsNorm', () =>
            tf.tidy(() => addRmsNorm(x, r, w, 1e-6, { unitOffset })),
          );
          // d = 1: dx cancels in float32 (see kernels.test.ts), so a looser bound there.
          await compare(
            `addRmsNorm grads ${rows}x${d}`,
            'ParaAddRmsNormGrad',
            () =>
              tf.tidy(() =>
                tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
                  const [s, y] = addRmsNorm(a, b, c, 1e-6, { unitOffset });
                  return tf.add(tf.sum(tf.mul(y, dy)), tf.sum(tf.mul(s, ds)));
                })([x, r, w]),
              ),
            d === 1 ? 1e-3 : 2e-5 * Math.max(1, Math.sqrt(rows)),
          );
        }
        tf.dispose([x, r, w, dy, ds]);
      });
    }
  }

  for (const [B, T, F] of [
    [1, 1, 7],
    [3, 1, 688],
    [2, 5, 257],
  ] as [number, number, number][]) {
    for (const which of ['up', 'out', 'both', 'broadcast'] as const) {
      it(`ParaSwiGluScaled [${B}, ${T}, ${F}], ${which} scale`, async () => {
        const gate = tf.tensor3d(seeded(B * T * F, 21 + F, 6), [B, T, F]); // [B, T, F]
        const up = tf.tensor3d(seeded(B * T * F, 23 + F, 2), [B, T, F]); // [B, T, F]
        const sb = which === 'broadcast' ? 1 : B;
        const s1 = tf.tensor3d(seeded(sb * F, 29, 1.5), [sb, 1, F]); // [B|1, 1, F]
        const s2 = tf.tensor3d(seeded(sb * F, 31, 1.5), [sb, 1, F]); // [B|1, 1, F]
        const options =
          which === 'up' || which === 'broadcast'
            ? { upScale: s1 }
            : which === 'out'
              ? { outScale: s2 }
              : { upScale: s1, outScale: s2 };
        await compare(`swiglu scaled ${which}`, 'ParaSwiGluScaled', () => [
          swiglu(gate, up, options),
        ]);
        tf.dispose([gate, up, s1, s2]);
      });
    }
  }

  it('swiglu with a scale under a gradient tape takes the generic path (no gradient kernel)', async () => {
    const gate = tf.tensor3d(seeded(12, 1), [1, 3, 4]);
    const up = tf.tensor3d(seeded(12, 2), [1, 3, 4]);
    const s = tf.tensor3d(seeded(4, 3), [1, 1, 4]);
    const info = await tf.profile(() =>
      tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(swiglu(gate, a, { upScale: b })))([up, s]),
    );
    expect(info.kernelNames).not.toContain('ParaSwiGluScaled');
    tf.dispose(info.result as tf.Tensor[]);
    tf.dispose([gate, up, s]);
  });

  interface Case {
    B: number;
    hq: number;
    hkv: number;
    hd: number;
    T: number;
    past: number;
    cap: number;
    scales: 'none' | 'para' | 'ia3' | 'all-broadcast';
    idle?: boolean;
    limit?: number;
  }
  const cases: Case[] = [];
  for (const hd of [32, 64, 128]) {
    cases.push({ B: 1, hq: 4, hkv: 2, hd, T: 1, past: 5, cap: 8, scales: 'none' });
    cases.push({ B: 3, hq: 8, hkv: 2, hd, T: 1, past: 4, cap: 9, scales: 'para', idle: true });
    cases.push({ B: 2, hq: 3, hkv: 3, hd, T: 3, past: 2, cap: 7, scales: 'ia3' });
  }
  cases.push({ B: 2, hq: 4, hkv: 1, hd: 64, T: 1, past: 2090, cap: 2100, scales: 'para' });
  cases.push({ B: 2, hq: 4, hkv: 2, hd: 32, T: 1, past: 3, cap: 6, scales: 'all-broadcast' });
  // A device with WebGPU's default 8 storage buffers: scales by dispatches of their own.
  cases.push({ B: 3, hq: 4, hkv: 2, hd: 64, T: 1, past: 3, cap: 6, scales: 'para', limit: 8 });
  cases.push({
    B: 2,
    hq: 4,
    hkv: 2,
    hd: 64,
    T: 2,
    past: 3,
    cap: 6,
    scales: 'all-broadcast',
    limit: 9,
  });

  for (const c of cases) {
    const name = `B ${c.B}, Hq ${c.hq}, Hkv ${c.hkv}, hd ${c.hd}, T ${c.T}, ${c.past} past of ${c.cap}, scales ${c.scales}${c.idle ? ', an idle row' : ''}${c.limit ? `, ${c.limit} storage buffers` : ''}`;
    it(`ParaRopeKvWrite (KVCache.appendRotated): ${name}`, async () => {
      const { B, hq, hkv, hd, T, past, cap } = c;
      const inv = ropeInvFreq({ headDim: hd, theta: 10000 });
      const history = tf.tensor4d(seeded(B * hkv * past * hd, hd + past, 1), [B, hkv, past, hd]); // [B, Hkv, P, hd]
      const q = tf.tensor4d(seeded(B * hq * T * hd, 41 + hd, 1), [B, hq, T, hd]); // [B, Hq, T, hd]
      const k = tf.tensor4d(seeded(B * hkv * T * hd, 43 + hd, 1), [B, hkv, T, hd]); // [B, Hkv, T, hd]
      const v = tf.tensor4d(seeded(B * hkv * T * hd, 47 + hd, 1), [B, hkv, T, hd]); // [B, Hkv, T, hd]
      const sb = c.scales === 'all-broadcast' ? 1 : B;
      const scale = (H: number, seed: number) =>
        tf.tensor3d(seeded(sb * H * hd, seed, 2), [sb, 1, H * hd]); // [B|1, 1, H·hd]
      const held: tf.Tensor[] = [];
      const scales: { q?: tf.Tensor; k?: tf.Tensor; v?: tf.Tensor } = {};
      if (c.scales === 'para' || c.scales === 'all-broadcast') scales.q = scale(hq, 51);
      if (c.scales === 'ia3' || c.scales === 'all-broadcast') scales.k = scale(hkv, 53);
      if (c.scales !== 'none') scales.v = scale(hkv, 57);
      held.push(...Object.values(scales));
      overrideStorageBuffersLimit(c.limit);
      const caches: KVCache[] = [];
      try {
        await compare(
          name,
          'ParaRopeKvWrite',
          () => {
            // The same history in a fresh cache, then the step under test.
            const cache = new KVCache({ numLayers: 1, batchSize: B, capacity: cap });
            caches.push(cache);
            cache.beginStep(past);
            tf.tidy(() => {
              cache.append(0, history, history);
            });
            const active = Array.from({ length: B }, (_, b) =>
              new Array<number>(T).fill(c.idle && b === 1 ? 0 : 1),
            );
            const step = cache.beginStep(active);
            const rope = ropeCosSin(step.positions, inv);
            const out = tf.tidy(() => {
              const o = cache.appendRotated(0, q, k, v, rope, scales);
              return [o.q, o.k, o.v]; // [B, Hq, T, hd], [B, Hkv, C, hd] ×2
            });
            tf.dispose([rope.cos, rope.sin]);
            // The views keep the storage's data alive (shared, reference-counted).
            cache.dispose();
            return out;
          },
          1e-5,
        );
      } finally {
        overrideStorageBuffersLimit(undefined);
        for (const cache of caches) cache.dispose();
        tf.dispose([history, q, k, v, ...held]);
      }
    });
  }

  it('appendRotated checks its scales (typed errors)', async () => {
    const cache = new KVCache({
      numLayers: 1,
      batchSize: 2,
      capacity: 4,
      numKvHeads: 1,
      headDim: 4,
    });
    cache.beginStep(1);
    const q = tf.zeros([2, 2, 1, 4]);
    const k = tf.zeros([2, 1, 1, 4]);
    const rope = ropeCosSin([[0], [0]], ropeInvFreq({ headDim: 4 }));
    expect(() => cache.appendRotated(0, q, k, k, rope, { q: tf.zeros([2, 1, 4]) })).toThrow(
      expect.objectContaining({ code: 'SHAPE_MISMATCH', field: 'scales.q' }),
    );
    expect(() => cache.appendRotated(0, q, k, k, rope, { v: tf.zeros([3, 1, 4]) })).toThrow(
      expect.objectContaining({ code: 'SHAPE_MISMATCH', field: 'scales.v' }),
    );
    cache.dispose();
    tf.dispose([q, k, rope.cos, rope.sin]);
  });
});
