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
