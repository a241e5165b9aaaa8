import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // One tfjs engine per file; files run in parallel across the machine's cores.
    pool: 'forks',
  },
});
