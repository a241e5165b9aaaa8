import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Generous: hundreds of requests decode on a shared 2-core CI machine (a loaded run once took
    // over 120 s for the tensor-count test); a hang still fails, just later.
    testTimeout: 900_000,
    hookTimeout: 300_000,
    // One tfjs engine per file; files run in parallel across the machine's cores.
    pool: 'forks',
  },
});
