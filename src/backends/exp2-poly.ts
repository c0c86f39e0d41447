/**
 * The 2^x the CPU attention kernels (C and WebAssembly) compute their softmax with: x = n + f with
 * n = round(x) and f in [-0.5, 0.5], 2^f by its Taylor series to f^6 (coefficients ln(2)^k / k!,
 * relative error below 1.3e-7, under f32's own rounding), 2^n built in the exponent bits. Below
 * 2^-126 the kernels return 0, which also takes masked scores (-inf) to exactly 0.
 */

/** Coefficients of f^1 .. f^6 (the constant term is 1). */
export const EXP2_COEFFICIENTS: readonly number[] = (() => {
  const c: number[] = [];
  let term = 1;
  for (let k = 1; k <= 6; k++) {
    term *= Math.LN2 / k;
    c.push(term);
  }
  return c;
})();

/** The smallest exponent kept (below it 2^x is 0). */
export const EXP2_MIN = -126;

/** IEEE f32 exponent bias and mantissa bits (2^n is (n + bias) << mantissa bits). */
export const F32_BIAS = 127;
export const F32_MANT_BITS = 23;
/** An f32's bits without the sign, and those of +infinity: the value is NaN where the first exceeds the second. */
export const F32_ABS_MASK = 0x7fffffff;
export const F32_INF_BITS = 0x7f800000;

/** A float's digits for a kernel's source: nine significant digits round-trip an f32. */
export function f32Digits(x: number): string {
  return x.toPrecision(9);
}
