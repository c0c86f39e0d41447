import { asDtype, fromDtype } from '../api/data.js';
import type { KernelInputs } from '../backends/types.js';
import type { MatmulOp, MatmulShape } from '../ir/types.js';
import { Rng } from '../numeric/random.js';
import type { Plan } from '../plan/types.js';
import { codecOf, dequantizeMatrix, quantizeMatrix } from '../quant/index.js';
import type { Comparison } from '../reference/compare.js';
import { compareOutputs, withinTolerance } from '../reference/compare.js';
import { referenceMatmul } from '../reference/matmul.js';

/** Seeded inputs for one workload and the check every candidate's output must pass. */
export interface WorkloadData {
  inputs: KernelInputs;
  /** Output columns (rows of W) compared with the reference, for all activation rows. */
  checkedRows: number;
  check(plan: Plan, output: Uint8Array): { ok: boolean; comparison: Comparison };
}

/** Work (M*N*K) up to which every output is checked; above it, a sample of columns is. */
const FULL_CHECK_WORK = 2 ** 27;
/** Distinct weight rows generated; larger matrices repeat them (a prime, so no tile size aligns). */
const DISTINCT_ROWS = 257;

/**
 * Inputs for a matmul workload. Weights: up to 257 distinct quantized rows, repeated down N (so a
 * 28672 x 8192 matrix costs seconds, not minutes, to make). Checked: every output when M*N*K is
 * small, else all activation rows for a sample of 64 columns (both ends, the middle, a spread), so
 * the reference stays cheap; the tolerance is the plan's, as in verify.
 */
export function matmulWorkloadData(op: MatmulOp, shape: MatmulShape, seed: number): WorkloadData {
  const { M, N, K } = shape;
  const rng = new Rng(seed);
  const codec = codecOf(op.weight);
  const distinct = Math.min(N, DISTINCT_ROWS);
  const base = quantizeMatrix(codec, rng.fillNormal(new Float32Array(distinct * K)), distinct, K);
  const rowBytes = base.length / distinct;
  const w = new Uint8Array(N * rowBytes);
  for (let n = 0; n < N; n++) w.set(base.subarray((n % distinct) * rowBytes, (n % distinct + 1) * rowBytes), n * rowBytes);
  const baseValues = dequantizeMatrix(codec, base, distinct, K);
  const x = asDtype(rng.fillNormal(new Float32Array(M * K)), op.x);
  const bias = op.epilogue.bias ? asDtype(rng.fillNormal(new Float32Array(N)), 'f32') : undefined;
  const residual = op.epilogue.residual ? asDtype(rng.fillNormal(new Float32Array(M * N)), op.y) : undefined;

  const rows = M * N * K <= FULL_CHECK_WORK ? Array.from({ length: N }, (_, n) => n) : sampleRows(N);
  const wSub = new Float32Array(rows.length * K);
  rows.forEach((n, r) => wSub.set(baseValues.subarray((n % distinct) * K, (n % distinct + 1) * K), r * K));
  const pickCols = (values: Float32Array, m: number) => rows.map((n) => values[m * N + n]!);
  const reference = referenceMatmul({ M, N: rows.length, K }, op.epilogue, {
    x: x.values,
    w: wSub,
    bias: bias && Float32Array.from(rows, (n) => bias.values[n]!),
    residual: residual && Float32Array.from({ length: M * rows.length }, (_, i) => residual.values[Math.floor(i / rows.length) * N + rows[i % rows.length]!]!),
  });

  const inputs: KernelInputs = { 'x.bin': x.bytes, 'w.bin': w };
  if (bias) inputs['bias.bin'] = bias.bytes;
  if (residual) inputs['residual.bin'] = residual.bytes;
  return {
    inputs,
    checkedRows: rows.length,
    check(plan, output) {
      const y = fromDtype(output, (plan.op as MatmulOp).y);
      const got = new Float32Array(M * rows.length);
      for (let m = 0; m < M; m++) got.set(pickCols(y, m), m * rows.length);
      const comparison = compareOutputs(got, reference);
      return { ok: withinTolerance(comparison, reference, plan.tolerance), comparison };
    },
  };
}

/** 64 columns: 8 at each end, 8 around the middle (a thread split), and a spread of 40. */
function sampleRows(N: number): number[] {
  const rows = new Set<number>();
  for (let i = 0; i < 8; i++) {
    rows.add(i);
    rows.add(N - 1 - i);
    rows.add(Math.min(N - 1, Math.floor(N / 2) - 4 + i));
  }
  for (let i = 0; i < 40; i++) rows.add(Math.floor(((i + 0.5) * N) / 40));
  return [...rows].sort((a, b) => a - b);
}
