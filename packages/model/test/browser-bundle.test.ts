import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleForBrowser } from '@para/test-utils/browser-bundle';
import { describe, expect, it } from 'vitest';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('@para/model in the browser', () => {
  it('the universal entry bundles for platform "browser" with no Node built-in reachable', async () => {
    const { reached, errors, externalBuiltins, inputs } = await bundleForBrowser(
      `export * from './src/index';`,
      pkgDir,
    );
    expect(reached).toEqual([]);
    expect(errors).toEqual([]);
    expect(externalBuiltins).toEqual([]);
    expect(inputs.some((p) => p.endsWith('src/node.ts'))).toBe(false);
  });

  it('the Node entry does reach Node built-ins (so the check above can fail)', async () => {
    const { reached } = await bundleForBrowser(`export * from './src/node';`, pkgDir);
    expect(reached.length).toBeGreaterThan(0);
  });
});
