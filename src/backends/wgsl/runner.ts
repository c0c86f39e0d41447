import { readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { execa } from 'execa';
import { swiftShaderIcd } from '../../device/index.js';
import type { DeviceProfile } from '../../device/profile.js';
import { ToolMissingError } from '../../errors.js';
import { textHash } from '../../hash.js';
import { packagePath } from '../../package-files.js';
import type { Plan } from '../../plan/types.js';
import { sourceKey } from '../harness.js';
import { cachedBuild, runHarness } from '../runner-core.js';
import type { BindingInterface, BuildOptions, KernelBuild, KernelExecution, KernelInputs, KernelRunner, RenderedKernel, TimingOptions } from '../types.js';
import { WGSL_RUN_SPEC_FILE } from './run-spec.js';

/** kgen's Dawn run program (plain ES module: it runs in a child Node process). */
export function dawnRunScript(): string {
  return packagePath('templates', 'wgsl', 'run', 'dawn-run.mjs');
}

let runScriptHash: string | undefined;
/**
 * A hash of the run program's text, part of every build's cache key: its compile step decides the
 * verdict a cache keeps (limits, `checkDevice`, the compile itself), so a cache directory filled by
 * another kgen's run program must not answer for this one's.
 */
function dawnRunScriptHash(): string {
  return (runScriptHash ??= textHash(readFileSync(dawnRunScript(), 'utf8')));
}

/**
 * Exit statuses of the Dawn run program, which it takes as its first argument (`dawnRunArgs`):
 * `runtime` a failure running the kernel (pipeline creation, device lost, a validation error; its
 * message on stderr), `noAdapter` no WebGPU adapter here or no webgpu package (the machine, not
 * the kernel). A compile error is a verdict on stdout with `ok`.
 */
export const DAWN_RUN_EXIT = { ok: 0, runtime: 1, noAdapter: 3 } as const;

/** Node's arguments that run the Dawn run program in `mode` (probe, compile, run), before the mode's own. */
function dawnRunArgs(mode: 'probe' | 'compile' | 'run'): string[] {
  return [dawnRunScript(), `--exits=${JSON.stringify(DAWN_RUN_EXIT)}`, mode];
}

/** gpu.arch of profiles that describe SwiftShader, and of the generic WebGPU profile. */
const SWIFTSHADER_ARCH = 'swiftshader';
const GENERIC_WEBGPU_ARCH = 'webgpu';

/** How to install what runs WGSL kernels here, for ToolMissingError. */
export const WGSL_INSTALL_HINT = 'install Debian\'s chromium package for SwiftShader (scripts/install-tools.sh does) and the npm package webgpu (an optional dependency of kgen)';
/** What to do when the webgpu package itself does not load (left out by `npm install --omit=optional`, or no build for this platform). */
const WEBGPU_PACKAGE_HINT = 'npm install webgpu beside kgen (an optional dependency: `npm install --omit=optional` leaves it out; only WGSL runs, verify and tune need it, not emit)';
/** How the run program's stderr says the webgpu package did not load (templates/wgsl/run/dawn-run.mjs writes it). */
export const WEBGPU_NOT_LOADED = 'the webgpu package does not load: ';

/** The adapter a child process will get, and the environment that selects it. */
export interface DawnAdapter {
  /** "SwiftShader" or the adapter's description. */
  name: string;
  swiftShader: boolean;
  /** Set by kgen for the child (never required from the user's shell). */
  env: Record<string, string>;
  /** The adapter as probed: info, features, limits. */
  probe: ProbeResult;
}

/** What the run program reports of the adapter it gets (`dawn-run.mjs probe`). */
export interface ProbeResult {
  adapter: null | { vendor: string; architecture: string; device: string; description: string; subgroupMinSize?: number; subgroupMaxSize?: number };
  features?: string[];
  limits?: Record<string, number>;
  /** The webgpu package's version (its Dawn build). */
  webgpu?: string;
}

const probes = new Map<string, Promise<ProbeResult | undefined>>();

/**
 * What the run program sees with `env` (once per process and environment); undefined when it
 * cannot run. Throws ToolMissingError when the webgpu package does not load: no adapter can be
 * found then, and the package, not Vulkan or SwiftShader, is what to install.
 */
function probe(env: Record<string, string>): Promise<ProbeResult | undefined> {
  const key = JSON.stringify(env);
  let p = probes.get(key);
  if (!p) {
    p = execa(process.execPath, dawnRunArgs('probe'), { reject: false, timeout: 30_000, env }).then((r) => {
      const line = /^\{.*\}$/m.exec(r.stdout ?? '');
      const notLoaded = r.exitCode === DAWN_RUN_EXIT.noAdapter ? (r.stderr ?? '').split('\n').find((l) => l.includes(WEBGPU_NOT_LOADED)) : undefined;
      if (notLoaded) {
        const why = notLoaded.slice(notLoaded.indexOf(WEBGPU_NOT_LOADED) + WEBGPU_NOT_LOADED.length);
        throw new ToolMissingError('the npm package webgpu (Dawn)', WEBGPU_PACKAGE_HINT, `does not load (${why})`);
      }
      return r.exitCode === DAWN_RUN_EXIT.ok && line ? (JSON.parse(line[0]) as ProbeResult) : undefined;
    });
    probes.set(key, p);
  }
  return p;
}

function swiftShaderEnv(icd: string): Record<string, string> {
  // Debian's chromium ships the Vulkan loader beside the ICD; the system may have none.
  const lib = dirname(icd);
  return { VK_ICD_FILENAMES: icd, LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH ? `${lib}:${process.env.LD_LIBRARY_PATH}` : lib };
}

/**
 * Why the probed adapter cannot run a kernel with binding interface `iface`, in one line, or
 * undefined when it can: a feature the kernel needs that the adapter lacks (`shader-f16`,
 * `subgroups`), or subgroups that may be narrower than the kernel was planned for (the adapter's
 * `subgroupMinSize` below the kernel's; an adapter that does not state its size is not refused
 * here). Decided from the probe, so such a kernel is `unsupported` here, not a compile error.
 */
export function adapterCannotRun(probe: ProbeResult, iface: Pick<BindingInterface, 'features' | 'subgroupMinSize'>): string | undefined {
  const has = new Set(probe.features ?? []);
  const missing = iface.features.filter((f) => !has.has(f));
  if (missing.length) return `the adapter lacks ${missing.join(', ')}`;
  const narrowest = probe.adapter?.subgroupMinSize;
  if (iface.subgroupMinSize !== undefined && narrowest !== undefined && narrowest < iface.subgroupMinSize) {
    return `the adapter's subgroups may be ${narrowest} lanes, narrower than the ${iface.subgroupMinSize} the kernel was planned for`;
  }
  return undefined;
}

/** Whether a probed adapter is SwiftShader (Dawn reports its architecture as `swiftshader`). */
const isSwiftShader = (a: NonNullable<ProbeResult['adapter']>) => a.architecture === 'swiftshader';

/**
 * The adapter for kernels planned for `profile`: SwiftShader for a SwiftShader profile (gpu.arch
 * `swiftshader`); else a real GPU when the system's Vulkan offers one, else SwiftShader. Throws
 * ToolMissingError when neither is here.
 */
export async function dawnAdapterFor(profile: DeviceProfile): Promise<DawnAdapter> {
  if (profile.gpu?.arch !== SWIFTSHADER_ARCH) {
    const system = await probe({});
    if (system?.adapter && !isSwiftShader(system.adapter)) return { name: system.adapter.description || system.adapter.vendor, swiftShader: false, env: {}, probe: system };
  }
  const icd = swiftShaderIcd();
  if (icd) {
    const env = swiftShaderEnv(icd);
    const found = await probe(env);
    if (found?.adapter) return { name: 'SwiftShader', swiftShader: true, env, probe: found };
  }
  throw new ToolMissingError('a WebGPU adapter (Dawn with SwiftShader or a GPU)', WGSL_INSTALL_HINT);
}

/**
 * Runs WGSL kernels through Dawn in a child Node process per build and per run (a timeout and a
 * crash cost the child only). Build compiles the shader module on a device with the features and
 * limits the kernel asks for, so a WGSL error is a `compile_error` naming the line (a kernel that
 * needs a feature or subgroup width the adapter lacks is `unsupported`, nothing compiled); execute creates
 * the pipeline with the emitted loader, kernel.js (the driver's compile, seconds on SwiftShader, so it is done once: a failure there is
 * a `crash` with the driver's message), fills the bindings from the input files, dispatches, and times by timestamp queries where the adapter has them, else by queue
 * completion. Times are real for the device only when the adapter is that device (SwiftShader for
 * the `swiftshader` profile, a GPU for a GPU's).
 */
export function wgslRunnerFor(plan: Plan): KernelRunner {
  let adapter: Promise<DawnAdapter> | undefined;
  const profile = plan.profile;
  const getAdapter = () => (adapter ??= dawnAdapterFor(profile));
  let adapterName: string | undefined;
  const getAdapterNamed = () => getAdapter().then((a) => ((adapterName = a.name), a));
  return {
    // Known once the first build or run has found the adapter.
    get name() {
      return `dawn (webgpu package) on ${adapterName ?? 'the adapter found at build time'}`;
    },
    // The `webgpu` profile (gpu.arch `webgpu`) is any adapter at the spec defaults: no adapter's times are its own.
    timesAreReal: profile.gpu?.arch !== GENERIC_WEBGPU_ARCH,
    cannotExecute: () => undefined,
    async build(_plan: Plan, kernel: RenderedKernel, opts: BuildOptions = {}): Promise<KernelBuild> {
      const a = await getAdapterNamed();
      const why = adapterCannotRun(a.probe, kernel.bindingInterface!);
      if (why) return { status: 'unsupported', detail: `${why} (${a.name})`, compileMs: 0 };
      const sources = { 'kernel.wgsl': kernel.files['kernel.wgsl']!, 'kernel.js': kernel.files['kernel.js']!, [WGSL_RUN_SPEC_FILE]: kernel.harnessFiles![WGSL_RUN_SPEC_FILE]! };
      const timeoutMs = opts.timeoutMs ?? 120_000;
      return cachedBuild({
        cacheDir: opts.cacheDir,
        id: sourceKey(sources, [a.name, JSON.stringify(a.env), `dawn-run ${dawnRunScriptHash()}`, `webgpu ${a.probe.webgpu ?? 'unknown'}`]),
        tempPrefix: 'kgen-wgsl-',
        sources,
        products: ['compiled.json'],
        async compile(dir, temp) {
          const r = await execa(process.execPath, [...dawnRunArgs('compile'), dir], { reject: false, timeout: timeoutMs, env: a.env, all: true });
          if (r.timedOut) return { error: `shader compilation timed out after ${timeoutMs} ms` };
          if (r.exitCode === DAWN_RUN_EXIT.noAdapter) throw new ToolMissingError('a WebGPU adapter (Dawn with SwiftShader or a GPU)', WGSL_INSTALL_HINT);
          const line = /^\{.*\}$/m.exec(r.stdout ?? '');
          const result = line ? (JSON.parse(line[0]) as { ok?: boolean; compileError?: string; unsupported?: string }) : undefined;
          if (result?.unsupported !== undefined) return { unsupported: result.unsupported };
          if (result?.compileError !== undefined) return { error: result.compileError };
          if (r.exitCode !== DAWN_RUN_EXIT.ok || !result?.ok) return { error: `the Dawn compiler failed (${r.exitCode === undefined ? `signal ${r.signal}` : `exit ${r.exitCode}`}): ${r.all ?? ''}`.trim() };
          writeFileSync(temp('compiled.json'), `${JSON.stringify({ adapter: a.name })}\n`);
          return {};
        },
      });
    },
    async execute(build, inputs: KernelInputs, opts: { timeoutMs?: number; timing?: TimingOptions } = {}): Promise<KernelExecution> {
      const a = await getAdapterNamed();
      const t = opts.timing;
      return runHarness({
        command: [process.execPath, ...dawnRunArgs('run'), build.dir],
        args: (dataDir) => [dataDir, ...(t ? ['--warmup', String(t.warmup), '--runs', String(t.runs), '--times'] : [])],
        inputs,
        timeoutMs: opts.timeoutMs,
        timed: t !== undefined,
        env: a.env,
        tempPrefix: 'kgen-wgsl-run-',
        name: 'dawn-run',
        onExit: (code) => {
          if (code === DAWN_RUN_EXIT.noAdapter) throw new ToolMissingError('a WebGPU adapter (Dawn with SwiftShader or a GPU)', WGSL_INSTALL_HINT);
          return undefined;
        },
      });
    },
  };
}

