import * as tf from '@tensorflow/tfjs-core';

/**
 * Fused kernels: named tfjs kernels that a backend MAY implement (today @para/blas on wasm, in
 * native C over the wasm heap; later WGSL on webgpu). The ops of this package call one through
 * `tf.engine().runKernel` when `tf.getKernel(name, tf.getBackend())` is registered, and otherwise
 * run their generic tfjs path, unchanged. The gradient of each forward kernel is registered here,
 * once, backend-neutrally (`tf.registerGradient`): it calls the matching `…Grad` kernel, so any
 * backend that registers a forward kernel must register its Grad kernel too.
 *
 * This is the contract every implementation follows. All tensors are float32, dense and
 * row-major; every input of a call has its documented shape (the ops check shapes before
 * dispatching, and dispatch only float32 inputs with at least one element).
 *
 * | kernel | inputs | attrs | outputs |
 * |---|---|---|---|
 * | `ParaRmsNorm` | `x [..., d]`, `weight [d]` | `eps`, `unitOffset` | `y [..., d]` = x · rsqrt(mean(x², -1) + eps) · w′ |
 * | `ParaRmsNormGrad` | `dy [..., d]`, `x [..., d]`, `weight [d]` | `eps`, `unitOffset` | `dx [..., d]`, `dweight [d]` |
 * | `ParaAddRmsNorm` | `x [..., d]`, `residual [..., d]`, `weight [d]` | `eps`, `unitOffset` | `sum [..., d]` = x + residual, `y [..., d]` = RMSNorm(sum) |
 * | `ParaAddRmsNormGrad` | `dy [..., d]` (of y), `dsum [..., d]` (of sum), `sum`, `weight [d]` | `eps`, `unitOffset` | `dx [..., d]` (= d residual), `dweight [d]` |
 * | `ParaSwiGlu` | `gate [...]`, `up [...]` (same shape) | — | `y [...]` = silu(gate) · up |
 * | `ParaSwiGluGrad` | `dy`, `gate`, `up` (same shape) | — | `dgate`, `dup` |
 * | `ParaRope` | `x [B, H, T, hd]`, `cos [B or 1, 1, T, hd]`, `sin` (as cos) | `inverse` | `y [B, H, T, hd]` |
 * | `ParaSwiGluScaled` (forward only) | `gate [B, T, F]`, `up [B, T, F]`, `scale [B or 1, 1, F]` | — | `y [B, T, F]` = silu(gate) · up · scale |
 * | `ParaRopeKvWrite` (forward only, writes its cache inputs in place) | `q [B, Hq, T, hd]`, `k`/`v [B, Hkv, T, hd]`, `cos`/`sin [B or 1, 1, T, hd]`, `kCache`/`vCache [B, Hkv, C, hd]`, optional `qScale [B or 1, 1, Hq·hd]`, `kScale`/`vScale [B or 1, 1, Hkv·hd]` | `slots` (B numbers: a row's first slot, or −1: no write) | `q′ [B, Hq, T, hd]` = RoPE(q ⊙ qScale); `kCache[b, :, slots[b] + t] = RoPE(k ⊙ kScale)`, `vCache[…] = v ⊙ vScale` for rows with `slots[b] ≥ 0` |
 * | `ParaAttention` | `q [B, Hq, T, hd]`, `k [B, Hkv, S, hd]`, `v [B, Hkv, S, hd]`, `mask [B or 1, 1, T, S]` (optional) | `scale` | `out [B, Hq, T, hd]` |
 * | `ParaAttentionGrad` | `dy [B, Hq, T, hd]`, `q`, `k`, `v`, `mask` (optional) — as the forward | `scale` | `dq [B, Hq, T, hd]`, `dk [B, Hkv, S, hd]`, `dv [B, Hkv, S, hd]` |
 * | `ParaCrossEntropy` | `logits [N, V]`, `targets [N]` (int32), `weights [N]` | — | `loss []` = Σ_n weights[n] · nll[n], `lse [N]` = logsumexp(logits[n, :]) |
 * | `ParaCrossEntropyGrad` | `dy []` (of loss), `logits [N, V]`, `targets [N]`, `weights [N]`, `lse [N]` (the forward's) | — | `dlogits [N, V]` = dy · weights[n] · (exp(logits − lse[n]) − onehot(target[n])) |
 * | `ParaScale` | `x [B, T, F]`, `scale [B or 1, 1, F]` | — | `y [B, T, F]` = x · scale |
 * | `ParaScaleGrad` | `dy [B, T, F]`, `x`, `scale` (as the forward) | — | `dx [B, T, F]` = dy · scale, `dscale [B or 1, 1, F]` = Σ_t dy · x (Σ_b too when scale broadcasts) |
 * | `ParaAdamW` (no gradient) | `param<i>`, `m<i>`, `v<i>`, `grad<i>` for i < count (each quadruple one shape) | `count`, `lr`, `beta1`, `beta2`, `eps`, `step`, `gradScale`, `weightDecay` (count numbers) | `[param′0, m′0, v′0, param′1, …]` (3·count, new tensors) |
 * | `ParaSumSquares` (no gradient) | `x<i>` for i < count (any shapes) | `count` | `sum []` = Σ_i Σ x_i² |
 *
 * - RMSNorm: w′ = weight, or (1 + weight) with `unitOffset` (Gemma); the mean of squares and the
 *   reciprocal square root per row of d, in float32 or better. With r = rsqrt(mean(x²) + eps),
 *   g = dy · w′: `dx = r · g − x · r³ · mean(g · x)`, `dweight = Σ_rows dy · x · r`.
 * - Residual add + RMSNorm: the same norm of `sum = x + residual`; the gradient of both addends is
 *   `dsum + ` the norm's dx at `sum`.
 * - SwiGLU: s = σ(gate): `y = gate · s · up`; `dgate = dy · up · s · (1 + gate · (1 − s))`,
 *   `dup = dy · gate · s`.
 * - RoPE (HF rotate-half convention, the whole last axis rotates; h = hd / 2, j < h):
 *   forward (`inverse` false) `y[j] = x[j]·cos[j] − x[j+h]·sin[j]`,
 *   `y[j+h] = x[j+h]·cos[j+h] + x[j]·sin[j+h]` (= x ⊙ cos + rotate_half(x) ⊙ sin);
 *   `inverse` true is the transpose (the gradient w.r.t. x):
 *   `y[j] = x[j]·cos[j] + x[j+h]·sin[j+h]`, `y[j+h] = x[j+h]·cos[j+h] − x[j]·sin[j]`.
 *   The gradient w.r.t. cos and sin (rarely needed: tables are constants) is computed with
 *   generic ops, only when asked for.
 * - Attention (exactly {@link attention} without softcap; Hq a multiple of Hkv, nRep = Hq / Hkv,
 *   query head h reads kv head floor(h / nRep)): in float32,
 *   `s[b,h,t,j] = (q[b,h,t,:] · k[b,h/nRep,j,:]) · scale + mask[b|0,0,t,j]` (no mask: + 0),
 *   `p = softmax_j(s)` (max-subtracted), `out[b,h,t,:] = Σ_j p[b,h,t,j] · v[b,h/nRep,j,:]`.
 *   The mask is additive and may hold −Infinity or large negatives (`MASK_NEGATIVE`); a row whose
 *   every score is −Infinity has no defined softmax — the generic path yields NaN there, a fused
 *   kernel may yield NaN or 0 for that row (not anything else); rows with finite scores must
 *   match. Implementations need not materialise `[B, Hq, T, S]` (online softmax, flash-style).
 *   A kernel may skip keys whose mask value lies at least 1e6 below the highest mask value of
 *   their row (never reading their k or v): their probability is 0 to float32 precision for any
 *   score spread under ~1e6. A decode step over a preallocated cache then spends its arithmetic on the
 *   row's live slots only; garbage (even NaN) in a free slot cannot reach the output.
 *   Only the forward output is returned (every backend can implement it); the gradient kernel
 *   recomputes the softmax statistics. With `P = p`, `dP = dy · vᵀ`, `D[t] = Σ_d dy[t,d] ·
 *   out[t,d]` (= Σ_j P·dP), `dS = P ⊙ (dP − D)`: `dq = scale · dS · k`, `dk = scale · Σ_group
 *   dSᵀ · q`, `dv = Σ_group Pᵀ · dy` (the sums run over the nRep query heads of each kv head).
 *   The mask is a constant: no gradient flows to it through the fused path.
 *   A backend may register `ParaAttention` without `ParaAttentionGrad` (WebGPU does): then the
 *   op dispatches to it only while no gradient is being recorded (see {@link recordingGradients}).
 * - Per-row scale (PARA's and IA3's vectors on a projection's output, {@link scaleRows}): each
 *   product rounded to float32 (exactly tf.mul); `dscale`'s sum over rows in float32 or better.
 * - Cross-entropy (@para/train's `weightedCrossEntropy`): `nll[n] = lse[n] − logits[n, t[n]]`
 *   with the target clamped into [0, V) (targets at zero-weight positions may hold anything);
 *   `lse` max-subtracted in float32 or better (a row holding NaN or ±Infinity: NaN, as the
 *   generic path); the sum over rows in float32 or better. Every row counts, weight 0 included
 *   (0 · NaN stays NaN, so a non-finite logit is never hidden). V ≥ 1, N ≥ 1.
 * - AdamW (@para/train's `AdamW.apply`, one step over every parameter in one call): in float32,
 *   each operation rounded in this order (the generic path's tfjs ops; scalars rounded to float32
 *   from these JavaScript doubles: `1 − beta1`, `1 − beta2`, `bc1 = 1 − beta1 ** step`,
 *   `bc2 = 1 − beta2 ** step`, `keep = 1 − lr · weightDecay[i]`):
 *   `g = grad · gradScale`, `m′ = m · beta1 + g · (1 − beta1)`, `v′ = v · beta2 + (g · g) · (1 − beta2)`,
 *   `param′ = param · keep − ((m′ / bc1) / (√(v′ / bc2) + eps)) · lr` (keep = 1 when
 *   `weightDecay[i]` is 0). Outputs are new tensors (the caller assigns them to its variables:
 *   a variable may share its data with other tensors, so nothing is written in place). step ≥ 1.
 * - Sum of squares (@para/train's global gradient norm before clipping): in any order, float32
 *   partial sums of at most a few thousand squares combined in float64 (or better throughout);
 *   the result rounded to float32 once. count ≥ 1.
 * - Forward-only kernels (no Grad kernel; dispatched only while no gradient is recorded):
 *   `ParaSwiGluScaled` folds PARA's `up` scale or IA3's down_proj-input scale into the gate
 *   (`swiglu(gate, up, { scale })`). `ParaRopeKvWrite` is the KV cache's append with RoPE
 *   (`KVCache.appendRotated`): a scale indexes by head and dimension (`scale[b, 0, h · hd + j]`)
 *   and applies before the rotation; the caches are the KVCache's own storage (fresh, never
 *   shared), so writing them in place is sound. @para/webgpu (WGSL) and @para/blas on wasm (C on
 *   the wasm heap) implement both; elsewhere the ops run their generic path.
 */
export const FUSED_KERNELS = {
  rmsNorm: 'ParaRmsNorm',
  rmsNormGrad: 'ParaRmsNormGrad',
  addRmsNorm: 'ParaAddRmsNorm',
  addRmsNormGrad: 'ParaAddRmsNormGrad',
  swiglu: 'ParaSwiGlu',
  swigluGrad: 'ParaSwiGluGrad',
  rope: 'ParaRope',
  attention: 'ParaAttention',
  attentionGrad: 'ParaAttentionGrad',
  crossEntropy: 'ParaCrossEntropy',
  crossEntropyGrad: 'ParaCrossEntropyGrad',
  swigluScaled: 'ParaSwiGluScaled',
  ropeKvWrite: 'ParaRopeKvWrite',
  scale: 'ParaScale',
  scaleGrad: 'ParaScaleGrad',
  adamW: 'ParaAdamW',
  sumSquares: 'ParaSumSquares',
} as const;

export type FusedKernelName = (typeof FUSED_KERNELS)[keyof typeof FUSED_KERNELS];

let enabled = true;

/**
 * Turn dispatch to fused kernels off (or back on) for this process: with `false` every op runs
 * its generic tfjs path even where a backend registered fused kernels (to compare the two).
 * Returns the previous setting.
 */
export function setFusedKernelsEnabled(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

/** Whether the active backend has the fused kernel `name` (and dispatch is enabled). */
export function hasFusedKernel(name: FusedKernelName): boolean {
  if (!enabled) return false;
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/**
 * Whether tfjs is recording a gradient tape now: inside `tf.grad(s)`, `tf.valueAndGrad(s)`,
 * `tf.variableGrads` or an optimizer's `minimize` (the engine's `gradientDepth > 0`; its private
 * `isTapeOn()` also requires `kernelDepth === 0`, i.e. not inside a kernel's own forward, which
 * we ignore: counting those as recording only makes us fall back more often). Ops whose fused
 * kernel has no gradient kernel on the active backend dispatch only when this is false.
 */
export function recordingGradients(): boolean {
  const state = (tf.engine() as unknown as { state?: { gradientDepth?: number } }).state;
  return (state?.gradientDepth ?? 0) > 0;
}

const registered = new Set<string>();

/** Register a forward kernel's gradient once (lazily: this package has no import side effects). */
function ensureGradient(config: tf.GradConfig): void {
  if (registered.has(config.kernelName)) return;
  registered.add(config.kernelName);
  if (tf.getGradient(config.kernelName) === undefined) tf.registerGradient(config);
}

const rmsNormGradient: tf.GradConfig = {
  kernelName: FUSED_KERNELS.rmsNorm,
  inputsToSave: ['x', 'weight'],
  gradFunc: (dy, saved, attrs) => {
    const [x, weight] = saved as [tf.Tensor, tf.Tensor];
    // Both outputs at once, outside the per-input thunks (each thunk runs in its own tidy).
    const [dx, dw] = tf
      .engine()
      .runKernel(
        FUSED_KERNELS.rmsNormGrad,
        { dy: dy as tf.Tensor, x, weight },
        attrs as unknown as tf.NamedAttrMap,
      ) as tf.Tensor[];
    return { x: () => dx as tf.Tensor, weight: () => dw as tf.Tensor };
  },
};

/** `ParaRmsNorm` (its gradient through `ParaRmsNormGrad`). Float32 inputs, x non-empty. */
export function fusedRmsNorm(
  x: tf.Tensor,
  weight: tf.Tensor,
  eps: number,
  unitOffset: boolean,
): tf.Tensor {
  ensureGradient(rmsNormGradient);
  return tf
    .engine()
    .runKernel(FUSED_KERNELS.rmsNorm, { x, weight }, { eps, unitOffset }) as tf.Tensor;
}

const addRmsNormGradient: tf.GradConfig = {
  kernelName: FUSED_KERNELS.addRmsNorm,
  inputsToSave: ['weight'],
  outputsToSave: [true, false], // sum
  gradFunc: (dys, saved, attrs) => {
    const [ds, dy] = dys as tf.Tensor[];
    const [weight, sum] = saved as [tf.Tensor, tf.Tensor];
    const [dx, dw] = tf
      .engine()
      .runKernel(
        FUSED_KERNELS.addRmsNormGrad,
        { dy: dy as tf.Tensor, dsum: ds as tf.Tensor, sum, weight },
        attrs as unknown as tf.NamedAttrMap,
      ) as tf.Tensor[];
    // Both addends get dx: as two tensors (sharing data) so that accumulating one never disposes
    // the other's.
    const g = dx as tf.Tensor;
    return {
      x: () => tf.reshape(g, g.shape),
      residual: () => tf.reshape(g, g.shape),
      weight: () => dw as tf.Tensor,
    };
  },
};

/**
 * `ParaAddRmsNorm`: `[x + residual, RMSNorm(x + residual)]` (its gradient through
 * `ParaAddRmsNormGrad`). Float32 inputs of one shape, non-empty.
 */
export function fusedAddRmsNorm(
  x: tf.Tensor,
  residual: tf.Tensor,
  weight: tf.Tensor,
  eps: number,
  unitOffset: boolean,
): [tf.Tensor, tf.Tensor] {
  ensureGradient(addRmsNormGradient);
  return tf
    .engine()
    .runKernel(FUSED_KERNELS.addRmsNorm, { x, residual, weight }, { eps, unitOffset }) as [
    tf.Tensor,
    tf.Tensor,
  ];
}

const swigluGradient: tf.GradConfig = {
  kernelName: FUSED_KERNELS.swiglu,
  inputsToSave: ['gate', 'up'],
  gradFunc: (dy, saved) => {
    const [gate, up] = saved as [tf.Tensor, tf.Tensor];
    const [dg, du] = tf
      .engine()
      .runKernel(FUSED_KERNELS.swigluGrad, { dy: dy as tf.Tensor, gate, up }) as tf.Tensor[];
    return { gate: () => dg as tf.Tensor, up: () => du as tf.Tensor };
  },
};

/** `ParaSwiGlu` (its gradient through `ParaSwiGluGrad`). Float32, same shape, non-empty. */
export function fusedSwiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  ensureGradient(swigluGradient);
  return tf.engine().runKernel(FUSED_KERNELS.swiglu, { gate, up }) as tf.Tensor;
}

const scaleGradient: tf.GradConfig = {
  kernelName: FUSED_KERNELS.scale,
  inputsToSave: ['x', 'scale'],
  gradFunc: (dy, saved) => {
    const [x, scale] = saved as [tf.Tensor, tf.Tensor];
    const [dx, ds] = tf
      .engine()
      .runKernel(FUSED_KERNELS.scaleGrad, { dy: dy as tf.Tensor, x, scale }) as tf.Tensor[];
    return { x: () => dx as tf.Tensor, scale: () => ds as tf.Tensor };
  },
};

/**
 * `ParaScale`: `x [B, T, F] ⊙ scale [B or 1, 1, F]` (its gradient through `ParaScaleGrad`).
 * Float32, non-empty.
 */
export function fusedScale(x: tf.Tensor, scale: tf.Tensor): tf.Tensor {
  ensureGradient(scaleGradient);
  return tf.engine().runKernel(FUSED_KERNELS.scale, { x, scale }) as tf.Tensor;
}

/** Sum `t` down to `shape` (the shape it was broadcast from). */
function sumTo(t: tf.Tensor, shape: number[]): tf.Tensor {
  const axes: number[] = [];
  for (let i = 0; i < t.rank; i++) if (shape[i] === 1 && t.shape[i] !== 1) axes.push(i);
  return axes.length === 0 ? t : tf.sum(t, axes, true);
}

/** `[x₁, x₂] → [−x₂, x₁]` over the last axis of a rank-4 tensor. */
function rotateHalfOf(t: tf.Tensor): tf.Tensor {
  const [b, n, l, hd] = t.shape as [number, number, number, number];
  const h = hd / 2;
  const t1 = tf.slice(t, [0, 0, 0, 0], [b, n, l, h]);
  const t2 = tf.slice(t, [0, 0, 0, h], [b, n, l, h]);
  return tf.concat([tf.neg(t2), t1], 3);
}

const ropeGradient: tf.GradConfig = {
  kernelName: FUSED_KERNELS.rope,
  inputsToSave: ['x', 'cos', 'sin'],
  gradFunc: (dy, saved, attrs) => {
    const [x, cos, sin] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
    const g = dy as tf.Tensor;
    const inverse = (attrs as { inverse?: boolean } | undefined)?.inverse === true;
    return {
      // The transpose of the rotation is the rotation with `inverse` flipped.
      x: () =>
        tf
          .engine()
          .runKernel(FUSED_KERNELS.rope, { x: g, cos, sin }, { inverse: !inverse }) as tf.Tensor,
      cos: () => sumTo(tf.mul(g, x), cos.shape),
      // ∂y/∂sin: forward dy ⊙ rotate_half(x); inverse x ⊙ rotate_half(dy).
      sin: () =>
        sumTo(inverse ? tf.mul(x, rotateHalfOf(g)) : tf.mul(g, rotateHalfOf(x)), sin.shape),
    };
  },
};

/**
 * `ParaRope`: `x ⊙ cos + rotate_half(x) ⊙ sin` (or, `inverse`, its transpose) with x `[B, H, T,
 * hd]` and cos/sin `[B or 1, 1, T, hd]`, float32, non-empty. Differentiable.
 */
export function fusedRope(
  x: tf.Tensor,
  cos: tf.Tensor,
  sin: tf.Tensor,
  inverse = false,
): tf.Tensor {
  ensureGradient(ropeGradient);
  return tf.engine().runKernel(FUSED_KERNELS.rope, { x, cos, sin }, { inverse }) as tf.Tensor;
}

/**
 * `ParaAttention`: softmax attention of `q [B, Hq, T, hd]` over `k`/`v [B, Hkv, S, hd]` with an
 * optional additive `mask [B or 1, 1, T, S]` (see the contract above), float32, non-empty.
 * Differentiable in q, k and v through `ParaAttentionGrad` when `withGradient` (the caller checks
 * that the backend registers it); the mask is treated as a constant. The gradient is attached with
 * `tf.customGrad` rather than `tf.registerGradient` because the mask input is optional (a
 * registered gradient saves a fixed list of inputs), so the forward kernel itself never needs a
 * gradient registration and a forward-only backend is fine while nothing records.
 */
export function fusedAttention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  mask: tf.Tensor | null,
  scale: number,
  withGradient: boolean,
): tf.Tensor {
  const run = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor): tf.Tensor => {
    const inputs: tf.NamedTensorMap =
      mask === null ? { q: qq, k: kk, v: vv } : { q: qq, k: kk, v: vv, mask };
    return tf.engine().runKernel(FUSED_KERNELS.attention, inputs, { scale }) as tf.Tensor;
  };
  if (!withGradient || !recordingGradients()) return run(q, k, v);
  const f = tf.customGrad((...args: unknown[]) => {
    const [qq, kk, vv, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    // The mask too: tensors made inside the recorded function are disposed before the backward
    // runs unless saved (a saved tensor is a kept clone).
    save(mask === null ? [qq, kk, vv] : [qq, kk, vv, mask]);
    return {
      value: run(qq, kk, vv), // [B, Hq, T, hd]
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [sq, sk, sv, sm] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor?];
        const inputs: tf.NamedTensorMap =
          sm === undefined
            ? { dy: dy as tf.Tensor, q: sq, k: sk, v: sv }
            : { dy: dy as tf.Tensor, q: sq, k: sk, v: sv, mask: sm };
        // dq [B, Hq, T, hd], dk [B, Hkv, S, hd], dv [B, Hkv, S, hd]
        return tf.engine().runKernel(FUSED_KERNELS.attentionGrad, inputs, { scale }) as tf.Tensor[];
      },
    };
  });
  return (f as unknown as (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => tf.Tensor)(q, k, v);
}

/**
 * `ParaCrossEntropy`: `Σ_n weights[n] · nll[n]` for `logits [N, V]` float32, `targets [N]` int32,
 * `weights [N]` float32 (a scalar), differentiable in `logits` through `ParaCrossEntropyGrad`
 * (the caller checks that both kernels are registered). `targets` and `weights` are data.
 */
export function fusedWeightedCrossEntropy(
  logits: tf.Tensor,
  targets: tf.Tensor,
  weights: tf.Tensor,
): tf.Scalar {
  const f = tf.customGrad((...args: unknown[]) => {
    const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const [loss, lse] = tf
      .engine()
      .runKernel(FUSED_KERNELS.crossEntropy, { logits: x, targets, weights }) as [
      tf.Scalar,
      tf.Tensor,
    ];
    save([x, targets, weights, lse as tf.Tensor]);
    return {
      value: loss as tf.Scalar,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [sx, st, sw, sl] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        return tf.engine().runKernel(FUSED_KERNELS.crossEntropyGrad, {
          dy: dy as tf.Tensor,
          logits: sx,
          targets: st,
          weights: sw,
          lse: sl,
        }) as tf.Tensor; // [N, V]
      },
    };
  });
  return (f as unknown as (x: tf.Tensor) => tf.Scalar)(logits);
}
