import type { GpuDetection } from '../../device/gpu.js';
import { gpuForProfile } from '../../device/gpu.js';
import type { DeviceProfile } from '../../device/profile.js';
import { nvccVersion } from '../tools.js';
import type { Fingerprint } from '../types.js';

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

/** The fingerprint of tuning `device` here: the GPU present for its profile, its driver and nvcc. */
export async function cudaDeviceFingerprint(device: DeviceProfile, gpus: GpuDetection): Promise<Fingerprint> {
  const gpu = gpuForProfile(device, gpus);
  return cudaFingerprint({
    profile: device.name,
    arch: device.gpu?.arch ?? 'none',
    gpu: gpu?.name ?? 'none',
    computeCapability: gpu?.computeCapability ?? 'unknown',
    driver: gpu?.driverVersion ?? 'none',
    nvcc: await nvccVersion(),
  });
}
