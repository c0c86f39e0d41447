import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { GpuDetection, GpuInfo } from '../../device/gpu.js';
import { archNumber, canRunArch, describeGpu, detectGpus, gpuForProfile } from '../../device/gpu.js';
import { getDevice } from '../../device/index.js';
import { KgenError, ToolMissingError } from '../../errors.js';
import { textHash } from '../../hash.js';
import type { MatmulOp, MatmulShape } from '../../ir/types.js';
import { packagePath } from '../../package-files.js';
import type { Plan } from '../../plan/types.js';
import { HARNESS_EXIT as SHARED_EXIT, outOfMemoryError, parseTimesLine, sourceKey } from '../harness.js';
import type { BuildOptions, KernelBuild, KernelExecution, KernelInputs, KernelRunner, RenderedKernel, TimingOptions } from '../types.js';
import { parsePtxasReport } from './ptxas.js';
import { cudaShimRunner } from './runner.js';

/** The host harness's source: one program for every kernel, loading each as a cubin. */
export function driverHarnessSource(): string {
  return packagePath('templates', 'cuda', 'driver_harness.cu');
}

/** How the harness is built: host code only; the driver is opened at run time, so no -lcuda. */
export const HARNESS_FLAGS = ['-O2', '-std=c++17'];

/** Exit statuses of the harness (see the comment at the top of driver_harness.cu). */
export const HARNESS_EXIT = { ok: 0, usage: 2, cuda: 3, noGpu: 4, outOfMemory: SHARED_EXIT.outOfMemory } as const;

/** Options of the GPU runner. Explicit, so tests can point it at another driver, nvcc or cache. */
export interface CudaGpuRunnerOptions {
  /** The GPU kernels run on (from `detectGpus`). */
  gpu: GpuInfo;
  /** True when the GPU is the plan's device profile: only then do its times describe the profile. */
  profileMatches: boolean;
  /** nvcc command (default `nvcc` on PATH). */
  nvcc?: string;
  /** compute-sanitizer command for sanitized builds (default: on PATH, else /usr/local/cuda/bin). */
  computeSanitizer?: string;
  /** Where the harness binary is cached (default: the temporary directory, so once per machine). */
  harnessCacheDir?: string;
  /** Extra environment for the harness (tests point LD_LIBRARY_PATH at a stand-in driver). */
  env?: Record<string, string>;
}

/** What `build` records next to the module for `execute`: everything the launch needs. */
interface LaunchRecord {
  entry: string;
  module: string;
  grid: [number, number, number];
  block: [number, number, number];
  sharedBytes: number;
  dynamicShared: boolean;
  yBytes: number;
  sanitize: boolean;
  registers: number;
  spillBytes: number;
}

const onPath = new Map<string, Promise<boolean>>();

function have(tool: string): Promise<boolean> {
  let found = onPath.get(tool);
  if (!found) {
    found = execa('sh', ['-c', 'command -v "$1"', 'sh', tool], { reject: false }).then((r) => r.exitCode === 0);
    onPath.set(tool, found);
  }
  return found;
}

async function checkNvcc(nvcc: string): Promise<void> {
  if (!(await have(nvcc))) throw new ToolMissingError(nvcc, 'install the CUDA toolkit (nvcc) to build kernels for the GPU');
}

const versions = new Map<string, Promise<string>>();

/** nvcc's full version ("13.0.88" from "V13.0.88"), or "missing" when there is no nvcc. */
export function nvccVersion(nvcc = 'nvcc'): Promise<string> {
  let v = versions.get(nvcc);
  if (!v) {
    v = execa(nvcc, ['--version'], { reject: false }).then((r) => (r.exitCode === 0 ? /, V(\d+\.\d+\.\d+)/.exec(r.stdout ?? '')?.[1] ?? /release (\d+\.\d+)/.exec(r.stdout ?? '')?.[1] ?? 'unknown' : 'missing'));
    versions.set(nvcc, v);
  }
  return v;
}

const harnesses = new Map<string, Promise<string>>();

/**
 * The host harness binary, built by nvcc once per machine and toolkit: cached under a hash of its
 * source, flags and nvcc's version, written by rename so concurrent builders never see half a
 * file. A harness that does not build is a broken toolkit (or a kgen bug): a KgenError.
 */
export function cudaHarness(opts: { nvcc?: string; cacheDir?: string } = {}): Promise<string> {
  const nvcc = opts.nvcc ?? 'nvcc';
  const source = readFileSync(driverHarnessSource(), 'utf8');
  const memo = `${nvcc}\0${opts.cacheDir ?? ''}\0${textHash(source)}`;
  let found = harnesses.get(memo);
  if (!found) {
    found = (async () => {
      await checkNvcc(nvcc);
      const key = sourceKey({ 'driver_harness.cu': source }, [...HARNESS_FLAGS, `nvcc ${await nvccVersion(nvcc)}`]);
      const dir = join(opts.cacheDir ?? tmpdir(), `kgen-cuda-harness-${key}`);
      const bin = join(dir, 'kgen_cuda_harness');
      if (existsSync(bin)) return bin;
      mkdirSync(dir, { recursive: true });
      const tmp = `${bin}.${process.pid}.${Math.random().toString(36).slice(2)}`;
      const cc = await execa(nvcc, [...HARNESS_FLAGS, '-o', tmp, driverHarnessSource(), '-ldl'], { reject: false, all: true, timeout: 300_000 });
      if (cc.exitCode !== 0) {
        rmSync(tmp, { force: true });
        throw new KgenError({ field: nvcc, problem: `cannot build kgen's GPU harness (templates/cuda/driver_harness.cu): ${(cc.all ?? '').trim().split('\n').slice(0, 3).join(' | ')}`, hint: 'check the CUDA toolkit install; please report it if nvcc works otherwise' });
      }
      renameSync(tmp, bin);
      return bin;
    })();
    // A failed build is not remembered: the next caller tries again (and gets the same error).
    found.catch(() => harnesses.delete(memo));
    harnesses.set(memo, found);
  }
  return found;
}

async function sanitizerCommand(explicit: string | undefined): Promise<string> {
  for (const c of explicit ? [explicit] : ['compute-sanitizer', '/usr/local/cuda/bin/compute-sanitizer']) if (await have(c)) return c;
  throw new ToolMissingError(explicit ?? 'compute-sanitizer', 'it comes with the CUDA toolkit (cuda-sanitizer package); put it on PATH');
}

/** nvcc flags that compile a kernel.cu for `arch` into a module this GPU loads. */
export function moduleFlags(arch: string, gpu: GpuInfo): { file: string; flags: string[] } {
  if (gpu.arch === arch) return { file: 'kernel.cubin', flags: ['-cubin', `-arch=${arch}`] };
  // Another arch: SASS for it plus its PTX, which the driver compiles for this GPU at load time.
  const n = archNumber(arch);
  return { file: 'kernel.fatbin', flags: ['-fatbin', `-gencode=arch=compute_${n},code=[sm_${n},compute_${n}]`] };
}

function outputBytes(plan: Plan): number {
  const op = plan.op as MatmulOp;
  const { M, N } = plan.shape as MatmulShape;
  return M * N * (op.y === 'f16' ? 2 : 4);
}

/**
 * Runs CUDA kernels on this machine's GPU. `build` compiles the emitted kernel.cu with nvcc into a
 * cubin for the plan's arch (a fatbin with PTX when the GPU is another arch), cached by source hash
 * like the C runner, and takes the kernel's entry name from ptxas's report. `execute` runs the
 * shared host harness (built once) on the module: it loads it with the driver API, launches the
 * plan's grid and block with its shared memory, and times with CUDA events, the L2 flushed between
 * runs. A CUDA error is `crash`, a hang `timeout`; a machine whose driver does not answer throws.
 */
export function cudaGpuRunner(opts: CudaGpuRunnerOptions): KernelRunner {
  const nvcc = opts.nvcc ?? 'nvcc';
  const gpu = opts.gpu;
  return {
    // Another profile's kernels run here for their results; the name says their times are this GPU's.
    name: `gpu ${gpu.name} (${gpu.arch ?? 'unknown arch'}, nvcc + CUDA driver API${opts.profileMatches ? '' : '; not the plan\'s device profile'})`,
    timesAreReal: opts.profileMatches,
    cannotExecute(plan: Plan): string | undefined {
      const arch = String(plan.params.arch);
      return canRunArch(gpu, arch) ? undefined : `the GPU here, ${describeGpu(gpu)}, cannot run ${arch} code`;
    },
    async build(plan: Plan, kernel: RenderedKernel, bo: BuildOptions = {}): Promise<KernelBuild> {
      await checkNvcc(nvcc);
      await cudaHarness({ nvcc, cacheDir: opts.harnessCacheDir });
      if (bo.sanitize) await sanitizerCommand(opts.computeSanitizer);
      const arch = String(plan.params.arch);
      const mod = moduleFlags(arch, gpu);
      const flags = [...mod.flags, '-std=c++17', '-O3', '-Xptxas', '-v', ...(bo.werror ? ['-Werror', 'all-warnings'] : []), ...(bo.sanitize ? ['-lineinfo'] : [])];
      const sources = { 'kernel.cu': kernel.files['kernel.cu']!, 'kernel.h': kernel.files['kernel.h']! };
      const id = sourceKey(sources, [...flags, `nvcc ${await nvccVersion(nvcc)}`]);
      const dir = bo.cacheDir ? join(bo.cacheDir, id) : mkdtempSync(join(tmpdir(), 'kgen-cuda-gpu-'));
      const dispose = () => {
        if (!bo.cacheDir) rmSync(dir, { recursive: true, force: true });
      };
      const modulePath = join(dir, mod.file);
      const launchPath = join(dir, 'launch.json');
      if (bo.cacheDir && existsSync(modulePath) && existsSync(launchPath)) return { status: 'ok', id, dir, compileMs: 0, cached: true, dispose };
      mkdirSync(dir, { recursive: true });
      for (const [name, text] of Object.entries(sources)) writeFileSync(join(dir, name), text);
      const suffix = `${process.pid}.${Math.random().toString(36).slice(2)}`;
      const tmpModule = `${modulePath}.${suffix}`;
      const t0 = performance.now();
      const cc = await execa(nvcc, [...flags, '-o', tmpModule, join(dir, 'kernel.cu')], { reject: false, all: true, timeout: bo.timeoutMs ?? 300_000 });
      const compileMs = performance.now() - t0;
      const fail = (detail: string): KernelBuild => {
        rmSync(tmpModule, { force: true });
        dispose();
        return { status: 'compile_error', detail, compileMs };
      };
      if (cc.exitCode !== 0) return fail(cc.timedOut ? `nvcc timed out after ${bo.timeoutMs ?? 300_000} ms` : (cc.all ?? ''));
      const ptxas = parsePtxasReport(cc.all ?? '');
      if (!ptxas) return fail(`ptxas reported no kernel entry: ${cc.all ?? ''}`);
      const launch = plan.launch;
      const record: LaunchRecord = {
        entry: ptxas.entry,
        module: mod.file,
        grid: launch.grid ?? [1, 1, 1],
        block: launch.block ?? [Number(plan.params.threads), 1, 1],
        sharedBytes: launch.sharedBytes ?? 0,
        dynamicShared: launch.dynamicShared ?? false,
        yBytes: outputBytes(plan),
        sanitize: bo.sanitize ?? false,
        registers: ptxas.registers,
        spillBytes: ptxas.spillStores + ptxas.spillLoads,
      };
      // launch.json first, the module last: a module on disk means a complete build.
      writeFileSync(`${launchPath}.${suffix}`, `${JSON.stringify(record, null, 1)}\n`);
      renameSync(`${launchPath}.${suffix}`, launchPath);
      renameSync(tmpModule, modulePath);
      return { status: 'ok', id, dir, compileMs, cached: false, dispose };
    },
    async execute(build, inputs: KernelInputs, eo: { timeoutMs?: number; timing?: TimingOptions } = {}): Promise<KernelExecution> {
      const harness = await cudaHarness({ nvcc, cacheDir: opts.harnessCacheDir });
      const launch = JSON.parse(readFileSync(join(build.dir, 'launch.json'), 'utf8')) as LaunchRecord;
      const dataDir = mkdtempSync(join(tmpdir(), 'kgen-cuda-gpu-run-'));
      try {
        for (const [name, bytes] of Object.entries(inputs)) writeFileSync(join(dataDir, name), bytes);
        const args = ['run', join(build.dir, launch.module), launch.entry, dataDir, '--grid', launch.grid.join(','), '--block', launch.block.join(','), '--shared', String(launch.sharedBytes)];
        if (launch.dynamicShared) args.push('--dynamic-shared');
        args.push('--y-bytes', String(launch.yBytes), '--device-name', gpu.name);
        const t = eo.timing;
        if (t) args.push('--warmup', String(t.warmup), '--runs', String(t.runs), '--flush-bytes', String(Math.max(0, Math.round(t.flushBytes))));
        // Under compute-sanitizer, any finding fails the run (exit 9) with the report as its detail.
        const cmd = launch.sanitize ? [await sanitizerCommand(opts.computeSanitizer), '--tool', 'memcheck', '--error-exitcode', '9', '--print-limit', '20', harness, ...args] : [harness, ...args];
        const timeoutMs = eo.timeoutMs ?? 120_000;
        const t1 = performance.now();
        const run = await execa(cmd[0]!, cmd.slice(1), { reject: false, timeout: timeoutMs, env: opts.env });
        const runMs = performance.now() - t1;
        if (run.timedOut) return { status: 'timeout', detail: `no result after ${timeoutMs} ms`, runMs };
        // The harness's (or compute-sanitizer's) messages first: they say what went wrong.
        const text = [run.stderr, run.stdout].map((t) => (t ?? '').trim()).filter(Boolean).join('\n');
        if (run.exitCode === HARNESS_EXIT.noGpu) {
          // The machine, not the kernel: no trial should carry this as its verdict.
          const why = /kgen_cuda_harness: (.*)/.exec(text)?.[1] ?? text;
          throw new KgenError({ field: 'GPU', problem: `cannot run kernels on ${gpu.name}: ${why}`, hint: 'check `nvidia-smi` and the NVIDIA driver; without a usable GPU, `kgen verify --target cuda` runs kernels through the CPU shim' });
        }
        if (run.exitCode === HARNESS_EXIT.outOfMemory) throw outOfMemoryError(text);
        if (run.exitCode !== 0) {
          return { status: 'crash', detail: `${run.exitCode === undefined ? `signal ${run.signal}` : `exit ${run.exitCode}`}: ${text}`, runMs };
        }
        const output = new Uint8Array(readFileSync(join(dataDir, 'y.bin')));
        if (!t) return { status: 'ok', output, runMs };
        const timing = parseTimesLine(run.stdout ?? '');
        if (!timing) return { status: 'crash', detail: `the harness printed no timing line: ${text}`, runMs };
        return { status: 'ok', output, runMs, timing };
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** What picks a CUDA runner: the GPUs here (default: nvidia-smi, asked once per process) and GPU runner settings. */
export interface CudaRunnerChoice {
  detection?: GpuDetection;
  gpuRunner?: Omit<CudaGpuRunnerOptions, 'gpu' | 'profileMatches'>;
}

/**
 * The runner for a CUDA plan on this machine: the GPU that is the plan's profile (times are real);
 * else any GPU here that can run the plan's arch, through PTX where it is another one (results
 * are real, times are not the profile's); else the CPU shim, which says why in its name.
 */
export function cudaRunnerFor(plan: Plan, choice: CudaRunnerChoice = {}): KernelRunner {
  const detection = choice.detection ?? detectGpus();
  const exact = gpuForProfile(getDevice(plan.device), detection);
  if (exact) return cudaGpuRunner({ ...choice.gpuRunner, gpu: exact, profileMatches: true });
  const arch = String(plan.params.arch);
  const capable = detection.gpus.find((g) => canRunArch(g, arch));
  if (capable) return cudaGpuRunner({ ...choice.gpuRunner, gpu: capable, profileMatches: false });
  const shim = cudaShimRunner();
  if (!detection.gpus.length) return shim;
  return { ...shim, name: `cuda-cpu-shim (g++ and kgen's CPU shim: the GPU here, ${detection.gpus.map(describeGpu).join('; ')}, cannot run ${arch} code)` };
}
