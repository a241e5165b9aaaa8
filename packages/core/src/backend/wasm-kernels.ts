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
