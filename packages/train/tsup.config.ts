import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', node: 'src/node.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  // Shared chunks, so `@para/train` and `@para/train/node` share one copy of every class.
  splitting: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  // "." is universal (no Node built-ins; the web app trains PARA in a Web Worker with it);
  // "./node" adds files, checkpoints and the terminal progress bar.
  platform: 'neutral',
  external: [/^@tensorflow\//, /^@para\//, /^node:/, 'cli-progress'],
  // import.meta.url in the CJS build, __dirname in the ESM one.
  shims: true,
});
