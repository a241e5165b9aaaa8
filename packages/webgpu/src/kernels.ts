import * as tf from '@tensorflow/tfjs-core';
import { addRmsNormKernel, ropeKvWriteKernel } from './multi-kernels';
import {
  ATTENTION_CHUNK,
  ATTENTION_MAX_HEAD_DIM,
  addRmsNormDxProgram,
  attentionCombineProgram,
  attentionProgram,
  rmsInvProgram,
  rmsNormDwProgram,
  rmsNormDxProgram,
  rmsNormProgram,
  ropeProgram,
  swigluDgateProgram,
  swigluDupProgram,
  swigluProgram,
  swigluScaledProgram,
  type WebGpuProgram,
} from './programs';

/** What the kernels use of tfjs-backend-webgpu's `WebGPUBackend` (4.22). */
interface WebGpuBackendLike {
  runWebGPUProgram(
    program: WebGpuProgram,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    programUniforms?: Uniform[],
  ): tf.TensorInfo;
  disposeData(dataId: tf.DataId): boolean;
}

type KernelArgs = {
  inputs: Record<string, tf.TensorInfo>;
  backend: unknown;
  attrs?: Record<string, unknown>;
};

/** The same data under another shape (as tfjs's Reshape does, without a kernel call). */
const view = (t: tf.TensorInfo, shape: number[]): tf.TensorInfo => ({
  dataId: t.dataId,
  shape,
  dtype: t.dtype,
});

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function rowsOf(x: tf.TensorInfo): [number, number] {
  const d = x.shape[x.shape.length - 1] as number;
  return [size(x.shape) / d, d];
}

type Uniform = { type: 'int32' | 'float32'; data: number[] };
/**
 * Scalar uniforms, one entry each: the backend aligns an entry of n values as a vecn, while the
 * programs declare scalars (`d : i32, eps : f32`), so never pass several values in one entry.
 */
const i32 = (...data: number[]): Uniform[] => data.map((v) => ({ type: 'int32', data: [v] }));
const f32 = (...data: number[]): Uniform[] => data.map((v) => ({ type: 'float32', data: [v] }));

function rmsNormKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const b = backend as WebGpuBackendLike;
  const { x, weight } = inputs as { x: tf.TensorInfo; weight: tf.TensorInfo };
  const [rows, d] = rowsOf(x);
  const out = b.runWebGPUProgram(rmsNormProgram(rows, d), [view(x, [rows, d]), weight], 'float32', [
    ...i32(rows, d),
    ...f32(Number(attrs?.eps ?? 1e-6)),
    ...i32(attrs?.unitOffset === true ? 1 : 0),
  ]);
  return view(out, x.shape);
}

function rmsNormGradKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const b = backend as WebGpuBackendLike;
  const { dy, x, weight } = inputs as {
    dy: tf.TensorInfo;
    x: tf.TensorInfo;
    weight: tf.TensorInfo;
  };
  const [rows, d] = rowsOf(x);
  const unit = attrs?.unitOffset === true ? 1 : 0;
  const x2 = view(x, [rows, d]);
  const dy2 = view(dy, [rows, d]);
  const rinv = b.runWebGPUProgram(rmsInvProgram(rows, d), [x2], 'float32', [
    ...i32(rows, d),
    ...f32(Number(attrs?.eps ?? 1e-6)),
  ]);
  const dx = b.runWebGPUProgram(
    rmsNormDxProgram(rows, d),
    [dy2, x2, weight, rinv],
    'float32',
    i32(rows, d, unit),
  );
  const dw = b.runWebGPUProgram(rmsNormDwProgram(d), [dy2, x2, rinv], 'float32', i32(rows, d));
  b.disposeData(rinv.dataId);
  return [view(dx, x.shape), dw];
}

/** `ParaAddRmsNormGrad`: rinv of the sum, dx (+ dsum), dweight — three dispatches (training). */
function addRmsNormGradKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const b = backend as WebGpuBackendLike;
  const { dy, dsum, sum, weight } = inputs as {
    dy: tf.TensorInfo;
    dsum: tf.TensorInfo;
    sum: tf.TensorInfo;
    weight: tf.TensorInfo;
  };
  const [rows, d] = rowsOf(sum);
  const unit = attrs?.unitOffset === true ? 1 : 0;
  const s2 = view(sum, [rows, d]);
  const dy2 = view(dy, [rows, d]);
  const rinv = b.runWebGPUProgram(rmsInvProgram(rows, d), [s2], 'float32', [
    ...i32(rows, d),
    ...f32(Number(attrs?.eps ?? 1e-6)),
  ]);
  const dx = b.runWebGPUProgram(
    addRmsNormDxProgram(rows, d),
    [dy2, s2, weight, rinv, view(dsum, [rows, d])],
    'float32',
    i32(rows, d, unit),
  );
  const dw = b.runWebGPUProgram(rmsNormDwProgram(d), [dy2, s2, rinv], 'float32', i32(rows, d));
  b.disposeData(rinv.dataId);
  return [view(dx, sum.shape), dw];
}

/**
 * `ParaSwiGluScaled` (forward only): `gate [B, T, F]`, `up` (same), `scale [B or 1, 1, F]` →
 * `silu(gate) · up · scale` in one dispatch.
 */
function swigluScaledKernel({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const b = backend as WebGpuBackendLike;
  const { gate, up, scale } = inputs as {
    gate: tf.TensorInfo;
    up: tf.TensorInfo;
    scale: tf.TensorInfo;
  };
  const n = size(gate.shape);
  const F = gate.shape[gate.shape.length - 1] as number;
  const T = gate.shape.length === 3 ? (gate.shape[1] as number) : 1;
  const out = b.runWebGPUProgram(
    swigluScaledProgram(n),
    [view(gate, [n]), view(up, [n]), view(scale, [size(scale.shape)])],
    'float32',
    i32(T, F, scale.shape[0] as number),
  );
  return view(out, gate.shape);
}

function swigluKernel({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const b = backend as WebGpuBackendLike;
  const { gate, up } = inputs as { gate: tf.TensorInfo; up: tf.TensorInfo };
  const n = size(gate.shape);
  const out = b.runWebGPUProgram(swigluProgram(n), [view(gate, [n]), view(up, [n])], 'float32');
  return view(out, gate.shape);
}

function swigluGradKernel({ inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const b = backend as WebGpuBackendLike;
  const { dy, gate, up } = inputs as { dy: tf.TensorInfo; gate: tf.TensorInfo; up: tf.TensorInfo };
  const n = size(gate.shape);
  const [dy1, g1, u1] = [view(dy, [n]), view(gate, [n]), view(up, [n])];
  const dg = b.runWebGPUProgram(swigluDgateProgram(n), [dy1, g1, u1], 'float32');
  const du = b.runWebGPUProgram(swigluDupProgram(n), [dy1, g1], 'float32');
  return [view(dg, gate.shape), view(du, gate.shape)];
}

function ropeKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const b = backend as WebGpuBackendLike;
  const { x, cos, sin } = inputs as { x: tf.TensorInfo; cos: tf.TensorInfo; sin: tf.TensorInfo };
  const shape = x.shape as [number, number, number, number];
  const [, h, t, hd] = shape;
  const tableBatch = cos.shape[0] as number;
  const n = size(shape);
  const out = b.runWebGPUProgram(
    ropeProgram(shape, attrs?.inverse === true),
    [view(x, [n]), view(cos, [size(cos.shape)]), view(sin, [size(sin.shape)])],
    'float32',
    i32(h, t, hd, tableBatch),
  );
  return view(out, x.shape);
}

/**
 * `ParaAttention` (forward only; @para/ops' attention() dispatches to it outside gradient
 * recording): inputs `q
 * [B, Hq, T, hd]`, `k`/`v [B, Hkv, S, hd]` (Hq a multiple of Hkv), optionally `mask [B or 1, 1,
 * T, S]` (additive); attr `scale` (default 1/√hd). Output `[B, Hq, T, hd]`: exactly @para/ops'
 * `attention(q, k, v, mask, { scale })` (no softcap) in one dispatch. No gradient: for decode
 * and prefill outside a gradient tape. hd ≤ 256.
 */
function attentionKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const b = backend as WebGpuBackendLike;
  const { q, k, v, mask } = inputs as {
    q: tf.TensorInfo;
    k: tf.TensorInfo;
    v: tf.TensorInfo;
    mask?: tf.TensorInfo;
  };
  const [B, hq, t, hd] = q.shape as [number, number, number, number];
  const [, hkv, S] = k.shape as [number, number, number, number];
  if (hd > ATTENTION_MAX_HEAD_DIM || hq % hkv !== 0) {
    throw new Error(
      `ParaAttention: head_dim ${hd} (at most ${ATTENTION_MAX_HEAD_DIM}) and ${hq} query heads over ${hkv} kv heads (a multiple) are not supported`,
    );
  }
  const rows = B * hq * t;
  const scale = attrs?.scale === undefined ? 1 / Math.sqrt(hd) : Number(attrs.scale);
  const masked = mask !== undefined && mask !== null;
  const ins = [view(q, [rows * hd]), view(k, [size(k.shape)]), view(v, [size(v.shape)])];
  if (masked) ins.push(view(mask, [size(mask.shape)]));
  const splits = attentionSplits(rows, S);
  const uniforms = [
    ...i32(rows, hq, hkv, t, S, hd, masked ? (mask.shape[0] as number) : 1),
    ...f32(scale),
    ...i32(splits),
  ];
  if (splits === 0) {
    const out = b.runWebGPUProgram(attentionProgram(rows, hd, masked), ins, 'float32', uniforms);
    return view(out, q.shape);
  }
  // Split-K: rows × splits workgroups (one key tile each), then one combining pass.
  const parts = b.runWebGPUProgram(
    attentionProgram(rows, hd, masked, splits),
    ins,
    'float32',
    uniforms,
  );
  const out = b.runWebGPUProgram(
    attentionCombineProgram(rows, hd),
    [parts],
    'float32',
    i32(hd, splits),
  );
  b.disposeData(parts.dataId);
  return view(out, q.shape);
}

/** Split-K only where few query rows would leave most of a GPU idle over a long cache. */
const SPLIT_BELOW_ROWS = 128;
let splitMode: 'auto' | 'never' | 'always' = 'auto';

/** Tests: force (`always`: every cache longer than one tile) or forbid split-K attention. */
export function overrideAttentionSplit(mode: 'auto' | 'never' | 'always'): void {
  splitMode = mode;
}

/** Key tiles per row for split-K (0: one workgroup per row over every tile). */
function attentionSplits(rows: number, S: number): number {
  if (S <= ATTENTION_CHUNK || splitMode === 'never') return 0;
  if (splitMode === 'auto' && rows >= SPLIT_BELOW_ROWS) return 0;
  return Math.ceil(S / ATTENTION_CHUNK);
}

/**
 * The kernels this package registers for `webgpu`, by the names @para/ops dispatches to (its
 * `FUSED_KERNELS`; the contract — inputs, attrs, outputs, math — is documented in
 * packages/ops/src/fused.ts).
 */
const KERNELS: Record<string, (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]> = {
  ParaRmsNorm: rmsNormKernel,
  ParaRmsNormGrad: rmsNormGradKernel,
  ParaSwiGlu: swigluKernel,
  ParaSwiGluGrad: swigluGradKernel,
  ParaRope: ropeKernel,
  ParaAddRmsNorm: addRmsNormKernel as unknown as (args: KernelArgs) => tf.TensorInfo[],
  ParaAddRmsNormGrad: addRmsNormGradKernel,
  ParaSwiGluScaled: swigluScaledKernel,
  ParaRopeKvWrite: ropeKvWriteKernel as unknown as (args: KernelArgs) => tf.TensorInfo,
  ParaAttention: attentionKernel,
};

/** Names of the kernels {@link installWebGpuKernels} registers. */
export const WEBGPU_KERNEL_NAMES: readonly string[] = Object.freeze(Object.keys(KERNELS));

/**
 * Register the fused WGSL kernels for the `webgpu` backend (idempotent; a name another package
 * already registered for webgpu is left alone). Call it once after `@tensorflow/tfjs-backend-webgpu`
 * is imported; @para/ops then dispatches rmsNorm, swiglu and applyRope (and their gradients) to
 * them whenever webgpu is the active backend. Returns whether every kernel is now ours.
 */
export function installWebGpuKernels(): boolean {
  let all = true;
  for (const [name, fn] of Object.entries(KERNELS)) {
    const existing = tf.getKernel(name, 'webgpu');
    if (existing === undefined) {
      tf.registerKernel({
        kernelName: name,
        backendName: 'webgpu',
        kernelFunc: fn as unknown as tf.KernelFunc,
      });
    } else if (existing.kernelFunc !== (fn as unknown)) {
      all = false;
    }
  }
  return all;
}

/** Unregister this package's webgpu kernels (the generic tfjs path runs again). */
export function uninstallWebGpuKernels(): void {
  for (const [name, fn] of Object.entries(KERNELS)) {
    if (tf.getKernel(name, 'webgpu')?.kernelFunc === (fn as unknown)) {
      tf.unregisterKernel(name, 'webgpu');
    }
  }
}

/** Whether every kernel of this package is registered for webgpu. */
export function webGpuKernelsInstalled(): boolean {
  return Object.entries(KERNELS).every(
    ([name, fn]) => tf.getKernel(name, 'webgpu')?.kernelFunc === (fn as unknown),
  );
}
