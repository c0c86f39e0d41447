import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KgenError } from '../errors.js';
import { packagePath } from '../package-files.js';

export type TargetName = 'c' | 'cuda' | 'wgsl' | 'wasm';
export const TARGETS: readonly TargetName[] = ['c', 'cuda', 'wgsl', 'wasm'];

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
  maxStorageBufferBindingBytes?: number;
  l2Bytes?: number;
}

export interface CpuLimits {
  arch: 'x86_64' | 'aarch64' | 'wasm32';
  /** ISA extensions: avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni, neon, dotprod, fp16, simd128. */
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
  /** How a present GPU is recognised by name (nvidia-smi). */
  match?: { nameContains: string[] };
  sources: Record<string, string>;
  /**
   * Set only on `host` when `KGEN_HOST_PROFILE` (see detectHost) gave it another profile's figures:
   * that profile's name. Its figures then describe that CPU, not this machine; records and the
   * tuner's timings go by it so a forced host is never taken for the real one.
   */
  forcedFrom?: string;
}

/** `targets/` at the package root. */
export function targetsDir(): string {
  return packagePath('targets');
}

function need(cond: unknown, file: string, field: string, expected: string): asserts cond {
  if (!cond) throw new KgenError({ field: `${file}: ${field}`, problem: 'invalid device profile', expected });
}

/** Checks a parsed profile; errors name the file and field. */
export function validateProfile(p: DeviceProfile, file: string): DeviceProfile {
  need(typeof p.name === 'string' && /^[a-z0-9][a-z0-9-]*$/.test(p.name), file, 'name', 'a lower-case name');
  need(p.kind === 'gpu' || p.kind === 'cpu', file, 'kind', '"gpu" or "cpu"');
  need(Array.isArray(p.targets) && p.targets.length > 0 && p.targets.every((t) => TARGETS.includes(t)), file, 'targets', `a list drawn from ${TARGETS.join(', ')}`);
  need(p.memory && p.memory.bandwidthGBs > 0, file, 'memory.bandwidthGBs', 'a number > 0');
  need(p.peak && p.peak.f32TFLOPS > 0, file, 'peak.f32TFLOPS', 'a number > 0');
  need(p.sources && typeof p.sources === 'object', file, 'sources', 'where each figure comes from');
  if (p.kind === 'gpu') {
    const g = p.gpu;
    need(g, file, 'gpu', 'GPU limits');
    for (const k of ['warpSize', 'maxThreadsPerBlock', 'sharedPerBlockBytes', 'sharedPerBlockOptinBytes'] as const) {
      need(Number.isInteger(g[k]) && g[k] > 0, file, `gpu.${k}`, 'a positive integer');
    }
    need(g.sharedPerBlockOptinBytes >= g.sharedPerBlockBytes, file, 'gpu.sharedPerBlockOptinBytes', '>= sharedPerBlockBytes');
  } else {
    const c = p.cpu;
    need(c, file, 'cpu', 'CPU limits');
    for (const k of ['cores', 'threads', 'vectorRegisters', 'l1dBytes', 'l2Bytes', 'l3Bytes'] as const) {
      need(Number.isInteger(c[k]) && c[k] > 0, file, `cpu.${k}`, 'a positive integer');
    }
  }
  return p;
}

let cache: DeviceProfile[] | undefined;

/** The profiles shipped in `targets/`, sorted by name (`host` is separate: see detectHost). */
export function loadProfiles(): DeviceProfile[] {
  if (cache) return cache;
  const dir = targetsDir();
  cache = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => validateProfile(JSON.parse(readFileSync(join(dir, f), 'utf8')) as DeviceProfile, `targets/${f}`));
  return cache;
}
