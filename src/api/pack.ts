import { KgenError } from '../errors.js';
import type { WeightFormatName, WeightSpec } from '../ir/types.js';
import { validateOp } from '../ir/validate.js';
import { bitsPerWeight, codecOf, FORMATS, quantizeMatrix } from '../quant/index.js';

export interface PackOptions {
  /** Weight format name (q35, q4, q8, q4_0, q8_0, f16). */
  format: string;
  /** Group size for q35/q4/q8 (default 64); fixed 32 for q4_0/q8_0; none for f16. */
  groupSize?: number;
  /** Rows (output features) and columns (input features) of W[N,K]. */
  N: number;
  K: number;
  /** Row-major f32 weights, N*K values. */
  weights: Float32Array;
}

export interface PackResult {
  bytes: Uint8Array;
  spec: WeightSpec;
  bitsPerWeight: number;
  rowBytes: number;
}

/** Quantizes f32 weights into a format's bytes, exactly the layout emitted kernels read. */
export function pack(opts: PackOptions): PackResult {
  if (!(opts.format in FORMATS)) {
    throw new KgenError({ field: '--format', problem: `unknown format "${opts.format}"`, expected: `one of ${Object.keys(FORMATS).join(', ')}` });
  }
  // The same checks an op's weight spec gets, so pack and emit agree on what is legal.
  const op = validateOp({ kind: 'matmul', name: 'pack', weight: { format: opts.format, ...(opts.groupSize !== undefined ? { groupSize: opts.groupSize } : {}) } }, 'pack');
  const spec = (op as { weight: WeightSpec }).weight;
  const codec = codecOf(spec);
  for (const [dim, v] of [['N', opts.N], ['K', opts.K]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new KgenError({ field: `--shape ${dim}`, problem: `got ${v}`, expected: 'a positive integer' });
  }
  if (opts.K % codec.weightsPerBlock !== 0) {
    throw new KgenError({ field: '--shape K', problem: `K=${opts.K} is not a multiple of the ${opts.format} block of ${codec.weightsPerBlock}`, expected: `K divisible by ${codec.weightsPerBlock}`, hint: 'pad each row with zeros' });
  }
  if (opts.weights.length !== opts.N * opts.K) {
    throw new KgenError({ field: '--in', problem: `holds ${opts.weights.length} values but N*K = ${opts.N * opts.K}`, expected: `${opts.N * opts.K * 4} bytes of little-endian f32`, hint: 'check --shape against the file' });
  }
  for (let i = 0; i < opts.weights.length; i++) {
    if (!Number.isFinite(opts.weights[i]!)) {
      throw new KgenError({ field: '--in', problem: `value ${i} (row ${Math.floor(i / opts.K)}, column ${i % opts.K}) is ${opts.weights[i]}`, expected: 'finite weights' });
    }
  }
  return {
    bytes: quantizeMatrix(codec, opts.weights, opts.N, opts.K),
    spec,
    bitsPerWeight: bitsPerWeight(codec),
    rowBytes: (opts.K / codec.weightsPerBlock) * codec.bytesPerBlock,
  };
}

export type { WeightFormatName };
