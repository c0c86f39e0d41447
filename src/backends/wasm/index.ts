import { ACT_BLOCK_TAIL, type CpuVariants } from '../../plan/cpu-matmul.js';
import type { Target } from '../types.js';
import { wasmFingerprint } from './fingerprint.js';
import { renderWasmAttention, WASM_ATTENTION_SLOTS, wasmAttentionPlanner } from './attention.js';
import { levelPreference, Q35_SIGN_RECORD_BYTES, renderWasmMatmul, wasmMatmulPlanner } from './matmul.js';
import { wasmPackageFiles } from './package.js';
import { wasmRunner } from './runner.js';
import { MEMORY_MAX_PAGES, PAGE_BYTES } from './memory.js';
import { CPU_LIMITS } from '../device-kind.js';
import { Q35_MAX_MAGNITUDE } from '../../quant/q35.js';

/**
 * The plan's instruction-set knob: the level the output prefers (integer formats: relaxed or
 * simd128, the default by format; f16: simd128). Every output of an integer format holds both
 * modules; the loader takes the preferred one, but relaxed only where its probe passes.
 */
const WASM_VARIANTS: CpuVariants = {
  of: (_device, format) => levelPreference(format),
  doc: 'instruction level the loader prefers: relaxed (taken only where the load-time probe passes, else simd128) or simd128 (always); both modules ship',
  // Attention ships one module: a relaxed-SIMD one with FMAs in the f16 cache's scores and P.V (its
  // widest use) measured ~5% faster (Skv=4096, one thread, Zen 4; docs/PERFORMANCE.md): not built.
  attentionDoc: 'instruction level: simd128 (attention outputs have that one module)',
  // WebAssembly has no prefetch instruction (a demand load ahead measured slower: docs/PERFORMANCE.md);
  // the f16 kernel's loop is not unrolled. Unroll 2 is faster with the weights in L2 but slower
  // streaming them from DRAM (q4 relaxed GEMV 2.41 vs 2.28 ms), so 1 is the default; 4 was slower in both.
  without: ['prefetch'],
  noUnrollFormats: ['f16'],
  unrollValues: [1, 2],
  // GEMV rows in streams: with no prefetch instruction the weights stream as fast as the hardware
  // prefetcher follows them, and it follows a few long streams better than a new stream every row.
  // q4 relaxed, N=4096, K=14336, from DRAM, Zen 5, one thread: 2.53 ms in contiguous groups of 8
  // rows; chunks of 256 as 8 streams of 32 rows 1.75 (128: 1.84, 512: 1.79, 64: 1.94, 32: 2.09),
  // as 4 streams of 64 rows 1.58 (of 128: 1.58, of 32: 1.67); q3.5 likewise best at 8 x 32
  // (docs/PERFORMANCE.md). 0 is the contiguous order.
  streamChunks: [256, 512, 64, 0],
  // With streams, 4 rows a call beat 8 for q4_0 at its default level on Zen 5 (relaxed, one thread:
  // 3.15 against 3.42 ms; SIMD128 within 1-3%; on Zen 4 no difference out of the noise). q4 differs
  // by CPU: 4 rows 1.58 against 1.75 ms on Zen 5, but 8 rows 12-14% faster on Zen 4 (10 alternated
  // rounds, one and two threads): 8 loses less where it loses, so q4 keeps the common order.
  // q3.5 and q8 lose 2-5% with 4.
  gemvRowsPerIter: { q4_0: [4, 8, 2, 1] },
  // q3.5's relaxed module keeps a sign record after each prepared block's usual tail (Q35_SIGN_RECORD_BYTES).
  actTailBytes: { q35: ACT_BLOCK_TAIL + Q35_SIGN_RECORD_BYTES },
  // q3.5's relaxed dot sums each vector's two halves' i16 dots in i16 before one widening (2 fewer
  // operations a row and 64 weights; L2 GEMV 0.94x the time, docs/PERFORMANCE.md): activation
  // codes in [-65, 65] (4 x 125 x 65 <= 32767), from the tables' largest magnitude.
  i16PairSums: { relaxed: { q35: Q35_MAX_MAGNITUDE } },
  // Attention tasks may take every KV head of a chunk: the WAT's row groups each read their head's rows.
  attentionAllHeads: true,
  // A short call's keys go to few splits of whole tiles: 16 splits of 1 key each ran 3x the
  // tasks' time of one split at kv_len 16 (docs/PERFORMANCE.md, WebAssembly attention).
  attentionSplitTiles: true,
  // No prefetch instruction: the score loop's touch loads (the touch knob) start the memory traffic.
  attentionTouch: true,
  // Int8 Q scores (the qInt8 knob): i32x4.dot_i16x8_s of K's codes widened to i16 with Q's codes
  // stored as i16, signed x signed, so no offset.
  attentionInt8Q: { simd128: 0 },
  // Integer P.V: i16 coefficients of two keys against their V codes interleaved as i16 pairs
  // (i32x4.dot_i16x8_s), two i32 accumulators a row for 8 values.
  attentionIntPV: { simd128: { laneKeys: 2, codeMax: 32767, accumulators: 2 } },
};

/**
 * The WebAssembly target: CPU plans (matmul and attention, in the cache budget of the
 * wasm-simd128 profile) rendered to WebAssembly text, assembled in-process and run in a child Node process.
 */
export const wasmTarget: Target = {
  name: 'wasm',
  title: 'WebAssembly',
  defaultDevice: 'wasm-simd128',
  planners: { matmul: wasmMatmulPlanner(WASM_VARIANTS), attention: wasmAttentionPlanner(WASM_VARIANTS) },
  needs: [CPU_LIMITS],
  fingerprint: (device) => wasmFingerprint(device),
  backend: {
    capabilities: { ops: ['matmul', 'attention'], formats: ['q35', 'q4', 'q8', 'q4_0', 'q8_0', 'f16'], kvCaches: ['f16', 'q8', 'q8_0', 'q4_0'], runtimeKvLength: true, addressableBytes: MEMORY_MAX_PAGES * PAGE_BYTES },
    renderers: { 'cpu-matmul': renderWasmMatmul, 'cpu-attention': renderWasmAttention },
    // Attention's harness splits tasks over threads (workers on a shared memory); matmul's runs one.
    runnerFor: (plan) => wasmRunner('auto', plan.family === 'cpu-attention' ? { kind: 'tasks', checkThreads: 1, maxThreads: WASM_ATTENTION_SLOTS } : { kind: 'rows' }),
    packageFiles: wasmPackageFiles,
  },
};
