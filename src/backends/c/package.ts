import { formatShape } from '../../ir/validate.js';
import type { PlanOf } from '../../plan/types.js';
import { templateSet } from '../../render/templates.js';
import { KGEN_VERSION } from '../../version.js';
import { cFamilyPackage } from '../c-family.js';
import type { PackageBuild, PackagedKernel } from '../types.js';
import { attentionUsageView } from './attention.js';
import { C_TOOLCHAINS } from './toolchain.js';

/** Compiler flags a packaged kernel of `isa` builds with: the toolchain's, without link-only ones. */
function compileFlags(isa: string): string[] {
  return C_TOOLCHAINS[isa]!.flags.filter((f) => f !== '-static');
}

/**
 * The root files of a package of C kernels: a Makefile (libkgen_kernels.a), a CMakeLists.txt (the
 * kgen_kernels target), kgen_kernels.h including every kernel's header, and a usage snippet.
 */
export function cPackageFiles(kernels: readonly PackagedKernel[]): PackageBuild {
  const templates = templateSet('package/c');
  const views = kernels.map((k) => {
    const plan = k.plan as PlanOf<'cpu-matmul' | 'cpu-attention'>;
    const flags = compileFlags(plan.params.isa);
    return { dir: k.dir, symbol: k.symbol, opName: plan.op.name, shape: formatShape(plan.shape), isa: plan.params.isa, flags: flags.join(' '), cmakeFlags: flags.join(';') };
  });
  const first = kernels[0]!;
  const attention = first.plan.family === 'cpu-attention' ? attentionUsageView(first.plan, first.symbol) : undefined;
  return cFamilyPackage(templates, kernels, { version: KGEN_VERSION, kernels: views }, {
    build: ['make                    # libkgen_kernels.a', 'cc -O2 -c my_program.c && cc my_program.o libkgen_kernels.a -lm -o my_program'],
    usageTemplate: attention ? 'usage_attention.c' : 'usage.c',
    usageLanguage: 'c',
    ...(attention ? { usageView: attention } : {}),
  });
}
