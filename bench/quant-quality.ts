/**
 * Quantization quality of the weight formats: relative RMSE sqrt(sum (w - w^)^2 / sum w^2) on
 * seeded N(0,1) and Student-t(nu=4) matrices, with bits/weight.
 *
 *   node dist/bench/quant-quality.js           table
 *   node dist/bench/quant-quality.js --json    one JSON object per row
 *   node dist/bench/quant-quality.js --speed   also time q3.5 quantization of a 4096 x 14336 matrix
 *   node dist/bench/quant-quality.js --fit     refit the q3.5 tables (prints them; paste into
 *                                              src/quant/q35.ts)
 * Options: --rows N (rows of 4096 weights per data set, default 256 = 1,048,576 weights),
 *          --seed S (default 20240601).
 * Fit options: --iters (40), --groups (24576 training groups of 64), --fit-seed (1234),
 *          --t-fraction (1/3 of the groups Student-t), --polish (2 integer passes), --untied (fit A
 *          and B separately instead of A = B).
 */
import { performance } from 'node:perf_hooks';
import { f16BitsToF32, f32ToF16Bits } from '../src/numeric/half.js';
import { Rng } from '../src/numeric/random.js';
import { bitsPerWeight, dequantizeMatrix, FORMATS, quantizeMatrix, type BlockCodec } from '../src/quant/index.js';
import { makeQ35Codec, q35PairCodes, q35Units, Q35_TABLE_A, Q35_TABLE_B, type Q35Unit } from '../src/quant/q35.js';
import { readScale, roundHalfAway } from '../src/quant/scalar-codes.js';
import { benchArgs, log } from './common.js';

const K = 4096;

const USAGE = `  node dist/bench/quant-quality.js           table (--json: one JSON object per row)
  node dist/bench/quant-quality.js --speed   also time q3.5 quantization of a 4096 x 14336 matrix
  node dist/bench/quant-quality.js --fit     refit the q3.5 tables
Options: --rows 256   --seed 20240601
Fit options: --iters 40   --groups 24576   --fit-seed 1234   --t-fraction 0.333   --polish 2   --untied`;
const args = benchArgs(process.argv.slice(2), {
  flags: ['--json', '--speed', '--fit', '--untied'],
  options: ['--rows', '--seed', '--iters', '--groups', '--fit-seed', '--t-fraction', '--polish'],
  usage: USAGE,
});

/** A numeric option; a value that is not a number exits with a message (status 2). */
function argValue(name: string, fallback: number): number {
  const raw = args.opt(name, '');
  if (raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v)) {
    log(`${name} needs a number, got '${raw}'`);
    process.exit(2);
  }
  return v;
}

export function normalData(n: number, seed: number): Float32Array {
  return new Rng(seed).fillNormal(new Float32Array(n));
}

export function studentTData(n: number, seed: number, nu = 4, scale = 1): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.studentT(nu) * scale;
  return out;
}

export function relRmse(w: Float32Array, q: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < w.length; i++) {
    const e = w[i]! - q[i]!;
    num += e * e;
    den += w[i]! * w[i]!;
  }
  return Math.sqrt(num / den);
}

/**
 * Comparison only (not a kgen format): plain symmetric 3-bit, `{ f16 d; 3-bit codes packed LSB
 * first }` per 64 weights, d = absmax / 3, q = clamp(round(w/d), -3, 3), value = q * d.
 */
function plain3Codec(G = 64): BlockCodec {
  return {
    weightsPerBlock: G,
    bytesPerBlock: 2 + (3 * G) / 8,
    scaleBytes: 2,
    quantizeBlock(src, so, dst, d0) {
      let amax = 0;
      for (let j = 0; j < G; j++) amax = Math.max(amax, Math.abs(src[so + j]!));
      const bits = f32ToF16Bits(amax / 3);
      dst[d0] = bits & 0xff;
      dst[d0 + 1] = bits >>> 8;
      const d = f16BitsToF32(bits);
      const id = d ? 1 / d : 0;
      dst.fill(0, d0 + 2, d0 + 2 + (3 * G) / 8);
      for (let j = 0; j < G; j++) {
        const c = Math.max(-3, Math.min(3, roundHalfAway(src[so + j]! * id))) + 3;
        const bit = 3 * j;
        dst[d0 + 2 + (bit >> 3)] |= (c << (bit & 7)) & 0xff;
        if ((bit & 7) > 5) dst[d0 + 3 + (bit >> 3)] |= c >> (8 - (bit & 7));
      }
    },
    dequantizeBlock(src, so, dst, d0) {
      const d = readScale(src, so);
      for (let j = 0; j < G; j++) {
        const bit = 3 * j;
        const word = src[so + 2 + (bit >> 3)]! | ((src[so + 3 + (bit >> 3)] ?? 0) << 8);
        dst[d0 + j] = Math.fround((((word >> (bit & 7)) & 7) - 3) * d);
      }
    },
  };
}

interface Row {
  format: string;
  groupSize: number;
  bitsPerWeight: number;
  relRmseNormal: number;
  relRmseStudentT4: number;
}

function measure(name: string, G: number, codec: BlockCodec, sets: Float32Array[]): Row {
  const errs = sets.map((w) => {
    const N = w.length / K;
    return relRmse(w, dequantizeMatrix(codec, quantizeMatrix(codec, w, N, K), N, K));
  });
  return { format: name, groupSize: G, bitsPerWeight: bitsPerWeight(codec), relRmseNormal: errs[0]!, relRmseStudentT4: errs[1]! };
}

function qualityTable(rows: number, seed: number, json: boolean): void {
  const n = rows * K;
  const sets = [normalData(n, seed), studentTData(n, seed + 1)];
  const cases: [string, number, BlockCodec][] = [
    ['q35', 64, FORMATS.q35.codec(64)],
    ['q35', 32, FORMATS.q35.codec(32)],
    ['q4', 64, FORMATS.q4.codec(64)],
    ['q4', 32, FORMATS.q4.codec(32)],
    ['q8', 64, FORMATS.q8.codec(64)],
    ['q4_0', 32, FORMATS.q4_0.codec(undefined)],
    ['q8_0', 32, FORMATS.q8_0.codec(undefined)],
    ['plain3 (comparison)', 64, plain3Codec(64)],
  ];
  if (!json) {
    console.log(`relative RMSE, ${n} weights per data set (K = ${K}), seed ${seed}`);
    console.log('format               group  bits/w   N(0,1)   t(nu=4)');
  }
  for (const [name, G, codec] of cases) {
    const r = measure(name, G, codec, sets);
    if (json) console.log(JSON.stringify(r));
    else {
      console.log(
        `${name.padEnd(20)} ${String(G).padStart(5)}  ${r.bitsPerWeight.toFixed(3).padStart(6)}  ${r.relRmseNormal.toFixed(4)}   ${r.relRmseStudentT4.toFixed(4)}`,
      );
    }
  }
}

function speed(): void {
  const N = 4096;
  const KK = 14336;
  const w = normalData(N * KK, 7);
  const codec = FORMATS.q35.codec(64);
  const t0 = performance.now();
  quantizeMatrix(codec, w, N, KK);
  const s = (performance.now() - t0) / 1000;
  console.log(`q35 G=64 quantize ${N} x ${KK}: ${s.toFixed(2)} s (${((N * KK) / s / 1e6).toFixed(1)} M weights/s)`);
}

// ---------------------------------------------------------------------------------------------
// Table fitting (--fit)

const FIT_G = 64;

/** Training mix: 2/3 N(0,1) groups, 1/3 Student-t(nu=4) groups scaled to unit variance. */
function trainingSet(groups: number, seed: number, tFraction = 1 / 3): Float32Array {
  const nT = Math.floor(groups * tFraction);
  const g = normalData((groups - nT) * FIT_G, seed);
  const t = studentTData(nT * FIT_G, seed + 1, 4, Math.SQRT1_2);
  const out = new Float32Array(groups * FIT_G);
  out.set(g, 0);
  out.set(t, g.length);
  return out;
}

interface Decoded {
  d: number;
  c4: number;
  bIndex: number;
}

/** The codes of pair p of a unit in a q3.5 block, as TABLE indices (2 * level + parity). */
function pairCodes(bytes: Uint8Array, block: number, unit: Q35Unit, p: number, out: Decoded): void {
  out.d = readScale(bytes, block);
  const { nibble, bLevel } = q35PairCodes(bytes, block, unit, p);
  const parity = nibble >> 3;
  out.c4 = ((nibble & 7) << 1) | parity;
  out.bIndex = (bLevel << 1) | parity;
}

function sse(A: readonly number[], B: readonly number[], data: Float32Array): number {
  const codec = makeQ35Codec(FIT_G, A, B);
  const N = data.length / FIT_G;
  const q = dequantizeMatrix(codec, quantizeMatrix(codec, data, N, FIT_G), N, FIT_G);
  let s = 0;
  for (let i = 0; i < data.length; i++) s += (data[i]! - q[i]!) ** 2;
  return s;
}

/** Ties the tables: A = B, point-symmetric (T[15-k] = -T[k]), largest magnitude 127. */
function tie(A: number[], B: number[], tied: boolean): [number[], number[]] {
  const sym = (T: number[]) => T.map((v, k) => (v - T[15 - k]!) / 2);
  let a = sym(A);
  let b = sym(B);
  if (tied) a = b = a.map((v, k) => (v + b[k]!) / 2);
  const m = Math.max(...a.map(Math.abs), ...b.map(Math.abs));
  return [a.map((v) => (v * 127) / m), b.map((v) => (v * 127) / m)];
}

function fit(): void {
  const tied = !args.flag('--untied');
  const iters = argValue('--iters', 40);
  const data = trainingSet(argValue('--groups', 24576), argValue('--fit-seed', 1234), argValue('--t-fraction', 1 / 3));
  const groups = data.length / FIT_G;
  const den = data.reduce((s, v) => s + v * v, 0);
  // Start: 16 uniform levels, interleaved parities.
  let A = Array.from({ length: 16 }, (_, k) => (127 * (2 * k - 15)) / 15);
  let B = A.slice();
  const dec: Decoded = { d: 0, c4: 0, bIndex: 0 };
  const units = q35Units(FIT_G);
  for (let it = 0; it < iters; it++) {
    const codec = makeQ35Codec(FIT_G, A, B);
    const bytes = quantizeMatrix(codec, data, groups, FIT_G);
    const nA = new Float64Array(16);
    const dA = new Float64Array(16);
    const nB = new Float64Array(16);
    const dB = new Float64Array(16);
    for (let g = 0; g < groups; g++) {
      const block = g * codec.bytesPerBlock;
      for (const unit of units) {
        for (let i = 0; i < unit.pairs; i++) {
          pairCodes(bytes, block, unit, i, dec);
          const x = data[g * FIT_G + unit.firstWeight + i]!;
          const y = data[g * FIT_G + unit.firstWeight + i + unit.pairs]!;
          nA[dec.c4] += x * dec.d;
          dA[dec.c4] += dec.d * dec.d;
          nB[dec.bIndex] += y * dec.d;
          dB[dec.bIndex] += dec.d * dec.d;
        }
      }
    }
    A = A.map((v, k) => (dA[k]! > 0 ? nA[k]! / dA[k]! : v));
    B = B.map((v, k) => (dB[k]! > 0 ? nB[k]! / dB[k]! : v));
    [A, B] = tie(A, B, tied);
    if (it % 5 === 4 || it === iters - 1) {
      console.error(`iter ${it + 1}: train rel RMSE ${Math.sqrt(sse(A, B, data) / den).toFixed(5)}`);
    }
  }
  console.error(`float A: ${A.map((v) => v.toFixed(2)).join(', ')}`);
  console.error(`float B: ${B.map((v) => v.toFixed(2)).join(', ')}`);
  // Round, then polish the integers by coordinate descent (keeping ties and symmetry).
  let iA = A.map(Math.round);
  let iB = B.map(Math.round);
  let best = sse(iA, iB, data);
  console.error(`rounded: train rel RMSE ${Math.sqrt(best / den).toFixed(5)}`);
  const half = tied ? [0] : [0, 1];
  for (let pass = 0; pass < argValue('--polish', 2); pass++) {
    let improved = false;
    for (const which of half) {
      for (let k = 8; k < 16; k++) {
        for (const step of [1, -1]) {
          for (;;) {
            const T = (which === 0 ? iA : iB).slice();
            T[k] = T[k]! + step;
            T[15 - k] = -T[k]!;
            if (Math.abs(T[k]!) > 127 || (k > 8 && T[k]! <= T[k - 1]!) || (k < 15 && T[k]! >= T[k + 1]!) || T[k]! <= 0) break;
            const nA2 = which === 0 || tied ? T : iA;
            const nB2 = which === 1 || tied ? T : iB;
            const e = sse(nA2, nB2, data);
            if (!(e < best)) break;
            best = e;
            iA = nA2;
            iB = nB2;
            improved = true;
          }
        }
      }
    }
    console.error(`polish pass ${pass + 1}: train rel RMSE ${Math.sqrt(best / den).toFixed(5)}`);
    if (!improved) break;
  }
  console.log(`export const Q35_TABLE_A = [${iA.join(', ')}];`);
  console.log(`export const Q35_TABLE_B = [${iB.join(', ')}];`);
  const held = trainingSet(24576, 99);
  const heldDen = held.reduce((s, v) => s + v * v, 0);
  console.log(`held-out rel RMSE: fitted ${Math.sqrt(sse(iA, iB, held) / heldDen).toFixed(5)}, current ${Math.sqrt(sse(Q35_TABLE_A, Q35_TABLE_B, held) / heldDen).toFixed(5)}`);
}

function main(): void {
  if (args.flag('--fit')) {
    fit();
    return;
  }
  qualityTable(argValue('--rows', 256), argValue('--seed', 20240601), args.flag('--json'));
  if (args.flag('--speed')) speed();
}

main();
