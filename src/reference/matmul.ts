import type { Epilogue, MatmulShape } from '../ir/types.js';

/** GELU, tanh form (what the kernels compute; the erf form differs by < 1e-3). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** Inputs of the reference matmul, all as f32 values the kernel also sees (f16 inputs pre-rounded). */
export interface MatmulReferenceInputs {
  /** X[M,K] row-major (f64 where the judge rounds it as a kernel does: `roundedInput`). */
  x: Float32Array | Float64Array;
  /** Dequantized W[N,K] row-major: exactly the values the packed bytes decode to. */
  w: Float32Array;
  /** bias[N], present iff the epilogue has a bias. */
  bias?: Float32Array;
  /** residual[M,N], present iff the epilogue has a residual add. */
  residual?: Float32Array;
}

/**
 * Y[M,N] = epilogue(X . W^T) accumulated in f64. Independent of every kernel: plain loops, no
 * blocking, no quantized arithmetic, so a kernel bug cannot hide in a shared helper.
 */
export function referenceMatmul(shape: MatmulShape, epilogue: Epilogue, inputs: MatmulReferenceInputs): Float64Array {
  return referenceMatmulWithTerms(shape, epilogue, inputs).y;
}

/**
 * `referenceMatmul`'s Y and, in the same pass, per output Y[m,n] the energy of the products its sum
 * adds up: terms = sum over k of (X[m,k] W[n,k])^2, in f64, before the epilogue. What a correct
 * kernel's error scales with (the rounding of int8 activations, the order of an f32 sum), where the
 * output itself may be near zero by cancellation: `compareOutputs` weighs each output by the
 * larger of the two (its `terms` option).
 */
export function referenceMatmulWithTerms(shape: MatmulShape, epilogue: Epilogue, inputs: MatmulReferenceInputs): { y: Float64Array; terms: Float64Array } {
  const { M, N, K } = shape;
  const { x, w, bias, residual } = inputs;
  const y = new Float64Array(M * N);
  const terms = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      let energy = 0;
      const xo = m * K;
      const wo = n * K;
      for (let k = 0; k < K; k++) {
        const p = x[xo + k]! * w[wo + k]!;
        acc += p;
        energy += p * p;
      }
      if (epilogue.bias) acc += bias![n]!;
      if (epilogue.activation === 'silu') acc = silu(acc);
      else if (epilogue.activation === 'gelu') acc = gelu(acc);
      if (epilogue.residual) acc += residual![m * N + n]!;
      y[m * N + n] = acc;
      terms[m * N + n] = energy;
    }
  }
  return { y, terms };
}
