import type { MatmulOp, MatmulShape } from '../ir/types.js';
import { f16BitsToF32, f32ToF16Bits } from '../numeric/half.js';
import { Rng } from '../numeric/random.js';
import { codecOf, dequantizeMatrix, quantizeMatrix } from '../quant/index.js';

/** A tensor as the kernel reads it (raw bytes) and as the reference sees it (f32 values). */
export interface TensorData {
  bytes: Uint8Array;
  values: Float32Array;
}

export interface MatmulData {
  x: TensorData;
  w: TensorData;
  bias?: TensorData;
  residual?: TensorData;
}

/** f32 values as f16 bytes, and the values after rounding, when `dtype` is f16. */
export function asDtype(values: Float32Array, dtype: 'f32' | 'f16'): TensorData {
  if (dtype === 'f32') return { bytes: new Uint8Array(values.buffer.slice(0)), values };
  const bits = new Uint16Array(values.length);
  const rounded = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    bits[i] = f32ToF16Bits(values[i]!);
    rounded[i] = f16BitsToF32(bits[i]!);
  }
  return { bytes: new Uint8Array(bits.buffer), values: rounded };
}

/** Reads a kernel's raw output as f32 values. */
export function fromDtype(bytes: Uint8Array, dtype: 'f32' | 'f16'): Float32Array {
  const copy = bytes.slice();
  if (dtype === 'f32') return new Float32Array(copy.buffer, 0, copy.length / 4);
  const bits = new Uint16Array(copy.buffer, 0, copy.length / 2);
  return Float32Array.from(bits, f16BitsToF32);
}

/** Seeded inputs for a matmul: N(0,1) activations and weights (quantized), bias and residual. */
export function makeMatmulData(op: MatmulOp, shape: MatmulShape, seed: number): MatmulData {
  const { M, N, K } = shape;
  const rng = new Rng(seed);
  const codec = codecOf(op.weight);
  const wf = rng.fillNormal(new Float32Array(N * K));
  const wBytes = quantizeMatrix(codec, wf, N, K);
  const data: MatmulData = {
    x: asDtype(rng.fillNormal(new Float32Array(M * K)), op.x),
    w: { bytes: wBytes, values: dequantizeMatrix(codec, wBytes, N, K) },
  };
  if (op.epilogue.bias) data.bias = asDtype(rng.fillNormal(new Float32Array(N)), 'f32');
  if (op.epilogue.residual) data.residual = asDtype(rng.fillNormal(new Float32Array(M * N)), op.y);
  return data;
}

/** The files a kernel harness reads for a matmul: x.bin, w.bin, and bias.bin / residual.bin when used. */
export function matmulInputs(data: MatmulData): Record<string, Uint8Array> {
  const inputs: Record<string, Uint8Array> = { 'x.bin': data.x.bytes, 'w.bin': data.w.bytes };
  if (data.bias) inputs['bias.bin'] = data.bias.bytes;
  if (data.residual) inputs['residual.bin'] = data.residual.bytes;
  return inputs;
}
