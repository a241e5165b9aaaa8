import * as tf from '@tensorflow/tfjs-core';
import {
  ACTIVATIONS,
  type Activation,
  type BlasAddon,
  blasAddon,
  type HeapMatMulSpec,
  type HeapOperand,
  packSpecScratch,
} from './addon';
import { installFusedKernels, uninstallFusedKernels } from './fused';

/*
 * BatchMatMul and _FusedMatMul for tfjs's wasm backend, computed by OpenBLAS directly on the
 * wasm heap. Anything they do not handle (a dtype other than float32, shapes tfjs rejects, a
 * shared heap, more than 8 batch dims, a bias that does not broadcast over [batch, M, N]) goes to
 * the kernel that was registered before, which also produces tfjs's own error messages.
 */

/** The part of a tfjs TensorInfo these kernels use. */
export interface TensorInfoLike {
  dataId: object;
  shape: number[];
  dtype: string;
}

/** The part of tfjs-backend-wasm's BackendWasm these kernels use (structural: no import). */
export interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset?: number | null } | undefined };
  makeOutput(shape: number[], dtype: 'float32'): TensorInfoLike;
  disposeData(dataId: object, force?: boolean): boolean;
}

export interface KernelArgs {
  inputs: Record<string, TensorInfoLike | undefined>;
  backend: unknown;
  attrs?: Record<string, unknown>;
}

const MAX_BATCH_DIMS = 8;

interface Plan {
  /** Output shape: [...batch, M, N]. */
  outShape: number[];
  spec: Omit<HeapMatMulSpec, 'a' | 'b' | 'c' | 'bias' | 'prelu'>;
  /** Flat output batch size. */
  batch: number;
}

const size = (shape: number[]) => shape.reduce((x, y) => x * y, 1);

/** Row-major strides of a shape. */
function stridesOf(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d] as number;
  }
  return s;
}

/** Plan op(A) · op(B) with true (numpy) batch broadcasting; undefined = leave it to the original. */
function planMatMul(
  a: TensorInfoLike,
  b: TensorInfoLike,
  transA: boolean,
  transB: boolean,
): Plan | undefined {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) return undefined;
  const m = (transA ? a.shape[ra - 1] : a.shape[ra - 2]) as number;
  const ka = (transA ? a.shape[ra - 2] : a.shape[ra - 1]) as number;
  const kb = (transB ? b.shape[rb - 1] : b.shape[rb - 2]) as number;
  const n = (transB ? b.shape[rb - 2] : b.shape[rb - 1]) as number;
  if (ka !== kb) return undefined;
  const k = ka;

  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const stA = stridesOf(batchA).map((s) => s * m * k);
  const stB = stridesOf(batchB).map((s) => s * k * n);
  const nb = Math.max(batchA.length, batchB.length);
  const outBatch: number[] = [];
  const batchShape: number[] = [];
  const aStrides: number[] = [];
  const bStrides: number[] = [];
  for (let d = 0; d < nb; d++) {
    const ia = d - (nb - batchA.length);
    const ib = d - (nb - batchB.length);
    const sa = ia >= 0 ? (batchA[ia] as number) : 1;
    const sb = ib >= 0 ? (batchB[ib] as number) : 1;
    if (sa !== sb && sa !== 1 && sb !== 1) return undefined; // tfjs throws the error
    const s = sa === 1 ? sb : sa;
    outBatch.push(s);
    if (s === 1) continue; // size-1 dims address nothing
    batchShape.push(s);
    aStrides.push(sa === 1 ? 0 : (stA[ia] as number));
    bStrides.push(sb === 1 ? 0 : (stB[ib] as number));
  }
  if (batchShape.length > MAX_BATCH_DIMS) return undefined;
  return {
    outShape: [...outBatch, m, n],
    batch: size(outBatch),
    spec: { m, n, k, transA, transB, batchShape, aStrides, bStrides },
  };
}

/**
 * Strides of an epilogue operand (bias, PReLU weights) broadcast over the output viewed as
 * [batch, M, N] (tfjs's fused op hands the kernel rank-3 inputs). Undefined if it does not
 * broadcast that way.
 */
function operandStrides(t: TensorInfoLike, plan: Plan): [number, number, number] | undefined {
  const r = t.shape.length;
  if (r > 3) return undefined;
  const { m, n } = plan.spec;
  const target = [plan.batch, m, n];
  const padded = [...new Array<number>(3 - r).fill(1), ...t.shape];
  // A bias with its own batch dim only lines up with a single output batch dim.
  if ((padded[0] as number) > 1 && plan.outShape.length - 2 > 1) return undefined;
  const st = stridesOf(padded);
  const out: [number, number, number] = [0, 0, 0];
  for (let d = 0; d < 3; d++) {
    const s = padded[d] as number;
    if (s === target[d]) out[d] = s === 1 ? 0 : (st[d] as number);
    else if (s === 1) out[d] = 0;
    else return undefined;
  }
  return out;
}

export function isWasmBackend(backend: unknown): backend is WasmBackendLike {
  const b = backend as Partial<WasmBackendLike> | null;
  return (
    b != null &&
    typeof b.makeOutput === 'function' &&
    b.dataIdMap != null &&
    b.wasm?.HEAPU8 != null &&
    // A shared (threaded) heap is left to the original; the tag check also works across realms.
    Object.prototype.toString.call(b.wasm.HEAPU8.buffer) === '[object ArrayBuffer]'
  );
}

export function offsetOf(backend: WasmBackendLike, t: TensorInfoLike): number {
  const off = backend.dataIdMap.get(t.dataId)?.memoryOffset;
  if (typeof off !== 'number') throw new Error('@para/blas: tensor has no wasm memory offset');
  return off;
}

function operandOf(
  backend: WasmBackendLike,
  o: { t: TensorInfoLike; strides: [number, number, number] },
): HeapOperand {
  return { offset: offsetOf(backend, o.t), length: size(o.t.shape), strides: o.strides };
}

/**
 * Allocate the output, then (the heap may have grown inside makeOutput, detaching the old
 * ArrayBuffer) read the heap and every offset, and compute.
 */
function run(
  addon: BlasAddon,
  backend: WasmBackendLike,
  plan: Plan,
  a: TensorInfoLike,
  b: TensorInfoLike,
  bias?: { t: TensorInfoLike; strides: [number, number, number] },
  prelu?: { t: TensorInfoLike; strides: [number, number, number] },
  activation: Activation = 'linear',
  alpha = 0,
): TensorInfoLike {
  const out = backend.makeOutput(plan.outShape, 'float32');
  if (size(plan.outShape) === 0) return out;
  try {
    const heap = backend.wasm.HEAPU8.buffer as ArrayBuffer;
    // No spec object per call (see packSpecScratch: per-call garbage is what costs here).
    const params = packSpecScratch(
      plan.spec,
      offsetOf(backend, a),
      offsetOf(backend, b),
      offsetOf(backend, out),
      bias === undefined ? undefined : operandOf(backend, bias),
      prelu === undefined ? undefined : operandOf(backend, prelu),
      activation,
      alpha,
    );
    addon.matmulHeap(heap, params);
  } catch (e) {
    backend.disposeData(out.dataId, true);
    throw e;
  }
  return out;
}

function blasBatchMatMul(original: tf.KernelFunc, addon: BlasAddon): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const a = inputs.a;
    const b = inputs.b;
    if (a === undefined || b === undefined || !isWasmBackend(backend)) return original(args);
    const plan = planMatMul(a, b, attrs?.transposeA === true, attrs?.transposeB === true);
    if (plan === undefined) return original(args);
    return run(addon, backend, plan, a, b) as tf.TensorInfo;
  };
}

function blasFusedMatMul(original: tf.KernelFunc, addon: BlasAddon): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const { a, b, bias, preluActivationWeights: preluW } = inputs;
    if (a === undefined || b === undefined || !isWasmBackend(backend)) return original(args);
    const plan = planMatMul(a, b, attrs?.transposeA === true, attrs?.transposeB === true);
    if (plan === undefined) return original(args);
    const activation = (attrs?.activation ?? 'linear') as string;
    if (!Object.hasOwn(ACTIVATIONS, activation)) return original(args);
    let biasOp: { t: TensorInfoLike; strides: [number, number, number] } | undefined;
    if (bias != null) {
      const strides = bias.dtype === 'float32' ? operandStrides(bias, plan) : undefined;
      if (strides === undefined) return original(args);
      biasOp = { t: bias, strides };
    }
    let preluOp: { t: TensorInfoLike; strides: [number, number, number] } | undefined;
    if (activation === 'prelu') {
      if (preluW == null || preluW.dtype !== 'float32') return original(args);
      const strides = operandStrides(preluW, plan);
      if (strides === undefined) return original(args);
      preluOp = { t: preluW, strides };
    }
    const alpha = Number(attrs?.leakyreluAlpha) || 0; // as tfjs-backend-wasm does
    return run(
      addon,
      backend,
      plan,
      a,
      b,
      biasOp,
      preluOp,
      activation as Activation,
      alpha,
    ) as tf.TensorInfo;
  };
}

const KERNELS = ['BatchMatMul', '_FusedMatMul'] as const;

interface Installed {
  originals: Map<string, tf.KernelConfig>;
  ours: Map<string, tf.KernelFunc>;
}
let installed: Installed | undefined;

/**
 * Replace the wasm backend's BatchMatMul and _FusedMatMul with OpenBLAS-backed kernels (keeping
 * each original's setupFunc, and the original as the fallback), and register the fused kernels
 * (`installFusedKernels`, unless PARA_FUSED=0). Call after importing
 * '@tensorflow/tfjs-backend-wasm' (before or after `tf.setBackend('wasm')`). Returns false, and
 * changes nothing, when the addon is unavailable or the wasm kernels are not registered.
 */
export function installBlasKernels(): boolean {
  if (installed !== undefined) return true;
  const addon = blasAddon();
  if (addon === undefined) return false;
  const originals = new Map<string, tf.KernelConfig>();
  for (const name of KERNELS) {
    const config = tf.getKernel(name, 'wasm');
    if (config === undefined) return false;
    originals.set(name, config);
  }
  const ours = new Map<string, tf.KernelFunc>();
  for (const [name, config] of originals) {
    const kernelFunc =
      name === 'BatchMatMul'
        ? blasBatchMatMul(config.kernelFunc, addon)
        : blasFusedMatMul(config.kernelFunc, addon);
    ours.set(name, kernelFunc);
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ ...config, kernelFunc });
  }
  installed = { originals, ours };
  // The fused kernels @para/ops dispatches to (RMSNorm, SwiGLU, RoPE), unless PARA_FUSED=0.
  installFusedKernels();
  return true;
}

/** Put back the kernels `installBlasKernels` replaced. Returns false if none were installed. */
export function uninstallBlasKernels(): boolean {
  if (installed === undefined) return false;
  for (const [name, config] of installed.originals) {
    const current = tf.getKernel(name, 'wasm');
    // Someone registered over ours since: leave theirs in place.
    if (current !== undefined && current.kernelFunc !== installed.ours.get(name)) continue;
    if (current !== undefined) tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(config);
  }
  installed = undefined;
  uninstallFusedKernels();
  return true;
}

/** Whether the OpenBLAS kernels are registered for wasm now. */
export function blasKernelsInstalled(): boolean {
  if (installed === undefined) return false;
  return KERNELS.every(
    (name) => tf.getKernel(name, 'wasm')?.kernelFunc === installed?.ours.get(name),
  );
}
