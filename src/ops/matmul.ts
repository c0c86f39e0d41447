import type { MatmulOp, MatmulShape } from '../ir/types.js';
import { Rng } from '../numeric/random.js';
import { bitsPerWeight, codecOf, dequantizeMatrix, FORMATS, quantizeMatrix } from '../quant/index.js';
import { compareOutputs, roundedInput, roundingJudge, withinTolerance } from '../reference/compare.js';
import { referenceMatmulWithTerms, type MatmulReferenceInputs } from '../reference/matmul.js';
import { asDtype, dtypeSize, fromDtype, type TensorData } from './tensors.js';
import type { KernelInputs, OpKit, RunBuffer, TensorInfo, TestData } from './types.js';

/**
 * The matmul op at run time: Y[M,N] = X[M,K] . W[N,K]^T plus the epilogue. Harness files: x.bin
 * (X in the op's x type), w.bin (W in its weight format), bias.bin (f32, with a bias),
 * residual.bin (the y type, with a residual); the output is Y in the op's y type, row-major.
 */

interface MatmulData {
  x: TensorData;
  w: TensorData;
  bias?: TensorData;
  residual?: TensorData;
}

/**
 * Outlier channels of X, as real activations have them: `channels` channels spread over K (the
 * same in every row) scaled by `size`. Each sets its int8 block's scale, so the other values of
 * that block keep fewer bits: what a judge of int8 activations must allow for, and no more.
 */
export interface MatmulOutliers {
  channels: number;
  size: number;
}

/** Seeded inputs: N(0,1) activations (times `outliers` on its channels) and weights (quantized), bias and residual. */
function makeData(op: MatmulOp, shape: MatmulShape, seed: number, outliers?: MatmulOutliers): MatmulData {
  const { M, N, K } = shape;
  const rng = new Rng(seed);
  const codec = codecOf(op.weight);
  const wf = rng.fillNormal(new Float32Array(N * K));
  const wBytes = quantizeMatrix(codec, wf, N, K);
  const xf = rng.fillNormal(new Float32Array(M * K));
  if (outliers) {
    for (let c = 0; c < outliers.channels; c++) {
      // Spread over K, off block boundaries (an outlier shares its block with ordinary values).
      const k = Math.floor(((c + 0.37) * K) / outliers.channels);
      for (let m = 0; m < M; m++) xf[m * K + k] *= outliers.size;
    }
  }
  const data: MatmulData = {
    x: asDtype(xf, op.x),
    w: { bytes: wBytes, values: dequantizeMatrix(codec, wBytes, N, K) },
  };
  if (op.epilogue.bias) data.bias = asDtype(rng.fillNormal(new Float32Array(N)), 'f32');
  if (op.epilogue.residual) data.residual = asDtype(rng.fillNormal(new Float32Array(M * N)), op.y);
  return data;
}

/** The harness files of the inputs. */
function inputFiles(x: Uint8Array, w: Uint8Array, bias?: Uint8Array, residual?: Uint8Array): KernelInputs {
  const inputs: KernelInputs = { 'x.bin': x, 'w.bin': w };
  if (bias) inputs['bias.bin'] = bias;
  if (residual) inputs['residual.bin'] = residual;
  return inputs;
}

/**
 * The judge of a matmul's output: the reference of the checked outputs (`inputs` hold the weight
 * rows, bias and residual of those columns only), each output weighed by the larger of its square
 * and its products' energy (compare.ts), and where the plan states that the kernel rounds X
 * (int8 activations: Tolerance.inputRounding) the reference from X so rounded, which widens the
 * bounds to the rounding's own error on these inputs. `rows`: the output's columns checked (all
 * of them when undefined).
 */
function matmulJudge(op: MatmulOp, shape: MatmulShape, inputs: MatmulReferenceInputs, rows?: number[]): Omit<TestData, 'inputs'> {
  const { M, N, K } = shape;
  const checked = { M, N: rows ? rows.length : N, K };
  const { y: reference, terms } = referenceMatmulWithTerms(checked, op.epilogue, inputs);
  const rounding = roundingJudge('x', reference, (r) => referenceMatmulWithTerms(checked, op.epilogue, { ...inputs, x: roundedInput(inputs.x, K, r) }).y, { terms });
  return {
    reference,
    terms,
    check(output, stated) {
      const y = fromDtype(output, op.y);
      let got: Float32Array = y;
      if (rows) {
        got = new Float32Array(M * rows.length);
        for (let m = 0; m < M; m++) rows.forEach((n, r) => (got[m * rows.length + r] = y[m * N + n]!));
      }
      const comparison = compareOutputs(got, reference, { terms });
      const tolerance = rounding.tolerance(stated);
      return { ok: withinTolerance(comparison, tolerance), comparison, tolerance };
    },
    roundedReference: (r) => rounding.rounded(r).reference,
  };
}

/**
 * Full test data (every output checked), N(0,1) unless `outliers` raises a few channels of X
 * (LLM-like activations: the tests of the int8-activation judge use them).
 */
export function matmulTestData(op: MatmulOp, shape: MatmulShape, seed: number, outliers?: MatmulOutliers): TestData {
  const d = makeData(op, shape, seed, outliers);
  const judge = matmulJudge(op, shape, { x: d.x.values, w: d.w.values, bias: d.bias?.values, residual: d.residual?.values });
  return { inputs: inputFiles(d.x.bytes, d.w.bytes, d.bias?.bytes, d.residual?.bytes), ...judge };
}

/** Work (M*N*K) up to which every output is checked; above it, a sample of columns is. */
const FULL_CHECK_WORK = 2 ** 27;
/** Distinct weight rows generated; larger matrices repeat them (a prime, so no tile size aligns). */
const DISTINCT_ROWS = 257;

/**
 * Inputs for a tuning workload. Weights: up to 257 distinct quantized rows, repeated down N (so a
 * 28672 x 8192 matrix costs seconds, not minutes, to make). Checked: every output when M*N*K is
 * small, else all activation rows for a sample of 64 columns (both ends, the middle, a spread), so
 * the reference stays cheap; the tolerance is the plan's, as in verify.
 */
function workloadData(op: MatmulOp, shape: MatmulShape, seed: number): TestData {
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
  const judge = matmulJudge(op, shape, {
    x: x.values,
    w: wSub,
    bias: bias && Float32Array.from(rows, (n) => bias.values[n]!),
    residual: residual && Float32Array.from({ length: M * rows.length }, (_, i) => residual.values[Math.floor(i / rows.length) * N + rows[i % rows.length]!]!),
  }, rows);
  return { inputs: inputFiles(x.bytes, w, bias?.bytes, residual?.bytes), ...judge };
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

function packedBytes(op: MatmulOp, shape: MatmulShape): { rowBytes: number; total: number } {
  const codec = codecOf(op.weight);
  const rowBytes = (shape.K / codec.weightsPerBlock) * codec.bytesPerBlock;
  return { rowBytes, total: rowBytes * shape.N };
}

/**
 * The host buffers a run allocates at its peak: seeded weights (f32, packed, and dequantized for
 * the reference), activations, the f64 reference and the output, counting the copies the harness
 * process holds. An upper bound: the tuner repeats weight rows and needs less.
 */
function runBuffers(op: MatmulOp, shape: MatmulShape): RunBuffer[] {
  const { M, N, K } = shape;
  const yBytes = M * N * dtypeSize(op.y);
  const buffers: RunBuffer[] = [
    { name: 'W as f32', bytes: N * K * 4 },
    { name: 'W dequantized for the reference', bytes: N * K * 4 },
    { name: 'W packed (kgen and the harness)', bytes: 2 * packedBytes(op, shape).total },
    { name: 'X (kgen and the harness)', bytes: 2 * M * K * 4 },
    { name: 'the f64 reference output', bytes: M * N * 8 },
    { name: 'Y (the harness and its copy in kgen)', bytes: 2 * yBytes },
  ];
  if (op.epilogue.residual) buffers.push({ name: 'the residual (kgen and the harness)', bytes: 2 * yBytes });
  return buffers;
}

export const matmulKit: OpKit<MatmulOp, MatmulShape> = {
  kind: 'matmul',
  testData: (op, shape, seed) => matmulTestData(op, shape, seed),
  workloadData,
  outputBytes: (op, shape) => shape.M * shape.N * dtypeSize(op.y),
  runBuffers,
  tensors(op, shape) {
    const { M, N, K } = shape;
    const codec = codecOf(op.weight);
    const { rowBytes, total } = packedBytes(op, shape);
    const tensors: Record<string, TensorInfo> = {
      x: { dtype: op.x, shape: `[${M},${K}]`, layout: 'row-major', bytes: M * K * dtypeSize(op.x) },
      y: { dtype: op.y, shape: `[${M},${N}]`, layout: 'row-major', bytes: M * N * dtypeSize(op.y) },
    };
    if (op.epilogue.bias) tensors.bias = { dtype: 'f32', shape: `[${N}]`, layout: 'contiguous', bytes: N * dtypeSize('f32') };
    if (op.epilogue.residual) tensors.residual = { dtype: op.y, shape: `[${M},${N}]`, layout: 'row-major', bytes: M * N * dtypeSize(op.y) };
    return {
      tensors,
      weights: {
        format: op.weight.format,
        formatVersion: FORMATS[op.weight.format].version,
        groupSize: op.weight.groupSize,
        bitsPerWeight: bitsPerWeight(codec),
        rowBytes,
        totalBytes: total,
        layout: `${N} rows of ${K / codec.weightsPerBlock} blocks of ${codec.bytesPerBlock} bytes (docs/formats.md#${op.weight.format})`,
      },
    };
  },
  weights: (op) => op.weight,
  kvCache: () => undefined,
  checkedKvLengths: () => undefined,
};
