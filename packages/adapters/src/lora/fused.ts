/**
 * LoRA on Phi-3's fused modules, as PEFT makes it: Phi-3 checkpoints store q/k/v as one
 * `self_attn.qkv_proj` and gate/up as one `mlp.gate_up_proj`, so PEFT's `target_modules` name
 * those (`["qkv_proj", "gate_up_proj"]`) and its files hold one LoRA per fused module:
 *
 *   …layers.{i}.self_attn.qkv_proj.lora_A.weight   [r, d]
 *   …layers.{i}.self_attn.qkv_proj.lora_B.weight   [(Hq + 2·Hkv)·hd, r]   rows q, k, v
 *   …layers.{i}.mlp.gate_up_proj.lora_B.weight     [2·d_ff, r]            rows gate, up
 *   (DoRA's …lora_magnitude_vector [fused out], rows split the same way)
 *
 * @para/model keeps the projections separate in memory, so a fused LoRA is run as one LoRA per
 * part sharing the fused A, each with its rows of B (and of m): exact, since B·A x splits by
 * output rows and DoRA's norm is per row. The shared A is one variable (trained once, as
 * PEFT's); the parts' B are variables under the parts' names (`…q_proj.lora_B.weight`, internal),
 * joined again under PEFT's fused names in `stateDict` and split in `loadStateDict`. The fused
 * names exist only on a model with fused projections (Phi-3): elsewhere they are refused.
 * "all-linear" on such a model adapts the fused modules too, as PEFT does. Not covered: a regex
 * target_modules on Phi-3 is matched against the split projections' keys (a pattern naming
 * qkv_proj matches nothing there: INVALID_CONFIG). IA3's fused output scales: ia3/fused.ts.
 */

import { ParaError } from '@para/core';
import type { ModelConfig, TensorSpec } from '@para/model';
import { projectionShape } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { projectionPath } from '../base/adapter';
import { INLINE_CONFIG, peftListMatch, type TargetModule } from '../base/config';

export type FusedModule = 'qkv_proj' | 'gate_up_proj';

/** The parts of each fused module, in the fused tensor's row order. */
export const FUSED_PARTS: Readonly<Record<FusedModule, readonly TargetModule[]>> = {
  qkv_proj: ['q_proj', 'k_proj', 'v_proj'],
  gate_up_proj: ['gate_proj', 'up_proj'],
};

const SUBMODULE: Readonly<Record<FusedModule, 'self_attn' | 'mlp'>> = {
  qkv_proj: 'self_attn',
  gate_up_proj: 'mlp',
};

/** `model.layers.{i}.self_attn.qkv_proj`: the fused module's key in the transformers model. */
export function fusedModuleKey(layer: number, f: FusedModule): string {
  return `model.layers.${layer}.${SUBMODULE[f]}.${f}`;
}

/** The fused module a `target_modules` entry names (PEFT's suffix match on `….qkv_proj`), if any. */
export function entryFusedModule(entry: string): FusedModule | null {
  for (const f of Object.keys(FUSED_PARTS) as FusedModule[]) {
    const t = ['model', 'layers', '{i}', SUBMODULE[f], f];
    const e = entry.split('.');
    if (e.length > t.length) continue;
    const off = t.length - e.length;
    if (e.every((s, k) => (t[off + k] === '{i}' ? /^(0|[1-9]\d*)$/.test(s) : t[off + k] === s)))
      return f;
  }
  return null;
}

/** The list with each fused entry replaced by its parts' entries (same prefix), or null when none is fused. */
export function expandFusedList(list: readonly string[]): string[] | null {
  if (!list.some((e) => entryFusedModule(e) !== null)) return null;
  const out: string[] = [];
  for (const e of list) {
    const f = entryFusedModule(e);
    const parts = f === null ? [e] : FUSED_PARTS[f].map((p) => `${e.slice(0, -f.length)}${p}`);
    for (const p of parts) if (!out.includes(p)) out.push(p);
  }
  return out;
}

/**
 * For resolveLoraConfig: the raw config with fused target_modules entries expanded (validated as
 * the parts' names); rank_pattern / alpha_pattern beside fused targets are UNSUPPORTED.
 */
export function expandFusedTargets(
  raw: Record<string, unknown>,
  file = INLINE_CONFIG,
): Record<string, unknown> {
  const list = raw.target_modules;
  if (!Array.isArray(list) || !list.every((e) => typeof e === 'string')) return raw;
  const expanded = expandFusedList(list as string[]);
  if (expanded === null) return raw;
  for (const field of ['rank_pattern', 'alpha_pattern']) {
    const v = raw[field];
    if (typeof v === 'object' && v !== null && Object.keys(v).length > 0)
      throw new ParaError('UNSUPPORTED', 'unsupported adapter setting', {
        file,
        field,
        expected: `{} with the fused target_modules qkv_proj / gate_up_proj (per-module ranks of fused modules are not implemented)`,
        actual: JSON.stringify(v).slice(0, 120),
      });
  }
  return { ...raw, target_modules: expanded };
}

/** target_modules as written: the raw list when it names fused modules, else `resolved`. */
export function fusedTargetsAsWritten(
  raw: Record<string, unknown>,
  resolved: string[] | string,
): string[] | string {
  const list = raw.target_modules;
  return Array.isArray(list) &&
    list.every((e) => typeof e === 'string') &&
    expandFusedList(list) !== null
    ? [...(list as string[])]
    : resolved;
}

/**
 * For loraTargets: the list to match against the model's projections. Fused entries
 * (`qkv_proj`, `gate_up_proj`) are Phi-3's modules: on a model with fused projections they stand
 * for their parts; on any other model they are an UNSUPPORTED error naming target_modules.
 */
export function fusedTargetList(
  list: readonly string[],
  m: ModelConfig,
  file = INLINE_CONFIG,
): readonly string[] {
  const expanded = expandFusedList(list);
  if (expanded === null) return list;
  if (!m.fusedProjections) {
    const e = list.find((x) => entryFusedModule(x) !== null) as string;
    throw new ParaError('UNSUPPORTED', 'unsupported adapter setting', {
      file,
      field: 'target_modules',
      expected: `projections of this ${m.modelType} model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj): "${e}" is Phi-3's fused module, which a ${m.modelType} model does not have`,
      actual: JSON.stringify(list),
    });
  }
  return expanded;
}

/** One fused LoRA: its layer, fused module and parts (row order). */
export interface FusedGroup {
  layer: number;
  fused: FusedModule;
  parts: readonly TargetModule[];
}

/** Adapted parts of fused modules by `${layer}.${part}` (empty unless the model fuses and the list names them). */
export type FusedGroups = ReadonlyMap<string, FusedGroup>;

export function loraFusedGroups(
  c: { target_modules: string[] | string },
  m: ModelConfig,
  targets: readonly { layer: number; module: TargetModule }[],
): FusedGroups {
  const out = new Map<string, FusedGroup>();
  if (!m.fusedProjections) return out;
  // "all-linear" on Phi-3 is PEFT's qkv_proj, o_proj, gate_up_proj, down_proj: fused LoRAs.
  const allLinear =
    typeof c.target_modules === 'string' && c.target_modules.toLowerCase() === 'all-linear';
  if (!Array.isArray(c.target_modules) && !allLinear) return out;
  const list = allLinear
    ? ['qkv_proj', 'gate_up_proj']
    : (c.target_modules as string[]).filter((e) => entryFusedModule(e) !== null);
  if (list.length === 0) return out;
  const adapted = new Set(targets.map((t) => `${t.layer}.${t.module}`));
  for (let layer = 0; layer < m.numLayers; layer++)
    for (const f of Object.keys(FUSED_PARTS) as FusedModule[]) {
      if (!list.some((e) => peftListMatch(fusedModuleKey(layer, f), e))) continue;
      const parts = FUSED_PARTS[f];
      if (!parts.every((p) => adapted.has(`${layer}.${p}`))) continue;
      const g = { layer, fused: f, parts };
      for (const p of parts) out.set(`${layer}.${p}`, g);
    }
  return out;
}

function fusedPath(layer: number, f: FusedModule): string {
  return projectionPath(layer, f === 'qkv_proj' ? 'q_proj' : 'up_proj').replace(/[a-z_]+$/, f);
}

/** PEFT's names of a fused LoRA: `…self_attn.qkv_proj.lora_A.weight`, `lora_B.weight`, `lora_magnitude_vector`. */
export function fusedTensorNames(g: FusedGroup): { A: string; B: string; M: string } {
  const p = fusedPath(g.layer, g.fused);
  return { A: `${p}.lora_A.weight`, B: `${p}.lora_B.weight`, M: `${p}.lora_magnitude_vector` };
}

function partNames(layer: number, p: TargetModule): { A: string; B: string; M: string } {
  const path = projectionPath(layer, p);
  return {
    A: `${path}.lora_A.weight`,
    B: `${path}.lora_B.weight`,
    M: `${path}.lora_magnitude_vector`,
  };
}

/** The names a part's variables take: A the fused module's (shared), B and M the part's own. */
export function fusedLoraNames(
  groups: FusedGroups,
  layer: number,
  module: TargetModule,
): { A: string; B: string; M: string } | null {
  const g = groups.get(`${layer}.${module}`);
  if (g === undefined) return null;
  return { ...partNames(layer, module), A: fusedTensorNames(g).A };
}

function distinctGroups(groups: FusedGroups): FusedGroup[] {
  return [...new Set(groups.values())];
}

/** The file's specs: the parts' A / B / M specs replaced by the fused ones (at the first part's place). */
export function fuseTensorSpecs(
  groups: FusedGroups,
  specs: readonly TensorSpec[],
  m: ModelConfig,
): TensorSpec[] {
  if (groups.size === 0) return [...specs];
  const byName = new Map<string, { g: FusedGroup; kind: 'A' | 'B' | 'M'; first: boolean }>();
  for (const g of distinctGroups(groups))
    g.parts.forEach((p, i) => {
      const n = partNames(g.layer, p);
      byName.set(n.A, { g, kind: 'A', first: i === 0 });
      byName.set(n.B, { g, kind: 'B', first: i === 0 });
      byName.set(n.M, { g, kind: 'M', first: i === 0 });
      byName.set(fusedTensorNames(g).A, { g, kind: 'A', first: i === 0 });
    });
  const out: TensorSpec[] = [];
  const done = new Set<string>();
  for (const s of specs) {
    const hit = byName.get(s.name);
    if (hit === undefined) {
      out.push(s);
      continue;
    }
    const name = fusedTensorNames(hit.g)[hit.kind];
    if (done.has(name)) continue;
    done.add(name);
    const rows = hit.g.parts.reduce((n, p) => n + projectionShape(m, p)[0], 0);
    out.push({
      name,
      shape:
        hit.kind === 'A' ? [...s.shape] : hit.kind === 'B' ? [rows, s.shape[1] as number] : [rows],
    });
  }
  return out;
}

/** Cached fused tensors for `stateDict` (rebuilt when a part's data changes). */
export type FusedCache = Map<string, { ids: object[]; t: tf.Tensor }>;

/** `stateDict` with the parts' B / M joined under PEFT's fused names (A already has its fused name). */
export function fuseStateDict(
  groups: FusedGroups,
  tensors: Record<string, tf.Tensor>,
  cache: FusedCache,
): Record<string, tf.Tensor> {
  if (groups.size === 0) return tensors;
  const out: Record<string, tf.Tensor> = {};
  const fusedAt = new Map<string, { g: FusedGroup; kind: 'B' | 'M' }>();
  const inside = new Set<string>();
  for (const g of distinctGroups(groups)) {
    const first = partNames(g.layer, g.parts[0] as TargetModule);
    fusedAt.set(first.B, { g, kind: 'B' });
    fusedAt.set(first.M, { g, kind: 'M' });
    for (const p of g.parts) {
      inside.add(partNames(g.layer, p).B);
      inside.add(partNames(g.layer, p).M);
    }
  }
  for (const [name, t] of Object.entries(tensors)) {
    const at = fusedAt.get(name);
    if (at !== undefined) {
      const fusedName = fusedTensorNames(at.g)[at.kind];
      const parts = at.g.parts.map((p) => tensors[partNames(at.g.layer, p)[at.kind]] as tf.Tensor);
      const ids = parts.map((x) => x.dataId);
      let c = cache.get(fusedName);
      if (c === undefined || c.ids.some((id, i) => id !== ids[i])) {
        c?.t.dispose();
        c = { ids, t: tf.keep(tf.concat(parts, 0)) }; // [Σ out, r] or [Σ out]
        cache.set(fusedName, c);
      }
      out[fusedName] = c.t;
    } else if (!inside.has(name)) out[name] = t;
  }
  return out;
}

/**
 * `loadStateDict`'s input with PEFT's fused B / M split into the parts' rows (new tensors pushed
 * on `made`, for the caller to dispose); a fused tensor of the wrong shape is left as it is, so
 * the shape check names it.
 */
export function splitFusedTensors(
  groups: FusedGroups,
  tensors: Readonly<Record<string, tf.Tensor>>,
  m: ModelConfig,
  made: tf.Tensor[],
): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = { ...tensors };
  for (const g of distinctGroups(groups)) {
    const rows = g.parts.map((p) => projectionShape(m, p)[0]);
    const total = rows.reduce((a, b) => a + b, 0);
    for (const kind of ['B', 'M'] as const) {
      const name = fusedTensorNames(g)[kind];
      const t = tensors[name];
      if (t === undefined || t.shape[0] !== total) continue;
      delete out[name];
      const pieces = tf.split(t, rows, 0);
      made.push(...pieces);
      g.parts.forEach((p, i) => {
        out[partNames(g.layer, p)[kind]] = pieces[i] as tf.Tensor;
      });
    }
  }
  return out;
}
