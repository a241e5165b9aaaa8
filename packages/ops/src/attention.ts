import { ParaError } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS, fusedAttention, hasFusedKernel, recordingGradients } from './fused';
import { checkPositiveInt, checkShape, describeShape } from './shapes';

/**
 * Grouped-query heads, HF's `repeat_kv`: each of the `Hkv` key/value heads is repeated `nRep`
 * times **consecutively**, so query head `h` uses kv head `floor(h / nRep)`.
 * `[B, Hkv, S, hd] → [B, Hkv · nRep, S, hd]`. ({@link attention} does not materialise this; it
 * is here for references and for code that needs the expanded heads.)
 */
export function repeatKv(x: tf.Tensor, nRep: number): tf.Tensor {
  const [B, Hkv, S, hd] = checkShape(x, 'x', ['B', 'Hkv', 'S', 'hd']) as [
    number,
    number,
    number,
    number,
  ];
  checkPositiveInt(nRep, 'nRep');
  if (nRep === 1) return tf.clone(x);
  return tf.tidy(() => {
    const expanded = tf.tile(tf.reshape(x, [B, Hkv, 1, S * hd]), [1, 1, nRep, 1]); // [B, Hkv, nRep, S·hd]
    return tf.reshape(expanded, [B, Hkv * nRep, S, hd]); // [B, Hq, S, hd]
  });
}

export interface AttentionOptions {
  /** Score scale; default `1 / sqrt(hd)`. */
  scale?: number;
  /**
   * Gemma 2's attention logit soft-capping: scores become `cap · tanh(scores / cap)` after the
   * scale and before the mask (HF's eager `softcap`). Default none.
   */
  softcap?: number | null;
}

/**
 * Scaled dot-product attention with grouped-query heads (GQA, Ainslie et al. 2023):
 *
 *     scores[b, h, t, s] = (q[b, h, t, :] · k[b, h / nRep, s, :]) · scale + mask[b, 0, t, s]
 *     out[b, h, t, :]    = Σ_s softmax_s(scores[b, h, t, :]) · v[b, h / nRep, s, :]
 *
 * with `nRep = Hq / Hkv` and `scale = 1 / sqrt(hd)` — exactly HF's eager attention with
 * `repeat_kv`, in float32. Shapes: `q [B, Hq, T, hd]`, `k`/`v [B, Hkv, S, hd]`, `mask`
 * additive `[B or 1, 1, T, S]` (see `attentionMask`; causality lives in the mask), or `null`
 * for none. Returns `[B, Hq, T, hd]`. Differentiable in q, k and v.
 *
 * The query heads that share a kv head are folded into the query axis
 * (`[B, Hkv, nRep · T, hd]`) rather than copying k and v nRep times, so both matmuls are plain
 * batched matmuls with equal batch dims (their gradients work on every backend).
 *
 * Where the backend registers the fused kernel `ParaAttention` (see `fused.ts`: @para/blas on
 * wasm, WGSL on webgpu), float32 inputs without softcap run as that one kernel (flash-style: no
 * `[B, Hq, T, S]` scores tensor). Its gradient runs `ParaAttentionGrad`; a backend that registers
 * the forward only is used only while no gradient tape is recording (`recordingGradients()`),
 * otherwise this generic path runs. Through the fused path the mask is a constant (no gradient).
 */
export function attention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  mask: tf.Tensor | null,
  options: AttentionOptions = {},
): tf.Tensor {
  const dims = new Map<string, number>();
  const [B, Hq, T, hd] = checkShape(q, 'q', ['B', 'Hq', 'T', 'hd'], dims) as [
    number,
    number,
    number,
    number,
  ];
  const [, Hkv, S] = checkShape(k, 'k', ['B', 'Hkv', 'S', 'hd'], dims) as [
    number,
    number,
    number,
    number,
  ];
  checkShape(v, 'v', ['B', 'Hkv', 'S', 'hd'], dims);
  if (Hq % Hkv !== 0) {
    throw new ParaError(
      'SHAPE_MISMATCH',
      `${Hq} query heads cannot be grouped over ${Hkv} key/value heads`,
      {
        field: 'k',
        expected: `a number of kv heads dividing ${Hq}`,
        actual: describeShape(k.shape),
      },
    );
  }
  if (mask !== null) {
    const m = checkShape(mask, 'mask', [null, 1, T, S]);
    if (m[0] !== B && m[0] !== 1) {
      throw new ParaError('SHAPE_MISMATCH', 'mask batch does not match q', {
        field: 'mask',
        expected: describeShape([B, 1, T, S]),
        actual: describeShape(m),
      });
    }
  }
  const scale = options.scale ?? 1 / Math.sqrt(hd);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) {
    throw new ParaError('INVALID_ARGUMENT', 'scale must be a finite number', {
      field: 'scale',
      actual: String(scale),
    });
  }
  const softcap = options.softcap ?? null;
  if (
    softcap !== null &&
    !(typeof softcap === 'number' && Number.isFinite(softcap) && softcap > 0)
  ) {
    throw new ParaError('INVALID_ARGUMENT', 'softcap must be a positive number or null', {
      field: 'softcap',
      actual: String(softcap),
    });
  }
  if (
    softcap === null &&
    q.dtype === 'float32' &&
    k.dtype === 'float32' &&
    v.dtype === 'float32' &&
    (mask === null || mask.dtype === 'float32') &&
    q.size > 0 &&
    k.size > 0 &&
    hasFusedKernel(FUSED_KERNELS.attention)
  ) {
    const withGradient = hasFusedKernel(FUSED_KERNELS.attentionGrad);
    if (withGradient || !recordingGradients())
      return fusedAttention(q, k, v, mask, scale, withGradient);
  }
  const nRep = Hq / Hkv;
  return tf.tidy(() => {
    const qg = tf.reshape(q, [B, Hkv, nRep * T, hd]); // [B, Hkv, nRep·T, hd], row r·T + t
    let scores = tf.mul(tf.matMul(qg, k, false, true), scale); // [B, Hkv, nRep·T, S]
    if (softcap !== null) scores = tf.mul(tf.tanh(tf.div(scores, softcap)), softcap); // [B, Hkv, nRep·T, S]
    if (mask !== null) {
      // Broadcast the mask over the nRep query heads of each group instead of tiling it
      // (a Tile per layer was ~a quarter of a wasm training step).
      const grouped = tf.reshape(scores, [B, Hkv, nRep, T, S]); // [B, Hkv, nRep, T, S]
      const m = tf.reshape(mask, [mask.shape[0] as number, 1, 1, T, S]); // [B|1, 1, 1, T, S]
      scores = tf.reshape(tf.add(grouped, m), [B, Hkv, nRep * T, S]); // [B, Hkv, nRep·T, S]
    }
    const probs = tf.softmax(scores, -1); // [B, Hkv, nRep·T, S]
    const out = tf.matMul(probs, v); // [B, Hkv, nRep·T, hd]
    return tf.reshape(out, [B, Hq, T, hd]); // [B, Hq, T, hd]
  });
}
