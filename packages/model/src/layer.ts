/**
 * One LLaMA decoder layer (transformers' `LlamaDecoderLayer`, also Mistral's and Qwen2's):
 *
 *     h  = x + o_proj(attention(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))   n1 = rmsNorm(x)
 *     out = h + down_proj(silu(gate_proj(n2)) ⊙ up_proj(n2))                      n2 = rmsNorm(h)
 *
 * and its relatives, by config flags: Qwen3 and Gemma 3 normalise each head of q and k
 * (`q_norm`/`k_norm`, RMSNorm over head_dim) before RoPE; Gemma 2/3 (`normLayout` 'sandwich') normalise
 * the attention output (post_attention_layernorm) and the MLP's input and output
 * (pre_/post_feedforward_layernorm), use `(1 + w)` RMSNorms, GeGLU (gelu_pytorch_tanh),
 * `query_pre_attn_scalar^-0.5` as the score scale and (Gemma 2) soft-capped scores. A
 * OLMo 2 (`normLayout` 'post') has no input norm and normalises the attention and MLP outputs,
 * with q_norm/k_norm over the whole projection; SmolLM3's `noRopeLayers` skip RoPE. A
 * `sliding_attention` layer uses the call's sliding-window mask and, for Gemma 3, the local
 * RoPE tables.
 *
 * with the adapter sites of `adapter.ts` in between. The same code serves a full forward pass,
 * a prefill (keys and values go into the KV cache) and a decode step (T = 1, attending to the
 * cache).
 *
 * The layer loop (model.ts) runs `decoderLayerPending`, which leaves `out = h + down_proj(...)`
 * undone: the next layer's input norm (or the final norm) does the add with its norm in one op,
 * `addRmsNorm` (ParaAddRmsNorm on webgpu with @para/webgpu and on wasm with @para/blas; `tf.add`
 * then `rmsNorm` elsewhere). Per layer that is one kernel less; the numbers are the same.
 */

import {
  addRmsNorm,
  applyRope,
  attention,
  geglu,
  type KVCache,
  linear,
  rmsNorm,
  scaleRows,
  swiglu,
} from '@para/ops';
import * as tf from '@tensorflow/tfjs-core';
import {
  type AdapterContext,
  type AdapterPlan,
  type AdapterSite,
  type LayerAdapterState,
  layerActive,
} from './adapter';
import type { ModelConfig } from './config';
import type { LayerWeights, Linear } from './weights/weights';

/** What every layer of one call shares. */
export interface LayerCall {
  config: ModelConfig;
  /** RoPE tables `[B, 1, T, hd]`. */
  cos: tf.Tensor;
  sin: tf.Tensor;
  /**
   * `sin` with its first half negated (ropeCosSin's `signedSin`): RoPE with fewer kernel launches.
   * Decode steps pass it; training forwards do not (the slices are faster on wasm there: an
   * update was 10–20% slower with it).
   */
  sinSigned?: tf.Tensor;
  /** Additive attention mask `[B, 1, T, S]` (S = T without a cache). */
  mask: tf.Tensor;
  /**
   * The same with the sliding window applied, for `sliding_attention` layers (required when the
   * config has any).
   */
  slidingMask?: tf.Tensor;
  /** RoPE tables of the sliding layers when they have their own RoPE (Gemma 3's local base). */
  localRope?: { cos: tf.Tensor; sin: tf.Tensor; sinSigned?: tf.Tensor };
  /** The KV cache to append to and attend over (prefill, decode), or null (forward). */
  cache: KVCache | null;
  /** The adapter's hooks for this call, or null (no adapter: no hook is ever called). */
  plan: AdapterPlan<unknown> | null;
}

/**
 * A hidden state `[B, T, d]` left as `residual + delta`: a layer's closing residual add not yet
 * done, so that the norm that reads it next (the next layer's input norm, or the final norm) does
 * the add with it in one op (`addRmsNorm`: ParaAddRmsNorm where the backend has it, one dispatch
 * instead of two on webgpu; `tf.add` then the norm elsewhere, the same numbers).
 */
export interface PendingResidual {
  residual: tf.Tensor; // [B, T, d]
  delta: tf.Tensor; // [B, T, d]
}

/** A layer's input or output: a tensor, or a residual add still to do. */
export type LayerHidden = tf.Tensor | PendingResidual;

/** Whether `x` is a residual add still to do (duck-typed: a tf.Tensor has neither field). */
export function isPending(x: LayerHidden): x is PendingResidual {
  return 'residual' in x && 'delta' in x;
}

/** The tensor a {@link LayerHidden} stands for (the add done, where one is pending). */
export function resolveHidden(x: LayerHidden): tf.Tensor {
  return isPending(x) ? tf.add(x.residual, x.delta) : x; // [B, T, d]
}

/**
 * `x + residual` of a {@link LayerHidden} and its RMSNorm, as `[sum, normed]`: the pending add
 * fused into the norm (`addRmsNorm`), or the plain norm of a tensor.
 */
export function normHidden(
  x: LayerHidden,
  weight: tf.Tensor,
  eps: number,
  options: { unitOffset?: boolean },
): [tf.Tensor, tf.Tensor] {
  if (!isPending(x)) return [x, rmsNorm(x, weight, eps, options)];
  return addRmsNorm(x.residual, x.delta, weight, eps, options); // [B, T, d] both
}

/** `x [B, T, d]` → `[B, T, d]`. Call inside `tf.tidy`. */
export function decoderLayer(
  x: tf.Tensor,
  w: LayerWeights,
  layer: number,
  call: LayerCall,
): tf.Tensor {
  return resolveHidden(decoderLayerPending(x, w, layer, call));
}

/**
 * {@link decoderLayer} with its closing residual add left pending, on an input that may itself
 * be pending (the previous layer's output): the input's add is fused into this layer's input
 * norm. The layer loop chains these, and the final norm does the last layer's add. Every site
 * sees the same tensors as with `decoderLayer` (PARA's pool reads the same normalised input `h`).
 * Call inside `tf.tidy`.
 */
export function decoderLayerPending(
  input: LayerHidden,
  w: LayerWeights,
  layer: number,
  call: LayerCall,
): PendingResidual {
  const { config: c } = call;
  const shapeOf = isPending(input) ? input.residual : input;
  const [B, T] = shapeOf.shape as [number, number, number];
  const plan = layerActive(call.plan, layer) ? call.plan : null;
  const ctx: AdapterContext<unknown> | null =
    plan === null
      ? null
      : {
          phase: plan.phase,
          layer,
          request: plan.request,
          tokenMask: plan.tokenMask,
          state: plan.state.layers[layer] as LayerAdapterState,
          weights: w,
        };
  const rows = ctx?.state ?? null;

  // A projection, then the adapter's transform (if it asked for this site), then the per-row
  // state: y += (x · a) · b (LoRA rows), y ⊙ scale (PARA, IA3, DoRA rows), + bias (DoRA, LoRA biases).
  // `projectParts` stops before the scale so that a later kernel can fold it in.
  type Parts = { y: tf.Tensor; scale?: tf.Tensor; bias?: tf.Tensor };
  const projectParts = (site: AdapterSite & keyof LayerWeights, input: tf.Tensor): Parts => {
    const lin = w[site] as Linear;
    let y = linear(input, lin.weight, lin.bias); // [B, T, out]
    if (plan?.sites.has(site) && plan.adapter.transform !== undefined) {
      y = plan.adapter.transform(ctx as AdapterContext<unknown>, site, y, input); // [B, T, out]
    }
    if (rows === null) return { y };
    const lora = rows.lora(site);
    if (lora !== undefined) y = tf.add(y, tf.matMul(tf.matMul(input, lora.a), lora.b)); // [B, T, out]
    return { y, scale: rows.scale(site), bias: rows.bias(site) }; // scale, bias [B, 1, out]
  };
  const finish = ({ y, scale, bias }: Parts): tf.Tensor => {
    const scaled = scale === undefined ? y : scaleRows(y, scale); // [B, T, out] (ParaScale where registered)
    return bias === undefined ? scaled : tf.add(scaled, bias);
  };
  const project = (site: AdapterSite & keyof LayerWeights, input: tf.Tensor) =>
    finish(projectParts(site, input));
  // The output without its scale, and the scale, where nothing comes after the scale (no bias).
  const deferScale = (p: Parts): [tf.Tensor, tf.Tensor | undefined] =>
    p.bias === undefined ? [p.y, p.scale] : [finish(p), undefined];

  // --- attention -------------------------------------------------------------------------
  const normOpts = { unitOffset: c.normUnitOffset };
  const norm = (t: tf.Tensor, weight: tf.Tensor | null, name: string) => {
    if (weight === null) throw new Error(`internal: layer ${layer} has no ${name}`);
    return rmsNorm(t, weight, c.rmsNormEps, normOpts);
  };
  // OLMo 2 ('post' layout) has no input norm: attention (and PARA's pool) read x itself. Otherwise
  // the previous layer's closing residual add (when pending) runs in the input norm's op.
  let x: tf.Tensor; // [B, T, d]
  let h: tf.Tensor; // [B, T, d]
  if (c.normLayout === 'post') {
    x = resolveHidden(input);
    h = x;
  } else {
    if (w.inputLayernorm === null)
      throw new Error(`internal: layer ${layer} has no input_layernorm`);
    [x, h] = normHidden(input, w.inputLayernorm, c.rmsNormEps, normOpts);
  }
  if (plan?.adapter.layerInput !== undefined)
    plan.adapter.layerInput(ctx as AdapterContext<unknown>, h);

  const sliding = c.layerTypes[layer] === 'sliding_attention';
  const mask = sliding ? call.slidingMask : call.mask;
  if (mask === undefined) throw new Error('internal: a sliding layer without a sliding mask');
  const rope = sliding && call.localRope !== undefined ? call.localRope : call;

  // [B, T, n·hd] → [B, n, T, hd]. With T = 1 (a decode step) the transpose moves no data, so a
  // reshape does it without a kernel launch (launches dominate decode on GPU backends).
  const heads = (t: tf.Tensor, n: number) =>
    T === 1
      ? tf.reshape(t, [B, n, 1, c.headDim])
      : tf.transpose(tf.reshape(t, [B, T, n, c.headDim]), [0, 2, 1, 3]);
  const rotary = !c.noRopeLayers.includes(layer);
  let qh: tf.Tensor;
  let kh: tf.Tensor;
  let vh: tf.Tensor;
  if (
    call.cache !== null &&
    c.qkNorm === 'none' &&
    rotary &&
    (rope.cos.shape[3] as number) === c.headDim
  ) {
    // With a cache: RoPE of q and k, the q/k/v scales and the cache write in one call
    // (`appendRotated`: one dispatch on webgpu with @para/webgpu; the same ops as below elsewhere).
    const [q, qScale] = deferScale(projectParts('q_proj', h)); // [B, T, Hq·hd]
    const [k, kScale] = deferScale(projectParts('k_proj', h)); // [B, T, Hkv·hd]
    const [v, vScale] = deferScale(projectParts('v_proj', h)); // [B, T, Hkv·hd]
    const scales: { q?: tf.Tensor; k?: tf.Tensor; v?: tf.Tensor } = {};
    if (qScale !== undefined) scales.q = qScale;
    if (kScale !== undefined) scales.k = kScale;
    if (vScale !== undefined) scales.v = vScale;
    ({
      q: qh,
      k: kh,
      v: vh,
    } = call.cache.appendRotated(
      layer,
      heads(q, c.numHeads),
      heads(k, c.numKvHeads),
      heads(v, c.numKvHeads),
      rope,
      scales,
    )); // q [B, Hq, T, hd], k/v [B, Hkv, S, hd]
  } else {
    let q = project('q_proj', h); // [B, T, Hq·hd]
    let k = project('k_proj', h); // [B, T, Hkv·hd]
    if (c.qkNorm === 'projection') {
      q = norm(q, w.qNorm, 'q_norm'); // [B, T, Hq·hd], over the whole projection (OLMo 2)
      k = norm(k, w.kNorm, 'k_norm'); // [B, T, Hkv·hd]
    }
    const v = project('v_proj', h); // [B, T, Hkv·hd]
    qh = heads(q, c.numHeads); // [B, Hq, T, hd]
    kh = heads(k, c.numKvHeads); // [B, Hkv, T, hd]
    if (c.qkNorm === 'head') {
      qh = norm(qh, w.qNorm, 'q_norm'); // [B, Hq, T, hd], per head over hd
      kh = norm(kh, w.kNorm, 'k_norm'); // [B, Hkv, T, hd]
    }
    if (rotary) {
      const rot = rope.cos.shape[3] as number; // rotary dims (Phi-3's partial_rotary_factor)
      const rotate = (t: tf.Tensor) => {
        if (rot === c.headDim) return applyRope(t, rope.cos, rope.sin, rope.sinSigned);
        const [b, n, tt] = t.shape as [number, number, number, number];
        const r = applyRope(
          tf.slice(t, [0, 0, 0, 0], [b, n, tt, rot]),
          rope.cos,
          rope.sin,
          rope.sinSigned,
        );
        return tf.concat([r, tf.slice(t, [0, 0, 0, rot], [b, n, tt, c.headDim - rot])], 3);
      };
      qh = rotate(qh); // [B, Hq, T, hd]
      kh = rotate(kh); // [B, Hkv, T, hd]
    } // else SmolLM3's no-RoPE layer: q and k carry no position
    vh = heads(v, c.numKvHeads); // [B, Hkv, T, hd]
    if (call.cache !== null) ({ k: kh, v: vh } = call.cache.append(layer, kh, vh)); // [B, Hkv, S, hd]
  }
  const att = attention(qh, kh, vh, mask, {
    scale: c.queryPreAttnScalar === null ? undefined : c.queryPreAttnScalar ** -0.5,
    softcap: c.attnLogitSoftcapping,
  }); // [B, Hq, T, hd]
  const merged = tf.reshape(T === 1 ? att : tf.transpose(att, [0, 2, 1, 3]), [
    B,
    T,
    c.numHeads * c.headDim,
  ]); // [B, T, Hq·hd]
  let attnOut = project('o_proj', merged); // [B, T, d]
  if (c.normLayout !== 'pre')
    attnOut = norm(attnOut, w.postAttentionLayernorm, 'post_attention_layernorm');
  // The residual add and the norm after it in one op (ParaAddRmsNorm where the backend has it).
  let x1: tf.Tensor; // [B, T, d]
  let h2: tf.Tensor; // [B, T, d]
  if (c.normLayout === 'post') {
    x1 = tf.add(x, attnOut);
    h2 = x1;
  } else {
    const [weight, name] =
      c.normLayout === 'sandwich'
        ? [w.preFeedforwardLayernorm, 'pre_feedforward_layernorm']
        : [w.postAttentionLayernorm, 'post_attention_layernorm'];
    if (weight === null) throw new Error(`internal: layer ${layer} has no ${name}`);
    [x1, h2] = addRmsNorm(x, attnOut, weight, c.rmsNormEps, normOpts);
  }

  // --- MLP (SwiGLU, or Gemma's GeGLU) --------------------------------------------------------
  const gate = project('gate_proj', h2); // [B, T, d_ff]
  let m: tf.Tensor; // [B, T, d_ff]
  const downTransform =
    plan?.sites.has('down_proj.input') === true && plan.adapter.transform !== undefined;
  const mScale = rows?.scale('down_proj.input'); // [B, 1, d_ff]
  let mScaled = false;
  if (c.hiddenAct === 'gelu_pytorch_tanh') {
    m = geglu(gate, project('up_proj', h2));
  } else {
    // PARA's up scale (and IA3's down_proj-input scale, when no transform comes between) fold
    // into the gate (ParaSwiGluScaled where the backend has it; the same ops otherwise).
    const [up, upScale] = deferScale(projectParts('up_proj', h2)); // [B, T, d_ff]
    const scales: { upScale?: tf.Tensor; outScale?: tf.Tensor } = {};
    if (upScale !== undefined) scales.upScale = upScale;
    if (mScale !== undefined && !downTransform) {
      scales.outScale = mScale;
      mScaled = true;
    }
    m = swiglu(gate, up, scales);
  }
  if (downTransform) {
    m = plan?.adapter.transform?.(
      ctx as AdapterContext<unknown>,
      'down_proj.input',
      m,
      m,
    ) as tf.Tensor;
  }
  if (mScale !== undefined && !mScaled) m = scaleRows(m, mScale); // [B, T, d_ff]
  let mlpOut = project('down_proj', m); // [B, T, d]
  if (c.normLayout !== 'pre')
    mlpOut = norm(mlpOut, w.postFeedforwardLayernorm, 'post_feedforward_layernorm');
  return { residual: x1, delta: mlpOut }; // x1 + mlpOut: [B, T, d]
}
