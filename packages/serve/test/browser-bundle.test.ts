import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleForBrowser } from '@para/test-utils/browser-bundle';
import { describe, expect, it } from 'vitest';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('@para/serve in the browser', () => {
  it('bundles for platform "browser" (the engine and the registry, with @para/core, ops, model, tokenizer, adapters and tfjs) without reaching a Node built-in', async () => {
    const { reached, errors, externalBuiltins } = await bundleForBrowser(
      `export * from './src/index';`,
      pkgDir,
    );
    expect(reached).toEqual([]);
    expect(errors).toEqual([]);
    expect(externalBuiltins).toEqual([]);
  });

  it('the check can fail: @para/serve/node (Fastify, files) does reach Node built-ins', async () => {
    const { reached } = await bundleForBrowser(`export * from './src/node';`, pkgDir);
    expect(reached.length).toBeGreaterThan(0);
  });
});
