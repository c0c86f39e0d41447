import { cpuAttentionPlanner } from '../../plan/cpu-attention.js';
import { cpuMatmulPlanner } from '../../plan/cpu-matmul.js';
import type { Target } from '../types.js';
import { renderCAttention } from './attention.js';
import { measureReadBandwidth } from './bandwidth.js';
import { cFingerprint } from './fingerprint.js';
import { renderCMatmul } from './matmul.js';
import { cPackageFiles } from './package.js';
import { cRunner, emulated } from './runner.js';
import { C_TOOLCHAINS, C_VARIANTS } from './toolchain.js';
import { CPU_LIMITS } from '../device-kind.js';
import { InternalError } from '../../errors.js';

/**
 * The C target: C with intrinsics for one ISA per variant (AVX-512, AVX2, NEON, scalar), compiled
 * by the real compiler and run natively or under qemu-user.
 */
export const cTarget: Target = {
  name: 'c',
  title: 'C',
  defaultDevice: 'host',
  planners: { matmul: cpuMatmulPlanner(C_VARIANTS), attention: cpuAttentionPlanner(C_VARIANTS) },
  needs: [CPU_LIMITS],
  variants: {
    ...C_VARIANTS,
    all: Object.keys(C_TOOLCHAINS),
    describe(isa) {
      const tc = C_TOOLCHAINS[isa]!;
      const needs = tc.needs.length ? `a device with ${tc.needs.join(', ')}` : 'any CPU';
      return `${isa} needs ${needs}${emulated(tc) ? `; its kernels build with ${tc.compiler} and run under ${tc.runner![0]} here` : ''}`;
    },
  },
  fingerprint: (device, space) => cFingerprint(device, space),
  measureBandwidth: measureReadBandwidth,
  backend: {
    capabilities: { ops: ['matmul', 'attention'], formats: ['q35', 'q4', 'q8', 'q4_0', 'q8_0', 'f16'], runtimeKvLength: true },
    renderers: { 'cpu-matmul': renderCMatmul, 'cpu-attention': renderCAttention },
    runnerFor(plan) {
      // Every C plan names its ISA variant; the runner builds and runs with that variant's toolchain.
      if (!('isa' in plan.params) || typeof plan.params.isa !== 'string') throw new InternalError(`a ${plan.family} plan reached the C runner`);
      return cRunner(plan.params.isa);
    },
    packageFiles: cPackageFiles,
  },
};
