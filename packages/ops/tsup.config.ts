import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  // Universal: no Node built-ins in src, so the bundle works in browsers too.
  platform: 'neutral',
  // tfjs and @para/core stay external: one tfjs engine, one ParaError class, one gradient registry.
  external: [/^@tensorflow\//, /^@para\//],
});
