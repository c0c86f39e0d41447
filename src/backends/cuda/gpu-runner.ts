import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { GpuDetection, GpuInfo } from '../../device/gpu.js';
import { archNumber, canRunArch, describeGpu, detectGpus, gpuForProfile } from '../../device/gpu.js';
import { InternalError, KgenError, ToolMissingError } from '../../errors.js';
import { textHash } from '../../hash.js';
import { opKit } from '../../ops/index.js';
import { packagePath } from '../../package-files.js';
import type { Plan } from '../../plan/types.js';
import { HARNESS_EXIT as SHARED_EXIT, sourceKey } from '../harness.js';
import { cachedBuild, runHarness } from '../runner-core.js';
import { hasTool, nvccArchs, nvccVersion, requireTool } from '../tools.js';
import type { BuildOptions, KernelBuild, KernelExecution, KernelInputs, KernelRunner, RenderedKernel, TimingOptions } from '../types.js';
import { parsePtxasReport } from './ptxas.js';
import { cudaShimRunner, executeRunKit } from './runner.js';

/** The host harness's source: one program for every kernel, loading each as a cubin. */
export function driverHarnessSource(): string {
  return packagePath('templates', 'cuda', 'driver_harness.cu');
}

/**
 * Exit statuses of the driver harness (driver_harness.cu: the GPU runner's program, not the run kit
 * an emitted kernel ships, which exits with `HARNESS_EXIT`); its build gets them as -D defines.
 */
export const DRIVER_HARNESS_EXIT = { ok: 0, usage: SHARED_EXIT.usage, cuda: 3, noGpu: 4, outOfMemory: SHARED_EXIT.outOfMemory } as const;

/**
 * How the harness is built: host code only (the driver is opened at run time, so no -lcuda), its
 * exit statuses defined from `DRIVER_HARNESS_EXIT`.
 */
export const HARNESS_FLAGS = [
  '-O2',
  '-std=c++17',
  `-DKG_EXIT_USAGE=${DRIVER_HARNESS_EXIT.usage}`,
  `-DKG_EXIT_CUDA=${DRIVER_HARNESS_EXIT.cuda}`,
  `-DKG_EXIT_NO_GPU=${DRIVER_HARNESS_EXIT.noGpu}`,
  `-DKG_EXIT_OUT_OF_MEMORY=${DRIVER_HARNESS_EXIT.outOfMemory}`,
];

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

const checkNvcc = (nvcc: string) => requireTool(nvcc, 'install the CUDA toolkit (nvcc) to build kernels for the GPU');

export { nvccVersion };

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
      const build = await cachedBuild({
        cacheDir: opts.cacheDir ?? tmpdir(),
        id: `kgen-cuda-harness-${key}`,
        tempPrefix: 'kgen-cuda-harness-',
        sources: {},
        products: ['kgen_cuda_harness'],
        async compile(_dir, temp) {
          const cc = await execa(nvcc, [...HARNESS_FLAGS, '-o', temp('kgen_cuda_harness'), driverHarnessSource(), '-ldl'], { reject: false, all: true, timeout: 300_000 });
          return cc.exitCode === 0 ? {} : { error: cc.all ?? '' };
        },
      });
      if (build.status !== 'ok') {
        throw new KgenError({ field: nvcc, problem: `cannot build kgen's GPU harness (templates/cuda/driver_harness.cu): ${build.detail.trim().split('\n').slice(0, 3).join(' | ')}`, hint: 'check the CUDA toolkit install; please report it if nvcc works otherwise' });
      }
      return join(build.dir, 'kgen_cuda_harness');
    })();
    // A failed build is not remembered: the next caller tries again (and gets the same error).
    found.catch(() => harnesses.delete(memo));
    harnesses.set(memo, found);
  }
  return found;
}

async function sanitizerCommand(explicit: string | undefined): Promise<string> {
  for (const c of explicit ? [explicit] : ['compute-sanitizer', '/usr/local/cuda/bin/compute-sanitizer']) if (await hasTool(c)) return c;
  throw new ToolMissingError(explicit ?? 'compute-sanitizer', 'it comes with the CUDA toolkit (cuda-sanitizer package); put it on PATH');
}

/** nvcc flags that compile a kernel.cu for `arch` into a module this GPU loads. */
export function moduleFlags(arch: string, gpu: GpuInfo): { file: string; flags: string[] } {
  if (gpu.arch === arch) return { file: 'kernel.cubin', flags: ['-cubin', `-arch=${arch}`] };
  // Another arch: SASS for it plus its PTX, which the driver compiles for this GPU at load time.
  const n = archNumber(arch);
  return { file: 'kernel.fatbin', flags: ['-fatbin', `-gencode=arch=compute_${n},code=[sm_${n},compute_${n}]`] };
}

/** The architecture a CUDA plan's code is compiled for: its device profile's. */
function archOf(plan: Plan): string {
  const arch = plan.profile.gpu?.arch;
  if (!arch) throw new InternalError(`${plan.device} is not a GPU profile, yet a CUDA plan names it`);
  return arch;
}

/**
 * Why this nvcc cannot build `plan`'s arch, in one line, or undefined: decided from nvcc's own
 * list (`nvcc --list-gpu-code`, as ptxasCheck does) before anything compiles, never read from its
 * error text, so such a build is `unsupported` (the toolkit's limit), not a compile error. An
 * nvcc that lists nothing leaves it to the compile.
 */
async function archUnlisted(nvcc: string, plan: Plan): Promise<string | undefined> {
  const arch = archOf(plan);
  const listed = await nvccArchs(nvcc);
  if (listed.status !== 'listed' || listed.archs.includes(arch)) return undefined;
  return `nvcc ${listed.version} builds for ${listed.archs.join(', ')}; not ${arch}, the arch of ${plan.device}'s plan: build with a CUDA toolkit that supports ${arch}`;
}

/**
 * What names a GPU runner and says whether it can run a plan. Another profile's kernels run here
 * for their results; the name says their times are this GPU's.
 */
function gpuIdentity(opts: CudaGpuRunnerOptions, how: string): Pick<KernelRunner, 'name' | 'timesAreReal' | 'cannotExecute'> {
  const gpu = opts.gpu;
  return {
    name: `gpu ${gpu.name} (${gpu.arch ?? 'unknown arch'}, ${how}${opts.profileMatches ? '' : '; not the plan\'s device profile'})`,
    timesAreReal: opts.profileMatches,
    cannotExecute(plan: Plan): string | undefined {
      const arch = archOf(plan);
      return canRunArch(gpu, arch) ? undefined : `the GPU here, ${describeGpu(gpu)}, cannot run ${arch} code`;
    },
  };
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
    ...gpuIdentity(opts, 'nvcc + CUDA driver API'),
    // nvcc's -Werror all-warnings; compute-sanitizer memcheck on the run.
    buildFlags: ['werror', 'sanitize'],
    async build(plan: Plan, kernel: RenderedKernel, bo: BuildOptions = {}): Promise<KernelBuild> {
      await checkNvcc(nvcc);
      const arch = archOf(plan);
      const unlisted = await archUnlisted(nvcc, plan);
      if (unlisted) return { status: 'unsupported', compileMs: 0, detail: unlisted };
      await cudaHarness({ nvcc, cacheDir: opts.harnessCacheDir });
      if (bo.sanitize) await sanitizerCommand(opts.computeSanitizer);
      const mod = moduleFlags(arch, gpu);
      const flags = [...mod.flags, '-std=c++17', '-O3', '-Xptxas', '-v', ...(bo.werror ? ['-Werror', 'all-warnings'] : []), ...(bo.sanitize ? ['-lineinfo'] : [])];
      const sources = { 'kernel.cu': kernel.files['kernel.cu']!, 'kernel.h': kernel.files['kernel.h']! };
      const timeoutMs = bo.timeoutMs ?? 300_000;
      return cachedBuild({
        cacheDir: bo.cacheDir,
        id: sourceKey(sources, [...flags, `nvcc ${await nvccVersion(nvcc)}`]),
        tempPrefix: 'kgen-cuda-gpu-',
        sources,
        // launch.json first, the module last: a module on disk means a complete build.
        products: ['launch.json', mod.file],
        async compile(dir, temp) {
          const cc = await execa(nvcc, [...flags, '-o', temp(mod.file), join(dir, 'kernel.cu')], { reject: false, all: true, timeout: timeoutMs });
          if (cc.exitCode !== 0) return { error: cc.timedOut ? `nvcc timed out after ${timeoutMs} ms` : (cc.all ?? '') };
          const ptxas = parsePtxasReport(cc.all ?? '');
          if (!ptxas) return { error: `ptxas reported no kernel entry: ${cc.all ?? ''}` };
          const launch = plan.launch;
          const record: LaunchRecord = {
            entry: ptxas.entry,
            module: mod.file,
            grid: launch.grid ?? [1, 1, 1],
            block: launch.block!,
            sharedBytes: launch.sharedBytes ?? 0,
            dynamicShared: launch.dynamicShared ?? false,
            yBytes: opKit(plan.op.kind).outputBytes(plan.op, plan.shape),
            sanitize: bo.sanitize ?? false,
            registers: ptxas.registers,
            spillBytes: ptxas.spillStores + ptxas.spillLoads,
          };
          writeFileSync(temp('launch.json'), `${JSON.stringify(record, null, 1)}\n`);
          return {};
        },
      });
    },
    async execute(build, inputs: KernelInputs, eo: { timeoutMs?: number; timing?: TimingOptions } = {}): Promise<KernelExecution> {
      const harness = await cudaHarness({ nvcc, cacheDir: opts.harnessCacheDir });
      const launch = JSON.parse(readFileSync(join(build.dir, 'launch.json'), 'utf8')) as LaunchRecord;
      const args = (dataDir: string) => {
        const a = ['run', join(build.dir, launch.module), launch.entry, dataDir, '--grid', launch.grid.join(','), '--block', launch.block.join(','), '--shared', String(launch.sharedBytes)];
        if (launch.dynamicShared) a.push('--dynamic-shared');
        a.push('--y-bytes', String(launch.yBytes), '--device-name', gpu.name);
        const t = eo.timing;
        if (t) a.push('--warmup', String(t.warmup), '--runs', String(t.runs), '--flush-bytes', String(Math.max(0, Math.round(t.flushBytes))));
        return a;
      };
      // Under compute-sanitizer, any finding fails the run (exit 9) with the report as its detail.
      const command = launch.sanitize ? [await sanitizerCommand(opts.computeSanitizer), '--tool', 'memcheck', '--error-exitcode', '9', '--print-limit', '20', harness] : [harness];
      return runHarness({
        command,
        args,
        inputs,
        timeoutMs: eo.timeoutMs,
        timed: eo.timing !== undefined,
        env: opts.env,
        tempPrefix: 'kgen-cuda-gpu-run-',
        name: 'the harness',
        onExit(exitCode, text) {
          if (exitCode !== DRIVER_HARNESS_EXIT.noGpu) return undefined;
          // The machine, not the kernel: no trial should carry this as its verdict.
          const why = /kgen_cuda_harness: (.*)/.exec(text)?.[1] ?? text;
          throw new KgenError({ field: 'GPU', problem: `cannot run kernels on ${gpu.name}: ${why}`, hint: 'check `nvidia-smi` and the NVIDIA driver; without a usable GPU, `kgen verify --target cuda` runs kernels through the CPU shim' });
        },
      });
    },
  };
}

/**
 * Runs CUDA kernels on this machine's GPU through their own run kit: kernel.cu and kgen_run.cu built
 * by nvcc into one program (SASS for the plan's arch plus its PTX, which a GPU of a later arch
 * compiles at load time), cached by source hash, then run on the test data as the shim runner runs
 * it. For plans whose launches the shared driver-API harness does not describe (attention: a
 * kernel, a merge and a workspace). With `sanitize` the program runs under compute-sanitizer
 * memcheck. A CUDA error is `crash`, a hang `timeout`.
 */
export function cudaRunKitGpuRunner(opts: CudaGpuRunnerOptions): KernelRunner {
  const nvcc = opts.nvcc ?? 'nvcc';
  const sanitized = new Set<string>();
  return {
    ...gpuIdentity(opts, 'nvcc + the kernel\'s run kit'),
    async build(plan: Plan, kernel: RenderedKernel, bo: BuildOptions = {}): Promise<KernelBuild> {
      await checkNvcc(nvcc);
      const unlisted = await archUnlisted(nvcc, plan);
      if (unlisted) return { status: 'unsupported', compileMs: 0, detail: unlisted };
      if (bo.sanitize) await sanitizerCommand(opts.computeSanitizer);
      const n = archNumber(archOf(plan));
      const flags = ['-O3', '-std=c++17', `-gencode=arch=compute_${n},code=[sm_${n},compute_${n}]`, ...(bo.werror ? ['-Werror', 'all-warnings'] : []), ...(bo.sanitize ? ['-lineinfo'] : [])];
      const sources = { 'kernel.cu': kernel.files['kernel.cu']!, 'kernel.h': kernel.files['kernel.h']!, 'kgen_run.cu': kernel.files['kgen_run.cu']! };
      const timeoutMs = bo.timeoutMs ?? 300_000;
      const build = await cachedBuild({
        cacheDir: bo.cacheDir,
        id: sourceKey(sources, [...flags, `nvcc ${await nvccVersion(nvcc)}`]),
        tempPrefix: 'kgen-cuda-kit-',
        sources,
        products: ['kgen_run'],
        async compile(dir, temp) {
          const cc = await execa(nvcc, [...flags, '-o', temp('kgen_run'), join(dir, 'kernel.cu'), join(dir, 'kgen_run.cu')], { reject: false, all: true, timeout: timeoutMs });
          return cc.exitCode === 0 ? {} : { error: cc.timedOut ? `nvcc timed out after ${timeoutMs} ms` : (cc.all ?? '') };
        },
      });
      if (build.status === 'ok' && bo.sanitize) sanitized.add(build.dir);
      return build;
    },
    async execute(build, inputs: KernelInputs, eo: { timeoutMs?: number; timing?: TimingOptions } = {}): Promise<KernelExecution> {
      // Under compute-sanitizer, any finding fails the run (exit 9) with the report as its detail.
      const wrapper = sanitized.has(build.dir) ? [await sanitizerCommand(opts.computeSanitizer), '--tool', 'memcheck', '--error-exitcode', '9', '--print-limit', '20'] : [];
      return executeRunKit(build, inputs, { ...eo, wrapper, env: opts.env });
    },
  };
}

/** What picks a CUDA runner: the GPUs here (default: nvidia-smi, asked once per process) and GPU runner settings. */
export interface CudaRunnerChoice {
  detection?: GpuDetection;
  gpuRunner?: Omit<CudaGpuRunnerOptions, 'gpu' | 'profileMatches'>;
}

/**
 * The runner for a CUDA plan on this machine (matmul through the driver-API harness, other ops
 * through their run kit): the GPU that is the plan's profile (times are real);
 * else any GPU here that can run the plan's arch, through PTX where it is another one (results
 * are real, times are not the profile's); else the CPU shim, which says why in its name.
 */
export function cudaRunnerFor(plan: Plan, choice: CudaRunnerChoice = {}): KernelRunner {
  const detection = choice.detection ?? detectGpus();
  // The driver-API harness launches one kernel with matmul's arguments; other plans run their run kit.
  const gpuRunner = plan.family === 'cuda-matmul' ? cudaGpuRunner : cudaRunKitGpuRunner;
  const exact = gpuForProfile(plan.profile, detection);
  if (exact) return gpuRunner({ ...choice.gpuRunner, gpu: exact, profileMatches: true });
  const arch = archOf(plan);
  const capable = detection.gpus.find((g) => canRunArch(g, arch));
  if (capable) return gpuRunner({ ...choice.gpuRunner, gpu: capable, profileMatches: false });
  const shim = cudaShimRunner();
  if (!detection.gpus.length) return shim;
  return { ...shim, name: `cuda-cpu-shim (g++ and kgen's CPU shim: the GPU here, ${detection.gpus.map(describeGpu).join('; ')}, cannot run ${arch} code)` };
}
