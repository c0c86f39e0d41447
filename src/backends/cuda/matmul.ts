import type { PlanOf } from '../../plan/types.js';
import { codecOf } from '../../quant/index.js';
import { Q35_LOOKUP_A, Q35_LOOKUP_B, q35LayoutView } from '../../quant/q35.js';
import { templateSet } from '../../render/templates.js';
import { ACTIVATION_EXPR } from '../c-family.js';
import { matmulHeaderView } from '../kernel-header.js';
import type { RenderContext, RenderedKernel } from '../types.js';
import { cudaKitView, renderCudaFiles } from './view.js';

type CudaMatmulPlan = PlanOf<'cuda-matmul'>;

/** Decode partial (templates/cuda/decode/<scheme>.hbs) of each weight format. */
const CUDA_DECODE_SCHEME = { q35: 'q35', q4: 'nibble', q4_0: 'nibble', q8: 'int8', q8_0: 'int8', f16: 'f16' } as const;

/** Kernel partial of each plan variant (templates/cuda/<name>.hbs). */
const KERNEL_PARTIAL: Record<string, string> = { gemv: 'gemv', tiled_mma: 'tiled_mma', tiled_simt: 'tiled_simt' };

const VARIANT_TEXT: Record<string, string> = {
  gemv: 'gemv (warps stream weight rows through cp.async rings)',
  tiled_mma: 'tiled, tensor cores (mma.sync m16n8k16)',
  tiled_simt: 'tiled, SIMT FMA',
};

/** View fields every CUDA template prints: the plan's params plus names and types. */
function view(plan: CudaMatmulPlan, ctx: RenderContext, templateHash: string) {
  const op = plan.op;
  const p = plan.params;
  const scheme = CUDA_DECODE_SCHEME[op.weight.format];
  const xElem = op.x === 'f16' ? 2 : 4;
  const yElem = op.y === 'f16' ? 2 : 4;
  const { M, N, K } = p;
  const xAlign = p.kernel === 'gemv' ? xElem : p.xCopy;
  const epilogueParts = [op.epilogue.activation !== 'none' ? op.epilogue.activation : '', op.epilogue.bias ? '+bias' : '', op.epilogue.residual ? '+residual' : ''].filter(Boolean);
  return {
    ...p,
    ...matmulHeaderView(plan, ctx),
    ...cudaKitView(plan, ctx, templateHash),
    variantText: VARIANT_TEXT[plan.variant],
    inputFiles: ['x.bin', 'w.bin', ...(op.epilogue.bias ? ['bias.bin'] : []), ...(op.epilogue.residual ? ['residual.bin'] : [])].join(', '),
    xCType: op.x === 'f16' ? 'uint16_t' : 'float',
    yCType: op.y === 'f16' ? 'uint16_t' : 'float',
    xDevType: op.x === 'f16' ? '__half' : 'float',
    yDevType: op.y === 'f16' ? '__half' : 'float',
    outputIsF16: op.y === 'f16',
    hasBias: op.epilogue.bias,
    hasResidual: op.epilogue.residual,
    epilogueText: epilogueParts.length ? `epilogue[${epilogueParts.join(' ')}]` : '',
    activationExpr: ACTIVATION_EXPR[op.epilogue.activation],
    decodePartial: `decode/${scheme}`,
    fragPartial: `decode/${scheme}_mma`,
    kernelPartial: KERNEL_PARTIAL[plan.variant],
    q35Tables: [...Q35_LOOKUP_A, ...Q35_LOOKUP_B].map((v) => `${v}.0f`).join(', '),
    scaleBytes: codecOf(op.weight).scaleBytes,
    q35Layout: op.weight.format === 'q35' ? q35LayoutView() : undefined,
    xAlign,
    xAlignMask: xAlign - 1,
    xBytes: M * K * xElem,
    outBytes: M * N * yElem,
    outElemBytes: yElem,
    copyBytes: p.weightBytes,
    biasBytes: op.epilogue.bias ? N * 4 : 0,
    residualBytes: op.epilogue.residual ? M * N * yElem : 0,
  };
}

/** kernel.cu, its launcher header and the run kit (kgen_run.cu, run.sh) of a CUDA matmul plan. */
export function renderCudaMatmul(plan: CudaMatmulPlan, ctx: RenderContext): RenderedKernel {
  const op = plan.op;
  const templates = templateSet('cuda');
  const v = view(plan, ctx, templates.hash);
  const files = renderCudaFiles(templates, '', v, [v.decodePartial, v.kernelPartial ?? 'no kernel template'], plan.variant);
  const fn = v.fn;
  return {
    files,
    mainFile: 'kernel.cu',
    templateHash: templates.hash,
    build: v.buildHint,
    arch: String(plan.params.arch),
    abi: [
      {
        symbol: fn,
        signature: `cudaError_t ${fn}(const ${v.xCType} *x, const uint8_t *w, const float *bias, const ${v.yCType} *residual, ${v.yCType} *y, cudaStream_t stream)`,
        doc: `enqueues Y = ${v.epilogueText}(X . W^T) on stream (device pointers; x ${v.xAlign}-byte and w 16-byte aligned): grid (${v.gridExprText}) of ${plan.params.threads} threads, ${plan.params.smemBytes} bytes of ${v.smemKind} shared memory${op.epilogue.bias ? '' : '; bias unused'}${op.epilogue.residual ? '' : '; residual unused'}`,
      },
    ],
  };
}

