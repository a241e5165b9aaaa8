import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @para/ops from source (as fused.test.ts): the contract and the op that dispatches live there.
import { FUSED_KERNELS, recordingGradients, setFusedKernelsEnabled } from '../../ops/src/fused';
import { attention, attentionMask, MASK_NEGATIVE } from '../../ops/src/index';
import { dot, numericGrad, refAttention } from '../../ops/test/helpers/reference';
import { blasAddon } from '../src/addon';
import { jsAttention } from '../src/fused';
import { installBlasKernels, uninstallBlasKernels } from '../src/index';
import { CASES, type Case, keyValidOf, run, scaled, tensorsOf } from './attention-cases';
import { expectAddonLoaded, expectNear, status } from './helpers';

it('the addon loads (required with PARA_BLAS_REQUIRED=1; otherwise the rest skip where it cannot)', () => {
  expectAddonLoaded();
});

async function kernelsOf(fn: () => tf.Tensor | tf.Tensor[]): Promise<string[]> {
  const info = await tf.profile(() => fn());
  tf.dispose(info.result as tf.Tensor | tf.Tensor[]);
  return info.kernelNames;
}

describe.runIf(status.available)(
  'fused attention on wasm (ParaAttention, ParaAttentionGrad)',
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

    it('are registered, and attention runs one kernel forward and one backward', async () => {
      expect(tf.getKernel(FUSED_KERNELS.attention, 'wasm')).toBeDefined();
      expect(tf.getKernel(FUSED_KERNELS.attentionGrad, 'wasm')).toBeDefined();
      const c: Case = { B: 2, Hq: 4, Hkv: 2, T: 5, S: 5, hd: 8, mask: 'causal' };
      const { q, k, v, w, mask } = tensorsOf(c);
      expect(await kernelsOf(() => attention(q, k, v, mask))).toEqual(['ParaAttention']);
      const bwd = await kernelsOf(() =>
        tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
          tf.sum(tf.mul(attention(a, b, d, mask), w)),
        )([q, k, v]),
      );
      expect(bwd).toContain('ParaAttentionGrad');
      expect(bwd.filter((n) => n === 'ParaAttention')).toHaveLength(1);
      expect(bwd).not.toContain('BatchMatMul');
      expect(bwd).not.toContain('Softmax');
      // softcap: the generic path
      expect(await kernelsOf(() => attention(q, k, v, mask, { softcap: 30 }))).not.toContain(
        'ParaAttention',
      );
      const was = setFusedKernelsEnabled(false);
      expect(await kernelsOf(() => attention(q, k, v, mask))).toContain('Softmax');
      setFusedKernelsEnabled(was);
      tf.dispose([q, k, v, w, mask as tf.Tensor]);
    });

    for (const c of CASES) {
      it(`B${c.B} Hq${c.Hq}/Hkv${c.Hkv} T${c.T} S${c.S} hd${c.hd} mask ${c.mask}: forward and gradients equal the generic path`, () => {
        const fused = run(c, true);
        const generic = run(c, false);
        const names = ['out', 'dq', 'dk', 'dv'];
        fused.forEach((f, i) => {
          expectNear(f, generic[i] as Float32Array, 1e-5, names[i] as string);
        });
      });
    }

    it('forward and gradients match a float64 reference and its central finite differences', () => {
      const c: Case = { B: 2, Hq: 4, Hkv: 2, T: 3, S: 6, hd: 6, mask: 'decode' }; // no fully masked row
      const dims = { B: c.B, Hq: c.Hq, Hkv: c.Hkv, T: c.T, S: c.S, hd: c.hd };
      const valid = keyValidOf(c);
      const allowed = (b: number, t: number, s: number) =>
        (valid[b] as number[])[s] === 1 && s <= c.S - c.T + t;
      const { q, k, v, w, mask } = tensorsOf(c, 7);
      const [qa, ka, va, wa] = [q, k, v, w].map((t) => Float64Array.from(t.dataSync()));
      const ref = refAttention(
        qa as Float64Array,
        ka as Float64Array,
        va as Float64Array,
        dims,
        allowed,
      );
      const y = attention(q, k, v, mask);
      expectNear(y.dataSync(), ref, 1e-5, 'forward vs float64');
      const [gq, gk, gv] = tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
        tf.sum(tf.mul(attention(a, b, d, mask), w)),
      )([q, k, v]) as [tf.Tensor, tf.Tensor, tf.Tensor];
      const f = (qq: Float64Array, kk: Float64Array, vv: Float64Array) =>
        dot(refAttention(qq, kk, vv, dims, allowed), wa as Float64Array);
      const nq = numericGrad(
        (x) => f(x, ka as Float64Array, va as Float64Array),
        qa as Float64Array,
      );
      const nk = numericGrad(
        (x) => f(qa as Float64Array, x, va as Float64Array),
        ka as Float64Array,
      );
      const nv = numericGrad(
        (x) => f(qa as Float64Array, ka as Float64Array, x),
        va as Float64Array,
      );
      expectNear(gq.dataSync(), nq, 2e-5, 'dq vs finite differences');
      expectNear(gk.dataSync(), nk, 2e-5, 'dk vs finite differences');
      expectNear(gv.dataSync(), nv, 2e-5, 'dv vs finite differences');
      tf.dispose([q, k, v, w, mask as tf.Tensor, y, gq, gk, gv]);
    });

    for (const T of [3, 16])
      it(`rows with every key masked (T ${T}: the ${T < 8 ? 'row-block' : 'tile'} path): MASK_NEGATIVE as the generic path (uniform); −Infinity gives 0, never NaN`, () => {
        const B = 1;
        const [Hq, Hkv, S, hd] = [2, 1, 4, 8];
        const q = tf.tensor4d(scaled(B * Hq * T * hd, 3, 2), [B, Hq, T, hd]); // [B, Hq, T, hd]
        const k = tf.tensor4d(scaled(B * Hkv * S * hd, 4, 2), [B, Hkv, S, hd]); // [B, Hkv, S, hd]
        const v = tf.tensor4d(scaled(B * Hkv * S * hd, 5, 1), [B, Hkv, S, hd]); // [B, Hkv, S, hd]
        // Row 0 fully masked, row 1 partly, row 2 open.
        const rows = (neg: number) =>
          Array.from({ length: T * S }, (_, i) =>
            i < S ? neg : i < 2 * S ? (i % 2 === 0 ? 0 : neg) : 0,
          );
        for (const neg of [MASK_NEGATIVE, Number.NEGATIVE_INFINITY]) {
          const mask = tf.tensor4d(rows(neg), [1, 1, T, S]); // [1, 1, T, S]
          const fused = attention(q, k, v, mask);
          const was = setFusedKernelsEnabled(false);
          const generic = attention(q, k, v, mask);
          setFusedKernelsEnabled(was);
          const f = fused.dataSync();
          const g = generic.dataSync();
          if (neg === MASK_NEGATIVE) expectNear(f, g, 1e-5, 'MASK_NEGATIVE rows');
          else {
            expect(f.every((x) => Number.isFinite(x))).toBe(true);
            for (let h = 0; h < Hq; h++)
              for (let d = 0; d < hd; d++) expect(f[(h * T + 0) * hd + d]).toBe(0);
            // the other rows as the generic path
            const other = (a: Float32Array) => a.filter((_, i) => Math.floor(i / hd) % T !== 0);
            expectNear(
              other(f as Float32Array),
              other(g as Float32Array),
              1e-5,
              '−Infinity other rows',
            );
          }
          const [gq] = tf.grads((a: tf.Tensor) => tf.sum(attention(a, k, v, mask)))([q]);
          expect((gq as tf.Tensor).dataSync().every((x) => Number.isFinite(x))).toBe(true);
          tf.dispose([mask, fused, generic, gq as tf.Tensor]);
        }
        tf.dispose([q, k, v]);
      });

    it('tile path: a block of positions whose every key is −Infinity gives 0; the other blocks equal the generic path on their rows', () => {
      const [B, Hq, Hkv, T, hd] = [1, 2, 1, 140, 8];
      const q = tf.tensor4d(scaled(B * Hq * T * hd, 7, 2), [B, Hq, T, hd]); // [B, Hq, T, hd]
      const k = tf.tensor4d(scaled(B * Hkv * T * hd, 8, 2), [B, Hkv, T, hd]); // [B, Hkv, S, hd]
      const v = tf.tensor4d(scaled(B * Hkv * T * hd, 9, 1), [B, Hkv, T, hd]); // [B, Hkv, S, hd]
      const w = tf.tensor4d(scaled(B * Hq * T * hd, 10, 1), [B, Hq, T, hd]);
      // Rows 0..69 see no key (two whole blocks and part of a third); the rest are causal.
      const m = Array.from({ length: T * T }, (_, i) => {
        const [t, j] = [Math.floor(i / T), i % T];
        return t < 70 || j > t ? Number.NEGATIVE_INFINITY : 0;
      });
      const mask = tf.tensor4d(m, [1, 1, T, T]);
      const live = [70, T - 70];
      const sub = (x: tf.Tensor) => tf.slice(x, [0, 0, 70, 0], [B, Hq, T - 70, hd]);
      const grads = (qq: tf.Tensor, ww: tf.Tensor, mm: tf.Tensor) =>
        tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
          tf.sum(tf.mul(attention(a, b, d, mm), ww)),
        )([qq, k, v]);
      const fusedY = attention(q, k, v, mask);
      const [gq, gk, gv] = grads(q, w, mask) as [tf.Tensor, tf.Tensor, tf.Tensor];
      const y = fusedY.arraySync() as number[][][][];
      const dq = gq.arraySync() as number[][][][];
      for (let h = 0; h < Hq; h++)
        for (let t = 0; t < 70; t++) {
          expect(
            y[0]?.[h]?.[t]?.every((x) => x === 0),
            `y row ${h},${t}`,
          ).toBe(true);
          expect(
            dq[0]?.[h]?.[t]?.every((x) => x === 0),
            `dq row ${h},${t}`,
          ).toBe(true);
        }
      const subMask = tf.slice(mask, [0, 0, 70, 0], [1, 1, live[1] as number, T]);
      const was = setFusedKernelsEnabled(false);
      try {
        tf.tidy(() => {
          const refY = attention(sub(q), k, v, subMask);
          const [rq, rk, rv] = grads(sub(q), sub(w), subMask) as [tf.Tensor, tf.Tensor, tf.Tensor];
          expectNear(sub(fusedY).dataSync(), refY.dataSync(), 1e-5, 'y (live rows)');
          expectNear(sub(gq).dataSync(), rq.dataSync(), 1e-5, 'dq (live rows)');
          expectNear(gk.dataSync(), rk.dataSync(), 1e-5, 'dk');
          expectNear(gv.dataSync(), rv.dataSync(), 1e-5, 'dv');
        });
      } finally {
        setFusedKernelsEnabled(was);
      }
      tf.dispose([q, k, v, w, mask, subMask, fusedY, gq, gk, gv]);
    });

    // T = 1: the row-block path (a decode step); T = 24 with GQA 2 (48 rows): the tile path, whose
    // blocks start at an unaligned first live key (18) as well as an aligned one (0 after 3 pads).
    for (const { T, pad, live } of [
      { T: 1, pad: [0, 0], live: [10, 37] },
      { T: 24, pad: [3, 18], live: [40, 61] },
    ]) {
      it(`T ${T}: masked cache slots are never read (NaN in pads and free slots stays out), as the generic path with them zeroed`, () => {
        const [B, Hq, Hkv, S, hd] = [2, 4, 2, 64, 16];
        const valid = (b: number, s: number) => s >= (pad[b] as number) && s < (live[b] as number);
        const keyValid = [0, 1].map((b) =>
          Array.from({ length: S }, (_, s) => (valid(b, s) ? 1 : 0)),
        );
        const mask = attentionMask({ keyValid, queryLength: T, causal: false }); // [B, 1, T, S]
        const fill = (seed: number, garbage: number) => {
          const a = scaled(B * Hkv * S * hd, seed, 2);
          for (let b = 0; b < B; b++)
            for (let h = 0; h < Hkv; h++)
              for (let s = 0; s < S; s++)
                if (!valid(b, s))
                  a.fill(garbage, ((b * Hkv + h) * S + s) * hd, ((b * Hkv + h) * S + s + 1) * hd);
          return tf.tensor4d(a, [B, Hkv, S, hd]); // [B, Hkv, S, hd]
        };
        const q = tf.tensor4d(scaled(B * Hq * T * hd, 7, 2), [B, Hq, T, hd]); // [B, Hq, T, hd]
        const [kNaN, vNaN, kZero, vZero] = [
          fill(8, Number.NaN),
          fill(9, Number.NaN),
          fill(8, 0),
          fill(9, 0),
        ];
        const loss = (a: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => tf.sum(attention(a, k, v, mask));
        const fused = [attention(q, kNaN, vNaN, mask), ...tf.grads(loss)([q, kNaN, vNaN])];
        const was = setFusedKernelsEnabled(false);
        const generic = [attention(q, kZero, vZero, mask), ...tf.grads(loss)([q, kZero, vZero])];
        setFusedKernelsEnabled(was);
        ['out', 'dq', 'dk', 'dv'].forEach((name, i) => {
          const f = (fused[i] as tf.Tensor).dataSync() as Float32Array;
          expect(f.every((x) => Number.isFinite(x))).toBe(true);
          expectNear(f, (generic[i] as tf.Tensor).dataSync() as Float32Array, 1e-5, name);
        });
        tf.dispose([q, kNaN, vNaN, kZero, vZero, mask, ...fused, ...generic]);
      });
    }

    it('a backend with the forward kernel only: dispatched while no tape records, generic under tf.grads', async () => {
      const c: Case = { B: 1, Hq: 2, Hkv: 1, T: 4, S: 4, hd: 8, mask: 'causal' };
      const { q, k, v, w, mask } = tensorsOf(c);
      const grad = tf.getKernel(FUSED_KERNELS.attentionGrad, 'wasm');
      tf.unregisterKernel(FUSED_KERNELS.attentionGrad, 'wasm');
      try {
        expect(recordingGradients()).toBe(false);
        expect(await kernelsOf(() => attention(q, k, v, mask))).toEqual(['ParaAttention']);
        let inside = false;
        const bwd = await kernelsOf(() =>
          tf.grads((a: tf.Tensor) => {
            inside = recordingGradients();
            return tf.sum(tf.mul(attention(a, k, v, mask), w));
          })([q]),
        );
        expect(inside).toBe(true);
        expect(bwd).not.toContain('ParaAttention');
        expect(bwd).toContain('Softmax');
      } finally {
        if (grad !== undefined) tf.registerKernel(grad);
      }
      tf.dispose([q, k, v, w, mask as tf.Tensor]);
    });

    it('the kernels reject inputs that break the contract', () => {
      const q = tf.zeros([1, 3, 2, 4]); // [B, Hq, T, hd]
      const k = tf.zeros([1, 2, 5, 4]); // [B, Hkv, S, hd]: 2 does not divide 3
      const run = (inputs: tf.NamedTensorMap, scale = 0.5) =>
        tf.engine().runKernel(FUSED_KERNELS.attention, inputs, { scale });
      expect(() => run({ q, k, v: k })).toThrow(/Hkv dividing Hq/);
      const k1 = tf.zeros([1, 1, 5, 4]);
      const v2 = tf.zeros([1, 1, 6, 4]);
      expect(() => run({ q, k: k1, v: v2 })).toThrow(/does not match/);
      const badMask = tf.zeros([1, 1, 2, 4]);
      expect(() => run({ q, k: k1, v: k1, mask: badMask })).toThrow(/mask/);
      expect(() => run({ q, k: k1, v: k1 }, Number.NaN)).toThrow(/scale/);
      const qi = tf.zeros([1, 3, 2, 4], 'int32');
      expect(() => run({ q: qi, k: k1, v: k1 })).toThrow(/float32/);
      tf.dispose([q, k, k1, v2, badMask, qi]);
    });

    it('the addon checks bounds and overlaps before touching the heap', () => {
      const addon = blasAddon() as Required<NonNullable<ReturnType<typeof blasAddon>>>;
      const heap = new ArrayBuffer(4096);
      const f = new Float32Array(heap);
      f.fill(0.5);
      // q [1,1,2,4] at 0, k at 64 [1,1,3,4], v at 128, out at 256: fine.
      const ok = [0, 64, 128, -1, 256, 1, 1, 1, 2, 3, 4, 1, 0.5];
      addon.attentionHeap(heap, Float64Array.from(ok));
      expect(f[64]).toBeCloseTo(0.5, 6); // uniform over equal keys: the mean of v
      f.fill(7);
      const bad = (i: number, x: number) => {
        const p = ok.slice();
        p[i] = x;
        return Float64Array.from(p);
      };
      expect(() => addon.attentionHeap(heap, bad(4, 4090))).toThrow(RangeError);
      expect(() => addon.attentionHeap(heap, bad(4, 2))).toThrow(RangeError);
      expect(() => addon.attentionHeap(heap, bad(4, 64))).toThrow(/overlaps/);
      expect(() => addon.attentionHeap(heap, bad(7, 2))).toThrow(/multiple/);
      expect(() => addon.attentionHeap(heap, bad(12, Number.POSITIVE_INFINITY))).toThrow(/scale/);
      expect(() =>
        addon.attentionHeap(
          heap,
          bad(3, 1024).map((x, i) => (i === 11 ? 3 : x)),
        ),
      ).toThrow(/maskBatch/);
      expect(() => addon.attentionHeap(heap, bad(9, 2 ** 30))).toThrow(RangeError);
      // grad: dq overlapping dk
      const g = [0, 32, 64, 128, -1, 256, 256, 512, 1, 1, 1, 2, 3, 4, 1, 0.5];
      expect(() => addon.attentionGradHeap(heap, Float64Array.from(g))).toThrow(/overlaps/);
      expect(() => addon.attentionGradHeap(heap, new Float64Array(5))).toThrow(TypeError);
      expect(f.every((x) => x === 7)).toBe(true); // nothing was written by the rejected calls
    });

    it('the JavaScript fallback (for a shared heap) computes what the native kernels compute', () => {
      const addon = blasAddon() as Required<NonNullable<ReturnType<typeof blasAddon>>>;
      const dims = { B: 2, Hq: 4, Hkv: 2, T: 3, S: 6, hd: 5, maskBatch: 2, scale: 0.4 };
      const nq = 2 * 4 * 3 * 5;
      const nk = 2 * 2 * 6 * 5;
      const nm = 2 * 3 * 6;
      // layout (elements): q, k, v, mask, dy, then outputs
      const at = { q: 0, k: nq, v: nq + nk, mask: nq + 2 * nk, dy: nq + 2 * nk + nm };
      const outAt = at.dy + nq;
      const total = outAt + nq + 2 * nk;
      const make = () => {
        const m = new Float32Array(total);
        m.set(scaled(nq, 1, 2), at.q);
        m.set(scaled(nk, 2, 2), at.k);
        m.set(scaled(nk, 3, 1), at.v);
        const mk = scaled(nm, 4, 1).map((x) => (x < -0.5 ? MASK_NEGATIVE : x));
        for (let i = 0; i < 6; i++) mk[i] = Number.NEGATIVE_INFINITY; // one fully masked row
        m.set(mk, at.mask);
        m.set(scaled(nq, 5, 1), at.dy);
        return m;
      };
      const d = [dims.B, dims.Hq, dims.Hkv, dims.T, dims.S, dims.hd, dims.maskBatch, dims.scale];
      const nat = make();
      addon.attentionHeap(
        nat.buffer,
        Float64Array.of(0, at.k * 4, at.v * 4, at.mask * 4, outAt * 4, ...d),
      );
      const js = make();
      jsAttention.forward(js, at.q, at.k, at.v, at.mask, outAt, dims);
      expectNear(nat.subarray(outAt, outAt + nq), js.subarray(outAt, outAt + nq), 1e-6, 'forward');
      const natG = make();
      addon.attentionGradHeap(
        natG.buffer,
        Float64Array.of(
          at.dy * 4,
          0,
          at.k * 4,
          at.v * 4,
          at.mask * 4,
          outAt * 4,
          (outAt + nq) * 4,
          (outAt + nq + nk) * 4,
          ...d,
        ),
      );
      const jsG = make();
      jsAttention.backward(
        jsG,
        at.dy,
        at.q,
        at.k,
        at.v,
        at.mask,
        outAt,
        outAt + nq,
        outAt + nq + nk,
        dims,
      );
      expectNear(natG.subarray(outAt), jsG.subarray(outAt), 1e-5, 'gradients');
    });

    it('tensor counts stay flat over a loop of fused forwards and gradients', () => {
      const c: Case = { B: 2, Hq: 4, Hkv: 2, T: 6, S: 6, hd: 8, mask: 'padded' };
      const { q, k, v, w, mask } = tensorsOf(c);
      const step = () =>
        tf.tidy(() => {
          const y = attention(q, k, v, mask);
          const g = tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
            tf.sum(tf.mul(attention(a, b, d, mask), w)),
          )([q, k, v]);
          return tf.addN([tf.sum(y), ...g.map((t) => tf.sum(t))]);
        });
      step().dispose();
      const before = tf.memory().numTensors;
      const ids = tf.engine().backend.numDataIds();
      for (let i = 0; i < 10; i++) step().dispose();
      expect(tf.memory().numTensors).toBe(before);
      expect(tf.engine().backend.numDataIds()).toBe(ids);
      tf.dispose([q, k, v, w, mask as tf.Tensor]);
    });

    it('leaks no tensors', () => {
      expect(tf.memory().numTensors).toBe(startTensors);
    });
  },
);
