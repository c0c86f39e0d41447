import { kvLayoutOf, kvLengthRange, kvRowFormat, softmaxScale } from '../ir/attention.js';
import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { f32ToF16Bits, f16BitsToF32 } from '../numeric/half.js';
import { Rng } from '../numeric/random.js';
import { codecOf } from '../quant/index.js';
import { referenceAttention, type AttentionReferenceInputs, type KvStored } from '../reference/attention.js';
import { compareOutputs, roundedInput, roundingJudge, withinTolerance, type Comparison, type InputRounding, type Tolerance } from '../reference/compare.js';
import { asDtype, dtypeSize, fromDtype, type TensorData } from './tensors.js';
import type { OpKit, RunBuffer, TensorInfo, TestData } from './types.js';

/**
 * The attention op at run time. Harness files: q.bin (Q[B,Hq,Sq,D] in the op's q type), k.bin and
 * v.bin (K and V rows in the op's KV layout and format, docs/formats.md "KV cache"), and for a kgen
 * q8 cache k_scales.bin and v_scales.bin (one f16 scale per kvGroupSize values along D, row by
 * row); the output is O[B,Hq,Sq,D] in the op's o type. A kernel with a run-time KV length
 * (op.kvLength 'runtime') also reads kv_len.bin, the lengths to run at (int32, `checkedKvLengths`),
 * and writes O for each in turn: its output is their O's end to end.
 */

/**
 * The lengths a run-time-length kernel is checked at, the first the one it is timed at: the whole
 * capacity, a length that ends inside a tile and a split (5/8 of it, plus one), and the shortest
 * legal one (every split but the first empty).
 */
export function checkedKvLengths(op: AttentionOp, shape: AttentionShape): number[] {
  if (op.kvLength !== 'runtime') return [shape.Skv];
  const { min, max } = kvLengthRange(op, shape);
  const middle = Math.max(min, Math.floor((max * 5) / 8) + 1);
  return [...new Set([max, Math.min(middle, max), min])];
}

/**
 * The test data's outlier channels: a rotary pair, as LLM Q and K carry after RoPE (a few channels
 * many times larger than the rest). Q's are +-Q_OUTLIER (plus its N(0,1)), K's +-K_OUTLIER plus a
 * spread across positions that gives the scaled scores a standard deviation of SCORE_SPREAD from
 * the pair alone (`outlierSpread`); the other channels, and V, are N(0,1). So the softmax is peaked
 * (the N(0,1) data's scores, of deviation 1, left it flat and hid Q rounding errors that exp()
 * amplifies), the scores carry a large common offset (2 Q_OUTLIER K_OUTLIER / sqrt(D): 30 at D=64)
 * that the running maximum must remove, and each outlier sets its quantization block's scale, so
 * the block's other values keep a few bits (as in a real KV cache).
 */
const OUTLIER_CHANNELS = [5, 6] as const;
const OUTLIER_SIGNS = [1, -1] as const;
const Q_OUTLIER = 12;
const K_OUTLIER = 10;
const SCORE_SPREAD = 3.5;

/** K's outlier spread: Q_OUTLIER x spread x sqrt(2 channels) x 1/sqrt(D) = SCORE_SPREAD. */
function outlierSpread(D: number): number {
  return (SCORE_SPREAD * Math.sqrt(D)) / (Q_OUTLIER * Math.SQRT2);
}

/** Adds the outlier pair to every row of D values: sign x size, plus `spread` x N(0,1) (none where D <= 6). */
function addOutliers(rng: Rng, values: Float32Array, D: number, size: number, spread: number): void {
  for (let row = 0; row < values.length / D; row++) {
    OUTLIER_CHANNELS.forEach((c, i) => {
      if (c < D) values[row * D + c] += OUTLIER_SIGNS[i]! * size + spread * rng.normal();
    });
  }
}

/** `rows` KV rows of N(0,1) values (in storage order; K with the outlier pair) packed in the op's format. */
function kvTensor(rng: Rng, op: AttentionOp, rows: number, D: number, outliers: { size: number; spread: number } | undefined): KvStored {
  const values = rng.fillNormal(new Float32Array(rows * D));
  if (outliers) addOutliers(rng, values, D, outliers.size, outliers.spread);
  switch (op.kvCache) {
    case 'f16':
      return { data: asDtype(values, 'f16').bytes };
    case 'q8': {
      const g = op.kvGroupSize!;
      const q = new Int8Array(values.length);
      const scales = new Uint16Array(values.length / g);
      for (let b = 0; b < scales.length; b++) {
        let amax = 0;
        for (let i = 0; i < g; i++) amax = Math.max(amax, Math.abs(values[b * g + i]!));
        scales[b] = f32ToF16Bits(amax / 127);
        const d = f16BitsToF32(scales[b]!);
        for (let i = 0; i < g; i++) q[b * g + i] = d === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(values[b * g + i]! / d)));
      }
      return { data: new Uint8Array(q.buffer), scales: new Uint8Array(scales.buffer) };
    }
    case 'q8_0':
    case 'q4_0': {
      // ggml's own quantizers (src/quant/ggml.ts), so the bytes are those llama.cpp writes.
      const codec = codecOf({ format: op.kvCache, groupSize: 32 });
      const { rowBytes } = kvRowFormat(op, D);
      const data = new Uint8Array(rows * rowBytes);
      for (let r = 0; r < rows; r++) {
        for (let blk = 0; blk < D / 32; blk++) codec.quantizeBlock(values, r * D + blk * 32, data, r * rowBytes + blk * codec.bytesPerBlock);
      }
      return { data };
    }
  }
}

function testData(op: AttentionOp, shape: AttentionShape, seed: number): TestData {
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const rng = new Rng(seed);
  const qValues = rng.fillNormal(new Float32Array(B * Hq * Sq * D));
  addOutliers(rng, qValues, D, Q_OUTLIER, 0);
  const q: TensorData = asDtype(qValues, op.q);
  const k = kvTensor(rng, op, B * Hkv * Skv, D, { size: K_OUTLIER, spread: outlierSpread(D) });
  const v = kvTensor(rng, op, B * Hkv * Skv, D, undefined);
  const lengths = checkedKvLengths(op, shape);
  const inputs: Record<string, Uint8Array> = { 'q.bin': q.bytes, 'k.bin': k.data, 'v.bin': v.data };
  if (k.scales) inputs['k_scales.bin'] = k.scales;
  if (v.scales) inputs['v_scales.bin'] = v.scales;
  if (op.kvLength === 'runtime') inputs['kv_len.bin'] = new Uint8Array(Int32Array.from(lengths).buffer);
  const judge = attentionJudge(op, shape, { q: q.values, k, v }, lengths);
  return {
    inputs,
    reference: judge.reference,
    check: (output, tolerance) => judge.check(fromDtype(output, op.o), tolerance),
    roundedReference: judge.roundedReference,
  };
}

/** The reference of attention outputs and the check of a kernel's against it (`attentionJudge`). */
export interface AttentionJudge {
  /** O at each of the lengths in turn, end to end. */
  reference: Float64Array;
  /** A kernel's O (as numbers) under `tolerance`, widened by its input rounding where it states one. */
  check(output: ArrayLike<number>, tolerance: Tolerance): { ok: boolean; comparison: Comparison; tolerance: Tolerance };
  /** O from Q rounded as `rounding` states (computed once per rounding: the tuner checks every trial). */
  roundedReference(rounding: InputRounding): Float64Array;
}

/**
 * The judge of a kernel run on `inputs` at KV lengths `lengths` (its output their O's end to end):
 * the test data's, and a test's own for inputs it changed (a cache poisoned past kv_len).
 */
export function attentionJudge(op: AttentionOp, shape: AttentionShape, inputs: AttentionReferenceInputs, lengths: readonly number[]): AttentionJudge {
  const perLength = shape.B * shape.Hq * shape.Sq * shape.D;
  const referenceFrom = (q: Float32Array | Float64Array): Float64Array => {
    const out = new Float64Array(perLength * lengths.length);
    lengths.forEach((len, i) => out.set(referenceAttention(op, shape, { ...inputs, q }, len), i * perLength));
    return out;
  };
  const reference = referenceFrom(inputs.q);
  const rounding = roundingJudge('q', reference, (r) => referenceFrom(roundedInput(inputs.q, shape.D, r)));
  return {
    reference,
    check(output, stated) {
      const comparison = compareOutputs(output, reference);
      const tolerance = rounding.tolerance(stated);
      return { ok: withinTolerance(comparison, tolerance), comparison, tolerance };
    },
    roundedReference: (r) => rounding.rounded(r).reference,
  };
}

/** Bytes of one of K and V as stored (rows, plus the separate scales of a kgen q8 cache). */
export function kvBytes(op: AttentionOp, shape: AttentionShape): { rows: number; scales: number } {
  const f = kvRowFormat(op, shape.D);
  const rows = shape.B * shape.Hkv * shape.Skv;
  return { rows: rows * f.rowBytes, scales: rows * f.scalesPerRow * 2 };
}

function runBuffers(op: AttentionOp, shape: AttentionShape): RunBuffer[] {
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const qo = B * Hq * Sq * D;
  const kv = kvBytes(op, shape);
  return [
    { name: 'Q (f32 values, the stored bytes, and the harness copy)', bytes: qo * (4 + 2 * dtypeSize(op.q)) },
    { name: 'K and V (f32 values, the stored bytes, and the harness copies)', bytes: 2 * (B * Hkv * Skv * D * 4 + 2 * (kv.rows + kv.scales)) },
    { name: 'one KV head decoded to f64 for the reference (K and V)', bytes: 2 * Skv * D * 8 },
    { name: 'the f64 reference output', bytes: qo * 8 * checkedKvLengths(op, shape).length },
    { name: 'O (the harness and its copy in kgen)', bytes: 2 * qo * dtypeSize(op.o) * checkedKvLengths(op, shape).length },
  ];
}

/**
 * The version of the attention entry points' calling convention, in every target's manifest
 * (`abiVersion`). 2: the tensor arguments in `ATTENTION_ARGUMENTS` order on every target, f16 scales
 * typed `const uint16_t *` in C and CUDA alike, and NULL scales accepted where the cache has no
 * separate scales. 1 (manifests without `abiVersion`): CUDA took (q, k, v, k_scales, v_scales, o)
 * with `const uint8_t *` scales, and WGSL bound V before K's scales.
 */
export const ATTENTION_ABI_VERSION = 2;

/**
 * The tensors every target's attention entry point takes, in this order: C and CUDA arguments,
 * WebAssembly byte offsets, WGSL binding numbers (those the format has); each target's own
 * arguments (workspace, kv_len, stream) follow. The manifest lists `tensors` in this order too.
 */
export const ATTENTION_ARGUMENTS = ['q', 'k', 'k_scales', 'v', 'v_scales', 'o'] as const;

/**
 * What k_scales and v_scales are for a cache without separate scales, the same words on every
 * target (NULL is 0 for WebAssembly's byte offsets); undefined for a kgen q8 cache, which needs them.
 */
export function unusedScalesText(kvCache: AttentionOp['kvCache']): string | undefined {
  if (kvCache === 'q8') return undefined;
  return `unused, may be NULL (${kvCache === 'f16' ? 'an f16 cache has no scales' : `each ggml ${kvCache} block holds its own scale`})`;
}

/** The KV cache as the manifest states it: format, row bytes and order, and where the scales are. */
function kvTensorInfo(op: AttentionOp, s: AttentionShape) {
  const f = kvRowFormat(op, s.D);
  const dtype = {
    f16: 'f16',
    q8: `kgen q8: int8 codes, one f16 scale per ${op.kvGroupSize} values along D in k_scales/v_scales (${f.scalesPerRow} per row)`,
    q8_0: `ggml q8_0 blocks of 32 along D (${f.rowBytes} bytes per row)`,
    q4_0: `ggml q4_0 blocks of 32 along D (${f.rowBytes} bytes per row)`,
  }[op.kvCache];
  const layout = kvLayoutOf(op) === 'heads_positions'
    ? `heads x positions: rows [${s.B},${s.Hkv},${s.Skv}] of ${f.rowBytes} bytes (docs/formats.md#kv-cache)`
    : `positions x heads: rows [${s.B},${s.Skv},${s.Hkv}] of ${f.rowBytes} bytes, as llama.cpp's cache (docs/formats.md#kv-cache)`;
  // The shape in storage order, as the layout's rows go (D values a row).
  const shape = kvLayoutOf(op) === 'heads_positions' ? `[${s.B},${s.Hkv},${s.Skv},${s.D}]` : `[${s.B},${s.Skv},${s.Hkv},${s.D}]`;
  return { dtype, shape, layout, bytes: s.B * s.Hkv * s.Skv * f.rowBytes };
}

export const attentionKit: OpKit<AttentionOp, AttentionShape> = {
  kind: 'attention',
  testData,
  // Attention's inputs grow with the sequence, not with a weight matrix: the tuner checks everything.
  workloadData: testData,
  // A run-time-length kernel's harness writes O once per checked length.
  outputBytes: (op, s) => s.B * s.Hq * s.Sq * s.D * dtypeSize(op.o) * checkedKvLengths(op, s).length,
  runBuffers,
  tensors(op, s) {
    const kv = kvTensorInfo(op, s);
    const perRow = op.kvCache === 'q8' ? s.D / op.kvGroupSize! : 0;
    const scales = perRow > 0 ? { dtype: 'f16', shape: `[${s.B * s.Hkv * s.Skv},${perRow}]`, layout: 'one row of scales per KV row, in the KV row order', bytes: s.B * s.Hkv * s.Skv * perRow * dtypeSize('f16') } : undefined;
    const all: Record<(typeof ATTENTION_ARGUMENTS)[number], TensorInfo | undefined> = {
      q: { dtype: op.q, shape: `[${s.B},${s.Hq},${s.Sq},${s.D}]`, layout: 'row-major', bytes: s.B * s.Hq * s.Sq * s.D * dtypeSize(op.q) },
      k: kv,
      k_scales: scales,
      v: kv,
      v_scales: scales,
      o: { dtype: op.o, shape: `[${s.B},${s.Hq},${s.Sq},${s.D}]`, layout: 'row-major', bytes: s.B * s.Hq * s.Sq * s.D * dtypeSize(op.o) },
    };
    // In argument order; the scales only where the cache keeps them apart from the rows.
    const tensors: Record<string, TensorInfo> = {};
    for (const name of ATTENTION_ARGUMENTS) if (all[name]) tensors[name] = all[name];
    return { tensors, abiVersion: ATTENTION_ABI_VERSION, softmaxScale: softmaxScale(op, s.D), ...(op.kvLength === 'runtime' ? { kvLength: kvLengthRange(op, s) } : {}) };
  },
  weights: () => undefined,
  kvCache: (op) => op.kvCache,
  checkedKvLengths: (op, shape) => (op.kvLength === 'runtime' ? checkedKvLengths(op, shape) : undefined),
};
