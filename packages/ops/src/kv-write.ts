import { ParaError } from '@para/core';
import * as tf from '@tensorflow/tfjs-core';

/**
 * In-place slot writes into a preallocated key/value tensor `[B, H, S, hd]` (the KV cache's
 * storage), one small function per backend:
 *
 *   cpu      copies into the backend's own `Float32Array` (`backend.data.get(dataId).values`)
 *   wasm     copies on the wasm heap (`backend.dataIdMap.get(dataId).memoryOffset` into the
 *            heap's ArrayBuffer, read after every allocation: the heap can grow)
 *   webgpu   a tiny compute program whose output binding IS the cache's GPUBuffer, run through
 *            the backend's own `runWebGPUProgram`, so it is recorded in the backend's command
 *            encoder in order with every other kernel (reads of the previous step come first)
 *   other    (webgl, tensorflow, ...) a functional update with constant shapes:
 *            `tf.where(slotMask [B, 1, S, 1], placed [B, H, S|1, hd], cache)`, a new tensor
 *
 * Tensors are immutable in tfjs, so an in-place write is only sound when nothing else relies on
 * the old contents of that storage: the caller (KVCache) allocates the tensor itself
 * (`tf.fill`, fresh storage shared with no other tensor) and never hands it out except as
 * per-step views. Everything here is float32 and exact (copies, no arithmetic).
 */

/** One row's write: `src` row of the new tensor → `row` of the cache, from slot `start`. */
export interface KVWrite {
  src: number;
  row: number;
  start: number;
}

/** `auto`: in place on cpu / wasm / webgpu, functional elsewhere. `functional`: always functional. */
export type KVWriteMode = 'auto' | 'functional';

/** Which implementation a write takes. */
export type KVWritePath = 'cpu' | 'wasm' | 'webgpu' | 'functional';

interface CpuBackendLike {
  data: { get(dataId: tf.DataId): { values?: unknown } | undefined };
}

interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset?: number | null } | undefined };
}

interface WebGPUProgramLike {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  size: boolean;
  getUserCode(): string;
}

interface WebGPUBackendLike {
  runWebGPUProgram(
    program: WebGPUProgramLike,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    uniforms?: unknown,
    output?: tf.TensorInfo,
  ): tf.TensorInfo;
  tensorMap: { get(dataId: tf.DataId): unknown };
}

/** The backend that holds `t`'s data (the engine's record; the active backend if unknown). */
function backendOf(t: tf.Tensor): { name: string; backend: unknown } {
  const engine = tf.engine() as unknown as {
    state?: { tensorInfo?: { get(id: tf.DataId): { backend?: unknown } | undefined } };
    registry?: Record<string, unknown>;
    backendName?: string;
  };
  const backend = engine.state?.tensorInfo?.get(t.dataId)?.backend ?? tf.backend();
  let name = '';
  for (const [n, b] of Object.entries(engine.registry ?? {})) if (b === backend) name = n;
  return { name, backend };
}

function isCpu(b: unknown): b is CpuBackendLike {
  return typeof (b as Partial<CpuBackendLike> | null)?.data?.get === 'function';
}

function isWasm(b: unknown): b is WasmBackendLike {
  const x = b as Partial<WasmBackendLike> | null;
  return (
    x != null &&
    typeof x.dataIdMap?.get === 'function' &&
    x.wasm?.HEAPU8 != null &&
    // A shared (threaded) heap is left to the functional path.
    Object.prototype.toString.call(x.wasm.HEAPU8.buffer) === '[object ArrayBuffer]'
  );
}

function isWebGPU(b: unknown): b is WebGPUBackendLike {
  const x = b as Partial<WebGPUBackendLike> | null;
  return (
    x != null && typeof x.runWebGPUProgram === 'function' && typeof x.tensorMap?.get === 'function'
  );
}

/** The implementation `writeKVSlots` takes for `cache` (a float32 tensor) under `mode`. */
export function kvWritePath(cache: tf.Tensor, mode: KVWriteMode = 'auto'): KVWritePath {
  if (mode === 'functional' || cache.dtype !== 'float32') return 'functional';
  const { name, backend } = backendOf(cache);
  if (name === 'cpu' && isCpu(backend)) return 'cpu';
  if (name === 'wasm' && isWasm(backend)) return 'wasm';
  if (name === 'webgpu' && isWebGPU(backend)) return 'webgpu';
  return 'functional';
}

/**
 * `cache[w.row, h, w.start + t, :] = src[w.src, h, t, :]` for every write `w`, head `h` and
 * `t < T`. `cache` is `[B, H, S, hd]`, `src` `[n, H, T, hd]`, both float32 on the same
 * backend. Returns the tensor that holds the result: `cache` itself when written in place, a
 * new tensor from the functional path (the caller then disposes the old one and keeps the new).
 * Writes must not overlap (each target slot written at most once).
 */
export function writeKVSlots(
  cache: tf.Tensor,
  src: tf.Tensor,
  writes: readonly KVWrite[],
  mode: KVWriteMode = 'auto',
): tf.Tensor {
  const [B, H, S, hd] = cache.shape as [number, number, number, number];
  const [n, Hs, T, hds] = src.shape as [number, number, number, number];
  if (cache.rank !== 4 || src.rank !== 4 || Hs !== H || hds !== hd || src.dtype !== cache.dtype) {
    throw new ParaError(
      'SHAPE_MISMATCH',
      'a KV write needs src [n, H, T, hd] matching the cache [B, H, S, hd]',
      {
        field: 'src',
        expected: `[n, ${H}, T, ${hd}] ${cache.dtype}`,
        actual: `[${src.shape.join(', ')}] ${src.dtype}`,
      },
    );
  }
  for (const w of writes) {
    if (!(w.src >= 0 && w.src < n && w.row >= 0 && w.row < B && w.start >= 0 && w.start + T <= S)) {
      throw new ParaError('INVALID_ARGUMENT', 'a KV write falls outside the cache', {
        field: 'writes',
        expected: `src < ${n}, row < ${B}, start + ${T} ≤ ${S}`,
        actual: JSON.stringify(w),
      });
    }
  }
  if (writes.length === 0) return cache;
  const path = kvWritePath(cache, mode);
  const srcPath = path === 'functional' ? 'functional' : backendOf(src).name;
  if (path !== 'functional' && srcPath === path) {
    const backend = backendOf(cache).backend;
    if (path === 'cpu') writeCpu(backend as CpuBackendLike, cache, src, writes);
    else if (path === 'wasm') writeWasm(backend as WasmBackendLike, cache, src, writes);
    else writeWebGPU(backend as WebGPUBackendLike, cache, src, writes);
    return cache;
  }
  return writeFunctional(cache, src, writes);
}

/** cpu: copy contiguous `T·hd` runs inside the backend's typed arrays. */
function writeCpu(
  backend: CpuBackendLike,
  cache: tf.Tensor,
  src: tf.Tensor,
  writes: readonly KVWrite[],
): void {
  const dst = backend.data.get(cache.dataId)?.values;
  const from = backend.data.get(src.dataId)?.values;
  if (!(dst instanceof Float32Array) || !(from instanceof Float32Array)) {
    throw new ParaError('UNSUPPORTED', 'cpu tensor storage is not a Float32Array', {
      field: 'cache',
    });
  }
  copyRuns(dst, 0, from, 0, cache.shape as number[], src.shape as number[], writes);
}

/**
 * The copy loop every host path shares: for each write and head, one run of `T·hd` floats
 * from `src` (offset `srcBase` in `from`) to the cache (offset `dstBase` in `dst`); `copyWithin`
 * when both are one buffer (the wasm heap, or a view of the cache on cpu).
 */
function copyRuns(
  dst: Float32Array,
  dstBase: number,
  from: Float32Array,
  srcBase: number,
  cacheShape: number[],
  srcShape: number[],
  writes: readonly KVWrite[],
): void {
  const [, H, S, hd] = cacheShape as [number, number, number, number];
  const T = srcShape[2] as number;
  const run = T * hd;
  for (const w of writes) {
    for (let h = 0; h < H; h++) {
      const s = srcBase + (w.src * H + h) * run;
      const d = dstBase + ((w.row * H + h) * S + w.start) * hd;
      if (dst === from) dst.copyWithin(d, s, s + run);
      else dst.set(from.subarray(s, s + run), d);
    }
  }
}

/** wasm: copy on the heap. Heap views are made here, after every allocation. */
function writeWasm(
  backend: WasmBackendLike,
  cache: tf.Tensor,
  src: tf.Tensor,
  writes: readonly KVWrite[],
): void {
  const dOff = backend.dataIdMap.get(cache.dataId)?.memoryOffset;
  const sOff = backend.dataIdMap.get(src.dataId)?.memoryOffset;
  if (typeof dOff !== 'number' || typeof sOff !== 'number' || dOff % 4 !== 0 || sOff % 4 !== 0) {
    throw new ParaError('UNSUPPORTED', 'wasm tensor has no aligned heap offset', {
      field: 'cache',
    });
  }
  const heap = new Float32Array(backend.wasm.HEAPU8.buffer as ArrayBuffer);
  copyRuns(heap, dOff / 4, heap, sOff / 4, cache.shape as number[], src.shape as number[], writes);
}

/**
 * webgpu: one dispatch over `src`'s elements (`kvNew` in WGSL); `kvRows [n, 2]` int32 gives each src row its target
 * row (or -1: skip) and first slot. The output binding is the cache itself, so the program
 * writes only the new slots and leaves every other element as it is. The shader key depends on
 * ranks and dtypes only, so it is compiled once.
 */
function writeWebGPU(
  backend: WebGPUBackendLike,
  cache: tf.Tensor,
  src: tf.Tensor,
  writes: readonly KVWrite[],
): void {
  const n = src.shape[0] as number;
  const rows = new Int32Array(2 * n).fill(-1); // [n, 2]: (row, start)
  for (const w of writes) {
    rows[2 * w.src] = w.row;
    rows[2 * w.src + 1] = w.start;
  }
  const rowsT = tf.tensor1d(rows, 'int32'); // [2n]
  const size = src.size;
  const workgroupSize: [number, number, number] = [64, 1, 1];
  const program: WebGPUProgramLike = {
    variableNames: ['kvNew', 'kvRows'],
    outputShape: src.shape.slice(),
    shaderKey: 'paraKVWrite',
    dispatchLayout: { x: [0, 1, 2, 3] },
    dispatch: [Math.ceil(size / workgroupSize[0]), 1, 1],
    workgroupSize,
    size: true,
    getUserCode: () => `
      fn main(index : i32) {
        if (index < uniforms.size) {
          let hd = uniforms.kvNewShape.w;
          let T = uniforms.kvNewShape.z;
          let H = uniforms.kvNewShape.y;
          let d = index % hd;
          let t = (index / hd) % T;
          let h = (index / (hd * T)) % H;
          let i = index / (hd * T * H);
          let row = kvRows[2 * i];
          if (row >= 0) {
            let start = kvRows[2 * i + 1];
            let S = uniforms.outShape.z;
            result[((row * H + h) * S + start + t) * hd + d] = kvNew[index];
          }
        }
      }
    `,
  };
  try {
    backend.runWebGPUProgram(program, [src, rowsT], 'float32', undefined, cache);
    // A read (`data()`) caches the values on the host, and the backend then serves reads (and
    // small kernels run on the CPU) from that copy: drop it, the buffer is the truth now.
    const entry = backend.tensorMap.get(cache.dataId) as { values?: unknown } | undefined;
    if (entry !== undefined) entry.values = null;
  } finally {
    rowsT.dispose(); // released after the queue submits (the backend defers it)
  }
}

/**
 * Any other backend: a fixed-shape update, a new tensor. A decode step (T = 1, src row b → cache
 * row b) broadcasts `src` along the slots; otherwise each written row is padded into place.
 */
function writeFunctional(cache: tf.Tensor, src: tf.Tensor, writes: readonly KVWrite[]): tf.Tensor {
  const [B, H, S, hd] = cache.shape as [number, number, number, number];
  const [n, , T] = src.shape as [number, number, number, number];
  const cond = new Uint8Array(B * S); // [B, 1, S, 1]
  const byRow = new Map<number, KVWrite>();
  for (const w of writes) {
    byRow.set(w.row, w);
    for (let t = 0; t < T; t++) cond[w.row * S + w.start + t] = 1;
  }
  return tf.tidy(() => {
    const mask = tf.tensor4d(cond, [B, 1, S, 1], 'bool'); // [B, 1, S, 1]
    let placed: tf.Tensor;
    if (T === 1 && n === B && writes.every((w) => w.src === w.row)) {
      placed = src; // [B, H, 1, hd], broadcast along S
    } else {
      const rows = Array.from({ length: B }, (_, b) => {
        const w = byRow.get(b);
        if (w === undefined) return tf.zeros([1, H, S, hd]); // [1, H, S, hd], never selected
        const piece = tf.slice(src, [w.src, 0, 0, 0], [1, H, T, hd]); // [1, H, T, hd]
        return tf.pad(piece, [
          [0, 0],
          [0, 0],
          [w.start, S - w.start - T],
          [0, 0],
        ]); // [1, H, S, hd]
      });
      placed = rows.length === 1 ? (rows[0] as tf.Tensor) : tf.concat(rows, 0); // [B, H, S, hd]
    }
    return tf.where(mask, placed, cache); // [B, H, S, hd]
  });
}
