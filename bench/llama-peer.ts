/**
 * Peer rows: llama.cpp's CPU matmul, i.e. ggml's CPU backend with ggml's default weight repacking,
 * through the prebuilt libraries of the `@node-llama-cpp/linux-x64` npm package (an exactly pinned
 * optional dependency, used by nothing but this bench). bench/llama-peer.c is the harness: it opens
 * the libraries with dlopen, so it builds without them, and a missing or foreign library turns into
 * one "skipped" line, not a failed bench.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MatmulShape } from '../src/ir/types.js';
import { FORMATS, type BlockCodec } from '../src/quant/index.js';
import { compareOutputs, withinTolerance, type Tolerance } from '../src/reference/compare.js';
import { referenceMatmul } from '../src/reference/matmul.js';
import { f32Bytes } from './onnx-model.js';
import { coldCopies, log, type BenchRow } from './common.js';
import { checkRows } from './kgen-rows.js';

/** The package that ships the libraries, and the ggml version whose API llama-peer.c declares. */
export const LLAMA_PACKAGE = '@node-llama-cpp/linux-x64';
const GGML_VERSION = '0.25.1';
/** The formats the llama.cpp rows run (ggml's own types; kgen's q4_0/q8_0 are the same bytes). */
export const LLAMA_FORMATS = ['q4_0', 'q8_0'] as const;

interface Variant {
  /** e.g. haswell, for libggml-cpu-haswell.so. */
  name: string;
  /** ggml_backend_score() on this CPU; 0: the CPU lacks an instruction the variant uses. */
  score: number;
  /** What the variant reports it was built with (AVX2, AVX512, REPACK, ...); empty when score is 0. */
  features: Record<string, string>;
}

export interface LlamaLibs {
  dir: string;
  exe: string;
  version: string;
  commit: string;
  variants: Variant[];
}

/** The directory with the libraries: `--llama-libs DIR`, else the package's bins/linux-x64. */
async function libDir(override: string | undefined): Promise<string> {
  if (override) return override;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`${LLAMA_PACKAGE} holds libraries for Linux x64 (glibc) only; this is ${process.platform}-${process.arch}`);
  }
  // A variable specifier: the package is optional, so neither tsc nor the layer check may need it.
  const spec: string = LLAMA_PACKAGE;
  let mod: { getBinsDir?: () => { binsDir: string } };
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    throw new Error(`cannot load ${spec} (an optional dependency: npm skips it off Linux x64 glibc or with --omit=optional): ${(e as Error).message.split('\n')[0]}`);
  }
  if (typeof mod.getBinsDir !== 'function') throw new Error(`${spec} does not export getBinsDir`);
  return join(mod.getBinsDir().binsDir, 'linux-x64');
}

/**
 * Finds the libraries, compiles the harness and lists the CPU variants with their scores on this
 * CPU. Returns the reason instead when any of it fails, so the bench can skip these rows.
 */
export async function loadLlama(o: { workDir: string; benchSrc: string; libDir?: string }): Promise<LlamaLibs | string> {
  let dir: string;
  try {
    dir = await libDir(o.libDir);
  } catch (e) {
    return (e as Error).message;
  }
  if (!existsSync(join(dir, 'libggml-base.so'))) return `no libggml-base.so in ${dir}`;
  const exe = join(o.workDir, 'llama-peer');
  const cc = spawnSync('gcc', ['-O2', '-std=c11', '-Wall', join(o.benchSrc, 'llama-peer.c'), '-o', exe, '-ldl', '-lm'], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return `cannot compile bench/llama-peer.c: ${(cc.error?.message ?? cc.stderr).trim().split('\n')[0]}`;
  const r = spawnSync(exe, ['list', dir], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return (r.error?.message ?? r.stderr).trim().split('\n').pop() || `llama-peer list exited ${r.status}`;
  const listed = JSON.parse(r.stdout) as { version: string; commit: string; variants: Variant[] };
  if (listed.version !== GGML_VERSION) {
    return `${dir} holds ggml ${listed.version}; bench/llama-peer.c declares ggml ${GGML_VERSION}'s API (update both together)`;
  }
  return { dir, exe, ...listed };
}

/**
 * The ggml CPU variant for a kgen ISA: the highest-scoring variant on this CPU among those built
 * with AVX2 but not AVX-512 (avx2; haswell on most CPUs) or with AVX-512 (avx512; the variant
 * ggml's own loader picks where the CPU has AVX-512). Returns the reason where there is none.
 */
export function pickVariant(libs: LlamaLibs, isa: string): Variant | string {
  const fits: Record<string, (v: Variant) => boolean> = {
    avx2: (v) => v.features['AVX2'] === '1' && v.features['AVX512'] !== '1',
    avx512: (v) => v.features['AVX512'] === '1',
  };
  const fit = fits[isa];
  if (!fit) return `no ggml CPU variant corresponds to isa ${isa}`;
  const ok = libs.variants.filter((v) => v.score > 0 && fit(v)).sort((a, b) => b.score - a.score);
  return ok[0] ?? `no ${isa} variant of ggml-cpu in ${libs.dir} runs on this CPU`;
}

export interface LlamaCase {
  /** e.g. "gemv llama.cpp q4_0 avx2"; the variant and whether the weights were repacked are added. */
  label: string;
  format: (typeof LLAMA_FORMATS)[number];
  variant: string;
  shape: MatmulShape;
  /** Directory holding w.f32 (W[N,K]) and x.f32 (X[M,K]); see writeLlamaInputs. */
  inputDir: string;
  x: Float32Array;
  threads: readonly number[];
  warmup: number;
  runs: number;
  workDir: string;
}

/** Writes the f32 weights and activations the harness quantizes and multiplies (once per shape). */
export function writeLlamaInputs(dir: string, w: Float32Array, x: Float32Array): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'w.f32'), f32Bytes(w));
  writeFileSync(join(dir, 'x.f32'), f32Bytes(x));
}

interface SetupLine {
  version: string;
  commit: string;
  device: string;
  buffer_type: string;
  repacked: boolean;
  weight_bytes: number;
  copies: number;
}

interface TimeLine {
  threads: number;
  median_ms: number;
  min_ms: number;
  runs: number;
  copies: number;
  same_as_first: boolean;
}


/**
 * Checks ggml's Y against the f64 reference matmul on ggml's own quantized weights (dequantized by
 * kgen's codec of the same format), on 40 output columns for every row, with the tolerance kgen's
 * plans state for int8 activations (ggml quantizes X to q8_0 blocks); every element must be finite.
 * Also says whether ggml's quantized bytes equal kgen's quantizer's on those rows of W.
 */
function checkOutput(c: LlamaCase, codec: BlockCodec, wq: Uint8Array, y: Float32Array, wf: Float32Array | undefined): { ok: boolean; detail: string; sameBytes?: boolean } {
  const { M, N, K } = c.shape;
  for (let i = 0; i < y.length; i++) {
    if (!Number.isFinite(y[i]!)) return { ok: false, detail: `Y[${Math.floor(i / N)},${i % N}] is ${y[i]}` };
  }
  const cols = checkRows(N); // output columns = weight rows: the rows the kgen rows check
  const bpr = K / codec.weightsPerBlock;
  const rowBytes = bpr * codec.bytesPerBlock;
  const wd = new Float32Array(cols.length * K);
  let sameBytes: boolean | undefined = wf ? true : undefined;
  const mine = new Uint8Array(rowBytes);
  cols.forEach((n, r) => {
    for (let b = 0; b < bpr; b++) {
      codec.dequantizeBlock(wq, n * rowBytes + b * codec.bytesPerBlock, wd, r * K + b * codec.weightsPerBlock);
      if (wf) codec.quantizeBlock(wf, n * K + b * codec.weightsPerBlock, mine, b * codec.bytesPerBlock);
    }
    if (wf) for (let i = 0; i < rowBytes; i++) if (mine[i] !== wq[n * rowBytes + i]) sameBytes = false;
  });
  const ref = referenceMatmul({ M, N: cols.length, K }, { bias: false, activation: 'none', residual: false }, { x: c.x, w: wd });
  const got = new Float32Array(M * cols.length);
  for (let m = 0; m < M; m++) cols.forEach((n, r) => (got[m * cols.length + r] = y[m * N + n]!));
  // ggml rounds activations its own way (an f16 scale, its own rounding), not as a kgen plan
  // states it: a fixed bound, 8x the int8 rounding's NMSE on this N(0,1) data.
  const tol: Tolerance = { nmse: 2e-4, maxRelToPeak: 2e-2 };
  const cmp = compareOutputs(got, ref);
  return {
    ok: withinTolerance(cmp, tol),
    detail: `nmse ${cmp.nmse.toExponential(2)} (limit ${tol.nmse}), max abs err ${cmp.maxAbsError.toExponential(2)}`,
    sameBytes,
  };
}

/**
 * Runs the harness for one format, variant and shape on every thread count and returns its rows.
 * `wf` (the f32 weights, optional) only serves the byte comparison with kgen's quantizer.
 */
export function benchLlama(libs: LlamaLibs, c: LlamaCase, wf?: Float32Array): BenchRow[] {
  const { M, N, K } = c.shape;
  const codec = FORMATS[c.format].codec(32);
  const wbytes = (N * K * codec.bytesPerBlock) / codec.weightsPerBlock;
  const copies = coldCopies(wbytes);
  const out = join(c.workDir, `llama-${c.format}-${c.variant}-${M}x${N}x${K}`);
  mkdirSync(out, { recursive: true });
  log(`${c.label}: ggml-cpu-${c.variant}, ${copies} weight copies of ${(wbytes / 2 ** 20).toFixed(1)} MiB, ${c.threads.join(',')} thread(s)`);
  const args = ['run', libs.dir, c.variant, c.inputDir, out, c.format, String(M), String(N), String(K), String(copies), String(c.warmup), String(c.runs), ...c.threads.map(String)];
  const r = spawnSync(libs.exe, args, { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.error) throw new Error(`llama-peer: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`llama-peer exited ${r.status}: ${r.stderr.trim().split('\n').pop()}`);
  const lines = r.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Partial<SetupLine & TimeLine>);
  const setup = lines.find((l) => 'buffer_type' in l) as SetupLine | undefined;
  const timed = lines.filter((l) => 'median_ms' in l) as TimeLine[];
  if (!setup || setup.weight_bytes !== wbytes) throw new Error(`llama-peer: unexpected output ${r.stdout.slice(0, 200)}`);

  // ggml logs the layout it repacks to ("repack: repack tensor ... with q4_0_8x8") on stderr.
  const layout = /repack tensor.* with (\S+)/.exec(r.stderr)?.[1];
  const repacked = setup.repacked && setup.buffer_type !== 'CPU';
  const how = repacked ? `repacked${layout ? ` ${layout}` : ''}` : `not repacked: the device takes ${c.format} only from the ${setup.buffer_type} buffer`;
  log(`${c.label}: ggml ${setup.version} (${setup.commit}), weights in ${setup.buffer_type}, ${how}`);

  const wq = new Uint8Array(readFileSync(join(out, 'wq.bin')));
  const yBuf = readFileSync(join(out, 'y.bin'));
  const y = new Float32Array(yBuf.buffer, yBuf.byteOffset, yBuf.byteLength / 4);
  const check = checkOutput(c, codec, wq, y, wf);
  if (!check.ok) log(`${c.label}: OUTPUT WRONG, no time reported: ${check.detail}`);
  else log(`${c.label}: output matches the reference (${check.detail})`);
  if (check.sameBytes === false) log(`${c.label}: note: ggml's ${c.format} bytes differ from kgen's quantizer on the checked rows`);
  else if (check.sameBytes) log(`${c.label}: ggml's ${c.format} bytes equal kgen's on the checked rows`);

  const label = `${c.label} (${c.variant}, ${repacked ? 'repacked' : 'not repacked'})`;
  const bytes = wbytes + M * K * 4 + M * N * 4;
  return timed.map((l): BenchRow => {
    if (!l.same_as_first) log(`${c.label} ${l.threads}T: Y differs in some bits from the first thread count's Y`);
    const ms = check.ok ? l.median_ms : NaN;
    return {
      kind: 'peer',
      case: check.ok ? label : `${label} (WRONG OUTPUT)`,
      shape: `M=${M},N=${N},K=${K}`,
      threads: l.threads,
      ms,
      minMs: check.ok ? l.min_ms : NaN,
      bytes,
      gbps: bytes / (ms * 1e-3) / 1e9,
      gflops: (2 * M * N * K) / (ms * 1e-3) / 1e9,
      runs: l.runs,
      copies: l.copies,
      note: `ggml ${setup.version} ${setup.commit} ggml-cpu-${c.variant}, ${how}; ${check.detail}`,
    };
  });
}
