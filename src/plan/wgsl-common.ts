import type { DeviceProfile } from '../device/profile.js';
import { sumBytes } from './common.js';
import type { BudgetCheck, OnChipBuffer } from './types.js';

/**
 * What every WGSL planner checks, in WebGPU's terms: workgroup storage and invocations per
 * workgroup, at the profile's limits (the spec defaults for `webgpu`, an adapter's own figures
 * for a present one). WebGPU exposes no register limit.
 */
export function workgroupBudgets(device: DeviceProfile, buffers: OnChipBuffer[], invocations: number): BudgetCheck[] {
  const gpu = device.gpu!;
  return [
    { budget: `workgroup storage (${device.name})`, needed: sumBytes(buffers, 'shared'), available: gpu.sharedPerBlockOptinBytes, unit: 'bytes' },
    { budget: `invocations per workgroup (${device.name})`, needed: invocations, available: gpu.maxThreadsPerBlock, unit: 'threads' },
  ];
}

/** Invocations per workgroup a WGSL planner tries, most preferred first. */
export const WORKGROUP_SIZES = [128, 256, 64, 32] as const;
