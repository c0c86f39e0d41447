import { f16BitsToF32, f32ToF16Bits } from '../numeric/half.js';
import type { ActDType } from '../ir/types.js';

/** A tensor as the kernel reads it (raw bytes) and as the reference sees it (f32 values). */
export interface TensorData {
  bytes: Uint8Array;
  values: Float32Array;
}

/** f32 values as f16 bytes, and the values after rounding, when `dtype` is f16. */
export function asDtype(values: Float32Array, dtype: ActDType): TensorData {
  // A copy of exactly the view's bytes (values may be a view of a larger buffer).
  if (dtype === 'f32') return { bytes: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)), values };
  const bits = new Uint16Array(values.length);
  const rounded = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    bits[i] = f32ToF16Bits(values[i]!);
    rounded[i] = f16BitsToF32(bits[i]!);
  }
  return { bytes: new Uint8Array(bits.buffer), values: rounded };
}

/** Reads a kernel's raw output as f32 values. */
export function fromDtype(bytes: Uint8Array, dtype: ActDType): Float32Array {
  const copy = bytes.slice();
  if (dtype === 'f32') return new Float32Array(copy.buffer, 0, copy.length / 4);
  const bits = new Uint16Array(copy.buffer, 0, copy.length / 2);
  return Float32Array.from(bits, f16BitsToF32);
}

/** Bytes per element of an activation type. */
export function dtypeSize(dtype: ActDType): number {
  return dtype === 'f16' ? 2 : 4;
}
