/**
 * Child process of the onnxruntime-web peer rows (bench/ort-web-peer.ts): one process per thread
 * count, because onnxruntime-web fixes its WebAssembly thread count (`env.wasm.numThreads`, worker
 * threads in Node) when its runtime first initialises.
 *
 *   node ort-web-driver.js DIR M K THREADS WARMUP RUNS COPIES
 *
 * DIR/model.onnx holds COPIES MatMulNBits nodes (outputs Y0..), all fed A = DIR/x.bin [M,K]. Times
 * `await session.run({A})` on the `wasm` execution provider; one matmul's time is a run's / COPIES.
 * Prints one JSON line and writes the first run's Y0 to DIR/y0.bin.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { median } from './common.js';

async function main(): Promise<void> {
  const [dir, ...nums] = process.argv.slice(2);
  const [M, K, threads, warmup, runs, copies] = nums.map(Number) as [number, number, number, number, number, number];
  if (!dir || !(copies >= 1)) throw new Error('usage: ort-web-driver.js DIR M K THREADS WARMUP RUNS COPIES');
  const ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  const session = await ort.InferenceSession.create(readFileSync(join(dir, 'model.onnx')), { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  try {
    const xb = readFileSync(join(dir, 'x.bin'));
    const x = new Float32Array(xb.buffer.slice(xb.byteOffset, xb.byteOffset + xb.byteLength));
    const feeds = { A: new ort.Tensor('float32', x, [M, K]) };
    const times: number[] = [];
    for (let r = 0; r < warmup + runs; r++) {
      const t0 = performance.now();
      const out = await session.run(feeds);
      const dt = (performance.now() - t0) / copies;
      if (r === 0) writeFileSync(join(dir, 'y0.bin'), new Uint8Array((out['Y0']!.data as Float32Array).slice().buffer));
      if (r >= warmup) times.push(dt);
    }
    // onnxruntime-web falls back to one thread (and sets numThreads to 1) where it finds no threading.
    const threadsUsed = ort.env.wasm.numThreads ?? threads;
    process.stdout.write(`${JSON.stringify({ threads, threads_used: threadsUsed, median_ms: median(times), min_ms: Math.min(...times), runs, copies, version: ort.env.versions.web })}\n`);
  } finally {
    await session.release();
  }
}

main().then(
  // onnxruntime-web's worker threads keep the process alive.
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`ort-web-driver: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
