import { wgslAttentionPlanner } from '../../plan/wgsl-attention.js';
import { wgslMatmulPlanner } from '../../plan/wgsl-matmul.js';
import type { Target } from '../types.js';
import { renderWgslAttention } from './attention.js';
import { wgslFingerprint } from './fingerprint.js';
import { renderWgslMatmul } from './matmul.js';
import { wgslPackageFiles } from './package.js';
import { wgslRunnerFor } from './runner.js';
import { GPU_LIMITS } from '../device-kind.js';

/**
 * The WGSL target (WebGPU): kernel.wgsl for matmul in every weight format and for attention over
 * every KV cache format (split-KV decode with a merge dispatch, flash prefill), run through Dawn
 * (the `webgpu` package) on a GPU when one is present, else on SwiftShader.
 */
export const wgslTarget: Target = {
  name: 'wgsl',
  title: 'WGSL',
  defaultDevice: 'webgpu',
  planners: { matmul: wgslMatmulPlanner, attention: wgslAttentionPlanner },
  needs: [GPU_LIMITS],
  // The adapter that times the kernels here (a GPU, or SwiftShader), as Dawn reports it.
  fingerprint: (device) => wgslFingerprint(device),
  backend: {
    // KV caches: one partial each in templates/wgsl/attention/kv/.
    capabilities: { ops: ['matmul', 'attention'], formats: ['q35', 'q4', 'q8', 'q4_0', 'q8_0', 'f16'], kvCaches: ['f16', 'q8', 'q8_0', 'q4_0'], runtimeKvLength: true },
    renderers: { 'wgsl-matmul': renderWgslMatmul, 'wgsl-attention': renderWgslAttention },
    runnerFor: (plan) => wgslRunnerFor(plan),
    packageFiles: wgslPackageFiles,
  },
};
