import { describe, expect, it } from 'vitest';
import { KgenError } from '../src/errors.js';
import { f16BitsToF32, roundToF16 } from '../src/numeric/half.js';
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
import { makeQ35Codec, Q35, Q35_TABLE_A, Q35_TABLE_B } from '../src/quant/q35.js';

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

  it('q3.5 rejects group sizes that are not positive multiples of 16', () => {
    for (const G of [0, 8, 24, 40, -16, 33.5]) expect(() => Q35.codec(G)).toThrow(KgenError);
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

describe('q3.5 layout', () => {
  const A = Q35_TABLE_A;
  const B = Q35_TABLE_B;

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

  // d = 0.5 (f16 0x3800); c4 = [0, 1, 2, 3, 14, 15, 8, 9], c3 = [0, 1, 2, 3, 4, 5, 6, 7].
  // bytes 0..3: c4 pairs low nibble first: 10 32 fe 98
  // byte 4: low 2 bits of c3[0..3] = 0,1,2,3 -> 0 | 1<<2 | 2<<4 | 3<<6 = 0xe4; byte 5 likewise 0xe4
  // byte 6: bit i = c3[i] >> 2 -> pairs 4..7 -> 0xf0
  const unit = hex('00 38  10 32 fe 98 e4 e4 f0');
  const c4 = [0, 1, 2, 3, 14, 15, 8, 9];
  const c3 = [0, 1, 2, 3, 4, 5, 6, 7];

  it('decodes a hand-built unit per the rule', () => {
    const v = decodeBlock(makeQ35Codec(16), unit);
    for (let i = 0; i < 8; i++) {
      expect(v[i]).toBe(A[c4[i]!]! * 0.5);
      expect(v[i + 8]).toBe(B[(c3[i]! << 1) | (c4[i]! & 1)]! * 0.5);
    }
    // The same, spelled out with B indices (c3 << 1) | parity: 0, 3, 4, 7, 8, 11, 12, 15.
    expect(Array.from(v)).toEqual(
      [A[0], A[1], A[2], A[3], A[14], A[15], A[8], A[9], B[0], B[3], B[4], B[7], B[8], B[11], B[12], B[15]].map(
        (t) => t! * 0.5,
      ),
    );
    // With the current tables, literally:
    expect(Array.from(v)).toEqual([
      -62.5, -44.5, -33, -24, 44.5, 62.5, 2, 6, -62.5, -24, -17, -2, 2, 17, 24, 62.5,
    ]);
  });

  it('the low bit of c4 is shared: flipping it moves both weights of the pair', () => {
    const codec = makeQ35Codec(16);
    const base = decodeBlock(codec, unit);
    for (let i = 0; i < 8; i++) {
      const b = unit.slice();
      b[2 + (i >> 1)] ^= 1 << ((i & 1) * 4); // bit 0 of c4[i]
      const v = decodeBlock(codec, b);
      for (let j = 0; j < 16; j++) {
        if (j === i) expect(v[j]).toBe(A[c4[i]! ^ 1]! * 0.5);
        else if (j === i + 8) expect(v[j]).toBe(B[((c3[i]! << 1) | (c4[i]! & 1)) ^ 1]! * 0.5);
        else expect(v[j]).toBe(base[j]);
      }
    }
  });

  it('c3 bit planes: bytes 4-5 hold the low 2 bits, byte 6 the high bit, and move only weight i+8', () => {
    const codec = makeQ35Codec(16);
    const base = decodeBlock(codec, unit);
    for (let i = 0; i < 8; i++) {
      for (const [byte, bit, indexBit] of [
        [4 + (i >> 2), 2 * (i & 3), 2], // c3 bit 0 -> B index bit 1
        [4 + (i >> 2), 2 * (i & 3) + 1, 4], // c3 bit 1 -> B index bit 2
        [6, i, 8], // c3 bit 2 -> B index bit 3
      ] as const) {
        const b = unit.slice();
        b[2 + byte] ^= 1 << bit;
        const v = decodeBlock(codec, b);
        for (let j = 0; j < 16; j++) {
          if (j === i + 8) expect(v[j]).toBe(B[((c3[i]! << 1) | (c4[i]! & 1)) ^ indexBit]! * 0.5);
          else expect(v[j]).toBe(base[j]);
        }
      }
    }
    // The high nibble of c4 bytes belongs to the odd pair: flipping bit 3 of c4[1] moves weight 1.
    const b = unit.slice();
    b[2] ^= 0x80;
    expect(decodeBlock(codec, b)[1]).toBe(A[1 ^ 8]! * 0.5);
  });

  it('units follow the scale in order: unit u of a group at byte 2 + 7u', () => {
    const codec = makeQ35Codec(64);
    const bytes = new Uint8Array(30);
    bytes.set(unit.subarray(0, 2));
    for (let u = 0; u < 4; u++) bytes.set(unit.subarray(2), 2 + 7 * u);
    bytes[2 + 7 * 3] = 0x77; // unit 3: c4[0] = c4[1] = 7
    const v = decodeBlock(codec, bytes);
    const one = decodeBlock(makeQ35Codec(16), unit);
    for (let u = 0; u < 3; u++) expect(Array.from(v.subarray(16 * u, 16 * u + 16))).toEqual(Array.from(one));
    expect(v[48]).toBe(A[7]! * 0.5);
    expect(v[49]).toBe(A[7]! * 0.5);
    expect(v[56]).toBe(B[1]! * 0.5); // c3 = 0, parity 1
    expect(v[57]).toBe(B[3]! * 0.5); // c3 = 1, parity 1
  });

  it('the scale is a little-endian f16 widened to f32', () => {
    const b = unit.slice();
    b[0] = 0x55;
    b[1] = 0x35; // f16 0x3555 = 0.333251953125
    const d = f16BitsToF32(0x3555);
    const v = decodeBlock(makeQ35Codec(16), b);
    for (let i = 0; i < 8; i++) expect(v[i]).toBe(Math.fround(A[c4[i]!]! * d));
  });
});

describe('q3.5 quantizer', () => {
  const N = 64;
  const g = normal(N * K, 20240601);

  /** Squared error of the best code for each pair at scale d, by brute force over all 128 points. */
  function bruteForceError(w: Float32Array, off: number, G: number, d: number): number {
    let err = 0;
    for (let u = off; u < off + G; u += 16) {
      for (let i = 0; i < 8; i++) {
        let best = Infinity;
        for (let c4 = 0; c4 < 16; c4++) {
          for (let c3 = 0; c3 < 8; c3++) {
            const e = (w[u + i]! - d * Q35_TABLE_A[c4]!) ** 2 + (w[u + i + 8]! - d * Q35_TABLE_B[(c3 << 1) | (c4 & 1)]!) ** 2;
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
