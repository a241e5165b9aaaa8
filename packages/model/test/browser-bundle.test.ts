import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { describe, expect, it } from 'vitest';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);

describe('@para/model in the browser', () => {
  it('the universal entry bundles for platform "browser" with no Node built-in reachable', async () => {
    const reached: string[] = [];
    const result = await esbuild.build({
      entryPoints: [join(pkgDir, 'src/index.ts')],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
      plugins: [
        {
          name: 'forbid-node-builtins',
          setup(build) {
            build.onResolve({ filter: /.*/ }, (args) => {
              if (builtins.has(args.path) && !args.importer.includes('node_modules'))
                reached.push(`${args.path} (from ${args.importer})`);
              return undefined;
            });
          },
        },
      ],
    });
    expect(reached).toEqual([]);
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((p) => p.endsWith('src/node.ts'))).toBe(false);
  });

  it('the Node entry does reach Node built-ins (so the check above can fail)', async () => {
    const result = await esbuild
      .build({
        entryPoints: [join(pkgDir, 'src/node.ts')],
        bundle: true,
        platform: 'browser',
        write: false,
        logLevel: 'silent',
      })
      .catch((e: esbuild.BuildFailure) => e);
    expect('errors' in result && result.errors.length > 0).toBe(true);
  });
});
