import { InternalError } from '../errors.js';

/** How far a kernel's output is from the reference. */
export interface Comparison {
  maxAbsError: number;
  /**
   * sum (y - ref)^2 / sum max(ref^2, terms) over the finite outputs (terms: each output's energy of
   * summed products when the reference gives it, else 0); the error sum itself when the denominator is 0.
   */
  nmse: number;
  /** Index of the element with the largest absolute error. */
  worstIndex: number;
  /** Count of NaN or infinite outputs. */
  nonFinite: number;
  /** What one element's |error| is measured against: the largest |ref| (and sqrt(terms)) of all outputs. */
  peak: number;
}

/**
 * Tolerances a kernel's output must meet. Stated per plan (they depend on the activation and
 * output precision the plan uses), recorded in the manifest and shared by `verify`, the tests and
 * the tuner.
 */
export interface Tolerance {
  /** Largest accepted normalised mean squared error. */
  nmse: number;
  /** Largest accepted |y - ref| / (peak + 1e-6) for any one element (peak: Comparison's). */
  maxRelToPeak: number;
  /**
   * Set where the kernel itself rounds an input to integer codes (matmul's int8 activations,
   * attention's int8 Q): its error then follows that rounding's on the data, which outlier channels
   * (one sets its block's scale) and, for attention, exp() on peaked scores make large, so fixed
   * bounds either fail a correct kernel on LLM-like data or pass a wrong one on plain data. The judge
   * then also computes the reference from that input rounded as stated, and the bounds above widen
   * by `factor` x that rounding's own NMSE and largest error (`widenedTolerance`): the verdict is
   * "no less accurate than the stated rounding allows on these inputs".
   */
  inputRounding?: InputRounding;
}

/**
 * An input a kernel rounds itself: each run of `group` consecutive values of `input` along its last
 * dimension (the last run may be shorter) to the nearest code, ties to even, on a symmetric f32
 * scale d = absmax / (2^(bits-1) - 1), each value times the f32 reciprocal 1 / d: what every kernel
 * that states one does (C's cvtps / vcvtn / the 1.5 * 2^23 trick, WebAssembly's f32x4.nearest;
 * WGSL's round() on x * (127 / absmax), whose division need not be correctly rounded, may differ at
 * a rare near-tie, which `factor` absorbs).
 */
export interface InputRounding {
  /** The input's tensor name in the manifest (`x`, `q`). */
  input: string;
  bits: number;
  group: number;
  /**
   * The largest code magnitude, where the kernel keeps its codes below 2^(bits-1) - 1 (then
   * d = absmax / codeMax): WebAssembly's relaxed q3.5 kernel, whose i16 sums of four products of a
   * table value and a code must not overflow. Absent: 2^(bits-1) - 1.
   */
  codeMax?: number;
  /** The kernel's error may be this many times the rounding's alone (its rounding ties and f32 sums differ). */
  factor: number;
}

/**
 * The bounds a kernel is judged by once its plan's input rounding is known to cost `rounding` (the
 * reference from the rounded input compared with the exact one) on the checked inputs: the plan's
 * own bounds (its f32 or f16 arithmetic) plus `factor` x the rounding's, since the two errors add
 * (an f16 output's rounding on top of int8 activations' failed a correct kernel under the larger
 * of the two: q8 weights, M=N=1, SiLU, f16 Y, one seed in 32).
 */
export function widenedTolerance(tol: Tolerance, rounding: Comparison): Tolerance {
  const factor = tol.inputRounding?.factor ?? 1;
  return {
    ...tol,
    nmse: tol.nmse + factor * rounding.nmse,
    maxRelToPeak: tol.maxRelToPeak + (factor * rounding.maxAbsError) / (rounding.peak + 1e-6),
  };
}

/** The judge's view of an op's input rounding: the references from it and the bounds they widen. */
export interface RoundingJudge {
  /** The reference from the input rounded as `rounding` states, and its comparison with the exact one (computed once per rounding: the tuner checks every trial). */
  rounded(rounding: InputRounding): { reference: Float64Array; comparison: Comparison };
  /** `stated`, widened by its input rounding's error on these inputs where it states one. */
  tolerance(stated: Tolerance): Tolerance;
}

/**
 * The rounding judge of an op whose kernels may round `input` (a manifest tensor name): `referenceFrom`
 * computes the op's reference from that input rounded as stated, compared with `reference` as the
 * kernel's output is (`options`: the same terms).
 */
export function roundingJudge(input: string, reference: Float64Array, referenceFrom: (rounding: InputRounding) => Float64Array, options: CompareOptions = {}): RoundingJudge {
  const cache = new Map<string, { reference: Float64Array; comparison: Comparison }>();
  const rounded = (rounding: InputRounding) => {
    if (rounding.input !== input) throw new InternalError(`roundingJudge of ${input}: asked for a rounding of ${rounding.input}, which these kernels never round`);
    const key = `${roundingCodeMax(rounding)}/${rounding.group}`;
    let entry = cache.get(key);
    if (!entry) {
      const ref = referenceFrom(rounding);
      entry = { reference: ref, comparison: compareOutputs(ref, reference, options) };
      cache.set(key, entry);
    }
    return entry;
  };
  return {
    rounded,
    tolerance: (stated) => (stated.inputRounding ? widenedTolerance(stated, rounded(stated.inputRounding).comparison) : stated),
  };
}

/** The largest code magnitude of `rounding`: its `codeMax`, else 2^(bits-1) - 1. */
export function roundingCodeMax(rounding: InputRounding): number {
  return rounding.codeMax ?? 2 ** (rounding.bits - 1) - 1;
}

/** What `rounding` rounds to, for messages: `int8`, or `int8 codes in [-65, 65]` where it states a codeMax. */
export function roundingCodesText(rounding: InputRounding): string {
  return rounding.codeMax === undefined ? `int${rounding.bits}` : `int${rounding.bits} codes in [-${rounding.codeMax}, ${rounding.codeMax}]`;
}

/** `values` rounded as `rounding` states, in rows of `rowLength` (f64, dequantized again). */
export function roundedInput(values: ArrayLike<number>, rowLength: number, rounding: InputRounding): Float64Array {
  const f32 = Math.fround;
  const codeMax = roundingCodeMax(rounding);
  const out = new Float64Array(values.length);
  for (let row = 0; row < values.length; row += rowLength) {
    for (let start = row; start < row + rowLength; start += rounding.group) {
      const end = Math.min(start + rounding.group, row + rowLength);
      let absmax = 0;
      for (let i = start; i < end; i++) absmax = Math.max(absmax, Math.abs(f32(values[i]!)));
      // The kernels' arithmetic, in f32: so each code is the kernel's, not one off at a near-tie.
      const step = f32(absmax / codeMax);
      const inverse = step === 0 ? 0 : f32(1 / step);
      for (let i = start; i < end; i++) out[i] = Math.max(-codeMax, Math.min(codeMax, roundHalfEven(f32(f32(values[i]!) * inverse)))) * step;
    }
  }
  return out;
}

/** `v` to the nearest integer, ties to even (as the kernels' f32 conversions round). */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface CompareOptions {
  /**
   * Per output, the energy of the products the reference summed into it (a matmul: sum over k of
   * (x_k w_nk)^2, before the epilogue). Rounding the inputs (int8 activations) or the order of the
   * sum moves an output in proportion to this, not to the output itself: where the products cancel
   * (a dot product near zero by chance, SiLU of a negative sum) the output is small but its error is
   * not. Each output weighs max(ref^2, terms) in the NMSE's denominator and the peak is at least
   * sqrt(terms), so a cancelled output no longer decides the verdict (with one or two outputs the
   * error itself is a single chi-square draw and can still, rarely, exceed the tolerance). On N(0,1) test data E[ref^2] =
   * terms, so over many outputs the stated tolerances keep their meaning (the denominator grows by
   * ~1.5x on average). Without it (attention) the denominator is sum ref^2.
   */
  terms?: ArrayLike<number>;
}

export function compareOutputs(actual: ArrayLike<number>, reference: ArrayLike<number>, opts: CompareOptions = {}): Comparison {
  const { terms } = opts;
  let maxAbs = 0;
  let worst = 0;
  let num = 0;
  let den = 0;
  let peak = 0;
  let nonFinite = 0;
  for (let i = 0; i < reference.length; i++) {
    const a = actual[i]!;
    const r = reference[i]!;
    const energy = terms ? terms[i]! : 0;
    peak = Math.max(peak, Math.abs(r), Math.sqrt(energy));
    if (!Number.isFinite(a)) {
      nonFinite++;
      continue;
    }
    const e = Math.abs(a - r);
    if (e > maxAbs) {
      maxAbs = e;
      worst = i;
    }
    num += e * e;
    den += Math.max(r * r, energy);
  }
  return { maxAbsError: maxAbs, nmse: den === 0 ? num : num / den, worstIndex: worst, nonFinite, peak };
}

export function withinTolerance(c: Comparison, tol: Tolerance): boolean {
  if (c.nonFinite > 0) return false;
  return c.nmse <= tol.nmse && c.maxAbsError <= tol.maxRelToPeak * (c.peak + 1e-6);
}
