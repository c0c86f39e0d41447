import { opKit } from '../ops/index.js';
import type { Plan } from '../plan/types.js';
import { checkRunFits } from './run-memory.js';

/**
 * The files that let an emitted kernel be run and checked where kgen is not installed (CUDA's
 * run.sh on a GPU box): the op kit's seeded inputs as the kernel reads them (x.bin, w.bin, ... for
 * a matmul) and ref.bin, the f64 reference output (little-endian) computed from the same inputs.
 * Invariant: the same plan and seed always give the same bytes.
 */
export function kernelDataFiles(plan: Plan, seed: number): Record<string, Uint8Array> {
  checkRunFits(plan, 'kgen emit --data');
  const data = opKit(plan.op.kind).testData(plan.op, plan.shape, seed);
  return { ...data.inputs, 'ref.bin': new Uint8Array(data.reference.buffer, data.reference.byteOffset, data.reference.byteLength) };
}
