import { f16BitsToF32, f32ToF16Bits } from '../numeric/half.js';

/** Little-endian f16 scale at `offset`, widened to f32. */
export function readScale(bytes: Uint8Array, offset: number): number {
  return f16BitsToF32(bytes[offset]! | (bytes[offset + 1]! << 8));
}

/** Stores `value` as a little-endian f16 and returns the value actually stored. */
export function writeScale(bytes: Uint8Array, offset: number, value: number): number {
  const bits = f32ToF16Bits(value);
  bytes[offset] = bits & 0xff;
  bytes[offset + 1] = bits >>> 8;
  return f16BitsToF32(bits);
}

/** C's roundf: halves away from zero (Math.round rounds -2.5 to -2). */
export function roundHalfAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

export function absMax(src: Float32Array, offset: number, count: number): number {
  let m = 0;
  for (let i = 0; i < count; i++) m = Math.max(m, Math.abs(src[offset + i]!));
  return m;
}
