import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', node: 'src/node.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  // Shared chunks, so `@para/adapters` and `@para/adapters/node` share one copy of every class.
  splitting: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  platform: 'neutral',
  external: [/^@tensorflow\//, /^@para\//, /^node:/],
});
