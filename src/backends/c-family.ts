import type { EpilogueActivation, WeightFormatName } from '../ir/types.js';

/** How the C-family backends (C, CUDA) print the same things: format names and activations. */

export const FORMAT_NAMES: Record<WeightFormatName, string> = {
  q35: 'q3.5', q4: 'q4', q8: 'q8', q4_0: 'ggml q4_0', q8_0: 'ggml q8_0', f16: 'f16',
};

/** Each epilogue activation as a C expression of the float `v` (GELU in its tanh form, as the reference). */
export const ACTIVATION_EXPR: Record<EpilogueActivation, string> = {
  none: 'v',
  silu: 'v / (1.0f + expf(-v))',
  gelu: '0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)))',
};
