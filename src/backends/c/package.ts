import { formatShape } from '../../ir/validate.js';
import { planOfFamilies } from '../../plan/index.js';
import { templateSet } from '../../render/templates.js';
import { KGEN_VERSION } from '../../version.js';
import { cFamilyPackage } from '../c-family.js';
import type { PackageBuild, PackageContext, PackagedKernel } from '../types.js';
import { attentionUsageView } from './attention.js';
import { C_TOOLCHAINS } from './toolchain.js';

/** Compiler flags a packaged kernel of `isa` builds with: the toolchain's, without link-only ones. */
function compileFlags(isa: string): string[] {
  return C_TOOLCHAINS[isa]!.flags.filter((f) => f !== '-static');
}

/**
 * The root files of a package of C kernels: a Makefile (libLIBRARY.a), a CMakeLists.txt (the
 * LIBRARY target, aliased kgen_kernels unless a package added before took that name), LIBRARY.h
 * including every kernel's header (and kgen_kernels.h including it), and a usage snippet; LIBRARY is
 * `packageLibraryName` of the package's name.
 */
export function cPackageFiles(kernels: readonly PackagedKernel[], pkg: PackageContext): PackageBuild {
  const templates = templateSet('package/c');
  const views = kernels.map((k) => {
    const plan = planOfFamilies(k.plan, ['cpu-matmul', 'cpu-attention'], 'a C package');
    const flags = compileFlags(plan.params.isa);
    return { dir: k.dir, symbol: k.symbol, opName: plan.op.name, shape: formatShape(plan.shape), isa: plan.params.isa, flags: flags.join(' '), cmakeFlags: flags.join(';') };
  });
  const first = kernels[0]!;
  const attention = first.plan.family === 'cpu-attention' ? attentionUsageView(first.plan, first.symbol) : undefined;
  return cFamilyPackage(templates, kernels, pkg, { version: KGEN_VERSION, kernels: views }, {
    build: (library) => [`make                    # lib${library}.a`, `cc -O2 -c my_program.c && cc my_program.o lib${library}.a -lm -o my_program`],
    usageTemplate: attention ? 'usage_attention.c' : 'usage.c',
    usageLanguage: 'c',
    ...(attention ? { usageView: attention } : {}),
  });
}
