import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { dtypeBytes } from './common.js';

/** What every target's attention planner computes the same way: KV bytes and the traffic bound. */

/** Largest Sq served by split-KV decode on GPUs; longer query blocks use flash tiles. */
export const SPLITK_MAX_SQ = 8;

/** Bytes per KV value as stored: f16, or q8's int8 plus its share of a 2-byte f16 scale per group. */
export function kvBytesPerValue(op: AttentionOp): number {
  return op.kvCache === 'q8' ? 1 + 2 / op.kvGroupSize! : 2;
}

/** Bytes every attention kernel must move at least (the whole KV cache, Q and O once) and its flops. */
export function attentionTraffic(op: AttentionOp, s: AttentionShape): { bytes: number; flops: number } {
  const kv = 2 * s.B * s.Hkv * s.Skv * s.D * kvBytesPerValue(op);
  const qo = s.B * s.Hq * s.Sq * s.D * (dtypeBytes(op.q) + dtypeBytes(op.o));
  return { bytes: Math.ceil(kv + qo), flops: 4 * s.B * s.Hq * s.Sq * s.Skv * s.D };
}
