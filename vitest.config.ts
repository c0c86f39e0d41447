import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/gpu needs an NVIDIA GPU: `npm run test:gpu` (vitest.gpu.config.ts) runs it, never `npm test`.
    exclude: [...configDefaults.exclude, 'test/gpu/**'],
    // A fresh TMPDIR per run, removed at its end: the tests' temporary directories go with it.
    globalSetup: ['test/temp-dir-setup.ts'],
    // Compile-and-run tests wait for a core: on a 2-core machine, with describe.concurrent tests and
    // two files at once, a test of ~25 compiles took over 120 s in CI (~15 s alone). A hung kernel
    // is still caught by the runners' own timeouts; this only bounds a test as a whole.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // Compile-and-run tests spawn compilers; two cores, so keep file parallelism modest.
    maxWorkers: 2,
  },
});
