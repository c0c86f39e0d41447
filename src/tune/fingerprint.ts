import { targetFor } from '../backends/registry.js';
import type { Fingerprint } from '../db/types.js';
import type { GpuDetection } from '../device/gpu.js';
import { detectGpus } from '../device/gpu.js';
import { profileHash, type DeviceProfile } from '../device/profile.js';
import type { SearchSpace } from '../plan/types.js';

/**
 * What identifies the machine and tools a measurement depends on, beyond the profile name: the
 * target's own account (C: the CPU model, ISA extensions, core and cache figures, compiler
 * versions; CUDA: the GPU, its driver and nvcc), or just the profile and target where a target
 * keeps none; a forced `host` (`forcedHost`) adds the profile it was forced to
 * (`forcedFrom`), and every profile but `host` the hash of its figures (`profileHash`), which a
 * record must match to be taken for the profile (src/db/lookup.ts). Trials compare only under
 * equal fingerprints.
 */
export async function fingerprintFor(device: DeviceProfile, target: string, space: SearchSpace, gpus: GpuDetection = detectGpus()): Promise<Fingerprint> {
  const own = targetFor(target).fingerprint;
  const fp = own ? await own(device, space, gpus) : { profile: device.name, target };
  const figures = profileHash(device);
  // A forced host's figures are another CPU's: its records must never match the real host's.
  return { ...fp, ...(device.forcedFrom ? { forcedFrom: device.forcedFrom } : {}), ...(figures ? { profileHash: figures } : {}) };
}
