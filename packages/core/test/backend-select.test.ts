import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { type BackendCandidate, parseBackendName, selectBackendFrom } from '../src/backend/select';
import { isParaError } from '../src/errors';

/** A candidate that registers a fresh cpu-like backend under a test name, or fails. */
function fake(
  name: 'tensorflow' | 'webgpu' | 'webgl' | 'wasm' | 'cpu',
  works: boolean,
  auto = true,
): BackendCandidate & { loads: number } {
  const c = {
    name,
    auto,
    loads: 0,
    async load() {
      c.loads++;
      if (!works) throw new Error(`${name} is broken in this test`);
      await import('@tensorflow/tfjs-backend-cpu');
      // Register `name` as a second cpu backend instance so setBackend(name) succeeds.
      if (tf.findBackendFactory(name) === null) {
        const cpuFactory = tf.findBackendFactory('cpu');
        if (cpuFactory === null) throw new Error('cpu backend not registered');
        tf.registerBackend(name, cpuFactory, 0);
      }
      return `${name} ok`;
    },
  };
  return c;
}

describe('backend selection', () => {
  it('takes the first candidate that starts and says why earlier ones were skipped', async () => {
    const order = [fake('tensorflow', false), fake('wasm', true), fake('cpu', true)];
    const report = await selectBackendFrom('node', order, {});
    expect(report.active).toBe('wasm');
    expect(report.chosenBy).toBe('auto');
    expect(tf.getBackend()).toBe('wasm');
    const byName = Object.fromEntries(report.backends.map((b) => [b.name, b]));
    expect(byName.tensorflow?.state).toBe('unavailable');
    expect(byName.tensorflow?.reason).toContain('broken');
    expect(byName.cpu?.state).toBe('not-tried');
    expect(byName.cpu?.reason).toContain('wasm comes first');
    expect(order[2]?.loads).toBe(0);
  });

  it('probes the rest when asked and keeps the active backend', async () => {
    const order = [fake('wasm', true), fake('cpu', true), fake('webgpu', false, false)];
    const report = await selectBackendFrom('node', order, { probe: true });
    expect(report.active).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    const byName = Object.fromEntries(report.backends.map((b) => [b.name, b]));
    expect(byName.cpu?.state).toBe('available');
    expect(byName.webgpu?.state).toBe('unavailable');
    expect(byName.webgpu?.onRequestOnly).toBe(true);
  });

  it('never auto-selects an on-request backend', async () => {
    const order = [fake('webgpu', true, false), fake('cpu', true)];
    const report = await selectBackendFrom('node', order, {});
    expect(report.active).toBe('cpu');
    expect(order[0]?.loads).toBe(0);
  });

  it('an explicit choice wins over the order and over PARA_BACKEND', async () => {
    const order = [fake('wasm', true), fake('cpu', true), fake('webgpu', true, false)];
    let report = await selectBackendFrom('node', order, { envBackend: 'cpu' });
    expect(report.active).toBe('cpu');
    expect(report.chosenBy).toBe('env');
    report = await selectBackendFrom('node', order, { backend: 'webgpu', envBackend: 'cpu' });
    expect(report.active).toBe('webgpu');
    expect(report.chosenBy).toBe('option');
  });

  it('a failed explicit choice is an error, not a silent fallback', async () => {
    const order = [fake('tensorflow', false), fake('cpu', true)];
    const before = tf.getBackend();
    const err = await selectBackendFrom('node', order, { backend: 'tensorflow' }).catch((e) => e);
    expect(isParaError(err, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect(err.field).toBe('backend');
    expect(err.message).toContain('broken');
    expect(tf.getBackend()).toBe(before);

    const envErr = await selectBackendFrom('node', order, { envBackend: 'tensorflow' }).catch(
      (e) => e,
    );
    expect(isParaError(envErr, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect(envErr.field).toBe('PARA_BACKEND');
  });

  it('rejects unknown names and backends this platform lacks', async () => {
    const order = [fake('cpu', true)];
    const unknown = await selectBackendFrom('node', order, { backend: 'cuda' }).catch((e) => e);
    expect(isParaError(unknown, 'INVALID_ARGUMENT')).toBe(true);
    expect(unknown.message).toContain('tensorflow, webgpu, webgl, wasm, cpu');
    const missing = await selectBackendFrom('node', order, { backend: 'webgl' }).catch((e) => e);
    expect(isParaError(missing, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect(() => parseBackendName(' WASM ', 'x')).not.toThrow();
  });

  it('fails with every reason when nothing starts', async () => {
    const err = await selectBackendFrom(
      'node',
      [fake('tensorflow', false), fake('wasm', false)],
      {},
    ).catch((e) => e);
    expect(isParaError(err, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect(err.message).toMatch(/tensorflow: .*broken.*wasm: .*broken/);
  });
});

describe('optional imports', () => {
  it('tell "not installed" from "installed but broken"', async () => {
    const { importOptional, isModuleNotFound } = await import('../src/backend/select');
    const missing = await importOptional(
      'no-such-package-para',
      () => import('no-such-package-para' as string),
    ).catch((e) => e);
    expect(missing.message).toBe('no-such-package-para is not installed');
    const nested = Object.assign(new Error("Cannot find module 'left-pad'"), {
      code: 'MODULE_NOT_FOUND',
    });
    expect(isModuleNotFound(nested, 'x')).toBe(false);
    const broken = await importOptional('x', () => Promise.reject(nested)).catch((e) => e);
    expect(broken.message).toMatch(
      /^x is installed but failed to load: Cannot find module 'left-pad'/,
    );
  });
});
