import { execa } from 'execa';
import { C_TOOLCHAINS } from '../backends/c/toolchain.js';
import { nvccVersion } from '../backends/cuda/gpu-runner.js';
import type { Fingerprint } from '../db/types.js';
import type { GpuDetection } from '../device/gpu.js';
import { detectGpus, gpuForProfile } from '../device/gpu.js';
import { hostIsa } from '../device/host.js';
import type { DeviceProfile, TargetName } from '../device/profile.js';
import type { SearchSpace } from '../plan/types.js';

const versions = new Map<string, string>();

/** `<compiler> -dumpfullversion`, or "missing". */
async function compilerVersion(compiler: string): Promise<string> {
  let v = versions.get(compiler);
  if (v === undefined) {
    const r = await execa(compiler, ['-dumpfullversion'], { reject: false });
    v = r.exitCode === 0 ? r.stdout.trim() : 'missing';
    versions.set(compiler, v);
  }
  return v;
}

/** What a CUDA measurement depends on besides the profile; `cudaFingerprint` gives its fields. */
export interface CudaFingerprintParts {
  profile: string;
  /** The profile's arch, which kernels are compiled for. */
  arch: string;
  /** nvidia-smi's (and CUDA's) name of the GPU measured on. */
  gpu: string;
  computeCapability: string;
  /** The kernel driver's version, as nvidia-smi prints it ("550.54.15"). */
  driver: string;
  /** nvcc's full version ("13.0.88"). */
  nvcc: string;
}

/**
 * A CUDA fingerprint. One function for every source of CUDA records (the tuner here, a run.sh
 * result imported from a GPU box), so trials measured under the same GPU, driver and nvcc compare.
 */
export function cudaFingerprint(p: CudaFingerprintParts): Fingerprint {
  return { profile: p.profile, target: 'cuda', arch: p.arch, gpu: p.gpu, computeCapability: p.computeCapability, driver: p.driver, nvcc: p.nvcc };
}

/**
 * What identifies the machine and tools a measurement depends on, beyond the profile name: for the
 * C target the CPU model, its ISA extensions, core and cache figures, and the version of each
 * compiler the space's ISA variants use, and for a `host` forced by `KGEN_HOST_PROFILE` the profile
 * it was forced to (`forcedFrom`); for CUDA the GPU's name and compute capability, the driver
 * and nvcc versions (`cudaFingerprint`). Trials compare only under equal fingerprints.
 */
export async function fingerprintFor(device: DeviceProfile, target: TargetName, space: SearchSpace, gpus: GpuDetection = detectGpus()): Promise<Fingerprint> {
  if (target === 'cuda' && device.gpu) {
    const gpu = gpuForProfile(device, gpus);
    return cudaFingerprint({
      profile: device.name,
      arch: device.gpu.arch,
      gpu: gpu?.name ?? 'none',
      computeCapability: gpu?.computeCapability ?? 'unknown',
      driver: gpu?.driverVersion ?? 'none',
      nvcc: await nvccVersion(),
    });
  }
  // A forced host's figures are another CPU's: its records must never match the real host's.
  const fp: Fingerprint = { profile: device.name, target, ...(device.forcedFrom ? { forcedFrom: device.forcedFrom } : {}) };
  if (target === 'c' && device.cpu) {
    const host = hostIsa();
    Object.assign(fp, {
      cpu: host.model.trim(),
      arch: host.arch,
      isa: [...host.isa].sort().join(' '),
      cores: device.cpu.cores,
      l2Bytes: device.cpu.l2Bytes,
      l3Bytes: device.cpu.l3Bytes,
    });
    const isas = (space.knobs.find((k) => k.name === 'isa')?.values ?? []) as string[];
    for (const compiler of [...new Set(isas.map((i) => C_TOOLCHAINS[i]?.compiler).filter((c): c is string => !!c))].sort()) {
      fp[`compiler:${compiler}`] = await compilerVersion(compiler);
    }
  }
  return fp;
}
