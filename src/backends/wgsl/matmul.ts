import type { PlanOf } from '../../plan/types.js';
import { wgslNibblePairSteps } from '../../plan/wgsl-matmul.js';
import { Q35_LOOKUP_A, Q35_LOOKUP_B, q35LayoutView, q35Units } from '../../quant/q35.js';
import { templateSet } from '../../render/templates.js';
import type { EpilogueActivation } from '../../ir/types.js';
import { matmulHeaderView } from '../kernel-header.js';
import { dtypeBytes, sumBytes } from '../../plan/common.js';
import type { BindingInterface, RenderContext, RenderedKernel } from '../types.js';
import { wgslLimits, wgslLoaderFiles } from './loader.js';

type WgslMatmulPlan = PlanOf<'wgsl-matmul'>;

/** Decode partial (templates/wgsl/decode/<scheme>.hbs) of each weight format. */
const WGSL_DECODE_SCHEME = { q35: 'q35', q4: 'nibble', q4_0: 'nibble', q8: 'int8', q8_0: 'int8', f16: 'f16' } as const;

/** Each epilogue activation as a WGSL expression of the f32 `v` (GELU in its tanh form, as the reference; the tanh argument clamped where tanh is already +-1 in f32, since some drivers' tanh overflows). */
const WGSL_ACTIVATION: Record<EpilogueActivation, string> = {
  none: 'v',
  silu: 'v / (1.0 + exp(-v))',
  gelu: '0.5 * v * (1.0 + tanh(clamp(0.7978845608 * (v + 0.044715 * v * v * v), -15.0, 15.0)))',
};

const VARIANT_TEXT = {
  gemv: 'gemv (rows per workgroup, K split across invocations)',
  rows: 'rows (each invocation walks K for its own rows: no workgroup storage, no barriers)',
  tiled: 'tiled (output tiles, K steps through workgroup storage)',
} as const;

/**
 * The storage bindings of a WGSL matmul kernel, numbered in order: X, the weight chunks (consecutive
 * byte ranges of the packed matrix, zero-padded at the end), Y, then bias and residual when the
 * epilogue has them.
 */
function bindings(plan: WgslMatmulPlan): BindingInterface['bindings'] {
  const { M, N, K, weightBindingBytes, weightChunkBytes, weightChunks } = plan.params;
  const e = plan.op.epilogue;
  const list: Omit<BindingInterface['bindings'][number], 'binding'>[] = [{ name: 'kg_x', tensor: 'x', access: 'read', offset: 0, bytes: M * K * dtypeBytes(plan.op.x) }];
  for (let c = 0; c < weightChunks; c++) {
    const offset = c * weightChunkBytes;
    list.push({ name: `kg_w${c}`, tensor: 'w', access: 'read', offset, bytes: Math.min(weightChunkBytes, weightBindingBytes - offset) });
  }
  list.push({ name: 'kg_y', tensor: 'y', access: 'read_write', offset: 0, bytes: M * N * 4 });
  if (e.bias) list.push({ name: 'kg_bias', tensor: 'bias', access: 'read', offset: 0, bytes: N * 4 });
  if (e.residual) list.push({ name: 'kg_residual', tensor: 'residual', access: 'read', offset: 0, bytes: M * N * 4 });
  return list.map((b, binding) => ({ binding, ...b }));
}

/**
 * WGSL element type of each tensor's bindings: weights are packed bytes read as words; X is read 4
 * activations at a time (a row of X is K values, K a multiple of 32, so rows start on 16 bytes):
 * vec4<f32>, or for f16 X two words of two halves each.
 */
function elementType(plan: WgslMatmulPlan, tensor: string): string {
  if (tensor === 'w') return 'u32';
  if (tensor === 'x') return plan.op.x === 'f16' ? 'vec2<u32>' : 'vec4<f32>';
  return 'f32';
}

/** Indices the rows kernel unrolls: its weight rows, activation rows and every (row, activation row) sum. */
function rowsUnrolled(rows: number, M: number) {
  const rowIds = Array.from({ length: rows }, (_, r) => r);
  const mIds = Array.from({ length: M }, (_, m) => m);
  return { rowIds, mIds, sums: rowIds.flatMap((r) => mIds.map((m) => ({ r, m }))) };
}

/** What decode/q35.hbs prints for a group of G weights: its tables, its units and their layout. */
function q35View(G: number) {
  const units = q35Units(G);
  const layout = q35LayoutView();
  return {
    ...layout,
    q35Tables: [...Q35_LOOKUP_A, ...Q35_LOOKUP_B].map((v) => `${v}.0`).join(', '),
    q35FullUnits: units.filter((u) => u.pairs === layout.q35UnitPairs).length,
    q35ShortUnit: units.some((u) => u.pairs === layout.q35ShortPairs),
  };
}

/** kernel.wgsl of a WGSL matmul plan, and the run description its runner reads. */
export function renderWgslMatmul(plan: WgslMatmulPlan, ctx: RenderContext): RenderedKernel {
  const op = plan.op;
  const p = plan.params;
  const templates = templateSet('wgsl');
  const entry = ctx.symbol ?? `kgen_${op.name}`;
  const binds = bindings(plan);
  const subgroups = (p.kernel === 'gemv' && p.subgroups) || (p.kernel === 'rows' && p.xBroadcast);
  const f16Math = p.kernel === 'rows' && p.f16Math;
  const dot8 = p.kernel === 'rows' && p.dot8;
  const groupSize = p.weightsPerBlock;
  const grid = plan.launch.grid!;
  const view = {
    ...p,
    ...matmulHeaderView(plan, ctx),
    subgroups,
    f16Math,
    dot8,
    entry,
    variantText: VARIANT_TEXT[p.kernel],
    bindings: binds.map((b) => ({ ...b, type: elementType(plan, b.tensor) })),
    xF16: op.x === 'f16',
    // Word ranges of the weight bindings, for kg_wword: chunk c holds words [firstWord, endWord).
    weightWords: binds.filter((b) => b.tensor === 'w').map((b) => ({ name: b.name, firstWord: b.offset / 4, endWord: (b.offset + b.bytes) / 4 })),
    singleWeightBinding: p.weightChunks === 1,
    gridText: grid.join(', '),
    gridExprText: plan.launch.gridExpr!.join(', '),
    hasBias: op.epilogue.bias,
    hasResidual: op.epilogue.residual,
    activationExpr: WGSL_ACTIVATION[op.epilogue.activation],
    // The rows kernel of a nibble format walks pairs of blocks where the plan says so (rows-pairs.hbs).
    kernelPartial: p.kernel === 'rows' && p.nibblePairs ? 'rows-pairs' : p.kernel,
    decodePartial: `decode/${WGSL_DECODE_SCHEME[op.weight.format]}`,
    ...(op.weight.format === 'q35' ? q35View(groupSize) : {}),
    // The rows kernel's unrolled names: weight rows r, activation rows m, and their sums (r, m).
    ...(p.kernel === 'rows' ? rowsUnrolled(p.rowsPerInvocation, p.M) : {}),
    ...(p.kernel === 'rows' && p.nibblePairs ? wgslNibblePairSteps(p) : {}),
  };
  const wgsl = templates.render('kernel.wgsl', view);
  const sharedBytes = sumBytes(plan.buffers, 'shared');
  const iface: BindingInterface = {
    entry,
    workgroupSize: [p.invocations, 1, 1],
    dispatch: { expr: plan.launch.gridExpr!, grid },
    bindings: binds,
    passes: [{ entry, what: VARIANT_TEXT[p.kernel], workgroupSize: [p.invocations, 1, 1], dispatch: { expr: plan.launch.gridExpr!, grid }, bindings: binds.map((b) => b.binding) }],
    features: [...(subgroups ? ['subgroups'] : []), ...(f16Math ? ['shader-f16'] : [])],
    ...(p.kernel === 'gemv' && p.subgroups ? { subgroupMinSize: p.subgroupMinSize } : {}),
    limits: wgslLimits(sharedBytes, p.invocations, binds),
  };
  const tensors = [...new Set(binds.map((b) => b.tensor))];
  return {
    ...wgslLoaderFiles(plan, ctx, wgsl, iface, 'y'),
    bindingInterface: iface,
    mainFile: 'kernel.wgsl',
    templateHash: templates.hash,
    build: `kernel.js (an ES module; types in kernel.d.ts) creates the pipeline of kernel.wgsl on a GPUDevice (createKernel), checking its features and limits, and dispatches (${view.gridExprText}) workgroups`,
    abi: [
      {
        symbol: entry,
        signature: `@compute @workgroup_size(${p.invocations}) fn ${entry}; ${binds.map((b) => `@binding(${b.binding}) ${b.name}: array<${elementType(plan, b.tensor)}> (${b.access}, ${b.bytes} bytes)`).join(', ')}`,
        doc: `Y = X${op.x === 'f16' ? ' (f16, widened)' : ''} . W^T${op.epilogue.bias ? ' + bias' : ''}${op.epilogue.activation !== 'none' ? `, ${op.epilogue.activation}` : ''}${op.epilogue.residual ? ' + residual' : ''} in f32; W is the packed bytes (kgen pack) zero-padded to ${p.weightBindingBytes} bytes; dispatch (${view.gridExprText}) = (${view.gridText}) workgroups, ${sharedBytes} bytes of workgroup storage`,
      },
      {
        symbol: 'createKernel',
        signature: `createKernel(device: GPUDevice): Promise<Kernel> (kernel.js; kernel.d.ts)`,
        doc: `checks the device's features and limits, creates the pipeline; Kernel.run({ ${tensors.join(', ')} }) binds the buffers and dispatches`,
      },
    ],
  };
}
