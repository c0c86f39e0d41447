import { KgenError } from '../errors.js';
import type { MatmulOp, MatmulShape } from '../ir/types.js';
import type { Plan } from '../plan/types.js';
import { makeMatmulData, matmulInputs } from './data.js';
import { checkRunFits } from './run-memory.js';
import { matmulReference } from './verify.js';

/**
 * The files that let an emitted kernel be run and checked where kgen is not installed (CUDA's
 * run.sh on a GPU box): seeded inputs as the kernel reads them (x.bin, w.bin, bias.bin,
 * residual.bin) and ref.bin, the f64 reference output (M x N, little-endian) computed from the
 * same inputs. Invariant: the same plan and seed always give the same bytes.
 */
export function kernelDataFiles(plan: Plan, seed: number): Record<string, Uint8Array> {
  if (plan.op.kind !== 'matmul') {
    throw new KgenError({ field: '--data', problem: `no data files for ${plan.op.kind} kernels yet`, expected: 'a matmul op' });
  }
  checkRunFits(plan, 'kgen emit --data');
  const data = makeMatmulData(plan.op as MatmulOp, plan.shape as MatmulShape, seed);
  const ref = matmulReference(plan, data);
  return { ...matmulInputs(data), 'ref.bin': new Uint8Array(ref.buffer, ref.byteOffset, ref.byteLength) };
}
