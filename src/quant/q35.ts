import { KgenError } from '../errors.js';
import { f16BitsToF32, f32ToF16Bits, F16_MAX } from '../numeric/half.js';
import type { BlockCodec, WeightFormat } from './format.js';
import { readScale } from './scalar-codes.js';

/**
 * q3.5: 3.5 bits per weight plus an f16 scale per group (3.75 bits/weight at group 64). Format
 * version 2 (bit planes); version 1 (7-byte units of 16 weights) is no longer written or read.
 *
 * Block = one group of G weights (G a multiple of 32): `{ f16 d; u8 units[]; }` (2 + 7*G/16 bytes;
 * 30 bytes for G = 64). The units are floor(G/64) units of 64 weights (28 bytes) and, when G % 64 is
 * 32, one unit of 32 weights (14 bytes) at the end. A unit of U weights holds P = U/2 pairs; pair p
 * is (weight p, weight p + P) of the unit and has a parity bit, a 3-bit A level and a 3-bit B level:
 *   nibble a = A level | parity << 3       the A lookup index (4 bits)
 *   b        = B level | parity << 3       the B lookup index (never stored whole)
 *   y        = B level ^ A level           (3 bits) what is stored of the B level
 * and is stored in three bit planes, one after the other:
 *   nibble plane  P/2 bytes  a
 *   low plane     P/4 bytes  y & 3
 *   high plane    P/8 bytes  y >> 2
 * A plane of f-bit fields is sliced by byte: with S = f*P/8 bytes, field p sits in byte p % S at
 * bits f * floor(p / S). So every plane unpacks with a broadcast, one per-lane shift and a mask, and
 * the B index is b = a ^ (low | high << 2): the XOR removes the A level and keeps the parity, so no
 * field needs moving or masking (docs/formats.md).
 * Decode: weight p     = f32(d) * Q35_LOOKUP_A[a]
 *         weight p + P = f32(d) * Q35_LOOKUP_B[a ^ y]
 * (computed as Math.fround(table * d); table * d is exact in f32 because d has an 11-bit
 * significand and the tables are 8-bit integers). The lookup tables are the level tables
 * Q35_TABLE_A/B reordered by parity: LOOKUP[parity << 3 | level] = TABLE[2 * level + parity].
 *
 * The parity bit is shared by the two weights of a pair: a pair's 128 code points are
 * {A[even]} x {B[even]} and {A[odd]} x {B[odd]} (TABLE index 2 * level + parity), a companded
 * checkerboard in 2-D instead of a 16 x 8 grid, so both weights of a pair get about 3.5 bits.
 *
 * Tables: fitted offline by `node dist/bench/quant-quality.js --fit` (bench/quant-quality.ts), not
 * taken from any other project: Lloyd iterations, each one encoding every training group with this
 * file's encoder (scale search included) and then moving each table entry to the least-squares value
 * sum(w*d)/sum(d*d) over the weights coded with it; training set 24576 groups of 64 weights, 2/3
 * N(0,1) and 1/3 Student-t(nu=4) scaled to unit variance, seed 1234; A and B tied (fitting them
 * separately converged to the same values within 0.3) and point-symmetric (T[15-k] = -T[k]), scaled
 * to a largest magnitude of 127; converged in ~20 iterations; then rounded to integers and polished
 * by integer coordinate descent (+-1 steps keeping the symmetry), which moved the ends to +-125.
 * The tables are strictly increasing in the index, so within a parity the levels are ordered by c4
 * (A) and c3 (B); no entry is -128, so |entry| <= 127 and sign tricks are safe.
 */
export const Q35_TABLE_A: readonly number[] = Object.freeze([
  -125, -89, -66, -48, -34, -22, -12, -4, 4, 12, 22, 34, 48, 66, 89, 125,
]);
export const Q35_TABLE_B: readonly number[] = Object.freeze([
  -125, -89, -66, -48, -34, -22, -12, -4, 4, 12, 22, 34, 48, 66, 89, 125,
]);

/** The largest |table value| (both tables): what bounds a kernel's sums of products of table values and activation codes. */
export const Q35_MAX_MAGNITUDE = Math.max(...Q35_TABLE_A.map(Math.abs), ...Q35_TABLE_B.map(Math.abs));

/** The layout `kgen pack` writes and kernels read; manifests state it (version 1: 7-byte units). */
export const Q35_FORMAT_VERSION = 2;

/** A table reordered for lookup by `parity << 3 | level` (TABLE index 2 * level + parity). */
function lookupOrder(table: readonly number[]): readonly number[] {
  return Object.freeze(Array.from({ length: 16 }, (_, i) => table[2 * (i & 7) + (i >> 3)]!));
}

/** What kernels index with the nibble a = A level | parity << 3 (a shuffle-sized table). */
export const Q35_LOOKUP_A: readonly number[] = lookupOrder(Q35_TABLE_A);
/** What kernels index with b = B level | parity << 3. */
export const Q35_LOOKUP_B: readonly number[] = lookupOrder(Q35_TABLE_B);

/** One unit of a q3.5 block: where its planes start in the block, its first weight, its pair count. */
export interface Q35Unit {
  /** Byte offset of the nibble plane from the start of the block (the scale is bytes 0-1). */
  readonly byteOffset: number;
  readonly firstWeight: number;
  /** P: pair p is (firstWeight + p, firstWeight + p + P); 32 for a 64-weight unit, 16 for 32. */
  readonly pairs: number;
}

/** The units of a group of G weights (G a multiple of 32): 64-weight units, then a 32 if G % 64 = 32. */
export function q35Units(G: number): Q35Unit[] {
  const units: Q35Unit[] = [];
  for (let w = 0, o = 2; w < G; ) {
    const size = G - w >= 64 ? 64 : 32;
    units.push({ byteOffset: o, firstWeight: w, pairs: size / 2 });
    w += size;
    o += (7 * size) / 16;
  }
  return units;
}

/** Where the low and high planes of a unit of P pairs start, in bytes from the unit's start (the nibble plane is at 0). */
export function q35PlaneStarts(P: number): { readonly low: number; readonly high: number } {
  return { low: P / 2, high: P / 2 + P / 4 };
}

/**
 * The byte layout of q3.5's two unit sizes as kernel templates print it: a 64-weight unit's
 * weights, pairs, bytes and plane starts, then the 32-weight unit's. Every backend's view spreads
 * this, so no template repeats 64, 32, 28, 16, 24, 14, 8 or 12.
 */
export function q35LayoutView(): Record<string, number> {
  const unit = q35PlaneStarts(32);
  const short = q35PlaneStarts(16);
  return {
    q35UnitWeights: 64,
    q35UnitPairs: 32,
    q35UnitBytes: (7 * 64) / 16,
    q35UnitLow: unit.low,
    q35UnitHigh: unit.high,
    q35ShortWeights: 32,
    q35ShortPairs: 16,
    q35ShortBytes: (7 * 32) / 16,
    q35ShortLow: short.low,
    q35ShortHigh: short.high,
  };
}

/** Byte and bit of field p of a byte-sliced plane of f-bit fields over P pairs (docs/formats.md). */
export function slicedAt(f: number, P: number, p: number): [byte: number, bit: number] {
  const S = (f * P) / 8;
  return [p % S, f * Math.floor(p / S)];
}

/**
 * Where each pair's three fields sit in a unit of P pairs: byte offsets from the unit's start (the
 * planes one after the other) and bit shifts. Computed once per unit size, so the codec's loops
 * only index.
 */
interface PlaneLayout {
  nByte: Uint8Array;
  nShift: Uint8Array;
  lByte: Uint8Array;
  lShift: Uint8Array;
  hByte: Uint8Array;
  hShift: Uint8Array;
}

const planeLayouts = new Map<number, PlaneLayout>();

function planeLayout(P: number): PlaneLayout {
  let l = planeLayouts.get(P);
  if (!l) {
    l = { nByte: new Uint8Array(P), nShift: new Uint8Array(P), lByte: new Uint8Array(P), lShift: new Uint8Array(P), hByte: new Uint8Array(P), hShift: new Uint8Array(P) };
    const starts = q35PlaneStarts(P);
    for (let p = 0; p < P; p++) {
      [l.nByte[p], l.nShift[p]] = slicedAt(4, P, p);
      const [lb, ls] = slicedAt(2, P, p);
      const [hb, hs] = slicedAt(1, P, p);
      l.lByte[p] = starts.low + lb;
      l.lShift[p] = ls;
      l.hByte[p] = starts.high + hb;
      l.hShift[p] = hs;
    }
    planeLayouts.set(P, l);
  }
  return l;
}

/**
 * The codes of pair p of a unit: `nibble` (A lookup index), `bLevel` (3-bit B level, the stored y
 * XOR the A level); the B lookup index is `nibble ^ y` = `bLevel | (nibble & 8)`.
 */
export function q35PairCodes(bytes: Uint8Array, blockOffset: number, unit: Q35Unit, p: number): { nibble: number; bLevel: number } {
  const l = planeLayout(unit.pairs);
  const base = blockOffset + unit.byteOffset;
  const nibble = (bytes[base + l.nByte[p]!]! >>> l.nShift[p]!) & 15;
  const y = ((bytes[base + l.lByte[p]!]! >>> l.lShift[p]!) & 3) | (((bytes[base + l.hByte[p]!]! >>> l.hShift[p]!) & 1) << 2);
  return { nibble, bLevel: y ^ (nibble & 7) };
}

const fr = Math.fround;

/** Candidate scales, as fractions of absmax / max|table|, tried before least-squares refinement. */
const SCALE_FRACTIONS = [1, 0.95, 0.9, 0.85, 0.8, 0.75];
/** Least-squares refinement steps d = sum(w*q)/sum(q*q) from the best candidate. */
const LS_STEPS = 3;

/**
 * Nearest-level search in one table, for both parities at once: the 8 levels of each parity sorted,
 * their codes, their midpoint thresholds (padded with +Infinity as a sentinel) and one bucket grid
 * over t shared by both parities, so a lookup is one multiply, one clamp and, per parity, one load
 * and (almost always) one compare.
 */
interface TableSearch {
  vals: [Float64Array, Float64Array]; // per parity: 8 sorted level values
  codes: [Uint8Array, Uint8Array]; // per parity: the code (c4 for A, c3 for B) of each sorted level
  th: [Float64Array, Float64Array]; // per parity: th[k] between vals[k] and vals[k+1]; th[7..8] = +Inf
  lut: [Uint8Array, Uint8Array]; // per parity: lut[b] = #{thresholds whose bucket is below b}
  lo: number;
  inv: number; // buckets per unit of t
  last: number; // number of buckets - 1
}

function tableSearch(table: Float64Array, codeOf: (k: number) => number): TableSearch {
  const parts = [0, 1].map((p) => {
    const idx = [0, 1, 2, 3, 4, 5, 6, 7].map((k) => 2 * k + p);
    idx.sort((a, b) => table[a]! - table[b]! || a - b);
    const vals = new Float64Array(idx.map((k) => table[k]!));
    const th = new Float64Array(9).fill(Infinity);
    for (let k = 0; k < 7; k++) th[k] = (vals[k]! + vals[k + 1]!) / 2;
    return { vals, codes: new Uint8Array(idx.map(codeOf)), th };
  });
  const all = [...parts[0]!.th.subarray(0, 7), ...parts[1]!.th.subarray(0, 7)].sort((a, b) => a - b);
  let minGap = Infinity;
  for (let j = 1; j < all.length; j++) if (all[j]! > all[j - 1]!) minGap = Math.min(minGap, all[j]! - all[j - 1]!);
  const span = all[all.length - 1]! - all[0]! || 1;
  // Buckets narrower than the smallest gap between thresholds, so a bucket holds at most one
  // threshold per parity (capped; equal thresholds share a bucket, which the lookup's loop handles).
  const nb = Math.min(4096, Math.ceil((2 * span) / Math.min(minGap, span)) + 4);
  const width = span / (nb - 4);
  const ts: TableSearch = {
    vals: [parts[0]!.vals, parts[1]!.vals],
    codes: [parts[0]!.codes, parts[1]!.codes],
    th: [parts[0]!.th, parts[1]!.th],
    lut: [new Uint8Array(nb), new Uint8Array(nb)],
    lo: all[0]! - 2 * width,
    inv: 1 / width,
    last: nb - 1,
  };
  // lut[b] counts the thresholds whose bucket, computed by the same function as the lookup, is
  // below b; so the lookup is exact whatever the float rounding of the bucket index.
  for (let p = 0; p < 2; p++) {
    for (let b = 0; b < nb; b++) {
      let n = 0;
      for (let j = 0; j < 7; j++) if (bucketOf(ts, ts.th[p]![j]!) < b) n++;
      ts.lut[p]![b] = n;
    }
  }
  return ts;
}

function bucketOf(s: TableSearch, t: number): number {
  const u = (t - s.lo) * s.inv;
  return u <= 0 ? 0 : u >= s.last ? s.last : u | 0;
}

function checkTable(name: string, t: readonly number[]): void {
  if (t.length !== 16 || !t.every((v) => Number.isFinite(v))) {
    throw new KgenError({ field: name, problem: `needs 16 finite values, got ${t.length}` });
  }
}

/**
 * Encoder: for each candidate scale (SCALE_FRACTIONS of absmax / max|table|, each rounded to f16,
 * then up to LS_STEPS least-squares steps d = sum(w*q)/sum(q*q), each rounded to f16 and kept while
 * the error drops) every pair is coded optimally: for parity p in {0,1} the nearest A level with
 * c4 & 1 == p and the nearest B level with index (c3 << 1) | p, then the parity with the smaller
 * squared error (ties to parity 0); the scale with the least squared error, measured with the
 * stored f16 scale, wins (ties to the earlier candidate).
 *
 * Idempotence: quantize(dequantize(bytes)) reproduces the bytes the quantizer wrote: a decoded group
 * has zero error at its own scale, which the candidates or the least-squares step reach exactly (the
 * codes are distinct lattice points, so no other code gives zero error at that scale). It is not a
 * theorem (a degenerate group can have a second zero-error scale that is found first), but no
 * counterexample showed up in ~10^6 random, sparse, constant and integer-valued groups; the test
 * suite checks it on seeded data.
 *
 * A q3.5 codec for group size G with the given tables. The format uses Q35_TABLE_A/B; other tables
 * (any finite values) are for the table fitting in bench/quant-quality.ts.
 */
export function makeQ35Codec(G: number, tableA: readonly number[] = Q35_TABLE_A, tableB: readonly number[] = Q35_TABLE_B): BlockCodec {
  if (!Number.isInteger(G) || G <= 0 || G % 32 !== 0) {
    throw new KgenError({ field: 'groupSize', problem: `q35 cannot use group size ${G}`, expected: 'a positive multiple of 32' });
  }
  checkTable('Q35_TABLE_A', tableA);
  checkTable('Q35_TABLE_B', tableB);
  const A = Float64Array.from(tableA);
  const B = Float64Array.from(tableB);
  const LA = lookupOrder(tableA);
  const LB = lookupOrder(tableB);
  // Level search per table; parity p = c4 & 1. A: code c4 = 2k + p; B: index (c3 << 1) | p, code c3.
  const sa = tableSearch(A, (k) => k);
  const sb = tableSearch(B, (k) => k >> 1);
  const [aLut0, aLut1] = sa.lut;
  const [aTh0, aTh1] = sa.th;
  const [aV0, aV1] = sa.vals;
  const [aC0, aC1] = sa.codes;
  const [bLut0, bLut1] = sb.lut;
  const [bTh0, bTh1] = sb.th;
  const [bV0, bV1] = sb.vals;
  const [bC0, bC1] = sb.codes;
  const aLo = sa.lo;
  const aInv = sa.inv;
  const aLast = sa.last;
  const bLo = sb.lo;
  const bInv = sb.inv;
  const bLast = sb.last;
  let tmax = 0;
  for (let k = 0; k < 16; k++) tmax = Math.max(tmax, Math.abs(A[k]!), Math.abs(B[k]!));
  const units = q35Units(G);
  const pairs = G / 2;
  const bytesPerBlock = 2 + (7 * G) / 16;
  // Codes of the pairs (unit by unit, pair p of a unit after the pairs of the units before it) for
  // the scale being scored and for the best so far: c4 = A TABLE index (2 * level + parity), c3 = B level.
  let curC4 = new Uint8Array(pairs);
  let curC3 = new Uint8Array(pairs);
  let bestC4 = new Uint8Array(pairs);
  let bestC3 = new Uint8Array(pairs);
  // Written by `score` for the least-squares refinement.
  let sumWQ = 0;
  let sumQQ = 0;

  /**
   * Encodes every pair optimally for scale d into curC4/curC3 (d = 0 codes the levels nearest 0)
   * and returns the squared error; also sets sumWQ = sum(w*q) and sumQQ = sum(q*q).
   */
  function score(src: Float32Array, so: number, d: number): number {
    const id = d > 0 ? 1 / d : 0;
    let err = 0;
    let swq = 0;
    let sqq = 0;
    let pi = 0;
    for (const unit of units) {
      const u = so + unit.firstWeight;
      const P = unit.pairs;
      for (let i = 0; i < P; i++, pi++) {
        const x = src[u + i]!;
        const y = src[u + i + P]!;
        const tx = x * id;
        const ty = y * id;
        const ux = (tx - aLo) * aInv;
        const bx = ux <= 0 ? 0 : ux >= aLast ? aLast : ux | 0;
        const uy = (ty - bLo) * bInv;
        const by = uy <= 0 ? 0 : uy >= bLast ? bLast : uy | 0;
        let kx0 = aLut0[bx]!;
        while (tx > aTh0[kx0]!) kx0++;
        let kx1 = aLut1[bx]!;
        while (tx > aTh1[kx1]!) kx1++;
        let ky0 = bLut0[by]!;
        while (ty > bTh0[ky0]!) ky0++;
        let ky1 = bLut1[by]!;
        while (ty > bTh1[ky1]!) ky1++;
        const qx0 = aV0[kx0]!;
        const qy0 = bV0[ky0]!;
        const qx1 = aV1[kx1]!;
        const qy1 = bV1[ky1]!;
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
          curC4[pi] = aC1[kx1]!;
          curC3[pi] = bC1[ky1]!;
        } else {
          err += e0;
          swq += x * qx0 + y * qy0;
          sqq += qx0 * qx0 + qy0 * qy0;
          curC4[pi] = aC0[kx0]!;
          curC3[pi] = bC0[ky0]!;
        }
      }
    }
    sumWQ = swq;
    sumQQ = sqq;
    return err;
  }

  function keepCurrent(): void {
    const t4 = bestC4;
    bestC4 = curC4;
    curC4 = t4;
    const t3 = bestC3;
    bestC3 = curC3;
    curC3 = t3;
  }

  /** f16 bits of a non-negative scale, clamped to the largest finite f16. */
  function scaleBits(v: number): number {
    return f32ToF16Bits(Math.min(v, F16_MAX));
  }

  return {
    weightsPerBlock: G,
    bytesPerBlock,
    scaleBytes: 2,
    quantizeBlock(src, so, dst, d0) {
      let amax = 0;
      for (let j = 0; j < G; j++) amax = Math.max(amax, Math.abs(src[so + j]!));
      const base = amax / tmax;
      // Scale 0 (all-zero group, or a group too small for f16): d = 0 and the codes nearest 0.
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
          keepCurrent();
        }
      }
      // Least-squares refinement of the scale for the best codes, kept while it helps.
      for (let step = 0; step < LS_STEPS && bestQQ > 0 && bestWQ > 0; step++) {
        const bits = scaleBits(bestWQ / bestQQ);
        if (bits === bestBits || bits === 0) break;
        const err = score(src, so, f16BitsToF32(bits));
        if (!(err < bestErr)) break;
        bestErr = err;
        bestBits = bits;
        bestWQ = sumWQ;
        bestQQ = sumQQ;
        keepCurrent();
      }
      if (bestErr === Infinity) {
        bestBits = 0;
        score(src, so, 0);
        keepCurrent();
      }
      dst[d0] = bestBits & 0xff;
      dst[d0 + 1] = bestBits >>> 8;
      let pi = 0;
      for (const unit of units) {
        const P = unit.pairs;
        const l = planeLayout(P);
        const base = d0 + unit.byteOffset;
        dst.fill(0, base, base + (7 * P) / 8);
        for (let p = 0; p < P; p++, pi++) {
          const c4 = bestC4[pi]!;
          const y = bestC3[pi]! ^ (c4 >> 1); // B level XOR A level
          dst[base + l.nByte[p]!] |= ((c4 >> 1) | ((c4 & 1) << 3)) << l.nShift[p]!;
          dst[base + l.lByte[p]!] |= (y & 3) << l.lShift[p]!;
          dst[base + l.hByte[p]!] |= (y >> 2) << l.hShift[p]!;
        }
      }
    },
    dequantizeBlock(src, so, dst, d0) {
      const d = readScale(src, so);
      for (const unit of units) {
        const P = unit.pairs;
        const l = planeLayout(P);
        const base = so + unit.byteOffset;
        const w = d0 + unit.firstWeight;
        for (let p = 0; p < P; p++) {
          const a = (src[base + l.nByte[p]!]! >>> l.nShift[p]!) & 15;
          const y = ((src[base + l.lByte[p]!]! >>> l.lShift[p]!) & 3) | (((src[base + l.hByte[p]!]! >>> l.hShift[p]!) & 1) << 2);
          dst[w + p] = fr(LA[a]! * d);
          dst[w + p + P] = fr(LB[a ^ y]! * d);
        }
      }
    },
  };
}

const codecs = new Map<number, BlockCodec>();

export const Q35: WeightFormat = {
  name: 'q35',
  version: Q35_FORMAT_VERSION,
  summary: 'q3.5: pairs of 4+3-bit codes with a shared parity bit in bit planes (int8 lookup tables), f16 scale per group (3.75 bits/weight at group 64); layout version 2',
  codec(groupSize) {
    const G = groupSize ?? 64;
    let c = codecs.get(G);
    if (!c) codecs.set(G, (c = makeQ35Codec(G)));
    return c;
  },
};
