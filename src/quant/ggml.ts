import type { BlockCodec, WeightFormat } from './format.js';
import { readScale, roundHalfAway, writeScale } from './scalar-codes.js';

/**
 * ggml's q4_0 and q8_0 blocks, byte for byte, so kernels run on weights taken from GGUF files.
 * The quantizers follow ggml's reference quantizers in f32 arithmetic (Math.fround), so the bytes
 * also match what llama.cpp writes for the same input.
 */
const fr = Math.fround;

/** q4_0: `{ f16 d; u8 qs[16]; }` per 32 weights; weight j<16 is the low nibble of qs[j], weight j+16
 * its high nibble; value = (nibble - 8) * d. */
export const Q4_0_CODEC: BlockCodec = {
  weightsPerBlock: 32,
  bytesPerBlock: 18,
  scaleBytes: 2,
  quantizeBlock(src, so, dst, d0) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = src[so + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d ? fr(1 / d) : 0;
    writeScale(dst, d0, d);
    for (let j = 0; j < 16; j++) {
      const x0 = fr(fr(src[so + j]! * id) + 8.5);
      const x1 = fr(fr(src[so + 16 + j]! * id) + 8.5);
      // (int8_t)x truncates toward zero; MIN(15, ...) as in ggml.
      const q0 = Math.min(15, Math.trunc(x0));
      const q1 = Math.min(15, Math.trunc(x1));
      dst[d0 + 2 + j] = q0 | (q1 << 4);
    }
  },
  dequantizeBlock(src, so, dst, d0) {
    const d = readScale(src, so);
    for (let j = 0; j < 16; j++) {
      const b = src[so + 2 + j]!;
      dst[d0 + j] = fr(((b & 0x0f) - 8) * d);
      dst[d0 + 16 + j] = fr(((b >>> 4) - 8) * d);
    }
  },
};

/** q8_0: `{ f16 d; i8 qs[32]; }` per 32 weights; value = qs[j] * d. */
export const Q8_0_CODEC: BlockCodec = {
  weightsPerBlock: 32,
  bytesPerBlock: 34,
  scaleBytes: 2,
  quantizeBlock(src, so, dst, d0) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src[so + j]!));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    writeScale(dst, d0, d);
    for (let j = 0; j < 32; j++) dst[d0 + 2 + j] = roundHalfAway(fr(src[so + j]! * id)) & 0xff;
  },
  dequantizeBlock(src, so, dst, d0) {
    const d = readScale(src, so);
    for (let j = 0; j < 32; j++) dst[d0 + j] = fr(((src[so + 2 + j]! << 24) >> 24) * d);
  },
};

export const Q4_0: WeightFormat = {
  name: 'q4_0',
  version: 1,
  summary: 'ggml q4_0: 32 weights in 18 bytes {f16 d; u8 qs[16]}, (nibble-8)*d (4.5 bits/weight)',
  codec: () => Q4_0_CODEC,
};

export const Q8_0: WeightFormat = {
  name: 'q8_0',
  version: 1,
  summary: 'ggml q8_0: 32 weights in 34 bytes {f16 d; i8 qs[32]}, qs*d (8.5 bits/weight)',
  codec: () => Q8_0_CODEC,
};
