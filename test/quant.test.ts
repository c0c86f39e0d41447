import { describe, expect, it } from 'vitest';
import { pack } from '../src/api/pack.js';
import { KgenError } from '../src/errors.js';
import { f16BitsToF32, roundToF16 } from '../src/numeric/half.js';
import { asDtype } from '../src/ops/tensors.js';
import { Rng } from '../src/numeric/random.js';
import { Q4_0_CODEC, Q8_0_CODEC } from '../src/quant/ggml.js';
import {
  bitsPerWeight,
  dequantizeMatrix,
  FORMATS,
  quantizeMatrix,
  rowBytes,
  type BlockCodec,
} from '../src/quant/index.js';
import { makeQ35Codec, Q35, q35Units, Q35_LOOKUP_A, Q35_LOOKUP_B, Q35_TABLE_A, Q35_TABLE_B } from '../src/quant/q35.js';

const K = 4096;

function normal(n: number, seed: number, scale = 1): Float32Array {
  return new Rng(seed).fillNormal(new Float32Array(n), scale);
}

function studentT(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.studentT(4);
  return out;
}

function relRmse(w: Float32Array, q: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < w.length; i++) {
    num += (w[i]! - q[i]!) ** 2;
    den += w[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

function roundTrip(codec: BlockCodec, w: Float32Array, N: number, Kc: number): { bytes: Uint8Array; back: Float32Array } {
  const bytes = quantizeMatrix(codec, w, N, Kc);
  return { bytes, back: dequantizeMatrix(codec, bytes, N, Kc) };
}

function hex(s: string): Uint8Array {
  return Uint8Array.from(s.split(/\s+/).filter(Boolean).map((b) => parseInt(b, 16)));
}

function decodeBlock(codec: BlockCodec, bytes: Uint8Array): Float32Array {
  const out = new Float32Array(codec.weightsPerBlock);
  codec.dequantizeBlock(bytes, 0, out, 0);
  return out;
}

function encodeBlock(codec: BlockCodec, values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(codec.bytesPerBlock);
  codec.quantizeBlock(Float32Array.from(values), 0, out, 0);
  return out;
}

describe('tensor bytes', () => {
  it('f32 values that are a view of a larger buffer give exactly their own bytes', () => {
    const whole = Float32Array.from([1, 2, 3, 4, 5]);
    const t = asDtype(whole.subarray(1, 3), 'f32');
    expect(Array.from(new Float32Array(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength / 4))).toEqual([2, 3]);
  });
});

describe('sizes', () => {
  it('q3.5 takes 7 bytes per 16 weights plus 2 per group', () => {
    for (const G of [32, 64, 128, 256]) {
      const c = Q35.codec(G);
      expect(c.weightsPerBlock).toBe(G);
      expect(c.bytesPerBlock).toBe(2 + (7 * G) / 16);
      expect(rowBytes(c, 4096)).toBe((4096 / G) * (2 + (7 * G) / 16));
    }
    expect(Q35.codec(64).bytesPerBlock).toBe(30);
    expect(bitsPerWeight(Q35.codec(64))).toBe(3.75);
    expect(bitsPerWeight(Q35.codec(32))).toBe(4);
    expect(Q35.codec(undefined)).toBe(Q35.codec(64));
  });

  it('ggml blocks: q4_0 18 bytes / 32, q8_0 34 bytes / 32', () => {
    expect([FORMATS.q4_0.codec(undefined).weightsPerBlock, FORMATS.q4_0.codec(undefined).bytesPerBlock]).toEqual([32, 18]);
    expect([FORMATS.q8_0.codec(undefined).weightsPerBlock, FORMATS.q8_0.codec(undefined).bytesPerBlock]).toEqual([32, 34]);
  });

  it('q4, q8, f16', () => {
    for (const G of [32, 64, 128]) {
      expect(FORMATS.q4.codec(G).bytesPerBlock).toBe(2 + G / 2);
      expect(FORMATS.q8.codec(G).bytesPerBlock).toBe(2 + G);
    }
    expect(bitsPerWeight(FORMATS.f16.codec(undefined))).toBe(16);
  });

  it('q3.5 rejects group sizes that are not positive multiples of 32', () => {
    for (const G of [0, 8, 16, 24, 40, 48, -32, 33.5]) expect(() => Q35.codec(G)).toThrow(KgenError);
  });
});

describe('round trips', () => {
  const N = 16;
  const w = normal(N * 1024, 3);
  // Loose bounds: a format that decodes garbage or misplaces weights is far above these.
  const cases: [keyof typeof FORMATS, number | undefined, number][] = [
    ['q35', 32, 0.125],
    ['q35', 64, 0.13],
    ['q35', 128, 0.14],
    ['q35', 256, 0.15],
    ['q4', 32, 0.1],
    ['q4', 64, 0.11],
    ['q4', 128, 0.12],
    ['q8', 32, 0.007],
    ['q8', 64, 0.007],
    ['q8', 128, 0.008],
    ['q4_0', undefined, 0.1],
    ['q8_0', undefined, 0.007],
    ['f16', undefined, 0.0003],
  ];
  for (const [name, G, bound] of cases) {
    it(`${name} G=${G ?? 'default'}`, () => {
      const codec = FORMATS[name].codec(G);
      const { bytes, back } = roundTrip(codec, w, N, 1024);
      expect(bytes.length).toBe(N * rowBytes(codec, 1024));
      expect(relRmse(w, back)).toBeLessThan(bound);
      // Every weight decodes near its own input (catches swapped positions that a global RMSE
      // could hide only partly).
      let worst = 0;
      for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(w[i]! - back[i]!));
      expect(worst).toBeLessThan(name === 'f16' ? 0.01 : name.startsWith('q8') ? 0.05 : 1.5);
    });
  }

  it('f16 stores f16-representable values exactly, little-endian', () => {
    const codec = FORMATS.f16.codec(undefined);
    expect(Array.from(encodeBlock(codec, [1, -2]))).toEqual([0x00, 0x3c, 0x00, 0xc0]);
    const vals = Float32Array.from([0.5, -65504, 2 ** -24, 3.140625]);
    const { back } = roundTrip(codec, vals, 1, 4);
    expect(Array.from(back)).toEqual(Array.from(vals));
    expect(roundToF16(0.1)).not.toBe(0.1);
  });
});

describe('ggml q4_0', () => {
  it('decodes a hand-built block: (nibble - 8) * d, low nibbles first', () => {
    // d = 0.5 (f16 0x3800, little-endian 00 38); qs[j] = j | (15 - j) << 4.
    const bytes = new Uint8Array(18);
    bytes[1] = 0x38;
    for (let j = 0; j < 16; j++) bytes[2 + j] = j | ((15 - j) << 4);
    const v = decodeBlock(Q4_0_CODEC, bytes);
    for (let j = 0; j < 16; j++) {
      expect(v[j]).toBe((j - 8) * 0.5);
      expect(v[16 + j]).toBe((7 - j) * 0.5);
    }
    expect(v[0]).toBe(-4);
    expect(v[31]).toBe(-4);
    expect(v[15]).toBe(3.5);
  });

  it('quantizes like ggml: d = max / -8, q = min(15, trunc(x/d + 8.5))', () => {
    const x = new Array<number>(32).fill(0);
    // 4 and -4 tie for the largest magnitude; ggml keeps the first (strict <), so max = 4, d = -0.5.
    Object.assign(x, { 0: 4, 1: -4, 2: 0, 3: 1, 4: 0.25, 5: -0.25, 6: -1, 7: 2 });
    Object.assign(x, { 16: -3.9, 17: 3.9, 18: 0.3, 19: -2 });
    // x/d = -2x, + 8.5: 4 -> 0.5 -> 0; -4 -> 16.5 -> 16 -> 15; 0 -> 8; 1 -> 6.5 -> 6; 0.25 -> 8;
    // -0.25 -> 9; -1 -> 10; 2 -> 4; -3.9 -> 16.3 -> 15; 3.9 -> 0.7 -> 0; 0.3 -> 7.9 -> 7; -2 -> 12.
    const expected = hex('00 b8  f0 0f 78 c6 88 89 8a 84  88 88 88 88 88 88 88 88');
    const bytes = encodeBlock(Q4_0_CODEC, x);
    expect(Array.from(bytes)).toEqual(Array.from(expected));
    const v = decodeBlock(Q4_0_CODEC, bytes);
    expect(v[0]).toBe(4);
    expect(v[1]).toBe(-3.5); // code 15: -4 is out of reach with d = -0.5
    expect(v[3]).toBe(1);
    expect(v[17]).toBe(4);
  });
});

describe('ggml q8_0', () => {
  it('decodes a hand-built block: int8 * d', () => {
    const bytes = hex('00 3c  7f 81 01 ff 00 14 ec 80').slice(0, 10);
    const full = new Uint8Array(34);
    full.set(bytes);
    const v = decodeBlock(Q8_0_CODEC, full);
    expect(Array.from(v.subarray(0, 8))).toEqual([127, -127, 1, -1, 0, 20, -20, -128]);
  });

  it('quantizes like ggml: d = amax / 127, q = roundf(x / d)', () => {
    // amax = 63.5 so d = 0.5 exactly (f16 0x3800) and x / d = 2x.
    const x = new Array<number>(32).fill(0);
    Object.assign(x, { 0: 63.5, 1: -63.5, 2: 0.25, 3: -0.25, 4: 0.74, 5: 10, 6: -0.76, 31: 1.75 });
    // 2x: 127, -127, 0.5 -> 1 (halves away from 0), -0.5 -> -1, 1.48 -> 1, 20, -1.52 -> -2, 3.5 -> 4.
    const expected = new Uint8Array(34);
    expected.set(hex('00 38  7f 81 01 ff 01 14 fe'));
    expected[33] = 0x04;
    expect(Array.from(encodeBlock(Q8_0_CODEC, x))).toEqual(Array.from(expected));
  });
});

describe('q3.5 layout (version 2: bit planes)', () => {
  const A = Q35_TABLE_A;
  const B = Q35_TABLE_B;
  const LA = Q35_LOOKUP_A;
  const LB = Q35_LOOKUP_B;

  it('tables are 16 distinct increasing int8 values in [-127, 127]', () => {
    for (const T of [A, B]) {
      expect(T).toHaveLength(16);
      for (let k = 0; k < 16; k++) {
        expect(Number.isInteger(T[k])).toBe(true);
        expect(Math.abs(T[k]!)).toBeLessThanOrEqual(127);
        if (k > 0) expect(T[k]!).toBeGreaterThan(T[k - 1]!);
      }
    }
  });

  it('lookup tables are the level tables reordered by parity: L[t << 3 | l] = T[2l + t]', () => {
    expect(LA).toEqual([-125, -66, -34, -12, 4, 22, 48, 89, -89, -48, -22, -4, 12, 34, 66, 125]);
    for (let i = 0; i < 16; i++) expect(LB[i]).toBe(B[2 * (i & 7) + (i >> 3)]);
  });

  // The test vector of docs/formats.md (G = 32, one unit of 16 pairs), written out by hand there.
  const unit = hex('00 38  b3 2a 91 08 7f e6 5d c4  1b 39 1b 39  0a d4');
  const a = [3, 10, 1, 8, 15, 6, 13, 4, 11, 2, 9, 0, 7, 14, 5, 12];
  const y = [3, 1, 7, 1, 2, 6, 6, 2, 1, 7, 1, 3, 0, 4, 0, 4]; // stored: B level XOR A level
  const b3 = [0, 3, 6, 1, 5, 0, 3, 6, 2, 5, 0, 3, 7, 2, 5, 0]; // B levels

  it('decodes the documented test vector', () => {
    const v = decodeBlock(makeQ35Codec(32), unit);
    expect(Array.from(v)).toEqual([
      -6, -11, -33, -44.5, 62.5, 24, 17, 2, -2, -17, -24, -62.5, 44.5, 33, 11, 6,
      -62.5, -2, 24, -24, 17, -62.5, -2, 24, -11, 11, -44.5, -6, 44.5, -11, 11, -44.5,
    ]);
    for (let p = 0; p < 16; p++) {
      expect(b3[p]).toBe(y[p]! ^ (a[p]! & 7));
      expect(v[p]).toBe(LA[a[p]!]! * 0.5);
      expect(v[p + 16]).toBe(LB[b3[p]! | (a[p]! & 8)]! * 0.5);
      expect(v[p + 16]).toBe(LB[a[p]! ^ y[p]!]! * 0.5);
    }
  });

  it('every bit moves exactly the weights its plane names (byte-sliced planes, parity shared)', () => {
    const codec = makeQ35Codec(32);
    const base = decodeBlock(codec, unit);
    for (let byte = 2; byte < 16; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = unit.slice();
        flipped[byte] ^= 1 << bit;
        const v = decodeBlock(codec, flipped);
        const o = byte - 2;
        // Which pair the bit belongs to, and which of its codes, by the plane rule (S = f * 16 / 8).
        let p: number;
        const na = a.slice();
        const ny = y.slice();
        if (o < 8) {
          p = o + 8 * (bit >> 2);
          na[p] ^= 1 << (bit & 3);
        } else if (o < 12) {
          p = (o - 8) + 4 * (bit >> 1);
          ny[p] ^= 1 << (bit & 1);
        } else {
          p = (o - 12) + 2 * bit;
          ny[p] ^= 4;
        }
        for (let j = 0; j < 32; j++) {
          const q = j % 16;
          const want = j < 16 ? LA[na[q]!]! : LB[na[q]! ^ ny[q]!]!;
          expect(v[j]).toBe(want * 0.5);
          if (q !== p) expect(v[j]).toBe(base[j]);
        }
        // A nibble bit (parity or A level) moves both weights of its pair; a y bit only the B weight.
        expect(v[p + 16]).not.toBe(base[p + 16]);
        if (o < 8) expect(v[p]).not.toBe(base[p]);
      }
    }
  });

  it('units: a group of 96 is a 64-weight unit then a 32-weight unit; the 64-unit slices by 16, 8, 4', () => {
    expect(q35Units(64)).toEqual([{ byteOffset: 2, firstWeight: 0, pairs: 32 }]);
    expect(q35Units(96)).toEqual([
      { byteOffset: 2, firstWeight: 0, pairs: 32 },
      { byteOffset: 30, firstWeight: 64, pairs: 16 },
    ]);
    const codec = makeQ35Codec(96);
    const bytes = new Uint8Array(codec.bytesPerBlock);
    expect(bytes.length).toBe(44);
    bytes.set(unit.subarray(0, 2));
    bytes.set(unit.subarray(2), 30); // the 32-unit: decodes as the test vector
    // 64-unit: pair 21 gets a = 13 (byte 5 high nibble), low field 2 (byte 16 + 5, bits 4-5),
    // high bit 1 (byte 24 + 1, bit 5): y = 6, B index 13 ^ 6 = 11. The other pairs: a = 0, y = 0.
    bytes[2 + 5] = 13 << 4;
    bytes[2 + 16 + 5] = 2 << 4;
    bytes[2 + 24 + 1] = 1 << 5;
    const v = decodeBlock(codec, bytes);
    const one = decodeBlock(makeQ35Codec(32), unit);
    expect(Array.from(v.subarray(64))).toEqual(Array.from(one));
    for (let p = 0; p < 32; p++) {
      expect(v[p]).toBe((p === 21 ? LA[13]! : LA[0]!) * 0.5);
      expect(v[p + 32]).toBe((p === 21 ? LB[11]! : LB[0]!) * 0.5);
    }
  });

  it('the scale is a little-endian f16 widened to f32', () => {
    const b = unit.slice();
    b[0] = 0x55;
    b[1] = 0x35; // f16 0x3555 = 0.333251953125
    const d = f16BitsToF32(0x3555);
    const v = decodeBlock(makeQ35Codec(32), b);
    for (let p = 0; p < 16; p++) expect(v[p]).toBe(Math.fround(LA[a[p]!]! * d));
  });
});

describe('q3.5 quantizer', () => {
  const N = 64;
  const g = normal(N * K, 20240601);

  /** Squared error of the best code for each pair at scale d, by brute force over all 128 points. */
  function bruteForceError(w: Float32Array, off: number, G: number, d: number): number {
    let err = 0;
    for (const unit of q35Units(G)) {
      const u = off + unit.firstWeight;
      const P = unit.pairs;
      for (let i = 0; i < P; i++) {
        let best = Infinity;
        for (let c4 = 0; c4 < 16; c4++) {
          for (let c3 = 0; c3 < 8; c3++) {
            const e = (w[u + i]! - d * Q35_TABLE_A[c4]!) ** 2 + (w[u + i + P]! - d * Q35_TABLE_B[(c3 << 1) | (c4 & 1)]!) ** 2;
            best = Math.min(best, e);
          }
        }
        err += best;
      }
    }
    return err;
  }

  function blockError(w: Float32Array, off: number, back: Float32Array, G: number): number {
    let e = 0;
    for (let j = 0; j < G; j++) e += (w[off + j]! - back[off + j]!) ** 2;
    return e;
  }

  it('relative RMSE on N(0,1) stays at its measured level (0.1160 at G=64, 0.1098 at G=32)', () => {
    expect(relRmse(g, roundTrip(Q35.codec(64), g, N, K).back)).toBeLessThan(0.1175);
    expect(relRmse(g, roundTrip(Q35.codec(32), g, N, K).back)).toBeLessThan(0.1115);
  });

  it('relative RMSE on Student-t(nu=4) stays at its measured level (0.1337 at G=64)', () => {
    const t = studentT(16 * K, 20240602);
    expect(relRmse(t, roundTrip(Q35.codec(64), t, 16, K).back)).toBeLessThan(0.137);
  });

  it('beats q4 at G=64 on N(0,1) with fewer bits', () => {
    const q35 = relRmse(g, roundTrip(Q35.codec(64), g, N, K).back);
    const q4 = relRmse(g, roundTrip(FORMATS.q4.codec(64), g, N, K).back);
    expect(q35).toBeLessThan(q4 * 1.2);
    expect(bitsPerWeight(Q35.codec(64))).toBeLessThan(bitsPerWeight(FORMATS.q4.codec(64)));
  });

  it('never does worse than max-abs scaling with the same tables, and codes each pair optimally', () => {
    for (const G of [32, 64]) {
      const codec = Q35.codec(G);
      const w = normal(256 * G, 77 + G);
      const { bytes, back } = roundTrip(codec, w, 256, G);
      const tmax = Math.max(...Q35_TABLE_A.map(Math.abs), ...Q35_TABLE_B.map(Math.abs));
      for (let b = 0; b < 256; b++) {
        const off = b * G;
        let amax = 0;
        for (let j = 0; j < G; j++) amax = Math.max(amax, Math.abs(w[off + j]!));
        const mine = blockError(w, off, back, G);
        const plain = bruteForceError(w, off, G, roundToF16(amax / tmax));
        expect(mine).toBeLessThanOrEqual(plain * (1 + 1e-12));
        const d = f16BitsToF32(bytes[b * codec.bytesPerBlock]! | (bytes[b * codec.bytesPerBlock + 1]! << 8));
        expect(mine).toBeCloseTo(bruteForceError(w, off, G, d), 10);
      }
    }
  });

  it('is idempotent: quantize(dequantize(bytes)) == bytes', () => {
    for (const G of [32, 64, 128]) {
      const codec = Q35.codec(G);
      for (const w of [normal(8 * K, 5 + G), studentT(8 * K, 6 + G), normal(8 * K, 7 + G, 1e-3), normal(8 * K, 8 + G, 300)]) {
        const { bytes, back } = roundTrip(codec, w, 8, K);
        const again = quantizeMatrix(codec, back, 8, K);
        expect(Buffer.from(again).equals(Buffer.from(bytes))).toBe(true);
      }
    }
  });

  it('handles all-zero groups, sparse groups and a single spike', () => {
    const codec = Q35.codec(64);
    const w = new Float32Array(64 * 3);
    w[64 + 5] = 1;
    w[64 + 40] = -0.25;
    w[128 + 17] = 1000;
    for (let j = 128; j < 192; j++) if (j !== 128 + 17) w[j] = 0.001 * ((j % 7) - 3);
    const { bytes, back } = roundTrip(codec, w, 1, 192);
    expect(bytes[0]).toBe(0);
    expect(bytes[1]).toBe(0);
    for (let j = 0; j < 64; j++) expect(Math.abs(back[j]!)).toBe(0);
    // The tables have no zero level (the smallest are +-4/125 of the largest), so the scale search
    // shrinks d below absmax/125 to pull the 62 zeros closer: the spike gives a little.
    expect(Math.abs(back[64 + 5]! - 1)).toBeLessThan(0.1);
    expect(Math.abs(back[64 + 40]! + 0.25)).toBeLessThan(0.05);
    for (let j = 64; j < 128; j++) if (j !== 64 + 5 && j !== 64 + 40) expect(Math.abs(back[j]!)).toBeLessThan(0.04);
    // Same trade-off: 63 near-zero weights cost (4d)^2 each, so d settles below 1000/125.
    expect(Math.abs(back[128 + 17]! - 1000)).toBeLessThan(100);
    expect(Buffer.from(quantizeMatrix(codec, back, 1, 192)).equals(Buffer.from(bytes))).toBe(true);
  });

  it('accepts huge values by clamping the scale to the largest f16', () => {
    const codec = Q35.codec(32);
    const w = normal(32, 9, 1e7);
    const back = roundTrip(codec, w, 1, 32).back;
    for (const v of back) expect(Number.isFinite(v)).toBe(true);
  });
});

describe('weights past the f16 scale range', () => {
  // A weight of 1e6 is finite, so pack accepts it; the block's scale must not overflow f16.
  const huge = (format: string) => {
    const w = normal(64, 3);
    w[5] = 1e6;
    w[40] = -2e7;
    return { format, N: 1, K: 64, weights: w };
  };

  it('q4 and q8 clamp the scale to 65504 as q35 does (q4 used to store d = 0, q8 d = inf)', () => {
    for (const [format, levels] of [['q4', 7], ['q8', 127]] as const) {
      const { bytes } = pack(huge(format));
      const back = dequantizeMatrix(FORMATS[format].codec(64), bytes, 1, 64);
      for (const v of back) expect(Number.isFinite(v), format).toBe(true);
      expect(back[40], format).toBe(-levels * 65504);
      expect(back[5], format).toBe(Math.min(levels, Math.round(1e6 / 65504)) * 65504);
    }
  });

  it('pack refuses q4_0, q8_0 and f16 weights that would decode to infinity or NaN', () => {
    for (const format of ['q4_0', 'q8_0', 'f16']) {
      let err: unknown;
      try {
        pack(huge(format));
      } catch (e) {
        err = e;
      }
      expect(err, format).toBeInstanceOf(KgenError);
      expect((err as KgenError).field).toBe('--in');
      expect((err as KgenError).problem).toMatch(/non-finite/);
    }
    // Within range they pack as before.
    for (const format of ['q4_0', 'q8_0', 'f16']) expect(pack({ format, N: 1, K: 64, weights: normal(64, 4, 1000) }).bytes.length).toBeGreaterThan(0);
  });
});
