import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @para/ops from source (as fused.test.ts): the contract and the ops that dispatch live there.
import { FUSED_KERNELS, setFusedKernelsEnabled } from '../../ops/src/fused';
import { KVCache, ropeCosSin, ropeInvFreq, swiglu } from '../../ops/src/index';
import { blasAddon } from '../src/addon';
import { jsFused, type RopeKvDims } from '../src/fused';
import { installBlasKernels, uninstallBlasKernels } from '../src/index';
import { expectAddonLoaded, expectNear, seeded, status } from './helpers';

it('the addon loads (required with PARA_BLAS_REQUIRED=1; otherwise the rest skip where it cannot)', () => {
  expectAddonLoaded();
});

/** The two forward-only entry points (not in addon.ts's interface). */
interface ForwardOnly {
  swigluScaledHeap(heap: ArrayBuffer, params: Float64Array): void;
  ropeKvWriteHeap(heap: ArrayBuffer, params: Float64Array): void;
}
const native = () => blasAddon() as unknown as ForwardOnly;

const scaled = (n: number, seed: number, s: number, o = 0) => seeded(n, seed).map((v) => v * s + o);

/** `fn` with the fused kernels off (the generic tfjs path). */
function generic<T>(fn: () => T): T {
  const was = setFusedKernelsEnabled(false);
  try {
    return fn();
  } finally {
    setFusedKernelsEnabled(was);
  }
}

async function kernelsOf(fn: () => tf.Tensor | tf.Tensor[]): Promise<string[]> {
  const info = await tf.profile(() => fn());
  tf.dispose(info.result as tf.Tensor | tf.Tensor[]);
  return info.kernelNames;
}

interface KvCase {
  hd: number;
  /** 'none', scales of batch B, or scales of batch 1 (with cos/sin of batch 1 too). */
  scales: 'none' | 'B' | '1';
}

const [B, Hq, Hkv, C, P, STEPS] = [3, 8, 2, 12, 4, 3];
/** Decode steps: row 2 is idle (slot −1), its cache must stay as the prefill left it. */
const DECODE_VALID = [[1], [1], [0]];
const PREFILL_VALID = [
  [1, 1, 1, 1],
  [0, 1, 1, 1],
  [1, 1, 1, 1],
];

interface StepOut {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

/**
 * A prefill of P tokens then STEPS decode steps through `appendRotated` (fused or generic),
 * returning every decode step's q and the cache contents read through its k/v views, and the
 * kernels of the first decode step's appendRotated.
 */
async function runKv(
  c: KvCase,
  fused: boolean,
): Promise<{ steps: StepOut[]; kernels: string[]; launches: number }> {
  const { hd } = c;
  const inv = ropeInvFreq({ headDim: hd, theta: 100 });
  const sb = c.scales === '1' ? 1 : B;
  const scales =
    c.scales === 'none'
      ? {}
      : {
          q: tf.tensor3d(scaled(sb * Hq * hd, 21, 0.3, 1), [sb, 1, Hq * hd]),
          k: tf.tensor3d(scaled(sb * Hkv * hd, 22, 0.3, 1), [sb, 1, Hkv * hd]),
          v: tf.tensor3d(scaled(sb * Hkv * hd, 23, 0.3, 1), [sb, 1, Hkv * hd]),
        };
  const cache = new KVCache({ numLayers: 1, batchSize: B, capacity: C });
  const steps: StepOut[] = [];
  let kernels: string[] = [];
  let launches = 0;
  const was = setFusedKernelsEnabled(fused);
  try {
    for (let s = 0; s <= STEPS; s++) {
      const valid = s === 0 ? PREFILL_VALID : DECODE_VALID;
      const T = (valid[0] as number[]).length;
      const step = cache.beginStep(valid);
      const rope = ropeCosSin(step.positions, inv);
      const tables =
        c.scales === '1'
          ? {
              cos: tf.slice(rope.cos, [0, 0, 0, 0], [1, 1, T, hd]),
              sin: tf.slice(rope.sin, [0, 0, 0, 0], [1, 1, T, hd]),
            }
          : rope;
      const q = tf.tensor4d(scaled(B * Hq * T * hd, 100 + s, 2), [B, Hq, T, hd]);
      const k = tf.tensor4d(scaled(B * Hkv * T * hd, 200 + s, 2), [B, Hkv, T, hd]);
      const v = tf.tensor4d(scaled(B * Hkv * T * hd, 300 + s, 2), [B, Hkv, T, hd]);
      const call = () => {
        const o = cache.appendRotated(0, q, k, v, tables, scales);
        return [o.q, o.k, o.v];
      };
      let outs: tf.Tensor[];
      if (s === 1) {
        // Profile the first decode step (and keep its results: profile disposes nothing we keep).
        const info = await tf.profile(() => call());
        kernels = info.kernelNames;
        launches = info.kernels.length;
        outs = info.result as tf.Tensor[];
      } else outs = tf.tidy(call);
      if (s > 0) {
        const [qo, ko, vo] = outs as [tf.Tensor, tf.Tensor, tf.Tensor];
        steps.push({
          q: (await qo.data()) as Float32Array,
          k: (await ko.data()) as Float32Array,
          v: (await vo.data()) as Float32Array,
        });
      }
      tf.dispose([...outs, q, k, v, rope.cos, rope.sin]);
      if (tables !== rope) tf.dispose([tables.cos, tables.sin]);
    }
  } finally {
    setFusedKernelsEnabled(was);
    cache.dispose();
    tf.dispose(Object.values(scales));
  }
  return { steps, kernels, launches };
}

describe.runIf(status.available)(
  'forward-only fused kernels on wasm (ParaSwiGluScaled, ParaRopeKvWrite)',
  () => {
    let startTensors = 0;

    beforeAll(async () => {
      await tf.setBackend('wasm');
      installBlasKernels();
      startTensors = tf.memory().numTensors;
    });

    afterAll(() => {
      uninstallBlasKernels();
    });

    it('are registered and listed', () => {
      expect(tf.getKernel(FUSED_KERNELS.swigluScaled, 'wasm')).toBeDefined();
      expect(tf.getKernel(FUSED_KERNELS.ropeKvWrite, 'wasm')).toBeDefined();
    });

    for (const F of [1, 7, 689])
      for (const sb of [3, 1])
        it(`swiglu with upScale / outScale = the generic path — F ${F}, scale batch ${sb}`, async () => {
          const [b, T] = [3, 2];
          const gate = tf.tensor3d(scaled(b * T * F, F + 1, 4), [b, T, F]);
          const up = tf.tensor3d(scaled(b * T * F, F + 2, 2), [b, T, F]);
          const s1 = tf.tensor3d(scaled(sb * F, F + 3, 0.5, 1), [sb, 1, F]);
          const s2 = tf.tensor3d(scaled(sb * F, F + 4, 0.5, 1), [sb, 1, F]);
          const w = tf.tensor3d(scaled(b * T * F, F + 5, 1), [b, T, F]);
          for (const opts of [{ upScale: s1 }, { outScale: s2 }, { upScale: s1, outScale: s2 }]) {
            const label = `${Object.keys(opts).join('+')} F ${F} sb ${sb}`;
            const names = await kernelsOf(() => swiglu(gate, up, opts));
            // One kernel (both scales: their product first, then the kernel).
            expect(names, label).toEqual(
              'upScale' in opts && 'outScale' in opts
                ? ['Multiply', FUSED_KERNELS.swigluScaled]
                : [FUSED_KERNELS.swigluScaled],
            );
            const fusedY = tf.tidy(() => swiglu(gate, up, opts));
            const plainY = generic(() => tf.tidy(() => swiglu(gate, up, opts)));
            expectNear(await fusedY.data(), await plainY.data(), 1e-5, label);
            // Under a gradient tape the generic path runs, and its gradient is right.
            const loss = (g: tf.Tensor, u: tf.Tensor) => tf.sum(tf.mul(swiglu(g, u, opts), w));
            const gradNames = await kernelsOf(() => tf.grads(loss)([gate, up]));
            expect(gradNames, label).not.toContain(FUSED_KERNELS.swigluScaled);
            const gf = tf.tidy(() => tf.grads(loss)([gate, up]));
            const gp = generic(() => tf.tidy(() => tf.grads(loss)([gate, up])));
            for (let i = 0; i < 2; i++)
              expectNear(
                await (gf[i] as tf.Tensor).data(),
                await (gp[i] as tf.Tensor).data(),
                1e-5,
                `${label} grad ${i}`,
              );
            tf.dispose([fusedY, plainY, ...gf, ...gp]);
          }
          tf.dispose([gate, up, s1, s2, w]);
        });

    for (const hd of [32, 64, 6])
      for (const sc of ['none', 'B', '1'] as const)
        it(`KVCache.appendRotated: prefill + ${STEPS} decode steps = the generic path — hd ${hd}, scales ${sc}`, async () => {
          const c: KvCase = { hd, scales: sc };
          const fused = await runKv(c, true);
          const plain = await runKv(c, false);
          // A decode step is one kernel (plus the views' reshapes), no RoPE nor scale product.
          expect(fused.kernels).toContain(FUSED_KERNELS.ropeKvWrite);
          expect(fused.kernels).not.toContain(FUSED_KERNELS.rope);
          expect(fused.kernels).not.toContain('Multiply');
          expect(fused.kernels).not.toContain('Mul');
          expect(plain.kernels).not.toContain(FUSED_KERNELS.ropeKvWrite);
          expect(fused.launches).toBeLessThan(plain.launches);
          expect(fused.steps.length).toBe(STEPS);
          for (let s = 0; s < STEPS; s++) {
            const f = fused.steps[s] as StepOut;
            const p = plain.steps[s] as StepOut;
            expectNear(f.q, p.q, 1e-5, `q step ${s}`);
            expectNear(f.k, p.k, 1e-5, `kCache step ${s}`);
            expectNear(f.v, p.v, 1e-5, `vCache step ${s}`);
          }
          // The idle row 2 keeps the prefill's slots and nothing after them, step after step.
          const row = Hkv * C * hd;
          const first = fused.steps[0] as StepOut;
          const last = fused.steps[STEPS - 1] as StepOut;
          for (const key of ['k', 'v'] as const) {
            const a = first[key].subarray(2 * row, 3 * row);
            const z = last[key].subarray(2 * row, 3 * row);
            expect(Array.from(z)).toEqual(Array.from(a));
            for (let h = 0; h < Hkv; h++) {
              const tail = z.subarray(h * C * hd + P * hd, (h + 1) * C * hd);
              expect(tail.every((x) => x === 0)).toBe(true);
              const head = z.subarray(h * C * hd, h * C * hd + P * hd);
              expect(head.some((x) => x !== 0)).toBe(true);
            }
          }
          // The active rows did write their decode slots.
          const slot = P + STEPS - 1; // row 0's last slot
          expect(last.k.subarray(slot * hd, (slot + 1) * hd).some((x) => x !== 0)).toBe(true);
          expect(tf.memory().numTensors).toBe(startTensors);
        });

    it('the kernels reject inputs that break the contract, touching nothing', async () => {
      const hd = 6;
      const q = tf.zeros([B, Hq, 1, hd]);
      const k = tf.zeros([B, Hkv, 1, hd]);
      const cos = tf.ones([B, 1, 1, hd]);
      const kCache = tf.fill([B, Hkv, 5, hd], 7);
      const vCache = tf.fill([B, Hkv, 5, hd], 7);
      const base = { q, k, v: k, cos, sin: cos, kCache, vCache };
      const run = (extra: tf.NamedTensorMap, slots: unknown) =>
        tf.engine().runKernel(FUSED_KERNELS.ropeKvWrite, { ...base, ...extra }, {
          slots,
        } as unknown as tf.NamedAttrMap);
      expect(() => run({}, [0, 1])).toThrow(/slots must hold 3/);
      expect(() => run({}, [0, 5, -1])).toThrow(/slot \+ 1 \(T\) ≤ 5/);
      expect(() => run({}, [0, -2, -1])).toThrow(/must be -1 or/);
      expect(() => run({}, [0, 1.5, -1])).toThrow(/must be -1 or/);
      const badQ = tf.ones([1, 1, Hq * hd + 1]);
      expect(() => run({ qScale: badQ }, [0, 0, 0])).toThrow(/qScale/);
      const badK = tf.ones([2, 1, Hkv * hd]);
      expect(() => run({ kScale: badK }, [0, 0, 0])).toThrow(/kScale/);
      const badV = tf.ones([1, 1, Hq * hd]);
      expect(() => run({ vScale: badV }, [0, 0, 0])).toThrow(/vScale/);
      const shortCache = tf.zeros([B, Hkv, 5, hd + 2]);
      expect(() => run({ kCache: shortCache }, [0, 0, 0])).toThrow(/kCache/);
      expect(() => run({ vCache: shortCache }, [0, 0, 0])).toThrow(/vCache/);
      const oddQ = tf.zeros([B, Hq, 1, 5]);
      expect(() => run({ q: oddQ }, [0, 0, 0])).toThrow(/hd even/);
      const qi = tf.zeros([B, Hq, 1, hd], 'int32');
      expect(() => run({ q: qi }, [0, 0, 0])).toThrow(/float32/);
      for (const t of [kCache, vCache]) expect((await t.data()).every((x) => x === 7)).toBe(true);
      const gate = tf.zeros([2, 3, 4]);
      const sw = (scale: number[], g = gate) =>
        tf.tidy(() =>
          tf
            .engine()
            .runKernel(FUSED_KERNELS.swigluScaled, { gate: g, up: g, scale: tf.ones(scale) }),
        );
      expect(() => sw([1, 1, 5])).toThrow(/scale \[1,1,5\] is not/);
      expect(() => sw([3, 1, 4])).toThrow(/scale/);
      const flat = tf.zeros([6, 4]);
      expect(() => sw([1, 1, 4], flat)).toThrow(/\[B, T, F\]/);
      tf.dispose([q, k, cos, kCache, vCache, badQ, badK, badV, shortCache, oddQ, qi, gate, flat]);
      expect(tf.memory().numTensors).toBe(startTensors);
    });

    it('the addon checks slots, bounds and overlaps before touching the heap', () => {
      const addon = native();
      const heap = new ArrayBuffer(8192);
      const f = new Float32Array(heap);
      // B 2, Hq 2, Hkv 1, T 1, hd 4, C 3, cosBatch 2, no scales, slots [0, -1]; byte offsets:
      // q 0, k 64, v 96, cos 128, sin 160, kCache 256, vCache 384, qOut 512.
      const ok = [
        0, 64, 96, 128, 160, 256, 384, -1, -1, -1, 512, 2, 2, 1, 1, 4, 3, 2, 1, 1, 1, 0, -1,
      ];
      f.fill(0.5);
      addon.ropeKvWriteHeap(heap, Float64Array.from(ok));
      f.fill(7);
      const bad = (i: number, x: number) => {
        const p = ok.slice();
        p[i] = x;
        return Float64Array.from(p);
      };
      const call = (p: Float64Array | number[]) => () =>
        addon.ropeKvWriteHeap(heap, p instanceof Float64Array ? p : Float64Array.from(p));
      expect(call([...ok, 0])).toThrow(/one slot per row/); // 3 slots for B 2
      expect(call(ok.slice(0, -1))).toThrow(/one slot per row/);
      expect(call(bad(21, 3))).toThrow(/slot \+ T <= C/); // slot 3 + T 1 > C 3
      expect(call(bad(22, -2))).toThrow(/slot/);
      expect(call(bad(21, 0.5))).toThrow(/slot/);
      expect(call(bad(15, 3))).toThrow(/even/);
      expect(call(bad(17, 3))).toThrow(/cosBatch/);
      expect(call(bad(10, 0))).toThrow(/overlaps/); // q′ on q
      expect(call(bad(10, 256))).toThrow(/overlaps/); // q′ on kCache
      expect(call(bad(5, 64))).toThrow(/overlaps/); // kCache on k
      expect(call(bad(6, 256))).toThrow(/overlaps/); // vCache on kCache
      expect(call(bad(7, 8190))).toThrow(RangeError); // a qScale outside the heap
      expect(call(bad(7, 8192 - 16))).toThrow(RangeError); // qScale of Hq·hd = 8 floats: too short
      expect(call(bad(8, 256))).toThrow(/overlaps/); // kScale (an input) inside kCache
      expect(call(bad(18, 2).map((x, i) => (i === 7 ? 1024 : x)))).not.toThrow(); // qScale batch B: fine
      f.fill(7);
      expect(call(bad(18, 3).map((x, i) => (i === 7 ? 1024 : x)))).toThrow(/batch/);
      expect(call(bad(5, 8190))).toThrow(RangeError);
      expect(call(bad(12, 2 ** 40))).toThrow(RangeError);
      expect(() => addon.ropeKvWriteHeap(heap, new Float64Array(5))).toThrow(TypeError);
      // swigluScaledHeap: gate 0, up 64, scale 128, y 256; B 2, T 2, F 4, scaleBatch 1
      const s = [0, 256, 512, 1024, 2, 2, 4, 1];
      expect(() =>
        addon.swigluScaledHeap(heap, Float64Array.from(s.map((x, i) => (i === 3 ? 0 : x)))),
      ).toThrow(/overlaps/);
      expect(() =>
        addon.swigluScaledHeap(heap, Float64Array.from(s.map((x, i) => (i === 7 ? 3 : x)))),
      ).toThrow(/scaleBatch/);
      expect(() =>
        addon.swigluScaledHeap(heap, Float64Array.from(s.map((x, i) => (i === 2 ? 8190 : x)))),
      ).toThrow(RangeError);
      expect(f.every((x) => x === 7)).toBe(true); // nothing was written by the rejected calls
    });

    it('the JavaScript fallback (for a shared heap) computes what the native kernels compute', () => {
      const addon = native();
      for (const cosBatch of [1, 3]) {
        const dims: RopeKvDims = {
          B: 3,
          Hq: 4,
          Hkv: 2,
          T: 2,
          hd: 6,
          C: 5,
          cosBatch,
          qScaleBatch: 3,
          kScaleBatch: 1,
          vScaleBatch: 3,
        };
        const { B: b, Hq: hq, Hkv: hkv, T, hd, C: cap } = dims;
        const nq = b * hq * T * hd;
        const nk = b * hkv * T * hd;
        const nt = cosBatch * T * hd;
        const nc = b * hkv * cap * hd;
        const o = {
          q: 0,
          k: nq,
          v: nq + nk,
          cos: nq + 2 * nk,
          sin: nq + 2 * nk + nt,
          qScale: nq + 2 * nk + 2 * nt,
          kScale: nq + 2 * nk + 2 * nt + 3 * hq * hd,
          vScale: nq + 2 * nk + 2 * nt + 3 * hq * hd + hkv * hd,
          kCache: nq + 2 * nk + 2 * nt + 3 * hq * hd + 4 * hkv * hd,
          vCache: 0,
          qOut: 0,
        };
        o.vCache = o.kCache + nc;
        o.qOut = o.vCache + nc;
        const total = o.qOut + nq;
        const slots = [3, -1, 0];
        const make = (withScales: boolean) => {
          const m = seeded(total, 9 + cosBatch).map((x) => x * 2);
          return { m, off: withScales ? o : { ...o, qScale: -1, kScale: -1, vScale: -1 } };
        };
        for (const withScales of [true, false]) {
          const nat = make(withScales);
          addon.ropeKvWriteHeap(
            nat.m.buffer,
            Float64Array.from([
              ...[nat.off.q, nat.off.k, nat.off.v, nat.off.cos, nat.off.sin].map((x) => x * 4),
              ...[nat.off.kCache, nat.off.vCache].map((x) => x * 4),
              ...[nat.off.qScale, nat.off.kScale, nat.off.vScale].map((x) => (x < 0 ? -1 : x * 4)),
              nat.off.qOut * 4,
              b,
              hq,
              hkv,
              T,
              hd,
              cap,
              cosBatch,
              dims.qScaleBatch,
              dims.kScaleBatch,
              dims.vScaleBatch,
              ...slots,
            ]),
          );
          const js = make(withScales);
          jsFused.ropeKvWrite(js.m, js.off, dims, slots);
          const label = `cosBatch ${cosBatch}${withScales ? ', scaled' : ''}`;
          expectNear(nat.m, js.m, 1e-6, `ropeKvWrite ${label}`);
          // Row 1 (slot −1) left untouched, the others written.
          const untouched = make(withScales).m;
          const rowC = hkv * cap * hd;
          expect(Array.from(nat.m.subarray(o.kCache + rowC, o.kCache + 2 * rowC))).toEqual(
            Array.from(untouched.subarray(o.kCache + rowC, o.kCache + 2 * rowC)),
          );
          expect(nat.m[o.kCache + 3 * hd]).not.toBe(untouched[o.kCache + 3 * hd]);
        }
      }
      for (const [F, sb] of [
        [7, 3],
        [5, 1],
      ] as [number, number][]) {
        const [b, T] = [3, 2];
        const n = b * T * F;
        const at = { g: 0, u: n, s: 2 * n, y: 2 * n + sb * F };
        const make = () => seeded(at.y + n, F).map((x) => x * 4);
        const nat = make();
        addon.swigluScaledHeap(
          nat.buffer,
          Float64Array.of(0, at.u * 4, at.s * 4, at.y * 4, b, T, F, sb),
        );
        const js = make();
        jsFused.swigluScaled(js, at.g, at.u, at.s, at.y, { B: b, T, F, scaleBatch: sb });
        expectNear(nat, js, 1e-6, `swigluScaled F ${F} sb ${sb}`);
      }
    });

    it('tensor counts stay flat over a loop of 50 fused appendRotated + swiglu steps', async () => {
      const hd = 8;
      const inv = ropeInvFreq({ headDim: hd });
      const cache = new KVCache({ numLayers: 1, batchSize: B, capacity: 64 });
      const sq = tf.ones([1, 1, Hq * hd]);
      const sv = tf.ones([B, 1, Hkv * hd]);
      const q = tf.tensor4d(scaled(B * Hq * hd, 1, 1), [B, Hq, 1, hd]);
      const k = tf.tensor4d(scaled(B * Hkv * hd, 2, 1), [B, Hkv, 1, hd]);
      const gate = tf.tensor3d(scaled(B * 16, 3, 2), [B, 1, 16]);
      const us = tf.tensor3d(scaled(B * 16, 4, 0.5, 1), [B, 1, 16]);
      const first = cache.beginStep(1);
      const r0 = ropeCosSin(first.positions, inv);
      // The prefill's k/v are the step's own tensors (v here is k itself): keep them inside a tidy.
      tf.tidy(() => {
        const o = cache.appendRotated(0, q, k, k, r0);
        return tf.add(tf.sum(o.q), tf.sum(o.k));
      }).dispose();
      tf.dispose([r0.cos, r0.sin]);
      const n = tf.memory().numTensors;
      let names: string[] = [];
      for (let i = 0; i < 50; i++) {
        const step = cache.beginStep(DECODE_VALID);
        const rope = ropeCosSin(step.positions, inv);
        const body = () =>
          tf.tidy(() => {
            const o = cache.appendRotated(0, q, k, k, rope, { q: sq, v: sv });
            return tf.add(tf.sum(o.q), tf.sum(swiglu(gate, gate, { upScale: us })));
          });
        if (i === 49) names = await kernelsOf(body);
        else body().dispose();
        tf.dispose([rope.cos, rope.sin]);
      }
      expect(names).toContain(FUSED_KERNELS.ropeKvWrite);
      expect(names).toContain(FUSED_KERNELS.swigluScaled);
      expect(tf.memory().numTensors).toBe(n);
      cache.dispose();
      tf.dispose([sq, sv, q, k, gate, us]);
      expect(tf.memory().numTensors).toBe(startTensors);
    });
  },
);
