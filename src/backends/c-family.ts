import type { EpilogueActivation, MatmulOp, Shape, WeightFormatName } from '../ir/types.js';
import { FORMATS } from '../quant/index.js';
import type { TemplateSet } from '../render/templates.js';
import type { PackageBuild, PackagedKernel } from './types.js';

/** How the C-family backends (C, CUDA) print the same things: format names and activations. */

export const FORMAT_NAMES: Record<WeightFormatName, string> = {
  q35: 'q3.5', q4: 'q4', q8: 'q8', q4_0: 'ggml q4_0', q8_0: 'ggml q8_0', f16: 'f16',
};

/** Each epilogue activation as a C expression of the float `v` (GELU in its tanh form, as the reference). */
export const ACTIVATION_EXPR: Record<EpilogueActivation, string> = {
  none: 'v',
  silu: 'v / (1.0f + expf(-v))',
  gelu: '0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)))',
};

/**
 * What a C-family package's usage snippet prints about its first kernel: the symbol, shape, C types
 * of X and Y, the epilogue's optional inputs and words, and the weight format and layout version.
 */
export function packageUsageView(op: MatmulOp, shape: Shape, symbol: string) {
  const epilogue = [op.epilogue.bias ? ' + bias' : '', op.epilogue.activation !== 'none' ? `, then ${op.epilogue.activation}` : '', op.epilogue.residual ? ', + residual' : ''].join('');
  return {
    symbol,
    symbolUpper: symbol.toUpperCase(),
    ...shape,
    xCType: op.x === 'f16' ? 'uint16_t' : 'float',
    yCType: op.y === 'f16' ? 'uint16_t' : 'float',
    hasBias: op.epilogue.bias,
    hasResidual: op.epilogue.residual,
    epilogueText: epilogue,
    formatName: FORMAT_NAMES[op.weight.format],
    formatVersion: FORMATS[op.weight.format].version,
  };
}

/**
 * A C-family package's root files from the target's package templates (`Makefile`, `CMakeLists.txt`,
 * `kgen_kernels.h`, and `usage.<ext>` for the README), given the view the build files print and
 * how to build. The usage snippet shows the first kernel: a matmul's by default, else the view the
 * backend gives (`usageView`).
 */
export function cFamilyPackage(
  templates: TemplateSet,
  kernels: readonly PackagedKernel[],
  view: object,
  how: { build: string[]; usageTemplate: string; usageLanguage: string; usageView?: object },
): PackageBuild {
  const contents = "Each kernel's folder holds its source, its header (the ABI, shapes and weight layout, documented) and `manifest.json` (ABI, launch, buffers, budgets, tolerance, config and where it came from).";
  const first = kernels[0]!;
  return {
    files: {
      Makefile: templates.render('Makefile', view),
      'CMakeLists.txt': templates.render('CMakeLists.txt', view),
      'kgen_kernels.h': templates.render('kgen_kernels.h', view),
    },
    contents,
    build: how.build,
    usage: templates.render(how.usageTemplate, how.usageView ?? packageUsageView(first.plan.op as MatmulOp, first.plan.shape, first.symbol)),
    usageLanguage: how.usageLanguage,
  };
}
