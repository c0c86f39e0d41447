import { execFileSync } from 'node:child_process';
import type { GpuInfo } from '../../src/device/gpu.js';
import { describeGpu, detectGpus, nvidiaProfileForGpu } from '../../src/device/gpu.js';
import type { DeviceProfile } from '../../src/device/index.js';
import { loadProfiles } from '../../src/device/index.js';

/** The GPU the suite runs on (vitest.gpu.config.ts refuses to start without one). */
export const GPU: GpuInfo = detectGpus().gpus[0]!;

/**
 * The profile kernels are planned for: the GPU's own when kgen has one (then times are real and
 * `kgen tune` can record), else the newest profile whose arch this GPU runs through PTX.
 */
export const PROFILE: { device: DeviceProfile; exact: boolean } = nvidiaProfileForGpu(loadProfiles(), GPU);

console.warn(`test:gpu: ${describeGpu(GPU)}; kernels planned for ${PROFILE.device.name}${PROFILE.exact ? '' : ' (no profile for this GPU: run through PTX; times are not that profile\'s)'}`);

/** A CUDA tool on PATH or in /usr/local/cuda/bin, or undefined. */
export function cudaTool(name: string): string | undefined {
  for (const c of [name, `/usr/local/cuda/bin/${name}`]) {
    try {
      execFileSync('sh', ['-c', 'command -v "$1"', 'sh', c], { stdio: 'ignore' });
      return c;
    } catch {
      // try the next place
    }
  }
  return undefined;
}
