import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Generous: CLI tests spawn processes that train or serve, and CI runs packages in parallel.
    testTimeout: 600_000,
    hookTimeout: 300_000,
    pool: 'forks',
  },
});
