import type { Op } from './types.js';

const plainEpilogue = { bias: false, activation: 'none', residual: false } as const;

/** The named ops `kgen ops` lists and `--op` accepts. */
export const CATALOG: Readonly<Record<string, Op>> = {
  matmul_q35: { kind: 'matmul', name: 'matmul_q35', x: 'f32', weight: { format: 'q35', groupSize: 64 }, y: 'f32', epilogue: plainEpilogue },
  matmul_q4: { kind: 'matmul', name: 'matmul_q4', x: 'f32', weight: { format: 'q4', groupSize: 64 }, y: 'f32', epilogue: plainEpilogue },
  matmul_q8: { kind: 'matmul', name: 'matmul_q8', x: 'f32', weight: { format: 'q8', groupSize: 64 }, y: 'f32', epilogue: plainEpilogue },
  matmul_q4_0: { kind: 'matmul', name: 'matmul_q4_0', x: 'f32', weight: { format: 'q4_0', groupSize: 32 }, y: 'f32', epilogue: plainEpilogue },
  matmul_q8_0: { kind: 'matmul', name: 'matmul_q8_0', x: 'f32', weight: { format: 'q8_0', groupSize: 32 }, y: 'f32', epilogue: plainEpilogue },
  matmul_f16: { kind: 'matmul', name: 'matmul_f16', x: 'f32', weight: { format: 'f16' }, y: 'f32', epilogue: plainEpilogue },
  attention_f16: { kind: 'attention', name: 'attention_f16', q: 'f16', kvCache: 'f16', o: 'f16', causal: true },
  attention_q8kv: { kind: 'attention', name: 'attention_q8kv', q: 'f16', kvCache: 'q8', kvGroupSize: 32, o: 'f16', causal: true },
  attention_q8_0kv: { kind: 'attention', name: 'attention_q8_0kv', q: 'f16', kvCache: 'q8_0', o: 'f16', causal: true },
  attention_q4_0kv: { kind: 'attention', name: 'attention_q4_0kv', q: 'f16', kvCache: 'q4_0', o: 'f16', causal: true },
};

export const CATALOG_DESCRIPTIONS: Readonly<Record<string, string>> = {
  matmul_q35: 'Y = X W^T, W in q3.5 (3.75 bits/weight with group 64), f32 X and Y',
  matmul_q4: 'Y = X W^T, W in symmetric 4-bit with f16 group scales (4.25 bits/weight)',
  matmul_q8: 'Y = X W^T, W in int8 with f16 group scales (8.25 bits/weight)',
  matmul_q4_0: 'Y = X W^T, W in ggml q4_0 blocks (byte-identical to GGUF)',
  matmul_q8_0: 'Y = X W^T, W in ggml q8_0 blocks (byte-identical to GGUF)',
  matmul_f16: 'Y = X W^T, W in f16',
  attention_f16: 'causal grouped-query attention, f16 Q and KV cache',
  attention_q8kv: 'causal grouped-query attention, f16 Q, int8 KV cache with f16 scales per 32',
  attention_q8_0kv: 'causal grouped-query attention, f16 Q, KV cache in ggml q8_0 blocks as llama.cpp stores it',
  attention_q4_0kv: 'causal grouped-query attention, f16 Q, KV cache in ggml q4_0 blocks as llama.cpp stores it',
};

/** The catalog op called `name`, or undefined; only the catalog's own entries (never `constructor` or `__proto__`). */
export function catalogOp(name: string): Op | undefined {
  return Object.hasOwn(CATALOG, name) ? CATALOG[name] : undefined;
}
