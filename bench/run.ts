/**
 * Throughput bench: kgen's C kernels against the machine's memory bandwidth and two peers
 * (onnxruntime's MatMulNBits; llama.cpp's ggml CPU backend with repacked weights), on GEMV
 * (M=1, N=4096, K=14336) and GEMM (M=256, N=4096, K=4096); kgen's WebAssembly kernels (SIMD128
 * and relaxed SIMD, in Node) next to them and to onnxruntime-web's WebAssembly MatMulNBits; kgen's
 * WGSL q4 GEMV (M=1, N=K=4096, default and tuned) next to onnxruntime-web's WebGPU MatMulNBits on
 * the same adapter; attention decode and prefill (`--cases attention`, in the default run) next to llama.cpp's
 * flash attention, onnxruntime's GroupQueryAttention and a naive baseline (bench/attention.ts).
 *
 *   npm run bench -- --help       the options (USAGE below)
 * See bench/README.md for what each row means.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MatmulShape } from '../src/ir/types.js';
import { Rng } from '../src/numeric/random.js';
import { FORMATS, quantizeMatrix, type BlockCodec } from '../src/quant/index.js';
import type { WeightFormatName } from '../src/ir/types.js';
import { probeSource } from '../src/backends/c/bandwidth.js';
import { benchArgs, bestOfRuns, CFLAGS, cpuSample, defaultBenchIsas, foreignCpu, formatTable, L3_BYTES, log, run, type BenchRow } from './common.js';
import { benchKgen, loadEmit } from './kgen-rows.js';
import { benchPeer, verifyPeer } from './ort-peer.js';
import { benchOrtWeb, ortWebMissing } from './ort-web-peer.js';
import { levelsOfFormat } from '../src/backends/wasm/matmul.js';
import { benchWasm, type WasmBenchLevel } from './wasm-rows.js';
import { benchLlama, LLAMA_FORMATS, loadLlama, pickVariant, writeLlamaInputs, type LlamaLibs } from './llama-peer.js';
import { formatTuningTables, strategyRows, tunedRows } from './tuning.js';
import { ATTENTION_WORKLOADS, attentionRows, KGEN_KV_FORMATS, KV_FORMATS, ORT_CACHE_TYPES } from './attention.js';
import { wgslRows } from './wgsl-rows.js';

const USAGE = `  npm run bench                 table on stdout, progress on stderr
  npm run bench -- --json       the same rows as JSON lines
Options: --cases gemv,gemm,attention (or m1,m4,m16,m64; curve = m1,m4,m16,m64,gemm at N=K=4096; decode-4k,
         decode-32k,prefill-2k; attention = those three; wgsl = only the WGSL rows)   --formats q4,q35,q4_0,q8   --threads 1,2
         --isa avx2,avxvnni,avx512 (default: avx2 and those of the others this CPU runs)
         --attn-kv f16,q8_0,q4_0 (llama.cpp's caches)   --attn-formats f16,q8,q8_0,q4_0 (kgen's)   --attn-ort f32,f16 (onnxruntime's)   --no-naive
         --attn-qint8 1,0 (kgen's C rows of the int8-code caches with int8 Q on and off, side by side)
         --huge-pages (kgen's C decode rows again with the cache copies on 2 MiB pages, side by side)
         --no-probe --no-peer --no-kgen   --keep (keep the temp dir with kernels and data)
         --no-wasm (no kgen WebAssembly rows, matmul and attention)   --wasm-levels simd128,relaxed   --no-ort-web
         --no-llama (no llama.cpp rows)   --llama-formats q4_0,q8_0   --llama-libs DIR (the ggml
         libraries to load instead of the @node-llama-cpp/linux-x64 package's)
         --no-tune (skip tuned vs default)   --tune-trials 40   --strategies 2 (workloads the
         strategies are compared on, 0 to 4; exhaustive runs, ~3 min each on 2 cores)
         --no-wgsl (no WGSL rows)   --wgsl-trials 8 (tuner trials of the WGSL q4 GEMV)
         --wgsl-peer-runs 5 (timed onnxruntime-web runs)
         --repeat 1 (run each CPU row's stage N times, each in fresh processes, and keep per row the
         run with the lowest median, all N medians in its note: this VM's speed is bimodal per process)
See bench/README.md for what each row means.`;

const { flag, opt } = benchArgs(process.argv.slice(2), {
  flags: ['--json', '--keep', '--no-probe', '--no-peer', '--no-kgen', '--no-naive', '--no-wasm', '--no-ort-web', '--no-llama', '--no-tune', '--no-wgsl', '--huge-pages'],
  options: ['--cases', '--formats', '--threads', '--isa', '--attn-kv', '--attn-formats', '--attn-ort', '--attn-qint8', '--wasm-levels', '--llama-formats', '--llama-libs', '--tune-trials', '--strategies', '--wgsl-trials', '--wgsl-peer-runs', '--repeat'],
  usage: USAGE,
});

const json = flag('--json');
const repeat = Number(opt('--repeat', '1'));
if (!Number.isInteger(repeat) || repeat < 1) {
  log(`--repeat: ${opt('--repeat', '1')} is not a positive integer`);
  process.exit(2);
}
// `curve`: the M curve at N=K=4096 (M = 1, 4, 16, 64 and gemm's 256), for kgen and both peers.
// `attention`: the three attention workloads (decode-4k, decode-32k, prefill-2k; bench/attention.ts).
const CASE_GROUPS: Record<string, string[]> = { curve: ['m1', 'm4', 'm16', 'm64', 'gemm'], attention: ATTENTION_WORKLOADS.map((w) => w.name) };
const cases = opt('--cases', 'gemv,gemm,attention').split(',').flatMap((c) => CASE_GROUPS[c] ?? [c]);
const formats = opt('--formats', 'q4,q35,q4_0,q8').split(',') as WeightFormatName[];
const threads = opt('--threads', '1,2').split(',').map(Number);
const isas = opt('--isa', defaultBenchIsas()).split(',');
/** Splits a list option, exiting with a message on a value outside `allowed`. */
function listOpt<T extends string>(name: string, allowed: readonly T[], fallback: readonly T[]): T[] {
  const values = opt(name, fallback.join(',')).split(',').filter((v) => v);
  for (const v of values) {
    if (!(allowed as readonly string[]).includes(v)) {
      log(`${name}: ${v} is not one of ${allowed.join(', ')}`);
      process.exit(2);
    }
  }
  return values as T[];
}
const WASM_BENCH_LEVELS: readonly WasmBenchLevel[] = ['simd128', 'relaxed'];
const wasmLevels = flag('--no-wasm') ? [] : listOpt('--wasm-levels', WASM_BENCH_LEVELS, WASM_BENCH_LEVELS);
const llamaFormats = listOpt('--llama-formats', LLAMA_FORMATS, LLAMA_FORMATS);
const attnKv = listOpt('--attn-kv', KV_FORMATS, KV_FORMATS);
const attnOrt = listOpt('--attn-ort', ORT_CACHE_TYPES, ORT_CACHE_TYPES);
const attnFormats = listOpt('--attn-formats', KGEN_KV_FORMATS, KGEN_KV_FORMATS);
// int8 Q on and off side by side (--attn-qint8 1,0), for the C kernels of the int8-code caches.
const attnQInt8 = listOpt('--attn-qint8', ['1', '0'], []).map(Number);

/** bench/ in the source tree (the .c files are not copied to dist/). */
const benchSrc = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');

const GROUP: Record<string, number> = { q4: 64, q35: 64, q8: 64, q4_0: 32, q8_0: 32 };
const LABEL: Record<string, string> = { q4: 'q4', q35: 'q3.5', q4_0: 'q4_0', q8: 'q8', q8_0: 'q8_0' };

interface ShapeCase {
  name: 'gemv' | 'gemm' | 'm1' | 'm4' | 'm16' | 'm64';
  shape: MatmulShape;
  warmup: number;
  runs: number;
  peerWarmup: number;
  peerRuns: number;
}

/** onnxruntime-web's rows: each run is ~0.2 s per matmul times the weight copies, so fewer runs. */
const ORT_WEB_RUNS = { warmup: 2, runs: 11 };

const SHAPES: ShapeCase[] = [
  { name: 'gemv', shape: { M: 1, N: 4096, K: 14336 }, warmup: 10, runs: 51, peerWarmup: 5, peerRuns: 31 },
  { name: 'gemm', shape: { M: 256, N: 4096, K: 4096 }, warmup: 2, runs: 9, peerWarmup: 1, peerRuns: 9 },
  // The M curve (--cases curve): decode-bound at M=1, compute-bound by M=256.
  { name: 'm1', shape: { M: 1, N: 4096, K: 4096 }, warmup: 10, runs: 51, peerWarmup: 5, peerRuns: 31 },
  { name: 'm4', shape: { M: 4, N: 4096, K: 4096 }, warmup: 5, runs: 31, peerWarmup: 3, peerRuns: 21 },
  { name: 'm16', shape: { M: 16, N: 4096, K: 4096 }, warmup: 3, runs: 21, peerWarmup: 2, peerRuns: 15 },
  { name: 'm64', shape: { M: 64, N: 4096, K: 4096 }, warmup: 2, runs: 11, peerWarmup: 1, peerRuns: 9 },
];

const SHAPE_NAMES: readonly string[] = SHAPES.map((s) => s.name);
const matmulCases = SHAPES.filter((s) => cases.includes(s.name));
const attentionCases = ATTENTION_WORKLOADS.filter((w) => cases.includes(w.name));
// `wgsl`: only the WGSL rows (they also come with any matmul case).
for (const c of cases) {
  if (![...SHAPE_NAMES, ...ATTENTION_WORKLOADS.map((w) => w.name), 'wgsl'].includes(c)) {
    log(`--cases: ${c} is not one of ${[...SHAPE_NAMES, 'curve', ...ATTENTION_WORKLOADS.map((w) => w.name), 'attention', 'wgsl'].join(', ')}`);
    process.exit(2);
  }
}

/** The probe executable (compiled once per run) and what one invocation of it measured. */
interface ProbeResult {
  threads: number;
  bytes: number;
  passes: number;
  gbps: number;
  min_gbps: number;
  max_gbps: number;
}

function compileProbe(workDir: string): string {
  const exe = join(workDir, 'probe');
  log('probe: compiling templates/c/probe.c.hbs');
  writeFileSync(join(workDir, 'probe.c'), probeSource());
  run('gcc', [...CFLAGS, join(workDir, 'probe.c'), '-o', exe]);
  return exe;
}

function runProbe(exe: string, mib: number, passes: number, threadCounts: readonly number[]): ProbeResult[] {
  return run(exe, [String(mib), String(passes), ...threadCounts.map(String)])
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as ProbeResult);
}

/** The first probe's buffer: 1 GiB, or 4x the L3 where that is more (a VM slice may report 300+ MiB). */
const PROBE_MIB = Math.max(1024, Math.ceil((4 * L3_BYTES) / 2 ** 20));

function probeRows(exe: string): BenchRow[] {
  log(`probe: reading ${PROBE_MIB} MiB, 15 passes per thread count`);
  return runProbe(exe, PROBE_MIB, 15, threads).map((p) => {
    const ms = (p.bytes / (p.gbps * 1e9)) * 1e3;
    return {
      kind: 'probe',
      case: 'probe: AVX2 read',
      shape: PROBE_MIB === 1024 ? '1 GiB' : `${PROBE_MIB} MiB`,
      threads: p.threads,
      ms,
      minMs: (p.bytes / (p.max_gbps * 1e9)) * 1e3,
      bytes: p.bytes,
      gbps: p.gbps,
      runs: p.passes,
      note: `min ${p.min_gbps.toFixed(1)} max ${p.max_gbps.toFixed(1)} GB/s`,
    } satisfies BenchRow;
  });
}

/**
 * A row whose GB/s is compared with the probe: it streams its operand once (GEMV, M=1; attention
 * decode, Sq=1).
 */
function streamsOnce(r: BenchRow): boolean {
  return r.kind !== 'probe' && r.threads > 0 && (r.shape.startsWith('M=1,') || r.shape.includes(',Sq=1,'));
}

/**
 * This VM's read bandwidth moves by up to 2x within a minute (other tenants), so a probe taken once
 * at the start says little about a row timed minutes later. Every stage of rows that stream their
 * operand is bracketed by a short probe right before and right after it (4x the L3, at least 256
 * MiB, 5 passes per thread count), and those rows' `% of probe` is against the mean of the two.
 */
let bracketProbe: string | undefined;
const BRACKET_MIB = Math.max(256, Math.ceil((4 * L3_BYTES) / 2 ** 20));

/**
 * Runs one stage and stamps its rows with the background CPU load seen meanwhile; `bracket: false`
 * for a stage whose rows never stream their operand once (GEMM, WGSL), which needs no probes.
 */
async function stage(rows: BenchRow[], f: () => BenchRow[] | Promise<BenchRow[]>, o: { bracket?: boolean; repeat?: boolean } = {}): Promise<BenchRow[]> {
  const bracket = o.bracket !== false && bracketProbe !== undefined;
  const before = bracket ? runProbe(bracketProbe!, BRACKET_MIB, 5, threads) : [];
  const out = o.repeat === false ? await timedStage(f) : await repeatedStage(f);
  if (bracket && out.some(streamsOnce)) {
    const after = runProbe(bracketProbe!, BRACKET_MIB, 5, threads);
    for (const r of out.filter(streamsOnce)) {
      const b = before.find((p) => p.threads === r.threads)?.gbps;
      const a = after.find((p) => p.threads === r.threads)?.gbps;
      if (b === undefined || a === undefined) continue;
      r.probeGbps = (a + b) / 2;
      r.note = [r.note, `probe ${b.toFixed(1)} before, ${a.toFixed(1)} after (GB/s)`].filter(Boolean).join('; ');
    }
  }
  rows.push(...out);
  return out;
}

/**
 * `f` run `--repeat` times (the rows' harness processes started afresh each time, except the
 * onnxruntime-node rows, which run in this process: a fresh session each time); per row the run
 * with the lowest median wall time, its note giving every run's median (bestOfRuns). One process of
 * this VM is either in a fast or in a slow memory (and scheduling) mode for its whole life
 * (docs/PERFORMANCE.md), so the best of a few processes compares kernels more fairly than one.
 */
async function repeatedStage(f: () => BenchRow[] | Promise<BenchRow[]>): Promise<BenchRow[]> {
  const runs: BenchRow[][] = [];
  for (let i = 0; i < repeat; i++) runs.push(await timedStage(f));
  return bestOfRuns(runs);
}

/** The table's note under `--repeat N` (WGSL rows run once). */
const REPEAT_NOTE = (n: number) =>
  `--repeat ${n}: each CPU row is the run with the lowest median of ${n}, peers alike (kgen, llama.cpp, onnxruntime-web and the naive baseline in ${n} fresh processes; onnxruntime-node in ${n} sessions of the bench's own process); a row not timed in all ${n} has no time; every median in --json's note`;

/** Runs `f` and stamps its rows with the background CPU load seen meanwhile. */
async function timedStage(f: () => BenchRow[] | Promise<BenchRow[]>): Promise<BenchRow[]> {
  const s0 = cpuSample();
  const t0 = performance.now();
  const out = await f();
  const bg = foreignCpu(s0, cpuSample());
  const wall = (performance.now() - t0) / 1e3;
  for (const r of out) if (bg !== undefined && wall > 0) r.bgLoad = bg / wall;
  return out;
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const workDir = mkdtempSync(join(tmpdir(), 'kgen-bench-'));
  const rows: BenchRow[] = [];
  try {
    const probeExe = flag('--no-probe') ? undefined : compileProbe(workDir);
    const probe = probeExe ? await stage(rows, () => probeRows(probeExe)) : [];
    bracketProbe = probeExe;

    let peerLevels: number[] = [];
    if (!flag('--no-peer') && matmulCases.length) {
      for (const level of [4, 0]) {
        const v = await verifyPeer(level);
        log(`peer: MatMulNBits accuracy_level ${level} matches the reference on M=3,N=96,K=512 (nmse ${v.nmse.toExponential(2)})`);
      }
      peerLevels = [4, 0];
    }

    // llama.cpp through node-llama-cpp's prebuilt ggml libraries; skipped, with the reason, where they do not load.
    let llama: LlamaLibs | null = null;
    const llamaVariants = new Map<string, string>();
    if (!flag('--no-peer') && !flag('--no-llama')) {
      const l = await loadLlama({ workDir, benchSrc, libDir: opt('--llama-libs', '') || undefined });
      if (typeof l === 'string') log(`llama.cpp rows skipped: ${l}`);
      else {
        llama = l;
        for (const isa of isas) {
          const v = pickVariant(l, isa);
          if (typeof v === 'string') log(`llama.cpp ${isa} rows skipped: ${v}`);
          else llamaVariants.set(isa, v.name);
        }
        log(`llama.cpp: ggml ${l.version} (commit ${l.commit}) from ${l.dir}; variants ${[...llamaVariants].map(([i, v]) => `${i}: ${v}`).join(', ') || 'none'}`);
      }
    }

    const loaded = flag('--no-kgen') ? null : await loadEmit();
    if (typeof loaded === 'string') log(`kgen rows skipped: ${loaded}`);
    const emit = typeof loaded === 'function' ? loaded : null;
    const harnessSource = readFileSync(join(benchSrc, 'harness.c'), 'utf8');
    const noOrtWeb = flag('--no-peer') || flag('--no-ort-web') ? undefined : ortWebMissing();
    if (noOrtWeb) log(`onnxruntime-web rows skipped: ${noOrtWeb}`);
    const ortWeb = !flag('--no-peer') && !flag('--no-ort-web') && !noOrtWeb;

    for (const sc of matmulCases) {
      const { M, N, K } = sc.shape;
      // Only M = 1 streams the weights once: its rows are compared with the probe.
      const bracket = { bracket: M === 1 };
      log(`${sc.name}: generating W[${N},${K}] ~ N(0, 0.02^2) and X[${M},${K}] ~ N(0,1)`);
      const wf = new Rng(20240601).fillNormal(new Float32Array(N * K), 0.02);
      const x = new Rng(20240602).fillNormal(new Float32Array(M * K));
      const packed = new Map<string, { codec: BlockCodec; bytes: Uint8Array }>();
      const pack = (f: string) => {
        let p = packed.get(f);
        if (!p) {
          const t = Date.now();
          const format = FORMATS[f as WeightFormatName];
          if (!format) throw new Error(`unknown weight format ${f}`);
          const codec = format.codec(GROUP[f]);
          p = { codec, bytes: quantizeMatrix(codec, wf, N, K) };
          packed.set(f, p);
          log(`${sc.name}: quantized W to ${f} in ${((Date.now() - t) / 1e3).toFixed(1)} s`);
        }
        return p;
      };

      for (const [f, isa] of formats.flatMap((f) => isas.map((i) => [f, i] as const))) {
        if (!emit) break;
        const label = `${sc.name} kgen ${LABEL[f] ?? f} ${isa}`;
        try {
          const { codec, bytes } = pack(f);
          await stage(rows, () =>
            benchKgen(emit, {
              label,
              op: `matmul_${f}`,
              shape: sc.shape,
              codec,
              w: bytes,
              x,
              threads,
              warmup: sc.warmup,
              runs: sc.runs,
              isa,
              workDir,
              harnessSource,
            }),
            bracket,
          );
        } catch (e) {
          const message = (e as Error).message;
          log(`${label}: FAILED: ${message}`);
          for (const t of threads) {
            rows.push({ kind: 'kgen', case: `${label} (FAILED)`, shape: `M=${M},N=${N},K=${K}`, threads: t, ms: NaN, minMs: NaN, bytes: 0, gbps: NaN, runs: 0, note: message.split('\n')[0] });
          }
        }
      }

      // kgen's WebAssembly kernels through their emitted loader, in a child Node, per forced level
      // the format's output has (f16: simd128 only).
      for (const f of formats) {
        const missing = wasmLevels.filter((l) => !levelsOfFormat(f).includes(l));
        if (missing.length) log(`${sc.name} kgen wasm ${LABEL[f] ?? f}: no ${missing.join(', ')} rows: the format has no ${missing.join(', ')} kernel`);
      }
      for (const [f, level] of formats.flatMap((f) => wasmLevels.filter((l) => levelsOfFormat(f).includes(l)).map((l) => [f, l] as const))) {
        if (!emit) break;
        const label = `${sc.name} kgen wasm ${LABEL[f] ?? f} ${level}`;
        try {
          const { codec, bytes } = pack(f);
          await stage(rows, () => benchWasm(emit, { label, op: `matmul_${f}`, shape: sc.shape, codec, w: bytes, x, threads, warmup: sc.warmup, runs: sc.runs, level, workDir }), bracket);
        } catch (e) {
          const message = (e as Error).message;
          log(`${label}: FAILED: ${message}`);
          for (const t of threads) {
            rows.push({ kind: 'kgen', case: `${label} (FAILED)`, shape: `M=${M},N=${N},K=${K}`, threads: t, ms: NaN, minMs: NaN, bytes: 0, gbps: NaN, runs: 0, note: message.split('\n')[0] });
          }
        }
      }

      if (ortWeb) {
        const label = `${sc.name} ort-web MatMulNBits q4/32 wasm`;
        try {
          const q40 = pack('q4_0').bytes;
          await stage(rows, () => benchOrtWeb({ shape: sc.shape, q40, x, threads, ...ORT_WEB_RUNS, workDir }, label), bracket);
        } catch (e) {
          log(`${label}: FAILED: ${(e as Error).message}`);
        }
      }

      for (const level of peerLevels) {
        const label = `${sc.name} ort MatMulNBits q4/32 ${level === 4 ? 'int8 act' : 'f32 act'}`;
        const q40 = pack('q4_0').bytes;
        await stage(rows, () =>
          benchPeer({ shape: sc.shape, q40, x, threads, accuracyLevel: level, warmup: sc.peerWarmup, runs: sc.peerRuns }, label),
          bracket,
        );
      }

      if (llama && llamaVariants.size) {
        const inputDir = join(workDir, `llama-inputs-${M}x${N}x${K}`);
        writeLlamaInputs(inputDir, wf, x);
        for (const [isa, variant] of llamaVariants) {
          for (const f of llamaFormats) {
            const label = `${sc.name} llama.cpp ${f} ${isa}`;
            try {
              const libs = llama;
              await stage(rows, () =>
                benchLlama(libs, { label, format: f, variant, shape: sc.shape, inputDir, x, threads, warmup: sc.warmup, runs: sc.runs, workDir }, wf),
                bracket,
              );
            } catch (e) {
              const message = (e as Error).message;
              log(`${label}: FAILED: ${message}`);
              for (const t of threads) {
                rows.push({ kind: 'peer', case: `${label} (FAILED)`, shape: `M=${M},N=${N},K=${K}`, threads: t, ms: NaN, minMs: NaN, bytes: 0, gbps: NaN, runs: 0, note: message.split('\n')[0] });
              }
            }
          }
        }
      }
    }

    if (attentionCases.length) {
      const peers = !flag('--no-peer');
      const attention = await attentionRows({
        workloads: attentionCases,
        threads,
        kvFormats: peers && !flag('--no-llama') ? attnKv : [],
        ortTypes: peers ? attnOrt : [],
        naive: !flag('--no-naive'),
        llama,
        kgen: flag('--no-kgen') ? null : { threads, isas, wasm: !flag('--no-wasm'), formats: attnFormats, qInt8: attnQInt8, hugePages: flag('--huge-pages') },
        workDir,
        benchSrc,
        stage: (f, o) => stage([], f, o),
      });
      rows.push(...attention);
    }

    // WGSL (WebGPU) on SwiftShader, or the GPU Dawn finds: kgen default vs tuned, next to onnxruntime-web.
    if (!flag('--no-wgsl') && (matmulCases.length > 0 || cases.includes('wgsl'))) {
      const cacheDir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kgen', 'builds');
      await stage(rows, () => wgslRows({ workDir, cacheDir, trials: Number(opt('--wgsl-trials', '8')), peerRuns: Number(opt('--wgsl-peer-runs', '5')), peer: !flag('--no-peer') }), { bracket: false, repeat: false });
    }

    // % of the probe: against the probe bracketing the row's stage, else the run's first probe.
    for (const r of rows.filter(streamsOnce)) {
      const p = r.probeGbps ?? probe.find((q) => q.threads === r.threads)?.gbps;
      if (p !== undefined && Number.isFinite(r.gbps)) r.pctProbe = (100 * r.gbps) / p;
    }
  } finally {
    if (flag('--keep')) log(`kept ${workDir}`);
    else rmSync(workDir, { recursive: true, force: true });
  }

  if (json) for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
  else {
    process.stdout.write(`${formatTable(rows)}\n`);
    if (repeat > 1) process.stdout.write(`${REPEAT_NOTE(repeat)}\n`);
  }

  // Tuning: tuned vs default, and the strategies against an exhaustive run (builds cached across runs).
  const tuneDir = mkdtempSync(join(tmpdir(), 'kgen-bench-tune-'));
  try {
    const cacheDir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kgen', 'builds');
    const tuneThreads = Math.max(...threads);
    // Attention-only runs (--cases attention) skip the matmul tuning tables.
    const tuned = flag('--no-tune') || !matmulCases.length ? [] : await tunedRows(tuneDir, cacheDir, Number(opt('--tune-trials', '40')), tuneThreads);
    const strategies = matmulCases.length ? await strategyRows(tuneDir, cacheDir, Number(opt('--strategies', '2')), tuneThreads) : [];
    if (json) for (const r of [...tuned, ...strategies]) process.stdout.write(`${JSON.stringify(r)}\n`);
    else if (tuned.length || strategies.length) process.stdout.write(`${formatTuningTables(tuned, strategies)}\n`);
  } finally {
    rmSync(tuneDir, { recursive: true, force: true });
  }
  const noisy = rows.filter((r) => (r.bgLoad ?? 0) > 0.1);
  if (noisy.length) {
    const worst = Math.max(...noisy.map((r) => r.bgLoad!));
    log(`warning: other processes used up to ${worst.toFixed(2)} cores while these rows ran (bgLoad in --json); 2-thread rows suffer most:`);
    for (const r of noisy) log(`  ${r.case} ${r.threads}T: ${r.bgLoad!.toFixed(2)} cores busy elsewhere`);
  }
  log(`done in ${((Date.now() - t0) / 1e3).toFixed(0)} s`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
