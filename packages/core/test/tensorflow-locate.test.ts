/**
 * Where @tensorflow/tfjs-node is and whether its binding is built, read from the package's
 * `binary` field without importing it (the tensorflow backend's "not set up" check).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { locateTfjsNode, napiBuildVersion, tensorflowRuntimeOf } from '../src/node/tensorflow';

const root = mkdtempSync(join(tmpdir(), 'para-locate-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function fakePackage(name: string, binary: object): string {
  const dir = join(root, 'node_modules', ...name.split('/'));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '4.22.0', binary }));
  return dir;
}

describe('locateTfjsNode', () => {
  const binary = {
    module_name: 'tfjs_binding',
    module_path: './lib/napi-v{napi_build_version}',
    napi_versions: [3, 4, 5, 6, 7, 8],
  };

  it('the N-API version is the highest the package and this Node share', () => {
    expect(Number(process.versions.napi)).toBeGreaterThanOrEqual(8);
    expect(napiBuildVersion([3, 4, 5, 6, 7, 8])).toBe(8);
    expect(napiBuildVersion([3, 4])).toBe(4);
  });

  it('finds the package from a directory and says the binding is not built, then built', () => {
    const dir = fakePackage('@tensorflow/tfjs-node-gpu', binary);
    const before = locateTfjsNode('@tensorflow/tfjs-node-gpu', root);
    expect(before).toMatchObject({
      name: '@tensorflow/tfjs-node-gpu',
      version: '4.22.0',
      napiBuildVersion: 8,
      moduleName: 'tfjs_binding',
      modulePath: join(dir, 'lib', 'napi-v8'),
      bindingPath: join(dir, 'lib', 'napi-v8', 'tfjs_binding.node'),
      built: false,
    });
    expect(before?.setup).toBeUndefined();
    mkdirSync(join(dir, 'lib', 'napi-v8'), { recursive: true });
    writeFileSync(join(dir, 'lib', 'napi-v8', 'tfjs_binding.node'), '');
    mkdirSync(join(dir, 'deps'), { recursive: true });
    const record = { variant: 'gpu', tensorflow: '2.21.0', wheel: 'w.whl' };
    writeFileSync(join(dir, 'deps', 'para-setup.json'), JSON.stringify(record));
    const after = locateTfjsNode('@tensorflow/tfjs-node-gpu', root);
    expect(after?.built).toBe(true);
    expect(after?.setup).toMatchObject(record);
  });

  it('a broken setup record is ignored, not thrown', () => {
    const dir = join(root, 'node_modules', '@tensorflow', 'tfjs-node-gpu');
    writeFileSync(join(dir, 'deps', 'para-setup.json'), '{ not json');
    expect(locateTfjsNode('@tensorflow/tfjs-node-gpu', root)?.setup).toBeUndefined();
  });

  it('reads the TensorFlow version and devices off a started tfjs-node backend object', () => {
    expect(tensorflowRuntimeOf(null)).toBeUndefined();
    expect(tensorflowRuntimeOf({ binding: {} })).toBeUndefined();
    expect(
      tensorflowRuntimeOf({ binding: { TF_Version: '2.21.0' }, isUsingGpuDevice: false }),
    ).toEqual({ version: '2.21.0', devices: ['CPU'] });
    expect(
      tensorflowRuntimeOf({ binding: { TF_Version: '2.21.0', isUsingGpuDevice: () => true } }),
    ).toEqual({ version: '2.21.0', devices: ['CPU', 'GPU'] });
  });
});
