import { opKit } from '../ops/index.js';
import type { Plan } from '../plan/types.js';
import { checkRunFits } from './run-memory.js';

/**
 * The files that let an emitted kernel be run and checked where kgen is not installed (CUDA's
 * run.sh on a GPU box): the op kit's seeded inputs as the kernel reads them (x.bin, w.bin, ... for
 * a matmul), ref.bin, the f64 reference output (little-endian) computed from the same inputs, and
 * for a matmul ref_terms.bin, each output's energy of summed products (f64; what `compareOutputs`
 * weighs an output by where its products cancel). Invariant: the same plan and seed always give
 * the same bytes.
 */
export function kernelDataFiles(plan: Plan, seed: number): Record<string, Uint8Array> {
  checkRunFits(plan, 'kgen emit --data');
  const data = opKit(plan.op.kind).testData(plan.op, plan.shape, seed);
  const bytes = (a: Float64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return { ...data.inputs, 'ref.bin': bytes(data.reference), ...(data.terms ? { 'ref_terms.bin': bytes(data.terms) } : {}) };
}
