import { formatShape } from '../../ir/validate.js';
import type { PlanOf } from '../../plan/types.js';
import { FORMATS } from '../../quant/index.js';
import { templateSet } from '../../render/templates.js';
import { KGEN_VERSION } from '../../version.js';
import { FORMAT_NAMES } from '../c-family.js';
import type { PackageBuild, PackagedKernel } from '../types.js';
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
    const plan = k.plan as PlanOf<'cpu-matmul'>;
    const flags = compileFlags(plan.params.isa);
    return { dir: k.dir, symbol: k.symbol, opName: plan.op.name, shape: formatShape(plan.shape), isa: plan.params.isa, flags: flags.join(' '), cmakeFlags: flags.join(';') };
  });
  const view = { version: KGEN_VERSION, kernels: views };
  const first = kernels[0]!.plan as PlanOf<'cpu-matmul'>;
  const op = first.op;
  const epilogue = [op.epilogue.bias ? ' + bias' : '', op.epilogue.activation !== 'none' ? `, then ${op.epilogue.activation}` : '', op.epilogue.residual ? ', + residual' : ''].join('');
  const usage = templates.render('usage.c', {
    symbol: kernels[0]!.symbol,
    ...first.shape,
    xCType: op.x === 'f16' ? 'uint16_t' : 'float',
    yCType: op.y === 'f16' ? 'uint16_t' : 'float',
    hasBias: op.epilogue.bias,
    hasResidual: op.epilogue.residual,
    epilogueText: epilogue,
    formatName: FORMAT_NAMES[op.weight.format],
    formatVersion: FORMATS[op.weight.format].version,
  });
  return {
    files: {
      Makefile: templates.render('Makefile', view),
      'CMakeLists.txt': templates.render('CMakeLists.txt', view),
      'kgen_kernels.h': templates.render('kgen_kernels.h', view),
    },
    build: ['make                    # libkgen_kernels.a', 'cc -O2 -c my_program.c && cc my_program.o libkgen_kernels.a -lm -o my_program'],
    usage,
    usageLanguage: 'c',
  };
}
