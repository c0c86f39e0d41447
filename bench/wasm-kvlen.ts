/**
 * What a WebAssembly decode attention kernel with a run-time KV length costs per call at several
 * kv_len, through its own loader (kernel.mjs's loadThreaded, this thread plus threads - 1 workers),
 * beside a kernel emitted for the shortest length alone. With `--baseline` the run-time kernel is
 * also emitted by another build (its dist/src/index.js) and the two are timed in the same process,
 * call by call in turn, so their figures compare. `--parts` then times each run-time kernel's
 * exports on their own, on this thread: `_prepare`, and at each length `_tasks` (every task) and
 * `_merge` (every row), where a short call's time goes.
 *
 *   node dist/bench/wasm-kvlen.js [--format q8] [--lengths 64,512,4096,32768] [--threads 1,2]
 *     [--rounds 10] [--calls 20] [--config '{"splits":16}'] [--baseline /path/to/other/dist/src/index.js] [--parts]
 *
 * Each round times `calls` calls of every (kernel, threads, kv_len) in turn; a row prints the
 * minimum over all rounds and the median of the rounds' minima, in microseconds. Nothing is
 * checked here (test/wasm-attention-kvlen.test.ts checks the loader's results).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import * as kgen from '../src/index.js';
import { benchArgs, median } from './common.js';
import { type AttentionLoader, memoryFor, type Threaded, wasmAttentionKernel } from './wasm-attention-kernel.js';

const USAGE = 'node dist/bench/wasm-kvlen.js [--format q8] [--lengths 64,512,4096,32768] [--threads 1,2] [--rounds 10] [--calls 20] [--config {\"splits\":16}] [--baseline /other/dist/src/index.js] [--parts]';
const SHAPE = { B: 1, Hq: 32, Hkv: 8, Sq: 1, D: 128 };
const CAPACITY = 32768;
type Emit = typeof kgen.emit;
type Exports = Record<string, (...args: number[]) => number>;

/** Emits a decode attention kernel (run-time length at CAPACITY, or fixed at skv) into its own folder and imports its loader. */
async function kernelAt(emit: Emit, dir: string, format: string, runtime: boolean, skv: number, config?: Record<string, number>): Promise<AttentionLoader> {
  const ir = { kind: 'attention', name: 'bench', q: 'f16', o: 'f32', kvCache: format, causal: true, ...(runtime ? { kvLength: 'runtime' } : {}) };
  const shape = Object.entries({ ...SHAPE, Skv: skv }).map(([k, v]) => `${k}=${v}`).join(',');
  return wasmAttentionKernel(emit, dir, ir, shape, config);
}

async function main(): Promise<void> {
  const args = benchArgs(process.argv.slice(2), { options: ['--format', '--lengths', '--threads', '--rounds', '--calls', '--config', '--baseline'], flags: ['--parts'], usage: USAGE });
  const format = args.opt('--format', 'q8');
  const lengths = args.opt('--lengths', '64,512,4096,32768').split(',').map(Number);
  const threadCounts = args.opt('--threads', '1,2').split(',').map(Number);
  const rounds = Number(args.opt('--rounds', '10'));
  const calls = Number(args.opt('--calls', '20'));
  const baseline = args.opt('--baseline', '');
  // A config for the run-time kernels (the default config else; the fixed one always takes its default).
  const config = args.opt('--config', '') ? (JSON.parse(args.opt('--config', '')) as Record<string, number>) : undefined;
  const root = mkdtempSync(join(tmpdir(), 'kgen-wasm-kvlen-'));
  try {
    const kernels: { name: string; dir: string; loader: AttentionLoader; lengths: number[] }[] = [
      { name: 'run-time, this build', dir: join(root, 'b'), loader: await kernelAt(kgen.emit, join(root, 'b'), format, true, CAPACITY, config), lengths },
      { name: `fixed ${lengths[0]}`, dir: join(root, 'f'), loader: await kernelAt(kgen.emit, join(root, 'f'), format, false, lengths[0]!), lengths: [lengths[0]!] },
    ];
    if (baseline) {
      const other = (await import(pathToFileURL(baseline).href)) as typeof kgen;
      kernels.unshift({ name: 'run-time, baseline', dir: join(root, 'a'), loader: await kernelAt(other.emit, join(root, 'a'), format, true, CAPACITY, config), lengths });
    }
    const cases = [];
    const loaded: Threaded[] = [];
    for (const k of kernels) {
      const { memory, at } = memoryFor(k.loader.sizes);
      for (const threads of threadCounts) {
        const t = await k.loader.loadThreaded({ memory, threads });
        loaded.push(t);
        for (const kvLen of k.lengths) {
          const fixed = k.name.startsWith('fixed');
          const call = () => t.run(at.q, at.k, at.k_scales, at.v, at.v_scales, at.o, at.workspace, ...(fixed ? [] : [kvLen]));
          cases.push({ label: `${k.name}, ${threads} thread${threads > 1 ? 's' : ''}, kv_len ${kvLen}`, call, minima: [] as number[] });
        }
      }
    }
    for (let r = 0; r < rounds; r++) {
      for (const c of cases) {
        await c.call();
        let best = Infinity;
        for (let i = 0; i < calls; i++) {
          const t0 = performance.now();
          await c.call();
          best = Math.min(best, performance.now() - t0);
        }
        c.minima.push(best * 1000);
      }
    }
    for (const c of cases) process.stdout.write(`${c.label}: min ${Math.min(...c.minima).toFixed(1)} us, median of round minima ${median(c.minima).toFixed(1)} us\n`);
    loaded.forEach((t) => t.close());
    if (args.flag('--parts')) {
      for (const k of kernels.filter((k) => !k.name.startsWith('fixed'))) {
        const { memory, at } = memoryFor(k.loader.sizes);
        const x = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(join(k.dir, 'kernel.shared.wasm'))), { env: { memory } }).exports as Exports;
        const fn = Object.keys(x).find((name) => name.endsWith('_prepare'))!.replace(/_prepare$/, '');
        // Every task and every row: the exports clamp a range's end to theirs.
        const all = 1 << 30;
        const best = (f: () => void) => {
          let b = Infinity;
          for (let r = 0; r < rounds; r++) {
            f();
            for (let i = 0; i < calls; i++) {
              const t0 = performance.now();
              f();
              b = Math.min(b, performance.now() - t0);
            }
          }
          return `${(b * 1000).toFixed(1)} us`;
        };
        const parts = [`prepare ${best(() => x[`${fn}_prepare`]!(at.q, at.workspace))}`];
        for (const kvLen of k.lengths) {
          const tasks = best(() => x[`${fn}_tasks`]!(at.workspace, at.k, at.k_scales, at.v, at.v_scales, at.o, 0, all, 0, kvLen));
          parts.push(`kv_len ${kvLen}: tasks ${tasks}, merge ${best(() => x[`${fn}_merge`]!(at.workspace, at.o, 0, all))}`);
        }
        process.stdout.write(`${k.name}, exports on this thread (min): ${parts.join('; ')}\n`);
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
