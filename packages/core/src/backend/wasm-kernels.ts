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
  const out =
    x.dtype === 'int32'
      ? new Int32Array(numSegments * inner)
      : new Float32Array(numSegments * inner);
  for (let i = 0; i < idv.length; i++) {
    const s = idv[i] as number;
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++)
      out[dst + j] = (out[dst + j] as number) + (xv[src + j] as number);
  }
  return backend.makeOutput(outShape, x.dtype, undefined, out);
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
