import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KgenError } from '../../errors.js';
import type { Plan } from '../../plan/types.js';
import { sourceKey, streamedBytes, weightCopies } from '../harness.js';
import { cachedBuild, runHarness } from '../runner-core.js';
import type { BuildOptions, KernelBuild, KernelExecution, KernelInputs, KernelRunner, RenderedKernel, TimingOptions } from '../types.js';
import { assembleKernel, MODULES } from './assemble.js';

/**
 * Which module a run uses: the loader's choice (`auto`: the plan's preferred level, relaxed only
 * where the probe passes), or one level forced (relaxed fails where the probe says no).
 */
export type WasmRunLevel = 'auto' | 'simd128' | 'relaxed';

/**
 * V8 flags of the harness process. Node 20 ships relaxed SIMD only behind
 * --experimental-wasm-relaxed-simd, and its Liftoff baseline compiler computes
 * i32x4.relaxed_dot_i8x16_i7x16_add_s wrongly (twice the dot product, accumulator dropped), so the
 * harness runs with Liftoff off: there the relaxed kernels are verified and timed as TurboFan runs
 * them. The probe still decides in the harness, so an engine where relaxed SIMD is wrong or absent
 * runs the SIMD128 module (or fails a forced relaxed run). Users of emitted kernels need no flag:
 * their loader's probe falls back the same way.
 */
export const HARNESS_NODE_FLAGS = ['--experimental-wasm-relaxed-simd', '--no-liftoff'];

/**
 * Which harness a plan's output has: matmul's splits rows (`node harness.mjs DIR LEVEL SPLITS
 * [WARMUP RUNS COPIES]`, one thread), attention's splits tasks and merge rows over threads (`node
 * harness.mjs DIR LEVEL SPLITS THREADS [WARMUP RUNS COPIES]`; the check runs on `checkThreads`,
 * a timed run on the timing's threads).
 */
export type WasmHarness = { kind: 'rows' } | { kind: 'tasks'; checkThreads: number; maxThreads: number };

/** Refuses a thread count the harness cannot run: matmul's runs one thread, attention's 1 to its slots. */
function checkHarnessThreads(harness: WasmHarness, threads: number): void {
  if (harness.kind === 'tasks') {
    if (!Number.isInteger(threads) || threads < 1 || threads > harness.maxThreads) {
      throw new KgenError({ field: '--threads', problem: `the WebAssembly attention harness runs 1 to ${harness.maxThreads} threads, not ${threads}`, expected: `1..${harness.maxThreads}`, hint: 'the workspace holds one scratch slot per thread that runs tasks' });
    }
  } else if (threads !== 1) {
    throw new KgenError({ field: '--threads', problem: `the WebAssembly harness runs one thread, not ${threads}`, expected: '1', hint: 'time WebAssembly kernels with --threads 1' });
  }
}

/**
 * Builds WebAssembly kernels (assembling their text in-process) and runs them in a child Node
 * process on the same input files the C harness reads, with a timeout; a module that does not
 * assemble is a compile_error, a failing or hanging run a crash or timeout, never an exception.
 */
export function wasmRunner(level: WasmRunLevel = 'auto', harness: WasmHarness = { kind: 'rows' }): KernelRunner {
  return {
    name: `node ${process.version} (${level === 'auto' ? 'preferred level where the probe allows' : level})`,
    timesAreReal: true,
    cannotExecute: () => undefined,
    async build(_plan: Plan, kernel: RenderedKernel, opts: BuildOptions = {}): Promise<KernelBuild> {
      const sources = { ...kernel.files, ...kernel.harnessFiles };
      const products = Object.entries(MODULES).filter(([text]) => kernel.files[text] !== undefined).map(([, binary]) => binary);
      return cachedBuild({
        cacheDir: opts.cacheDir,
        id: sourceKey(sources, ['wabt', 'simd', 'relaxed_simd', 'threads']),
        tempPrefix: 'kgen-wasm-',
        sources,
        products,
        async compile(_dir, temp) {
          const r = await assembleKernel(kernel);
          if ('error' in r) return { error: r.error };
          for (const [name, bytes] of Object.entries(r.files)) writeFileSync(temp(name), bytes);
          return {};
        },
      });
    },
    checkTimedThreads: (threads) => checkHarnessThreads(harness, threads),
    async execute(build, inputs: KernelInputs, opts: { timeoutMs?: number; timing?: TimingOptions } = {}): Promise<KernelExecution> {
      const t = opts.timing;
      let threadArgs: string[] = [];
      if (harness.kind === 'tasks') {
        const threads = t?.threads ?? harness.checkThreads;
        checkHarnessThreads(harness, threads);
        threadArgs = [String(threads)];
      } else if (t) {
        checkHarnessThreads(harness, t.threads ?? 1);
      }
      return runHarness({
        command: [process.execPath, ...HARNESS_NODE_FLAGS, join(build.dir, 'harness.mjs')],
        args: (dataDir) => [dataDir, level, '3', ...threadArgs, ...(t ? [String(t.warmup), String(t.runs), String(weightCopies(t, streamedBytes(inputs)))] : [])],
        inputs,
        timeoutMs: opts.timeoutMs,
        timed: t !== undefined,
        tempPrefix: 'kgen-wasm-run-',
        name: 'the WebAssembly harness',
      });
    },
  };
}
