import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { f32ToF16Bits, f16BitsToF32 } from '../numeric/half.js';
import { Rng } from '../numeric/random.js';
import { referenceAttention } from '../reference/attention.js';
import { compareOutputs, withinTolerance } from '../reference/compare.js';
import { asDtype, dtypeSize, fromDtype, type TensorData } from './tensors.js';
import type { OpKit, RunBuffer, TestData } from './types.js';

/**
 * The attention op at run time. Harness files: q.bin (Q[B,Hq,Sq,D] in the op's q type), k.bin and
 * v.bin (K and V as [B,Hkv,Skv,D], heads by positions: f16, or int8 with k_scales.bin and
 * v_scales.bin holding one f16 scale per kvGroupSize values along D); the output is O[B,Hq,Sq,D]
 * in the op's o type. No kernel renders attention yet: this is what its kernels will be held to.
 */

/** A KV tensor as stored (int8 + f16 scales, or f16) and as the reference sees it. */
function kvTensor(values: Float32Array, op: AttentionOp): { files: Record<string, Uint8Array>; values: Float32Array } {
  if (op.kvCache === 'f16') {
    const t = asDtype(values, 'f16');
    return { files: { '': t.bytes }, values: t.values };
  }
  const g = op.kvGroupSize!;
  const q = new Int8Array(values.length);
  const scales = new Uint16Array(values.length / g);
  const out = new Float32Array(values.length);
  for (let b = 0; b < scales.length; b++) {
    let amax = 0;
    for (let i = 0; i < g; i++) amax = Math.max(amax, Math.abs(values[b * g + i]!));
    scales[b] = f32ToF16Bits(amax / 127);
    const d = f16BitsToF32(scales[b]!);
    for (let i = 0; i < g; i++) {
      q[b * g + i] = d === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(values[b * g + i]! / d)));
      out[b * g + i] = q[b * g + i]! * d;
    }
  }
  return { files: { '': new Uint8Array(q.buffer), _scales: new Uint8Array(scales.buffer) }, values: out };
}

function testData(op: AttentionOp, shape: AttentionShape, seed: number): TestData {
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const rng = new Rng(seed);
  const q: TensorData = asDtype(rng.fillNormal(new Float32Array(B * Hq * Sq * D)), op.q);
  const k = kvTensor(rng.fillNormal(new Float32Array(B * Hkv * Skv * D)), op);
  const v = kvTensor(rng.fillNormal(new Float32Array(B * Hkv * Skv * D)), op);
  const reference = referenceAttention(shape, { causal: op.causal, scale: op.scale ?? 1 / Math.sqrt(D) }, { q: q.values, k: k.values, v: v.values });
  const inputs: Record<string, Uint8Array> = { 'q.bin': q.bytes };
  for (const [name, t] of [['k', k], ['v', v]] as const) for (const [suffix, bytes] of Object.entries(t.files)) inputs[`${name}${suffix}.bin`] = bytes;
  return {
    inputs,
    reference,
    check(output, tolerance) {
      const comparison = compareOutputs(fromDtype(output, op.o), reference);
      return { ok: withinTolerance(comparison, reference, tolerance), comparison };
    },
  };
}

/** Bytes of one of K and V as stored. */
function kvBytes(op: AttentionOp, shape: AttentionShape): number {
  const n = shape.B * shape.Hkv * shape.Skv * shape.D;
  return op.kvCache === 'f16' ? 2 * n : n + (2 * n) / op.kvGroupSize!;
}

function runBuffers(op: AttentionOp, shape: AttentionShape): RunBuffer[] {
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const qo = B * Hq * Sq * D;
  const kv = B * Hkv * Skv * D;
  return [
    { name: 'Q (f32 values, the stored bytes, and the harness copy)', bytes: qo * (4 + 2 * dtypeSize(op.q)) },
    { name: 'K and V (f32 values, the stored bytes, and the harness copies)', bytes: 2 * (kv * 4 + 2 * kvBytes(op, shape)) },
    { name: 'the f64 reference output', bytes: qo * 8 },
    { name: 'O (the harness and its copy in kgen)', bytes: 2 * qo * dtypeSize(op.o) },
  ];
}

export const attentionKit: OpKit<AttentionOp, AttentionShape> = {
  kind: 'attention',
  testData,
  // Attention's inputs grow with the sequence, not with a weight matrix: the tuner checks everything.
  workloadData: testData,
  outputBytes: (op, s) => s.B * s.Hq * s.Sq * s.D * dtypeSize(op.o),
  runBuffers,
  tensors(op, s) {
    const kv = op.kvCache === 'f16' ? 'f16' : `int8 with one f16 scale per ${op.kvGroupSize} along D (k_scales, v_scales)`;
    return {
      tensors: {
        q: { dtype: op.q, shape: `[${s.B},${s.Hq},${s.Sq},${s.D}]`, layout: 'row-major' },
        k: { dtype: kv, shape: `[${s.B},${s.Hkv},${s.Skv},${s.D}]`, layout: 'heads x positions, row-major' },
        v: { dtype: kv, shape: `[${s.B},${s.Hkv},${s.Skv},${s.D}]`, layout: 'heads x positions, row-major' },
        o: { dtype: op.o, shape: `[${s.B},${s.Hq},${s.Sq},${s.D}]`, layout: 'row-major' },
      },
    };
  },
  weights: () => undefined,
};
