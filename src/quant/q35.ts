import { KgenError } from '../errors.js';
import { f16BitsToF32, f32ToF16Bits, F16_MAX } from '../numeric/half.js';
import type { BlockCodec, WeightFormat } from './format.js';
import { readScale } from './scalar-codes.js';

/**
 * q3.5: 3.5 bits per weight plus an f16 scale per group (3.75 bits/weight at group 64).
 *
 * Block = one group of G weights (G a multiple of 16; the IR asks for multiples of 32):
 *   `{ f16 d; u8 units[G/16][7]; }`  (2 + 7*G/16 bytes; 30 bytes for G = 64)
 * A unit holds 16 consecutive weights as 8 pairs; pair i (0..7) is (weight i, weight i+8) and has a
 * 4-bit code c4[i] and a 3-bit code c3[i]:
 *   bytes 0..3  byte b = c4[2b] | c4[2b+1] << 4
 *   byte  4     (c3[0]&3) | (c3[1]&3) << 2 | (c3[2]&3) << 4 | (c3[3]&3) << 6
 *   byte  5     the same for pairs 4..7
 *   byte  6     bit i = (c3[i] >> 2) & 1
 * Decode: weight i   = f32(d) * A[c4[i]]
 *         weight i+8 = f32(d) * B[(c3[i] << 1) | (c4[i] & 1)]
 * (computed as Math.fround(table * d); table * d is exact in f32 because d has an 11-bit
 * significand and the tables are 8-bit integers).
 *
 * The low bit of c4 is shared as a parity bit: a pair's 128 code points are
 * {A[even]} x {B[even]} and {A[odd]} x {B[odd]}, a companded checkerboard in 2-D instead of a 16 x 8
 * grid, so both weights of a pair get about 3.5 bits.
 *
 * Tables: fitted offline by `node dist/bench/quant-quality.js --fit` (bench/quant-quality.ts):
 * Lloyd iterations (encode every training group with this file's encoder, scale search included,
 * then move each table entry to the least-squares value sum(w*d)/sum(d*d) over the weights coded
 * with it), on 24576 groups of 64 weights, 2/3 N(0,1) and 1/3 Student-t(nu=4) scaled to unit
 * variance, seed 1234; A and B tied into point-symmetric tables (T[15-k] = -T[k]) with the largest
 * magnitude 127, then rounded to integers and polished by an integer coordinate descent (+-1 steps
 * on the same training set). Both tables are strictly increasing, so c4 / (c3<<1|p) order the
 * levels, and never use -128.
 */
export const Q35_TABLE_A: readonly number[] = Object.freeze([
  -127, -99, -79, -62, -48, -35, -22, -10, 10, 22, 35, 48, 62, 79, 99, 127,
]);
export const Q35_TABLE_B: readonly number[] = Object.freeze([
  -127, -99, -79, -62, -48, -35, -22, -10, 10, 22, 35, 48, 62, 79, 99, 127,
]);

const fr = Math.fround;

/** Candidate scales, as fractions of absmax / max|table|, tried before least-squares refinement. */
const SCALE_FRACTIONS = [1, 0.95, 0.9, 0.85, 0.8, 0.75];
/** Least-squares refinement steps d = sum(w*q)/sum(q*q) from the best candidate. */
const LS_STEPS = 3;

/**
 * Nearest-level search for one 8-level subset (one table, one parity): sorted levels, their codes,
 * midpoint thresholds (th[8] = +Infinity as a sentinel) and a bucket table over t so a lookup is one
 * multiply, one load and (almost always) one compare.
 */
interface LevelSet {
  vals: Float64Array; // 8 sorted level values
  codes: Uint8Array; // the code (c4 for A, c3 for B) of each sorted level
  th: Float64Array; // 9 entries: th[k] between vals[k] and vals[k+1]; th[7] = th[8] = +Infinity
  lut: Uint8Array; // lut[b] = number of thresholds whose bucket is below b
  lo: number;
  inv: number; // buckets per unit of t
  last: number; // lut.length - 1
}

function levelSet(values: readonly number[], codes: readonly number[]): LevelSet {
  const order = values.map((_, k) => k).sort((a, b) => values[a]! - values[b]! || a - b);
  const vals = new Float64Array(order.map((k) => values[k]!));
  const th = new Float64Array(9).fill(Infinity);
  let minGap = Infinity;
  for (let k = 0; k < 7; k++) {
    th[k] = (vals[k]! + vals[k + 1]!) / 2;
    if (k > 0 && th[k]! > th[k - 1]!) minGap = Math.min(minGap, th[k]! - th[k - 1]!);
  }
  const span = th[6]! - th[0]!;
  // Buckets narrower than the smallest threshold gap (capped: equal thresholds share a bucket,
  // which the lookup's loop handles).
  const nb = Math.min(4096, Math.max(16, Math.ceil((2 * span) / Math.min(minGap, span || 1)) + 4));
  const width = (span || 1) / (nb - 4);
  const lo = th[0]! - 2 * width;
  const set: LevelSet = {
    vals,
    codes: new Uint8Array(order.map((k) => codes[k]!)),
    th,
    lut: new Uint8Array(nb),
    lo,
    inv: 1 / width,
    last: nb - 1,
  };
  // lut[b] = #{thresholds j : bucket(th[j]) < b}, with the same bucket function as the lookup, so
  // the lookup is exact whatever the float rounding of the bucket index.
  const bt = new Int32Array(7);
  for (let j = 0; j < 7; j++) bt[j] = bucketOf(set, th[j]!);
  for (let b = 0; b < nb; b++) {
    let n = 0;
    for (let j = 0; j < 7; j++) if (bt[j]! < b) n++;
    set.lut[b] = n;
  }
  return set;
}

function bucketOf(s: LevelSet, t: number): number {
  const u = (t - s.lo) * s.inv;
  return u <= 0 ? 0 : u >= s.last ? s.last : u | 0;
}

/** Index (into s.vals) of the level nearest to t; ties go to the lower level. */
function nearest(s: LevelSet, t: number): number {
  const u = (t - s.lo) * s.inv;
  let k = s.lut[u <= 0 ? 0 : u >= s.last ? s.last : u | 0]!;
  while (t > s.th[k]!) k++;
  return k;
}

function checkTable(name: string, t: readonly number[]): void {
  if (t.length !== 16 || !t.every((v) => Number.isFinite(v))) {
    throw new KgenError({ field: name, problem: `needs 16 finite values, got ${t.length}` });
  }
}

/**
 * A q3.5 codec for group size G with the given tables. The format uses Q35_TABLE_A/B; other tables
 * (any finite values) are for the table fitting in bench/quant-quality.ts.
 */
export function makeQ35Codec(G: number, tableA: readonly number[] = Q35_TABLE_A, tableB: readonly number[] = Q35_TABLE_B): BlockCodec {
  if (!Number.isInteger(G) || G <= 0 || G % 16 !== 0) {
    throw new KgenError({ field: 'groupSize', problem: `q35 cannot use group size ${G}`, expected: 'a positive multiple of 16' });
  }
  checkTable('Q35_TABLE_A', tableA);
  checkTable('Q35_TABLE_B', tableB);
  const A = Float64Array.from(tableA);
  const B = Float64Array.from(tableB);
  const idx8 = [0, 1, 2, 3, 4, 5, 6, 7];
  // Level sets per parity p: A levels with c4 & 1 == p (code c4), B levels (c3 << 1) | p (code c3).
  const a0 = levelSet(idx8.map((k) => A[2 * k]!), idx8.map((k) => 2 * k));
  const a1 = levelSet(idx8.map((k) => A[2 * k + 1]!), idx8.map((k) => 2 * k + 1));
  const b0 = levelSet(idx8.map((k) => B[2 * k]!), idx8);
  const b1 = levelSet(idx8.map((k) => B[2 * k + 1]!), idx8);
  let tmax = 0;
  for (let k = 0; k < 16; k++) tmax = Math.max(tmax, Math.abs(A[k]!), Math.abs(B[k]!));
  const units = G / 16;
  const bytesPerBlock = 2 + 7 * units;
  const c4 = new Uint8Array(8);
  const c3 = new Uint8Array(8);
  // Written by `score` for the least-squares refinement.
  let sumWQ = 0;
  let sumQQ = 0;

  /** Squared error of the best pair-wise encoding with scale d (> 0); also sets sumWQ/sumQQ. */
  function score(src: Float32Array, so: number, d: number): number {
    const id = 1 / d;
    let err = 0;
    let swq = 0;
    let sqq = 0;
    for (let u = so; u < so + G; u += 16) {
      for (let i = 0; i < 8; i++) {
        const x = src[u + i]!;
        const y = src[u + i + 8]!;
        const tx = x * id;
        const ty = y * id;
        const qx0 = a0.vals[nearest(a0, tx)]!;
        const qy0 = b0.vals[nearest(b0, ty)]!;
        const qx1 = a1.vals[nearest(a1, tx)]!;
        const qy1 = b1.vals[nearest(b1, ty)]!;
        const ex0 = x - d * qx0;
        const ey0 = y - d * qy0;
        const ex1 = x - d * qx1;
        const ey1 = y - d * qy1;
        const e0 = ex0 * ex0 + ey0 * ey0;
        const e1 = ex1 * ex1 + ey1 * ey1;
        if (e1 < e0) {
          err += e1;
          swq += x * qx1 + y * qy1;
          sqq += qx1 * qx1 + qy1 * qy1;
        } else {
          err += e0;
          swq += x * qx0 + y * qy0;
          sqq += qx0 * qx0 + qy0 * qy0;
        }
      }
    }
    sumWQ = swq;
    sumQQ = sqq;
    return err;
  }

  /** f16 bits of a positive scale, clamped to the largest finite f16. */
  function scaleBits(v: number): number {
    return f32ToF16Bits(Math.min(v, F16_MAX));
  }

  return {
    weightsPerBlock: G,
    bytesPerBlock,
    quantizeBlock(src, so, dst, d0) {
      let amax = 0;
      for (let j = 0; j < G; j++) amax = Math.max(amax, Math.abs(src[so + j]!));
      const base = amax / tmax;
      let bestBits = 0;
      let bestErr = Infinity;
      let bestWQ = 0;
      let bestQQ = 0;
      let tried0 = -1;
      let tried1 = -1;
      for (const f of SCALE_FRACTIONS) {
        const bits = scaleBits(base * f);
        if (bits === 0 || bits === tried0 || bits === tried1) continue;
        tried1 = tried0;
        tried0 = bits;
        const err = score(src, so, f16BitsToF32(bits));
        if (err < bestErr) {
          bestErr = err;
          bestBits = bits;
          bestWQ = sumWQ;
          bestQQ = sumQQ;
        }
      }
      for (let step = 0; step < LS_STEPS && bestQQ > 0 && bestWQ > 0; step++) {
        const bits = scaleBits(bestWQ / bestQQ);
        if (bits === bestBits || bits === 0) break;
        const err = score(src, so, f16BitsToF32(bits));
        if (!(err < bestErr)) break;
        bestErr = err;
        bestBits = bits;
        bestWQ = sumWQ;
        bestQQ = sumQQ;
      }
      // bestBits is 0 only when every candidate scale is 0 in f16 (an all-zero group, or one too
      // small for f16): then store d = 0 and the codes nearest 0.
      const d = f16BitsToF32(bestBits);
      const id = d > 0 ? 1 / d : 0;
      dst[d0] = bestBits & 0xff;
      dst[d0 + 1] = bestBits >>> 8;
      for (let u = 0; u < units; u++) {
        const s = so + 16 * u;
        for (let i = 0; i < 8; i++) {
          const x = src[s + i]!;
          const y = src[s + i + 8]!;
          const tx = x * id;
          const ty = y * id;
          const kx0 = nearest(a0, tx);
          const ky0 = nearest(b0, ty);
          const kx1 = nearest(a1, tx);
          const ky1 = nearest(b1, ty);
          // The same arithmetic and tie rule as `score`, so the chosen codes are the scored ones.
          const ex0 = x - d * a0.vals[kx0]!;
          const ey0 = y - d * b0.vals[ky0]!;
          const ex1 = x - d * a1.vals[kx1]!;
          const ey1 = y - d * b1.vals[ky1]!;
          if (ex1 * ex1 + ey1 * ey1 < ex0 * ex0 + ey0 * ey0) {
            c4[i] = a1.codes[kx1]!;
            c3[i] = b1.codes[ky1]!;
          } else {
            c4[i] = a0.codes[kx0]!;
            c3[i] = b0.codes[ky0]!;
          }
        }
        const o = d0 + 2 + 7 * u;
        dst[o] = c4[0]! | (c4[1]! << 4);
        dst[o + 1] = c4[2]! | (c4[3]! << 4);
        dst[o + 2] = c4[4]! | (c4[5]! << 4);
        dst[o + 3] = c4[6]! | (c4[7]! << 4);
        dst[o + 4] = (c3[0]! & 3) | ((c3[1]! & 3) << 2) | ((c3[2]! & 3) << 4) | ((c3[3]! & 3) << 6);
        dst[o + 5] = (c3[4]! & 3) | ((c3[5]! & 3) << 2) | ((c3[6]! & 3) << 4) | ((c3[7]! & 3) << 6);
        let hi = 0;
        for (let i = 0; i < 8; i++) hi |= (c3[i]! >> 2) << i;
        dst[o + 6] = hi;
      }
    },
    dequantizeBlock(src, so, dst, d0) {
      const d = readScale(src, so);
      for (let u = 0; u < units; u++) {
        const o = so + 2 + 7 * u;
        const lo = src[o + 4]! | (src[o + 5]! << 8);
        const hi = src[o + 6]!;
        const w = d0 + 16 * u;
        for (let i = 0; i < 8; i++) {
          const q4 = (src[o + (i >> 1)]! >>> ((i & 1) << 2)) & 15;
          const q3 = ((lo >>> (2 * i)) & 3) | (((hi >>> i) & 1) << 2);
          dst[w + i] = fr(A[q4]! * d);
          dst[w + i + 8] = fr(B[(q3 << 1) | (q4 & 1)]! * d);
        }
      }
    },
  };
}

const codecs = new Map<number, BlockCodec>();

export const Q35: WeightFormat = {
  name: 'q35',
  summary: 'q3.5: 8-pair units of 4+3-bit codes with a shared parity bit (int8 lookup tables), f16 scale per group (3.75 bits/weight at group 64)',
  codec(groupSize) {
    const G = groupSize ?? 64;
    let c = codecs.get(G);
    if (!c) codecs.set(G, (c = makeQ35Codec(G)));
    return c;
  },
};
