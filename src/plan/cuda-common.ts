import type { DeviceProfile } from '../device/profile.js';
import { sumBytes } from './common.js';
import type { BudgetCheck, OnChipBuffer } from './types.js';

/** What every CUDA planner checks: the profile's NVIDIA limits, in CUDA's terms. */

/** Tensor cores through mma.sync m16n8k16 with f16 operands, as the profile's features state (sm_80 and newer). */
export function hasMmaM16n8k16(device: DeviceProfile): boolean {
  return device.gpu?.features?.tensorCores.includes('mma.m16n8k16.f16') ?? false;
}

/** Budgets of a CUDA plan: shared memory (static up to the static limit, dynamic up to the opt-in maximum), threads, registers. */
export function cudaBudgets(device: DeviceProfile, buffers: OnChipBuffer[], threads: number): BudgetCheck[] {
  const gpu = device.gpu!;
  const perThread = Math.min(gpu.registersPerThread, Math.floor((gpu.registersPerMultiprocessor ?? 65536) / threads));
  return [
    { budget: `shared memory per block (opt-in maximum) (${device.name})`, needed: sumBytes(buffers, 'shared'), available: gpu.sharedPerBlockOptinBytes, unit: 'bytes' },
    { budget: `threads per block (${device.name})`, needed: threads, available: gpu.maxThreadsPerBlock, unit: 'threads' },
    { budget: `registers per thread, estimated; ptxas checks the real count (${device.name}: ${threads} threads per block)`, needed: sumBytes(buffers, 'registers'), available: perThread, unit: 'registers' },
  ];
}
