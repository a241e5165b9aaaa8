/**
 * The browser-bundle check every universal entry of para is tested with: esbuild bundles the
 * given module source for platform "browser" and records each Node built-in that our own code
 * (anything outside node_modules) imports. A third-party dependency may import one only where
 * its package.json "browser" field maps it away (tfjs-core's `util`, seedrandom's `crypto`);
 * esbuild fails the build otherwise, which `result.errors` shows.
 */
import { builtinModules } from 'node:module';
import * as esbuild from 'esbuild';

export const NODE_BUILTINS: ReadonlySet<string> = new Set([
  ...builtinModules,
  ...builtinModules.map((m) => `node:${m}`),
]);

export interface BrowserBundleResult {
  /** Built-ins our code reached, as `name (from importer)`. */
  reached: string[];
  /** esbuild's errors (empty when the bundle built). */
  errors: esbuild.Message[];
  /** Built-ins left as external imports in the output (must be none). */
  externalBuiltins: string[];
  /** Every file the bundle took in (to check what is in and what is not). */
  inputs: string[];
}

/** Bundle `source` (TypeScript, resolved from `resolveDir`) for the browser. */
export async function bundleForBrowser(
  source: string,
  resolveDir: string,
): Promise<BrowserBundleResult> {
  const reached: string[] = [];
  const result = await esbuild
    .build({
      stdin: { contents: source, resolveDir, loader: 'ts' },
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
              if (NODE_BUILTINS.has(args.path) && !args.importer.includes('/node_modules/')) {
                reached.push(`${args.path} (from ${args.importer})`);
              }
              return undefined;
            });
          },
        },
      ],
    })
    .catch((e: esbuild.BuildFailure) => e);
  const outputs =
    'metafile' in result && result.metafile ? Object.values(result.metafile.outputs) : [];
  return {
    reached,
    errors: result.errors,
    externalBuiltins: outputs.flatMap((o) =>
      o.imports.filter((i) => i.external && NODE_BUILTINS.has(i.path)).map((i) => i.path),
    ),
    inputs: 'metafile' in result && result.metafile ? Object.keys(result.metafile.inputs) : [],
  };
}
