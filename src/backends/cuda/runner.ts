import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { ToolMissingError } from '../../errors.js';
import type { Plan } from '../../plan/types.js';
import { packagePath } from '../../package-files.js';
import { HARNESS_EXIT, outOfMemoryError, parseTimesLine, sourceKey } from '../harness.js';
import type { BuildOptions, KernelBuild, KernelExecution, KernelInputs, KernelRunner, RenderedKernel, TimingOptions } from '../types.js';

/** The CUDA CPU shim: headers standing in for CUDA's, and the fiber scheduler (templates/cuda/shim). */
export function shimDir(): string {
  return packagePath('templates', 'cuda', 'shim');
}

/** How the shim builds an emitted kernel.cu and kgen_run.cu: g++ as C++17, warnings on. */
export const SHIM_COMPILER = 'g++';
export const SHIM_FLAGS = ['-std=c++17', '-O2', '-Wall', '-Wextra'];
const SANITIZE_FLAGS = ['-O1', '-g', '-fno-omit-frame-pointer', '-fsanitize=address,undefined', '-fno-sanitize-recover=all'];

let haveCompiler: boolean | undefined;
const shimObjects = new Map<string, Promise<string>>();

/**
 * The shim's object file for these flags, compiled once per process and machine (cached in the
 * temporary directory under a hash of its source and flags; written by rename, so concurrent
 * builders never see half a file).
 */
function shimObject(flags: string[]): Promise<string> {
  const shim = shimDir();
  const key = sourceKey({ h: readFileSync(join(shim, 'kgen_cuda_shim.h'), 'utf8'), cpp: readFileSync(join(shim, 'kgen_cuda_shim.cpp'), 'utf8') }, flags);
  let found = shimObjects.get(key);
  if (!found) {
    found = (async () => {
      const dir = join(tmpdir(), `kgen-cuda-shim-${key}`);
      const obj = join(dir, 'kgen_cuda_shim.o');
      if (existsSync(obj)) return obj;
      mkdirSync(dir, { recursive: true });
      const tmp = `${obj}.${process.pid}.${Math.random().toString(36).slice(2)}`;
      const cc = await execa(SHIM_COMPILER, [...flags, '-I', shim, '-c', join(shim, 'kgen_cuda_shim.cpp'), '-o', tmp], { reject: false, all: true });
      if (cc.exitCode !== 0) throw new Error(`kgen: the CUDA shim does not compile here: ${cc.all ?? ''}`);
      renameSync(tmp, obj);
      return obj;
    })();
    shimObjects.set(key, found);
  }
  return found;
}

async function checkCompiler(): Promise<void> {
  haveCompiler ??= (await execa('sh', ['-c', `command -v ${SHIM_COMPILER}`], { reject: false })).exitCode === 0;
  if (!haveCompiler) throw new ToolMissingError(SHIM_COMPILER, 'install a C++ compiler (Debian: apt-get install g++)');
}

/**
 * Runs CUDA kernels without a GPU: the emitted kernel.cu and kgen_run.cu, unchanged, compiled by
 * g++ against the CPU shim, each GPU thread a fiber. Results are exact emulation of what the
 * source computes; times are CPU times and say nothing about a GPU (`timesAreReal: false`).
 */
export function cudaShimRunner(): KernelRunner {
  return {
    name: 'cuda-cpu-shim (no GPU: g++ and kgen\'s CPU shim)',
    timesAreReal: false,
    cannotExecute: () => undefined,
    async build(plan: Plan, kernel: RenderedKernel, opts: BuildOptions = {}): Promise<KernelBuild> {
      await checkCompiler();
      const flags = [...SHIM_FLAGS, ...(opts.werror ? ['-Werror'] : []), ...(opts.sanitize ? SANITIZE_FLAGS : [])];
      const sources = { 'kernel.cu': kernel.files['kernel.cu']!, 'kernel.h': kernel.files['kernel.h']!, 'kgen_run.cu': kernel.files['kgen_run.cu']! };
      const shim = shimDir();
      const shimObj = await shimObject(flags);
      const id = sourceKey({ ...sources, shim: shimObj }, flags);
      const dir = opts.cacheDir ? join(opts.cacheDir, id) : mkdtempSync(join(tmpdir(), 'kgen-cuda-'));
      const dispose = () => {
        if (!opts.cacheDir) rmSync(dir, { recursive: true, force: true });
      };
      const bin = join(dir, 'kgen_run');
      if (opts.cacheDir && existsSync(bin)) return { status: 'ok', id, dir, compileMs: 0, cached: true, dispose };
      mkdirSync(dir, { recursive: true });
      for (const [name, text] of Object.entries(sources)) writeFileSync(join(dir, name), text);
      const tmpBin = `${bin}.${process.pid}.${Math.random().toString(36).slice(2)}`;
      const t0 = performance.now();
      const cc = await execa(SHIM_COMPILER, [...flags, '-I', shim, '-x', 'c++', join(dir, 'kernel.cu'), join(dir, 'kgen_run.cu'), '-x', 'none', shimObj, '-o', tmpBin, '-lm'], {
        reject: false,
        all: true,
        timeout: opts.timeoutMs ?? 180_000,
      });
      const compileMs = performance.now() - t0;
      if (cc.exitCode !== 0) {
        rmSync(tmpBin, { force: true });
        dispose();
        return { status: 'compile_error', detail: cc.timedOut ? `compiler timed out after ${opts.timeoutMs ?? 180_000} ms` : (cc.all ?? ''), compileMs };
      }
      renameSync(tmpBin, bin);
      return { status: 'ok', id, dir, compileMs, cached: false, dispose };
    },
    async execute(build, inputs: KernelInputs, opts: { timeoutMs?: number; timing?: TimingOptions } = {}): Promise<KernelExecution> {
      const dataDir = mkdtempSync(join(tmpdir(), 'kgen-cuda-run-'));
      try {
        for (const [name, bytes] of Object.entries(inputs)) writeFileSync(join(dataDir, name), bytes);
        const args = [dataDir];
        const t = opts.timing;
        if (t) args.push('--warmup', String(t.warmup), '--runs', String(t.runs), '--flush-bytes', String(t.flushBytes), '--times');
        const timeoutMs = opts.timeoutMs ?? 120_000;
        const t1 = performance.now();
        const run = await execa(join(build.dir, 'kgen_run'), args, {
          reject: false,
          all: true,
          timeout: timeoutMs,
          env: { ASAN_OPTIONS: 'detect_leaks=1', UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1' },
        });
        const runMs = performance.now() - t1;
        if (run.timedOut) return { status: 'timeout', detail: `no result after ${timeoutMs} ms`, runMs };
        // The shim reports a deadlock, a bad warp operation or a stray cp.async on stderr and aborts.
        if (run.exitCode === HARNESS_EXIT.outOfMemory) throw outOfMemoryError(run.stderr ?? '');
        if (run.exitCode !== 0) {
          return { status: 'crash', detail: `${run.exitCode === undefined ? `signal ${run.signal}` : `exit ${run.exitCode}`}: ${run.all ?? ''}`.trim(), runMs };
        }
        const output = new Uint8Array(readFileSync(join(dataDir, 'y.bin')));
        if (!t) return { status: 'ok', output, runMs };
        const timing = parseTimesLine(run.stdout ?? '');
        if (!timing) return { status: 'crash', detail: `kgen_run printed no timing line: ${run.all ?? ''}`, runMs };
        return { status: 'ok', output, runMs, timing };
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}
