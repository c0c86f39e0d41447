/**
 * Child process of the WebAssembly bench rows (bench/wasm-rows.ts): times an emitted kernel through
 * its own loader (kernel.mjs's loadThreaded, unchanged: this thread plus threads - 1 worker_threads
 * over one shared WebAssembly.Memory), as a user of the emitted files runs it.
 *
 *   node --experimental-wasm-relaxed-simd --no-liftoff wasm-driver.js DIR LEVEL COPIES WARMUP RUNS T1 [T2 ...]
 *
 * DIR holds the emitted files, x.bin and w.bin. LEVEL (simd128 or relaxed) is forced: a relaxed run
 * fails where the loader's probe rejects relaxed SIMD. W is placed COPIES times and every timed
 * call reads the next copy, so weights come from DRAM as in a model. One call is `run` (prepare X,
 * then all rows split across the threads, resolved when every share is written). Prints one JSON
 * line per thread count (as bench/harness.c does) and writes the first thread count's Y to DIR/y.bin.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { median } from './common.js';

/** The slice of kernel.mjs (typed by its kernel.d.mts) the drivers use. */
export interface Loader {
  sizes: Record<'x' | 'w' | 'bias' | 'residual' | 'y' | 'workspace', number>;
  loadKernel(o: { memory: WebAssembly.Memory; level: string }): Promise<{
    level: string;
    prepare(x: number, workspace: number): void;
    rows(workspace: number, w: number, bias: number, residual: number, y: number, rowBegin: number, rowEnd: number): void;
  }>;
  loadThreaded(o: { memory: WebAssembly.Memory; threads: number; level: string }): Promise<{
    level: string;
    run(x: number, w: number, bias: number, residual: number, y: number, workspace: number): Promise<void>;
    close(): void;
  }>;
}

const PAGE = 65536;
const ALIGN = 64;

async function main(): Promise<void> {
  const [dir, level, copiesText, warmupText, runsText, ...threadTexts] = process.argv.slice(2);
  if (!dir || !level || !threadTexts.length) throw new Error('usage: wasm-driver.js DIR LEVEL COPIES WARMUP RUNS T1 [T2 ...]');
  const [copies, warmup, runs] = [copiesText, warmupText, runsText].map(Number) as [number, number, number];
  const loader = (await import(pathToFileURL(join(dir, 'kernel.mjs')).href)) as Loader;
  const { sizes } = loader;
  const up = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
  // x, y, workspace, then the copies of W (no bias or residual in the bench's ops).
  const at = { x: ALIGN, y: ALIGN + up(sizes.x), workspace: 2 * ALIGN + up(sizes.x) + up(sizes.y) };
  const w0 = up(at.workspace + sizes.workspace + ALIGN);
  const wAt = (c: number) => w0 + c * up(sizes.w);
  const pages = Math.ceil(wAt(copies) / PAGE);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const bytes = new Uint8Array(memory.buffer);
  bytes.set(readFileSync(join(dir, 'x.bin')), at.x);
  const w = readFileSync(join(dir, 'w.bin'));
  if (w.length !== sizes.w) throw new Error(`w.bin has ${w.length} bytes, the kernel reads ${sizes.w}`);
  for (let c = 0; c < copies; c++) bytes.set(w, wAt(c));
  const y = new Float32Array(memory.buffer, at.y, sizes.y / 4);

  let first: Float32Array | undefined;
  for (const threads of threadTexts.map(Number)) {
    const k = await loader.loadThreaded({ memory, threads, level });
    try {
      if (k.level !== level) throw new Error(`asked for ${level}, the loader took ${k.level}`);
      y.fill(NaN);
      await k.run(at.x, wAt(0), 0, 0, at.y, at.workspace);
      const out = y.slice();
      if (!first) {
        first = out;
        writeFileSync(join(dir, 'y.bin'), new Uint8Array(out.buffer));
      }
      const sameAsFirst = out.every((v, i) => Object.is(v, first![i]));
      const times: number[] = [];
      for (let i = 0; i < warmup + runs; i++) {
        const t0 = performance.now();
        await k.run(at.x, wAt(i % copies), 0, 0, at.y, at.workspace);
        const t1 = performance.now();
        if (i >= warmup) times.push(t1 - t0);
      }
      process.stdout.write(`${JSON.stringify({ threads, note: `${process.version} ${k.level}`, median_ms: median(times), min_ms: Math.min(...times), runs, copies, same_as_first: sameAsFirst })}\n`);
    } finally {
      k.close();
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`wasm-driver: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
