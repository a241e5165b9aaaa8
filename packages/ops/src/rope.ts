import { ParaError } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS, fusedRope, hasFusedKernel } from './fused';
import { checkMatrix, checkShape } from './shapes';

/**
 * Rotary position embeddings (RoFormer, Su et al. 2021) in the Hugging Face convention
 * (`modeling_llama.rotate_half`): the head dimension is split into two halves rather than
 * interleaved pairs, so coordinate `i` rotates with coordinate `i + hd/2` at frequency
 * `inv_freq[i]`:
 *
 *     inv_freq[i] = 1 / theta^(2i / hd)                       i = 0 .. hd/2 - 1
 *     angle[p, j] = p · inv_freq[j mod hd/2]                  j = 0 .. hd - 1
 *     rope(x)     = x ⊙ cos(angle) + rotate_half(x) ⊙ sin(angle)
 *     rotate_half([x₁, x₂]) = [-x₂, x₁]
 *
 * Checkpoints converted to the HF layout (every HF Llama/Mistral/Qwen2) expect exactly this.
 */

/** `rope_scaling` as it appears in a Hugging Face `config.json` (`type` is the legacy key). */
export interface RopeScalingConfig {
  rope_type?: string;
  type?: string;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
  /** yarn: the cos/sin scale (default from `factor`, `mscale`, `mscale_all_dim`). */
  attention_factor?: number;
  beta_fast?: number;
  beta_slow?: number;
  mscale?: number;
  mscale_all_dim?: number;
  /** yarn: round the correction range to whole dimensions (default true). */
  truncate?: boolean;
  /** longrope (Phi-3): per-frequency divisors `[hd/2]` for short and long sequences. */
  short_factor?: number[];
  long_factor?: number[];
  [key: string]: unknown;
}

export interface RopeOptions {
  /** Per-head dimension `hd` (even). HF: `head_dim`, else `hidden_size / num_attention_heads`. */
  headDim: number;
  /** HF `rope_theta` (default 10000). */
  theta?: number;
  /** HF `rope_scaling`; `null`/absent or type `default` means none. */
  scaling?: RopeScalingConfig | null;
  /**
   * `dynamic` (NTK) scaling only: the sequence length of the call (largest position + 1) and
   * the model's `max_position_embeddings`. Up to maxPositions (or without seqLen) the
   * frequencies are the default ones; beyond, theta grows with seqLen.
   */
  seqLen?: number;
  maxPositions?: number;
}

const f32 = Math.fround;

function configError(field: string, message: string, expected: string, actual: unknown): ParaError {
  return new ParaError('INVALID_CONFIG', message, {
    field,
    expected,
    actual: JSON.stringify(actual) ?? String(actual),
  });
}

function positiveNumber(scaling: RopeScalingConfig, key: string): number {
  const v = scaling[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw configError(
      `rope_scaling.${key}`,
      `rope_scaling needs a positive "${key}"`,
      'a positive number',
      v,
    );
  }
  return v;
}

/**
 * The rotary inverse frequencies `[hd/2]`, exactly as transformers' `ROPE_INIT_FUNCTIONS`:
 * - `default`: `1 / theta^(2i/hd)`;
 * - `linear` (position interpolation): `default / factor`;
 * - `llama3` (`_compute_llama3_parameters`): wavelengths `2π / f` longer than
 *   `original_max_position_embeddings / low_freq_factor` are divided by `factor`, those shorter
 *   than `original_max_position_embeddings / high_freq_factor` kept, and those in between
 *   interpolated with `s = (orig / wavelen - low) / (high - low)`:
 *   `f' = (1 - s) · f / factor + s · f`.
 *
 * Each step is rounded to float32 in torch's order so the values match PyTorch's bit for bit
 * up to `pow`'s last-ulp rounding. `yarn` (transformers' `_compute_yarn_parameters`) blends
 * interpolated and extrapolated frequencies; its cos/sin scale is {@link ropeAttentionScaling}.
 * `dynamic` (NTK-aware, transformers' `_compute_dynamic_ntk_parameters`) raises theta once the
 * call's `seqLen` passes `maxPositions`; `longrope` (Phi-3) divides by `long_factor` once
 * `seqLen` passes `original_max_position_embeddings`, else by `short_factor`. Other types (`longrope`, ...) throw
 * `UNSUPPORTED` naming `rope_scaling.rope_type`; bad fields throw `INVALID_CONFIG`.
 */
export function ropeInvFreq(options: RopeOptions): Float32Array {
  const { headDim, scaling } = options;
  let theta = options.theta ?? 10000;
  if (
    typeof headDim !== 'number' ||
    !Number.isInteger(headDim) ||
    headDim <= 0 ||
    headDim % 2 !== 0
  ) {
    throw configError(
      'head_dim',
      'RoPE needs an even, positive head dimension',
      'a positive even integer',
      headDim,
    );
  }
  if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0) {
    throw configError(
      'rope_theta',
      'rope_theta must be a positive number',
      'a positive number',
      theta,
    );
  }
  const half = headDim / 2;
  const dynamicType = scaling?.rope_type ?? scaling?.type;
  if (dynamicType === 'dynamic') {
    // transformers' _compute_dynamic_ntk_parameters, float32 steps in torch's order (seq_len is
    // a tensor there, so the base is computed in float32):
    //   base' = base · ((factor · seq_len / max_pos) − (factor − 1)) ^ (dim / (dim − 2))
    const factor = positiveNumber(scaling as RopeScalingConfig, 'factor');
    const maxPos = options.maxPositions;
    if (options.seqLen === undefined) {
      // No call length: transformers' init (seq_len = max_position_embeddings), the default.
    } else if (maxPos === undefined || !(Number.isInteger(maxPos) && maxPos > 0)) {
      throw configError(
        'max_position_embeddings',
        'dynamic RoPE scaling needs max_position_embeddings',
        'a positive integer',
        maxPos,
      );
    } else if (options.seqLen > maxPos) {
      const seqLen = options.seqLen;
      const ratio = f32(f32(f32(f32(factor) * seqLen) / maxPos) - f32(factor - 1));
      theta = f32(f32(theta) * f32(ratio ** (headDim / (headDim - 2))));
    }
  }
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    // torch: arange(0, dim, 2).float() / dim ; base ** that ; 1.0 / that  (all float32)
    const exponent = f32((2 * i) / headDim);
    inv[i] = f32(1 / f32(theta ** exponent));
  }
  if (scaling === undefined || scaling === null) return inv;
  if (typeof scaling !== 'object') {
    throw configError(
      'rope_scaling',
      'rope_scaling must be an object or null',
      'an object',
      scaling,
    );
  }
  const type = scaling.rope_type ?? scaling.type ?? 'default';
  switch (type) {
    case 'default':
    case 'dynamic': // theta adjusted above
      return inv;
    case 'linear': {
      const factor = f32(positiveNumber(scaling, 'factor'));
      for (let i = 0; i < half; i++) inv[i] = f32((inv[i] as number) / factor);
      return inv;
    }
    case 'llama3': {
      const factor = positiveNumber(scaling, 'factor');
      const low = positiveNumber(scaling, 'low_freq_factor');
      const high = positiveNumber(scaling, 'high_freq_factor');
      const orig = positiveNumber(scaling, 'original_max_position_embeddings');
      if (high === low) {
        throw configError(
          'rope_scaling.high_freq_factor',
          'llama3 rope_scaling needs high_freq_factor ≠ low_freq_factor',
          `a number other than ${low}`,
          high,
        );
      }
      const lowFreqWavelen = f32(orig / low);
      const highFreqWavelen = f32(orig / high);
      const factor32 = f32(factor);
      const twoPi = f32(2 * Math.PI);
      const highMinusLow = f32(high - low);
      for (let i = 0; i < half; i++) {
        const f = inv[i] as number;
        // torch: 2 * math.pi / inv_freq  ==  reciprocal(inv_freq) * (2π)
        const wavelen = f32(f32(1 / f) * twoPi);
        let g = wavelen > lowFreqWavelen ? f32(f / factor32) : f;
        const isMedium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
        if (isMedium) {
          const smooth = f32(f32(f32(f32(1 / wavelen) * f32(orig)) - f32(low)) / highMinusLow);
          g = f32(f32(f32(f32(1 - smooth) * g) / factor32) + f32(smooth * g));
        }
        inv[i] = g;
      }
      return inv;
    }
    case 'yarn': {
      // transformers' _compute_yarn_parameters: frequencies between interpolation (÷ factor)
      // and extrapolation, ramped over the dimensions between the beta_fast / beta_slow
      // correction points (Peng et al. 2023). Float32 steps in torch's order.
      const factor = positiveNumber(scaling, 'factor');
      const orig = positiveNumber(scaling, 'original_max_position_embeddings');
      const betaFast = optionalPositive(scaling, 'beta_fast') ?? 32;
      const betaSlow = optionalPositive(scaling, 'beta_slow') ?? 1;
      const truncate = scaling.truncate ?? true;
      const correction = (rot: number) =>
        (headDim * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(theta));
      let low = correction(betaFast);
      let high = correction(betaSlow);
      if (truncate) {
        low = Math.floor(low);
        high = Math.ceil(high);
      }
      low = Math.max(low, 0);
      high = Math.min(high, headDim - 1);
      if (low === high) high += 0.001; // transformers: prevents a division by zero
      const factor32 = f32(factor);
      const low32 = f32(low);
      const span32 = f32(high - low);
      for (let i = 0; i < half; i++) {
        const pos = f32(theta ** f32((2 * i) / headDim)); // pos_freqs
        const extrapolation = f32(1 / pos);
        const interpolation = f32(1 / f32(factor32 * pos));
        const ramp = Math.min(1, Math.max(0, f32(f32(i - low32) / span32)));
        const extra = f32(1 - ramp); // inv_freq_extrapolation_factor
        inv[i] = f32(f32(interpolation * f32(1 - extra)) + f32(extrapolation * extra));
      }
      return inv;
    }
    case 'longrope': {
      // transformers' _compute_longrope_parameters: inv_freq = 1 / (ext · base^(2i/dim)), ext
      // the long factors when the call's length passes original_max_position_embeddings,
      // else the short ones.
      const orig = positiveNumber(scaling, 'original_max_position_embeddings');
      const key =
        options.seqLen !== undefined && options.seqLen > orig ? 'long_factor' : 'short_factor';
      const ext = scaling[key];
      if (
        !Array.isArray(ext) ||
        ext.length !== half ||
        !ext.every((v) => typeof v === 'number' && Number.isFinite(v) && v > 0)
      ) {
        throw configError(
          `rope_scaling.${key}`,
          `longrope needs ${key} with one positive number per frequency`,
          `${half} positive numbers`,
          ext,
        );
      }
      for (let i = 0; i < half; i++) {
        const pow = f32(theta ** f32((2 * i) / headDim));
        inv[i] = f32(1 / f32(f32(ext[i] as number) * pow));
      }
      return inv;
    }
    default:
      throw new ParaError('UNSUPPORTED', `rope_scaling type "${String(type)}" is not supported`, {
        field: 'rope_scaling.rope_type',
        expected: '"default", "linear", "llama3", "yarn", "dynamic" or "longrope"',
        actual: JSON.stringify(type),
      });
  }
}

function optionalPositive(scaling: RopeScalingConfig, key: string): number | undefined {
  const v = scaling[key];
  if (v === undefined || v === null) return undefined;
  return positiveNumber(scaling, key);
}

/**
 * The factor transformers multiplies cos and sin by (`attention_scaling`): 1 except for `yarn`,
 * where it is `attention_factor`, else `get_mscale(factor, mscale) / get_mscale(factor,
 * mscale_all_dim)` when both are set, else `0.1 · ln(factor) + 1` (1 for factor ≤ 1).
 * Pass it to {@link ropeCosSin} as `scale`.
 */
export function ropeAttentionScaling(
  scaling: RopeScalingConfig | null | undefined,
  maxPositions?: number,
): number {
  if (scaling === undefined || scaling === null) return 1;
  const type = scaling.rope_type ?? scaling.type ?? 'default';
  if (type === 'longrope') {
    // sqrt(1 + ln(factor) / ln(original)), factor defaulting to max_position / original.
    const given = optionalPositive(scaling, 'attention_factor');
    if (given !== undefined) return given;
    const orig = positiveNumber(scaling, 'original_max_position_embeddings');
    const factor =
      optionalPositive(scaling, 'factor') ?? (maxPositions === undefined ? 1 : maxPositions / orig);
    return factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(orig));
  }
  if (type !== 'yarn') return 1;
  const given = optionalPositive(scaling, 'attention_factor');
  if (given !== undefined) return given;
  const factor = positiveNumber(scaling, 'factor');
  const mscale = (s: number, m = 1) => (s <= 1 ? 1 : 0.1 * m * Math.log(s) + 1);
  const m = scaling.mscale;
  const mAll = scaling.mscale_all_dim;
  if (typeof m === 'number' && m !== 0 && typeof mAll === 'number' && mAll !== 0)
    return mscale(factor, m) / mscale(factor, mAll);
  return mscale(factor);
}

export interface RopeCosSin {
  /** `cos(angle)`, `[B, 1, T, hd]` (broadcasts over heads). */
  cos: tf.Tensor;
  /** `sin(angle)`, `[B, 1, T, hd]`. */
  sin: tf.Tensor;
  /**
   * Only with `{ signedSin: true }`: `sin` with its first half negated, `[B, 1, T, hd]`. With it
   * {@link applyRope} replaces `rotate_half` (slice, slice, neg, concat) by one half swap (a
   * Reverse) — 3 fewer kernel launches per call, which is what decode costs on GPU backends.
   * Same values bit for bit. (In training the slices are faster on wasm: leave it off there.)
   */
  sinSigned?: tf.Tensor;
}

export interface RopeCosSinOptions {
  /** Also return `sinSigned` (default false). */
  signedSin?: boolean;
  /** Multiply cos and sin by this (yarn's attention scaling, {@link ropeAttentionScaling}); default 1. */
  scale?: number;
}

function invFreqArray(invFreq: Float32Array | number[]): Float32Array {
  if (!(invFreq instanceof Float32Array) && !Array.isArray(invFreq)) {
    throw new ParaError(
      'INVALID_ARGUMENT',
      'invFreq must be a Float32Array or number[] (from ropeInvFreq)',
      { field: 'invFreq' },
    );
  }
  if (invFreq.length === 0) {
    throw new ParaError('SHAPE_MISMATCH', 'invFreq is empty', {
      field: 'invFreq',
      expected: '[hd/2] with hd/2 ≥ 1',
      actual: '[0]',
    });
  }
  return invFreq instanceof Float32Array ? invFreq : Float32Array.from(invFreq);
}

/**
 * cos/sin tables for the given positions: `angle[b, t, j] = positions[b][t] · invFreq[j mod hd/2]`,
 * returned as `[B, 1, T, hd]` (hd = 2 · invFreq.length), ready for {@link applyRope}.
 *
 * Positions are per row (`[B, T]`), so left-padded rows and rows of different lengths each
 * get their own positions (see `positionIdsFromMask`).
 * - `positions: number[][]` (recommended): computed on the host in float64 from the float32
 *   angle, like PyTorch's float32 `cos`, so it is exact on every backend (GPU `cos` of large
 *   angles is not).
 * - `positions: tf.Tensor` (int32 `[B, T]`): computed on the device, with the angle reduced
 *   modulo 2π first (error ~ |angle| · 2⁻²⁴, the float32 angle's own rounding).
 */
export function ropeCosSin(
  positions: tf.Tensor | number[][],
  invFreq: Float32Array | number[],
  options: RopeCosSinOptions = {},
): RopeCosSin {
  const signed = options.signedSin === true;
  const scale = options.scale ?? 1;
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) {
    throw new ParaError('INVALID_ARGUMENT', 'scale must be a positive number', {
      field: 'scale',
      actual: String(scale),
    });
  }
  const scale32 = f32(scale);
  const inv = invFreqArray(invFreq);
  const half = inv.length;
  const hd = 2 * half;
  if (Array.isArray(positions)) {
    const [B, T] = checkMatrix(positions, 'positions');
    const cos = new Float32Array(B * T * hd);
    const sin = new Float32Array(B * T * hd);
    const sinSigned = signed ? new Float32Array(B * T * hd) : null;
    for (let b = 0; b < B; b++) {
      const row = positions[b] as number[];
      for (let t = 0; t < T; t++) {
        const p = row[t] as number;
        if (!Number.isInteger(p) || p < 0) {
          throw new ParaError('INVALID_ARGUMENT', 'positions must be non-negative integers', {
            field: `positions[${b}][${t}]`,
            actual: String(p),
          });
        }
        const base = (b * T + t) * hd;
        for (let j = 0; j < half; j++) {
          const angle = f32(p * (inv[j] as number)); // float32, as HF's float32 matmul
          // torch: cos in float32, then × attention_scaling in float32
          const c = scale === 1 ? Math.cos(angle) : f32(f32(Math.cos(angle)) * scale32);
          const s = scale === 1 ? Math.sin(angle) : f32(f32(Math.sin(angle)) * scale32);
          cos[base + j] = c;
          cos[base + j + half] = c;
          sin[base + j] = s;
          sin[base + j + half] = s;
          if (sinSigned !== null) {
            sinSigned[base + j] = -s;
            sinSigned[base + j + half] = s;
          }
        }
      }
    }
    const out: RopeCosSin = {
      cos: tf.tensor4d(cos, [B, 1, T, hd]),
      sin: tf.tensor4d(sin, [B, 1, T, hd]),
    };
    if (sinSigned !== null) out.sinSigned = tf.tensor4d(sinSigned, [B, 1, T, hd]);
    return out;
  }
  const [B, T] = checkShape(positions, 'positions', ['B', 'T']) as [number, number];
  // (tf.tidy's container type wants an index signature; the object holds only tensors.)
  return tf.tidy((): tf.TensorContainerObject & RopeCosSin => {
    const pos = tf.reshape(tf.cast(positions, 'float32'), [B, T, 1]); // [B, T, 1]
    const freqs = tf.mul(pos, tf.tensor1d(inv)); // [B, T, hd/2]
    // Range reduction (GPU sin/cos are only accurate near [-π, π]), Cody–Waite style: 2π =
    // C1 + C2 with C1 = 6.28125 (8 significant bits), so n · C1 is exact in float32 for any
    // n < 2¹⁶ turns and the reduced angle keeps the float32 angle's own accuracy.
    const turns = tf.floor(tf.div(freqs, 2 * Math.PI)); // [B, T, hd/2]
    const reduced = tf.sub(tf.sub(freqs, tf.mul(turns, TWO_PI_HI)), tf.mul(turns, TWO_PI_LO)); // [B, T, hd/2]
    const emb = tf.concat([reduced, reduced], -1); // [B, T, hd]
    const scaled = (t: tf.Tensor) => (scale === 1 ? t : tf.mul(t, scale32));
    const out: tf.TensorContainerObject & RopeCosSin = {
      cos: tf.reshape(scaled(tf.cos(emb)), [B, 1, T, hd]), // [B, 1, T, hd]
      sin: tf.reshape(scaled(tf.sin(emb)), [B, 1, T, hd]), // [B, 1, T, hd]
    };
    if (signed) {
      const halfSin = scaled(tf.sin(reduced)); // [B, T, hd/2]
      out.sinSigned = tf.reshape(tf.concat([tf.neg(halfSin), halfSin], -1), [B, 1, T, hd]); // [B, 1, T, hd]
    }
    return out;
  });
}

const TWO_PI_HI = 6.28125;
const TWO_PI_LO = 2 * Math.PI - TWO_PI_HI;

/** `rotate_half([x₁, x₂]) = [-x₂, x₁]` over the last axis (halves, not interleaved). */
export function rotateHalf(x: tf.Tensor): tf.Tensor {
  const hd = x.shape[x.rank - 1] as number;
  return tf.tidy(() => {
    const begin = x.shape.map(() => 0);
    const size = x.shape.slice();
    size[x.rank - 1] = hd / 2;
    const x1 = tf.slice(x, begin, size); // [..., hd/2]
    const begin2 = begin.slice();
    begin2[x.rank - 1] = hd / 2;
    const x2 = tf.slice(x, begin2, size); // [..., hd/2]
    return tf.concat([tf.neg(x2), x1], -1); // [..., hd]
  });
}

/** `[x₁, x₂] → [x₂, x₁]` over the last axis: one Reverse over a `[…, 2, hd/2]` view. */
export function swapHalves(x: tf.Tensor): tf.Tensor {
  const hd = x.shape[x.rank - 1] as number;
  const lead = x.size / hd;
  return tf.tidy(() => tf.reshape(tf.reverse(tf.reshape(x, [lead, 2, hd / 2]), 1), x.shape)); // [..., hd]
}

/**
 * Apply RoPE to queries or keys: `x ⊙ cos + rotate_half(x) ⊙ sin`, HF's `apply_rotary_pos_emb`.
 * `x` is `[B, H, T, hd]`; `cos`/`sin` are `[B or 1, 1, T, hd]` from {@link ropeCosSin}. Given
 * `sinSigned` (also from ropeCosSin) it computes the same values as `x ⊙ cos + swap_halves(x) ⊙
 * sinSigned`, with fewer kernels. Differentiable in `x`.
 *
 * Where the backend registers the fused kernel `ParaRope` (see `fused.ts`; @para/blas does on
 * wasm) float32 inputs run as one kernel (sinSigned is then not needed), its gradient as one more.
 */
export function applyRope(
  x: tf.Tensor,
  cos: tf.Tensor,
  sin: tf.Tensor,
  sinSigned?: tf.Tensor,
): tf.Tensor {
  const [B, , T, hd] = checkShape(x, 'x', ['B', 'H', 'T', 'hd']) as [
    number,
    number,
    number,
    number,
  ];
  if (hd % 2 !== 0) {
    throw new ParaError('SHAPE_MISMATCH', 'RoPE needs an even head dimension', {
      field: 'x',
      expected: '[B, H, T, hd] with hd even',
      actual: `[${x.shape.join(', ')}]`,
    });
  }
  const cosShape = checkShape(cos, 'cos', [null, 1, T, hd]);
  if (cosShape[0] !== B && cosShape[0] !== 1) {
    throw new ParaError('SHAPE_MISMATCH', 'cos batch does not match x', {
      field: 'cos',
      expected: `[${B} or 1, 1, ${T}, ${hd}]`,
      actual: `[${cosShape.join(', ')}]`,
    });
  }
  checkShape(sin, 'sin', cosShape);
  if (
    x.dtype === 'float32' &&
    cos.dtype === 'float32' &&
    sin.dtype === 'float32' &&
    x.size > 0 &&
    hasFusedKernel(FUSED_KERNELS.rope)
  ) {
    return fusedRope(x, cos, sin); // [B, H, T, hd]
  }
  if (sinSigned !== undefined) {
    checkShape(sinSigned, 'sinSigned', cosShape);
    return tf.tidy(() => tf.add(tf.mul(x, cos), tf.mul(swapHalves(x), sinSigned))); // [B, H, T, hd]
  }
  return tf.tidy(() => tf.add(tf.mul(x, cos), tf.mul(rotateHalf(x), sin))); // [B, H, T, hd]
}
