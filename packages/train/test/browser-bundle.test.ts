import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { describe, expect, it } from 'vitest';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);

async function bundle(entry: string): Promise<{ reached: string[]; result: esbuild.BuildResult<{ metafile: true }> | esbuild.BuildFailure }> {
  const reached: string[] = [];
  const result = await esbuild
    .build({
      stdin: { contents: entry, resolveDir: pkgDir, loader: 'ts' },
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
      plugins: [
        {
          name: 'record-node-builtins',
          setup(build) {
            build.onResolve({ filter: /.*/ }, (args) => {
              // Our code (and @para/core's) must never import a built-in; a third-party dependency
              // may only where its package.json "browser" field maps it away (tfjs-core's
              // `util`, seedrandom's `crypto`), and esbuild fails the build otherwise.
              if (builtins.has(args.path) && !args.importer.includes('/node_modules/')) reached.push(`${args.path} (from ${args.importer})`);
              return undefined;
            });
          },
        },
      ],
    })
    .catch((e: esbuild.BuildFailure) => e);
  return { reached, result };
}

describe('@para/train in the browser', () => {
  it('bundles for platform "browser" (with @para/core, ops, model, tokenizer, adapters and tfjs) without reaching a Node built-in', async () => {
    const { reached, result } = await bundle(`export * from './src/index';`);
    expect(reached).toEqual([]);
    expect(result.errors).toEqual([]);
    const outputs = 'metafile' in result && result.metafile ? Object.values(result.metafile.outputs) : [];
    expect(outputs.flatMap((o) => o.imports.filter((i) => i.external && builtins.has(i.path)))).toEqual([]);
  });

  it('the check can fail: @para/train/node does reach Node built-ins', async () => {
    const { reached } = await bundle(`export * from './src/node';`);
    expect(reached.length).toBeGreaterThan(0);
  });
});
