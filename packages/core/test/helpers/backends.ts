import * as tf from '@tensorflow/tfjs-core';
import { type BackendName, parseBackendName, selectBackendFrom } from '../../src/backend/select';
import { nodeBackendCandidates } from '../../src/node/backends';

/**
 * Backends the numeric tests run on: PARA_TEST_BACKENDS (comma-separated), by default
 * cpu, wasm and webgpu (Dawn in Node). A listed backend that cannot start fails the test run
 * rather than being skipped, so CI proves what it claims to have run.
 */
export function testBackends(): BackendName[] {
  const raw = process.env.PARA_TEST_BACKENDS ?? 'cpu,wasm,webgpu';
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => parseBackendName(s, 'PARA_TEST_BACKENDS'));
}

/**
 * Switch the engine to `name` (starting it on first use); tensorflow, when listed, starts before
 * webgpu's first start (it cannot load after webgpu's Mesa LLVM, see src/node/backends.ts).
 */
export async function useBackend(name: BackendName): Promise<void> {
  if (
    name === 'webgpu' &&
    tf.findBackend('webgpu') === null &&
    tf.findBackend('tensorflow') === null &&
    testBackends().includes('tensorflow')
  )
    await selectBackendFrom('node', nodeBackendCandidates(), { backend: 'tensorflow' });
  if (tf.findBackend(name) === null || tf.getBackend() !== name) {
    await selectBackendFrom('node', nodeBackendCandidates(), { backend: name });
  }
}

/** Read a tensor's values (async: WebGPU in Node cannot `dataSync`). */
export async function values(t: tf.Tensor): Promise<number[]> {
  return Array.from(await t.data());
}
