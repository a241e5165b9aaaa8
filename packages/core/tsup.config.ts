import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', node: 'src/node.ts', browser: 'src/browser.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  // Shared chunks, so `@para/core` and `@para/core/node` share one ParaError class and one
  // registration of gradients and kernels.
  splitting: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  platform: 'neutral',
  // The generated tfjs gradient bundle is ours (src/backend); everything in node_modules stays external.
  external: [/^@tensorflow\//, 'webgpu', /^node:/],
});
