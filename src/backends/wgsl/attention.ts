import { sumBytes } from '../../plan/common.js';
import type { AttentionOp } from '../../ir/types.js';
import type { PlanOf } from '../../plan/types.js';
import { ATTENTION_ARGUMENTS, unusedScalesText } from '../../ops/attention.js';
import { templateSet } from '../../render/templates.js';
import { F32_ABS_MASK, F32_INF_BITS } from '../exp2-poly.js';
import { attentionHeaderView } from '../kernel-header.js';
import type { BindingInterface, RenderContext, RenderedKernel, WgslPass } from '../types.js';
import { wgslLimits, wgslLoaderFiles } from './loader.js';

type WgslAttentionPlan = PlanOf<'wgsl-attention'>;

const VARIANT_TEXT: Record<WgslAttentionPlan['variant'], string> = {
  splitk_decode: 'split-KV decode (the KV sequence split across workgroups, all query heads of a GQA group per workgroup, merged by log-sum-exp in a second dispatch)',
  flash_prefill: 'flash prefill (query tiles x key tiles, online softmax)',
};

const KV_TEXT: Record<AttentionOp['kvCache'], string> = {
  f16: 'f16',
  q8: 'kgen q8 (int8 codes, f16 scales in k_scales/v_scales)',
  q8_0: 'ggml q8_0 blocks',
  q4_0: 'ggml q4_0 blocks',
};

/** The masked score: far below any real score (|scores| stay far from 1e30), finite. */
const MASKED_SCORE = '-1.0e30';

type Binding = BindingInterface['bindings'][number];

/** The uniform kv_len of a run-time-length kernel: one u32 (WGSL `KgLen`). */
const KV_LEN_BYTES = 4;

/**
 * The bindings, numbered in the order of every target's attention arguments (`ATTENTION_ARGUMENTS`):
 * Q, K, K's scales, V, V's scales (the scales for kgen q8 only: other caches bind none), O; then the
 * workspace (decode only), storage buffers all, and with a run-time KV length the uniform kv_len.
 * Sizes are whole words (WebGPU binds multiples of 4 bytes; the runner and callers zero-pad).
 */
function bindings(plan: WgslAttentionPlan): Binding[] {
  const p = plan.params;
  const scaled = p.kvScaleRowBytes > 0;
  const tensors: Record<(typeof ATTENTION_ARGUMENTS)[number], Omit<Binding, 'binding' | 'name' | 'tensor'> | undefined> = {
    q: { access: 'read', offset: 0, bytes: p.qBytes },
    k: { access: 'read', offset: 0, bytes: p.kvBytes },
    k_scales: scaled ? { access: 'read', offset: 0, bytes: p.kvScaleBytes } : undefined,
    v: { access: 'read', offset: 0, bytes: p.kvBytes },
    v_scales: scaled ? { access: 'read', offset: 0, bytes: p.kvScaleBytes } : undefined,
    o: { access: 'read_write', offset: 0, bytes: p.oBytes },
  };
  const list: Omit<Binding, 'binding'>[] = ATTENTION_ARGUMENTS.flatMap((tensor) => {
    const b = tensors[tensor];
    return b ? [{ name: `kg_${tensor}`, tensor, ...b }] : [];
  });
  if (p.kernel === 'splitk_decode') list.push({ name: 'kg_ws', tensor: 'workspace', access: 'read_write', offset: 0, bytes: p.workspaceBytes });
  if (p.runtimeKvLength) list.push({ name: 'kg_len', tensor: 'kv_len', access: 'uniform', offset: 0, bytes: KV_LEN_BYTES });
  return list.map((b, binding) => ({ binding, ...b }));
}

/** WGSL element type of each binding: Q and O of f16 are two values to a word; K, V and scales are bytes read as words. */
function elementType(op: AttentionOp, tensor: string): string {
  if (tensor === 'kv_len') return 'u32';
  if (tensor === 'q') return op.q === 'f16' ? 'u32' : 'f32';
  if (tensor === 'o') return op.o === 'f16' ? 'u32' : 'f32';
  if (tensor === 'workspace') return 'f32';
  return 'u32';
}

/** The dispatches of one call: the attention kernel, then (decode) the merge. */
function passes(plan: WgslAttentionPlan, entry: string, binds: Binding[]): WgslPass[] {
  const p = plan.params;
  const launch = plan.launch;
  const numbers = (tensors: string[]) => binds.filter((b) => tensors.includes(b.tensor)).map((b) => b.binding);
  const first: WgslPass = {
    entry,
    what: VARIANT_TEXT[plan.variant],
    workgroupSize: [p.invocations, 1, 1],
    dispatch: { expr: launch.gridExpr!, grid: launch.grid! },
    bindings: numbers(['q', 'k', 'k_scales', 'v', 'v_scales', p.kernel === 'splitk_decode' ? 'workspace' : 'o', 'kv_len']),
  };
  const merge = launch.secondPass;
  if (!merge) return [first];
  return [first, { entry: `${entry}_merge`, what: merge.what, workgroupSize: merge.block, dispatch: { expr: merge.gridExpr, grid: merge.grid }, bindings: numbers(['workspace', 'o']) }];
}

/** kernel.wgsl (both entry points of decode), its loader and the run description of a WGSL attention plan. */
export function renderWgslAttention(plan: WgslAttentionPlan, ctx: RenderContext): RenderedKernel {
  const op = plan.op;
  const p = plan.params;
  const templates = templateSet('wgsl');
  const entry = ctx.symbol ?? `kgen_${op.name}`;
  const binds = bindings(plan);
  const list = passes(plan, entry, binds);
  const view = {
    ...p,
    ...attentionHeaderView(plan, ctx),
    entry,
    mergeEntry: `${entry}_merge`,
    opText: `grouped-query attention${op.causal ? ' (causal)' : ''}, Q ${op.q}, KV cache ${KV_TEXT[op.kvCache]}, O ${op.o}`,
    variantText: VARIANT_TEXT[plan.variant],
    kvText: KV_TEXT[op.kvCache],
    kvPartial: `attention/kv/${op.kvCache}`,
    kernelPartial: `attention/${plan.variant}`,
    bindings: binds,
    storageBindings: binds.filter((b) => b.access !== 'uniform').map((b) => ({ ...b, type: elementType(op, b.tensor) })),
    kvLenBinding: binds.find((b) => b.tensor === 'kv_len')?.binding,
    // With a run-time length the call's kv_len (kg_kv_len()) stands where the capacity did.
    kvLenExpr: p.runtimeKvLength ? 'kg_kv_len()' : 'KG_SKV',
    causalOffsetExpr: p.runtimeKvLength ? '(i32(kg_kv_len()) - i32(KG_SQ))' : 'KG_CAUSAL_OFFSET',
    passes: list.map((x) => ({ ...x, exprText: x.dispatch.expr.join(', '), gridText: x.dispatch.grid.join(', '), invocations: x.workgroupSize[0] })),
    hasScales: p.kvScaleRowBytes > 0,
    qF16: op.q === 'f16',
    oF16: op.o === 'f16',
    scaleLog2Text: p.scaleLog2.toPrecision(9),
    maskedText: MASKED_SCORE,
    absMaskText: `0x${F32_ABS_MASK.toString(16)}u`,
    infBitsText: `0x${F32_INF_BITS.toString(16)}u`,
    rowQuads: p.rows * p.dQuads,
    tileScores: p.rows * p.keys,
    tileWords: p.keys * p.slotWords,
    // WGSL has no zero-sized arrays: a format without scales still declares none (hasScales).
    scaleTileWords: p.keys * p.scaleSlotWords,
    statFloats: 3 * p.rows,
  };
  const wgsl = templates.render('attention/kernel.wgsl', view);
  const sharedBytes = sumBytes(plan.buffers, 'shared');
  const maxInvocations = Math.max(...list.map((x) => x.workgroupSize[0]));
  const workspaceBytes = p.kernel === 'splitk_decode' ? p.workspaceBytes : undefined;
  const kvLenBinding = binds.find((b) => b.tensor === 'kv_len');
  const iface: BindingInterface = {
    entry,
    workgroupSize: [p.invocations, 1, 1],
    dispatch: list[0]!.dispatch,
    bindings: binds,
    ...(kvLenBinding ? { kvLength: { min: p.kvLenMin, max: p.Skv, binding: kvLenBinding.binding } } : {}),
    passes: list,
    ...(workspaceBytes !== undefined ? { workspaceBytes } : {}),
    features: [],
    limits: wgslLimits(sharedBytes, maxInvocations, binds),
  };
  // kv_len is the loader's own buffer: a call passes the length (run's kvLen), not a buffer.
  const tensors = [...new Set(binds.filter((b) => b.access !== 'uniform').map((b) => b.tensor))];
  const bindingText = (b: Binding) => (b.access === 'uniform' ? `@binding(${b.binding}) ${b.name}: KgLen { kv_len: u32 } (uniform, ${b.bytes} bytes)` : `@binding(${b.binding}) ${b.name}: array<${elementType(op, b.tensor)}> (${b.access}, ${b.bytes} bytes)`);
  const unusedScales = unusedScalesText(op.kvCache);
  const dispatchText = list.map((x) => `(${x.dispatch.expr.join(', ')}) = (${x.dispatch.grid.join(', ')}) workgroups of ${x.workgroupSize[0]}`).join(', then ');
  return {
    ...wgslLoaderFiles(plan, ctx, wgsl, iface, 'o'),
    bindingInterface: iface,
    mainFile: 'kernel.wgsl',
    templateHash: templates.hash,
    build: `kernel.js (an ES module; types in kernel.d.ts) creates the pipeline${list.length > 1 ? 's' : ''} of kernel.wgsl on a GPUDevice (createKernel), checking its limits, and dispatches ${dispatchText}`,
    abi: [
      ...list.map((x) => ({
        symbol: x.entry,
        signature: `@compute @workgroup_size(${x.workgroupSize[0]}) fn ${x.entry}; ${binds.filter((b) => x.bindings.includes(b.binding)).map(bindingText).join(', ')}`,
        doc: `${x.what}: dispatch (${x.dispatch.expr.join(', ')}) = (${x.dispatch.grid.join(', ')}) workgroups${x.entry === entry ? `, ${sharedBytes} bytes of workgroup storage` : ''}`,
      })),
      {
        symbol: 'createKernel',
        signature: 'createKernel(device: GPUDevice): Promise<Kernel> (kernel.js; kernel.d.ts)',
        doc: `checks the device's limits, creates the pipelines; Kernel.run({ ${tensors.join(', ')} }${p.runtimeKvLength ? ', { kvLen }' : ''}) binds the buffers and dispatches ${list.length > 1 ? 'both passes' : 'the kernel'}${workspaceBytes !== undefined ? ` (workspace: ${workspaceBytes} bytes of scratch)` : ''}${unusedScales ? `; k_scales, v_scales: ${unusedScales} (no binding)` : ''}${p.runtimeKvLength ? `; kvLen: the positions read (the first kvLen of each head's ${p.Skv}), ${p.kvLenMin}..${p.Skv}${p.causal ? ', the last query row seeing the last of them' : ''}, a RangeError with nothing dispatched outside that range` : ''}`,
      },
    ],
  };
}
