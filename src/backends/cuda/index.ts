import { cudaAttentionPlanner } from '../../plan/cuda-attention.js';
import { CUDA_WARP_LANES, MMA_M16N8K16_MIN_ARCH, tensorCoresMatchArch } from '../../plan/cuda-common.js';
import { cudaMatmulPlanner } from '../../plan/cuda-matmul.js';
import type { Target } from '../types.js';
import { cudaDeviceFingerprint } from './fingerprint.js';
import { cudaRunnerFor } from './gpu-runner.js';
import { renderCudaAttention } from './attention.js';
import { renderCudaMatmul } from './matmul.js';
import { cudaPackageFiles } from './package.js';
import { ptxasResources } from './resources.js';
import { cudaRunResults } from './run-result.js';
import { GPU_LIMITS } from '../device-kind.js';

/**
 * The CUDA target: quantized matmul and attention as kernel.cu plus a launcher and a run kit,
 * compiled by nvcc; verified on the GPU present, else through kgen's CPU shim.
 */
export const cudaTarget: Target = {
  name: 'cuda',
  title: 'CUDA',
  defaultDevice: 'rtx4090',
  planners: { matmul: cudaMatmulPlanner, attention: cudaAttentionPlanner },
  needs: [
    GPU_LIMITS,
    { feature: 'an NVIDIA architecture (gpu.arch sm_XX)', has: (d) => /^sm_\d+$/.test(d.gpu?.arch ?? '') },
    // Every CUDA template reduces across warps of exactly CUDA_WARP_LANES lanes.
    { feature: `warps of ${CUDA_WARP_LANES} (gpu.warpSize, gpu.features.subgroupSizes [${CUDA_WARP_LANES}, ${CUDA_WARP_LANES}])`, has: (d) => d.gpu?.warpSize === CUDA_WARP_LANES && d.gpu.features?.subgroupSizes.every((n) => n === CUDA_WARP_LANES) },
    // A tensor-core instruction the arch lacks would plan kernels ptxas refuses for it.
    { feature: `tensor cores that match its gpu.arch (mma.m16n8k16.f16 in gpu.features.tensorCores needs sm_${MMA_M16N8K16_MIN_ARCH} or newer)`, has: tensorCoresMatchArch },
  ],
  fingerprint: (device, _space, gpus) => cudaDeviceFingerprint(device, gpus),
  // What `sh run.sh` next to an emitted kernel writes, for `kgen db import`.
  runResults: cudaRunResults,
  backend: {
    // KV caches: one partial each in templates/cuda/attention/kv/.
    capabilities: { ops: ['matmul', 'attention'], formats: ['q35', 'q4', 'q8', 'q4_0', 'q8_0', 'f16'], kvCaches: ['f16', 'q8', 'q8_0', 'q4_0'], runtimeKvLength: true },
    renderers: { 'cuda-matmul': renderCudaMatmul, 'cuda-attention': renderCudaAttention },
    // The GPU when one can run the plan's code (nvcc, the driver API, CUDA-event timing), else the
    // CPU shim, which says so in its name; the same rule whether or not real times are wanted.
    runnerFor: (plan) => cudaRunnerFor(plan),
    resources: ptxasResources,
    packageFiles: cudaPackageFiles,
  },
};
