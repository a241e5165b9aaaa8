import { describe, expect, it } from 'vitest';
import { installWebGpuKernelsFrom, raiseStorageBufferLimit } from '../src/backend/webgpu-kernels';

describe('installWebGpuKernelsFrom (the webgpu start-up hook for @para/webgpu)', () => {
  const module = (all: boolean) => {
    const calls: number[] = [];
    return {
      calls,
      mod: {
        WEBGPU_KERNEL_NAMES: ['ParaRmsNorm', 'ParaRmsNormGrad', 'ParaAttention'],
        installWebGpuKernels: () => {
          calls.push(1);
          return all;
        },
      },
    };
  };

  it('installs and names the forward kernels', async () => {
    const { mod, calls } = module(true);
    const line = await installWebGpuKernelsFrom(async () => mod, undefined);
    expect(calls).toHaveLength(1);
    expect(line).toBe('fused kernels: @para/webgpu WGSL (ParaRmsNorm, ParaAttention)');
  });

  it('reads the CommonJS build through default, and says when names were taken', async () => {
    const { mod, calls } = module(false);
    const line = await installWebGpuKernelsFrom(async () => ({ default: mod }) as never, undefined);
    expect(calls).toHaveLength(1);
    expect(line).toMatch(/some names were taken/);
  });

  it('does nothing when disabled (PARA_FUSED=0, webgpuKernels: false)', async () => {
    const { mod, calls } = module(true);
    expect(await installWebGpuKernelsFrom(async () => mod, 'PARA_FUSED=0')).toBe(
      'fused kernels: off (PARA_FUSED=0)',
    );
    expect(calls).toHaveLength(0);
  });

  it('never throws: a missing or broken package is reported', async () => {
    expect(await installWebGpuKernelsFrom(undefined, undefined)).toMatch(/not provided/);
    const missing = Object.assign(new Error("Cannot find package '@para/webgpu'"), {
      code: 'ERR_MODULE_NOT_FOUND',
    });
    expect(
      await installWebGpuKernelsFrom(async () => {
        throw missing;
      }, undefined),
    ).toBe('fused kernels: none (@para/webgpu is not installed)');
    expect(
      await installWebGpuKernelsFrom(async () => {
        throw new Error('boom\nstack');
      }, undefined),
    ).toBe('fused kernels: none (@para/webgpu failed to load: boom)');
    expect(await installWebGpuKernelsFrom(async () => ({}) as never, undefined)).toMatch(
      /has no installWebGpuKernels/,
    );
  });
});

describe('raiseStorageBufferLimit', () => {
  it("makes the adapter's devices ask for its maxStorageBuffersPerShaderStage, keeping other limits", async () => {
    const asked: unknown[] = [];
    const adapter = {
      limits: { maxStorageBuffersPerShaderStage: 16 },
      requestDevice: async (d?: unknown) => {
        asked.push(d);
        return 'device';
      },
    };
    const gpu = { requestAdapter: async () => adapter as unknown };
    raiseStorageBufferLimit(gpu);
    const a = (await gpu.requestAdapter()) as typeof adapter;
    expect(await a.requestDevice({ requiredLimits: { maxBufferSize: 1024 } })).toBe('device');
    expect(asked).toEqual([
      { requiredLimits: { maxBufferSize: 1024, maxStorageBuffersPerShaderStage: 16 } },
    ]);
  });

  it('passes a missing adapter through', async () => {
    const gpu = { requestAdapter: async () => null as unknown };
    raiseStorageBufferLimit(gpu);
    expect(await gpu.requestAdapter()).toBeNull();
  });
});
