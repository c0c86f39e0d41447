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
   * Set where the kernel itself rounds an input to integer codes before a nonlinearity (attention's
   * int8 Q, whose error exp() amplifies as the scores sharpen: fixed bounds either fail a correct
   * kernel on peaked scores or pass a wrong one on flat scores). The judge then also computes the
   * reference from that input rounded as stated, and the bounds above widen to `factor` x that
   * rounding's own NMSE and largest error where those are larger (`widenedTolerance`): the verdict
   * is "no less accurate than the stated rounding allows on these inputs".
   */
  inputRounding?: InputRounding;
}

/**
 * An input a kernel rounds itself: each run of `group` consecutive values of `input` along its last
 * dimension (the last run may be shorter) to nearest on a symmetric scale, the run's absmax mapped
 * to 2^(bits-1) - 1.
 */
export interface InputRounding {
  input: string;
  bits: number;
  group: number;
  /** The kernel's error may be this many times the rounding's alone (its rounding ties and f32 sums differ). */
  factor: number;
}

/**
 * The bounds a kernel is judged by once its plan's input rounding is known to cost `rounding` (the
 * reference from the rounded input compared with the exact one) on the checked inputs.
 */
export function widenedTolerance(tol: Tolerance, rounding: Comparison): Tolerance {
  const factor = tol.inputRounding?.factor ?? 1;
  return {
    ...tol,
    nmse: Math.max(tol.nmse, factor * rounding.nmse),
    maxRelToPeak: Math.max(tol.maxRelToPeak, (factor * rounding.maxAbsError) / (rounding.peak + 1e-6)),
  };
}

/** `values` rounded as `rounding` states, in rows of `rowLength` (f64, dequantized again). */
export function roundedInput(values: ArrayLike<number>, rowLength: number, rounding: InputRounding): Float64Array {
  const codeMax = 2 ** (rounding.bits - 1) - 1;
  const out = new Float64Array(values.length);
  for (let row = 0; row < values.length; row += rowLength) {
    for (let start = row; start < row + rowLength; start += rounding.group) {
      const end = Math.min(start + rounding.group, row + rowLength);
      let absmax = 0;
      for (let i = start; i < end; i++) absmax = Math.max(absmax, Math.abs(values[i]!));
      const step = absmax / codeMax;
      for (let i = start; i < end; i++) out[i] = step === 0 ? 0 : Math.max(-codeMax, Math.min(codeMax, Math.round(values[i]! / step))) * step;
    }
  }
  return out;
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
