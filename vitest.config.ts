import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Compile-and-run tests spawn compilers; two cores, so keep file parallelism modest.
    maxWorkers: 2,
  },
});
