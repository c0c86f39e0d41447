import { defineConfig } from 'vitest/config';
import { detectGpus } from './src/device/gpu.js';

// `npm run test:gpu`: the suite in test/gpu runs kernels on an NVIDIA GPU, so it starts only where
// nvidia-smi finds one; anywhere else it says why and fails, rather than passing having run nothing.
const gpus = detectGpus();
if (gpus.status !== 'found') {
  process.stderr.write(
    `test:gpu: ${gpus.how}. The GPU suite (test/gpu) runs only where nvidia-smi finds an NVIDIA GPU; ` +
      '`npm test` runs every CUDA kernel through the CPU shim instead.\n',
  );
  process.exit(1);
}
process.stderr.write(`test:gpu: ${gpus.how}\n`);

export default defineConfig({
  test: {
    include: ['test/gpu/**/*.test.ts'],
    // A fresh TMPDIR per run, removed at its end, as in vitest.config.ts.
    globalSetup: ['test/temp-dir-setup.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    // One GPU: files run one after another so sanitizers and timings do not share it.
    fileParallelism: false,
    maxConcurrency: 8,
  },
});
