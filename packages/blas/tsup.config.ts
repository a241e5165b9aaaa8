import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  platform: 'node',
  // `import.meta.url` (locating the package root and the .node file) in the CommonJS build too.
  shims: true,
  external: [/^@tensorflow\//, 'node-gyp-build'],
});
