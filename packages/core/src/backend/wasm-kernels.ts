import * as tf from '@tensorflow/tfjs-core';

/**
 * Kernels that training needs and tfjs-backend-wasm 4.22 lacks, registered for `wasm`.
 * Written by hand because no package provides them; each is tested against the cpu backend.
 */

/** The part of tfjs-backend-wasm's `BackendWasm` these kernels use (structural, so we need no import). */
interface WasmBackendLike {
  readSync(dataId: tf.DataId): tf.backend_util.BackendValues;
  makeOutput(
    shape: number[],
    dtype: tf.DataType,
    memoryOffset?: number,
    values?: tf.backend_util.BackendValues,
  ): tf.TensorInfo;
  /** Drops one reference to the data (frees it at the last). */
  disposeData(dataId: tf.DataId): boolean;
  /** Present on tfjs-backend-wasm: the tensor's byte offset on the heap. */
  dataIdMap?: { get(dataId: tf.DataId): { memoryOffset?: number | null } | undefined };
  wasm?: { HEAPU8: Uint8Array };
}

/**
 * UnsortedSegmentSum: out[s, ...] = Σ_{i : ids[i] = s} x[i, ...]. The gradient of `gather`
 * (embedding lookup) is made of it. Ids outside [0, numSegments) are dropped, as in TensorFlow.
 */
function unsortedSegmentSum(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const x = args.inputs.x as tf.TensorInfo;
  const ids = args.inputs.segmentIds as tf.TensorInfo;
  const numSegments = (args.attrs as { numSegments: number }).numSegments;

  const idRank = ids.shape.length;
  const inner = x.shape.slice(idRank).reduce((a, b) => a * b, 1); // elements per segment row
  const outShape = [numSegments, ...x.shape.slice(idRank)]; // [numSegments, ...inner]
  const xv = backend.readSync(x.dataId) as Float32Array | Int32Array;
  const idv = backend.readSync(ids.dataId) as Int32Array;
  const n = numSegments * inner;
  // Accumulate straight into the output's heap memory: the embedding gradient is [vocab, d]
  // (4 MB for the bundled backbone), and building it in a JavaScript array first, then copying
  // it onto the heap, was 14% of a 16-example full fine-tuning update (profile-kernels.mjs).
  let result: tf.TensorInfo | undefined;
  let out: Float32Array | Int32Array;
  if (backend.dataIdMap !== undefined && backend.wasm !== undefined) {
    result = backend.makeOutput(outShape, x.dtype);
    const off = backend.dataIdMap.get(result.dataId)?.memoryOffset;
    const heap = backend.wasm.HEAPU8.buffer; // read after the allocation (the heap can grow)
    if (typeof off !== 'number') throw new Error('UnsortedSegmentSum: output has no heap offset');
    out = x.dtype === 'int32' ? new Int32Array(heap, off, n) : new Float32Array(heap, off, n);
    out.fill(0); // the heap's allocator does not zero
  } else {
    out = x.dtype === 'int32' ? new Int32Array(n) : new Float32Array(n);
  }
  for (let i = 0; i < idv.length; i++) {
    const s = idv[i] as number;
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++)
      out[dst + j] = (out[dst + j] as number) + (xv[src + j] as number);
  }
  return result ?? backend.makeOutput(outShape, x.dtype, undefined, out);
}

/**
 * Identity (`tf.clone`, and the engine's copy of every tensor a gradient saves for backward:
 * `saveTensorsForBackwardMode` clones each one) without copying: the output shares the input's
 * heap memory and bumps its reference count, as tfjs's own wasm `Reshape` does and as the cpu and
 * webgpu backends' Identity already do. tfjs-backend-wasm's Identity copies the data: 200–365
 * copies per training update of the bundled backbone (≈ 7% of a 16-example update in
 * packages/blas/scripts/profile-kernels.mjs). Tensors are immutable, so sharing is exact; the one
 * storage para writes in place (the KV cache) hands out views that are valid until its next write
 * on every backend, and a clone of a view is such a view (as on cpu and webgpu). Strings keep the
 * original kernel.
 */
function makeSharedIdentity(original: tf.KernelFunc): tf.KernelFunc {
  return ((args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }) => {
    const x = args.inputs.x as tf.TensorInfo;
    const backend = args.backend as { incRef?(dataId: tf.DataId): void };
    if (x.dtype === 'string' || typeof backend.incRef !== 'function')
      return original(args as Parameters<tf.KernelFunc>[0]);
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  }) as tf.KernelFunc;
}

/** A float32 or int32 view of a tensor's heap memory (valid until the next allocation). */
function heapView(
  backend: WasmBackendLike,
  t: tf.TensorInfo,
): Float32Array | Int32Array | undefined {
  const off = backend.dataIdMap?.get(t.dataId)?.memoryOffset;
  const heap = backend.wasm?.HEAPU8.buffer;
  if (typeof off !== 'number' || heap === undefined) return undefined;
  const n = tf.util.sizeFromShape(t.shape);
  return t.dtype === 'int32' ? new Int32Array(heap, off, n) : new Float32Array(heap, off, n);
}

/**
 * GatherV2 (`tf.gather`: the embedding lookup, the multi-tenant adapter tables' rows) as row
 * copies: out[b, o, i, :] = x[b, o, indices[b, i], :] with `TypedArray.set` per row of
 * `sliceSize` elements. tfjs-backend-wasm's Gather computes every element's coordinates on one
 * wasm thread: from a [4096, 512] table, 64 rows 1.04 → 0.024 ms and the 2,048 rows of an 8×256
 * packed batch 36.9 → 0.31 ms (same process, stock kernel then this; BENCHMARKS.md, issue 16
 * part 4). Out-of-range indices throw tfjs's own error; other dtypes keep the original kernel.
 */
function makeRowGather(original: tf.KernelFunc): tf.KernelFunc {
  return ((args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }) => {
    const backend = args.backend as WasmBackendLike;
    const x = args.inputs.x as tf.TensorInfo;
    const indices = args.inputs.indices as tf.TensorInfo;
    const { axis, batchDims } = args.attrs as { axis: number; batchDims: number };
    if (
      (x.dtype !== 'float32' && x.dtype !== 'int32') ||
      indices.dtype !== 'int32' ||
      heapView(backend, x) === undefined
    )
      return original(args as Parameters<tf.KernelFunc>[0]);
    const parsedAxis = tf.util.parseAxisParam(axis, x.shape)[0] as number;
    const axisDim = x.shape[parsedAxis] as number;
    const idx = heapView(backend, indices) as Int32Array;
    for (let i = 0; i < idx.length; i++) {
      const v = idx[i] as number;
      if (!(v >= 0 && v <= axisDim - 1))
        throw new Error(`GatherV2: the index value ${v} is not in [0, ${axisDim - 1}]`);
    }
    const info = tf.backend_util.segment_util.collectGatherOpShapeInfo(
      x as tf.Tensor,
      indices as tf.Tensor,
      parsedAxis,
      batchDims,
    );
    const { batchSize, outerSize, dimSize, sliceSize, outputShape } = info;
    const out = backend.makeOutput(outputShape, x.dtype); // [...x before axis, ...indices, ...x after]
    const perBatch = idx.length / batchSize; // indices per batch row
    if (tf.util.sizeFromShape(outputShape) === 0) return out;
    // Views after the allocation (the heap can grow); indices re-read for the same reason.
    const xv = heapView(backend, x) as Float32Array | Int32Array;
    const ov = heapView(backend, out) as Float32Array | Int32Array;
    const iv = heapView(backend, indices) as Int32Array;
    for (let b = 0; b < batchSize; b++) {
      for (let o = 0; o < outerSize; o++) {
        const srcBase = (b * outerSize + o) * dimSize;
        const dstBase = (b * outerSize + o) * perBatch;
        for (let i = 0; i < perBatch; i++) {
          const src = (srcBase + (iv[b * perBatch + i] as number)) * sliceSize;
          const dst = (dstBase + i) * sliceSize;
          if (sliceSize >= 16) ov.set(xv.subarray(src, src + sliceSize), dst);
          else for (let j = 0; j < sliceSize; j++) ov[dst + j] = xv[src + j] as number;
        }
      }
    }
    return out;
  }) as tf.KernelFunc;
}

/**
 * Sum over a block of axes that is not the last one (the gradients of broadcast multiplies and
 * adds — PARA's per-row scales, biases — reduce over the batch and time axes) as one matmul with
 * a row of ones: x viewed as [outer, R, inner], out[o, :] = ones[1, R] · x[o] (the wasm
 * backend's registered BatchMatMul: OpenBLAS where @para/blas loaded). tfjs-backend-wasm
 * transposes the reduced axes to the end first and then reduces on one thread. A sum over axis 1,
 * stock → this (µs, wasm + OpenBLAS, one process each): [16, 19, 256] 66 → 22, [16, 19, 688]
 * 175 → 96, [8, 256, 256] 2,745 → 142, [1, 4096, 256] 13,888 → 457, [2048, 8, 64] 913 → 145;
 * [8, 256, 1376] 16.1 → 0.21 ms. float32 only; last-axis sums (no transpose there) and the
 * cases below keep the original kernel.
 */
function makeBlockSum(original: tf.KernelFunc): tf.KernelFunc {
  return ((args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }) => {
    const backend = args.backend as WasmBackendLike;
    const x = args.inputs.x as tf.TensorInfo;
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const matMul = tf.getKernel('BatchMatMul', 'wasm');
    const fallback = () => original(args as Parameters<tf.KernelFunc>[0]);
    if (x.dtype !== 'float32' || matMul === undefined || heapView(backend, x) === undefined)
      return fallback();
    const axes = [...tf.util.parseAxisParam(axis, x.shape)].sort((a, b) => a - b);
    const first = axes[0];
    const last = axes[axes.length - 1];
    if (first === undefined || last === undefined || last - first !== axes.length - 1)
      return fallback();
    const size = (dims: number[]) => dims.reduce((p, d) => p * d, 1);
    const outer = size(x.shape.slice(0, first));
    const R = size(x.shape.slice(first, last + 1)); // reduced elements per output
    const inner = size(x.shape.slice(last + 1));
    // Tiny blocks (R·inner < 256: [512, 4, 16] took 33 µs stock, 51 as 512 small products) and
    // last-axis sums stay with the stock kernel.
    if (inner === 1 || R <= 1 || R * inner < 256 || outer === 0) return fallback();
    const outShape = keepDims
      ? x.shape.map((d, i) => (i >= first && i <= last ? 1 : d))
      : x.shape.filter((_, i) => i < first || i > last);
    const ones = backend.makeOutput([outer, 1, R], 'float32'); // [outer, 1, R]
    (heapView(backend, ones) as Float32Array).fill(1);
    const xBlock = { dataId: x.dataId, shape: [outer, R, inner], dtype: x.dtype }; // a view: same memory
    const out = matMul.kernelFunc({
      inputs: { a: ones, b: xBlock },
      attrs: { transposeA: false, transposeB: false },
      backend: args.backend as tf.KernelBackend,
    }) as tf.TensorInfo; // [outer, 1, inner]
    backend.disposeData(ones.dataId);
    return { dataId: out.dataId, shape: outShape, dtype: 'float32' };
  }) as tf.KernelFunc;
}

const replacements = new Map<string, tf.KernelFunc>();

function replaceWasmKernel(
  name: string,
  make: (original: tf.KernelFunc) => tf.KernelFunc,
): boolean {
  const current = tf.getKernel(name, 'wasm');
  if (current === undefined) return false;
  if (current.kernelFunc === replacements.get(name)) return true;
  const replacement = make(current.kernelFunc);
  replacements.set(name, replacement);
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ ...current, kernelFunc: replacement });
  return true;
}

/** Kernels of tfjs-backend-wasm that `installWasmKernelReplacements` replaces. */
export const WASM_REPLACED_KERNELS = ['Identity', 'GatherV2', 'Sum'] as const;

/**
 * Replace tfjs-backend-wasm's copying `Identity`, its per-element `GatherV2` and its
 * transposing `Sum` with the sharing, row-copying and matmul ones above. Call after '@tensorflow/tfjs-backend-wasm' is imported (it
 * registers its own kernels on import, which would overwrite ones registered earlier).
 * Idempotent; false when the wasm kernels are not registered.
 */
export function installWasmKernelReplacements(): boolean {
  const identity = replaceWasmKernel('Identity', makeSharedIdentity);
  const gather = replaceWasmKernel('GatherV2', makeRowGather);
  const sum = replaceWasmKernel('Sum', makeBlockSum);
  return identity && gather && sum;
}

/** Kernels registered for wasm by `registerWasmKernels`. */
export const WASM_EXTRA_KERNELS = ['UnsortedSegmentSum'] as const;

/** Register the missing kernels for `wasm`; safe to call more than once. */
export function registerWasmKernels(): void {
  if (tf.getKernel('UnsortedSegmentSum', 'wasm') === undefined) {
    tf.registerKernel({
      kernelName: 'UnsortedSegmentSum',
      backendName: 'wasm',
      kernelFunc: unsortedSegmentSum as tf.KernelFunc,
    });
  }
}
