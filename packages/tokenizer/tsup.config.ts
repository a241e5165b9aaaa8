import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts', node: 'src/node.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  // Shared chunks, so `@para/tokenizer` and `@para/tokenizer/node` share one ParaTokenizer class.
  splitting: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  platform: 'neutral',
  external: [/^@para\//, /^@huggingface\//, /^node:/],
});
