import { cpuAttentionPlanner } from '../../plan/cpu-attention.js';
import { cpuMatmulPlanner, type CpuVariants } from '../../plan/cpu-matmul.js';
import type { Target } from '../types.js';

/** WebAssembly has one instruction level kgen plans for so far. */
const WASM_VARIANTS: CpuVariants = { of: () => ['simd128'], doc: 'instruction level of the WebAssembly module' };

/**
 * The WebAssembly target: plans with the CPU planners (tiles in the cache budget of the
 * wasm-simd128 profile) so far; its renderer and runner come next.
 */
export const wasmTarget: Target = {
  name: 'wasm',
  title: 'WebAssembly',
  defaultDevice: 'wasm-simd128',
  planners: { matmul: cpuMatmulPlanner(WASM_VARIANTS), attention: cpuAttentionPlanner(WASM_VARIANTS) },
};
