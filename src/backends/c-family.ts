import type { EpilogueActivation, WeightFormatName } from '../ir/types.js';
import { matmulPlanOf, type MatmulPlan } from '../plan/index.js';
import { FORMATS } from '../quant/index.js';
import type { TemplateSet } from '../render/templates.js';
import type { PackageBuild, PackageContext, PackagedKernel } from './types.js';

/** How the C-family backends (C, CUDA) print the same things: format names and activations. */

/** What a C kernel's workspace address must be a multiple of: it holds f32 and int32 values, read as such. */
export const C_WORKSPACE_ALIGNMENT = 4;

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
export function packageUsageView(plan: MatmulPlan, symbol: string) {
  const { op, shape } = plan;
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
 * The name every C-family package shares: its CMake alias (taken by the first package added) and
 * its header `NAME.h`, which includes the package's own.
 */
const SHARED_NAME = 'kgen_kernels';

/** The header every C-family package has, naming no package: it includes the package's own. */
export const PACKAGE_HEADER = `${SHARED_NAME}.h`;

/**
 * The name of a C-family package's library, CMake target and umbrella header (`NAME.h`), from the
 * package's name: a C identifier starting `kgen_` (`layer-kernels` -> `kgen_layer_kernels`), so two
 * packages in one program differ in all three (and in the header's guard), and none takes a name
 * such as `m` that a system library has. Never the shared name (`kernels` and `kgen-kernels`, the
 * name a package gets where its own has no usable character, become `kgen_kernels_pkg`): a package's own target named `kgen_kernels`
 * failed CMake wherever another package added before had taken that alias, and its own header
 * `kgen_kernels.h` was shadowed by the other package's forwarding one on the include path.
 */
export function packageLibraryName(packageName: string): string {
  const id = packageName.replace(/^@/, '').replace(/[^A-Za-z0-9_]+/g, '_').replace(/^_+|_+$/g, '').toLowerCase();
  const library = id === 'kgen' || id.startsWith('kgen_') ? id : `kgen_${id}`;
  return library === SHARED_NAME ? `${SHARED_NAME}_pkg` : library;
}

/**
 * A C-family package's root files from the target's package templates (`Makefile`, `CMakeLists.txt`,
 * `LIBRARY.h` and `kgen_kernels.h` including it, and `usage.<ext>` for the README), given the view
 * the build files print and how to build. The view gains `library` (packageLibraryName) and the
 * header's `guard`. The usage snippet shows the first kernel: a matmul's by default, else the view
 * the backend gives (`usageView`).
 */
export function cFamilyPackage(
  templates: TemplateSet,
  kernels: readonly PackagedKernel[],
  pkg: PackageContext,
  targetView: object,
  how: { build: (library: string) => string[]; usageTemplate: string; usageLanguage: string; usageView?: object },
): PackageBuild {
  const first = kernels[0]!;
  const library = packageLibraryName(pkg.name);
  const header = `${library}.h`;
  const headers = `\`${header}\` declares every kernel (\`${PACKAGE_HEADER}\` includes it; a program using two kgen packages includes each one's own header, and links each one's library; their kernels' names must differ, as each kernel's symbols and header guard are named after it alone)`;
  const contents = `Each kernel's folder holds its source, its header (the ABI, shapes and weight layout, documented) and \`manifest.json\` (ABI, launch, buffers, budgets, tolerance, config and where it came from). ${headers}; the library is \`lib${library}.a\` (make) or the CMake target \`${library}\`.`;
  const view = { ...targetView, library, header, guard: `${library.toUpperCase()}_PACKAGE_H`, forwardTo: '' };
  const headerFiles: Record<string, string> = { [header]: templates.render('kgen_kernels.h', view), [PACKAGE_HEADER]: templates.render('kgen_kernels.h', { ...view, forwardTo: header }) };
  return {
    files: {
      Makefile: templates.render('Makefile', view),
      'CMakeLists.txt': templates.render('CMakeLists.txt', view),
      ...headerFiles,
    },
    contents,
    build: how.build(library),
    usage: templates.render(how.usageTemplate, how.usageView ?? packageUsageView(matmulPlanOf(first.plan, 'a C-family package\'s matmul usage snippet'), first.symbol)),
    usageLanguage: how.usageLanguage,
  };
}
