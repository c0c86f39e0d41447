/**
 * kgen WebAssembly rows: emit the wasm kernel for one op and shape, write what `kgen emit -o`
 * writes (modules and loader), time it at one forced level (SIMD128 or relaxed SIMD) on 1..T
 * threads through the emitted loader in a child Node (bench/wasm-driver.ts), and check its output
 * against the JS reference before reporting a time, as the C rows do.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HARNESS_NODE_FLAGS } from '../src/backends/wasm/runner.js';
import { COLD_BYTES, coldCopies, log, run, type BenchRow } from './common.js';
import { timedRows, type EmitFn, type KgenCase } from './kgen-rows.js';
import { f32Bytes } from './onnx-model.js';

export type WasmBenchLevel = 'simd128' | 'relaxed';

export interface WasmCase extends Omit<KgenCase, 'isa' | 'harnessSource'> {
  level: WasmBenchLevel;
}

const DRIVER = join(dirname(fileURLToPath(import.meta.url)), 'wasm-driver.js');

/**
 * The rows of one op at one level, one per thread count. Throws with the driver's message where the
 * level cannot run (a forced relaxed run where the loader's probe rejects relaxed SIMD).
 */
export async function benchWasm(emit: EmitFn, c: WasmCase): Promise<BenchRow[]> {
  const { M, N, K } = c.shape;
  const shapeText = `M=${M},N=${N},K=${K}`;
  const dir = join(c.workDir, `${c.op}-wasm-${c.level}-${M}x${N}x${K}`);
  mkdirSync(dir, { recursive: true });
  const result = await emit({ target: 'wasm', op: c.op, shape: shapeText });
  const built = await result.rendered?.binaries?.();
  if (!built || 'error' in built) throw new Error(`${c.op}: the WebAssembly modules did not assemble: ${built ? built.error : 'no binaries'}`);
  for (const [name, text] of Object.entries(result.files)) writeFileSync(join(dir, name), text);
  for (const [name, bytes] of Object.entries(built.files)) writeFileSync(join(dir, name), bytes);
  const rowBytes = result.manifest.weights?.rowBytes;
  if (rowBytes === undefined || rowBytes * N !== c.w.length) {
    throw new Error(`${c.op}: manifest rowBytes ${rowBytes} does not match the packed weights (${c.w.length} bytes for N=${N})`);
  }
  writeFileSync(join(dir, 'x.bin'), f32Bytes(c.x));
  writeFileSync(join(dir, 'w.bin'), c.w);
  // As many copies as the C rows rotate through, within the 4 GiB of a 32-bit memory.
  const copies = Math.min(coldCopies(c.w.length), Math.floor(3.5 * 2 ** 30 / c.w.length));
  if (copies < coldCopies(c.w.length)) log(`${c.label}: only ${copies} weight copies fit a 32-bit memory, ${((copies * c.w.length) / 2 ** 20).toFixed(0)} MiB for ${(COLD_BYTES / 2 ** 20).toFixed(0)} MiB: part of W may be read from the L3`);
  log(`${c.label}: running on ${c.threads.join(',')} thread(s) in ${process.version} (${HARNESS_NODE_FLAGS.join(' ')}), ${copies} weight copies`);
  const out = run(process.execPath, [...HARNESS_NODE_FLAGS, DRIVER, dir, c.level, String(copies), String(c.warmup), String(c.runs), ...c.threads.map(String)]);
  return timedRows(c, shapeText, out, join(dir, 'y.bin'), result.manifest.tolerance);
}
