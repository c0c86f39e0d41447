import { cpuAttentionPlanner } from '../../plan/cpu-attention.js';
import { cpuMatmulPlanner, type CpuVariants } from '../../plan/cpu-matmul.js';
import type { Target } from '../types.js';
import { wasmFingerprint } from './fingerprint.js';
import { renderWasmMatmul } from './matmul.js';
import { wasmPackageFiles } from './package.js';
import { wasmRunner } from './runner.js';

/**
 * The plan's instruction-set knob: one value, simd128. Relaxed SIMD is not a separate plan: every
 * output of an integer format holds both modules and the loader's probe picks one.
 */
const WASM_VARIANTS: CpuVariants = {
  of: () => ['simd128'],
  doc: 'instruction level of the WebAssembly module (relaxed SIMD ships beside it, chosen by a load-time probe)',
  without: ['unroll', 'prefetch'],
};

/**
 * The WebAssembly target: CPU plans (tiles in the cache budget of the wasm-simd128 profile)
 * rendered to WebAssembly text, assembled in-process and run in a child Node process.
 */
export const wasmTarget: Target = {
  name: 'wasm',
  title: 'WebAssembly',
  defaultDevice: 'wasm-simd128',
  planners: { matmul: cpuMatmulPlanner(WASM_VARIANTS), attention: cpuAttentionPlanner(WASM_VARIANTS) },
  fingerprint: (device) => wasmFingerprint(device),
  backend: {
    capabilities: { ops: ['matmul'], formats: ['q35', 'q4', 'q8', 'q4_0', 'q8_0', 'f16'] },
    renderers: { 'cpu-matmul': renderWasmMatmul },
    runnerFor: () => wasmRunner('auto'),
    packageFiles: wasmPackageFiles,
  },
};
