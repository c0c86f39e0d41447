import { GGML_KV_BLOCK, kvLayoutOf, kvRowFormat, kvRowStrides, softmaxScale } from '../ir/attention.js';
import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { f16BitsToF32 } from '../numeric/half.js';

/** K or V as stored: the row bytes, and the separate f16 scales of a kgen q8 cache. */
export interface KvStored {
  data: Uint8Array;
  scales?: Uint8Array;
}

/** Inputs as the kernel reads them: Q as f32 values (after any f16 rounding), K and V as stored bytes. */
export interface AttentionReferenceInputs {
  /** Q[B,Hq,Sq,D]. */
  q: Float32Array | Float64Array;
  k: KvStored;
  v: KvStored;
}

function f16At(bytes: Uint8Array, offset: number): number {
  return f16BitsToF32(bytes[offset]! | (bytes[offset + 1]! << 8));
}

/**
 * Row `row` of a KV tensor as f64 values, decoded here from the bytes (docs/formats.md, "KV
 * cache"), so the reference shares no dequantizer with the test-data packer or the kernels.
 */
function kvRow(op: AttentionOp, D: number, t: KvStored, row: number, out: Float64Array): void {
  const f = kvRowFormat(op, D);
  const base = row * f.rowBytes;
  for (let d = 0; d < D; d++) {
    switch (op.kvCache) {
      case 'f16':
        out[d] = f16At(t.data, base + 2 * d);
        break;
      case 'q8': {
        const code = (t.data[base + d]! << 24) >> 24;
        out[d] = code * f16At(t.scales!, 2 * (row * f.scalesPerRow + Math.floor(d / f.valuesPerScale)));
        break;
      }
      case 'q8_0': {
        const block = base + Math.floor(d / GGML_KV_BLOCK) * 34;
        out[d] = ((t.data[block + 2 + (d % GGML_KV_BLOCK)]! << 24) >> 24) * f16At(t.data, block);
        break;
      }
      case 'q4_0': {
        const block = base + Math.floor(d / GGML_KV_BLOCK) * 18;
        const j = d % GGML_KV_BLOCK;
        const byte = t.data[block + 2 + (j % 16)]!;
        out[d] = ((j < 16 ? byte & 15 : byte >> 4) - 8) * f16At(t.data, block);
        break;
      }
    }
  }
}

/** The first `length` rows of KV head `head` of batch entry `b`, decoded to f64 in position order ([length, D]). */
function decodeKvHead(op: AttentionOp, shape: AttentionShape, t: KvStored, b: number, head: number, length: number): Float64Array {
  const { Hkv, Skv, D } = shape;
  const { headStride, positionStride } = kvRowStrides(kvLayoutOf(op), shape);
  const out = new Float64Array(length * D);
  const row = new Float64Array(D);
  for (let j = 0; j < length; j++) {
    kvRow(op, D, t, b * Hkv * Skv + head * headStride + j * positionStride, row);
    out.set(row, j * D);
  }
  return out;
}

/**
 * O[B,Hq,Sq,D] in f64: softmax(scale * Q K^T) V per head, query head h reading KV head
 * floor(h / (Hq/Hkv)), K and V dequantized from their stored bytes. With `causal`, query i sees keys
 * j <= i + (L - Sq) (the last query is the newest token), where L, the positions read, is `kvLen`
 * (a run-time length, op.kvLength 'runtime'; the first L of each head's Skv) or else Skv. Two-pass
 * softmax with the max subtracted; no online rescaling, so it shares no trick with a flash kernel.
 */
export function referenceAttention(op: AttentionOp, shape: AttentionShape, inputs: AttentionReferenceInputs, kvLen = shape.Skv): Float64Array {
  return attentionOnValues({ ...shape, Skv: kvLen }, { causal: op.causal, scale: softmaxScale(op, shape.D) }, inputs.q, (b, head) => ({
    k: decodeKvHead(op, shape, inputs.k, b, head, kvLen),
    v: decodeKvHead(op, shape, inputs.v, b, head, kvLen),
  }));
}

/**
 * The same attention on values: Q[B,Hq,Sq,D] and, per (batch entry, KV head), K and V as [Skv, D]
 * values in position order (`kvHead`, asked once per KV head). For callers whose K and V are
 * already values (the bench checks peers on the values their caches hold).
 */
export function attentionOnValues(
  shape: AttentionShape,
  opts: { causal: boolean; scale: number },
  q: Float32Array | Float64Array,
  kvHead: (b: number, head: number) => { k: ArrayLike<number>; v: ArrayLike<number> },
): Float64Array {
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const group = Hq / Hkv;
  const out = new Float64Array(B * Hq * Sq * D);
  const scores = new Float64Array(Skv);
  for (let b = 0; b < B; b++) {
    let decodedHead = -1;
    let kv: { k: ArrayLike<number>; v: ArrayLike<number> } = { k: [], v: [] };
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / group);
      if (kvh !== decodedHead) {
        kv = kvHead(b, kvh);
        decodedHead = kvh;
      }
      const { k, v } = kv;
      for (let i = 0; i < Sq; i++) {
        const qBase = ((b * Hq + h) * Sq + i) * D;
        const visible = opts.causal ? i + (Skv - Sq) + 1 : Skv;
        let max = -Infinity;
        for (let j = 0; j < visible; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qBase + d]! * k[j * D + d]!;
          s *= opts.scale;
          scores[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j < visible; j++) {
          scores[j] = Math.exp(scores[j]! - max);
          sum += scores[j]!;
        }
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < visible; j++) acc += scores[j]! * v[j * D + d]!;
          out[qBase + d] = acc / sum;
        }
      }
    }
  }
  return out;
}
