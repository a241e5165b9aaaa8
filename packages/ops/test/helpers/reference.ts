/**
 * Naive float64 nested-loop references (llm.c style): the obvious formula, no tensors, no
 * cleverness, so a test compares the tfjs ops against something easy to check by eye.
 * Arrays are flat and row-major; shapes are passed explicitly.
 */

/** HF LlamaRMSNorm over rows of length d: x · 1/sqrt(mean(x²) + eps) · w. */
export function refRmsNorm(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  d: number,
  eps: number,
): Float64Array {
  const n = x.length / d;
  const out = new Float64Array(x.length);
  for (let r = 0; r < n; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += (x[r * d + j] as number) ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) out[r * d + j] = (x[r * d + j] as number) * inv * (w[j] as number);
  }
  return out;
}

/** Default RoPE inverse frequencies 1 / theta^(2i/hd), float64. */
export function refInvFreq(hd: number, theta: number): Float64Array {
  const out = new Float64Array(hd / 2);
  for (let i = 0; i < hd / 2; i++) out[i] = 1 / theta ** ((2 * i) / hd);
  return out;
}

/**
 * RoPE on x [B, H, T, hd] with positions [B][T], rotate_half convention written out per pair:
 * (x_j, x_{j+hd/2}) rotates by angle p · inv[j].
 */
export function refRope(
  x: ArrayLike<number>,
  shape: [number, number, number, number],
  positions: number[][],
  inv: ArrayLike<number>,
): Float64Array {
  const [B, H, T, hd] = shape;
  const half = hd / 2;
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < T; t++) {
        const p = (positions[b] as number[])[t] as number;
        const base = ((b * H + h) * T + t) * hd;
        for (let j = 0; j < half; j++) {
          const a = p * (inv[j] as number);
          const x1 = x[base + j] as number;
          const x2 = x[base + j + half] as number;
          out[base + j] = x1 * Math.cos(a) - x2 * Math.sin(a);
          out[base + j + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
        }
      }
  return out;
}

/**
 * Grouped-query attention: q [B, Hq, T, hd], k/v [B, Hkv, S, hd]; query head h reads kv head
 * floor(h / (Hq / Hkv)); `allowed(b, t, s)` says whether query t may see key s. Rows with no
 * allowed key come out as NaN (the caller never compares them).
 */
export function refAttention(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dims: { B: number; Hq: number; Hkv: number; T: number; S: number; hd: number },
  allowed: (b: number, t: number, s: number) => boolean,
): Float64Array {
  const { B, Hq, Hkv, T, S, hd } = dims;
  const nRep = Hq / Hkv;
  const out = new Float64Array(B * Hq * T * hd);
  const scale = 1 / Math.sqrt(hd);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / nRep);
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        let max = Number.NEGATIVE_INFINITY;
        for (let s = 0; s < S; s++) {
          if (!allowed(b, t, s)) {
            scores.push(Number.NEGATIVE_INFINITY);
            continue;
          }
          let dot = 0;
          for (let j = 0; j < hd; j++)
            dot +=
              (q[((b * Hq + h) * T + t) * hd + j] as number) *
              (k[((b * Hkv + kvh) * S + s) * hd + j] as number);
          scores.push(dot * scale);
          max = Math.max(max, dot * scale);
        }
        let z = 0;
        const p = scores.map((x) => {
          const e = x === Number.NEGATIVE_INFINITY ? 0 : Math.exp(x - max);
          z += e;
          return e;
        });
        for (let j = 0; j < hd; j++) {
          let acc = 0;
          for (let s = 0; s < S; s++)
            acc += ((p[s] as number) / z) * (v[((b * Hkv + kvh) * S + s) * hd + j] as number);
          out[((b * Hq + h) * T + t) * hd + j] = z === 0 ? Number.NaN : acc;
        }
      }
    }
  return out;
}

/** silu(g) · u elementwise. */
export function refSwiglu(g: ArrayLike<number>, u: ArrayLike<number>): Float64Array {
  const out = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) {
    const x = g[i] as number;
    out[i] = (x / (1 + Math.exp(-x))) * (u[i] as number);
  }
  return out;
}

/** Per-position nll [N] over logits [N, V]: log Σ exp(l) - l[target]. */
export function refNll(
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  V: number,
): Float64Array {
  const N = targets.length;
  const out = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < V; j++) max = Math.max(max, logits[n * V + j] as number);
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp((logits[n * V + j] as number) - max);
    out[n] = max + Math.log(z) - (logits[n * V + (targets[n] as number)] as number);
  }
  return out;
}

/** Σ mask · nll / Σ mask (0 when the mask is empty). */
export function refMaskedCe(
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  mask: ArrayLike<number>,
  V: number,
): number {
  const nll = refNll(logits, targets, V);
  let s = 0;
  let c = 0;
  for (let n = 0; n < nll.length; n++) {
    s += (mask[n] as number) * (nll[n] as number);
    c += mask[n] as number;
  }
  return c === 0 ? 0 : s / c;
}

/** Σ out · weights, the scalar a gradient test differentiates. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/** Central finite differences of f at x in float64 (x is not modified). */
export function numericGrad(
  f: (x: Float64Array) => number,
  x: ArrayLike<number>,
  eps = 1e-6,
): Float64Array {
  const xs = Float64Array.from(x);
  const g = new Float64Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    const x0 = xs[i] as number;
    xs[i] = x0 + eps;
    const fp = f(xs);
    xs[i] = x0 - eps;
    const fm = f(xs);
    xs[i] = x0;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

/** Softmax in float64. */
export function refSoftmax(x: ArrayLike<number>): number[] {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < x.length; i++) max = Math.max(max, x[i] as number);
  const e = Array.from(x, (v) => Math.exp(v - max));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}
