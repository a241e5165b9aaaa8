/**
 * The model's weights in memory, and their Hugging Face tensor names.
 *
 * Linear weights stay in HF's `nn.Linear` layout, `[out, in]`, and are applied with a
 * transposed-B matmul (`@para/ops` `linear`), so loading and saving never transpose and an
 * adapter sees the same matrices PEFT does. Everything is float32 in memory whatever the
 * checkpoint's storage dtype.
 */

import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from '../config';

/** One `nn.Linear`. */
export interface Linear {
  /** [out, in] */
  weight: tf.Tensor;
  /** [out], or null when the config has no bias here */
  bias: tf.Tensor | null;
}

/** The seven projections of a decoder layer, by their HF module names. */
export type ProjectionName =
  | 'q_proj'
  | 'k_proj'
  | 'v_proj'
  | 'o_proj'
  | 'gate_proj'
  | 'up_proj'
  | 'down_proj';
export const PROJECTIONS: readonly ProjectionName[] = [
  'q_proj',
  'k_proj',
  'v_proj',
  'o_proj',
  'gate_proj',
  'up_proj',
  'down_proj',
];

export interface LayerWeights {
  /** [d]; null for OLMo 2 (normLayout 'post': no input norm) */
  inputLayernorm: tf.Tensor | null;
  /** [nHeads·hd, d] */
  q_proj: Linear;
  /** [nKv·hd, d] */
  k_proj: Linear;
  /** [nKv·hd, d] */
  v_proj: Linear;
  /** [d, nHeads·hd] */
  o_proj: Linear;
  /** [d] */
  postAttentionLayernorm: tf.Tensor;
  /** RMSNorm of q before RoPE: [hd] per head (config.qkNorm 'head': Qwen3, Gemma 3), [Hq·hd] ('projection': OLMo 2), else null */
  qNorm: tf.Tensor | null;
  /** RMSNorm of k before RoPE: [hd] or [Hkv·hd], else null */
  kNorm: tf.Tensor | null;
  /** [d] Gemma's norm before the MLP (config.sandwichNorms; then postAttentionLayernorm normalises the attention output), else null */
  preFeedforwardLayernorm: tf.Tensor | null;
  /** [d] Gemma's norm of the MLP output, else null */
  postFeedforwardLayernorm: tf.Tensor | null;
  /** [d_ff, d] */
  gate_proj: Linear;
  /** [d_ff, d] */
  up_proj: Linear;
  /** [d, d_ff] */
  down_proj: Linear;
}

export interface ModelWeights {
  /** [V, d] */
  embedTokens: tf.Tensor;
  layers: LayerWeights[];
  /** [d] final norm */
  norm: tf.Tensor;
  /** [V, d]; the very same tensor as embedTokens when the config ties them */
  lmHead: tf.Tensor;
}

/** A tensor the checkpoint must hold: HF name and shape. */
export interface TensorSpec {
  name: string;
  shape: number[];
}

const MODULE_OF: Record<ProjectionName, 'self_attn' | 'mlp'> = {
  q_proj: 'self_attn',
  k_proj: 'self_attn',
  v_proj: 'self_attn',
  o_proj: 'self_attn',
  gate_proj: 'mlp',
  up_proj: 'mlp',
  down_proj: 'mlp',
};

/** [out, in] of each projection. */
export function projectionShape(c: ModelConfig, p: ProjectionName): [number, number] {
  const d = c.hiddenSize;
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  switch (p) {
    case 'q_proj':
      return [q, d];
    case 'k_proj':
    case 'v_proj':
      return [kv, d];
    case 'o_proj':
      return [d, q];
    case 'gate_proj':
    case 'up_proj':
      return [c.intermediateSize, d];
    case 'down_proj':
      return [d, c.intermediateSize];
  }
}

export function hasBias(c: ModelConfig, p: ProjectionName): boolean {
  switch (p) {
    case 'q_proj':
      return c.bias.q;
    case 'k_proj':
      return c.bias.k;
    case 'v_proj':
      return c.bias.v;
    case 'o_proj':
      return c.bias.o;
    default:
      return c.bias.mlp;
  }
}

/** HF name of a projection's weight (or bias): `model.layers.{i}.self_attn.q_proj.weight`. */
export function projectionName(
  layer: number,
  p: ProjectionName,
  what: 'weight' | 'bias' = 'weight',
): string {
  return `model.layers.${layer}.${MODULE_OF[p]}.${p}.${what}`;
}

type NormKey =
  | 'inputLayernorm'
  | 'qNorm'
  | 'kNorm'
  | 'postAttentionLayernorm'
  | 'preFeedforwardLayernorm'
  | 'postFeedforwardLayernorm';

/** A layer's norms the config has, by HF name suffix (input_layernorm first, as HF lists it). */
function layerNormSpecs(c: ModelConfig): { key: NormKey; suffix: string; dim: number }[] {
  const d = c.hiddenSize;
  const out: ReturnType<typeof layerNormSpecs> = [];
  if (c.normLayout !== 'post')
    out.push({ key: 'inputLayernorm', suffix: 'input_layernorm.weight', dim: d });
  if (c.qkNorm !== 'none') {
    const q = c.qkNorm === 'head' ? c.headDim : c.numHeads * c.headDim;
    const k = c.qkNorm === 'head' ? c.headDim : c.numKvHeads * c.headDim;
    out.push({ key: 'qNorm', suffix: 'self_attn.q_norm.weight', dim: q });
    out.push({ key: 'kNorm', suffix: 'self_attn.k_norm.weight', dim: k });
  }
  out.push({ key: 'postAttentionLayernorm', suffix: 'post_attention_layernorm.weight', dim: d });
  if (c.normLayout === 'sandwich')
    out.push({
      key: 'preFeedforwardLayernorm',
      suffix: 'pre_feedforward_layernorm.weight',
      dim: d,
    });
  if (c.normLayout !== 'pre')
    out.push({
      key: 'postFeedforwardLayernorm',
      suffix: 'post_feedforward_layernorm.weight',
      dim: d,
    });
  return out;
}

/** Every tensor a checkpoint of this config holds, in HF's module order. */
export function tensorSpecs(c: ModelConfig): TensorSpec[] {
  const d = c.hiddenSize;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, d] }];
  const norms = layerNormSpecs(c);
  for (let i = 0; i < c.numLayers; i++) {
    const norm = (n: { suffix: string; dim: number }) =>
      specs.push({ name: `model.layers.${i}.${n.suffix}`, shape: [n.dim] });
    for (const n of norms) if (n.key === 'inputLayernorm') norm(n);
    for (const p of PROJECTIONS) {
      const [out, inp] = projectionShape(c, p);
      specs.push({ name: projectionName(i, p), shape: [out, inp] });
      if (hasBias(c, p)) specs.push({ name: projectionName(i, p, 'bias'), shape: [out] });
    }
    for (const n of norms) if (n.key !== 'inputLayernorm') norm(n);
  }
  specs.push({ name: 'model.norm.weight', shape: [d] });
  if (!c.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', shape: [c.vocabSize, d] });
  return specs;
}

/** The weights by HF name (lm_head omitted when tied), for saving or inspection. */
export function namedWeights(c: ModelConfig, w: ModelWeights): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = { 'model.embed_tokens.weight': w.embedTokens };
  const norms = layerNormSpecs(c);
  w.layers.forEach((l, i) => {
    const norm = (n: { key: NormKey; suffix: string }) => {
      const t = l[n.key];
      if (t === null) throw new Error(`internal: layer ${i} has no ${n.suffix}`);
      out[`model.layers.${i}.${n.suffix}`] = t;
    };
    for (const n of norms) if (n.key === 'inputLayernorm') norm(n);
    for (const p of PROJECTIONS) {
      out[projectionName(i, p)] = l[p].weight;
      const b = l[p].bias;
      if (b !== null) out[projectionName(i, p, 'bias')] = b;
    }
    for (const n of norms) if (n.key !== 'inputLayernorm') norm(n);
  });
  out['model.norm.weight'] = w.norm;
  if (!c.tieWordEmbeddings) out['lm_head.weight'] = w.lmHead;
  return out;
}

/** Builds ModelWeights from tensors by HF name (all present, as `tensorSpecs` lists them). */
export function weightsFromNamed(
  c: ModelConfig,
  t: Readonly<Record<string, tf.Tensor>>,
): ModelWeights {
  const get = (name: string): tf.Tensor => {
    const x = t[name];
    if (x === undefined) throw new Error(`internal: tensor ${name} missing after validation`);
    return x;
  };
  const linear = (i: number, p: ProjectionName): Linear => ({
    weight: get(projectionName(i, p)),
    bias: hasBias(c, p) ? get(projectionName(i, p, 'bias')) : null,
  });
  const norms = layerNormSpecs(c);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const byKey: Record<NormKey, tf.Tensor | null> = {
      inputLayernorm: null,
      qNorm: null,
      kNorm: null,
      postAttentionLayernorm: null,
      preFeedforwardLayernorm: null,
      postFeedforwardLayernorm: null,
    };
    for (const n of norms) byKey[n.key] = get(`model.layers.${i}.${n.suffix}`);
    layers.push({
      ...byKey,
      postAttentionLayernorm: byKey.postAttentionLayernorm as tf.Tensor,
      q_proj: linear(i, 'q_proj'),
      k_proj: linear(i, 'k_proj'),
      v_proj: linear(i, 'v_proj'),
      o_proj: linear(i, 'o_proj'),
      gate_proj: linear(i, 'gate_proj'),
      up_proj: linear(i, 'up_proj'),
      down_proj: linear(i, 'down_proj'),
    });
  }
  const embedTokens = get('model.embed_tokens.weight');
  return {
    embedTokens,
    layers,
    norm: get('model.norm.weight'),
    lmHead: c.tieWordEmbeddings ? embedTokens : get('lm_head.weight'),
  };
}

/**
 * The tensors as the checkpoint file holds them: `tensorSpecs`, except that Phi-3
 * (`fusedProjections`) stores `self_attn.qkv_proj.weight` `[(Hq + 2·Hkv)·hd, d]` (rows q, k, v)
 * and `mlp.gate_up_proj.weight` `[2·d_ff, d]` (rows gate, up) instead of the separate ones.
 */
export function checkpointTensorSpecs(c: ModelConfig): TensorSpec[] {
  const specs = tensorSpecs(c);
  if (!c.fusedProjections) return specs;
  const out: TensorSpec[] = [];
  for (const s of specs) {
    const m = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)_proj\.weight$/.exec(s.name);
    const part = m?.[3];
    if (m === null || part === undefined || !FUSED_PART.has(`${part}_proj`)) {
      out.push(s);
      continue;
    }
    const i = Number(m[1]);
    if (part === 'q')
      out.push({ name: fusedName(i, 'qkv_proj'), shape: [fusedRows(c, 'qkv_proj'), c.hiddenSize] });
    else if (part === 'gate')
      out.push({
        name: fusedName(i, 'gate_up_proj'),
        shape: [fusedRows(c, 'gate_up_proj'), c.hiddenSize],
      });
  }
  return out;
}

const FUSED_PART = new Set(['q_proj', 'k_proj', 'v_proj', 'gate_proj', 'up_proj']);
const FUSED_OF: Record<'qkv_proj' | 'gate_up_proj', ProjectionName[]> = {
  qkv_proj: ['q_proj', 'k_proj', 'v_proj'],
  gate_up_proj: ['gate_proj', 'up_proj'],
};

function fusedName(layer: number, fused: 'qkv_proj' | 'gate_up_proj'): string {
  return `model.layers.${layer}.${fused === 'qkv_proj' ? 'self_attn' : 'mlp'}.${fused}.weight`;
}

function fusedRows(c: ModelConfig, fused: 'qkv_proj' | 'gate_up_proj'): number {
  return FUSED_OF[fused].reduce((n, p) => n + projectionShape(c, p)[0], 0);
}

/**
 * Tensors read from a checkpoint (`checkpointTensorSpecs` names) → `tensorSpecs` names: Phi-3's
 * fused tensors are split by rows (and disposed); others pass through.
 */
export function fromCheckpointTensors(
  c: ModelConfig,
  t: Record<string, tf.Tensor>,
): Record<string, tf.Tensor> {
  if (!c.fusedProjections) return t;
  const out: Record<string, tf.Tensor> = { ...t };
  for (let i = 0; i < c.numLayers; i++) {
    for (const fused of ['qkv_proj', 'gate_up_proj'] as const) {
      const name = fusedName(i, fused);
      const w = out[name];
      if (w === undefined) throw new Error(`internal: ${name} missing after validation`);
      const parts = FUSED_OF[fused];
      const pieces = tf.split(
        w,
        parts.map((p) => projectionShape(c, p)[0]),
        0,
      ); // [out_p, d] each
      parts.forEach((p, j) => {
        out[projectionName(i, p)] = pieces[j] as tf.Tensor;
      });
      delete out[name];
      w.dispose();
    }
  }
  return out;
}

/**
 * `namedWeights` → what the checkpoint file holds: Phi-3's projections fused by rows again.
 * `made` lists the tensors created here (the caller disposes them after writing).
 */
export function toCheckpointTensors(
  c: ModelConfig,
  named: Record<string, tf.Tensor>,
): { tensors: Record<string, tf.Tensor>; made: tf.Tensor[] } {
  if (!c.fusedProjections) return { tensors: named, made: [] };
  const tensors: Record<string, tf.Tensor> = {};
  const made: tf.Tensor[] = [];
  const fusedAt = new Map<string, string>(); // first part's name -> fused name
  for (let i = 0; i < c.numLayers; i++) {
    for (const fused of ['qkv_proj', 'gate_up_proj'] as const)
      fusedAt.set(projectionName(i, FUSED_OF[fused][0] as ProjectionName), fusedName(i, fused));
  }
  for (const [name, t] of Object.entries(named)) {
    const f = fusedAt.get(name);
    if (f !== undefined) {
      const i = Number(/^model\.layers\.(\d+)\./.exec(name)?.[1]);
      const fused = f.endsWith('qkv_proj.weight') ? 'qkv_proj' : 'gate_up_proj';
      const w = tf.concat(
        FUSED_OF[fused].map((p) => named[projectionName(i, p)] as tf.Tensor),
        0,
      ); // [rows, d]
      made.push(w);
      tensors[f] = w;
      continue;
    }
    const m = /\.(\w+_proj)\.weight$/.exec(name);
    if (m !== null && FUSED_PART.has(m[1] as string)) continue; // inside a fused tensor
    tensors[name] = t;
  }
  return { tensors, made };
}

/** Every distinct tensor of the weights (the tied head counted once). */
export function allWeightTensors(w: ModelWeights): tf.Tensor[] {
  const out = new Set<tf.Tensor>([w.embedTokens, w.norm, w.lmHead]);
  for (const l of w.layers) {
    out.add(l.postAttentionLayernorm);
    for (const n of [
      l.inputLayernorm,
      l.qNorm,
      l.kNorm,
      l.preFeedforwardLayernorm,
      l.postFeedforwardLayernorm,
    ])
      if (n !== null && n !== undefined) out.add(n);
    for (const p of PROJECTIONS) {
      out.add(l[p].weight);
      const b = l[p].bias;
      if (b !== null) out.add(b);
    }
  }
  return [...out];
}
