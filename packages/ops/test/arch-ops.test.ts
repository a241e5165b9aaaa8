/**
 * The pieces Qwen3 and Gemma add (issue 14): sliding-window masks (one-shot and in the KV
 * cache, past the window), attention soft-capping, GeGLU with gelu_pytorch_tanh, and Gemma's
 * `(1 + w)` RMSNorm — each against a float64 reference.
 */
import { isParaError, Rng } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  attention,
  attentionMask,
  geglu,
  geluTanh,
  KVCache,
  MASK_NEGATIVE,
  rmsNorm,
  ropeAttentionScaling,
  ropeCosSin,
  ropeInvFreq,
} from '../src';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { refRmsNorm } from './helpers/reference';

function refGelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/** Attention with soft-capped scores in float64: mask [B, T, S] of allowed pairs. */
function refCapped(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  dims: { B: number; Hq: number; Hkv: number; T: number; S: number; hd: number },
  scale: number,
  cap: number | null,
  allowed: (b: number, t: number, s: number) => boolean,
): Float64Array {
  const { B, Hq, Hkv, T, S, hd } = dims;
  const nRep = Hq / Hkv;
  const out = new Float64Array(B * Hq * T * hd);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let t = 0; t < T; t++) {
        const kvh = Math.floor(h / nRep);
        const sc: number[] = [];
        for (let s = 0; s < S; s++) {
          let d = 0;
          for (let j = 0; j < hd; j++)
            d +=
              (q[((b * Hq + h) * T + t) * hd + j] as number) *
              (k[((b * Hkv + kvh) * S + s) * hd + j] as number);
          let x = d * scale;
          if (cap !== null) x = cap * Math.tanh(x / cap);
          sc.push(allowed(b, t, s) ? x : Number.NEGATIVE_INFINITY);
        }
        const m = Math.max(...sc);
        const e = sc.map((x) => (x === Number.NEGATIVE_INFINITY ? 0 : Math.exp(x - m)));
        const z = e.reduce((a, x) => a + x, 0);
        for (let j = 0; j < hd; j++) {
          let acc = 0;
          for (let s = 0; s < S; s++)
            acc += ((e[s] as number) / z) * (v[((b * Hkv + kvh) * S + s) * hd + j] as number);
          out[((b * Hq + h) * T + t) * hd + j] = acc;
        }
      }
  return out;
}

describe('sliding-window masks (host rules)', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('attentionMask with slidingWindow W: key slot s visible from query slot q iff q - W < s ≤ q and valid', async () => {
    const keyValid = [
      [0, 0, 1, 1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 0, 1, 1, 1],
    ];
    const [B, S, W] = [2, 9, 3];
    for (const T of [9, 4]) {
      const host = await take(attentionMask({ keyValid, queryLength: T, slidingWindow: W }));
      const dev = await take(
        attentionMask({
          keyValid: tf.tensor2d(keyValid, [B, S], 'int32'),
          queryLength: T,
          slidingWindow: W,
        }),
      );
      expect(Array.from(dev, (x) => x + 0)).toEqual(Array.from(host, (x) => x + 0)); // -0 → 0
      for (let b = 0; b < B; b++)
        for (let t = 0; t < T; t++)
          for (let s = 0; s < S; s++) {
            const q = S - T + t;
            const ok = s <= q && s > q - W && (keyValid[b] as number[])[s] === 1;
            expect(host[(b * T + t) * S + s], `b${b} t${t} s${s}`).toBe(ok ? 0 : MASK_NEGATIVE);
          }
    }
    // No window: the plain causal mask.
    expect(await take(attentionMask({ keyValid, slidingWindow: null }))).toEqual(
      await take(attentionMask({ keyValid })),
    );
    expect(isParaError(caughtSync(() => attentionMask({ keyValid, slidingWindow: 0 })))).toBe(true);
  });

  it('KVCache.attentionMask with a window keeps full length and masks slots older than the window, prefill and decode alike', async () => {
    const W = 4;
    const cache = new KVCache({
      numLayers: 1,
      batchSize: 2,
      capacity: 16,
      numKvHeads: 1,
      headDim: 2,
    });
    const kv = (T: number) => tf.zeros([2, 1, T, 2]);
    // Prefill: row 0 has 2 pads then 5 tokens, row 1 seven tokens.
    const pre = cache.beginStep([
      [0, 0, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1, 1],
    ]);
    const m0 = await take(cache.attentionMask(pre, { slidingWindow: W }));
    const full0 = await take(cache.attentionMask(pre));
    cache.append(0, kv(7), kv(7));
    const check = (m: ArrayLike<number>, step: typeof pre, windowed: boolean) => {
      const { queryLength: T, keyLength: S } = step;
      for (let b = 0; b < 2; b++)
        for (let t = 0; t < T; t++)
          for (let s = 0; s < S; s++) {
            const q = (step.starts[b] as number) + t;
            const ok =
              s <= q && (!windowed || s > q - W) && (step.keyValid[b] as number[])[s] === 1;
            expect(m[(b * T + t) * S + s], `b${b} t${t} s${s}`).toBe(ok ? 0 : MASK_NEGATIVE);
          }
    };
    check(m0, pre, true);
    check(full0, pre, false);
    // Decode 6 steps (past the window), row 1 idle in step 2.
    for (let i = 0; i < 6; i++) {
      const step = cache.beginStep([[1], [i === 2 ? 0 : 1]]);
      const m = await take(cache.attentionMask(step, { slidingWindow: W }));
      check(m, step, true);
      // Exactly min(W, tokens so far) keys visible for an active row with no pads in the window.
      const visible = Array.from(m)
        .slice(16, 32)
        .filter((x) => x === 0).length;
      if (step.active[1]) expect(visible).toBe(W);
      cache.append(0, kv(1), kv(1));
    }
    cache.dispose();
  });
});

/**
 * transformers 5.18.0's `_compute_yarn_parameters` (head_dim 32) for two settings, printed by
 * `ROPE_INIT_FUNCTIONS['yarn'](Qwen3Config(head_dim=32, rope_parameters=...))` (9 digits).
 */
const YARN_CASES = [
  {
    theta: 10000.0,
    scaling: {
      rope_type: 'yarn',
      factor: 4.0,
      original_max_position_embeddings: 64,
      beta_fast: 16.0,
    },
    inv: [
      1.0, 0.477990121, 0.221359432, 0.0978053659, 0.0399999991, 0.0140585322, 0.00790569466,
      0.00444569858, 0.00249999994, 0.00140585331, 0.000790569466, 0.000444569858, 0.000250000012,
      0.000140585325, 7.90569466e-5, 4.44569851e-5,
    ],
    attentionFactor: 1.138629436111989,
  },
  {
    theta: 1000000.0,
    scaling: {
      rope_type: 'yarn',
      factor: 8.0,
      original_max_position_embeddings: 4096,
      mscale: 0.8,
      mscale_all_dim: 1.0,
      truncate: false,
    },
    inv: [
      1.0, 0.421696514, 0.177827939, 0.0749894157, 0.0281120818, 0.00894767046, 0.00254728831,
      0.000557219435, 0.000125000006, 5.2712061e-5, 2.22284925e-5, 9.37367804e-6, 3.95284678e-6,
      1.66690177e-6, 7.02926684e-7, 2.96421717e-7,
    ],
    attentionFactor: 0.9655705682335599,
  },
];

describe('yarn RoPE scaling', () => {
  it('inverse frequencies and attention scaling match transformers', () => {
    for (const c of YARN_CASES) {
      const inv = ropeInvFreq({ headDim: 32, theta: c.theta, scaling: c.scaling });
      expectClose(Array.from(inv), c.inv, 0, 2e-7, JSON.stringify(c.scaling));
      expect(ropeAttentionScaling(c.scaling)).toBeCloseTo(c.attentionFactor, 12);
    }
    expect(ropeAttentionScaling(null)).toBe(1);
    expect(ropeAttentionScaling({ rope_type: 'linear', factor: 4 })).toBe(1);
    expect(ropeAttentionScaling({ rope_type: 'yarn', factor: 4, attention_factor: 1.5 })).toBe(1.5);
  });

  it('dynamic (NTK): default up to max_position_embeddings, theta raised past it (transformers values)', () => {
    const scaling = { rope_type: 'dynamic', factor: 2 };
    const base = ropeInvFreq({ headDim: 32, theta: 10000 });
    expect(ropeInvFreq({ headDim: 32, theta: 10000, scaling })).toEqual(base);
    expect(ropeInvFreq({ headDim: 32, theta: 10000, scaling, seqLen: 8, maxPositions: 8 })).toEqual(
      base,
    );
    // transformers 5.18.0: ROPE_INIT_FUNCTIONS['dynamic'](LlamaConfig(head_dim=32,
    // max_position_embeddings=8, ...), seq_len=torch.tensor(20)), 9 digits.
    const hf = [
      1.0, 0.512699246, 0.262860507, 0.134768382, 0.0690956414, 0.035425283, 0.018162515,
      0.00931190792, 0.00477420771, 0.00244773272, 0.00125495065, 0.000643412233, 0.000329876988,
      0.00016912767, 8.67116323e-5, 4.44569814e-5,
    ];
    const got = ropeInvFreq({ headDim: 32, theta: 10000, scaling, seqLen: 20, maxPositions: 8 });
    expectClose(Array.from(got), hf, 0, 2e-7);
    expect(() => ropeInvFreq({ headDim: 32, theta: 10000, scaling, seqLen: 20 })).toThrow(
      'max_position_embeddings',
    );
  });

  it('longrope (Phi-3): short factors up to the original length, long past it, attention scaling (transformers values)', () => {
    const scaling = {
      rope_type: 'longrope',
      original_max_position_embeddings: 12,
      short_factor: [1.0, 1.1, 1.3, 1.7, 2.3, 3.1],
      long_factor: [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0],
    };
    // transformers 5.18.0: ROPE_INIT_FUNCTIONS['longrope'](Phi3Config(hidden_size=64, heads=4,
    // max_position_embeddings=48, original_max_position_embeddings=12, partial_rotary_factor
    // 0.75, ...)) without and with seq_len=13 (rotary dim 12), 9 digits.
    const short = [1.0, 0.195857689, 0.0357045271, 0.00588235306, 0.000936710625, 0.000149728701];
    const long = [1.0, 0.0538608618, 0.00290099275, 0.000156249997, 8.41575911e-6, 4.53280222e-7];
    const at = (seqLen?: number) =>
      Array.from(ropeInvFreq({ headDim: 12, theta: 10000, scaling, seqLen }));
    expectClose(at(), short, 0, 2e-7, 'init');
    expectClose(at(12), short, 0, 2e-7, 'seq 12');
    expectClose(at(13), long, 0, 2e-7, 'seq 13');
    expect(ropeAttentionScaling(scaling, 48)).toBeCloseTo(1.2481529919454024, 12);
    expect(ropeAttentionScaling({ ...scaling, factor: 1 }, 48)).toBe(1);
    expect(() =>
      ropeInvFreq({ headDim: 12, theta: 10000, scaling: { ...scaling, short_factor: [1, 2] } }),
    ).toThrow('short_factor');
  });

  it('ropeCosSin scale multiplies cos and sin (host and device positions)', async () => {
    const inv = ropeInvFreq({ headDim: 8, theta: 100 });
    const pos = [[0, 3, 17]];
    const a = ropeCosSin(pos, inv);
    const b = ropeCosSin(pos, inv, { scale: 1.25 });
    const c = ropeCosSin(tf.tensor2d(pos, [1, 3], 'int32'), inv, { scale: 1.25 });
    const ca = await take(a.cos);
    const [bc, bs] = [await take(b.cos), await take(b.sin)];
    expectClose(
      bc,
      Array.from(ca, (x) => x * 1.25),
      1e-6,
      0,
    );
    expectClose(await take(c.cos), bc, 1e-5, 0);
    expectClose(await take(c.sin), bs, 1e-5, 0);
    a.sin.dispose();
  });
});

function caughtSync(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

for (const backend of testBackends()) {
  describe(`Gemma and Qwen3 ops on ${backend}`, () => {
    beforeAll(async () => {
      await useBackend(backend);
    });

    it('attention with softcap and a custom scale matches the float64 reference (windowed mask)', async () => {
      const rng = new Rng(5);
      const dims = { B: 2, Hq: 4, Hkv: 2, T: 6, S: 6, hd: 8 };
      const q = rng.normalArray(2 * 4 * 6 * 8, 0, 2);
      const k = rng.normalArray(2 * 2 * 6 * 8, 0, 2);
      const v = rng.normalArray(2 * 2 * 6 * 8);
      const keyValid = [
        [0, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
      ];
      const W = 3;
      const allowed = (b: number, t: number, s: number) =>
        s <= t && s > t - W && (keyValid[b] as number[])[s] === 1;
      const mask = attentionMask({ keyValid, slidingWindow: W });
      const scale = 24 ** -0.5;
      for (const cap of [null, 1.5]) {
        const out = await take(
          attention(
            tf.tensor4d(q, [2, 4, 6, 8]),
            tf.tensor4d(k, [2, 2, 6, 8]),
            tf.tensor4d(v, [2, 2, 6, 8]),
            mask,
            { scale, softcap: cap },
          ),
        );
        const ref = refCapped(q, k, v, dims, scale, cap, allowed);
        // Row 0's slot 0 is padding (fully masked): its output is ignored by design.
        const keep = (i: number) =>
          !(Math.floor(i / (6 * 8 * 4)) === 0 && Math.floor(i / 8) % 6 === 0);
        expectClose(
          out.filter((_, i) => keep(i)),
          ref.filter((_, i) => keep(i)),
          1e-5,
          1e-5,
          `cap ${cap}`,
        );
      }
      const capped = await take(
        attention(
          tf.tensor4d(q, [2, 4, 6, 8]),
          tf.tensor4d(k, [2, 2, 6, 8]),
          tf.tensor4d(v, [2, 2, 6, 8]),
          mask,
          { scale, softcap: 0.1 },
        ),
      );
      const uncapped = await take(
        attention(
          tf.tensor4d(q, [2, 4, 6, 8]),
          tf.tensor4d(k, [2, 2, 6, 8]),
          tf.tensor4d(v, [2, 2, 6, 8]),
          mask,
          { scale },
        ),
      );
      expect(
        Math.max(...capped.map((x, i) => Math.abs(x - (uncapped[i] as number)))),
      ).toBeGreaterThan(1e-2);
      expect(
        isParaError(
          caughtSync(() =>
            attention(
              tf.tensor4d(q, [2, 4, 6, 8]),
              tf.tensor4d(k, [2, 2, 6, 8]),
              tf.tensor4d(v, [2, 2, 6, 8]),
              mask,
              { softcap: -1 },
            ),
          ),
          'INVALID_ARGUMENT',
        ),
      ).toBe(true);
    });

    it('geluTanh and geglu match gelu_pytorch_tanh; the gradient matches finite differences', async () => {
      const rng = new Rng(9);
      const g = rng.normalArray(60, 0, 3);
      const u = rng.normalArray(60);
      const y = await take(geluTanh(tf.tensor(g, [6, 10])));
      expectClose(y, Array.from(g, refGelu), 1e-5, 1e-5, 'gelu');
      const gg = await take(geglu(tf.tensor(g, [6, 10]), tf.tensor(u, [6, 10])));
      expectClose(
        gg,
        Array.from(g, (x, i) => refGelu(x) * (u[i] as number)),
        1e-5,
        1e-5,
        'geglu',
      );
      const grad = await take(tf.grad((x: tf.Tensor) => tf.sum(geluTanh(x)))(tf.tensor1d(g)));
      const h = 1e-4;
      expectClose(
        grad,
        Array.from(g, (x) => (refGelu(x + h) - refGelu(x - h)) / (2 * h)),
        1e-3,
        1e-3,
        'gelu grad',
      );
    });

    it('rmsNorm with unitOffset is x · rsqrt(mean x² + eps) · (1 + w)', async () => {
      const rng = new Rng(4);
      const d = 16;
      const x = rng.normalArray(3 * d, 0, 2);
      const w = rng.normalArray(d, 0, 0.3);
      const y = await take(
        rmsNorm(tf.tensor2d(x, [3, d]), tf.tensor1d(w), 1e-6, { unitOffset: true }),
      );
      expectClose(
        y,
        refRmsNorm(
          x,
          Array.from(w, (v) => 1 + v),
          d,
          1e-6,
        ),
        1e-5,
        1e-5,
      );
      // Per-head (q_norm over head_dim) on a 4-D tensor.
      const x4 = rng.normalArray(2 * 3 * 4 * d);
      const y4 = await take(rmsNorm(tf.tensor4d(x4, [2, 3, 4, d]), tf.tensor1d(w), 1e-6));
      expectClose(y4, refRmsNorm(x4, w, d, 1e-6), 1e-5, 1e-5);
    });
  });
}
