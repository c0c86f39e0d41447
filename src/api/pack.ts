import { KgenError } from '../errors.js';
import type { Op, WeightFormatName, WeightSpec } from '../ir/types.js';
import { isMatmulOp } from '../ir/matmul.js';
import { MAX_DIM, validateOp, validateShape } from '../ir/validate.js';
import { F16_MAX } from '../numeric/half.js';
import { quoted, valueText } from '../io/message-text.js';
import { checkOptionsObject } from './request.js';
import type { BlockCodec } from '../quant/format.js';
import { bitsPerWeight, codecOf, firstNonFiniteWeight, FORMATS, quantizeMatrix } from '../quant/index.js';

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

/** What `pack` will write for a format, group size and shape: checked before any weight is read. */
export interface PackLayout {
  spec: WeightSpec;
  codec: BlockCodec;
  bitsPerWeight: number;
  rowBytes: number;
}

/**
 * Checks a format, group size and shape with the rules an op's weight spec gets (so pack and emit
 * agree on what is legal), naming the flag at fault: `--format`, `--group`, `--shape N|K`.
 */
export function packLayout(opts: Omit<PackOptions, 'weights'>): PackLayout {
  const layout = codecLayout(opts);
  // The shape rules of the matmul op (f16: K a multiple of 32), so pack never writes bytes no kernel takes.
  validateShape(layout.op, { M: 1, N: opts.N, K: opts.K });
  return layout;
}

/**
 * The layout of a format, group size and shape as its codec defines it: what `unpack` can decode,
 * a superset of what `packLayout` writes (an f16 matrix of even K outside the multiples of 32).
 */
export function codecLayout(opts: Omit<PackOptions, 'weights'>): PackLayout & { op: Op } {
  if (!Object.hasOwn(FORMATS, opts.format)) {
    throw new KgenError({ field: '--format', problem: `unknown format ${quoted(String(opts.format))}`, expected: `one of ${Object.keys(FORMATS).join(', ')}` });
  }
  let op: Op;
  try {
    op = validateOp({ kind: 'matmul', name: 'pack', weight: { format: opts.format, ...(opts.groupSize !== undefined ? { groupSize: opts.groupSize } : {}) } }, 'pack');
  } catch (e) {
    if (!(e instanceof KgenError)) throw e;
    throw new KgenError({ field: '--group', problem: e.problem, expected: e.expected, hint: 'fix --group, or leave it out for the format\'s default' });
  }
  // validateOp returns the op of the kind it was given: a matmul here, or a kgen bug.
  if (!isMatmulOp(op)) throw new KgenError({ field: 'pack', problem: `internal: validating a matmul op gave a ${op.kind} op`, hint: 'a kgen bug: validateOp changed the op\'s kind' });
  const spec = op.weight;
  const codec = codecOf(spec);
  for (const [dim, v] of [['N', opts.N], ['K', opts.K]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > MAX_DIM) throw new KgenError({ field: `--shape ${dim}`, problem: `got ${v}`, expected: `an integer from 1 to ${MAX_DIM}` });
  }
  if (opts.K % codec.weightsPerBlock !== 0) {
    throw new KgenError({ field: '--shape K', problem: `K=${opts.K} is not a multiple of the ${opts.format} block of ${codec.weightsPerBlock}`, expected: `K divisible by ${codec.weightsPerBlock}`, hint: 'pad each row with zeros' });
  }
  return { op, spec, codec, bitsPerWeight: bitsPerWeight(codec), rowBytes: (opts.K / codec.weightsPerBlock) * codec.bytesPerBlock };
}

/** Quantizes f32 weights into a format's bytes, exactly the layout emitted kernels read. */
export function pack(opts: PackOptions): PackResult {
  checkOptionsObject(opts, 'pack', "{ format: 'q4_0', N: 4096, K: 4096, weights }");
  const { spec, codec, rowBytes } = packLayout(opts);
  if (!(opts.weights instanceof Float32Array)) {
    throw new KgenError({ field: 'weights', problem: `got ${valueText(opts.weights, 40)}`, expected: 'a Float32Array of N*K row-major weights', hint: 'wrap other arrays with Float32Array.from(...)' });
  }
  if (opts.weights.length !== opts.N * opts.K) {
    throw new KgenError({ field: '--in', problem: `holds ${opts.weights.length} values but N*K = ${opts.N * opts.K}`, expected: `${opts.N * opts.K * 4} bytes of little-endian f32`, hint: 'check --shape against the file' });
  }
  let absMax = 0;
  for (let i = 0; i < opts.weights.length; i++) {
    if (!Number.isFinite(opts.weights[i]!)) {
      throw new KgenError({ field: '--in', problem: `value ${i} (row ${Math.floor(i / opts.K)}, column ${i % opts.K}) is ${opts.weights[i]}`, expected: 'finite weights' });
    }
    absMax = Math.max(absMax, Math.abs(opts.weights[i]!));
  }
  const bytes = quantizeMatrix(codec, opts.weights, opts.N, opts.K);
  // A scale past f16's range decodes to infinity (and its block's other weights to NaN): refuse
  // such bytes rather than hand a kernel weights that poison every output they touch. Weights within
  // f16's range give every format finite scales and values (a scale is at most the block's largest
  // weight), so only larger ones are decoded again to look.
  const bad = absMax > F16_MAX ? firstNonFiniteWeight(codec, bytes, opts.N, opts.K) : undefined;
  if (bad !== undefined) {
    const row = Math.floor(bad / opts.K);
    const col = bad % opts.K;
    throw new KgenError({
      field: '--in',
      problem: `value ${bad} (row ${row}, column ${col}) is ${opts.weights[bad]}, and packed as ${opts.format} its block would decode to non-finite values (an f16 scale or value past 65504)`,
      expected: `weights within ${opts.format}'s range (docs/formats.md)`,
      hint: 'scale the weights down (a power of two is exact) and the output up by the same factor',
    });
  }
  return { bytes, spec, bitsPerWeight: bitsPerWeight(codec), rowBytes };
}

export type { WeightFormatName };
