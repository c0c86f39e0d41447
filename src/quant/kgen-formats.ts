import { F16_MAX, f16BitsToF32, f32ToF16Bits } from '../numeric/half.js';
import type { BlockCodec, WeightFormat } from './format.js';
import { absMax, readScale, roundHalfAway, writeScale } from './scalar-codes.js';

const fr = Math.fround;

/** Candidate scales as fractions of absmax/levels: a small error-minimising search. */
const SCALE_SHRINK = [1, 0.97, 0.94, 0.91, 0.88, 0.85, 0.82, 0.79];

/**
 * q4: symmetric 4-bit. Block = one group of G weights: `{ f16 d; u8 qs[G/2]; }`. Within each run of
 * 32 weights (16 bytes), weight j<16 is the low nibble of byte j and weight j+16 its high nibble
 * (the q4_0 arrangement, so one SIMD unpack serves both). value = (nibble - 8) * d with nibbles
 * 1..15 (symmetric: -7..7).
 */
function q4Codec(G: number): BlockCodec {
  const bytes = 2 + G / 2;
  const codes = new Int8Array(G);
  return {
    weightsPerBlock: G,
    bytesPerBlock: bytes,
    scaleBytes: 2,
    quantizeBlock(src, so, dst, d0) {
      const amax = absMax(src, so, G);
      let best = Infinity;
      let bestBits = 0;
      for (const shrink of SCALE_SHRINK) {
        // A scale past f16's range is clamped (as q3.5's), never stored as infinity.
        const bits = f32ToF16Bits(Math.min((amax / 7) * shrink, F16_MAX));
        const d = f16BitsToF32(bits);
        const id = d ? 1 / d : 0;
        let err = 0;
        for (let j = 0; j < G; j++) {
          const q = Math.max(-7, Math.min(7, roundHalfAway(src[so + j]! * id)));
          const e = src[so + j]! - q * d;
          err += e * e;
        }
        if (err < best) {
          best = err;
          bestBits = bits;
        }
      }
      dst[d0] = bestBits & 0xff;
      dst[d0 + 1] = bestBits >>> 8;
      const d = f16BitsToF32(bestBits);
      const id = d ? 1 / d : 0;
      for (let j = 0; j < G; j++) codes[j] = Math.max(-7, Math.min(7, roundHalfAway(src[so + j]! * id)));
      for (let c = 0; c < G; c += 32) {
        for (let j = 0; j < 16; j++) {
          dst[d0 + 2 + c / 2 + j] = (codes[c + j]! + 8) | ((codes[c + 16 + j]! + 8) << 4);
        }
      }
    },
    dequantizeBlock(src, so, dst, d0) {
      const d = readScale(src, so);
      for (let c = 0; c < G; c += 32) {
        for (let j = 0; j < 16; j++) {
          const b = src[so + 2 + c / 2 + j]!;
          dst[d0 + c + j] = fr(((b & 0x0f) - 8) * d);
          dst[d0 + c + 16 + j] = fr(((b >>> 4) - 8) * d);
        }
      }
    },
  };
}

/** q8: `{ f16 d; i8 qs[G]; }` per group, value = qs[j] * d, d = absmax / 127. */
function q8Codec(G: number): BlockCodec {
  return {
    weightsPerBlock: G,
    bytesPerBlock: 2 + G,
    scaleBytes: 2,
    quantizeBlock(src, so, dst, d0) {
      const d = writeScale(dst, d0, Math.min(absMax(src, so, G) / 127, F16_MAX));
      const id = d ? 1 / d : 0;
      for (let j = 0; j < G; j++) {
        dst[d0 + 2 + j] = Math.max(-127, Math.min(127, roundHalfAway(src[so + j]! * id))) & 0xff;
      }
    },
    dequantizeBlock(src, so, dst, d0) {
      const d = readScale(src, so);
      for (let j = 0; j < G; j++) dst[d0 + j] = fr(((src[so + 2 + j]! << 24) >> 24) * d);
    },
  };
}

/** f16 weights: two little-endian bytes each, no scales. A block is 2 weights (K must be even). */
const F16_CODEC: BlockCodec = {
  weightsPerBlock: 2,
  bytesPerBlock: 4,
  scaleBytes: 0,
  quantizeBlock(src, so, dst, d0) {
    writeScale(dst, d0, src[so]!);
    writeScale(dst, d0 + 2, src[so + 1]!);
  },
  dequantizeBlock(src, so, dst, d0) {
    dst[d0] = readScale(src, so);
    dst[d0 + 1] = readScale(src, so + 2);
  },
};

function cached(make: (g: number) => BlockCodec): (g: number | undefined) => BlockCodec {
  const made = new Map<number, BlockCodec>();
  return (g) => {
    const size = g ?? 64;
    let c = made.get(size);
    if (!c) made.set(size, (c = make(size)));
    return c;
  };
}

export const Q4: WeightFormat = {
  name: 'q4',
  version: 1,
  summary: 'symmetric 4-bit, f16 scale per group (4.25 bits/weight at group 64)',
  codec: cached(q4Codec),
};

export const Q8: WeightFormat = {
  name: 'q8',
  version: 1,
  summary: 'int8, f16 scale per group (8.25 bits/weight at group 64)',
  codec: cached(q8Codec),
};

export const F16: WeightFormat = {
  name: 'f16',
  version: 1,
  summary: 'IEEE f16 weights (16 bits/weight)',
  codec: () => F16_CODEC,
};
