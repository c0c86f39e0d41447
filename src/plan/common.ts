import type { DeviceProfile } from '../device/profile.js';
import { KgenError } from '../errors.js';
import type { ActDType } from '../ir/types.js';
import type { Tolerance } from '../reference/compare.js';
import type { BudgetCheck, OnChipBuffer } from './types.js';

export function dtypeBytes(d: ActDType): number {
  return d === 'f16' ? 2 : 4;
}

export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

/** `bytes` rounded up to a multiple of `to` (buffer offsets and sizes). */
export function alignUp(bytes: number, to: number): number {
  return Math.ceil(bytes / to) * to;
}

/** The share of a CPU cache one core's tile may occupy: half, leaving room for streams and code. */
export function cacheShare(bytes: number): number {
  return Math.floor(bytes / 2);
}

/** Vector registers a CPU kernel needs beyond its accumulators (inputs, decode temporaries, LUTs). */
export const CPU_WORK_REGISTERS = 6;

/** Bytes (or registers) the on-chip buffers of one `space` take together. */
export function sumBytes(buffers: OnChipBuffer[], space: OnChipBuffer['space']): number {
  return buffers.filter((b) => b.space === space).reduce((a, b) => a + b.size, 0);
}

/** Vector registers the variant's code can name on the device: the device's, capped by the variant's encoding (`CpuVariants.vectorRegisters`). */
export function variantRegisters(variants: { vectorRegisters?: Readonly<Record<string, number>> }, device: DeviceProfile, isa: string): number {
  return Math.min(device.cpu?.vectorRegisters ?? 16, variants.vectorRegisters?.[isa] ?? Infinity);
}

/**
 * Budgets for a CPU plan: registers and the L2 share. `registers` is what the kernel's variant can
 * name on the device (AVX2's 16 on a 32-register AVX-512 CPU), not always the device's count.
 */
export function cpuBudgets(device: DeviceProfile, buffers: OnChipBuffer[], registers: number): BudgetCheck[] {
  const cpu = device.cpu!;
  const capped = registers < cpu.vectorRegisters ? `, ${registers} of its ${cpu.vectorRegisters} named by the variant` : '';
  return [
    { budget: `vector registers (${device.name}${capped})`, needed: sumBytes(buffers, 'registers'), available: registers, unit: 'registers' },
    { budget: `L2 cache share per core (${device.name}: half of ${cpu.l2Bytes} bytes)`, needed: sumBytes(buffers, 'l2'), available: cacheShare(cpu.l2Bytes), unit: 'bytes' },
  ];
}

/** Tolerances by the precision a kernel computes in; see docs/ARCHITECTURE.md, "Tolerances". */
export function toleranceFor(opts: { actQuant: boolean; outF16: boolean; inF16?: boolean; int16Weights?: boolean }): Tolerance {
  // Activations rounded to int8 per 32 values: relative error variance ~ (absmax/127)^2/12 / var,
  // about 2.5e-5 for Gaussian data; 2e-4 leaves an 8x margin and still catches a wrong decode.
  let nmse = opts.actQuant ? 2e-4 : 1e-8;
  let maxRel = opts.actQuant ? 2e-2 : 1e-4;
  // Attention probabilities (times V's scales) rounded to int16 on one scale per tile (integer
  // P.V): measured NMSE ~1e-8 with f32 Q and O; 1e-6 leaves a 100x margin.
  if (opts.int16Weights) {
    nmse = Math.max(nmse, 1e-6);
    maxRel = Math.max(maxRel, 1e-3);
  }
  if (opts.outF16 || opts.inF16) {
    nmse += 2e-6;
    maxRel = Math.max(maxRel, 4e-3);
  }
  return { nmse, maxRelToPeak: maxRel };
}

export function knobError(field: string, problem: string, expected: string): KgenError {
  return new KgenError({ field, problem, expected, hint: `run \`kgen plan\` with the same flags to see the knobs and their values, or omit ${field.startsWith('--') ? field : '--config'}` });
}
