import type { AttentionShape } from '../ir/types.js';

/** Inputs as the f32 values the kernel sees: f16 rounding and KV dequantization already applied. */
export interface AttentionReferenceInputs {
  /** Q[B,Hq,Sq,D]. */
  q: Float32Array;
  /** K[B,Hkv,Skv,D]. */
  k: Float32Array;
  /** V[B,Hkv,Skv,D]. */
  v: Float32Array;
}

/**
 * O[B,Hq,Sq,D] in f64: softmax(scale * Q K^T) V per head, query head h reading KV head
 * floor(h / (Hq/Hkv)). With `causal`, query i sees keys j <= i + (Skv - Sq) (the last query is the
 * newest token). Two-pass softmax with the max subtracted; no online rescaling, so it shares no
 * trick with a flash kernel.
 */
export function referenceAttention(shape: AttentionShape, opts: { causal: boolean; scale: number }, inputs: AttentionReferenceInputs): Float64Array {
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const group = Hq / Hkv;
  const out = new Float64Array(B * Hq * Sq * D);
  const scores = new Float64Array(Skv);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / group);
      const kvBase = (b * Hkv + kvh) * Skv * D;
      for (let i = 0; i < Sq; i++) {
        const qBase = ((b * Hq + h) * Sq + i) * D;
        const visible = opts.causal ? i + (Skv - Sq) + 1 : Skv;
        let max = -Infinity;
        for (let j = 0; j < visible; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += inputs.q[qBase + d]! * inputs.k[kvBase + j * D + d]!;
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
          for (let j = 0; j < visible; j++) acc += scores[j]! * inputs.v[kvBase + j * D + d]!;
          out[qBase + d] = acc / sum;
        }
      }
    }
  }
  return out;
}
