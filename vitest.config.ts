import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/gpu needs an NVIDIA GPU: `npm run test:gpu` (vitest.gpu.config.ts) runs it, never `npm test`.
    exclude: [...configDefaults.exclude, 'test/gpu/**'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Compile-and-run tests spawn compilers; two cores, so keep file parallelism modest.
    maxWorkers: 2,
  },
});
