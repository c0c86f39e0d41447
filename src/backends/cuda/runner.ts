import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Plan } from '../../plan/types.js';
import { KgenError } from '../../errors.js';
import { packagePath } from '../../package-files.js';
import { sourceKey } from '../harness.js';
import { cachedBuild, runHarness, SANITIZER_ENV } from '../runner-core.js';
import { requireTool } from '../tools.js';
import type { BuildOptions, KernelBuild, KernelExecution, KernelInputs, KernelRunner, RenderedKernel, TimingOptions } from '../types.js';

/** The CUDA CPU shim: headers standing in for CUDA's, and the fiber scheduler (templates/cuda/shim). */
export function shimDir(): string {
  return packagePath('templates', 'cuda', 'shim');
}

/** How the shim builds an emitted kernel.cu and kgen_run.cu: g++ as C++17, warnings on. */
export const SHIM_COMPILER = 'g++';
export const SHIM_FLAGS = ['-std=c++17', '-O2', '-Wall', '-Wextra'];
const SANITIZE_FLAGS = ['-O1', '-g', '-fno-omit-frame-pointer', '-fsanitize=address,undefined', '-fno-sanitize-recover=all'];

const shimObjects = new Map<string, Promise<string>>();

/**
 * The shim's object file for these flags, compiled once per process and machine (cached in the
 * temporary directory under a hash of its source and flags, through the runner core's cached
 * build, so concurrent builders never see half a file).
 */
function shimObject(flags: string[]): Promise<string> {
  const shim = shimDir();
  const key = sourceKey({ h: readFileSync(join(shim, 'kgen_cuda_shim.h'), 'utf8'), cpp: readFileSync(join(shim, 'kgen_cuda_shim.cpp'), 'utf8') }, flags);
  let found = shimObjects.get(key);
  if (!found) {
    found = (async () => {
      const build = await cachedBuild({
        cacheDir: tmpdir(),
        id: `kgen-cuda-shim-${key}`,
        tempPrefix: 'kgen-cuda-shim-',
        sources: {},
        products: ['kgen_cuda_shim.o'],
        async compile(_dir, temp) {
          const cc = await execa(SHIM_COMPILER, [...flags, '-I', shim, '-c', join(shim, 'kgen_cuda_shim.cpp'), '-o', temp('kgen_cuda_shim.o')], { reject: false, all: true });
          return cc.exitCode === 0 ? {} : { error: cc.all ?? '' };
        },
      });
      // This machine's compiler, not the kernel: one that cannot build the shim builds no CUDA kernel here.
      if (build.status !== 'ok') {
        throw new KgenError({
          field: SHIM_COMPILER, problem: `does not compile kgen's CUDA CPU shim (${flags.join(' ')}): ${build.detail}`,
          expected: 'a C++17 compiler (with the address and undefined-behaviour sanitizer runtimes for --sanitize)',
          hint: 'install or update g++ (Debian: apt-get install g++), or run on a machine with an NVIDIA GPU and nvcc',
        });
      }
      return join(build.dir, 'kgen_cuda_shim.o');
    })();
    shimObjects.set(key, found);
  }
  return found;
}

const checkCompiler = () => requireTool(SHIM_COMPILER, 'install a C++ compiler (Debian: apt-get install g++)');

/**
 * Runs CUDA kernels without a GPU: the emitted kernel.cu and kgen_run.cu, unchanged, compiled by
 * g++ against the CPU shim, each GPU thread a fiber. Results are exact emulation of what the
 * source computes; times are CPU times and say nothing about a GPU (`timesAreReal: false`).
 */
export function cudaShimRunner(): KernelRunner {
  return {
    name: 'cuda-cpu-shim (no GPU: g++ and kgen\'s CPU shim)',
    timesAreReal: false,
    buildFlags: ['werror', 'sanitize'],
    cannotExecute: () => undefined,
    async build(plan: Plan, kernel: RenderedKernel, opts: BuildOptions = {}): Promise<KernelBuild> {
      await checkCompiler();
      const flags = [...SHIM_FLAGS, ...(opts.werror ? ['-Werror'] : []), ...(opts.sanitize ? SANITIZE_FLAGS : [])];
      const sources = { 'kernel.cu': kernel.files['kernel.cu']!, 'kernel.h': kernel.files['kernel.h']!, 'kgen_run.cu': kernel.files['kgen_run.cu']! };
      const shim = shimDir();
      const shimObj = await shimObject(flags);
      const timeoutMs = opts.timeoutMs ?? 180_000;
      return cachedBuild({
        cacheDir: opts.cacheDir,
        id: sourceKey({ ...sources, shim: shimObj }, flags),
        tempPrefix: 'kgen-cuda-',
        sources,
        products: ['kgen_run'],
        async compile(dir, temp) {
          const cc = await execa(SHIM_COMPILER, [...flags, '-I', shim, '-x', 'c++', join(dir, 'kernel.cu'), join(dir, 'kgen_run.cu'), '-x', 'none', shimObj, '-o', temp('kgen_run'), '-lm'], {
            reject: false,
            all: true,
            timeout: timeoutMs,
          });
          return cc.exitCode === 0 ? {} : { error: cc.timedOut ? `compiler timed out after ${timeoutMs} ms` : (cc.all ?? '') };
        },
      });
    },
    execute: executeRunKit,
  };
}

/**
 * Runs a built kgen_run (the emitted run kit, however it was compiled; after `wrapper`, e.g. a
 * sanitizer, when given) on `inputs`: it writes the output to y.bin and, when timed, prints the
 * sorted times; a deadlock or bad warp operation the shim reports on stderr, or a CUDA error, is a
 * crash with that text.
 */
export function executeRunKit(
  build: Extract<KernelBuild, { status: 'ok' }>,
  inputs: KernelInputs,
  opts: { timeoutMs?: number; timing?: TimingOptions; wrapper?: string[]; env?: Record<string, string> } = {},
): Promise<KernelExecution> {
  const t = opts.timing;
  return runHarness({
    command: [...(opts.wrapper ?? []), join(build.dir, 'kgen_run')],
    args: (dataDir) => [dataDir, ...(t ? ['--warmup', String(t.warmup), '--runs', String(t.runs), '--flush-bytes', String(Math.max(0, Math.round(t.flushBytes))), '--times'] : [])],
    inputs,
    timeoutMs: opts.timeoutMs,
    timed: t !== undefined,
    env: { ...SANITIZER_ENV, ...opts.env },
    tempPrefix: 'kgen-cuda-run-',
    name: 'kgen_run',
  });
}
