/**
 * Decode-cost bench: what each C (and WebAssembly) GEMV kernel costs per 64 weights when memory is not the limit
 * (one thread, weights resident in L2), so layouts and decoders compare without DRAM noise. A GEMV
 * streams at memory speed on T threads only while T * (bytes per 64 weights) / (ns per 64 weights)
 * exceeds the machine's read bandwidth; the last column is that ceiling for one core.
 *
 *   node dist/bench/decode.js                      current build, q4, q35, q4_0, q8 on every runnable ISA
 *   node dist/bench/decode.js --baseline PATH      also another build's src/index.js (e.g. a git
 *                                                  worktree of an older commit, built), interleaved
 * Options: --formats q4,q35,q4_0,q8   --isa avx2,avxvnni,avx512   --rows 64   --k 14336   --rounds 3
 *          --wasm simd128,relaxed (the WebAssembly kernels' levels, through their kernel.mjs in a
 *          child Node with the runner's flags; --wasm none for C only)
 *          --mca znver3,skylake (also llvm-mca's cycles for the C kernels' row-sums step on those CPU
 *          models: 8 rows x one activation block through the kernel's own kg_decode, KG_DOT and
 *          kg_row_sums8, as gcc compiles them; a CPU this machine is not, without its noise.
 *          --rounds 0 times nothing)
 *
 * The weights are arbitrary bytes with unit scales (decode work does not depend on the codes), so
 * no output is checked here: correctness is the test suite's and `npm run bench`'s job.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { C_TOOLCHAINS } from '../src/backends/c/toolchain.js';
import { HARNESS_NODE_FLAGS } from '../src/backends/wasm/runner.js';
import type { WeightFormatName } from '../src/ir/types.js';
import { FORMATS } from '../src/quant/index.js';
import { benchArgs, benchHost, defaultBenchIsas, log, median, run } from './common.js';
import { loadEmit, type EmitFn } from './kgen-rows.js';

const USAGE = `  node dist/bench/decode.js                      current build, q4, q35, q4_0, q8 on every runnable ISA
  node dist/bench/decode.js --baseline PATH      also another build's src/index.js, interleaved
Options: --formats q4,q35,q4_0,q8   --isa avx2,avxvnni,avx512   --rows 64   --k 14336   --rounds 3
         --wasm simd128,relaxed (none: C only)   --mca znver3,skylake (llvm-mca CPU models)   --keep (keep the temp dir)`;
const { flag, opt } = benchArgs(process.argv.slice(2), {
  flags: ['--keep'],
  options: ['--baseline', '--formats', '--isa', '--rows', '--k', '--rounds', '--wasm', '--mca'],
  usage: USAGE,
});
const formats = opt('--formats', 'q4,q35,q4_0,q8').split(',') as WeightFormatName[];
const isas = opt('--isa', defaultBenchIsas()).split(',');
const rows = Number(opt('--rows', '64'));
const K = Number(opt('--k', '14336'));
const rounds = Number(opt('--rounds', '3'));
const baseline = opt('--baseline', '');
const wasmLevels = opt('--wasm', 'simd128,relaxed').split(',').filter((l) => l !== 'none');
const mcaCpus = opt('--mca', '').split(',').filter(Boolean);

const benchSrc = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');
const GROUP: Partial<Record<WeightFormatName, number>> = { q4: 64, q35: 64, q8: 64 };

async function loadEntry(entry: string): Promise<EmitFn> {
  const emit = await loadEmit(entry);
  if (typeof emit === 'string') throw new Error(emit);
  return emit;
}

interface Build {
  name: string;
  /** The command that prints {"ns_per_64": ...}. */
  exe: string;
  bytesPer64: number;
  args: string[];
  /** llvm-mca's cycles per row and 64 weights, by CPU model (C builds with --mca). */
  mca?: Record<string, number>;
}

/** The row-sums step the --mca models run: what kg_rows8_step does for one activation block. */
const MCA_REGION = `
__m256i kg_mca_step8(const uint8_t *w, long row_bytes, const __m256i *xv) {
  __m256i d[8];
  __asm__ volatile("# LLVM-MCA-BEGIN step8");
  for (int r = 0; r < 8; r++) {
    __m256i wv[2];
    kg_decode(w + r * row_bytes, 0, wv);
    d[r] = KG_DOT(wv, xv);
  }
  const __m256i s = kg_row_sums8(d);
  __asm__ volatile("# LLVM-MCA-END step8");
  return s;
}
`;
const MCA_ITERATIONS = 200;
/** Whether llvm-mca runs here (asked once, only with --mca). */
const mcaInstalled = mcaCpus.length > 0 && !spawnSync('llvm-mca', ['--version']).error;

/** llvm-mca's cycles per row and 64 weights of the kernel in dir on each CPU model. */
function mcaCycles(dir: string, flags: string[], compiler: string): Record<string, number> {
  const src = join(dir, 'mca.c');
  writeFileSync(src, readFileSync(join(dir, 'kernel.c'), 'utf8') + MCA_REGION);
  const asm = join(dir, 'mca.s');
  run(compiler, [...flags.filter((f) => f !== '-static'), '-Wno-unused-function', `-I${dir}`, '-S', src, '-o', asm]);
  const out: Record<string, number> = {};
  if (!mcaInstalled) throw new Error('llvm-mca is not installed (Debian: apt-get install llvm)');
  for (const cpu of mcaCpus) {
    const text = run('llvm-mca', [`-mcpu=${cpu}`, `-iterations=${MCA_ITERATIONS}`, asm]);
    const cycles = /Total Cycles:\s+(\d+)/.exec(text);
    if (!cycles) throw new Error(`llvm-mca -mcpu=${cpu}: no "Total Cycles" in its report`);
    out[cpu] = Number(cycles[1]) / (MCA_ITERATIONS * 8);
  }
  return out;
}

async function build(emit: EmitFn, entryName: string, format: WeightFormatName, isa: string, workDir: string): Promise<Build> {
  const op = `matmul_${format}`;
  const dir = join(workDir, `${entryName}-${format}-${isa}`);
  const result = await emit({ target: 'c', op, shape: `M=1,N=${rows},K=${K}`, device: 'host', isa, ...benchHost() });
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(result.files)) writeFileSync(join(dir, name), text);
  const rowBytes = result.manifest.weights?.rowBytes;
  if (rowBytes === undefined) throw new Error(`${op}: the manifest has no weights.rowBytes`);
  const codec = FORMATS[format].codec(GROUP[format]);
  const tc = C_TOOLCHAINS[isa];
  if (!tc) throw new Error(`unknown C ISA ${isa}`);
  let mca: Record<string, number> | undefined;
  try {
    if (mcaCpus.length) mca = mcaCycles(dir, tc.flags, tc.compiler);
  } catch (e) {
    // A kernel without the 256-bit row-sums step (q4_0's 32-weight blocks, AVX-512 q8) does not compile it.
    const msg = (e as Error).message;
    log(`${format} ${isa} ${entryName}: no llvm-mca figures: ${/error: .*/.exec(msg)?.[0] ?? msg.split('\n')[0]}`);
  }
  const exe = join(dir, 'decode-bench');
  // The variant's own flags and no OpenMP: one thread, the kernel as its manifest builds it.
  run(tc.compiler, [...tc.flags.filter((f) => f !== '-static'), '-Wall', '-Wno-unused-function', `-I${dir}`, `-DKGEN_FN=kgen_${op}`,
    join(benchSrc, 'decode-driver.c'), join(dir, 'kernel.c'), '-o', exe, '-lm']);
  const scaled = format === 'f16' ? 0 : 1;
  // ~20 ms per pass whatever the format: calls sized from a first guess of 2 ns per 64 weights.
  const calls = Math.max(1, Math.round(20e6 / ((rows * K) / 64) / 2));
  return {
    name: entryName,
    exe,
    bytesPer64: (rowBytes / K) * 64,
    args: [rows, K, rowBytes, codec.bytesPerBlock, codec.weightsPerBlock, scaled, calls, 15].map(String),
    mca,
  };
}

/** A WebAssembly kernel at one level: the emitted files and a child Node running wasm-decode-driver.js. */
async function buildWasm(emit: EmitFn, entryName: string, format: WeightFormatName, level: string, workDir: string): Promise<Build> {
  const op = `matmul_${format}`;
  const dir = join(workDir, `${entryName}-${format}-wasm-${level}`);
  const result = await emit({ target: 'wasm', op, shape: `M=1,N=${rows},K=${K}` });
  const built = await result.rendered?.binaries?.();
  if (!built || 'error' in built) throw new Error(`${op}: the WebAssembly modules did not assemble: ${built ? built.error : 'no binaries'}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(result.files)) writeFileSync(join(dir, name), text);
  for (const [name, bytes] of Object.entries(built.files)) writeFileSync(join(dir, name), bytes);
  const rowBytes = result.manifest.weights?.rowBytes;
  if (rowBytes === undefined) throw new Error(`${op}: the manifest has no weights.rowBytes`);
  const codec = FORMATS[format].codec(GROUP[format]);
  // ~20 ms per pass from a first guess of 8 ns per 64 weights.
  const calls = Math.max(1, Math.round(20e6 / ((rows * K) / 64) / 8));
  const driver = join(dirname(fileURLToPath(import.meta.url)), 'wasm-decode-driver.js');
  return { name: entryName, exe: process.execPath, bytesPer64: (rowBytes / K) * 64, args: [...HARNESS_NODE_FLAGS, driver, dir, level, ...[K, codec.bytesPerBlock, calls, 15].map(String)] };
}

function time(b: Build): number {
  const out = JSON.parse(run(b.exe, b.args)) as { ns_per_64: number };
  return out.ns_per_64;
}

async function main(): Promise<void> {
  const entries: [string, EmitFn][] = [['current', await loadEntry('../src/index.js')]];
  if (baseline) entries.push(['baseline', await loadEntry(baseline)]);
  const workDir = mkdtempSync(join(tmpdir(), 'kgen-decode-'));
  const table: string[][] = [];
  try {
    log(`decode cost: M=1, N=${rows}, K=${K} (weights in L2), 1 thread, ${rounds > 0 ? `best of 15 passes, median of ${rounds} rounds` : 'not timed (--rounds 0)'}`);
    table.push(['kernel', 'build', 'ns per 64 weights', 'bytes per 64', 'GB/s one core can decode', ...mcaCpus.map((c) => `cycles per 64 (llvm-mca ${c})`)]);
    for (const format of formats) {
      for (const isa of [...isas, ...(format === 'f16' ? [] : wasmLevels.map((l) => `wasm-${l}`))]) {
        const builds: Build[] = [];
        for (const [name, emit] of entries) {
          try {
            builds.push(await (isa.startsWith('wasm-') ? buildWasm(emit, name, format, isa.slice('wasm-'.length), workDir) : build(emit, name, format, isa, workDir)));
          } catch (e) {
            log(`${format} ${isa} ${name}: skipped: ${(e as Error).message.split('\n')[0]}`);
          }
        }
        const times = builds.map(() => [] as number[]);
        // Interleaved rounds, so a slow spell of the machine hits every build alike.
        for (let r = 0; r < rounds; r++) builds.forEach((b, i) => times[i]!.push(time(b)));
        builds.forEach((b, i) => {
          const ns = rounds > 0 ? median(times[i]!) : undefined;
          const mca = mcaCpus.map((c) => (b.mca?.[c] === undefined ? '-' : b.mca[c]!.toFixed(2)));
          table.push([`${format} ${isa}`, b.name, ns?.toFixed(3) ?? '-', b.bytesPer64.toFixed(1), ns ? (b.bytesPer64 / ns).toFixed(1) : '-', ...mca]);
          if (ns) log(`${format} ${isa} ${b.name}: ${times[i]!.map((t) => t.toFixed(3)).join(' ')} ns per 64 weights`);
        });
      }
    }
  } finally {
    if (!flag('--keep')) rmSync(workDir, { recursive: true, force: true });
  }
  const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((v, c) => (c < 2 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join('  ');
  console.log([line(table[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...table.slice(1).map(line)].join('\n'));
}

main().catch((e: unknown) => {
  console.error((e as Error).message);
  process.exit(1);
});
