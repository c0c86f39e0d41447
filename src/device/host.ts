import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { KgenError } from '../errors.js';
import { quoted, valueText } from '../io/message-text.js';
import type { CpuLimits, DeviceProfile, TargetName } from './profile.js';
import { isNativeCpu, loadProfiles } from './profile.js';

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function parseSize(text: string | undefined): number | undefined {
  const m = text && /^(\d+)([KMG]?)/.exec(text.trim());
  if (!m) return undefined;
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2] as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * mult;
}

/** Cache sizes of cpu0 from sysfs, by level (data/unified caches only). */
function cacheSizes(): { l1d?: number; l2?: number; l3?: number } {
  const out: { l1d?: number; l2?: number; l3?: number } = {};
  for (let i = 0; i < 8; i++) {
    const base = `/sys/devices/system/cpu/cpu0/cache/index${i}`;
    const level = readText(`${base}/level`)?.trim();
    const type = readText(`${base}/type`)?.trim();
    if (!level || type === 'Instruction') continue;
    const size = parseSize(readText(`${base}/size`));
    if (level === '1') out.l1d = size;
    else if (level === '2') out.l2 = size;
    else if (level === '3') out.l3 = size;
  }
  return out;
}

/**
 * L1d and L2 sizes from `getconf -a` output (glibc reads them with cpuid), for machines whose sysfs
 * has no cache entries (some VMs). L3 is left out: there glibc can report a package's or the
 * hypervisor's figure (508 MiB on a 2-vCPU EPYC VM whose L3 is 32 MiB a CCD), and L3 sizes the
 * flushes between timed runs, so it keeps the fallback. Sizes of 0 or missing are left undefined.
 */
export function parseGetconfCaches(text: string): { l1d?: number; l2?: number } {
  const size = (name: string) => {
    const m = new RegExp(`^${name}\\s+(\\d+)\\s*$`, 'm').exec(text);
    const bytes = m ? Number(m[1]) : 0;
    return bytes > 0 ? bytes : undefined;
  };
  const out: { l1d?: number; l2?: number } = {};
  const l1d = size('LEVEL1_DCACHE_SIZE'), l2 = size('LEVEL2_CACHE_SIZE');
  if (l1d !== undefined) out.l1d = l1d;
  if (l2 !== undefined) out.l2 = l2;
  return out;
}

/** parseGetconfCaches of this machine's `getconf -a`, or nothing where getconf is missing or fails. */
function getconfCaches(): { l1d?: number; l2?: number } {
  try {
    return parseGetconfCaches(execFileSync('getconf', ['-a'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }));
  } catch {
    return {};
  }
}

const X86_FLAGS: Record<string, string> = {
  avx2: 'avx2', fma: 'fma', f16c: 'f16c', avx512f: 'avx512f', avx512bw: 'avx512bw', avx512vl: 'avx512vl',
  avx512_vnni: 'avx512vnni', avx_vnni: 'avxvnni',
};
const ARM_FLAGS: Record<string, string> = { asimd: 'neon', asimddp: 'dotprod', fphp: 'fp16', i8mm: 'i8mm' };

let isaCache: { arch: CpuLimits['arch']; isa: string[]; model: string } | undefined;
let machineCache: DeviceProfile | undefined;

/**
 * ISA extensions of this CPU, in kgen's names, read from /proc/cpuinfo once per process: the real
 * CPU whatever host a caller forces, so it decides what can execute here.
 */
export function hostIsa(): { arch: CpuLimits['arch']; isa: string[]; model: string } {
  isaCache ??= readHostIsa();
  return isaCache;
}

/**
 * This CPU as a fingerprint names it: its model name, architecture and ISA extensions (sorted, one
 * string). `host` records are measured on it and count only where it is the same (src/db/lookup.ts).
 */
export function hostCpuIdentity(): { cpu: string; arch: CpuLimits['arch']; isa: string } {
  const host = hostIsa();
  return { cpu: host.model.trim(), arch: host.arch, isa: [...host.isa].sort().join(' ') };
}

function readHostIsa(): { arch: CpuLimits['arch']; isa: string[]; model: string } {
  const info = readText('/proc/cpuinfo') ?? '';
  const arch = process.arch === 'arm64' ? 'aarch64' : 'x86_64';
  const flagLine = /^(flags|Features)\s*:\s*(.*)$/m.exec(info)?.[2] ?? '';
  const flags = new Set(flagLine.split(/\s+/));
  const table = arch === 'x86_64' ? X86_FLAGS : ARM_FLAGS;
  const isa = Object.entries(table).filter(([flag]) => flags.has(flag)).map(([, name]) => name);
  const model = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? cpus()[0]?.model ?? 'unknown CPU';
  return { arch, isa, model };
}

/**
 * The environment variable that lends `host` another CPU profile's figures (see forcedHost). Only
 * the edges read it (the CLI, the bench scripts, the tests' helpers), through `hostFromEnvironment`,
 * and pass the host down as `HostOptions`; the library never looks at the environment for it.
 */
export const HOST_PROFILE_VARIABLE = 'KGEN_HOST_PROFILE';

/**
 * What the device name `host` stands for, for any library call that resolves device names.
 * `host`, when given, is a profile named `host` (`forcedHost`, or `detectMachine`); without it,
 * `host` is this machine as detected. Nothing else decides it: no environment variable is read.
 */
export interface HostOptions {
  host?: DeviceProfile;
}

/**
 * The targets `host` runs whatever figures it carries: those of every CPU profile, since kgen runs
 * each CPU target on the CPU it runs on (natively, under an emulator or in this Node); a physical
 * CPU's first, so the default target is native code (today C, then WebAssembly).
 */
function hostTargets(): TargetName[] {
  const cpus = loadProfiles().filter((p) => p.kind === 'cpu');
  const nativeFirst = [...cpus.filter(isNativeCpu), ...cpus.filter((p) => !isNativeCpu(p))];
  return [...new Set(nativeFirst.flatMap((p) => p.targets))];
}

/**
 * The profile `host` stands for under `opts`: the one given, else this machine (`detectMachine`).
 * A given profile not named `host` (a `targets/` profile passed as is) is a KgenError: plans and
 * records would carry its name where the caller asked for `host`.
 */
export function resolveHost(opts: HostOptions = {}): DeviceProfile {
  if (opts.host !== undefined && (opts.host === null || typeof opts.host !== 'object')) {
    throw new KgenError({ field: 'host', problem: `got ${valueText(opts.host, 40)}`, expected: 'a device profile named host', hint: `forcedHost(${quoted(String(opts.host))}) gives host a profile's figures` });
  }
  if (opts.host && opts.host.name !== 'host') {
    throw new KgenError({ field: 'host', problem: `a profile named ${quoted(opts.host.name)}`, expected: 'a profile named host', hint: `forcedHost(${quoted(opts.host.name)}) gives host its figures` });
  }
  return opts.host ?? detectMachine();
}

/**
 * The host an edge of kgen (the CLI, a bench script) plans for, from the environment it is given:
 * `host` forced to the CPU profile `KGEN_HOST_PROFILE` names (`forcedHost`), or nothing (this
 * machine) where the variable is unset or empty. The variable is a hook for tests and CI, so that
 * what depends on `host`'s figures (default configs, rendered kernels) is the same on every
 * machine. It changes what kgen plans for `host`, never what it judges this machine able to run:
 * `hostIsa` and the runners keep reading /proc/cpuinfo, so an AVX-512 profile forced on an AVX2
 * CPU gives AVX-512 kernels that are compiled and not run.
 */
export function hostFromEnvironment(env: Readonly<Record<string, string | undefined>>): HostOptions {
  const forced = env[HOST_PROFILE_VARIABLE];
  return forced ? { host: forcedHost(forced, { askedBy: HOST_PROFILE_VARIABLE }) } : {};
}

/** How `forcedHost` was asked for its profile. */
export interface ForcedHostOptions {
  /**
   * The setting a user gave the name in (an edge's: the CLI's `KGEN_HOST_PROFILE`): the refusal's
   * field and hint name it, and the profile's description (`SETTING=name`) and sources. Absent (a
   * library caller passing the name itself): the field is `host` and no setting is named.
   */
  askedBy?: string;
}

/**
 * `host` with the figures of the CPU profile `name` (ISA, cores, caches, memory, peak) and
 * `forcedFrom` set to it. A name that is not a physical CPU's profile of `targets/` is a KgenError
 * on the field `host`, or on `opts.askedBy` where an edge read the name from a setting.
 */
export function forcedHost(name: string, opts: ForcedHostOptions = {}): DeviceProfile {
  const by = opts.askedBy;
  const choices = loadProfiles().filter(isNativeCpu);
  const base = choices.find((p) => p.name === name);
  if (!base?.cpu) {
    const other = loadProfiles().find((p) => p.name === name);
    throw new KgenError({
      field: by ?? 'host',
      problem: other ? `${quoted(name)} is a ${other.kind === 'gpu' ? 'GPU' : 'WebAssembly'} profile, not a CPU that runs C kernels` : `unknown profile ${quoted(name)}`,
      expected: `a CPU profile: ${choices.map((p) => p.name).join(', ')}`,
      hint: by ? `unset ${by} to plan for this machine's own CPU` : "pass no host to plan for this machine's own CPU",
    });
  }
  return {
    name: 'host',
    description: `${by ? `${by}=${base.name}` : `forced to ${base.name}`}: ${base.description}, in place of this machine's CPU`,
    kind: 'cpu',
    targets: hostTargets(),
    cpu: { ...base.cpu, isa: [...base.cpu.isa] },
    memory: { ...base.memory },
    peak: { ...base.peak },
    sources: { ...base.sources, host: `${by ? `${by}: ` : ''}the figures of targets/${base.name}.json, not detected` },
    forcedFrom: base.name,
  };
}

/**
 * This machine's own CPU as a profile named `host`, detected once per process, whatever host a
 * caller forces: what a measurement here (timing threads, cache flushes, the bandwidth
 * probe) must follow. Bandwidth and peak are estimates (marked so in `sources`); `kgen bench`
 * measures the real bandwidth.
 */
export function detectMachine(): DeviceProfile {
  machineCache ??= readHost();
  return machineCache;
}

/** The profile whose figures a measurement of `device` on this machine follows: this machine for a forced `host`, else `device`. */
export function measuredDevice(device: DeviceProfile): DeviceProfile {
  return device.forcedFrom ? detectMachine() : device;
}

function readHost(): DeviceProfile {
  const { arch, isa, model } = hostIsa();
  const sysfs = cacheSizes();
  const getconf = sysfs.l1d === undefined && sysfs.l2 === undefined ? getconfCaches() : {};
  // Where the sizes came from, for `sources`: getconf only when it gave one.
  const fromGetconf = getconf.l1d !== undefined || getconf.l2 !== undefined;
  const caches = { ...sysfs, ...getconf };
  const cores = cpus().length;
  const vectorBits = isa.includes('avx512f') ? 512 : isa.includes('avx2') || isa.includes('fma') ? 256 : 128;
  const clockGHz = (cpus()[0]?.speed ?? 3000) / 1000 || 3;
  const f32FlopsPerCycle = (vectorBits / 32) * 2 * 2;
  return {
    name: 'host',
    description: `this machine: ${model.trim()}, ${cores} cores`,
    kind: 'cpu',
    targets: hostTargets(),
    cpu: {
      arch,
      isa,
      cores,
      threads: cores,
      vectorRegisters: isa.includes('avx512f') || arch === 'aarch64' ? 32 : 16,
      l1dBytes: caches.l1d ?? 32768,
      l2Bytes: caches.l2 ?? 524288,
      l3Bytes: caches.l3 ?? 8388608,
      clockGHz,
    },
    memory: { bandwidthGBs: 10 * Math.min(cores, 8), capacityGiB: Math.round(totalmem() / 1024 ** 3) },
    peak: { f32TFLOPS: (cores * clockGHz * f32FlopsPerCycle) / 1000, int8TOPS: (cores * clockGHz * f32FlopsPerCycle * 4) / 1000 },
    sources: {
      cpu: `detected: /proc/cpuinfo flags, ${fromGetconf ? 'getconf (L1d, L2: sysfs has no cache entries here; L3 a fallback unless sysfs has it)' : '/sys/devices/system/cpu/cpu0/cache'}, os.cpus()`,
      memory: 'estimate (10 GB/s per core, up to 8); `npm run bench` measures it',
      peak: `estimate: cores x ${clockGHz.toFixed(2)} GHz x ${f32FlopsPerCycle} f32 flops/cycle (two ${vectorBits}-bit FMA pipes)`,
    },
  };
}
