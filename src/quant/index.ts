import type { WeightFormatName, WeightSpec } from '../ir/types.js';
import type { BlockCodec, WeightFormat } from './format.js';
import { Q4_0, Q8_0 } from './ggml.js';
import { F16, Q4, Q8 } from './kgen-formats.js';
import { Q35 } from './q35.js';

export * from './format.js';

/** Every weight format by name; adding a format is one file and one line here. */
export const FORMATS: Readonly<Record<WeightFormatName, WeightFormat>> = {
  q35: Q35,
  q4: Q4,
  q8: Q8,
  q4_0: Q4_0,
  q8_0: Q8_0,
  f16: F16,
};

export function codecOf(spec: WeightSpec): BlockCodec {
  return FORMATS[spec.format].codec(spec.groupSize);
}
