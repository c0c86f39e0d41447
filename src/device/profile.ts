import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KgenError } from '../errors.js';
import { canonicalHash } from '../hash.js';
import { readRegularFile } from '../io/input-file.js';
import { parseJsonInput } from '../io/json-input.js';
import { pathText, quoted } from '../io/message-text.js';
import { packagePath } from '../package-files.js';

/**
 * A kgen target's name (`c`, `cuda`, ...). The targets themselves are registered in
 * src/backends/registry.ts; a profile names those its device runs.
 */
export type TargetName = string;

/**
 * What a GPU can do beyond its limits, as data the planners and the support check read (never a
 * guess from a vendor or arch name).
 */
export interface GpuFeatures {
  /** Smallest and largest subgroup (warp, wavefront) size the device may use; code must be correct for all of them. */
  subgroupSizes: [number, number];
  /** Whether subgroup operations may be used at all (WebGPU: the optional `subgroups` feature); NVIDIA warps always. */
  subgroups?: boolean;
  /** f16 arithmetic in kernels (WebGPU: the optional `shader-f16` feature). */
  f16: boolean;
  /** 8-bit integer dot products: `dp4a` (CUDA), `dot4I8Packed` (WGSL). */
  dot8: string[];
  /** Asynchronous global-to-shared copies (CUDA cp.async, sm_80+). */
  asyncCopy: boolean;
  /** Tensor-core instructions by PTX name (`mma.m16n8k16.f16`). */
  tensorCores: string[];
}

/** GPU on-chip and thread limits. Bytes are bytes; counts are counts. */
export interface GpuLimits {
  vendor: string;
  /** `sm_89` for NVIDIA, a label for others. */
  arch: string;
  multiprocessors?: number;
  warpSize: number;
  maxThreadsPerBlock: number;
  maxWorkgroupSize?: [number, number, number];
  /** Shared (workgroup) memory a block may use without opting in. */
  sharedPerBlockBytes: number;
  /** Shared memory a block may use after opting in (CUDA `cudaFuncAttributeMaxDynamicSharedMemorySize`). */
  sharedPerBlockOptinBytes: number;
  sharedPerMultiprocessorBytes?: number;
  /** 0 where the API exposes no register limit (WebGPU). */
  registersPerThread: number;
  registersPerMultiprocessor?: number;
  /**
   * WebGPU `maxStorageBufferBindingSize`: the largest storage binding (128 MiB at the spec defaults,
   * taken when absent). The adapter's figure (`adapter.limits`), which a device has only when it
   * requests it: every kernel's `limits` ask for the largest binding it makes.
   */
  maxStorageBufferBindingBytes?: number;
  /**
   * WebGPU `maxBufferSize`: the largest GPUBuffer (256 MiB at the spec defaults, taken when absent).
   * Every tensor bound whole is one buffer; weights past the binding limit are bound in chunks that
   * fit it too (`weightChunkLimit`), each a buffer of its own (the loader's `createBuffers`).
   */
  maxBufferBytes?: number;
  /** WebGPU `maxStorageBuffersPerShaderStage` (8 at the spec defaults). */
  maxStorageBuffersPerShaderStage?: number;
  /** WebGPU `maxComputeWorkgroupsPerDimension` (65535 at the spec defaults). */
  maxWorkgroupsPerDimension?: number;
  l2Bytes?: number;
  features: GpuFeatures;
}

/**
 * Bytes of a cache line, the unit a software prefetch brings in: 64 on every CPU kgen's C and
 * WebAssembly kernels target (x86-64 and the Arm cores of the profiles).
 */
export const CPU_CACHE_LINE_BYTES = 64;

/**
 * How many times its last-level cache (a CPU's L3, a GPU's L2) a timed run writes between runs, so
 * no input stays cached: the tuner's flush and a CUDA run kit's default FLUSH_BYTES.
 */
export const FLUSH_CACHE_MULTIPLE = 3;

/** The CPU architectures a profile may name. */
export const CPU_ARCHES = ['x86_64', 'aarch64', 'wasm32'] as const;

/**
 * The ISA extensions kgen knows by name (what `cpu.isa` may list): a name outside it would be
 * read by nothing, so a misspelt `dotprd` is refused rather than planned as a CPU without it.
 */
export const CPU_ISA_NAMES = ['avx2', 'fma', 'f16c', 'avxvnni', 'avx512f', 'avx512bw', 'avx512vl', 'avx512vnni', 'neon', 'dotprod', 'fp16', 'i8mm', 'simd128'] as const;

export interface CpuLimits {
  arch: (typeof CPU_ARCHES)[number];
  /** ISA extensions, from `CPU_ISA_NAMES`. */
  isa: string[];
  cores: number;
  threads: number;
  vectorRegisters: number;
  l1dBytes: number;
  /** Per core. */
  l2Bytes: number;
  /** Shared. */
  l3Bytes: number;
  clockGHz?: number;
}

/**
 * The tests `detectPresence` (src/device/index.ts) runs for a profile's `match.probe`, each with
 * whether it reads `match.nameContains`: this CPU's model name, nvidia-smi's GPUs (name and
 * compute capability), WebAssembly SIMD128 in this runtime, SwiftShader's Vulkan ICD on disk.
 */
export const PRESENCE_PROBES = {
  'cpu-model': { readsNames: true },
  'nvidia-smi': { readsNames: true },
  'wasm-simd128': { readsNames: false },
  'swiftshader-icd': { readsNames: false },
} as const;

export type PresenceProbe = keyof typeof PRESENCE_PROBES;

/**
 * A device profile from `targets/NAME.json` (or `host`, detected). Invariants: exactly one of
 * `gpu`/`cpu` is set, matching `kind`; every figure has an entry in `sources` saying where it
 * comes from; `targets` lists the kgen targets whose kernels run on this device.
 */
export interface DeviceProfile {
  name: string;
  description: string;
  kind: 'gpu' | 'cpu';
  targets: TargetName[];
  gpu?: GpuLimits;
  cpu?: CpuLimits;
  memory: { bandwidthGBs: number; capacityGiB: number };
  peak: { f32TFLOPS: number; f16TensorTFLOPS?: number; int8TensorTOPS?: number; int8TOPS?: number };
  /**
   * How `detectPresence` decides whether the device is on this machine: `probe` names the test
   * (`PRESENCE_PROBES`); `nameContains` are the texts the CPU model or nvidia-smi's GPU name must
   * contain one of, for the probes that read a name. Absent: never found here (`host` has none:
   * it is this machine).
   */
  match?: { probe: PresenceProbe; nameContains?: string[] };
  sources: Record<string, string>;
  /**
   * Set only on a `host` forced to another profile's figures (`forcedHost`, as `KGEN_HOST_PROFILE`
   * asks): that profile's name. Its figures then describe that CPU, not this machine; records and the
   * tuner's timings go by it so a forced host is never taken for the real one.
   */
  forcedFrom?: string;
}

/**
 * The canonical hash of what a profile says that plans and timings read: its kind, its CPU or GPU
 * limits and features (the CPU's ISA extensions as a set), its memory bandwidth and its peaks.
 * Tuning records carry it in their fingerprint (`fingerprintFor`), so a record tuned under other
 * figures of a profile never passes for one of its current figures. It leaves out what plans
 * nothing: the name (records are filed under it apart), description, `sources`, `match` (how the
 * device is found), `targets` (a record is of one target) and memory capacity; so editing those,
 * or a kgen upgrade that leaves a shipped profile's figures alone, keeps its records. Undefined for
 * `host`: its figures are detected afresh each run (the clock varies) and its records' fingerprints
 * name the CPU, its ISA, cores and caches (or the profile a forced host was given) themselves.
 */
export function profileHash(p: DeviceProfile): string | undefined {
  if (p.name === 'host') return undefined;
  return canonicalHash({ kind: p.kind, cpu: p.cpu && { ...p.cpu, isa: [...p.cpu.isa].sort() }, gpu: p.gpu, bandwidthGBs: p.memory.bandwidthGBs, peak: p.peak });
}

/** Whether `p` describes a physical CPU (x86_64, aarch64) rather than a runtime's virtual one (WebAssembly's wasm32). */
export function isNativeCpu(p: DeviceProfile): boolean {
  return p.kind === 'cpu' && p.cpu !== undefined && p.cpu.arch !== 'wasm32';
}

/** `targets/` at the package root. */
export function targetsDir(): string {
  return packagePath('targets');
}

function need(cond: unknown, file: string, field: string, expected: string): asserts cond {
  if (!cond) throw new KgenError({ field: `${file}: ${field}`, problem: 'invalid device profile', expected, hint: 'fix that field (docs/ARCHITECTURE.md, "Device profiles", lists them)' });
}

/**
 * WebGPU's default `minStorageBufferOffsetAlignment`: weight chunks start on it (so one buffer may
 * also hold them all, each bound at its offset), hence the least binding and buffer a profile may state.
 */
export const WEBGPU_STORAGE_OFFSET_ALIGNMENT = 256;

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
const isName = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** Each optional count a GPU profile may give (checked only where present: absent ones take WebGPU's defaults or are unused). */
const OPTIONAL_GPU_COUNTS = ['multiprocessors', 'sharedPerMultiprocessorBytes', 'registersPerMultiprocessor', 'maxStorageBufferBindingBytes', 'maxBufferBytes', 'maxStorageBuffersPerShaderStage', 'maxWorkgroupsPerDimension', 'l2Bytes'] as const;

/** The positive counts every GPU profile gives. */
const GPU_COUNTS = ['warpSize', 'maxThreadsPerBlock', 'sharedPerBlockBytes', 'sharedPerBlockOptinBytes'] as const;
/** The positive counts every CPU profile gives. */
const CPU_COUNTS = ['cores', 'threads', 'vectorRegisters', 'l1dBytes', 'l2Bytes', 'l3Bytes'] as const;

/** The fields each object of a profile may have (DeviceProfile's), by its path; `sources` is free-form. */
const PROFILE_FIELDS: Readonly<Record<string, readonly string[]>> = {
  '': ['name', 'description', 'kind', 'targets', 'gpu', 'cpu', 'memory', 'peak', 'match', 'sources', 'forcedFrom'],
  memory: ['bandwidthGBs', 'capacityGiB'],
  peak: ['f32TFLOPS', 'f16TensorTFLOPS', 'int8TensorTOPS', 'int8TOPS'],
  match: ['probe', 'nameContains'],
  gpu: ['vendor', 'arch', ...GPU_COUNTS, 'maxWorkgroupSize', 'registersPerThread', 'features', ...OPTIONAL_GPU_COUNTS],
  'gpu.features': ['subgroupSizes', 'subgroups', 'f16', 'dot8', 'asyncCopy', 'tensorCores'],
  cpu: ['arch', 'isa', ...CPU_COUNTS, 'clockGHz'],
};

/**
 * Refuses a field `obj` (the profile's object at `path`) does not define: a misspelled optional
 * figure (`clockGhz`) would otherwise be ignored without a word, and counted by profileHash.
 */
function onlyKnownFields(obj: Record<string, unknown>, file: string, path: string): void {
  const fields = PROFILE_FIELDS[path]!;
  const extra = Object.keys(obj).find((k) => obj[k] !== undefined && !fields.includes(k));
  need(extra === undefined, file, path ? `${path}.${extra}` : String(extra), `one of the fields ${path ? `\`${path}\`` : 'a profile'} has: ${fields.join(', ')} (this one is not kgen's)`);
}

/**
 * Checks a parsed profile (a shipped one or a user's file): every field a planner reads has the
 * type and range it needs, so a wrong or missing figure is a KgenError naming the file and field,
 * never a crash or a silently defaulted value further on; a field kgen does not know is refused.
 */
export function validateProfile(p: DeviceProfile, file: string): DeviceProfile {
  need(isObject(p), file, '(top level)', 'a JSON object: a device profile like targets/webgpu.json');
  onlyKnownFields(p as unknown as Record<string, unknown>, file, '');
  need(typeof p.name === 'string' && /^[a-z0-9][a-z0-9-]*$/.test(p.name), file, 'name', 'a lower-case name');
  need(p.kind === 'gpu' || p.kind === 'cpu', file, 'kind', '"gpu" or "cpu"');
  need(Array.isArray(p.targets) && p.targets.length > 0 && p.targets.every((t) => typeof t === 'string' && /^[a-z][a-z0-9]*$/.test(t)), file, 'targets', 'a list of target names (c, cuda, wgsl, wasm, ...)');
  need(isObject(p.memory) && p.memory.bandwidthGBs > 0, file, 'memory.bandwidthGBs', 'a number > 0');
  need(p.memory.capacityGiB > 0, file, 'memory.capacityGiB', 'a number > 0');
  onlyKnownFields(p.memory, file, 'memory');
  need(isObject(p.peak) && p.peak.f32TFLOPS > 0, file, 'peak.f32TFLOPS', 'a number > 0');
  onlyKnownFields(p.peak, file, 'peak');
  need(p.kind === 'gpu' ? p.cpu === undefined : p.gpu === undefined, file, p.kind === 'gpu' ? 'cpu' : 'gpu', `no entry in a ${p.kind} profile (its limits go in ${p.kind})`);
  need(isObject(p.sources), file, 'sources', 'where each figure comes from');
  // A profile without `match` is never found here (kgen devices lists it as absent).
  if (p.match !== undefined) {
    const probes = Object.keys(PRESENCE_PROBES);
    need(isObject(p.match) && Object.hasOwn(PRESENCE_PROBES, p.match.probe), file, 'match.probe', `how to find the device here: one of ${probes.join(', ')}`);
    onlyKnownFields(p.match, file, 'match');
    const names = p.match.nameContains;
    const readsNames = PRESENCE_PROBES[p.match.probe].readsNames;
    need(readsNames ? Array.isArray(names) && names.length > 0 && names.every((n) => typeof n === 'string' && n) : names === undefined, file, 'match.nameContains', readsNames ? 'the texts a present device\'s name contains one of' : `nothing: probe ${p.match.probe} reads no name`);
  }
  if (p.kind === 'gpu') {
    const g = p.gpu;
    need(isObject(g), file, 'gpu', 'GPU limits');
    onlyKnownFields(g as unknown as Record<string, unknown>, file, 'gpu');
    need(isName(g.vendor) && isName(g.arch), file, 'gpu.vendor/arch', 'names (arch: sm_XX for NVIDIA, a label for others)');
    for (const k of GPU_COUNTS) {
      need(isCount(g[k]), file, `gpu.${k}`, 'a positive integer');
    }
    need(g.sharedPerBlockOptinBytes >= g.sharedPerBlockBytes, file, 'gpu.sharedPerBlockOptinBytes', '>= sharedPerBlockBytes');
    need(Number.isInteger(g.registersPerThread) && g.registersPerThread >= 0, file, 'gpu.registersPerThread', 'an integer >= 0 (0 where the API exposes no register limit, as WebGPU)');
    for (const k of OPTIONAL_GPU_COUNTS) need(g[k] === undefined || isCount(g[k]), file, `gpu.${k}`, 'a positive integer, or no entry');
    for (const k of ['maxStorageBufferBindingBytes', 'maxBufferBytes'] as const) {
      need(g[k] === undefined || g[k] >= WEBGPU_STORAGE_OFFSET_ALIGNMENT, file, `gpu.${k}`, `>= ${WEBGPU_STORAGE_OFFSET_ALIGNMENT} (minStorageBufferOffsetAlignment: weight chunks start on it; every WebGPU adapter allows 128 MiB or more)`);
    }
    // A binding lies within one buffer: a profile stating both cannot allow a larger binding.
    need(g.maxBufferBytes === undefined || g.maxStorageBufferBindingBytes === undefined || g.maxBufferBytes >= g.maxStorageBufferBindingBytes, file, 'gpu.maxBufferBytes', '>= gpu.maxStorageBufferBindingBytes (WebGPU maxBufferSize: a binding lies within one buffer)');
    need(g.maxWorkgroupSize === undefined || (Array.isArray(g.maxWorkgroupSize) && g.maxWorkgroupSize.length === 3 && g.maxWorkgroupSize.every(isCount)), file, 'gpu.maxWorkgroupSize', '[x, y, z], positive integers (WebGPU maxComputeWorkgroupSizeX/Y/Z), or no entry');
    const f = g.features;
    need(isObject(f), file, 'gpu.features', 'the GPU\'s features (subgroupSizes, f16, dot8, asyncCopy, tensorCores)');
    onlyKnownFields(f as unknown as Record<string, unknown>, file, 'gpu.features');
    need(Array.isArray(f.subgroupSizes) && f.subgroupSizes.length === 2 && f.subgroupSizes.every(isCount) && f.subgroupSizes[0] <= f.subgroupSizes[1], file, 'gpu.features.subgroupSizes', '[min, max], positive integers');
    need(f.subgroups === undefined || typeof f.subgroups === 'boolean', file, 'gpu.features.subgroups', 'true or false (absent: no subgroup operations)');
    need(typeof f.f16 === 'boolean' && typeof f.asyncCopy === 'boolean', file, 'gpu.features.f16/asyncCopy', 'true or false');
    need(Array.isArray(f.dot8) && Array.isArray(f.tensorCores) && [...f.dot8, ...f.tensorCores].every(isName), file, 'gpu.features.dot8/tensorCores', 'lists of instruction names');
  } else {
    const c = p.cpu;
    need(isObject(c), file, 'cpu', 'CPU limits');
    onlyKnownFields(c as unknown as Record<string, unknown>, file, 'cpu');
    need((CPU_ARCHES as readonly unknown[]).includes(c.arch), file, 'cpu.arch', `one of ${CPU_ARCHES.join(', ')}`);
    const unknown = Array.isArray(c.isa) ? c.isa.find((n) => !(CPU_ISA_NAMES as readonly unknown[]).includes(n)) : undefined;
    need(Array.isArray(c.isa) && unknown === undefined, file, 'cpu.isa', `a list of ISA extensions from ${CPU_ISA_NAMES.join(', ')}${unknown !== undefined ? ` (not ${quoted(String(unknown))})` : ''}`);
    for (const k of CPU_COUNTS) {
      need(isCount(c[k]), file, `cpu.${k}`, 'a positive integer');
    }
    need(c.clockGHz === undefined || (typeof c.clockGHz === 'number' && c.clockGHz > 0), file, 'cpu.clockGHz', 'a number > 0, or no entry');
  }
  return p;
}

let cache: DeviceProfile[] | undefined;

/** The profiles shipped in `targets/`, sorted by name (`host` is separate: see resolveHost). */
export function loadProfiles(): DeviceProfile[] {
  if (cache) return cache;
  const dir = targetsDir();
  cache = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => validateProfile(JSON.parse(readFileSync(join(dir, f), 'utf8')) as DeviceProfile, `targets/${f}`));
  return cache;
}

/** Whether `name` is one of the profiles kgen ships (targets/*.json). */
export function isShippedProfile(name: string): boolean {
  return loadProfiles().some((d) => d.name === name);
}

/** The most bytes a profile file may hold (the shipped ones are about 2 KB). */
const PROFILE_FILE_MAX_BYTES = 1 << 16;

/** Whether a `--device` value names a profile file (`./phone.json`) rather than a profile (names have no dots). */
export function isProfileFile(device: string): boolean {
  return device.endsWith('.json');
}

/**
 * The profile in the JSON file at `path` (a device kgen ships no profile for), checked as a
 * caller's own profile is (`checkOwnProfile`). Nothing is remembered: a plan made with it carries
 * it (`Plan.profile`), and a call that resolves its name again is given it (`DeviceOptions.profiles`).
 */
export function loadProfileFile(path: string, field = '--device'): DeviceProfile {
  const file = pathText(path);
  const expected = 'a device profile: a JSON object like targets/webgpu.json (docs/ARCHITECTURE.md, "Device profiles")';
  const text = readRegularFile(path, field, expected, (st) => {
    if (st.size > PROFILE_FILE_MAX_BYTES) throw new KgenError({ field, problem: `${file} is ${st.size} bytes, more than the ${PROFILE_FILE_MAX_BYTES} accepted`, expected });
  }).toString('utf8');
  return checkOwnProfile(parseJsonInput(text, { field, source: file, expected }) as DeviceProfile, file);
}

/**
 * A caller's own profile (read from a file, or built in memory), checked as the shipped ones are
 * (`validateProfile`, naming `source`), with a name of its own: not `host` and no shipped
 * profile's, since plans and records go by name.
 */
export function checkOwnProfile(p: DeviceProfile, source: string): DeviceProfile {
  const profile = validateProfile(p, source);
  const shipped = profile.name === 'host' || isShippedProfile(profile.name);
  need(!shipped, source, 'name', `a name of its own (${quoted(profile.name)} is a shipped profile)`);
  return profile;
}
