import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import { C_TOOLCHAINS } from '../src/backends/c/toolchain.js';
import { hostFromEnvironment, swiftShaderIcd, type HostOptions } from '../src/device/index.js';
import { outputFiles, type EmitResult } from '../src/api/emit.js';
import type { VerifyResult } from '../src/api/verify.js';
import { ptxasCheck, type PtxasEntry, type PtxasResult } from '../src/backends/cuda/ptxas.js';
import { sourceKey } from '../src/backends/harness.js';
import type { RenderedKernel } from '../src/backends/types.js';
import { kvLayoutOf } from '../src/ir/attention.js';
import type { AttentionOp, KvCacheFormat } from '../src/ir/types.js';

/**
 * The host the suite plans for, as the CLI would: the profile KGEN_HOST_PROFILE forces (`npm run
 * test:hosts`), else this machine. The library reads no environment, so an in-process call that
 * resolves `host` is handed this to see what the `bin/kgen` children see.
 */
export function suiteHost(): HostOptions {
  return hostFromEnvironment(process.env);
}

/** Writes what `kgen emit -o` writes for a WebAssembly kernel into `dir`: the text files and the assembled modules. */
export async function writeEmittedWasm(e: EmitResult, dir: string, label = e.plan.op.name): Promise<void> {
  const built = await e.rendered.binaries!();
  if ('error' in built) throw new Error(`${label}: ${built.error}`);
  for (const [name, content] of Object.entries(outputFiles(e, built.files).files)) writeFileSync(join(dir, name), content);
}

/**
 * Runs, in a child Node, a host of the WebAssembly kernel whose files are in `dir` (`writeEmittedWasm`)
 * that asks loadThreaded for thread counts it cannot use, then queues `calls` calls (`call`: the
 * threaded kernel's run on buffers `at.NAME`, placed by `sizes`) on 2 threads without awaiting them
 * and never calls close(). Returns what each refused count was answered with (`Error: message`) and
 * whether the last call resolved; fails the test if the process does not exit by itself.
 */
export async function threadedLoaderLifetime(dir: string, call: string, calls = 5): Promise<{ maxThreads: number; refused: string[]; done: boolean }> {
  writeFileSync(join(dir, 'lifetime.mjs'), `
    import { loadThreaded, maxThreads, sizes } from './kernel.mjs';
    const at = {}; let end = 64;
    for (const [name, size] of Object.entries(sizes)) { at[name] = end; end += Math.ceil(size / 64) * 64 + 64; }
    const pages = Math.ceil(end / 65536);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    const refused = [];
    for (const threads of [0, -1, 2.5, NaN, Infinity, maxThreads + 1, 1000, '2', undefined]) {
      refused.push(await loadThreaded({ memory, threads }).then(() => 'loaded', (e) => e.constructor.name + ': ' + e.message));
    }
    const k = await loadThreaded({ memory, threads: 2 });
    let last;
    for (let i = 0; i < ${calls}; i++) last = ${call};
    last.then(() => console.log(JSON.stringify({ maxThreads, refused, done: true })));
  `);
  const r = await execa(process.execPath, [join(dir, 'lifetime.mjs')], { reject: false, timeout: 60_000 });
  expect(r.timedOut, 'the process did not exit without close()').toBe(false);
  expect(r.exitCode, r.stderr).toBe(0);
  return { done: false, ...(JSON.parse(r.stdout.trim() || '{}') as { maxThreads: number; refused: string[] }) };
}

/** True when `tool` is on PATH. Tests that need it skip with a printed reason otherwise. */
export function hasTool(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function skipReason(tools: string[]): string | undefined {
  const missing = tools.filter((t) => !hasTool(t));
  if (missing.length === 0) return undefined;
  const reason = `missing ${missing.join(', ')} (\`.ci/run\` installs them: gcc-aarch64-linux-gnu, qemu-user)`;
  console.warn(`SKIP: ${reason}`);
  return reason;
}

/**
 * Why the C variant `isa` cannot be built (or, cross-compiled, run under its emulator) here: its
 * compiler or emulator missing (an arm64 host runs NEON natively); undefined when it can.
 */
export function cToolsSkipReason(isa: string): string | undefined {
  const tc = C_TOOLCHAINS[isa]!;
  return skipReason([tc.compiler, ...(tc.runner && process.arch !== 'arm64' ? [tc.runner[0]!] : [])]);
}

/**
 * Why WGSL kernels cannot run here (no SwiftShader ICD, no webgpu package), printed once with
 * `what`; undefined when they can.
 */
export function dawnSkipReason(what: string): string | undefined {
  let reason: string | undefined;
  if (!swiftShaderIcd()) reason = 'no SwiftShader Vulkan ICD (`.ci/run` installs Debian\'s chromium package for it: scripts/install-tools.sh)';
  else {
    try {
      import.meta.resolve('webgpu');
    } catch {
      reason = 'the npm package webgpu is not installed (npm ci)';
    }
  }
  if (reason) console.warn(`SKIP: ${what}: ${reason}`);
  return reason;
}

/** User IRs that cover f16 activations and outputs and every fused epilogue, for each backend's tests. */
export const EPILOGUE_IRS = [
  { kind: 'matmul', name: 'ffn_gate', x: 'f16', y: 'f16', weight: { format: 'q4_0' }, epilogue: { bias: true, activation: 'silu', residual: true } },
  { kind: 'matmul', name: 'proj_gelu', x: 'f32', y: 'f32', weight: { format: 'q35', groupSize: 32 }, epilogue: { bias: true, activation: 'gelu' } },
  { kind: 'matmul', name: 'proj_res', x: 'f16', y: 'f32', weight: { format: 'f16' }, epilogue: { residual: true } },
  { kind: 'matmul', name: 'q8_g128', x: 'f32', y: 'f16', weight: { format: 'q8', groupSize: 128 }, epilogue: { activation: 'silu' } },
];

/** Every entry under `dir`: type, size and a hash of the bytes, so a test can prove nothing changed. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) {
        out[p] = 'dir';
        walk(p);
      } else if (st.isFile()) out[p] = `file ${st.size} ${createHash('sha1').update(readFileSync(p)).digest('hex')}`;
      else out[p] = `special ${st.mode}`;
    }
  };
  walk(dir);
  return out;
}

/** One case of the attention verification matrix: the factors, then the shape around them. */
export interface AttentionMatrixRow {
  kvCache: KvCacheFormat;
  /** Hq / Hkv. */
  ratio: 1 | 4 | 5 | 8;
  Sq: 1 | 5 | 64;
  D: 64 | 128 | 256 | 80 | 96;
  causal: boolean;
  layout: 'hp' | 'ph';
  /** f32 Q and f16 O; else f16 Q and f32 O. */
  qF32: boolean;
  /** Odd, so a multiple of no power-of-two key tile or split; 1001 splits on CPUs too. */
  Skv: 77 | 131 | 333 | 1001;
  Hkv: number;
  B: number;
  /** Knobs for the CPU planner (C, WebAssembly), where its defaults would not split or pad rows. */
  cpu?: Record<string, number>;
}

/**
 * Issue 16's attention verification matrix, which every target runs against the f64 reference:
 * KV format [f16, q8, q8_0, q4_0] x Sq {1, 5, 64} x Hq/Hkv {1, 4, 5, 8} x causal and not x D {64,
 * 128, 256, and 80 or 96} x row order (heads x positions, positions x heads) x Q/O dtypes, on
 * ragged Skv. Not the product: a covering design (rows 0-15 are the orthogonal array OA(16, 4^5)
 * over GF(4), format = a, ratio = b, Sq = a+b, D = a+2b, and a+3b's bits for causal, order and
 * dtypes), so every pair of values of any two factors appears in some row (the test of the matrix
 * checks it). Sq 1 and 5 take the decode kernels, Sq 64 prefill, on every target.
 */
export const ATTENTION_MATRIX: readonly AttentionMatrixRow[] = [
  { kvCache: 'f16', ratio: 1, Sq: 1, D: 64, causal: false, layout: 'hp', qF32: false, Skv: 1001, Hkv: 2, B: 1, cpu: { splits: 2 } },
  { kvCache: 'f16', ratio: 4, Sq: 5, D: 256, causal: true, layout: 'ph', qF32: false, Skv: 333, Hkv: 2, B: 1 },
  { kvCache: 'f16', ratio: 5, Sq: 64, D: 80, causal: true, layout: 'hp', qF32: true, Skv: 77, Hkv: 1, B: 1 },
  { kvCache: 'f16', ratio: 8, Sq: 64, D: 128, causal: false, layout: 'ph', qF32: true, Skv: 131, Hkv: 1, B: 2 },
  { kvCache: 'q8', ratio: 1, Sq: 5, D: 128, causal: true, layout: 'hp', qF32: true, Skv: 1001, Hkv: 2, B: 1, cpu: { splits: 4 } },
  { kvCache: 'q8', ratio: 4, Sq: 1, D: 96, causal: false, layout: 'ph', qF32: true, Skv: 77, Hkv: 2, B: 2 },
  { kvCache: 'q8', ratio: 5, Sq: 64, D: 256, causal: false, layout: 'hp', qF32: false, Skv: 333, Hkv: 1, B: 1 },
  { kvCache: 'q8', ratio: 8, Sq: 64, D: 64, causal: true, layout: 'ph', qF32: false, Skv: 77, Hkv: 1, B: 1 },
  { kvCache: 'q8_0', ratio: 1, Sq: 64, D: 256, causal: false, layout: 'ph', qF32: true, Skv: 131, Hkv: 2, B: 1 },
  { kvCache: 'q8_0', ratio: 4, Sq: 64, D: 64, causal: true, layout: 'hp', qF32: true, Skv: 333, Hkv: 2, B: 1 },
  { kvCache: 'q8_0', ratio: 5, Sq: 1, D: 128, causal: true, layout: 'ph', qF32: false, Skv: 1001, Hkv: 1, B: 2, cpu: { splits: 8, rowGroup: 4 } },
  { kvCache: 'q8_0', ratio: 8, Sq: 5, D: 96, causal: false, layout: 'hp', qF32: false, Skv: 333, Hkv: 1, B: 1, cpu: { splits: 2, rowGroup: 4 } },
  { kvCache: 'q4_0', ratio: 1, Sq: 64, D: 96, causal: true, layout: 'ph', qF32: false, Skv: 77, Hkv: 4, B: 1 },
  { kvCache: 'q4_0', ratio: 4, Sq: 64, D: 128, causal: false, layout: 'hp', qF32: false, Skv: 333, Hkv: 2, B: 1 },
  { kvCache: 'q4_0', ratio: 5, Sq: 5, D: 64, causal: false, layout: 'ph', qF32: true, Skv: 77, Hkv: 2, B: 2, cpu: { rowGroup: 4 } },
  { kvCache: 'q4_0', ratio: 8, Sq: 1, D: 256, causal: true, layout: 'hp', qF32: true, Skv: 1001, Hkv: 1, B: 1 },
];

/** The IR and shape of a matrix row; the row order is named only where it is not the format's default. */
export function attentionMatrixCase(row: AttentionMatrixRow): { ir: Record<string, unknown>; shape: string; label: string } {
  const kvLayout = row.layout === 'hp' ? 'heads_positions' : 'positions_heads';
  const op = { kind: 'attention', name: `att_${row.kvCache}_${row.layout}_${row.causal ? 'c' : 'n'}`, kvCache: row.kvCache, causal: row.causal, q: row.qF32 ? 'f32' : 'f16', o: row.qF32 ? 'f16' : 'f32' };
  const ir = kvLayoutOf(op as AttentionOp) === kvLayout ? op : { ...op, kvLayout };
  const shape = `B=${row.B},Hq=${row.ratio * row.Hkv},Hkv=${row.Hkv},Sq=${row.Sq},Skv=${row.Skv},D=${row.D}`;
  return { ir, shape, label: `${op.name} q ${op.q} ${shape}` };
}

/**
 * What a matrix row's plan must be: a decode kernel for Sq 1 and 5, prefill for 64, and Skv a
 * multiple of neither the key tile nor (split) the keys of a split, so the last tile and split are
 * short.
 */
export function expectMatrixPlan(row: AttentionMatrixRow, plan: { variant: string; params: object }, label: string): void {
  expect(/decode|split/.test(plan.variant), `${label}: ${plan.variant}`).toBe(row.Sq <= 5);
  const p = plan.params as Record<string, unknown>;
  const tile = p.keys ?? p.kvBlock;
  expect(typeof tile, label).toBe('number');
  expect(row.Skv % (tile as number), `${label}: key tile ${String(tile)}`).not.toBe(0);
  const split = p.splitKeys ?? p.chunkKeys;
  if ((p.splits as number) > 1) expect(row.Skv % (split as number), `${label}: split of ${String(split)} keys`).not.toBe(0);
}

/** A `verify` result that ran and matched the f64 reference within the plan's tolerance (`ran`: false for compile-only variants). */
export function expectMatchesReference(r: VerifyResult, label: string, ran = true): void {
  expect(r.status, `${label}: ${r.detail ?? ''}`).toBe('ok');
  expect(r.ran, label).toBe(ran);
  if (!ran) return;
  expect(r.comparison!.nonFinite, label).toBe(0);
  expect(r.comparison!.nmse, label).toBeLessThanOrEqual(r.tolerance.nmse);
}

/**
 * Builds the CUDA run kit `kgen emit --target cuda -o DIR` wrote (kernel.cu, kgen_run.cu) with g++
 * against the CPU shim, as `kgen_run_shim` in DIR, and returns its path: the kit's own output
 * check (ref.bin, ref_terms.bin) then runs without a GPU.
 */
export function buildRunKitOnShim(dir: string): string {
  const shimDir = join(import.meta.dirname, '..', 'templates', 'cuda', 'shim');
  const bin = join(dir, 'kgen_run_shim');
  execFileSync('g++', ['-std=c++17', '-O1', '-I', shimDir, '-x', 'c++', join(dir, 'kernel.cu'), join(dir, 'kgen_run.cu'), '-x', 'none', join(shimDir, 'kgen_cuda_shim.cpp'), '-o', bin, '-lm'], { stdio: 'pipe' });
  return bin;
}

const ptxasRuns = new Map<string, Promise<PtxasResult>>();

/**
 * ptxasCheck (warnings as errors), once per arch and kernel within a test file. Two devices of one
 * arch that plan the same config (rtx4090 and l40s, h100-sxm and h200) render files that differ
 * only in the leading comment, which names the device and the command that reproduces the kernel;
 * the key leaves that comment out and keeps every other byte of kernel.cu and kernel.h.
 */
export function ptxasCheckOnce(rendered: RenderedKernel, arch: string): Promise<PtxasResult> {
  // The runners' build key (sourceKey) already leaves each file's leading comment out.
  const key = sourceKey({ 'kernel.cu': rendered.files['kernel.cu']!, 'kernel.h': rendered.files['kernel.h']! }, [arch]);
  let run = ptxasRuns.get(key);
  if (!run) {
    run = ptxasCheck(rendered, { arch, werror: true });
    ptxasRuns.set(key, run);
  }
  return run;
}

/**
 * Compiles CUDA kernels with `nvcc -cubin -Xptxas -v` (warnings as errors; ptxasCheckOnce), two at a
 * time, and returns what is wrong: a compile error, or what `judge` finds in ptxas's report of each.
 */
export async function ptxasFailures(kernels: readonly { label: string; emit: () => EmitResult }[], judge: (e: EmitResult, entries: PtxasEntry[]) => string[]): Promise<string[]> {
  const failures: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < kernels.length) {
      const { label, emit } = kernels[next++]!;
      const e = emit();
      const r = await ptxasCheckOnce(e.rendered, (e.plan.params as { arch: string }).arch);
      if (r.status !== 'ok') failures.push(`${label}: ${r.detail.slice(0, 400)}`);
      else failures.push(...judge(e, r.entries).map((f) => `${label}${f}`));
    }
  };
  await Promise.all([worker(), worker()]);
  return failures;
}

/**
 * ptxasFailures for attention kernels: the plan's kernel missing or using other static shared
 * memory than planned, an entry count other than the plan's launches, or any entry that spills.
 */
export function cudaAttentionPtxasFailures(kernels: readonly { label: string; emit: () => EmitResult }[]): Promise<string[]> {
  return ptxasFailures(kernels, (e, entries) => {
    const failures: string[] = [];
    const smemStatic = (e.plan.params as { smemStatic: number }).smemStatic;
    const main = entries.find((x) => x.entry.includes(e.plan.variant));
    if (!main) failures.push(`: no entry for ${e.plan.variant} in ${entries.map((x) => x.entry).join(', ')}`);
    else if (main.sharedBytes !== smemStatic) failures.push(`: ptxas ${main.sharedBytes} bytes of shared memory, plan ${smemStatic}`);
    if (entries.length !== (e.plan.launch.secondPass ? 2 : 1)) failures.push(`: ${entries.length} entries`);
    for (const x of entries) if (x.spillStores + x.spillLoads > 0) failures.push(` ${x.entry}: spills ${x.spillStores}+${x.spillLoads} bytes (${x.registers} registers)`);
    return failures;
  });
}
