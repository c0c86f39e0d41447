import { kvRowFormat } from '../ir/attention.js';
import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { dtypeBytes } from './common.js';

/** What every target's attention planner computes the same way: KV bytes and the traffic bound. */

/** Largest Sq served by split-KV decode on GPUs; longer query blocks use flash tiles. */
export const SPLITK_MAX_SQ = 8;

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
  return { bytes: Math.ceil(kv + qo), flops: 4 * s.B * s.Hq * s.Sq * s.Skv * s.D };
}
