import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { describe, expect, it } from 'vitest';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);

describe('@para/core in the browser', () => {
  it('bundles for platform "browser" with no Node built-in reachable (backends included)', async () => {
    const reached: string[] = [];
    const result = await esbuild.build({
      entryPoints: [join(pkgDir, 'src/browser.ts')],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      splitting: true,
      outdir: join(pkgDir, '.browser-bundle-test'),
      metafile: true,
      logLevel: 'silent',
      plugins: [
        {
          name: 'forbid-node-builtins',
          setup(build) {
            build.onResolve({ filter: /.*/ }, (args) => {
              // Our own code must never import a built-in; a dependency may only where its
              // package.json "browser" field maps it away (esbuild fails the build otherwise).
              if (builtins.has(args.path) && args.importer.startsWith(join(pkgDir, 'src'))) {
                reached.push(`${args.path} (from ${args.importer})`);
              }
              return undefined;
            });
          },
        },
      ],
    });
    expect(reached).toEqual([]);
    expect(result.errors).toEqual([]);
    const externalImports = Object.values(result.metafile.outputs).flatMap((o) =>
      o.imports.filter((i) => i.external).map((i) => i.path),
    );
    expect(externalImports.filter((p) => builtins.has(p))).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    // The browser backends are in the bundle, the Node-only ones are not.
    expect(inputs.some((p) => p.includes('tfjs-backend-webgpu'))).toBe(true);
    expect(inputs.some((p) => p.includes('tfjs-backend-webgl'))).toBe(true);
    expect(inputs.some((p) => p.includes('src/node/'))).toBe(false);
    expect(inputs.some((p) => /tfjs-node|node_modules\/webgpu\//.test(p))).toBe(false);
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
