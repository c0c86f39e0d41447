/**
 * Child process of the decode-cost bench's WebAssembly rows (bench/decode.ts): what an emitted
 * WebAssembly GEMV kernel costs per 64 weights with its weights in L2, as the C rows' decode-driver.c
 * measures C kernels. Loads the kernel through its own kernel.mjs at a forced level, prepares X
 * once, then times PASSES passes of CALLS `rows` calls over all N rows and reports the best pass.
 *
 *   node --experimental-wasm-relaxed-simd --no-liftoff wasm-decode-driver.js DIR LEVEL K BLOCK_BYTES CALLS PASSES
 *
 * Weights are arbitrary bytes with each block's f16 scale set to 1 (decode work does not depend
 * on the codes; unit scales keep the f32 sums normal), so no output is checked here.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import type { Loader } from './wasm-driver.js';
import { gemvLayout, gemvWeightBytes } from './wasm-gemv-memory.js';

const F16_ONE = 0x3c00;

async function main(): Promise<void> {
  const [dir, level, ...nums] = process.argv.slice(2);
  const [K, blockBytes, calls, passes] = nums.map(Number) as [number, number, number, number];
  if (!dir || !level || !(passes >= 1)) throw new Error('usage: wasm-decode-driver.js DIR LEVEL K BLOCK_BYTES CALLS PASSES');
  const { sizes, loadKernel } = (await import(pathToFileURL(join(dir, 'kernel.mjs')).href)) as Loader;
  const at = gemvLayout(sizes.x, sizes.y, sizes.workspace, sizes.w);
  const w = at.w;
  const memory = new WebAssembly.Memory({ initial: Math.ceil(at.end / 65536) });
  const x = new Float32Array(memory.buffer, at.x, sizes.x / 4);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i);
  new Uint8Array(memory.buffer).set(gemvWeightBytes(sizes.w, blockBytes, [F16_ONE]), w);
  const N = sizes.y / 4;
  const k = await loadKernel({ memory, level });
  if (k.level !== level) throw new Error(`asked for ${level}, the loader took ${k.level}`);
  k.prepare(at.x, at.workspace);
  let best = Infinity;
  for (let p = 0; p < passes; p++) {
    const t0 = performance.now();
    for (let c = 0; c < calls; c++) k.rows(at.workspace, w, 0, 0, at.y, 0, N);
    best = Math.min(best, performance.now() - t0);
  }
  process.stdout.write(`${JSON.stringify({ ns_per_64: (best * 1e6) / calls / ((N * K) / 64) })}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`wasm-decode-driver: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
