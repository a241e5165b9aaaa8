import type * as tf from '@tensorflow/tfjs-core';
import { runMulti, type ScalarUniform, storageBuffersLimit } from './dispatch';
import { rowWorkgroupSize } from './programs';

type KernelArgs = {
  inputs: Record<string, tf.TensorInfo | undefined>;
  backend: unknown;
  attrs?: Record<string, unknown>;
};

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const view = (t: tf.TensorInfo, shape: number[]): tf.TensorInfo => ({
  dataId: t.dataId,
  shape,
  dtype: t.dtype,
});
const i32 = (name: string, value: number): ScalarUniform => ({ name, type: 'i32', value });
const f32 = (name: string, value: number): ScalarUniform => ({ name, type: 'f32', value });

/**
 * `ParaAddRmsNorm`: `sum = x + residual`, `y = RMSNorm(sum)` in one dispatch, both outputs
 * written by it (one workgroup per row of d: the lanes add, store the sum and sum its squares,
 * a shared-memory tree, then scale). The same arithmetic order as `ParaRmsNorm` of the sum.
 */
export function addRmsNormKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { x, residual, weight } = inputs as {
    x: tf.TensorInfo;
    residual: tf.TensorInfo;
    weight: tf.TensorInfo;
  };
  const d = x.shape[x.shape.length - 1] as number;
  const rows = size(x.shape) / d;
  const wg = rowWorkgroupSize(d);
  const [sum, y] = runMulti(backend, {
    key: 'para_add_rmsnorm',
    outputs: [
      [rows, d],
      [rows, d],
    ],
    inputs: [
      { name: 'xs', tensor: x },
      { name: 'res', tensor: residual },
      { name: 'weight', tensor: weight },
    ],
    uniforms: [
      i32('rows', rows),
      i32('d', d),
      f32('eps', Number(attrs?.eps ?? 1e-6)),
      i32('unitOffset', attrs?.unitOffset === true ? 1 : 0),
    ],
    workgroupSize: wg,
    workgroups: rows,
    code: `
var<workgroup> partial : array<f32, ${wg}>;
fn body(row : i32, tid : i32, gid : i32) {
  let d = uniforms.d;
  let n = select(0, d, row < uniforms.rows);
  let base = row * d;
  var acc = 0.0;
  for (var c = tid; c < n; c = c + WG) {
    let s = xs[base + c] + res[base + c];
    out0[base + c] = s;
    acc = acc + s * s;
  }
  partial[tid] = acc;
  workgroupBarrier();
  for (var s = WG / 2; s > 0; s = s / 2) {
    if (tid < s) { partial[tid] = partial[tid] + partial[tid + s]; }
    workgroupBarrier();
  }
  let r = inverseSqrt(partial[0] / f32(d) + uniforms.eps);
  let off = select(0.0, 1.0, uniforms.unitOffset != 0);
  for (var c = tid; c < n; c = c + WG) {
    out1[base + c] = out0[base + c] * r * (weight[c] + off);
  }
}`,
  }) as [tf.TensorInfo, tf.TensorInfo];
  return [view(sum, x.shape), view(y, x.shape)];
}

/**
 * `ParaRopeKvWrite` (forward only, in place): RoPE of q and k (rotate-half, tables `[B or 1, 1,
 * T, hd]`), optional per-row scales of q, k and v applied before (`[B or 1, 1, H·hd]`: PARA's
 * and IA3's vectors, in the projection's layout), the rotated k and the (scaled) v written into
 * the caches `[B, Hkv, C, hd]` at slot `slots[b] + t` (attr `slots`, one per row) of every row b with `slots[b] ≥ 0`; the
 * rotated q is the output. One dispatch: one invocation per element of q and of k (the latter
 * also moves v's element).
 */
export function ropeKvWriteKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  type Ins = Record<'q' | 'k' | 'v' | 'cos' | 'sin' | 'kCache' | 'vCache', tf.TensorInfo> & {
    qScale?: tf.TensorInfo;
    kScale?: tf.TensorInfo;
    vScale?: tf.TensorInfo;
  };
  const { q, k, v, cos, sin, kCache, vCache, qScale, kScale, vScale } = inputs as Ins;
  if (!Array.isArray(attrs?.slots) || attrs.slots.length !== q.shape[0]) {
    throw new Error('ParaRopeKvWrite: attr slots must hold one start slot (or -1) per row of q');
  }
  const [B, hq, T, hd] = q.shape as [number, number, number, number];
  const hkv = k.shape[1] as number;
  const C = kCache.shape[2] as number;
  const nq = B * hq * T * hd;
  const nk = B * hkv * T * hd;
  // Outputs (q′, kCache, vCache) and q, k, v, cos, sin take 8 storage buffers, WebGPU's default
  // per-stage limit; a scale is bound too where the device allows more (@para/core raises the
  // limit to the adapter's in Node), else it is applied by a dispatch of its own first.
  let room = storageBuffersLimit(backend) - 8;
  const bound = (s: tf.TensorInfo | undefined, x: tf.TensorInfo, H: number) => {
    if (s === undefined) return { x, s: undefined };
    if (room > 0) {
      room--;
      return { x, s };
    }
    return { x: scaleHeads(backend, x, s, H), s: undefined, temp: true };
  };
  const qb = bound(qScale, q, hq);
  const kb = bound(kScale, k, hkv);
  const vb = bound(vScale, v, hkv);
  const flags = `${qb.s ? 'q' : ''}${kb.s ? 'k' : ''}${vb.s ? 'v' : ''}`;
  const ins: { name: string; tensor: tf.TensorInfo }[] = [
    { name: 'qs', tensor: qb.x },
    { name: 'ks', tensor: kb.x },
    { name: 'vs', tensor: vb.x },
    { name: 'cosT', tensor: cos },
    { name: 'sinT', tensor: sin },
  ];
  if (qb.s) ins.push({ name: 'qScale', tensor: qb.s });
  if (kb.s) ins.push({ name: 'kScale', tensor: kb.s });
  if (vb.s) ins.push({ name: 'vScale', tensor: vb.s });
  const batchOf = (t: tf.TensorInfo | undefined) => (t === undefined ? 1 : (t.shape[0] as number));
  // x(idx) of a source with an optional scale; h and b are the element's head and row.
  const read = (src: string, scale: string | undefined, heads: string, sb: string) =>
    scale === undefined
      ? (idx: string) => `${src}[${idx}]`
      : (idx: string) =>
          `(${src}[${idx}] * ${scale}[(select(0, b, uniforms.${sb} > 1) * ${heads} + h) * hd + (${idx}) % hd])`;
  const rotate = (x: (idx: string) => string) => `
    let half = hd / 2;
    let c = (select(0, b, uniforms.tableBatch > 1) * T + t) * hd + j;
    var y = 0.0;
    if (j < half) {
      y = ${x('i')} * cosT[c] - ${x('i + half')} * sinT[c];
    } else {
      y = ${x('i')} * cosT[c] + ${x('i - half')} * sinT[c];
    }`;
  const [qRot] = runMulti(backend, {
    key: `para_rope_kv_write_${flags}`,
    outputs: [q.shape.slice(), kCache, vCache],
    inputs: ins,
    uniforms: [
      i32('hq', hq),
      i32('hkv', hkv),
      i32('t', T),
      i32('hd', hd),
      i32('cap', C),
      i32('tableBatch', cos.shape[0] as number),
      i32('nq', nq),
      i32('nk', nk),
      i32('qsb', batchOf(qScale)),
      i32('ksb', batchOf(kScale)),
      i32('vsb', batchOf(vScale)),
    ],
    intArray: { name: 'slots', values: Int32Array.from(attrs?.slots as number[]) },
    workgroupSize: 64,
    workgroups: Math.ceil((nq + nk) / 64),
    code: `
fn body(wg : i32, lid : i32, gid : i32) {
  let hd = uniforms.hd;
  let T = uniforms.t;
  if (gid < uniforms.nq) {
    let i = gid;
    let j = i % hd;
    let t = (i / hd) % T;
    let h = (i / (hd * T)) % uniforms.hq;
    let b = i / (hd * T * uniforms.hq);
    ${rotate(read('qs', qb.s ? 'qScale' : undefined, 'uniforms.hq', 'qsb'))}
    out0[i] = y;
  } else if (gid < uniforms.nq + uniforms.nk) {
    let i = gid - uniforms.nq;
    let j = i % hd;
    let t = (i / hd) % T;
    let h = (i / (hd * T)) % uniforms.hkv;
    let b = i / (hd * T * uniforms.hkv);
    let slot = uniforms.slots[b / 4][b % 4];
    if (slot >= 0) {
      ${rotate(read('ks', kb.s ? 'kScale' : undefined, 'uniforms.hkv', 'ksb'))}
      let o = ((b * uniforms.hkv + h) * uniforms.cap + slot + t) * hd + j;
      out1[o] = y;
      out2[o] = ${read('vs', vb.s ? 'vScale' : undefined, 'uniforms.hkv', 'vsb')('i')};
    }
  }
}`,
  });
  for (const t of [qb, kb, vb]) {
    if (t.temp) (backend as { disposeData(id: tf.DataId): boolean }).disposeData(t.x.dataId);
  }
  return qRot as tf.TensorInfo;
}

/** `x [B, H, T, hd] ⊙ s[b|0, 0, h·hd + j]` (one dispatch; the fallback when no binding is left). */
function scaleHeads(
  backend: unknown,
  x: tf.TensorInfo,
  s: tf.TensorInfo,
  H: number,
): tf.TensorInfo {
  const [B, , T, hd] = x.shape as [number, number, number, number];
  const [out] = runMulti(backend, {
    key: 'para_scale_heads',
    outputs: [x.shape.slice()],
    inputs: [
      { name: 'xs', tensor: x },
      { name: 'sc', tensor: s },
    ],
    uniforms: [
      i32('n', B * H * T * hd),
      i32('h', H),
      i32('t', T),
      i32('hd', hd),
      i32('sb', s.shape[0] as number),
    ],
    workgroupSize: 64,
    workgroups: Math.ceil((B * H * T * hd) / 64),
    code: `
fn body(wg : i32, lid : i32, i : i32) {
  if (i >= uniforms.n) { return; }
  let hd = uniforms.hd;
  let j = i % hd;
  let h = (i / (hd * uniforms.t)) % uniforms.h;
  let b = i / (hd * uniforms.t * uniforms.h);
  out0[i] = xs[i] * sc[(select(0, b, uniforms.sb > 1) * uniforms.h + h) * hd + j];
}`,
  });
  return out as tf.TensorInfo;
}
