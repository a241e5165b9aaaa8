import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', node: 'src/node.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  splitting: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  // "." in a browser (index) and in Node (node, picked by the "node" export condition).
  platform: 'neutral',
  external: [/^@tensorflow\//, /^@para\//, /^node:/],
});
