import { FLUSH_CACHE_MULTIPLE, type DeviceProfile } from '../device/profile.js';
import { sumBytes } from './common.js';
import type { BudgetCheck, OnChipBuffer } from './types.js';

/** What every CUDA planner checks: the profile's NVIDIA limits, in CUDA's terms. */

/**
 * Lanes of a CUDA warp: 32 on every NVIDIA arch, and what kgen's CUDA kernels are written for
 * (one 32-bit member mask, mma.sync's fragment layouts). The CUDA target refuses a profile that
 * states another (src/backends/cuda/index.ts `needs`), so plans count threads, lanes and per-lane
 * trips with this one number.
 */
export const CUDA_WARP_LANES = 32;

/**
 * The warp numbers a CUDA kernel prints: `lane = thread & laneMask`, `warp = thread >> warpShift`,
 * `lane + warpLanes * i` strides, `__shfl_xor_sync(warpMemberMask, v, o)` butterflies from
 * `o = shuffleFirst` (half a warp) down to 1. A type, not an interface: plan params are plain
 * records of numbers, strings and flags.
 */
export type CudaWarp = {
  warpLanes: number;
  laneMask: number;
  warpShift: number;
  /** Every lane of the warp as a CUDA literal (`0xffffffffu`). */
  warpMemberMask: string;
  shuffleFirst: number;
};

/**
 * What a CUDA run kit writes between timed runs (run.sh's default FLUSH_BYTES): FLUSH_CACHE_MULTIPLE
 * times the profile's L2, so every run reads its inputs from DRAM; 0 (no flush) for a profile
 * without an L2 figure.
 */
export type CudaFlush = {
  flushBytes: number;
  flushL2Multiple: number;
};

/** The flush of a CUDA plan on `device` (`CudaFlush`). */
export function cudaFlush(device: DeviceProfile): CudaFlush {
  return { flushBytes: FLUSH_CACHE_MULTIPLE * (device.gpu?.l2Bytes ?? 0), flushL2Multiple: FLUSH_CACHE_MULTIPLE };
}

/** The warp numbers of every CUDA plan, from CUDA_WARP_LANES. */
export const CUDA_WARP: CudaWarp = {
  warpLanes: CUDA_WARP_LANES,
  laneMask: CUDA_WARP_LANES - 1,
  warpShift: Math.log2(CUDA_WARP_LANES),
  warpMemberMask: `0x${(2 ** CUDA_WARP_LANES - 1).toString(16)}u`,
  shuffleFirst: CUDA_WARP_LANES / 2,
};

/** Tensor cores through mma.sync m16n8k16 with f16 operands, as the profile's features state (sm_80 and newer). */
export function hasMmaM16n8k16(device: DeviceProfile): boolean {
  return device.gpu?.features?.tensorCores.includes('mma.m16n8k16.f16') ?? false;
}

/** The first compute capability (x10) whose PTX has mma.sync m16n8k16 for f16 (PTX ISA: sm_80). */
export const MMA_M16N8K16_MIN_ARCH = 80;

/**
 * Whether the profile's tensor cores are ones its arch has: a profile listing m16n8k16 on sm_75
 * would plan kernels ptxas refuses for that arch. False for an arch that is not `sm_XX`.
 */
export function tensorCoresMatchArch(device: DeviceProfile): boolean {
  const arch = /^sm_(\d+)$/.exec(device.gpu?.arch ?? '');
  return arch !== null && (!hasMmaM16n8k16(device) || Number(arch[1]) >= MMA_M16N8K16_MIN_ARCH);
}

/**
 * The most blocks a CUDA launch takes along x, and along y or z: 2^31 - 1 and 65535 on every arch
 * kgen targets (compute capability 3.0 and later). A launch past them fails with "invalid
 * configuration argument" before any block runs, so plans refuse it.
 */
export const CUDA_MAX_GRID_X = 2 ** 31 - 1;
export const CUDA_MAX_GRID_YZ = 65535;

/**
 * The grid budgets of a plan's launches (a kernel and, where it has one, its second pass): x
 * against CUDA_MAX_GRID_X, the larger of y and z against CUDA_MAX_GRID_YZ; their remedies say
 * what a shape past them should do.
 */
export function cudaGridBudgets(grids: readonly (readonly [number, number, number])[]): BudgetCheck[] {
  return [
    { budget: 'grid blocks along x (CUDA gridDim.x limit)', needed: Math.max(...grids.map((g) => g[0])), available: CUDA_MAX_GRID_X, unit: 'blocks', remedy: 'split the op along N (output columns) across launches' },
    { budget: 'grid blocks along y or z (CUDA gridDim.y and gridDim.z limit)', needed: Math.max(...grids.flatMap((g) => [g[1], g[2]])), available: CUDA_MAX_GRID_YZ, unit: 'blocks', remedy: 'split the batch, heads or rows (M) across launches, at most 65535 blocks each' },
  ];
}

/** Budgets of a CUDA plan: shared memory (static up to the static limit, dynamic up to the opt-in maximum), threads, registers. */
export function cudaBudgets(device: DeviceProfile, buffers: OnChipBuffer[], threads: number): BudgetCheck[] {
  const gpu = device.gpu!;
  const perThread = Math.min(gpu.registersPerThread, Math.floor((gpu.registersPerMultiprocessor ?? 65536) / threads));
  return [
    { budget: `shared memory per block (opt-in maximum) (${device.name})`, needed: sumBytes(buffers, 'shared'), available: gpu.sharedPerBlockOptinBytes, unit: 'bytes', remedy: 'even the smallest tile overflows shared memory: a smaller head dim (D) or group size, or a GPU with more shared memory per block' },
    { budget: `threads per block (${device.name})`, needed: threads, available: gpu.maxThreadsPerBlock, unit: 'threads', remedy: 'a GPU allowing more threads per block' },
    { budget: `registers per thread, estimated; ptxas checks the real count (${device.name}: ${threads} threads per block)`, needed: sumBytes(buffers, 'registers'), available: perThread, unit: 'registers', remedy: 'even the smallest tile needs more registers: a smaller head dim (D), or a GPU with more registers per thread' },
  ];
}
