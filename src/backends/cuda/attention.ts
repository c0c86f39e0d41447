import { configInUse } from '../../plan/index.js';
import { kvLenText } from '../../plan/attention-common.js';
import { alignUp } from '../../plan/common.js';
import type { AttentionOp } from '../../ir/types.js';
import type { PlanOf } from '../../plan/types.js';
import { ATTENTION_ABI_VERSION, unusedScalesText } from '../../ops/attention.js';
import { commentText } from '../../render/comment-text.js';
import { templateSet } from '../../render/templates.js';
import { attentionHeaderView } from '../kernel-header.js';
import type { RenderContext, RenderedKernel } from '../types.js';
import { cudaKitView, renderCudaFiles } from './view.js';

type CudaAttentionPlan = PlanOf<'cuda-attention'>;

const VARIANT_TEXT: Record<CudaAttentionPlan['variant'], string> = {
  splitk_decode: 'split-KV decode (the KV sequence split across blocks, all query heads of a GQA group per block, merged by log-sum-exp), SIMT',
  flash_prefill: 'flash prefill (query tiles x key tiles, online softmax), SIMT',
  flash_prefill_mma: 'flash prefill (query tiles x key tiles, online softmax), tensor cores (mma.sync m16n8k16)',
};

const ONE_SPLIT_TEXT = 'decode in one split (all query heads of a GQA group per block, which writes O: no workspace, no merge), SIMT';

/** The KV cache in the kernel's header comment (opText) and in kernel.h's description of k and v. */
const KV_CACHE_TEXT: Record<AttentionOp['kvCache'], (op: AttentionOp) => string> = {
  f16: () => 'f16',
  q8: (op) => `q8 (int8, one f16 scale per ${op.kvGroupSize} values)`,
  q8_0: () => 'ggml q8_0 (blocks of 32 int8 codes and their f16 scale)',
  q4_0: () => 'ggml q4_0 (blocks of 32 nibbles and their f16 scale)',
};
const KV_TEXT: Record<AttentionOp['kvCache'], string> = {
  f16: 'f16',
  q8: 'int8 codes (one byte a value; docs/formats.md, kgen q8)',
  q8_0: 'ggml q8_0 blocks, 34 bytes per 32 values (docs/formats.md)',
  q4_0: 'ggml q4_0 blocks, 18 bytes per 32 values (docs/formats.md)',
};

/** `a, b or c`. */
function orList(names: string[]): string {
  return names.length < 2 ? names.join('') : `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`;
}

/** View fields the attention templates print: the plan's params plus names, types and byte sizes. */
function view(plan: CudaAttentionPlan, ctx: RenderContext, templateHash: string) {
  const op = plan.op;
  const p = plan.params;
  const kit = cudaKitView(plan, ctx, templateHash);
  const qElem = op.q === 'f16' ? 2 : 4;
  const oElem = op.o === 'f16' ? 2 : 4;
  const rowsKv = p.B * p.Hkv * p.Skv;
  const kvBytes = rowsKv * p.kvRowBytes;
  const kvScaleBytes = rowsKv * p.kvScaleRowBytes;
  const q8 = op.kvCache === 'q8';
  // Where V starts in the run kit's one K-and-V allocation: past K, 256-byte aligned.
  const vOffset = alignUp(kvBytes, 256);
  // Only a decode plan with more than one split has partials to merge through the workspace.
  const merge = p.kernel === 'splitk_decode' && p.merge;
  return {
    ...p,
    ...kit,
    version: ctx.version,
    irHash: ctx.irHash,
    command: ctx.command,
    opName: op.name,
    configJson: commentText(JSON.stringify(configInUse(plan))),
    opText: `grouped-query attention${op.causal ? ' (causal)' : ''}, Q ${op.q}, KV cache ${KV_CACHE_TEXT[op.kvCache](op)}, O ${op.o}`,
    variantText: p.kernel === 'splitk_decode' && !p.merge ? ONE_SPLIT_TEXT : VARIANT_TEXT[plan.variant],
    // The PTX wrappers of mma.sync (templates/cuda/ptx.hbs) are rendered only where a kernel uses them.
    mma: p.kernel === 'flash_prefill_mma',
    kvText: KV_TEXT[op.kvCache],
    softmaxText: attentionHeaderView(plan, ctx).softmaxText,
    kvPartial: `attention/kv/${op.kvCache}`,
    kernelPartial: `attention/${plan.variant}`,
    mergeName: `${kit.fn}_merge`,
    causalFlag: op.causal ? 1 : 0,
    scaleLog2Text: `${p.scaleLog2.toPrecision(9)}f`,
    hasWorkspace: merge,
    abiVersion: ATTENTION_ABI_VERSION,
    unusedScalesText: unusedScalesText(op.kvCache),
    // The pointers the launcher refuses as NULL: the scales only where the format needs them.
    nullRefusedText: orList(['k', 'v', ...(kvScaleBytes ? ['k_scales', 'v_scales'] : []), ...(merge ? ['workspace'] : [])]),
    // A run-time KV length (op.kvLength 'runtime'): the device functions take kvLen and bound their
    // keys by it where a fixed-length kernel has KG_SKV; the launcher takes kv_len (int64_t).
    kvLenParam: p.runtimeKvLength ? ', int kvLen' : '',
    kvLenArg: p.runtimeKvLength ? ', kvLen' : '',
    kvEnd: p.runtimeKvLength ? 'kvLen' : 'KG_SKV',
    workspaceBytes: plan.launch.workspaceBytes ?? 0,
    qCType: op.q === 'f16' ? 'uint16_t' : 'float',
    oCType: op.o === 'f16' ? 'uint16_t' : 'float',
    qDevType: op.q === 'f16' ? '__half' : 'float',
    oDevType: op.o === 'f16' ? '__half' : 'float',
    outputIsF16: op.o === 'f16',
    inputFiles: ['q.bin', 'k.bin', 'v.bin', ...(q8 ? ['k_scales.bin', 'v_scales.bin'] : []), ...(p.runtimeKvLength ? ['kv_len.bin'] : [])].join(', '),
    qBytes: p.B * p.Hq * p.Sq * p.D * qElem,
    kvBytes,
    kvScaleBytes,
    vOffset,
    outBytes: p.B * p.Hq * p.Sq * p.D * oElem,
    outElemBytes: oElem,
    copyBytes: vOffset + kvBytes,
  };
}

/** What the ABI says about kv_len, the positions a call of a run-time-length kernel reads. */
function kvLenDoc(p: CudaAttentionPlan['params']): string {
  return kvLenText(p, 'returns cudaErrorInvalidValue, launching nothing,');
}

/** kernel.cu (the kernels and their launcher), kernel.h and the run kit of a CUDA attention plan. */
export function renderCudaAttention(plan: CudaAttentionPlan, ctx: RenderContext): RenderedKernel {
  const templates = templateSet('cuda');
  const v = view(plan, ctx, templates.hash);
  const files = renderCudaFiles(templates, 'attention/', v, [v.kvPartial, v.kernelPartial], plan.variant);
  const fn = v.fn;
  const merge = plan.launch.secondPass;
  const launches = `grid (${v.gridExprText}) of ${v.threads} threads with ${v.smemBytes} bytes of ${v.smemKind} shared memory${merge ? `, then ${merge.what}: ${merge.grid[0]} blocks of ${merge.block[0]} threads` : ''}`;
  return {
    files,
    mainFile: 'kernel.cu',
    templateHash: templates.hash,
    build: v.buildHint,
    arch: plan.params.arch,
    abi: [
      {
        symbol: fn,
        signature: `cudaError_t ${fn}(const ${v.qCType} *q, const uint8_t *k, const uint16_t *k_scales, const uint8_t *v, const uint16_t *v_scales, ${v.oCType} *o, void *workspace, ${plan.params.runtimeKvLength ? 'int64_t kv_len, ' : ''}cudaStream_t stream)`,
        doc: `enqueues O = attention(Q, K, V) on stream (device pointers; k, v${v.hasWorkspace ? ' and workspace' : ''} 16-byte aligned): ${launches}; ${v.hasWorkspace ? `workspace: ${v.workspaceBytes} bytes` : 'workspace unused'}${v.unusedScalesText ? `; k_scales, v_scales: ${v.unusedScalesText}` : ''}${plan.params.runtimeKvLength ? `; ${kvLenDoc(plan.params)}` : ''}`,
      },
    ],
  };
}
