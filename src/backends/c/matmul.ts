import { CPU_CACHE_LINE_BYTES } from '../../device/profile.js';
import { KgenError } from '../../errors.js';
import type { MatmulOp } from '../../ir/types.js';
import type { PlanOf } from '../../plan/types.js';
import { Q35_LOOKUP_A, Q35_LOOKUP_B, q35LayoutView } from '../../quant/q35.js';
import { templateSet } from '../../render/templates.js';
import { ACTIVATION_EXPR, C_WORKSPACE_ALIGNMENT, FORMAT_NAMES } from '../c-family.js';
import { HARNESS_EXIT, MAX_TIMED_THREADS } from '../harness.js';
import { matmulHeaderView } from '../kernel-header.js';
import type { RenderContext, RenderedKernel } from '../types.js';
import { activationOrder, type DecodeScheme } from './act-order.js';
import { C_TOOLCHAINS } from './toolchain.js';

type CpuMatmulPlan = PlanOf<'cpu-matmul'>;

/** How each weight format's bytes are decoded: one decode partial per scheme and ISA. */
const DECODE_SCHEME: Record<MatmulOp['weight']['format'], DecodeScheme> = {
  q35: 'q35',
  q4: 'nibble',
  q4_0: 'nibble',
  q8: 'int8',
  q8_0: 'int8',
  f16: 'none',
};

/**
 * Variants that build on AVX2's templates (helpers, quantizer, micro-kernels, decoders):
 * - `own`: the prefix of the micro-kernel and decoder of their kernels with neither block step,
 *   row sums nor panel (AVX-512 has its own; AVX-VNNI takes AVX2's);
 * - `microDecoders`: by decode scheme, the suffix of a decoder (`decode/<scheme>_<suffix>`) that
 *   offers the AVX2 micro-kernel's interface (kg_decode, kg_decode_pair and KG_DOT over two 256-bit
 *   vectors) with codes for vpdpbusd, so the block-step and row-sums kernels (and AVX-VNNI's int8
 *   micro-kernel) use it; other schemes take AVX2's. Each gives unsigned codes (value + 128) where
 *   AVX2's are signed, and the micro-kernel takes 128 x sum(x) off: q3.5's AVX-512 decode (ternary
 *   logic) is 7% faster in the row-sums kernel than AVX2's with a signed VNNI dot (|w| and x with
 *   w's sign); AVX-VNNI's q3.5 (AVX2's decoder, tables + 128) 9% faster; int8 weights with the sign
 *   bit flipped (`decode/int8_vnni`) 5% (q8) and 23-40% (q8_0, block steps) faster than AVX2's maddubs
 *   dots on AVX-VNNI, 7-20% (q8_0) on AVX-512 (L2, one Zen 5 core; docs/PERFORMANCE.md);
 * - `dots`: the prefix of the `_dot` partial with their dot products (both have 256-bit vpdpbusd:
 *   isa/vnni_*, with KG_DPBUSD256 defined by each variant's includes; isa/avx512_dot adds AVX-512's
 *   512-bit kernels to it);
 * - `widePanel`: the prefix of the micro-kernel of a panel of two 8-row slices: AVX-512's own (one
 *   512-bit vector for both), or AVX2's (one 256-bit vector a slice, with the ISA's panel step).
 */
const AVX2_BASED: Readonly<Record<string, { own: string; microDecoders?: Partial<Record<DecodeScheme, string>>; dots: string; widePanel: string }>> = {
  avx512: { own: 'avx512', microDecoders: { q35: 'avx512', int8: 'vnni' }, dots: 'avx512', widePanel: 'avx512' },
  avxvnni: { own: 'avx2', microDecoders: { q35: 'avxvnni', int8: 'vnni' }, dots: 'vnni', widePanel: 'avx2' },
};

/**
 * The template names a matmul plan renders through, and `decoder`: the suffix of the decoder partial
 * (`decode/<scheme>_<decoder>`: an ISA, or `vnni`) the kernel uses, which fixes its activation
 * order. AVX-512 and AVX-VNNI plans on the block step, the row-sums kernel or the panel run the AVX2
 * micro-kernel and decoders (their `microDecoders` where they have one) with their 256-bit VNNI dot
 * products (isa/vnni_*); AVX-VNNI's other kernels are AVX2's, whose int8-activation micro-kernel
 * takes the same dot products.
 */
export function matmulPartials(plan: CpuMatmulPlan): {
  micro: string;
  decode: string;
  includes: string;
  common: string;
  quant: string;
  panelStep?: string;
  stepDot?: string;
  dot?: string;
  decoder: string;
} {
  const op = plan.op;
  const isa = plan.params.isa;
  const kind = op.weight.format === 'f16' ? 'f16' : plan.params.actQuant ? 'q8' : 'f32';
  const scheme = DECODE_SCHEME[op.weight.format];
  // AVX-512 and AVX-VNNI builds include AVX2 (and F16C), whose helpers and activation quantizer serve them.
  const based = AVX2_BASED[isa];
  const shared = based ? 'avx2' : isa;
  // The prefixes of the dot-product partials: isa/<dots>_dot, isa/<steps>_step_dot and _panel_step.
  const dots = based?.dots ?? shared;
  const steps = based ? 'vnni' : shared;
  if (plan.params.panel) {
    // The panel path: panel decoders in AVX2 intrinsics (a slice of 8 rows each), and the AVX2
    // micro-kernel with the ISA's step, or for panels of two slices the ISA's `widePanel` one.
    const micro = plan.params.panelSlices > 1 && based ? based.widePanel : shared;
    return {
      micro: `isa/${micro}_panel`,
      decode: `decode/${scheme}_panel`,
      includes: `isa/${isa}_includes`,
      common: `isa/${shared}_common`,
      quant: `isa/${shared}_quant`,
      panelStep: micro === shared ? `isa/${steps}_panel_step${plan.params.panelSignedCodes ? '_signed' : ''}` : undefined,
      decoder: shared,
    };
  }
  if (plan.params.stepBlocks || plan.params.rowSums) {
    // The block step and the row-sums kernel: the AVX2 micro-kernel and decoders; the ISA gives
    // the dot products (and the block step's quad dot).
    const decoder = based?.microDecoders?.[scheme] ?? shared;
    return {
      micro: `isa/${shared}_q8`,
      decode: `decode/${scheme}_${decoder}`,
      includes: `isa/${isa}_includes`,
      common: `isa/${shared}_common`,
      quant: `isa/${shared}_quant`,
      stepDot: plan.params.stepBlocks ? `isa/${steps}_step_dot` : undefined,
      dot: `isa/${dots}_dot`,
      decoder,
    };
  }
  const own = based?.own ?? isa;
  // The AVX2 int8 micro-kernel of an AVX-VNNI build takes that ISA's own decoder where it has one
  // (its codes are what the VNNI dot products want); f32 micro-kernels want the values as they are.
  const decoder = (own === 'avx2' && kind === 'q8' && based?.microDecoders?.[scheme]) || own;
  return {
    micro: `isa/${own}_${kind}`,
    decode: scheme === 'none' ? 'decode/none' : `decode/${scheme}_${decoder}`,
    includes: `isa/${isa}_includes`,
    common: `isa/${shared}_common`,
    quant: `isa/${shared}_quant`,
    // The AVX2 int8 micro-kernel takes its dot products from a partial (AVX-VNNI's: vpdpbusd).
    dot: own === 'avx2' && kind === 'q8' ? `isa/${dots}_dot` : undefined,
    decoder,
  };
}

/** View fields the kernel, its header and the harness all print. */
/** Bytes a _rows call keeps on its thread's stack: the panel tile's codes and f32 scales, where the plan panels. */
function rowsStackBytes(p: CpuMatmulPlan['params']): number {
  return p.panel ? p.panelCodeBytes + 4 * p.panelScales : 0;
}

function sharedView(plan: CpuMatmulPlan, symbol: string | undefined) {
  const op = plan.op;
  const p = plan.params;
  const fn = symbol ?? `kgen_${op.name}`;
  return {
    ...p,
    fn,
    xCType: op.x === 'f16' ? 'uint16_t' : 'float',
    yCType: op.y === 'f16' ? 'uint16_t' : 'float',
    hasBias: op.epilogue.bias,
    hasResidual: op.epilogue.residual,
    weightBytes: p.N * p.rowBytes,
    rowsStackBytes: rowsStackBytes(p),
    workspaceAlignment: C_WORKSPACE_ALIGNMENT,
  };
}

/** kernel.c and kernel.h of a CPU matmul plan, and the harness verify and the tuner build around them. */
export function renderCMatmul(plan: CpuMatmulPlan, ctx: RenderContext): RenderedKernel {
  const op = plan.op;
  const p = plan.params;
  const templates = templateSet('c');
  const { decoder, ...parts } = matmulPartials(plan);
  for (const name of Object.values(parts).filter((n): n is string => n !== undefined)) {
    if (!templates.has(name)) {
      throw new KgenError({
        field: '--isa',
        problem: `the C backend has no ${p.isa} variant for ${FORMAT_NAMES[op.weight.format]} with ${p.actQuant ? 'int8' : 'f32'} activations (template ${name})`,
        expected: 'another --isa or config.actQuant',
        hint: 'run `kgen ops` for what each target supports',
      });
    }
  }
  const shared = sharedView(plan, ctx.symbol);
  const { fn, xCType, yCType } = shared;
  const tc = C_TOOLCHAINS[p.isa]!;
  const compileHint = `${tc.compiler} ${tc.flags.filter((f) => f !== '-static').join(' ')} -c kernel.c  (add -fopenmp for the threaded driver)`;
  const epilogueParts = [op.epilogue.activation !== 'none' ? op.epilogue.activation : '', op.epilogue.bias ? '+bias' : '', op.epilogue.residual ? '+residual' : ''].filter(Boolean);
  const view = {
    ...shared,
    ...matmulHeaderView(plan, ctx),
    FN: fn.toUpperCase(),
    guard: `${fn.toUpperCase()}_H`,
    actText: p.actQuant ? `int8 per ${p.actBlock} (prepared)` : 'f32',
    compileHint,
    xLoad: op.x === 'f16' ? 'kg_half(x[i])' : 'x[i]',
    yPack: op.y === 'f16' ? 'kg_f16_of(v)' : 'v',
    residualLoad: op.y === 'f16' ? 'kg_half(r[i])' : 'r[i]',
    f16Partial: `f16/${tc.f16}`,
    activationExpr: ACTIVATION_EXPR[op.epilogue.activation],
    epilogueText: epilogueParts.length ? `epilogue[${epilogueParts.join(' ')}]` : '',
    isaIncludes: parts.includes,
    quantPartial: parts.quant,
    xOrder: p.actQuant ? activationOrder(DECODE_SCHEME[op.weight.format], decoder, p.actBlock, p.panel)?.join(', ') : undefined,
    panelStepPartial: parts.panelStep,
    stepDotPartial: parts.stepDot,
    dotPartial: parts.dot,
    microPartial: parts.micro,
    decodePartial: parts.decode,
    commonPartial: parts.common,
    q35Layout: op.weight.format === 'q35' ? q35LayoutView() : undefined,
    q35TableA: Q35_LOOKUP_A.join(', '),
    q35TableB: Q35_LOOKUP_B.join(', '),
    cacheLine: CPU_CACHE_LINE_BYTES,
  };
  const files = {
    'kernel.c': templates.render('kernel.c', view),
    'kernel.h': templates.render('kernel.h', view),
  };
  const sig = (ret: string, name: string, args: string) => `${ret} ${name}(${args})`;
  const rowsArgs = `const void *workspace, const uint8_t *w, const float *bias, const ${yCType} *residual, ${yCType} *y, int64_t row_begin, int64_t row_end`;
  return {
    files,
    harnessFiles: { 'harness.c': renderHarness(plan, ctx.symbol) },
    templateHash: templates.hash,
    workspaceBytes: p.workspaceBytes,
    workspaceAlignment: C_WORKSPACE_ALIGNMENT,
    threadStackBytes: rowsStackBytes(p),
    build: compileHint,
    abi: [
      { symbol: `${fn}_workspace_size`, signature: sig('size_t', `${fn}_workspace_size`, 'void'), doc: `bytes of workspace (${p.workspaceBytes})` },
      { symbol: `${fn}_prepare`, signature: sig('void', `${fn}_prepare`, `const ${xCType} *x, void *workspace`), doc: 'prepares X once per call (quantizes activations when actQuant)' },
      { symbol: `${fn}_rows`, signature: sig('void', `${fn}_rows`, rowsArgs), doc: 'output rows [row_begin, row_end) for every activation row; disjoint ranges may run on different threads' },
      { symbol: fn, signature: sig('void', fn, `const ${xCType} *x, const uint8_t *w, const float *bias, const ${yCType} *residual, ${yCType} *y, void *workspace`), doc: 'prepare + all rows; OpenMP-parallel when compiled with -fopenmp' },
    ],
  };
}

/** Renders the test and timing harness that verify and the tuner compile next to kernel.c. */
function renderHarness(plan: CpuMatmulPlan, symbol: string | undefined): string {
  return templateSet('c').render('harness.c', { ...sharedView(plan, symbol), harnessExit: { ...HARNESS_EXIT, maxThreads: MAX_TIMED_THREADS } });
}

