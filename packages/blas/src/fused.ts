import * as tf from '@tensorflow/tfjs-core';
import { type BlasAddon, blasAddon } from './addon';
import type { KernelArgs, TensorInfoLike, WasmBackendLike } from './kernels';

/*
 * Fused kernels for tfjs's wasm backend — ParaRmsNorm, ParaRmsNormGrad, ParaAddRmsNorm,
 * ParaAddRmsNormGrad, ParaSwiGlu, ParaSwiGluGrad, ParaRope, ParaAttention, ParaAttentionGrad,
 * ParaCrossEntropy, ParaCrossEntropyGrad, ParaScale, ParaScaleGrad, ParaAdamW, ParaSumSquares, and the forward-only
 * ParaSwiGluScaled and ParaRopeKvWrite (which writes the KV cache's storage in place) — computed in C
 * (native/para_fused.c) directly on the wasm heap, as the matmuls are. Their contract (inputs, attrs, outputs, math) is @para/ops' `fused.ts`, whose
 * ops call them where they are registered and whose registered gradients call the Grad kernels.
 * A shared (threaded) heap, which the addon cannot address, is computed by the same math in
 * JavaScript on the heap's views instead: slower, same answer.
 */

export const FUSED_KERNEL_NAMES = [
  'ParaRmsNorm',
  'ParaRmsNormGrad',
  'ParaAddRmsNorm',
  'ParaAddRmsNormGrad',
  'ParaSwiGlu',
  'ParaSwiGluGrad',
  'ParaRope',
  'ParaAttention',
  'ParaAttentionGrad',
  'ParaCrossEntropy',
  'ParaCrossEntropyGrad',
  'ParaSwiGluScaled',
  'ParaRopeKvWrite',
  'ParaScale',
  'ParaScaleGrad',
  'ParaAdamW',
  'ParaSumSquares',
] as const;

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** A `ParaScale` call's sizes: x [B, T, F], scale [scaleBatch, 1, F] (scaleBatch 1 or B). */
interface ScaleDims {
  B: number;
  T: number;
  F: number;
  scaleBatch: number;
}

interface HeapBackend extends WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
}

function asWasm(backend: unknown, kernel: string): HeapBackend {
  const b = backend as Partial<WasmBackendLike> | null;
  if (
    b == null ||
    typeof b.makeOutput !== 'function' ||
    b.dataIdMap == null ||
    b.wasm?.HEAPU8 == null
  )
    throw new Error(`${kernel}: not the wasm backend`);
  return b as HeapBackend;
}

function offset(backend: HeapBackend, t: TensorInfoLike): number {
  const off = backend.dataIdMap.get(t.dataId)?.memoryOffset;
  if (typeof off === 'number') return off;
  if (size(t.shape) === 0) return 0; // nothing is read or written there
  throw new Error('@para/blas: tensor has no wasm memory offset');
}

function need(inputs: KernelArgs['inputs'], name: string, kernel: string): TensorInfoLike {
  const t = inputs[name];
  if (t === undefined) throw new Error(`${kernel}: missing input "${name}"`);
  if (t.dtype !== 'float32')
    throw new Error(`${kernel}: input "${name}" must be float32, got ${t.dtype}`);
  return t;
}

function sameShape(a: TensorInfoLike, b: TensorInfoLike, kernel: string, what: string): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i]))
    throw new Error(`${kernel}: ${what} [${b.shape}] does not match [${a.shape}]`);
}

/**
 * Allocate the outputs (first: allocation may grow the heap and detach the old buffer), then
 * compute on the current heap: natively when it is a plain ArrayBuffer, else in JavaScript on
 * Float32Array views of the shared heap. Outputs are freed when the computation throws.
 */
function compute(
  backend: HeapBackend,
  shapes: number[][],
  native: (heap: ArrayBuffer, out: number[]) => void,
  js: (f32: Float32Array, out: number[]) => void,
): TensorInfoLike[] {
  const outs = shapes.map((s) => backend.makeOutput(s, 'float32'));
  try {
    const heap = backend.wasm.HEAPU8.buffer;
    const offs = outs.map((o) => offset(backend, o));
    if (Object.prototype.toString.call(heap) === '[object ArrayBuffer]')
      native(heap as ArrayBuffer, offs);
    else js(new Float32Array(heap), offs);
  } catch (e) {
    for (const o of outs) backend.disposeData(o.dataId, true);
    throw e;
  }
  return outs;
}

// --- the JavaScript versions (shared heap only), on element indices of a Float32Array ---

/** Exported for tests: the fallback's math on plain arrays (element offsets). */
export const jsFused = {
  rmsNorm(
    m: Float32Array,
    x: number,
    w: number,
    y: number,
    rows: number,
    d: number,
    eps: number,
    off: number,
  ) {
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let j = 0; j < d; j++) ss += (m[x + r * d + j] as number) ** 2;
      const inv = Math.fround(1 / Math.sqrt(ss / d + eps));
      for (let j = 0; j < d; j++)
        m[y + r * d + j] = (m[x + r * d + j] as number) * inv * ((m[w + j] as number) + off);
    }
  },
  /** sum = x + res, then rmsNorm(sum) into y. */
  addRmsNorm(
    m: Float32Array,
    x: number,
    res: number,
    w: number,
    sum: number,
    y: number,
    rows: number,
    d: number,
    eps: number,
    off: number,
  ) {
    for (let i = 0; i < rows * d; i++) m[sum + i] = (m[x + i] as number) + (m[res + i] as number);
    jsFused.rmsNorm(m, sum, w, y, rows, d, eps, off);
  },
  /** rmsNormGrad, plus ds (element offset, or -1 for none) added to dx. */
  rmsNormGrad(
    m: Float32Array,
    dy: number,
    x: number,
    w: number,
    dx: number,
    dw: number,
    rows: number,
    d: number,
    eps: number,
    off: number,
    ds = -1,
  ) {
    const acc = new Float64Array(d);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      let gx = 0;
      for (let j = 0; j < d; j++) {
        const xv = m[x + r * d + j] as number;
        ss += xv * xv;
        gx += (m[dy + r * d + j] as number) * ((m[w + j] as number) + off) * xv;
      }
      const inv = 1 / Math.sqrt(ss / d + eps);
      const k = (inv * inv * inv * gx) / d;
      for (let j = 0; j < d; j++) {
        const xv = m[x + r * d + j] as number;
        const g = m[dy + r * d + j] as number;
        m[dx + r * d + j] =
          (ds < 0 ? 0 : (m[ds + r * d + j] as number)) +
          (inv * g * ((m[w + j] as number) + off) - xv * k);
        acc[j] = (acc[j] as number) + g * xv * inv;
      }
    }
    for (let j = 0; j < d; j++) m[dw + j] = acc[j] as number;
  },
  swiglu(m: Float32Array, g: number, u: number, y: number, n: number) {
    for (let i = 0; i < n; i++) {
      const gv = m[g + i] as number;
      m[y + i] = (gv / (1 + Math.exp(-gv))) * (m[u + i] as number);
    }
  },
  swigluGrad(m: Float32Array, dy: number, g: number, u: number, dg: number, du: number, n: number) {
    for (let i = 0; i < n; i++) {
      const gv = m[g + i] as number;
      const s = 1 / (1 + Math.exp(-gv));
      const d = m[dy + i] as number;
      m[du + i] = d * gv * s;
      m[dg + i] = d * (m[u + i] as number) * (s + gv * s * (1 - s));
    }
  },
  rope(
    m: Float32Array,
    x: number,
    cos: number,
    sin: number,
    y: number,
    dims: { B: number; H: number; T: number; hd: number; cosBatch: number },
    inverse: boolean,
  ) {
    const { B, H, T, hd, cosBatch } = dims;
    const h = hd / 2;
    for (let b = 0; b < B; b++)
      for (let n = 0; n < H; n++)
        for (let t = 0; t < T; t++) {
          const xr = x + ((b * H + n) * T + t) * hd;
          const yr = y + ((b * H + n) * T + t) * hd;
          const tr = ((cosBatch === 1 ? 0 : b) * T + t) * hd;
          for (let j = 0; j < h; j++) {
            const x1 = m[xr + j] as number;
            const x2 = m[xr + j + h] as number;
            const c1 = m[cos + tr + j] as number;
            const c2 = m[cos + tr + j + h] as number;
            const s1 = m[sin + tr + j] as number;
            const s2 = m[sin + tr + j + h] as number;
            m[yr + j] = inverse ? x1 * c1 + x2 * s2 : x1 * c1 - x2 * s1;
            m[yr + j + h] = inverse ? x2 * c2 - x1 * s1 : x2 * c2 + x1 * s2;
          }
        }
  },
  /** y = ((gate · σ(gate)) · up) · scale[b|0, f] over rows (b, t) of F. */
  swigluScaled(m: Float32Array, g: number, u: number, sc: number, y: number, dims: ScaleDims) {
    const { B, T, F, scaleBatch } = dims;
    const r = Math.fround;
    for (let row = 0; row < B * T; row++) {
      const s = sc + (scaleBatch === 1 ? 0 : Math.floor(row / T)) * F;
      for (let j = 0; j < F; j++) {
        const i = row * F + j;
        const gv = m[g + i] as number;
        m[y + i] = r(r(r(gv / (1 + Math.exp(-gv))) * (m[u + i] as number)) * (m[s + j] as number));
      }
    }
  },
  /** y = x · scale[b|0, f] over rows (b, t) of F. */
  scale(m: Float32Array, x: number, sc: number, y: number, dims: ScaleDims) {
    const { T, F, scaleBatch } = dims;
    for (let row = 0; row < dims.B * T; row++) {
      const s = sc + (scaleBatch === 1 ? 0 : Math.floor(row / T)) * F;
      for (let j = 0; j < F; j++)
        m[y + row * F + j] = (m[x + row * F + j] as number) * (m[s + j] as number);
    }
  },
  /** dx = dy · scale[b|0]; dscale[b|0, f] = Σ_t (Σ_b when it broadcasts) dy · x, in double. */
  scaleGrad(
    m: Float32Array,
    o: { dy: number; x: number; scale: number; dx: number; ds: number },
    dims: ScaleDims,
  ) {
    const { B, T, F, scaleBatch } = dims;
    const acc = new Float64Array(scaleBatch * F);
    for (let row = 0; row < B * T; row++) {
      const b = scaleBatch === 1 ? 0 : Math.floor(row / T);
      for (let j = 0; j < F; j++) {
        const i = row * F + j;
        const dy = m[o.dy + i] as number;
        m[o.dx + i] = dy * (m[o.scale + b * F + j] as number);
        acc[b * F + j] = (acc[b * F + j] as number) + Math.fround(dy * (m[o.x + i] as number));
      }
    }
    for (let i = 0; i < scaleBatch * F; i++) m[o.ds + i] = acc[i] as number;
  },
  /**
   * q′ = RoPE(q ⊙ qScale); for rows b with slots[b] ≥ 0, kCache[b, h, slots[b] + t] =
   * RoPE(k ⊙ kScale) and vCache[…] = v ⊙ vScale (in place). Scales: element offset, or -1.
   */
  ropeKvWrite(m: Float32Array, o: RopeKvOffsets, dims: RopeKvDims, slots: readonly number[]) {
    const { B, Hq, Hkv, T, hd, C, cosBatch } = dims;
    const h = hd / 2;
    const r = Math.fround;
    // One row of hd: y = RoPE(x ⊙ s) (s -1: no scale), each product rounded to float32 as the ops do.
    const row = (x: number, s: number, tr: number, y: number) => {
      const at = (j: number) =>
        s < 0 ? (m[x + j] as number) : r((m[x + j] as number) * (m[s + j] as number));
      for (let j = 0; j < h; j++) {
        const x1 = at(j);
        const x2 = at(j + h);
        m[y + j] = r(x1 * (m[o.cos + tr + j] as number)) - r(x2 * (m[o.sin + tr + j] as number));
        m[y + j + h] =
          r(x2 * (m[o.cos + tr + j + h] as number)) + r(x1 * (m[o.sin + tr + j + h] as number));
      }
    };
    const scaleAt = (s: number, batch: number, H: number, b: number, n: number) =>
      s < 0 ? -1 : s + ((batch === 1 ? 0 : b) * H + n) * hd;
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++) {
        const tr = ((cosBatch === 1 ? 0 : b) * T + t) * hd;
        for (let n = 0; n < Hq; n++) {
          const i = ((b * Hq + n) * T + t) * hd;
          row(o.q + i, scaleAt(o.qScale, dims.qScaleBatch, Hq, b, n), tr, o.qOut + i);
        }
        const slot = slots[b] as number;
        if (slot < 0) continue;
        for (let n = 0; n < Hkv; n++) {
          const i = ((b * Hkv + n) * T + t) * hd;
          const dst = ((b * Hkv + n) * C + slot + t) * hd;
          row(o.k + i, scaleAt(o.kScale, dims.kScaleBatch, Hkv, b, n), tr, o.kCache + dst);
          const vs = scaleAt(o.vScale, dims.vScaleBatch, Hkv, b, n);
          for (let j = 0; j < hd; j++)
            m[o.vCache + dst + j] =
              vs < 0
                ? (m[o.v + i + j] as number)
                : (m[o.v + i + j] as number) * (m[vs + j] as number);
        }
      }
  },
};

/** Element offsets of a `ParaRopeKvWrite` call (a scale: -1 for none). */
export interface RopeKvOffsets {
  q: number;
  k: number;
  v: number;
  cos: number;
  sin: number;
  kCache: number;
  vCache: number;
  qScale: number;
  kScale: number;
  vScale: number;
  qOut: number;
}

/** Shapes of a `ParaRopeKvWrite` call (a scale's batch: 1 or B; ignored without the scale). */
export interface RopeKvDims {
  B: number;
  Hq: number;
  Hkv: number;
  T: number;
  hd: number;
  C: number;
  cosBatch: number;
  qScaleBatch: number;
  kScaleBatch: number;
  vScaleBatch: number;
}

/** Attention shapes as the kernels read them (mask: element offset, or -1 for none). */
export interface AttentionDims {
  B: number;
  Hq: number;
  Hkv: number;
  T: number;
  S: number;
  hd: number;
  maskBatch: number;
  scale: number;
}

/** Keys masked this far below their row's highest mask value are skipped (as the native kernel). */
const ATT_MASK_GAP = 1e6;

/** The probabilities of query row (b, h, t) into p (0 where skipped), returning 1/Σ (0: none, NaN). */
function attentionRowProbs(
  m: Float32Array,
  q: number,
  k: number,
  mask: number,
  dims: AttentionDims,
  b: number,
  t: number,
  p: Float32Array,
): number {
  const { T, S, hd, maskBatch, scale } = dims;
  const row = mask >= 0 ? mask + ((maskBatch === 1 ? 0 : b) * T + t) * S : -1;
  // The native kernel's masked-slot skip (ATT_MASK_GAP in native/para_fused.c): keys masked at
  // least 1e6 below the row's highest mask value are not dotted; their probability is 0.
  let hi = Number.NEGATIVE_INFINITY;
  if (row >= 0)
    for (let j = 0; j < S; j++) if ((m[row + j] as number) > hi) hi = m[row + j] as number;
  const cut = Math.fround(hi - ATT_MASK_GAP);
  let mx = Number.NEGATIVE_INFINITY;
  let nan = false;
  for (let j = 0; j < S; j++) {
    if (row >= 0 && (m[row + j] as number) <= cut) {
      p[j] = Number.NEGATIVE_INFINITY;
      continue;
    }
    let dot = 0;
    for (let d = 0; d < hd; d++) dot += (m[q + d] as number) * (m[k + j * hd + d] as number);
    let x = Math.fround(Math.fround(dot) * scale);
    if (row >= 0) x = Math.fround(x + (m[row + j] as number));
    p[j] = x;
    if (Number.isNaN(x)) nan = true;
    else if (x > mx) mx = x;
  }
  if (nan || mx === Number.NEGATIVE_INFINITY) {
    p.fill(0);
    return nan ? Number.NaN : 0;
  }
  let sum = 0;
  for (let j = 0; j < S; j++) {
    const z = (p[j] as number) - mx;
    const e = z < -87 ? 0 : Math.exp(z);
    p[j] = e;
    sum += e;
  }
  return 1 / sum;
}

/** Exported for tests: the attention fallback's math on plain arrays (element offsets). */
export const jsAttention = {
  forward(
    m: Float32Array,
    q: number,
    k: number,
    v: number,
    mask: number,
    out: number,
    dims: AttentionDims,
  ) {
    const { B, Hq, Hkv, T, S, hd } = dims;
    const rep = Hq / Hkv;
    const p = new Float32Array(S);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < Hq; h++)
        for (let t = 0; t < T; t++) {
          const r = (b * Hq + h) * T + t;
          const kvo = (b * Hkv + Math.floor(h / rep)) * S * hd;
          const inv = attentionRowProbs(m, q + r * hd, k + kvo, mask, dims, b, t, p);
          for (let d = 0; d < hd; d++) {
            let acc = 0;
            for (let j = 0; j < S; j++)
              acc += (p[j] as number) * (m[v + kvo + j * hd + d] as number);
            m[out + r * hd + d] = Number.isNaN(inv) ? Number.NaN : acc * inv;
          }
        }
  },
  backward(
    m: Float32Array,
    dy: number,
    q: number,
    k: number,
    v: number,
    mask: number,
    dq: number,
    dk: number,
    dv: number,
    dims: AttentionDims,
  ) {
    const { B, Hq, Hkv, T, S, hd, scale } = dims;
    const rep = Hq / Hkv;
    const p = new Float32Array(S);
    const dp = new Float64Array(S);
    m.fill(0, dk, dk + B * Hkv * S * hd);
    m.fill(0, dv, dv + B * Hkv * S * hd);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < Hq; h++)
        for (let t = 0; t < T; t++) {
          const r = (b * Hq + h) * T + t;
          const kvo = (b * Hkv + Math.floor(h / rep)) * S * hd;
          const inv = attentionRowProbs(m, q + r * hd, k + kvo, mask, dims, b, t, p);
          let D = 0;
          for (let j = 0; j < S; j++) {
            let s = 0;
            for (let d = 0; d < hd; d++)
              s += (m[dy + r * hd + d] as number) * (m[v + kvo + j * hd + d] as number);
            dp[j] = s;
            D += (p[j] as number) * inv * s;
          }
          const acc = new Float64Array(hd);
          for (let j = 0; j < S; j++) {
            const pj = (p[j] as number) * inv;
            if (!(pj !== 0)) continue;
            const ds = pj * ((dp[j] as number) - D);
            for (let d = 0; d < hd; d++) {
              acc[d] = (acc[d] as number) + ds * (m[k + kvo + j * hd + d] as number);
              m[dk + kvo + j * hd + d] =
                (m[dk + kvo + j * hd + d] as number) + ds * scale * (m[q + r * hd + d] as number);
              m[dv + kvo + j * hd + d] =
                (m[dv + kvo + j * hd + d] as number) + pj * (m[dy + r * hd + d] as number);
            }
          }
          for (let d = 0; d < hd; d++)
            m[dq + r * hd + d] = Number.isNaN(inv) ? Number.NaN : (acc[d] as number) * scale;
        }
  },
};

/** Exported for tests: the cross-entropy fallback's math (element offsets; targets as int32 view). */
export const jsCrossEntropy = {
  forward(
    m: Float32Array,
    i32: Int32Array,
    x: number,
    t: number,
    w: number,
    loss: number,
    lse: number,
    N: number,
    V: number,
  ) {
    let acc = 0;
    for (let n = 0; n < N; n++) {
      let mx = Number.NEGATIVE_INFINITY;
      let nan = false;
      for (let j = 0; j < V; j++) {
        const v = m[x + n * V + j] as number;
        if (Number.isNaN(v)) nan = true;
        else if (v > mx) mx = v;
      }
      let l: number;
      if (nan || !Number.isFinite(mx)) l = Number.NaN;
      else {
        let s = 0;
        for (let j = 0; j < V; j++) s += Math.exp((m[x + n * V + j] as number) - mx);
        l = Math.fround(mx + Math.log(s));
      }
      m[lse + n] = l;
      const k = Math.min(Math.max(i32[t + n] as number, 0), V - 1);
      acc += (m[w + n] as number) * (l - (m[x + n * V + k] as number));
    }
    m[loss] = acc;
  },
  backward(
    m: Float32Array,
    i32: Int32Array,
    dy: number,
    x: number,
    t: number,
    w: number,
    lse: number,
    dx: number,
    N: number,
    V: number,
  ) {
    const d = m[dy] as number;
    for (let n = 0; n < N; n++) {
      const g = d * (m[w + n] as number);
      const l = m[lse + n] as number;
      for (let j = 0; j < V; j++)
        m[dx + n * V + j] = g * Math.exp((m[x + n * V + j] as number) - l);
      const k = Math.min(Math.max(i32[t + n] as number, 0), V - 1);
      m[dx + n * V + k] = (m[dx + n * V + k] as number) - g;
    }
  },
};

/** AdamW's scalars as the kernels take them (float32-rounded by the kernels). */
export interface AdamWScalars {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** 1 − beta1 ** step and 1 − beta2 ** step. */
  bc1: number;
  bc2: number;
  gradScale: number;
}

/** The step's scalars in the order the kernel reads them (after the parameter count). */
function adamWScalarList(s: AdamWScalars): number[] {
  return [s.lr, s.beta1, 1 - s.beta1, s.beta2, 1 - s.beta2, s.bc1, s.bc2, s.eps, s.gradScale];
}

/** Exported for tests: ParaSumSquares's fallback, Σ x² over element ranges, in double. */
export function jsSumSquares(m: Float32Array, xs: readonly { at: number; n: number }[]): number {
  let sum = 0;
  for (const { at, n } of xs) for (let i = at; i < at + n; i++) sum += (m[i] as number) ** 2;
  return sum;
}

/** Exported for tests: the AdamW fallback's math (element offsets; every operation rounded to float32). */
export const jsAdamW = {
  /** One parameter: p, m, v, g in; po, mo, vo out; n elements; keep = 1 − lr · weightDecay. */
  step(
    f32: Float32Array,
    o: { p: number; m: number; v: number; g: number; po: number; mo: number; vo: number },
    n: number,
    keep: number,
    s: AdamWScalars,
  ) {
    const r = Math.fround;
    const [lr, b1, omb1, b2, omb2, bc1, bc2, eps, gs] = adamWScalarList(s).map(r) as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const k = r(keep);
    for (let i = 0; i < n; i++) {
      const g = r((f32[o.g + i] as number) * gs);
      const m1 = r(r((f32[o.m + i] as number) * b1) + r(g * omb1));
      const v1 = r(r((f32[o.v + i] as number) * b2) + r(r(g * g) * omb2));
      const u = r(r(m1 / bc1) / r(r(Math.sqrt(r(v1 / bc2))) + eps));
      f32[o.mo + i] = m1;
      f32[o.vo + i] = v1;
      f32[o.po + i] = r(r((f32[o.p + i] as number) * k) - r(u * lr));
    }
  },
};

/** The addon with every fused function. */
type Native = Required<BlasAddon>;

function rmsNormKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be, attrs } = args as unknown as KernelArgs;
    const K = 'ParaRmsNorm';
    const backend = asWasm(be, K);
    const x = need(inputs, 'x', K);
    const w = need(inputs, 'weight', K);
    const d = x.shape[x.shape.length - 1] ?? 1;
    if (x.shape.length < 1 || w.shape.length !== 1 || w.shape[0] !== d)
      throw new Error(`${K}: weight [${w.shape}] does not match x [${x.shape}]`);
    const rows = size(x.shape) / Math.max(d, 1);
    const eps = Number(attrs?.eps ?? 1e-6);
    const off = attrs?.unitOffset === true ? 1 : 0;
    const xo = offset(backend, x);
    const wo = offset(backend, w);
    const [y] = compute(
      backend,
      [x.shape],
      (heap, [yo]) =>
        addon.rmsNormHeap(heap, Float64Array.of(xo, wo, yo as number, rows, d, eps, off)),
      (m, [yo]) => jsFused.rmsNorm(m, xo / 4, wo / 4, (yo as number) / 4, rows, d, eps, off),
    );
    return y as tf.TensorInfo;
  };
}

function rmsNormGradKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be, attrs } = args as unknown as KernelArgs;
    const K = 'ParaRmsNormGrad';
    const backend = asWasm(be, K);
    const dy = need(inputs, 'dy', K);
    const x = need(inputs, 'x', K);
    const w = need(inputs, 'weight', K);
    sameShape(x, dy, K, 'dy');
    const d = x.shape[x.shape.length - 1] ?? 1;
    if (x.shape.length < 1 || w.shape.length !== 1 || w.shape[0] !== d)
      throw new Error(`${K}: weight [${w.shape}] does not match x [${x.shape}]`);
    const rows = size(x.shape) / Math.max(d, 1);
    const eps = Number(attrs?.eps ?? 1e-6);
    const off = attrs?.unitOffset === true ? 1 : 0;
    const [dyo, xo, wo] = [offset(backend, dy), offset(backend, x), offset(backend, w)];
    return compute(
      backend,
      [x.shape, w.shape],
      (heap, [dxo, dwo]) =>
        addon.rmsNormGradHeap(
          heap,
          Float64Array.of(dyo, xo, wo, dxo as number, dwo as number, rows, d, eps, off),
        ),
      (m, [dxo, dwo]) =>
        jsFused.rmsNormGrad(
          m,
          dyo / 4,
          xo / 4,
          wo / 4,
          (dxo as number) / 4,
          (dwo as number) / 4,
          rows,
          d,
          eps,
          off,
        ),
    ) as tf.TensorInfo[];
  };
}

function checkNorm(x: TensorInfoLike, w: TensorInfoLike, K: string): { rows: number; d: number } {
  const d = x.shape[x.shape.length - 1] ?? 1;
  if (x.shape.length < 1 || w.shape.length !== 1 || w.shape[0] !== d)
    throw new Error(`${K}: weight [${w.shape}] does not match x [${x.shape}]`);
  return { rows: size(x.shape) / Math.max(d, 1), d };
}

function addRmsNormKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be, attrs } = args as unknown as KernelArgs;
    const K = 'ParaAddRmsNorm';
    const backend = asWasm(be, K);
    const x = need(inputs, 'x', K);
    const res = need(inputs, 'residual', K);
    const w = need(inputs, 'weight', K);
    sameShape(x, res, K, 'residual');
    const { rows, d } = checkNorm(x, w, K);
    const eps = Number(attrs?.eps ?? 1e-6);
    const off = attrs?.unitOffset === true ? 1 : 0;
    const [xo, ro, wo] = [offset(backend, x), offset(backend, res), offset(backend, w)];
    return compute(
      backend,
      [x.shape, x.shape],
      (heap, [so, yo]) =>
        addon.addRmsNormHeap(
          heap,
          Float64Array.of(xo, ro, wo, so as number, yo as number, rows, d, eps, off),
        ),
      (m, [so, yo]) =>
        jsFused.addRmsNorm(
          m,
          xo / 4,
          ro / 4,
          wo / 4,
          (so as number) / 4,
          (yo as number) / 4,
          rows,
          d,
          eps,
          off,
        ),
    ) as tf.TensorInfo[];
  };
}

function addRmsNormGradKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be, attrs } = args as unknown as KernelArgs;
    const K = 'ParaAddRmsNormGrad';
    const backend = asWasm(be, K);
    const dy = need(inputs, 'dy', K);
    const ds = need(inputs, 'dsum', K);
    const sum = need(inputs, 'sum', K);
    const w = need(inputs, 'weight', K);
    sameShape(sum, dy, K, 'dy');
    sameShape(sum, ds, K, 'dsum');
    const { rows, d } = checkNorm(sum, w, K);
    const eps = Number(attrs?.eps ?? 1e-6);
    const off = attrs?.unitOffset === true ? 1 : 0;
    const [dyo, dso, so, wo] = [
      offset(backend, dy),
      offset(backend, ds),
      offset(backend, sum),
      offset(backend, w),
    ];
    return compute(
      backend,
      [sum.shape, w.shape],
      (heap, [dxo, dwo]) =>
        addon.addRmsNormGradHeap(
          heap,
          Float64Array.of(dyo, dso, so, wo, dxo as number, dwo as number, rows, d, eps, off),
        ),
      (m, [dxo, dwo]) =>
        jsFused.rmsNormGrad(
          m,
          dyo / 4,
          so / 4,
          wo / 4,
          (dxo as number) / 4,
          (dwo as number) / 4,
          rows,
          d,
          eps,
          off,
          dso / 4,
        ),
    ) as tf.TensorInfo[];
  };
}

function swigluKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be } = args as unknown as KernelArgs;
    const K = 'ParaSwiGlu';
    const backend = asWasm(be, K);
    const g = need(inputs, 'gate', K);
    const u = need(inputs, 'up', K);
    sameShape(g, u, K, 'up');
    const n = size(g.shape);
    const [go, uo] = [offset(backend, g), offset(backend, u)];
    const [y] = compute(
      backend,
      [g.shape],
      (heap, [yo]) => addon.swigluHeap(heap, Float64Array.of(go, uo, yo as number, n)),
      (m, [yo]) => jsFused.swiglu(m, go / 4, uo / 4, (yo as number) / 4, n),
    );
    return y as tf.TensorInfo;
  };
}

function swigluGradKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be } = args as unknown as KernelArgs;
    const K = 'ParaSwiGluGrad';
    const backend = asWasm(be, K);
    const dy = need(inputs, 'dy', K);
    const g = need(inputs, 'gate', K);
    const u = need(inputs, 'up', K);
    sameShape(g, u, K, 'up');
    sameShape(g, dy, K, 'dy');
    const n = size(g.shape);
    const [dyo, go, uo] = [offset(backend, dy), offset(backend, g), offset(backend, u)];
    return compute(
      backend,
      [g.shape, g.shape],
      (heap, [dgo, duo]) =>
        addon.swigluGradHeap(heap, Float64Array.of(dyo, go, uo, dgo as number, duo as number, n)),
      (m, [dgo, duo]) =>
        jsFused.swigluGrad(m, dyo / 4, go / 4, uo / 4, (dgo as number) / 4, (duo as number) / 4, n),
    ) as tf.TensorInfo[];
  };
}

function ropeKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be, attrs } = args as unknown as KernelArgs;
    const K = 'ParaRope';
    const backend = asWasm(be, K);
    const x = need(inputs, 'x', K);
    const cos = need(inputs, 'cos', K);
    const sin = need(inputs, 'sin', K);
    sameShape(cos, sin, K, 'sin');
    const [B, H, T, hd] = x.shape as [number, number, number, number];
    const cb = cos.shape[0] as number;
    if (
      x.shape.length !== 4 ||
      hd % 2 !== 0 ||
      cos.shape.length !== 4 ||
      (cb !== 1 && cb !== B) ||
      cos.shape[1] !== 1 ||
      cos.shape[2] !== T ||
      cos.shape[3] !== hd
    )
      throw new Error(
        `${K}: x [${x.shape}] with cos [${cos.shape}]: expected [B, H, T, hd] and [B or 1, 1, T, hd], hd even`,
      );
    const inverse = attrs?.inverse === true;
    const [xo, co, so] = [offset(backend, x), offset(backend, cos), offset(backend, sin)];
    const [y] = compute(
      backend,
      [x.shape],
      (heap, [yo]) =>
        addon.ropeHeap(
          heap,
          Float64Array.of(xo, co, so, yo as number, B, H, T, hd, cb, inverse ? 1 : 0),
        ),
      (m, [yo]) =>
        jsFused.rope(
          m,
          xo / 4,
          co / 4,
          so / 4,
          (yo as number) / 4,
          { B, H, T, hd, cosBatch: cb },
          inverse,
        ),
    );
    return y as tf.TensorInfo;
  };
}

/** Shapes of an attention call (q [B,Hq,T,hd], k/v [B,Hkv,S,hd], mask [B|1,1,T,S]); throws on mismatch. */
function attentionDims(
  K: string,
  q: TensorInfoLike,
  k: TensorInfoLike,
  v: TensorInfoLike,
  mask: TensorInfoLike | undefined,
  scale: number,
): AttentionDims {
  const [B, Hq, T, hd] = q.shape as [number, number, number, number];
  const [kb, Hkv, S, khd] = k.shape as [number, number, number, number];
  if (
    q.shape.length !== 4 ||
    k.shape.length !== 4 ||
    kb !== B ||
    khd !== hd ||
    Hkv < 1 ||
    Hq % Hkv !== 0
  )
    throw new Error(
      `${K}: q [${q.shape}] and k [${k.shape}]: expected [B, Hq, T, hd] and [B, Hkv, S, hd], Hkv dividing Hq`,
    );
  sameShape(k, v, K, 'v');
  let maskBatch = 1;
  if (mask !== undefined) {
    const mb = mask.shape[0] as number;
    if (
      mask.shape.length !== 4 ||
      (mb !== 1 && mb !== B) ||
      mask.shape[1] !== 1 ||
      mask.shape[2] !== T ||
      mask.shape[3] !== S
    )
      throw new Error(`${K}: mask [${mask.shape}] is not [B or 1, 1, ${T}, ${S}]`);
    maskBatch = mb;
  }
  if (!Number.isFinite(scale)) throw new Error(`${K}: scale must be a finite number`);
  return { B, Hq, Hkv, T, S, hd, maskBatch, scale };
}

function attentionKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be, attrs } = args as unknown as KernelArgs;
    const K = 'ParaAttention';
    const backend = asWasm(be, K);
    const q = need(inputs, 'q', K);
    const k = need(inputs, 'k', K);
    const v = need(inputs, 'v', K);
    const mask = inputs.mask === undefined ? undefined : need(inputs, 'mask', K);
    const dims = attentionDims(K, q, k, v, mask, Number(attrs?.scale));
    const { B, Hq, Hkv, T, S, hd, maskBatch, scale } = dims;
    const [qo, ko, vo] = [offset(backend, q), offset(backend, k), offset(backend, v)];
    const mo = mask === undefined ? -1 : offset(backend, mask);
    const [out] = compute(
      backend,
      [q.shape],
      (heap, [oo]) =>
        addon.attentionHeap(
          heap,
          Float64Array.of(qo, ko, vo, mo, oo as number, B, Hq, Hkv, T, S, hd, maskBatch, scale),
        ),
      (m, [oo]) =>
        jsAttention.forward(
          m,
          qo / 4,
          ko / 4,
          vo / 4,
          mo < 0 ? -1 : mo / 4,
          (oo as number) / 4,
          dims,
        ),
    );
    return out as tf.TensorInfo;
  };
}

function attentionGradKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be, attrs } = args as unknown as KernelArgs;
    const K = 'ParaAttentionGrad';
    const backend = asWasm(be, K);
    const dy = need(inputs, 'dy', K);
    const q = need(inputs, 'q', K);
    const k = need(inputs, 'k', K);
    const v = need(inputs, 'v', K);
    const mask = inputs.mask === undefined ? undefined : need(inputs, 'mask', K);
    sameShape(q, dy, K, 'dy');
    const dims = attentionDims(K, q, k, v, mask, Number(attrs?.scale));
    const { B, Hq, Hkv, T, S, hd, maskBatch, scale } = dims;
    const [dyo, qo, ko, vo] = [
      offset(backend, dy),
      offset(backend, q),
      offset(backend, k),
      offset(backend, v),
    ];
    const mo = mask === undefined ? -1 : offset(backend, mask);
    return compute(
      backend,
      [q.shape, k.shape, k.shape],
      (heap, [dqo, dko, dvo]) =>
        addon.attentionGradHeap(
          heap,
          Float64Array.of(
            dyo,
            qo,
            ko,
            vo,
            mo,
            dqo as number,
            dko as number,
            dvo as number,
            B,
            Hq,
            Hkv,
            T,
            S,
            hd,
            maskBatch,
            scale,
          ),
        ),
      (m, [dqo, dko, dvo]) =>
        jsAttention.backward(
          m,
          dyo / 4,
          qo / 4,
          ko / 4,
          vo / 4,
          mo < 0 ? -1 : mo / 4,
          (dqo as number) / 4,
          (dko as number) / 4,
          (dvo as number) / 4,
          dims,
        ),
    ) as tf.TensorInfo[];
  };
}

function needInt(inputs: KernelArgs['inputs'], name: string, kernel: string): TensorInfoLike {
  const t = inputs[name];
  if (t === undefined) throw new Error(`${kernel}: missing input "${name}"`);
  if (t.dtype !== 'int32')
    throw new Error(`${kernel}: input "${name}" must be int32, got ${t.dtype}`);
  return t;
}

function ceDims(
  K: string,
  x: TensorInfoLike,
  t: TensorInfoLike,
  w: TensorInfoLike,
): { N: number; V: number } {
  const [N, V] = x.shape as [number, number];
  if (x.shape.length !== 2 || N < 1 || V < 1)
    throw new Error(`${K}: logits [${x.shape}] must be [N, V], non-empty`);
  if (t.shape.length !== 1 || t.shape[0] !== N)
    throw new Error(`${K}: targets [${t.shape}] is not [${N}]`);
  if (w.shape.length !== 1 || w.shape[0] !== N)
    throw new Error(`${K}: weights [${w.shape}] is not [${N}]`);
  return { N, V };
}

function crossEntropyKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be } = args as unknown as KernelArgs;
    const K = 'ParaCrossEntropy';
    const backend = asWasm(be, K);
    const x = need(inputs, 'logits', K);
    const t = needInt(inputs, 'targets', K);
    const w = need(inputs, 'weights', K);
    const { N, V } = ceDims(K, x, t, w);
    const [xo, to, wo] = [offset(backend, x), offset(backend, t), offset(backend, w)];
    return compute(
      backend,
      [[], [N]],
      (heap, [lo, so]) =>
        addon.crossEntropyHeap(heap, Float64Array.of(xo, to, wo, lo as number, so as number, N, V)),
      (m, [lo, so]) =>
        jsCrossEntropy.forward(
          m,
          new Int32Array(m.buffer),
          xo / 4,
          to / 4,
          wo / 4,
          (lo as number) / 4,
          (so as number) / 4,
          N,
          V,
        ),
    ) as tf.TensorInfo[];
  };
}

function crossEntropyGradKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be } = args as unknown as KernelArgs;
    const K = 'ParaCrossEntropyGrad';
    const backend = asWasm(be, K);
    const dy = need(inputs, 'dy', K);
    const x = need(inputs, 'logits', K);
    const t = needInt(inputs, 'targets', K);
    const w = need(inputs, 'weights', K);
    const lse = need(inputs, 'lse', K);
    const { N, V } = ceDims(K, x, t, w);
    if (size(dy.shape) !== 1) throw new Error(`${K}: dy [${dy.shape}] must be a scalar`);
    if (lse.shape.length !== 1 || lse.shape[0] !== N)
      throw new Error(`${K}: lse [${lse.shape}] is not [${N}]`);
    const [dyo, xo, to, wo, so] = [
      offset(backend, dy),
      offset(backend, x),
      offset(backend, t),
      offset(backend, w),
      offset(backend, lse),
    ];
    const [dx] = compute(
      backend,
      [x.shape],
      (heap, [dxo]) =>
        addon.crossEntropyGradHeap(heap, Float64Array.of(dyo, xo, to, wo, so, dxo as number, N, V)),
      (m, [dxo]) =>
        jsCrossEntropy.backward(
          m,
          new Int32Array(m.buffer),
          dyo / 4,
          xo / 4,
          to / 4,
          wo / 4,
          so / 4,
          (dxo as number) / 4,
          N,
          V,
        ),
    );
    return dx as tf.TensorInfo;
  };
}

/** `x [B, T, F]` (named `name`) and `scale [B or 1, 1, F]` of a call, checked; their sizes. */
function scaleOperands(K: string, name: string, x: TensorInfoLike, sc: TensorInfoLike): ScaleDims {
  if (x.shape.length !== 3) throw new Error(`${K}: ${name} [${x.shape}] must be [B, T, F]`);
  const [B, T, F] = x.shape as [number, number, number];
  const scaleBatch = sc.shape[0] as number;
  if (
    sc.shape.length !== 3 ||
    (scaleBatch !== 1 && scaleBatch !== B) ||
    sc.shape[1] !== 1 ||
    sc.shape[2] !== F
  )
    throw new Error(`${K}: scale [${sc.shape}] is not [${B} or 1, 1, ${F}]`);
  return { B, T, F, scaleBatch };
}

function swigluScaledKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be } = args as unknown as KernelArgs;
    const K = 'ParaSwiGluScaled';
    const backend = asWasm(be, K);
    const g = need(inputs, 'gate', K);
    const u = need(inputs, 'up', K);
    const sc = need(inputs, 'scale', K);
    sameShape(g, u, K, 'up');
    const { B, T, F, scaleBatch: sb } = scaleOperands(K, 'gate', g, sc);
    const [go, uo, so] = [offset(backend, g), offset(backend, u), offset(backend, sc)];
    const [y] = compute(
      backend,
      [g.shape],
      (heap, [yo]) =>
        addon.swigluScaledHeap(heap, Float64Array.of(go, uo, so, yo as number, B, T, F, sb)),
      (m, [yo]) =>
        jsFused.swigluScaled(m, go / 4, uo / 4, so / 4, (yo as number) / 4, {
          B,
          T,
          F,
          scaleBatch: sb,
        }),
    );
    return y as tf.TensorInfo;
  };
}

function scaleKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be } = args as unknown as KernelArgs;
    const K = 'ParaScale';
    const backend = asWasm(be, K);
    const x = need(inputs, 'x', K);
    const sc = need(inputs, 'scale', K);
    const dims = scaleOperands(K, 'x', x, sc);
    const [xo, so] = [offset(backend, x), offset(backend, sc)];
    const [y] = compute(
      backend,
      [x.shape],
      (heap, [yo]) =>
        addon.scaleHeap(
          heap,
          Float64Array.of(xo, so, yo as number, dims.B, dims.T, dims.F, dims.scaleBatch),
        ),
      (m, [yo]) => jsFused.scale(m, xo / 4, so / 4, (yo as number) / 4, dims),
    );
    return y as tf.TensorInfo;
  };
}

function scaleGradKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be } = args as unknown as KernelArgs;
    const K = 'ParaScaleGrad';
    const backend = asWasm(be, K);
    const dy = need(inputs, 'dy', K);
    const x = need(inputs, 'x', K);
    const sc = need(inputs, 'scale', K);
    sameShape(x, dy, K, 'dy');
    const dims = scaleOperands(K, 'x', x, sc);
    const [dyo, xo, so] = [offset(backend, dy), offset(backend, x), offset(backend, sc)];
    return compute(
      backend,
      [x.shape, sc.shape],
      (heap, [dxo, dso]) =>
        addon.scaleGradHeap(
          heap,
          Float64Array.of(
            dyo,
            xo,
            so,
            dxo as number,
            dso as number,
            dims.B,
            dims.T,
            dims.F,
            dims.scaleBatch,
          ),
        ),
      (m, [dxo, dso]) =>
        jsFused.scaleGrad(
          m,
          {
            dy: dyo / 4,
            x: xo / 4,
            scale: so / 4,
            dx: (dxo as number) / 4,
            ds: (dso as number) / 4,
          },
          dims,
        ),
    ) as tf.TensorInfo[];
  };
}

/** The start slots of a `ParaRopeKvWrite` call: B integers, each −1 or in [0, C − T]. */
function ropeKvSlots(K: string, slots: unknown, B: number, T: number, C: number): number[] {
  if (!Array.isArray(slots) || slots.length !== B)
    throw new Error(
      `${K}: attr slots must hold ${B} numbers (one start slot, or -1, per row of q)`,
    );
  for (const s of slots)
    if (!Number.isInteger(s) || (s !== -1 && (s < 0 || s + T > C)))
      throw new Error(`${K}: slot ${s} must be -1 or an integer with slot + ${T} (T) ≤ ${C} (C)`);
  return slots as number[];
}

function ropeKvWriteKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be, attrs } = args as unknown as KernelArgs;
    const K = 'ParaRopeKvWrite';
    const backend = asWasm(be, K);
    const q = need(inputs, 'q', K);
    const k = need(inputs, 'k', K);
    const v = need(inputs, 'v', K);
    const cos = need(inputs, 'cos', K);
    const sin = need(inputs, 'sin', K);
    const kc = need(inputs, 'kCache', K);
    const vc = need(inputs, 'vCache', K);
    const opt = (name: string) => (inputs[name] === undefined ? undefined : need(inputs, name, K));
    const [qs, ks, vs] = [opt('qScale'), opt('kScale'), opt('vScale')];
    const [B, Hq, T, hd] = q.shape as [number, number, number, number];
    const [kb, Hkv, kt, khd] = k.shape as [number, number, number, number];
    if (
      q.shape.length !== 4 ||
      hd % 2 !== 0 ||
      k.shape.length !== 4 ||
      kb !== B ||
      kt !== T ||
      khd !== hd
    )
      throw new Error(
        `${K}: q [${q.shape}] and k [${k.shape}]: expected [B, Hq, T, hd] and [B, Hkv, T, hd], hd even`,
      );
    sameShape(k, v, K, 'v');
    const cb = cos.shape[0] as number;
    if (
      cos.shape.length !== 4 ||
      (cb !== 1 && cb !== B) ||
      cos.shape[1] !== 1 ||
      cos.shape[2] !== T ||
      cos.shape[3] !== hd
    )
      throw new Error(`${K}: cos [${cos.shape}] is not [${B} or 1, 1, ${T}, ${hd}]`);
    sameShape(cos, sin, K, 'sin');
    const C = kc.shape[2] as number;
    if (kc.shape.length !== 4 || kc.shape[0] !== B || kc.shape[1] !== Hkv || kc.shape[3] !== hd)
      throw new Error(`${K}: kCache [${kc.shape}] is not [${B}, ${Hkv}, C, ${hd}]`);
    sameShape(kc, vc, K, 'vCache');
    const scaleBatch = (s: TensorInfoLike | undefined, H: number, what: string) => {
      if (s === undefined) return 1;
      const sb = s.shape[0] as number;
      if (
        s.shape.length !== 3 ||
        (sb !== 1 && sb !== B) ||
        s.shape[1] !== 1 ||
        s.shape[2] !== H * hd
      )
        throw new Error(`${K}: ${what} [${s.shape}] is not [${B} or 1, 1, ${H * hd}]`);
      return sb;
    };
    const dims: RopeKvDims = {
      B,
      Hq,
      Hkv,
      T,
      hd,
      C,
      cosBatch: cb,
      qScaleBatch: scaleBatch(qs, Hq, 'qScale'),
      kScaleBatch: scaleBatch(ks, Hkv, 'kScale'),
      vScaleBatch: scaleBatch(vs, Hkv, 'vScale'),
    };
    const slots = ropeKvSlots(K, attrs?.slots, B, T, C);
    const off = (t: TensorInfoLike | undefined) => (t === undefined ? -1 : offset(backend, t));
    const ins = [q, k, v, cos, sin, kc, vc].map((t) => offset(backend, t));
    const scales = [off(qs), off(ks), off(vs)];
    const [qr] = compute(
      backend,
      [q.shape],
      (heap, [qo]) =>
        addon.ropeKvWriteHeap(
          heap,
          Float64Array.from([
            ...ins,
            ...scales,
            qo as number,
            B,
            Hq,
            Hkv,
            T,
            hd,
            C,
            cb,
            dims.qScaleBatch,
            dims.kScaleBatch,
            dims.vScaleBatch,
            ...slots,
          ]),
        ),
      (m, [qo]) => {
        const [qe, ke, ve, ce, se, kce, vce] = ins.map((x) => x / 4) as number[];
        const [qse, kse, vse] = scales.map((x) => (x < 0 ? -1 : x / 4)) as number[];
        jsFused.ropeKvWrite(
          m,
          {
            q: qe as number,
            k: ke as number,
            v: ve as number,
            cos: ce as number,
            sin: se as number,
            kCache: kce as number,
            vCache: vce as number,
            qScale: qse as number,
            kScale: kse as number,
            vScale: vse as number,
            qOut: (qo as number) / 4,
          },
          dims,
          slots,
        );
      },
    );
    return qr as tf.TensorInfo;
  };
}

function adamWKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be, attrs } = args as unknown as KernelArgs;
    const K = 'ParaAdamW';
    const backend = asWasm(be, K);
    const count = Number(attrs?.count);
    if (!Number.isInteger(count) || count < 1)
      throw new Error(`${K}: count must be a positive integer, got ${attrs?.count}`);
    const wd = attrs?.weightDecay as unknown;
    if (!Array.isArray(wd) || wd.length !== count || wd.some((x) => !Number.isFinite(x)))
      throw new Error(`${K}: weightDecay must be ${count} finite numbers`);
    const num = (k: string): number => {
      const x = Number(attrs?.[k]);
      if (!Number.isFinite(x)) throw new Error(`${K}: ${k} must be a finite number`);
      return x;
    };
    const step = num('step');
    if (!Number.isInteger(step) || step < 1)
      throw new Error(`${K}: step must be an integer ≥ 1, got ${step}`);
    const lr = num('lr');
    const beta1 = num('beta1');
    const beta2 = num('beta2');
    const s: AdamWScalars = {
      lr,
      beta1,
      beta2,
      eps: num('eps'),
      bc1: 1 - beta1 ** step,
      bc2: 1 - beta2 ** step,
      gradScale: num('gradScale'),
    };
    if (!(s.bc1 > 0) || !(s.bc2 > 0))
      throw new Error(`${K}: 1 − beta ** step must be > 0 (beta1 ${beta1}, beta2 ${beta2})`);
    const slots: { offs: [number, number, number, number]; n: number; keep: number }[] = [];
    const shapes: number[][] = [];
    for (let i = 0; i < count; i++) {
      const p = need(inputs, `param${i}`, K);
      const t = [
        p,
        need(inputs, `m${i}`, K),
        need(inputs, `v${i}`, K),
        need(inputs, `grad${i}`, K),
      ];
      for (const x of t.slice(1)) sameShape(p, x, K, `an input of parameter ${i}`);
      const d = wd[i] as number;
      slots.push({
        offs: t.map((x) => offset(backend, x)) as [number, number, number, number],
        n: size(p.shape),
        keep: d === 0 ? 1 : 1 - lr * d,
      });
      shapes.push(p.shape, p.shape, p.shape);
    }
    const head = adamWScalarList(s);
    return compute(
      backend,
      shapes,
      (heap, out) => {
        const params = new Float64Array(1 + head.length + 9 * count);
        params[0] = count;
        params.set(head, 1);
        slots.forEach((sl, i) => {
          params.set(
            [
              ...sl.offs,
              out[3 * i] as number,
              out[3 * i + 1] as number,
              out[3 * i + 2] as number,
              sl.n,
              sl.keep,
            ],
            1 + head.length + 9 * i,
          );
        });
        addon.adamWHeap(heap, params);
      },
      (m, out) => {
        slots.forEach((sl, i) => {
          const [p, mm, v, g] = sl.offs.map((x) => x / 4) as [number, number, number, number];
          const [po, mo, vo] = [out[3 * i], out[3 * i + 1], out[3 * i + 2]].map(
            (x) => (x as number) / 4,
          ) as [number, number, number];
          jsAdamW.step(m, { p, m: mm, v, g, po, mo, vo }, sl.n, sl.keep, s);
        });
      },
    ) as tf.TensorInfo[];
  };
}

function sumSquaresKernel(addon: Native): tf.KernelFunc {
  return (args) => {
    const { inputs, backend: be, attrs } = args as unknown as KernelArgs;
    const K = 'ParaSumSquares';
    const backend = asWasm(be, K);
    const count = Number(attrs?.count);
    if (!Number.isInteger(count) || count < 1)
      throw new Error(`${K}: count must be a positive integer, got ${attrs?.count}`);
    const xs = Array.from({ length: count }, (_, i) => {
      const x = need(inputs, `x${i}`, K);
      return { at: offset(backend, x), n: size(x.shape) };
    });
    const [out] = compute(
      backend,
      [[]],
      (heap, o) => {
        const params = new Float64Array(2 + 2 * count);
        params[0] = o[0] as number;
        params[1] = count;
        xs.forEach((x, i) => {
          params[2 + 2 * i] = x.at;
          params[3 + 2 * i] = x.n;
        });
        addon.sumSquaresHeap(heap, params);
      },
      (m, o) => {
        m[(o[0] as number) / 4] = jsSumSquares(
          m,
          xs.map((x) => ({ at: x.at / 4, n: x.n })),
        );
      },
    );
    return out as tf.TensorInfo;
  };
}

const MAKERS: Record<(typeof FUSED_KERNEL_NAMES)[number], (a: Native) => tf.KernelFunc> = {
  ParaRmsNorm: rmsNormKernel,
  ParaRmsNormGrad: rmsNormGradKernel,
  ParaAddRmsNorm: addRmsNormKernel,
  ParaAddRmsNormGrad: addRmsNormGradKernel,
  ParaSwiGlu: swigluKernel,
  ParaSwiGluGrad: swigluGradKernel,
  ParaRope: ropeKernel,
  ParaAttention: attentionKernel,
  ParaAttentionGrad: attentionGradKernel,
  ParaCrossEntropy: crossEntropyKernel,
  ParaCrossEntropyGrad: crossEntropyGradKernel,
  ParaSwiGluScaled: swigluScaledKernel,
  ParaRopeKvWrite: ropeKvWriteKernel,
  ParaScale: scaleKernel,
  ParaScaleGrad: scaleGradKernel,
  ParaAdamW: adamWKernel,
  ParaSumSquares: sumSquaresKernel,
};

function hasFusedFunctions(addon: BlasAddon | undefined): addon is Native {
  return (
    addon !== undefined &&
    typeof addon.rmsNormHeap === 'function' &&
    typeof addon.rmsNormGradHeap === 'function' &&
    typeof addon.addRmsNormHeap === 'function' &&
    typeof addon.addRmsNormGradHeap === 'function' &&
    typeof addon.swigluHeap === 'function' &&
    typeof addon.swigluGradHeap === 'function' &&
    typeof addon.ropeHeap === 'function' &&
    typeof addon.attentionHeap === 'function' &&
    typeof addon.attentionGradHeap === 'function' &&
    typeof addon.crossEntropyHeap === 'function' &&
    typeof addon.crossEntropyGradHeap === 'function' &&
    typeof addon.swigluScaledHeap === 'function' &&
    typeof addon.ropeKvWriteHeap === 'function' &&
    typeof addon.scaleHeap === 'function' &&
    typeof addon.scaleGradHeap === 'function' &&
    typeof addon.adamWHeap === 'function' &&
    typeof addon.sumSquaresHeap === 'function'
  );
}

let ours: Map<string, tf.KernelFunc> | undefined;

/** Why `installFusedKernels()` would not install (undefined: it would). */
export function fusedKernelsProblem(): string | undefined {
  if (process.env.PARA_FUSED === '0') return 'disabled by PARA_FUSED=0';
  const addon = blasAddon();
  if (addon === undefined) return 'the addon is unavailable';
  if (!hasFusedFunctions(addon)) return 'the loaded binary predates the fused kernels (rebuild it)';
  // A started wasm backend with a shared (threaded) heap: its own kernels are the better choice.
  const wasm = tf.findBackend('wasm') as Partial<WasmBackendLike> | null;
  const heap = wasm?.wasm?.HEAPU8?.buffer;
  if (heap !== undefined && Object.prototype.toString.call(heap) !== '[object ArrayBuffer]')
    return 'the wasm heap is shared (threaded wasm)';
  return undefined;
}

/**
 * Register the fused kernels ({@link FUSED_KERNEL_NAMES}: ParaRmsNorm, ParaRmsNormGrad,
 * ParaAddRmsNorm, ParaAddRmsNormGrad, ParaSwiGlu, ParaSwiGluGrad, ParaRope, ParaAttention,
 * ParaAttentionGrad, ParaCrossEntropy, ParaCrossEntropyGrad, ParaSwiGluScaled, ParaRopeKvWrite,
 * ParaScale, ParaScaleGrad, ParaAdamW, ParaSumSquares) for the wasm backend; @para/ops then uses them. `installBlasKernels()` calls this.
 * Returns false, changing nothing, when the addon (or a binary with these kernels) is
 * unavailable or PARA_FUSED=0 is set. A kernel someone else registered under one of these
 * names is left in place. Idempotent.
 */
export function installFusedKernels(): boolean {
  if (ours !== undefined) return true;
  if (fusedKernelsProblem() !== undefined) return false;
  const addon = blasAddon() as Native;
  const registered = new Map<string, tf.KernelFunc>();
  for (const name of FUSED_KERNEL_NAMES) {
    if (tf.getKernel(name, 'wasm') !== undefined) continue;
    const kernelFunc = MAKERS[name](addon);
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc });
    registered.set(name, kernelFunc);
  }
  ours = registered;
  return true;
}

/** Unregister the fused kernels `installFusedKernels` registered. False if none were installed. */
export function uninstallFusedKernels(): boolean {
  if (ours === undefined) return false;
  for (const [name, fn] of ours) {
    if (tf.getKernel(name, 'wasm')?.kernelFunc === fn) tf.unregisterKernel(name, 'wasm');
  }
  ours = undefined;
  return true;
}

/** Whether our fused kernels are the registered ones for wasm now. */
export function fusedKernelsInstalled(): boolean {
  if (ours === undefined || ours.size === 0) return false;
  for (const [name, fn] of ours) if (tf.getKernel(name, 'wasm')?.kernelFunc !== fn) return false;
  return true;
}

/** The fused kernels' thread pool (calling thread included), or undefined without the addon. */
export function fusedThreads(): number | undefined {
  const addon = blasAddon();
  return hasFusedFunctions(addon) ? addon.fusedInfo?.().threads : undefined;
}

/**
 * The instruction set of fused attention's matrix products (`avx512`, `avx2` or `baseline`: the
 * widest the CPU has, unless PARA_FUSED_ISA caps it), or undefined without the addon.
 */
export function fusedAttentionIsa(): string | undefined {
  const addon = blasAddon();
  return hasFusedFunctions(addon) ? addon.fusedInfo?.().attentionIsa : undefined;
}
