import * as tf from '@tensorflow/tfjs-core';

/** What a decode-step measurement says: GPU dispatches and tfjs kernels (Reshape excepted). */
export interface StepCount {
  /**
   * Compute dispatches (`GPUComputePassEncoder.dispatchWorkgroups` calls): every program the
   * backend runs, the KV-cache writes and this package's multi-output kernels included.
   */
  dispatches: number;
  /** Kernels through the engine (tf.profile), Reshape excluded (it runs no program). */
  kernels: number;
  /** Per kernel name, for the report. */
  byKernel: [string, number][];
  /** Per program shaderKey prefix, for the report. */
  byProgram: [string, number][];
}

interface Dispatching {
  dispatchWorkgroups: (...args: unknown[]) => unknown;
}

interface Countable {
  runWebGPUProgram: (program: { shaderKey: string }, ...rest: unknown[]) => unknown;
}

/**
 * The dispatches and kernels of one decode step: `run(n)` generates n new tokens; one step is
 * the difference between n = 3 and n = 2 (prefill and the first token cancel out), as
 * packages/model/scripts/profile-decode.mjs does.
 */
export async function countDecodeStep(run: (n: number) => Promise<unknown>): Promise<StepCount> {
  const backend = tf.backend() as unknown as Countable;
  const original = backend.runWebGPUProgram;
  const pass = (globalThis as unknown as { GPUComputePassEncoder: { prototype: Dispatching } })
    .GPUComputePassEncoder.prototype;
  const dispatch = pass.dispatchWorkgroups;
  const measure = async (n: number) => {
    const programs = new Map<string, number>();
    let dispatches = 0;
    backend.runWebGPUProgram = function (this: unknown, program, ...rest) {
      const key = program.shaderKey.split('_').slice(0, 1).join('_') || program.shaderKey;
      programs.set(key, (programs.get(key) ?? 0) + 1);
      return original.call(this, program, ...rest);
    };
    pass.dispatchWorkgroups = function (this: unknown, ...args: unknown[]) {
      dispatches++;
      return dispatch.apply(this, args);
    };
    let names: string[];
    try {
      const info = await tf.profile(() => run(n) as Promise<tf.TensorContainer>);
      names = info.kernels.map((k) => k.name);
    } finally {
      backend.runWebGPUProgram = original;
      pass.dispatchWorkgroups = dispatch;
    }
    return { dispatches, names, programs };
  };
  const two = await measure(2);
  const three = await measure(3);
  const byKernel = new Map<string, number>();
  for (const k of three.names) byKernel.set(k, (byKernel.get(k) ?? 0) + 1);
  for (const k of two.names) byKernel.set(k, (byKernel.get(k) ?? 0) - 1);
  const byProgram = new Map(three.programs);
  for (const [k, n] of two.programs) byProgram.set(k, (byProgram.get(k) ?? 0) - n);
  const sorted = (m: Map<string, number>) =>
    [...m].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  const kernelRows = sorted(byKernel);
  return {
    dispatches: three.dispatches - two.dispatches,
    kernels: kernelRows.filter(([k]) => k !== 'Reshape').reduce((s, [, n]) => s + n, 0),
    byKernel: kernelRows,
    byProgram: sorted(byProgram),
  };
}
