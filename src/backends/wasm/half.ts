/**
 * Bit patterns of IEEE f16 and f32 the WebAssembly conversions print (templates/wasm/half/: f16 to
 * f32 by one rebiasing multiply, f32 to f16 rounding to nearest even as kg_f32_to_f16 of the C
 * kernels), as the view field `half` of every WebAssembly kernel.
 */
const HALF = {
  absMask: 0x7fff,
  mantShift: 13,
  rebias: 2 ** 112,
  f32ExpMask: 0x7f800000,
  infShifted: 0x7c00 << 13,
  signMask: 0x8000,
  signShift: 16,
  f32AbsMask: 0x7fffffff,
  h16ExpMask: 0x7c00,
  h16QuietBit: 0x200,
  overflowFrom: 0x477ff000,
  normalFrom: 0x38800000,
  zeroBelow: 0x33000000,
  f32MantMask: 0x7fffff,
  f32Implicit: 0x800000,
  subShiftBase: 126,
  f32MantBits: 23,
  rebiasBits: 0x38000000,
  dropMask: 0x1fff,
  dropHalf: 0x1000,
  /**
   * f16 bits in the high half of an i32 lane (h << 16): an arithmetic shift right by 3 puts the
   * exponent and mantissa where f32 has them (bits 27-13 after the shift) and copies the sign into
   * bits 31-28; keepMask keeps bit 31 and bits 27-13, and the rebiasing multiply carries the sign.
   * (h << 16) & absMask above infBelow is an inf or NaN (non-negative, so a signed compare).
   */
  high: { shift: 3, keepMask: 0x8fffe000, absMask: 0x7fff0000, infBelow: 0x7bffffff },
};

function splat4(v: number): string {
  return [v, v, v, v].join(' ');
}


/** `half` of a kernel's view: the patterns, and the four-lane splats the vector widening prints. */
export const HALF_VIEW = {
  ...HALF,
  absMask4: splat4(HALF.absMask),
  rebias4: splat4(HALF.rebias),
  f32ExpMask4: splat4(HALF.f32ExpMask),
  infShifted4: splat4(HALF.infShifted),
  signMask4: splat4(HALF.signMask),
  high4: { keepMask: splat4(HALF.high.keepMask), absMask: splat4(HALF.high.absMask), infBelow: splat4(HALF.high.infBelow) },
};

/** f16 values of one v128 load: two to an i32 lane. */
export const F16_STEP_VALUES = 8;
const F16_BITS = 16;

/**
 * f16 data 8 values a step (attention's f16 cache, matmul's f16 weights): one v128 load holds them
 * two to an i32 lane, so the odd values widen from the lanes' high halves as loaded and the even
 * ones after a shift by `pairShift` (`half/widen4_high`, or `half/widen4_high_finite` for finite
 * values only), one vector each: values (0, 2, 4, 6) and (1, 3, 5, 7). What they are multiplied with
 * is stored in that order: index k of a whole step at (k & stepMask) + ((k & inStepMask) >>
 * parityBits) + ((k & parityMask) << oddShift). The finite-only widening's check: each value shifted
 * left by `signBits` (out of the sign) at or above `nonFinite16` has an all-ones exponent (inf, NaN).
 */
export const F16_STEP = {
  pairShift: F16_BITS,
  stepMask: -F16_STEP_VALUES,
  inStepMask: F16_STEP_VALUES - 1,
  parityMask: 1,
  parityBits: 1,
  oddShift: Math.log2(F16_STEP_VALUES / 2),
  signBits: 1,
  nonFinite16: Array(F16_STEP_VALUES).fill(HALF.h16ExpMask << 1).join(' '),
};
