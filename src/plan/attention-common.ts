import { kvLayoutOf, kvLengthRange, kvRowFormat, kvRowStrides, Q8_KV_DEQUANT_VALUES } from '../ir/attention.js';
import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { dtypeBytes } from './common.js';
import type { Restriction } from './types.js';

/** What every target's attention planner computes the same way: KV bytes and the traffic bound. */

/** Largest Sq served by split-KV decode on GPUs; longer query blocks use flash tiles. */
export const SPLITK_MAX_SQ = 8;

/** Partitions of the KV sequence the GPU decode kernels offer (one block / workgroup each), first guess first. */
export const GPU_KV_SPLITS: readonly number[] = [16, 8, 32, 4, 64, 1];

/** The GPU kernels dequantize kgen q8 values four at a time, so a q8 scale group must hold whole fours. */
export function q8GroupOfFours(op: AttentionOp): Restriction {
  return {
    reason: `the KV scale group is not a multiple of ${Q8_KV_DEQUANT_VALUES} (values are dequantized four at a time)`,
    allows: () => op.kvCache !== 'q8' || op.kvGroupSize! % Q8_KV_DEQUANT_VALUES === 0,
  };
}

/** Bytes per KV value as stored: f16, int8 or nibbles plus each format's share of its f16 scales. */
export function kvBytesPerValue(op: AttentionOp): number {
  const D = 256; // a multiple of every format's block: the share is the same at any legal D
  const f = kvRowFormat(op, D);
  return (f.rowBytes + 2 * f.scalesPerRow) / D;
}

/** Bytes every attention kernel must move at least (the whole KV cache, Q and O once) and its flops. */
export function attentionTraffic(op: AttentionOp, s: AttentionShape): { bytes: number; flops: number } {
  const kv = 2 * s.B * s.Hkv * s.Skv * s.D * kvBytesPerValue(op);
  const qo = s.B * s.Hq * s.Sq * s.D * (dtypeBytes(op.q) + dtypeBytes(op.o));
  return { bytes: Math.ceil(kv + qo), flops: 4 * s.B * s.Hq * s.D * visiblePairs(s, op.causal) };
}

/**
 * Query-key pairs a call computes: every pair, or with the causal mask (queries at the last Sq of
 * Skv positions, Sq <= Skv) the Sq (Skv - Sq) + Sq (Sq + 1) / 2 it lets through, about half at
 * Sq = Skv. The work kgen's kernels and peers do (masked whole tiles are skipped), so flops count
 * only these.
 */
export function visiblePairs(s: Pick<AttentionShape, 'Sq' | 'Skv'>, causal: boolean): number {
  if (!causal) return s.Sq * s.Skv;
  // Query i sees Skv - Sq + i + 1 keys.
  return s.Sq * (s.Skv - s.Sq) + (s.Sq * (s.Sq + 1)) / 2;
}

/** KV tensor layout: rows of D values; a row's index is b * batchRows + head * headRows + position * posRows. */
export interface KvRowLayout {
  /** As the manifest says it. */
  name: string;
  batchRows: number;
  headRows: number;
  posRows: number;
}

/** Row strides of the KV cache in the op's row order (kvLayoutOf: heads x positions, or positions x heads as llama.cpp's cache), for the GPU planners. */
export function kvLayout(op: AttentionOp, shape: Omit<AttentionShape, 'Sq'> & { Sq?: number }): KvRowLayout {
  const order = kvLayoutOf(op);
  const { headStride, positionStride } = kvRowStrides(order, { Sq: 0, ...shape });
  const name = order === 'heads_positions' ? 'heads x positions: [B, Hkv, Skv, D]' : 'positions x heads: [B, Skv, Hkv, D]';
  return { name, batchRows: shape.Hkv * shape.Skv, headRows: headStride, posRows: positionStride };
}

/** What a GPU attention kernel prints of its KV cache: the layout (kvLayout) and one row's format. */
// A type, not an interface: plan params must have an implicit index signature.
export type KvRowParams = {
  /** The row order as the manifest says it. */
  kvLayout: string;
  /** KV row index = b * kvBatchRows + head * kvHeadRows + position * kvPosRows. */
  kvBatchRows: number;
  kvHeadRows: number;
  kvPosRows: number;
  /** Bytes of one K or V row as stored, and of its f16 scales in k_scales / v_scales (kgen q8; else 0). */
  kvRowBytes: number;
  kvScaleRowBytes: number;
  /** Values per scale (the q8 group, a ggml block; D for f16, which has none). */
  kvGroup: number;
};

/**
 * Every target's plan params for the KV length: whether kernels take kv_len at run time
 * (op.kvLength 'runtime') and the shortest a call may pass (`kvLengthRange`; the longest is Skv).
 */
export function kvLengthParams(op: AttentionOp, shape: AttentionShape): { runtimeKvLength: boolean; kvLenMin: number } {
  return { runtimeKvLength: op.kvLength === 'runtime', kvLenMin: kvLengthRange(op, shape).min };
}

/**
 * What an ABI entry says about kv_len, the positions a call of a run-time-length kernel reads,
 * ending with what the target does with a length out of range (`refusal`).
 */
export function kvLenText(p: { Skv: number; kvLenMin: number; causal: boolean }, refusal: string): string {
  return `kv_len: the positions read (the first kv_len of each head's ${p.Skv}), ${p.kvLenMin}..${p.Skv}${p.causal ? ', the last query row seeing the last of them' : ''}; ${refusal} for a kv_len outside that range`;
}
