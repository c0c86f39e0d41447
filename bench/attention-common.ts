/**
 * What the attention bench's rows share (bench/attention.ts runs them): the workloads, the inputs
 * every peer reads, the check of a peer's output against kgen's f64 reference, and the row.
 *
 * Layout: the bench keeps Q as [Sq][Hq][D] and K, V as [Skv][Hkv][D] ("token-major": one row of
 * all heads per position, as llama.cpp's KV cache holds one layer); a peer that wants another
 * layout (onnxruntime's BNSH caches) transposes its copy. The reference takes heads-major
 * [H][S][D], so the check transposes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AttentionShape } from '../src/ir/types.js';
import { visiblePairs } from '../src/plan/attention-common.js';
import { roundToF16 } from '../src/numeric/half.js';
import { Rng } from '../src/numeric/random.js';
import { FORMATS } from '../src/quant/index.js';
import { attentionOnValues } from '../src/reference/attention.js';
import { compareOutputs, withinTolerance, type Tolerance } from '../src/reference/compare.js';
import { f32Bytes } from './onnx-model.js';
import { coldCopies, type BenchRow } from './common.js';

/** KV cache formats of the peer rows: ggml's f16, q8_0 and q4_0 (kgen's q8_0/q4_0 codecs are the same bytes). */
export const KV_FORMATS = ['f16', 'q8_0', 'q4_0'] as const;
export type KvFormat = (typeof KV_FORMATS)[number];

export interface AttentionWorkload {
  /** decode-4k, decode-32k, prefill-2k: also the `--cases` names. */
  name: string;
  phase: 'decode' | 'prefill';
  shape: AttentionShape;
  causal: boolean;
  warmup: number;
  runs: number;
  /** KV caches a timed call rotates through; absent: the cacheCopies rule. */
  copies?: number;
}

const HEADS = { B: 1, Hq: 32, Hkv: 8, D: 128 };

/** The issue's rows: decode at Skv = 4096 and 32768, causal prefill at Sq = Skv = 2048. */
export const ATTENTION_WORKLOADS: readonly AttentionWorkload[] = [
  { name: 'decode-4k', phase: 'decode', shape: { ...HEADS, Sq: 1, Skv: 4096 }, causal: true, warmup: 5, runs: 31 },
  { name: 'decode-32k', phase: 'decode', shape: { ...HEADS, Sq: 1, Skv: 32768 }, causal: true, warmup: 3, runs: 21 },
  { name: 'prefill-2k', phase: 'prefill', shape: { ...HEADS, Sq: 2048, Skv: 2048 }, causal: true, warmup: 1, runs: 3 },
];

/**
 * The small shape each peer is checked on before its timed run, per phase: Skv a multiple of no
 * tile size, a GQA group of 4, D as in the timed rows, causal.
 */
export function checkWorkload(w: AttentionWorkload): AttentionWorkload {
  const shape = w.phase === 'decode' ? { B: 1, Hq: 8, Hkv: 2, D: w.shape.D, Sq: 1, Skv: 333 } : { B: 1, Hq: 8, Hkv: 2, D: w.shape.D, Sq: 77, Skv: 77 };
  return { ...w, name: `${w.name} check`, shape, warmup: 0, runs: 1 };
}

export function shapeLabel(s: AttentionShape): string {
  return `Hq=${s.Hq},Hkv=${s.Hkv},D=${s.D},Sq=${s.Sq},Skv=${s.Skv}`;
}

export function attentionFlops(s: AttentionShape, causal: boolean): number {
  return 4 * s.B * s.Hq * s.D * visiblePairs(s, causal);
}

/** Bytes of K and V together as stored in `format` (f32: the f32 cache onnxruntime reads). */
export function kvBytes(s: AttentionShape, format: KvFormat | 'f32'): number {
  const n = s.B * s.Hkv * s.Skv * s.D;
  const perValue = { f32: 4, f16: 2, q8_0: 34 / 32, q4_0: 18 / 32 }[format];
  return 2 * n * perValue;
}

export interface AttentionInputs {
  shape: AttentionShape;
  /** Q [Sq][Hq][D], N(0,1) rounded to f16 (kgen's attention takes f16 Q). */
  q: Float32Array;
  /** K and V [Skv][Hkv][D], N(0,1) in f32; each peer stores them in its cache format. */
  k: Float32Array;
  v: Float32Array;
}

/** Fixed-seed inputs: the same values for every peer of a workload. */
export function attentionInputs(shape: AttentionShape, seed: number): AttentionInputs {
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const rng = new Rng(seed);
  const q = rng.fillNormal(new Float32Array(B * Sq * Hq * D));
  for (let i = 0; i < q.length; i++) q[i] = roundToF16(q[i]!);
  return { shape, q, k: rng.fillNormal(new Float32Array(B * Skv * Hkv * D)), v: rng.fillNormal(new Float32Array(B * Skv * Hkv * D)) };
}

/** Writes q.f32, k.f32 and v.f32 (token-major) for the C harnesses. */
export function writeAttentionInputs(dir: string, x: AttentionInputs): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'q.f32'), f32Bytes(x.q));
  writeFileSync(join(dir, 'k.f32'), f32Bytes(x.k));
  writeFileSync(join(dir, 'v.f32'), f32Bytes(x.v));
}

/** [S][H][D] -> [H][S][D] (or back: the same swap of the two outer axes). */
export function swapOuter(x: Float32Array, outer: number, inner: number, D: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let a = 0; a < outer; a++) for (let b = 0; b < inner; b++) out.set(x.subarray((a * inner + b) * D, (a * inner + b + 1) * D), (b * outer + a) * D);
  return out;
}

/** A cache as stored (token-major rows of Hkv·D values in `format`) back to the f32 values it holds. */
export function dequantizeCache(bytes: Uint8Array, format: KvFormat, values: number): Float32Array {
  const codec = FORMATS[format].codec(32);
  const out = new Float32Array(values);
  for (let b = 0; b < values / codec.weightsPerBlock; b++) codec.dequantizeBlock(bytes, b * codec.bytesPerBlock, out, b * codec.weightsPerBlock);
  return out;
}

/** The f32 values of K or V after rounding to f16: what an f16 cache holds (and the f32 peers are fed). */
export function f16Values(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = roundToF16(x[i]!);
  return out;
}

/**
 * How close a peer must come to the f64 reference on the values its cache holds. With a quantized
 * cache llama.cpp also quantizes Q to q8_0 blocks for the dot products, so it gets the bound kgen
 * states for int8 activations (src/plan/common.ts). llama.cpp's one-row decode path accumulates
 * P·V in f16 when V is f16 (ggml_vec_mad_f16): measured nmse 7e-6 on the check shapes, so it gets
 * 1e-4. Anything else computes in f32 and gets an f16-input bound. A wrong head mapping, scale or
 * mask is off by nmse > 1e-2 (test/bench-attention.test.ts).
 */
export function peerTolerance(o: { quantizedQ: boolean; f16Accumulation?: boolean }): Tolerance {
  if (o.quantizedQ) return { nmse: 2e-4, maxRelToPeak: 2e-2 };
  if (o.f16Accumulation) return { nmse: 1e-4, maxRelToPeak: 1e-2 };
  return { nmse: 1e-5, maxRelToPeak: 4e-3 };
}

/**
 * Compares a peer's O [Sq][Hq][D] with the f64 reference attention on Q and the K and V values its
 * cache holds (token-major); every element must be finite.
 */
export function checkAttention(
  w: AttentionWorkload,
  x: { q: Float32Array; k: Float32Array; v: Float32Array },
  o: Float32Array,
  tol: Tolerance,
): { ok: boolean; detail: string } {
  const { Hq, Hkv, Sq, Skv, D } = w.shape;
  if (o.length !== Sq * Hq * D) return { ok: false, detail: `O has ${o.length} values, not ${Sq * Hq * D}` };
  const k = swapOuter(x.k, Skv, Hkv, D);
  const v = swapOuter(x.v, Skv, Hkv, D);
  const head = Skv * D;
  const ref = attentionOnValues(w.shape, { causal: w.causal, scale: 1 / Math.sqrt(D) }, swapOuter(x.q, Sq, Hq, D), (b, h) => ({
    k: k.subarray((b * Hkv + h) * head, (b * Hkv + h + 1) * head),
    v: v.subarray((b * Hkv + h) * head, (b * Hkv + h + 1) * head),
  }));
  const c = compareOutputs(swapOuter(o, Sq, Hq, D), ref);
  const detail = `nmse ${c.nmse.toExponential(2)} (limit ${tol.nmse}), max abs err ${c.maxAbsError.toExponential(2)}${c.nonFinite ? `, ${c.nonFinite} non-finite` : ''}`;
  return { ok: c.nonFinite === 0 && withinTolerance(c, tol), detail };
}

/**
 * A peer's decode output from its timed run, checked as its small-shape run was: the rows then rest
 * on the output of the very calls they time. Prefill keeps the small-shape check alone (the f64
 * reference at Sq = Skv = 2048 takes minutes in JS). Undefined for prefill.
 */
export function checkTimedDecode(
  w: AttentionWorkload,
  x: { q: Float32Array; k: Float32Array; v: Float32Array },
  o: Float32Array,
  tol: Tolerance,
): { ok: boolean; detail: string } | undefined {
  return w.phase === 'decode' ? checkAttention(w, x, o, tol) : undefined;
}

/** One timed thread count of a peer. */
export interface AttentionTiming {
  threads: number;
  medianMs: number;
  minMs: number;
  runs: number;
  copies: number;
}

/**
 * The row of one timing: GB/s (decode only) is the bytes of K and V as stored over the time,
 * GFLOPS the useful flops (attentionFlops) over it; a peer whose check failed gets `(WRONG OUTPUT)` and no numbers.
 */
export function attentionRow(w: AttentionWorkload, label: string, bytes: number, t: AttentionTiming, ok: boolean, note: string): BenchRow {
  const ms = ok ? t.medianMs : NaN;
  // GB/s of KV read means something where a call reads its cache once: decode.
  const gbps = w.phase === 'decode' ? bytes / (ms * 1e-3) / 1e9 : NaN;
  return {
    kind: 'peer',
    case: ok ? label : `${label} (WRONG OUTPUT)`,
    shape: shapeLabel(w.shape),
    threads: t.threads,
    ms,
    minMs: ok ? t.minMs : NaN,
    bytes,
    gbps,
    gflops: attentionFlops(w.shape, w.causal) / (ms * 1e-3) / 1e9,
    runs: t.runs,
    copies: t.copies,
    note,
  };
}

/**
 * Distinct KV caches a timed decode row rotates through, so that each call reads its cache from
 * DRAM as a real decode step does (the same > 3x L3 rule as the matmul rows). Prefill is
 * compute-bound and re-reads its K/V tiles many times per call, so it uses one.
 */
export function cacheCopies(w: AttentionWorkload, bytes: number): number {
  if (w.copies !== undefined) return w.copies;
  return w.phase === 'decode' ? coldCopies(bytes) : 1;
}
