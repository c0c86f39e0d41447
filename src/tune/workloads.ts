import { CATALOG } from '../ir/catalog.js';
import type { MatmulShape } from '../ir/types.js';
import type { WorkloadSpec } from './tuner.js';

/**
 * The matmul layers of Llama-3-8B and -70B as (N, K) = (output features, input features), most
 * time-consuming first within each model: FFN gate/up, FFN down, attention q/o, attention k/v.
 */
export const LLAMA_LAYERS: ReadonlyArray<{ model: string; layer: string; N: number; K: number }> = [
  { model: 'llama-3-8b', layer: 'ffn gate/up', N: 14336, K: 4096 },
  { model: 'llama-3-8b', layer: 'ffn down', N: 4096, K: 14336 },
  { model: 'llama-3-8b', layer: 'attn q/o', N: 4096, K: 4096 },
  { model: 'llama-3-8b', layer: 'attn k/v', N: 1024, K: 4096 },
  { model: 'llama-3-70b', layer: 'ffn gate/up', N: 28672, K: 8192 },
  { model: 'llama-3-70b', layer: 'attn q/o', N: 8192, K: 8192 },
];

/** Token counts per call: decode (1), speculative/batched decode (16), a prompt chunk (256). */
export const STANDARD_M = [1, 16, 256] as const;

/** Weight formats in the order the standard workload tunes them. */
export const STANDARD_FORMATS = ['q4', 'q35', 'q4_0', 'q8', 'q8_0'] as const;

/**
 * The standard workload `kgen tune` runs without --op, most important first: decode (M=1) before
 * batched decode before prefill, then the 8B layers before the 70B ones, then the formats in
 * STANDARD_FORMATS order. A time budget cuts it from the end.
 */
export function standardWorkload(): WorkloadSpec[] {
  const out: WorkloadSpec[] = [];
  for (const M of STANDARD_M) {
    for (const { N, K } of LLAMA_LAYERS) {
      for (const f of STANDARD_FORMATS) {
        const op = CATALOG[`matmul_${f}`]!;
        out.push({ op, shape: { M, N, K } satisfies MatmulShape });
      }
    }
  }
  return out;
}
