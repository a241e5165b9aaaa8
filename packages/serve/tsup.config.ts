import { defineConfig } from 'tsup';

export default defineConfig({
  // fine-tune-worker: the fine-tuning jobs' child process (forked by src/node/job-process.ts).
  entry: {
    index: 'src/index.ts',
    node: 'src/node.ts',
    'fine-tune-worker': 'src/node/fine-tune-worker.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  // Shared chunks, so `@para/serve` and `@para/serve/node` share one copy of every class.
  splitting: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  // "." is universal (the engine and the registry: no Node built-ins); "./node" adds adapter
  // directories on disk and the Fastify HTTP server.
  platform: 'neutral',
  external: [/^@tensorflow\//, /^@para\//, /^@fastify\//, /^node:/, 'fastify', 'prom-client'],
  shims: true,
});
