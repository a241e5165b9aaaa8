import * as tf from '@tensorflow/tfjs-core';

/**
 * Fast `BatchMatMul` / `_FusedMatMul` for tfjs-backend-wasm 4.22 (JS only, every platform).
 *
 * Stock wasm takes its XNNPACK fully-connected path only for one untransposed matmul with batch 1
 * on both sides; anything transposed, batched or broadcast runs a scalar loop 10-30x slower, and
 * every matmul gradient is transposed. These kernels bring every case to that fast path:
 * transposes are materialised with the wasm Transpose kernel, `[B, M, K] x [K, N]` is folded into
 * one `[B*M, K] x [K, N]` call, and genuinely batched products (attention) run one fast call per
 * batch on views of the wasm heap, writing straight into the output. A bias that is not one row
 * is added afterwards with the wasm Add kernel. What is left (non-float32, unknown activations,
 * shapes the original rejects, tiny batched products) goes to the original kernel. The wasm
 * function is the package's own `_FusedMatMul` export, always called untransposed with batch 1:
 * exactly its fast-path condition.
 */

/** What a wasm tensor's entry in the backend's `dataIdMap` holds (the fields we use). */
interface WasmTensorData {
  id: number;
  memoryOffset: number;
}

/** The Emscripten module inside the backend (structural, so we need no import). */
interface WasmModuleLike {
  HEAPU8: Uint8Array;
  cwrap(ident: string, returnType: null, argTypes: string[]): (...args: unknown[]) => void;
  tfjs: {
    registerTensor(id: number, size: number, memoryOffset: number): void;
    disposeData(id: number): void;
  };
}

/** The part of tfjs-backend-wasm's `BackendWasm` these kernels use. */
interface WasmBackendLike {
  wasm: WasmModuleLike;
  dataIdMap: { get(dataId: tf.DataId): WasmTensorData | undefined };
  dataIdNextNumber: number;
  makeOutput(
    shape: number[],
    dtype: tf.DataType,
    memoryOffset?: number,
    values?: tf.backend_util.BackendValues,
  ): tf.TensorInfo;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
  readSync(dataId: tf.DataId): tf.backend_util.BackendValues;
}

interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}

/** `_FusedMatMul`'s wasm export: ids, shapes as int32 bytes, flags, activation, bias/prelu ids. */
type WasmFusedMatMul = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  transposeA: number,
  transposeB: number,
  activation: number,
  biasId: number,
  preluWeightsId: number,
  leakyreluAlpha: number,
  outId: number,
) => void;

/** Activation codes of the wasm backend (`FusableActivation` in its kernels/types). */
const ACTIVATIONS: Readonly<Record<string, number>> = {
  linear: 0,
  relu: 1,
  relu6: 2,
  prelu: 3,
  leakyrelu: 4,
  sigmoid: 5,
  elu: 6,
};

const KERNELS = ['BatchMatMul', '_FusedMatMul'] as const;
type MatmulKernelName = (typeof KERNELS)[number];

/** Below this many multiply-adds per batch, the original loop beats one fast call per batch. */
const MIN_MACS_PER_BATCH = 2048;

const originals = new Map<MatmulKernelName, tf.KernelConfig>();
const replacements = new Map<MatmulKernelName, tf.KernelFunc>();
const wasmFns = new WeakMap<object, WasmFusedMatMul>();

function isWasmBackend(b: unknown): b is WasmBackendLike {
  const x = b as Partial<WasmBackendLike> | null;
  return (
    x != null &&
    typeof x.makeOutput === 'function' &&
    typeof x.disposeData === 'function' &&
    typeof x.dataIdNextNumber === 'number' &&
    typeof x.dataIdMap?.get === 'function' &&
    typeof x.wasm?.cwrap === 'function' &&
    typeof x.wasm.tfjs?.registerTensor === 'function' &&
    typeof x.wasm.tfjs.disposeData === 'function'
  );
}

/** The wasm `_FusedMatMul` export, wrapped once per backend instance. */
function fusedFn(backend: WasmBackendLike): WasmFusedMatMul {
  let fn = wasmFns.get(backend);
  if (fn === undefined) {
    const n = 'number';
    fn = backend.wasm.cwrap('_FusedMatMul', null, [
      n,
      'array',
      n,
      n,
      'array',
      n,
      n,
      n,
      n,
      n,
      n,
      n,
      n,
    ]) as WasmFusedMatMul;
    wasmFns.set(backend, fn);
  }
  return fn;
}

function sizeOf(shape: readonly number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

/** Broadcast two batch shapes (numpy rules); `null` when they are incompatible. */
function broadcastShape(a: readonly number[], b: readonly number[]): number[] | null {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** For each flat index of `outShape`, the flat index into `shape` broadcast to it. */
function broadcastIndices(shape: readonly number[], outShape: readonly number[]): Int32Array {
  const total = sizeOf(outShape);
  const idx = new Int32Array(total);
  const rank = outShape.length;
  // stride of each output dim in `shape` (0 where `shape` broadcasts)
  const strides = new Array<number>(rank).fill(0);
  let stride = 1;
  for (let i = rank - 1; i >= 0; i--) {
    const d = shape[shape.length - rank + i] ?? 1;
    strides[i] = d === 1 ? 0 : stride;
    stride *= d;
  }
  for (let flat = 0; flat < total; flat++) {
    let rem = flat;
    let src = 0;
    for (let i = rank - 1; i >= 0; i--) {
      const d = outShape[i] as number;
      src += (rem % d) * (strides[i] as number);
      rem = Math.floor(rem / d);
    }
    idx[flat] = src;
  }
  return idx;
}

function shapeBytes(shape: readonly number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}

/** A float32 tensor in the wasm heap: its wasm id, byte offset, and whether this call made it. */
interface HeapTensor {
  id: number;
  offset: number;
  temporary: boolean;
}

function heapTensor(backend: WasmBackendLike, dataId: tf.DataId, temporary = false): HeapTensor {
  const d = backend.dataIdMap.get(dataId);
  if (d === undefined) throw new Error('wasm matmul: tensor not found in the wasm backend');
  return { id: d.id, offset: d.memoryOffset, temporary };
}

/**
 * Temporary wasm tensors of one kernel call: backend tensors (freed with `disposeData`) and
 * views (ids registered on memory owned by another tensor; only the id is released, which also
 * drops any XNNPACK operator cached on it).
 */
class Scratch {
  private readonly owned: tf.DataId[] = [];
  private readonly views: number[] = [];
  constructor(private readonly backend: WasmBackendLike) {}

  /** A new float32 backend tensor; `values` are copied in. */
  alloc(shape: number[], values?: Float32Array): tf.TensorInfo {
    const t = this.backend.makeOutput(shape, 'float32', undefined, values);
    this.owned.push(t.dataId);
    return t;
  }

  own(t: tf.TensorInfo): void {
    this.owned.push(t.dataId);
  }

  /** Register `size` floats at byte `offset` as a tensor id (no allocation). */
  view(offset: number, size: number): number {
    const id = this.backend.dataIdNextNumber++;
    this.backend.wasm.tfjs.registerTensor(id, size, offset);
    this.views.push(id);
    return id;
  }

  release(): void {
    for (const id of this.views) this.backend.wasm.tfjs.disposeData(id);
    for (const dataId of this.owned) this.backend.disposeData(dataId);
    this.views.length = 0;
    this.owned.length = 0;
  }
}

/** Fused attributes, already checked against what the fast path supports. */
interface Epilogue {
  activation: number;
  bias: tf.TensorInfo | null;
  /**
   * `row`: the bias varies only along N (or is one value), so XNNPACK adds it to every row;
   * `general`: it varies along other output dims too, and is added by the wasm Add kernel.
   */
  biasKind: 'none' | 'row' | 'general';
  preluWeights: tf.TensorInfo | null;
  leakyreluAlpha: number;
}

const LINEAR: Epilogue = {
  activation: 0,
  bias: null,
  biasKind: 'none',
  preluWeights: null,
  leakyreluAlpha: 0,
};

/**
 * The epilogue of a `_FusedMatMul` call, or null when it is left to the original kernel: an
 * unknown activation, prelu without weights, non-float32 bias/weights, or a bias that does not
 * broadcast to the output `outShape`.
 */
function epilogueOf(
  inputs: tf.NamedTensorInfoMap,
  attrs: tf.NamedAttrMap,
  outShape: number[],
): Epilogue | null {
  const activation = ACTIVATIONS[String(attrs.activation ?? 'linear')];
  if (activation === undefined) return null;
  const n = outShape[outShape.length - 1] as number;
  const bias = inputs.bias ?? null;
  let biasKind: Epilogue['biasKind'] = 'none';
  if (bias !== null) {
    if (bias.dtype !== 'float32') return null;
    const s = bias.shape;
    const broadcast = broadcastShape(outShape, s);
    if (
      broadcast === null ||
      broadcast.length !== outShape.length ||
      broadcast.some((d, i) => d !== outShape[i])
    )
      return null;
    const last = s[s.length - 1] ?? 1;
    biasKind =
      s.slice(0, -1).every((d) => d === 1) && (last === n || last === 1) ? 'row' : 'general';
  }
  const preluWeights =
    activation === ACTIVATIONS.prelu ? (inputs.preluActivationWeights ?? null) : null;
  if (activation === ACTIVATIONS.prelu) {
    if (
      preluWeights === null ||
      preluWeights.dtype !== 'float32' ||
      sizeOf(preluWeights.shape) === 0
    )
      return null;
  }
  const leakyreluAlpha = Number(attrs.leakyreluAlpha ?? 0) || 0;
  return { activation, bias, biasKind, preluWeights, leakyreluAlpha };
}

/** Wasm kernels (by name) that apply each activation code after the fact. */
const ACTIVATION_KERNELS: readonly (string | null)[] = [
  null,
  'Relu',
  'Relu6',
  'Prelu',
  'LeakyRelu',
  'Sigmoid',
  'Elu',
];

function runWasmKernel(
  name: string,
  backend: WasmBackendLike,
  inputs: tf.NamedTensorInfoMap,
  attrs: tf.NamedAttrMap = {},
): tf.TensorInfo {
  const kernel = tf.getKernel(name, 'wasm');
  if (kernel === undefined) throw new Error(`wasm ${name} kernel is not registered`);
  return kernel.kernelFunc({
    inputs,
    backend: backend as unknown as tf.KernelBackend,
    attrs,
  }) as tf.TensorInfo;
}

/**
 * Bias and activation applied to a finished linear product with the wasm backend's own
 * kernels (for what the in-kernel epilogue cannot do). Consumes `x`; returns the result.
 */
function applyEpilogue(backend: WasmBackendLike, x: tf.TensorInfo, ep: Epilogue): tf.TensorInfo {
  let cur = x;
  const step = (next: tf.TensorInfo): void => {
    backend.disposeData(cur.dataId);
    cur = next;
  };
  if (ep.bias !== null) step(runWasmKernel('Add', backend, { a: cur, b: ep.bias })); // [...batch, M, N]
  const name = ACTIVATION_KERNELS[ep.activation] ?? null;
  if (name === 'Prelu')
    step(runWasmKernel(name, backend, { x: cur, alpha: ep.preluWeights as tf.TensorInfo }));
  else if (name === 'LeakyRelu')
    step(runWasmKernel(name, backend, { x: cur }, { alpha: ep.leakyreluAlpha }));
  else if (name !== null) step(runWasmKernel(name, backend, { x: cur }));
  return cur;
}

/** A length-`n` bias: the input itself, or a single value spread to `n`. */
function rowBias(
  backend: WasmBackendLike,
  scratch: Scratch,
  bias: tf.TensorInfo | null,
  n: number,
): HeapTensor | null {
  if (bias === null) return null;
  if (sizeOf(bias.shape) === n) return heapTensor(backend, bias.dataId);
  const value = (backend.readSync(bias.dataId) as Float32Array)[0] ?? 0;
  const full = scratch.alloc([n], new Float32Array(n).fill(value)); // [N]
  return heapTensor(backend, full.dataId, true);
}

/**
 * Transpose the last two dims of `x` seen as `[batch, rows, cols]`, with the wasm Transpose
 * kernel. When rows or cols is 1 the layout is already the transposed one: `x` is returned
 * under a new id, since XNNPACK's operator cache would mistake it for `x` seen as `[cols, rows]`.
 */
function transposeLastTwo(
  backend: WasmBackendLike,
  scratch: Scratch,
  x: tf.TensorInfo,
  batch: number,
  rows: number,
  cols: number,
): HeapTensor {
  if (rows === 1 || cols === 1) {
    const offset = heapTensor(backend, x.dataId).offset;
    return { id: scratch.view(offset, batch * rows * cols), offset, temporary: true };
  }
  const x3 = { dataId: x.dataId, shape: [batch, rows, cols], dtype: x.dtype }; // [batch, rows, cols]
  const xt = runWasmKernel('Transpose', backend, { x: x3 }, { perm: [0, 2, 1] }); // [batch, cols, rows]
  scratch.own(xt);
  return heapTensor(backend, xt.dataId, true);
}

/**
 * The matmul on the fast path, or null to let the original kernel handle the call (which then
 * computes it or throws its own error).
 */
function fastMatmul(args: KernelArgs, fused: boolean): tf.TensorInfo | null {
  const backend = args.backend;
  if (!isWasmBackend(backend)) return null;
  const a = args.inputs.a;
  const b = args.inputs.b;
  const attrs = args.attrs ?? {};
  if (a === undefined || b === undefined || a.dtype !== 'float32' || b.dtype !== 'float32')
    return null;
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) return null;
  const transposeA = Boolean(attrs.transposeA);
  const transposeB = Boolean(attrs.transposeB);
  const m = a.shape[transposeA ? ra - 1 : ra - 2] as number;
  const k = a.shape[transposeA ? ra - 2 : ra - 1] as number;
  const kb = b.shape[transposeB ? rb - 1 : rb - 2] as number;
  const n = b.shape[transposeB ? rb - 2 : rb - 1] as number;
  if (k !== kb) return null;
  const batchShapeA = a.shape.slice(0, -2);
  const batchShapeB = b.shape.slice(0, -2);
  const outBatchShape = broadcastShape(batchShapeA, batchShapeB);
  if (outBatchShape === null) return null;
  const outShape = [...outBatchShape, m, n];
  const epilogue = fused ? epilogueOf(args.inputs, attrs, outShape) : LINEAR;
  if (epilogue === null) return null;

  const batchA = sizeOf(batchShapeA);
  const batchB = sizeOf(batchShapeB);
  const batches = sizeOf(outBatchShape);
  const outSize = batches * m * n;
  // One call when b has a single batch (a's batches fold into rows) or k is 0; else one per batch.
  const perBatch = batchB !== 1 && k > 0 && outSize > 0;
  // tiny per-batch products: the original loop is cheaper than a call per batch. Not for
  // _FusedMatMul (its loop adds a bias wrongly past row 0), nor when batch dims broadcast both
  // ways ([2, 1] x [1, 3]: the original only computes max(2, 3) batches).
  const originalBroadcasts =
    batches === Math.max(batchA, batchB) && (batchA === batchB || batchA === 1);
  if (perBatch && !fused && originalBroadcasts && m * n * k < MIN_MACS_PER_BATCH) return null;
  // prelu weights repeat every `size` outputs, per-batch calls see m*n outputs each; a bias
  // that is not one row cannot be added by XNNPACK: both are then applied after the product
  const w = epilogue.preluWeights;
  const splitEpilogue =
    epilogue.biasKind === 'general' || (perBatch && w !== null && (m * n) % sizeOf(w.shape) !== 0);
  const inKernel = splitEpilogue ? LINEAR : epilogue;

  const run = fusedFn(backend);
  const out = backend.makeOutput(outShape, 'float32'); // [...batch, M, N]
  if (outSize === 0) return out;
  const scratch = new Scratch(backend);
  try {
    const outT = heapTensor(backend, out.dataId);
    const bias = rowBias(backend, scratch, inKernel.bias, n);
    const prelu =
      inKernel.preluWeights === null ? 0 : heapTensor(backend, inKernel.preluWeights.dataId).id;
    // XNNPACK caches one packed operator per (b id, bias id) and drops it when either id is
    // disposed. A temporary b or bias is paired with a temporary id of the other, so the cache
    // lists of long-lived tensors (weights, bias variables) do not grow with every call.
    let biasView = 0;
    const call = (aId: number, rows: number, kk: number, bMat: HeapTensor, outId: number): void => {
      let bId = bMat.id;
      let biasId = bias?.id ?? 0;
      if (bias !== null && bMat.temporary && !bias.temporary) {
        biasView ||= scratch.view(bias.offset, n);
        biasId = biasView;
      } else if (bias?.temporary && !bMat.temporary) {
        bId = scratch.view(bMat.offset, kk * n);
      }
      run(
        aId,
        shapeBytes([1, rows, kk]),
        3,
        bId,
        shapeBytes([1, kk, n]),
        3,
        0,
        0,
        inKernel.activation,
        biasId,
        prelu,
        inKernel.leakyreluAlpha,
        outId,
      );
    };

    if (k === 0) {
      // empty sums: a zero product with k = 1 still gets bias and activation
      const rows = batches * m;
      const za = scratch.alloc([rows, 1], new Float32Array(rows)); // [rows, 1]
      const zb = scratch.alloc([1, n], new Float32Array(n)); // [1, N]
      call(
        heapTensor(backend, za.dataId).id,
        rows,
        1,
        heapTensor(backend, zb.dataId, true),
        outT.id,
      );
    } else {
      // a as [batchA, M, K] and b as [batchB, K, N], row-major
      const aT = transposeA
        ? transposeLastTwo(backend, scratch, a, batchA, k, m)
        : heapTensor(backend, a.dataId);
      const bT = transposeB
        ? transposeLastTwo(backend, scratch, b, batchB, n, k)
        : heapTensor(backend, b.dataId);
      if (!perBatch) {
        // b has one batch: the batches of a are more rows of one [batchA*M, K] x [K, N] product
        call(aT.id, batchA * m, k, bT, outT.id);
      } else {
        const ia = broadcastIndices(batchShapeA, outBatchShape);
        const ib = broadcastIndices(batchShapeB, outBatchShape);
        // one view per distinct batch of a / b: XNNPACK packs b once per view id
        const aViews = new Map<number, number>();
        const bViews = new Map<number, number>();
        const viewOf = (
          views: Map<number, number>,
          base: number,
          index: number,
          size: number,
        ): number => {
          let id = views.get(index);
          if (id === undefined) {
            id = scratch.view(base + index * size * 4, size);
            views.set(index, id);
          }
          return id;
        };
        for (let i = 0; i < batches; i++) {
          const av = viewOf(aViews, aT.offset, ia[i] as number, m * k);
          const bv = viewOf(bViews, bT.offset, ib[i] as number, k * n);
          const bMat = {
            id: bv,
            offset: bT.offset + (ib[i] as number) * k * n * 4,
            temporary: true,
          };
          call(av, m, k, bMat, scratch.view(outT.offset + i * m * n * 4, m * n));
        }
      }
    }
  } catch (e) {
    scratch.release();
    backend.disposeData(out.dataId);
    throw e;
  }
  scratch.release();
  return splitEpilogue ? applyEpilogue(backend, out, epilogue) : out;
}

function replacementFor(name: MatmulKernelName, original: tf.KernelConfig): tf.KernelFunc {
  const fused = name === '_FusedMatMul';
  const kernelFunc = (args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] =>
    fastMatmul(args, fused) ?? original.kernelFunc(args as Parameters<tf.KernelFunc>[0]);
  return kernelFunc as tf.KernelFunc;
}

/**
 * Replace the wasm backend's `BatchMatMul` and `_FusedMatMul` with the fast-path kernels. Call
 * after '@tensorflow/tfjs-backend-wasm' is imported (its kernels registered), before or after
 * the backend starts. Idempotent. Returns false when the wasm kernels are not registered.
 */
export function installWasmMatmulFix(): boolean {
  for (const name of KERNELS) {
    const current = tf.getKernel(name, 'wasm');
    if (current === undefined) return false;
  }
  for (const name of KERNELS) {
    const current = tf.getKernel(name, 'wasm') as tf.KernelConfig;
    if (replacements.get(name) === current.kernelFunc) continue;
    const kernelFunc = replacementFor(name, current);
    tf.unregisterKernel(name, 'wasm');
    // keep the original setupFunc: the engine runs it when wasm starts, and the fallback needs it
    tf.registerKernel({ ...current, kernelFunc });
    originals.set(name, current);
    replacements.set(name, kernelFunc);
  }
  return true;
}

/** Put the original wasm kernels back (for tests and benchmarks). No-op when not installed. */
export function uninstallWasmMatmulFix(): void {
  for (const name of KERNELS) {
    const original = originals.get(name);
    const current = tf.getKernel(name, 'wasm');
    if (
      original === undefined ||
      current === undefined ||
      current.kernelFunc !== replacements.get(name)
    )
      continue;
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(original);
    originals.delete(name);
    replacements.delete(name);
  }
}

/** Whether the fast-path kernels are the registered wasm matmul kernels. */
export function wasmMatmulFixInstalled(): boolean {
  return KERNELS.every((name) => {
    const current = tf.getKernel(name, 'wasm');
    return current !== undefined && current.kernelFunc === replacements.get(name);
  });
}
