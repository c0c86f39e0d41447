/** How far a kernel's output is from the reference. */
export interface Comparison {
  maxAbsError: number;
  /** sum (y - ref)^2 / sum ref^2 (0 when both are zero). */
  nmse: number;
  /** Index of the element with the largest absolute error. */
  worstIndex: number;
  /** Count of NaN or infinite outputs. */
  nonFinite: number;
}

/**
 * Tolerances a kernel's output must meet. Stated per plan (they depend on the activation and
 * output precision the plan uses), recorded in the manifest and shared by `verify`, the tests and
 * the tuner.
 */
export interface Tolerance {
  /** Largest accepted normalised mean squared error. */
  nmse: number;
  /** Largest accepted |y - ref| / (max |ref| + 1e-6) for any one element. */
  maxRelToPeak: number;
}

export function compareOutputs(actual: ArrayLike<number>, reference: ArrayLike<number>): Comparison {
  let maxAbs = 0;
  let worst = 0;
  let num = 0;
  let den = 0;
  let nonFinite = 0;
  for (let i = 0; i < reference.length; i++) {
    const a = actual[i]!;
    const r = reference[i]!;
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
    den += r * r;
  }
  return { maxAbsError: maxAbs, nmse: den === 0 ? num : num / den, worstIndex: worst, nonFinite };
}

export function peakAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]!));
  return m;
}

export function withinTolerance(c: Comparison, reference: ArrayLike<number>, tol: Tolerance): boolean {
  if (c.nonFinite > 0) return false;
  return c.nmse <= tol.nmse && c.maxAbsError <= tol.maxRelToPeak * (peakAbs(reference) + 1e-6);
}
