/**
 * IA3 on Phi-3's fused modules, as PEFT makes it. PEFT 0.21 has no IA3 default for phi3, so its
 * configs name the fused modules themselves (`target_modules: ["qkv_proj", "o_proj",
 * "gate_up_proj", "down_proj"]`, `feedforward_modules: ["down_proj"]`), and a fused module
 * that is not feed-forward gets one output scale over the fused output:
 *
 *   …layers.{i}.self_attn.qkv_proj.ia3_l   [(Hq + 2·Hkv)·hd, 1]   rows q, k, v
 *   …layers.{i}.mlp.gate_up_proj.ia3_l     [2·d_ff, 1]            rows gate, up
 *
 * @para/model keeps the projections separate, and an output scale splits by rows exactly, so a
 * fused vector is run as one output scale per part (q_proj, k_proj, v_proj; gate_proj, up_proj:
 * every projection's output is an adapter site), each a variable under the part's name
 * (`…q_proj.ia3_l`, internal), joined again under PEFT's fused name in `stateDict` and split in
 * `loadStateDict`. Not implemented (UNSUPPORTED): a fused module as a feed-forward module (its
 * input, the normed hidden state shared by the parts, is no adapter site), fused modules named by
 * module paths or beside one of their own parts, and fused names on a model without fused
 * projections (field target_modules).
 */

import { ParaError } from '@para/core';
import type { ModelConfig, TensorSpec } from '@para/model';
import { projectionShape } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { projectionPath } from '../base/adapter';
import { type ConfigReader, isProjectionName, type TargetModule } from '../base/config';
import { entryFusedModule, FUSED_PARTS, type FusedModule, fusedModuleKey } from '../lora/fused';

function isFusedName(e: unknown): e is FusedModule {
  return typeof e === 'string' && Object.hasOwn(FUSED_PARTS, e);
}

/**
 * For resolveIa3Config: the lists as written when target_modules names a fused module, else
 * null. Refuses (UNSUPPORTED) what is not implemented: entries other than bare names beside a
 * fused one, a fused module beside one of its parts, a fused module as a feed-forward module.
 */
export function fusedTargetLists(
  c: ConfigReader,
): { target_modules: string[]; feedforward_modules: string[] | null } | null {
  const tm = c.raw.target_modules;
  if (!Array.isArray(tm) || !tm.some(isFusedName)) {
    // A fused module named by a path (`self_attn.qkv_proj`, `model.layers.0.mlp.gate_up_proj`).
    const path = Array.isArray(tm)
      ? tm.find((e) => typeof e === 'string' && entryFusedModule(e) !== null)
      : undefined;
    if (path !== undefined)
      c.fail(
        'target_modules',
        `the bare names "qkv_proj" / "gate_up_proj" for Phi-3's fused modules ("${path}": IA3 on fused modules named by module paths is not implemented)`,
        'UNSUPPORTED',
      );
    return null;
  }
  const bad = tm.find((e) => !(isFusedName(e) || (typeof e === 'string' && isProjectionName(e))));
  if (bad !== undefined)
    c.fail(
      'target_modules',
      `bare module names beside Phi-3's fused modules (qkv_proj, o_proj, gate_up_proj, down_proj; ${JSON.stringify(bad)}: module paths with fused modules are not implemented for IA3)`,
      'UNSUPPORTED',
    );
  for (const f of tm.filter(isFusedName)) {
    const part = FUSED_PARTS[f].find((p) => tm.includes(p));
    if (part !== undefined)
      c.fail(
        'target_modules',
        `"${f}" or its part "${part}", not both (Phi-3 has no separate ${part} module)`,
        'UNSUPPORTED',
      );
  }
  let ff: string[] | null = null;
  if (c.has('feedforward_modules')) {
    const v = c.raw.feedforward_modules;
    if (Array.isArray(v) && v.every((e) => typeof e === 'string')) {
      ff = [...(v as string[])];
      // PEFT's feed-forward match: the module's key ends with the entry.
      const hit = tm
        .filter(isFusedName)
        .find((f) => ff?.some((e) => fusedModuleKey(0, f).endsWith(e)));
      if (hit !== undefined)
        c.fail(
          'feedforward_modules',
          `["down_proj"] or [] (the input of Phi-3's fused ${hit}, which its parts share, is not an adapter site: only its output scale is implemented)`,
          'UNSUPPORTED',
        );
    }
  }
  return { target_modules: [...(tm as string[])], feedforward_modules: ff };
}

/** One fused IA3 vector: its layer, fused module and parts (row order). */
export interface Ia3FusedGroup {
  layer: number;
  fused: FusedModule;
  parts: readonly TargetModule[];
}

/**
 * The fused vectors of an IA3 config on `m` (none when target_modules names no fused module);
 * on a model without fused projections, an UNSUPPORTED error naming target_modules.
 */
export function ia3FusedGroups(
  c: {
    fused_targets?: { target_modules: string[] } | null;
  },
  m: ModelConfig,
): Ia3FusedGroup[] {
  const ft = c.fused_targets;
  if (ft === null || ft === undefined) return [];
  const fused = ft.target_modules.filter(isFusedName);
  if (fused.length === 0) return [];
  if (!m.fusedProjections)
    throw new ParaError('UNSUPPORTED', 'unsupported adapter setting', {
      field: 'target_modules',
      expected: `projections of this ${m.modelType} model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj): "${fused[0]}" is Phi-3's fused module, which a ${m.modelType} model does not have`,
      actual: JSON.stringify(ft.target_modules),
    });
  const out: Ia3FusedGroup[] = [];
  for (let layer = 0; layer < m.numLayers; layer++)
    for (const f of Object.keys(FUSED_PARTS) as FusedModule[])
      if (fused.includes(f)) out.push({ layer, fused: f, parts: FUSED_PARTS[f] });
  return out;
}

/** PEFT's name of a fused vector: `…self_attn.qkv_proj.ia3_l`. */
export function ia3FusedName(g: Ia3FusedGroup): string {
  return `${projectionPath(g.layer, g.parts[0] as TargetModule).replace(/[a-z_]+$/, g.fused)}.ia3_l`;
}

function partName(layer: number, p: TargetModule): string {
  return `${projectionPath(layer, p)}.ia3_l`;
}

/** The file's specs: the parts' `[out, 1]` replaced by the fused `[Σ out, 1]` (at the first part's place). */
export function fuseIa3Specs(
  groups: readonly Ia3FusedGroup[],
  specs: readonly TensorSpec[],
  m: ModelConfig,
): TensorSpec[] {
  if (groups.length === 0) return [...specs];
  const byName = new Map<string, { g: Ia3FusedGroup; first: boolean }>();
  for (const g of groups)
    g.parts.forEach((p, i) => {
      byName.set(partName(g.layer, p), { g, first: i === 0 });
    });
  const out: TensorSpec[] = [];
  for (const s of specs) {
    const hit = byName.get(s.name);
    if (hit === undefined) out.push(s);
    else if (hit.first)
      out.push({
        name: ia3FusedName(hit.g),
        shape: [hit.g.parts.reduce((n, p) => n + projectionShape(m, p)[0], 0), 1],
      });
  }
  return out;
}

/** Cached fused tensors for `stateDict` (rebuilt when a part's data changes). */
export type Ia3FusedCache = Map<string, { ids: object[]; t: tf.Tensor }>;

/** `stateDict` with the parts' vectors joined under PEFT's fused names. */
export function fuseIa3StateDict(
  groups: readonly Ia3FusedGroup[],
  tensors: Record<string, tf.Tensor>,
  cache: Ia3FusedCache,
): Record<string, tf.Tensor> {
  if (groups.length === 0) return tensors;
  const firstOf = new Map<string, Ia3FusedGroup>();
  const inside = new Set<string>();
  for (const g of groups) {
    firstOf.set(partName(g.layer, g.parts[0] as TargetModule), g);
    for (const p of g.parts) inside.add(partName(g.layer, p));
  }
  const out: Record<string, tf.Tensor> = {};
  for (const [name, t] of Object.entries(tensors)) {
    const g = firstOf.get(name);
    if (g !== undefined) {
      const fusedName = ia3FusedName(g);
      const parts = g.parts.map((p) => tensors[partName(g.layer, p)] as tf.Tensor);
      const ids = parts.map((x) => x.dataId);
      let c = cache.get(fusedName);
      if (c === undefined || c.ids.some((id, i) => id !== ids[i])) {
        c?.t.dispose();
        c = { ids, t: tf.keep(tf.concat(parts, 0)) }; // [Σ out, 1]
        cache.set(fusedName, c);
      }
      out[fusedName] = c.t;
    } else if (!inside.has(name)) out[name] = t;
  }
  return out;
}

/**
 * `loadStateDict`'s input with PEFT's fused vectors split into the parts' rows (new tensors
 * pushed on `made`, for the caller to dispose); a fused tensor of the wrong shape is left as it
 * is, so the shape check names it.
 */
export function splitIa3Fused(
  groups: readonly Ia3FusedGroup[],
  tensors: Readonly<Record<string, tf.Tensor>>,
  m: ModelConfig,
  made: tf.Tensor[],
): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = { ...tensors };
  for (const g of groups) {
    const rows = g.parts.map((p) => projectionShape(m, p)[0]);
    const total = rows.reduce((a, b) => a + b, 0);
    const name = ia3FusedName(g);
    const t = tensors[name];
    if (t === undefined || t.rank !== 2 || t.shape[0] !== total || t.shape[1] !== 1) continue;
    delete out[name];
    const pieces = tf.split(t, rows, 0); // [out_p, 1] each
    made.push(...pieces);
    g.parts.forEach((p, i) => {
      out[partName(g.layer, p)] = pieces[i] as tf.Tensor;
    });
  }
  return out;
}
