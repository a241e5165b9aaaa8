import * as tf from '@tensorflow/tfjs-core';

/**
 * A compute dispatch with several writable outputs, recorded into tfjs-backend-webgpu's own
 * command encoder and compute pass (so it runs in order with every other kernel of the backend).
 * `runWebGPUProgram` binds exactly one output (`result`); kernels that produce two tensors
 * (`ParaAddRmsNorm`: the sum and its norm) or that write a rotated query AND the KV cache's keys
 * and values in place (`ParaRopeKvWrite`) need more. This does what the backend's
 * `recordAndSubmit` does (tfjs-backend-webgpu 4.22): buffers uploaded, marked as owned by the
 * queue, a uniform buffer from the backend's buffer manager released after the submit, the
 * dispatch counted against `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE`.
 *
 * The shader is this module's own: bindings `out0..` (read_write) then `in0..` (read, named by
 * the caller) then `uniforms` (a struct of scalar i32/f32 fields, 4 bytes each). Pipelines are
 * cached per device under the caller's key (+ the input dtypes), so keys must not depend on sizes.
 */

/** What is used of tfjs-backend-webgpu's `WebGPUBackend` (4.22) internals. */
export interface WebGpuBackendInternals {
  device: GPUDeviceLike;
  queue: { writeBuffer(buffer: unknown, offset: number, data: ArrayBuffer): void };
  tensorMap: { get(dataId: tf.DataId): { dtype: tf.DataType; values?: unknown } | undefined };
  bufferManager: { acquireBuffer(size: number, usage: number): unknown };
  uniformPendingDisposal: unknown[];
  commandQueueOwnedIds: WeakSet<object>;
  commandEncoder: { beginComputePass(descriptor: object): ComputePassLike } | null;
  computePassEncoder: ComputePassLike | null;
  dispatchCountInPass: number;
  activeTimers?: unknown[] | null;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  uploadToGPU(dataId: tf.DataId): void;
  tensorToBinding(t: tf.TensorInfo): unknown;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

interface ComputePassLike {
  setPipeline(p: unknown): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
}

interface GPUDeviceLike {
  createShaderModule(d: { code: string }): unknown;
  createComputePipeline(d: object): { getBindGroupLayout(i: number): unknown };
  createBindGroup(d: object): unknown;
}

export type ScalarUniform = { name: string; type: 'i32' | 'f32'; value: number };

export interface MultiDispatch {
  /** Pipeline cache key (never sizes: those are uniforms). */
  key: string;
  /** Outputs: a shape (a new float32 tensor) or an existing tensor written in place. */
  outputs: (number[] | tf.TensorInfo)[];
  /** Inputs and their WGSL names. */
  inputs: { name: string; tensor: tf.TensorInfo }[];
  uniforms: ScalarUniform[];
  /**
   * An int32 array after the scalars, `uniforms.<name> : array<vec4<i32>, N>` (element i at
   * `[i / 4][i % 4]`); N, a power of two ≥ ceil(length / 4), is part of the pipeline key.
   */
  intArray?: { name: string; values: Int32Array };
  workgroupSize: number;
  /** Workgroups along x (a 2-D grid is made past the device's per-dimension limit). */
  workgroups: number;
  /**
   * The WGSL after the declarations: it must define `fn body(wg : i32, lid : i32, gid : i32)`
   * where `wg` is the flat workgroup index, `lid` the lane, `gid = wg · WG + lid`; `WG` is a
   * constant. Outputs are `out0, out1, ...`; inputs by name; sizes in `uniforms.<name>`.
   */
  code: string;
}

const MAX_PER_DIM = 65535;
const GPU_BUFFER_USAGE_UNIFORM = 0x40;
const GPU_BUFFER_USAGE_COPY_DST = 0x8;

const pipelines = new WeakMap<object, Map<string, { getBindGroupLayout(i: number): unknown }>>();

function wgslType(dtype: tf.DataType): string {
  return dtype === 'int32' || dtype === 'bool' ? 'i32' : 'f32';
}

/** vec4 slots of the int array: a power of two, so that few pipelines serve every batch size. */
function intArrayVec4s(d: MultiDispatch): number {
  if (d.intArray === undefined) return 0;
  let n = 1;
  while (n * 4 < d.intArray.values.length) n *= 2;
  return n;
}

let limitOverride: number | undefined;

/** Tests: pretend the device allows `n` storage buffers per stage (undefined: the device's). */
export function overrideStorageBuffersLimit(n: number | undefined): void {
  limitOverride = n;
}

/** Storage buffers a dispatch binds (outputs + inputs): at most the device's per-stage limit. */
export function storageBuffersLimit(backend: unknown): number {
  if (limitOverride !== undefined) return limitOverride;
  const limits = (backend as { device?: { limits?: { maxStorageBuffersPerShaderStage?: number } } })
    .device?.limits;
  return limits?.maxStorageBuffersPerShaderStage ?? 8;
}

function shaderSource(d: MultiDispatch, dtypes: string[]): string {
  const lines: string[] = [];
  let fields = d.uniforms.map((u) => `${u.name} : ${u.type},`).join(' ');
  if (d.intArray !== undefined)
    fields += ` ${d.intArray.name} : array<vec4<i32>, ${intArrayVec4s(d)}>,`;
  lines.push(`struct Uniforms { ${fields || 'unused : i32,'} };`);
  let b = 0;
  d.outputs.forEach((_, i) => {
    lines.push(`@group(0) @binding(${b++}) var<storage, read_write> out${i} : array<f32>;`);
  });
  d.inputs.forEach((inp, i) => {
    lines.push(`@group(0) @binding(${b++}) var<storage, read> ${inp.name} : array<${dtypes[i]}>;`);
  });
  lines.push(`@group(0) @binding(${b}) var<uniform> uniforms : Uniforms;`);
  lines.push(`const WG = ${d.workgroupSize};`);
  lines.push(d.code);
  lines.push(`
@compute @workgroup_size(${d.workgroupSize}, 1, 1)
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>,
        @builtin(num_workgroups) nwg : vec3<u32>) {
  let wg = i32(wid.y * nwg.x + wid.x);
  body(wg, i32(lid.x), wg * WG + i32(lid.x));
}`);
  return lines.join('\n');
}

/** Record one dispatch; returns the outputs (new tensors for shapes, the given tensors else). */
export function runMulti(backend: unknown, d: MultiDispatch): tf.TensorInfo[] {
  const b = backend as WebGpuBackendInternals;
  const outputs = d.outputs.map((o) =>
    Array.isArray(o) ? b.makeTensorInfo(o, 'float32') : (o as tf.TensorInfo),
  );
  for (const o of outputs) b.uploadToGPU(o.dataId);
  for (const { tensor } of d.inputs) b.uploadToGPU(tensor.dataId);
  const dtypes = d.inputs.map(({ tensor }) =>
    wgslType(b.tensorMap.get(tensor.dataId)?.dtype ?? tensor.dtype),
  );
  let cache = pipelines.get(b.device as object);
  if (cache === undefined) {
    cache = new Map();
    pipelines.set(b.device as object, cache);
  }
  const vec4s = intArrayVec4s(d);
  const key = `${d.key}|${d.outputs.length}|${dtypes.join(',')}|${d.workgroupSize}|${vec4s}`;
  let pipeline = cache.get(key);
  if (pipeline === undefined) {
    const module = b.device.createShaderModule({ code: shaderSource(d, dtypes) });
    pipeline = b.device.createComputePipeline({
      layout: 'auto',
      compute: { module, entryPoint: 'main' },
    });
    cache.set(key, pipeline);
  }
  // Uniforms: scalars, 4 bytes each, then the int array at the next 16-byte boundary (a vec4
  // array's alignment), the struct padded to 16.
  const n = Math.max(1, d.uniforms.length);
  const arrayAt = Math.ceil((n * 4) / 16) * 16;
  const bytes = arrayAt + vec4s * 16;
  const data = new ArrayBuffer(bytes);
  const i32 = new Int32Array(data);
  const f32 = new Float32Array(data);
  d.uniforms.forEach((u, i) => {
    if (u.type === 'i32') i32[i] = u.value;
    else f32[i] = u.value;
  });
  if (d.intArray !== undefined) i32.set(d.intArray.values, arrayAt / 4);
  const uniformBuffer = b.bufferManager.acquireBuffer(
    bytes,
    GPU_BUFFER_USAGE_UNIFORM | GPU_BUFFER_USAGE_COPY_DST,
  );
  b.queue.writeBuffer(uniformBuffer, 0, data);
  b.uniformPendingDisposal.push(uniformBuffer);
  const entries = [
    ...outputs.map((o) => b.tensorToBinding(o)),
    ...d.inputs.map(({ tensor }) => b.tensorToBinding(tensor)),
    { buffer: uniformBuffer, offset: 0, size: bytes },
  ].map((resource, binding) => ({ binding, resource }));
  for (const o of outputs) b.commandQueueOwnedIds.add(o.dataId as object);
  for (const { tensor } of d.inputs) b.commandQueueOwnedIds.add(tensor.dataId as object);
  const bindGroup = b.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  const x = Math.min(d.workgroups, MAX_PER_DIM);
  const y = Math.ceil(d.workgroups / x);
  b.ensureCommandEncoderReady();
  if (b.activeTimers != null) b.endComputePassEncoder();
  if (b.computePassEncoder === null || b.computePassEncoder === undefined) {
    b.computePassEncoder = (
      b.commandEncoder as NonNullable<WebGpuBackendInternals['commandEncoder']>
    ).beginComputePass({});
  }
  b.computePassEncoder.setPipeline(pipeline);
  b.computePassEncoder.setBindGroup(0, bindGroup);
  b.computePassEncoder.dispatchWorkgroups(x, y, 1);
  b.dispatchCountInPass++;
  const batch = Number(tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE'));
  if (b.activeTimers != null || batch <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    if (b.activeTimers != null) {
      b.activeTimers.push({ name: d.key, query: Promise.resolve(0) });
    } else {
      b.submitQueue();
    }
  }
  // A tensor written in place may have a host copy from an earlier read: the buffer is the truth.
  for (const o of outputs) {
    const entry = b.tensorMap.get(o.dataId);
    if (entry !== undefined && entry.values != null) entry.values = null;
  }
  return outputs;
}
