/**
 * kgen rows: emit the C kernel for one op and shape, compile it with bench/harness.c, time it on
 * DRAM-resident weights, and check its output against the JS reference before reporting a time.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { MatmulShape } from '../src/ir/types.js';
import type { BlockCodec } from '../src/quant/index.js';
import { compareOutputs, roundedInput, roundingJudge, withinTolerance, type Tolerance } from '../src/reference/compare.js';
import { referenceMatmul } from '../src/reference/matmul.js';
import { f32Bytes } from './onnx-model.js';
import { readProbeSource } from '../src/backends/c/bandwidth.js';
import { C_TOOLCHAINS } from '../src/backends/c/toolchain.js';
import { benchHost, coldCopies, log, run, type BenchRow } from './common.js';
import type { HostOptions } from '../src/device/host.js';

/** The slice of kgen's public API the bench uses (see src/index.ts). */
export interface EmitLike {
  files: Record<string, string>;
  manifest: { weights?: { rowBytes: number; totalBytes: number }; tolerance: Tolerance };
  /** The binaries a target assembles in-process (WebAssembly modules), as `kgen emit -o` writes them. */
  rendered?: { binaries?(): Promise<{ files: Record<string, Uint8Array> } | { error: string }> };
}
export type EmitFn = (opts: { target: string; op: string; shape: string; device?: string; isa?: string } & HostOptions) => EmitLike | Promise<EmitLike>;

/**
 * Loads `emit` from the library's entry point, or from `entry` (absolute path or URL), e.g. another
 * build. Dynamic, so the bench still builds and runs its probe and peer rows while the entry point
 * is missing; returns the reason when it is.
 */
export async function loadEmit(entry?: string): Promise<EmitFn | string> {
  // KGEN_BENCH_ENTRY: another module exporting emit (absolute path or URL), e.g. another build.
  const chosen = entry ?? process.env['KGEN_BENCH_ENTRY'];
  const url = chosen ? (chosen.startsWith('/') ? pathToFileURL(chosen).href : chosen) : '../src/index.js';
  try {
    const mod = (await import(url)) as { emit?: unknown };
    if (typeof mod.emit !== 'function') return `${url} does not export emit`;
    return mod.emit as EmitFn;
  } catch (e) {
    return `cannot load ${url}: ${(e as Error).message.split('\n')[0]}`;
  }
}

export interface KgenCase {
  label: string;
  op: string;
  shape: MatmulShape;
  codec: BlockCodec;
  /** Packed weights W[N,K] in the op's format. */
  w: Uint8Array;
  x: Float32Array;
  threads: readonly number[];
  warmup: number;
  runs: number;
  isa: string;
  workDir: string;
  harnessSource: string;
}

/** One line a timing harness prints per thread count (bench/harness.c, bench/wasm-driver.ts). */
export interface HarnessLine {
  threads: number;
  median_ms: number;
  min_ms: number;
  runs: number;
  copies: number;
  weight_bytes: number;
  same_as_first: boolean;
  /** bench/harness.c with its probe on: the median plain read of one weight copy by the same threads, ms. */
  probe_median_ms?: number;
  /** What the harness adds to the row's note (the WebAssembly driver: engine and level). */
  note?: string;
}

/** Rows of W checked against the reference: both ends, the thread-split boundary, and a spread. */
export function checkRows(N: number): number[] {
  const rows = new Set<number>();
  for (let i = 0; i < 8; i++) {
    rows.add(i);
    rows.add(N - 1 - i);
    rows.add(Math.min(N - 1, Math.floor(N / 2) - 4 + i));
  }
  for (let i = 0; i < 16; i++) rows.add(Math.floor(((i + 0.5) * N) / 16));
  return [...rows].sort((a, b) => a - b);
}

/**
 * Compares a kernel's Y on a set of output columns (rows of W) for every activation row with the
 * f64 reference on the dequantized weights, using the tolerance the plan states in its manifest;
 * and requires every element of Y to be finite (the harnesses pre-fill Y with NaN).
 */
export function checkOutput(c: Pick<KgenCase, 'shape' | 'codec' | 'w' | 'x'>, y: Float32Array, tol: Tolerance): { ok: boolean; nmse: number; detail: string } {
  const { M, N, K } = c.shape;
  for (let i = 0; i < y.length; i++) {
    if (!Number.isFinite(y[i]!)) return { ok: false, nmse: NaN, detail: `Y[${Math.floor(i / N)},${i % N}] is ${y[i]}` };
  }
  const rows = checkRows(N);
  const bpr = K / c.codec.weightsPerBlock;
  const wd = new Float32Array(rows.length * K);
  rows.forEach((n, r) => {
    for (let b = 0; b < bpr; b++) {
      c.codec.dequantizeBlock(c.w, (n * bpr + b) * c.codec.bytesPerBlock, wd, r * K + b * c.codec.weightsPerBlock);
    }
  });
  const checked = { M, N: rows.length, K };
  const epilogue = { bias: false, activation: 'none', residual: false } as const;
  const ref = referenceMatmul(checked, epilogue, { x: c.x, w: wd });
  const got = new Float32Array(M * rows.length);
  for (let m = 0; m < M; m++) rows.forEach((n, r) => (got[m * rows.length + r] = y[m * N + n]!));
  const cmp = compareOutputs(got, ref);
  // Int8 activations are judged against their stated rounding on this data, as kgen verify judges them.
  const judged = roundingJudge('x', ref, (rounding) => referenceMatmul(checked, epilogue, { x: roundedInput(c.x, K, rounding), w: wd })).tolerance(tol);
  const ok = withinTolerance(cmp, judged);
  return { ok, nmse: cmp.nmse, detail: `nmse ${cmp.nmse.toExponential(2)} (limit ${judged.nmse.toExponential(2)}), max abs err ${cmp.maxAbsError.toExponential(2)}` };
}

export async function benchKgen(emit: EmitFn, c: KgenCase): Promise<BenchRow[]> {
  const { M, N, K } = c.shape;
  const shapeText = `M=${M},N=${N},K=${K}`;
  const dir = join(c.workDir, `${c.op}-${c.isa}-${M}x${N}x${K}`);
  mkdirSync(dir, { recursive: true });

  const result = await emit({ target: 'c', op: c.op, shape: shapeText, device: 'host', isa: c.isa, ...benchHost() });
  for (const [name, text] of Object.entries(result.files)) writeFileSync(join(dir, name), text);
  const rowBytes = result.manifest.weights?.rowBytes;
  if (rowBytes === undefined || rowBytes * N !== c.w.length) {
    throw new Error(`${c.op}: manifest rowBytes ${rowBytes} does not match the packed weights (${c.w.length} bytes for N=${N})`);
  }
  const harnessC = join(dir, 'harness.c');
  writeFileSync(harnessC, c.harnessSource);
  writeFileSync(join(dir, 'read_probe.h'), readProbeSource());
  const exe = join(dir, 'harness');
  const fn = `kgen_${c.op}`;
  log(`${c.label}: compiling ${fn} (${shapeText}, isa ${c.isa})`);
  // The variant's own flags (as its manifest states them), so an AVX2 row is AVX2 code even on a
  // CPU with AVX-512; -static only serves qemu runs.
  const tc = C_TOOLCHAINS[c.isa];
  if (!tc) throw new Error(`unknown C ISA ${c.isa}`);
  const flags = [...tc.flags.filter((f) => f !== '-static'), '-pthread', '-Wall', '-Wno-unused-function'];
  run(tc.compiler, [...flags, `-I${dir}`, `-DKGEN_FN=${fn}`, harnessC, join(dir, 'kernel.c'), '-o', exe, '-lm']);

  writeFileSync(join(dir, 'x.bin'), f32Bytes(c.x));
  writeFileSync(join(dir, 'w.bin'), c.w);
  const copies = coldCopies(c.w.length);
  log(`${c.label}: running on ${c.threads.join(',')} thread(s), ${copies} weight copies of ${(c.w.length / 2 ** 20).toFixed(1)} MiB`);
  // A GEMV streams W once a call: the harness also reads the same copies plainly, in between.
  const probe = M === 1 ? '1' : '0';
  const out = run(exe, [dir, String(M), String(N), String(K), String(rowBytes), String(copies), String(c.warmup), String(c.runs), probe, ...c.threads.map(String)]);
  return timedRows(c, shapeText, out, join(dir, 'y.bin'), result.manifest.tolerance);
}

/**
 * The rows of a harness's output (`out`, one JSON line per thread count) after checking the Y it
 * wrote to `yPath` (the first thread count's): a row whose output is off, or differs from the
 * first thread count's, is marked and carries no time.
 */
export function timedRows(c: Pick<KgenCase, 'label' | 'shape' | 'codec' | 'w' | 'x'>, shapeText: string, out: string, yPath: string, tol: Tolerance): BenchRow[] {
  const { M, N, K } = c.shape;
  const lines = out
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as HarnessLine);
  const yBuf = readFileSync(yPath);
  const y = new Float32Array(yBuf.buffer, yBuf.byteOffset, yBuf.byteLength / 4);
  const check = checkOutput(c, y, tol);
  if (!check.ok) log(`${c.label}: OUTPUT WRONG, no time reported: ${check.detail}`);
  else log(`${c.label}: output matches the reference (${check.detail})`);

  const bytes = c.w.length + M * K * 4 + M * N * 4;
  return lines.map((l): BenchRow => {
    const ok = check.ok && l.same_as_first;
    if (check.ok && !l.same_as_first) log(`${c.label} ${l.threads}T: Y differs from the first thread count's Y; no time reported`);
    const ms = ok ? l.median_ms : NaN;
    // The plain read covers the weight copy only; X and Y (a few KiB at M=1) stay in the caches. So
    // the share is of times (the same weight bytes), not of GB/s, which counts X and Y too (+0.2%).
    const ownReadGbps = l.probe_median_ms ? l.weight_bytes / (l.probe_median_ms * 1e6) : undefined;
    const pctOwnRead = l.probe_median_ms && ok ? (100 * l.probe_median_ms) / ms : undefined;
    const probeNote = ownReadGbps ? `plain read of the same copies ${l.probe_median_ms!.toFixed(3)} ms (${ownReadGbps.toFixed(1)} GB/s)` : undefined;
    return {
      kind: 'kgen',
      case: ok ? c.label : `${c.label} (WRONG OUTPUT)`,
      shape: shapeText,
      threads: l.threads,
      ms,
      minMs: ok ? l.min_ms : NaN,
      bytes,
      gbps: bytes / (ms * 1e-3) / 1e9,
      gflops: (2 * M * N * K) / (ms * 1e-3) / 1e9,
      runs: l.runs,
      copies: l.copies,
      ownReadGbps,
      pctOwnRead,
      note: [l.note, check.detail, probeNote].filter(Boolean).join('; '),
    };
  });
}
