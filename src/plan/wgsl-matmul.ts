import type { MatmulOp, MatmulShape } from '../ir/types.js';
import { codecOf } from '../quant/index.js';
import { ceilDiv, dtypeBytes, toleranceFor } from './common.js';
import { WORKGROUP_SIZES, workgroupBudgets } from './wgsl-common.js';
import type { Config, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, SearchSpace } from './types.js';

/**
 * WGSL matmul plans, in WebGPU's vocabulary (workgroups, invocations, workgroup storage; no warps,
 * no asynchronous copies, no assumed subgroup size). Plans and budgets only: the renderer comes
 * with the WGSL target.
 *
 * - `gemv` (M <= 8): a workgroup owns `rowsPerWorkgroup` weight rows; its invocations split K, stage
 *   `xChunk` activations in workgroup storage, and reduce their partial sums through it.
 * - `tiled`: `bm` x `bn` output tiles, K in steps of `bk` through `buffers` workgroup-storage
 *   buffers of f32 activations and raw weight bytes.
 */

/** Largest M the gemv variant serves. */
export const WGSL_GEMV_MAX_M = 8;

type WgslCommonParams = { M: number; N: number; K: number; rowBytes: number; bytesPerBlock: number; weightsPerBlock: number; invocations: number };
export type WgslMatmulParams =
  | (WgslCommonParams & { kernel: 'gemv'; rowsPerWorkgroup: number; xChunk: number })
  | (WgslCommonParams & { kernel: 'tiled'; bm: number; bn: number; bk: number; buffers: number });

declare module './types.js' {
  interface PlanFamilies {
    'wgsl-matmul': { op: MatmulOp; shape: MatmulShape; params: WgslMatmulParams };
  }
}

type Req = PlanRequestFor<MatmulOp, MatmulShape>;

function wgslSpace(req: Req): SearchSpace {
  const wpb = codecOf(req.op.weight).weightsPerBlock;
  if (req.shape.M <= WGSL_GEMV_MAX_M) {
    return {
      knobs: [
        { name: 'invocations', values: [...WORKGROUP_SIZES], doc: 'invocations per workgroup, splitting K' },
        { name: 'rowsPerWorkgroup', values: [8, 4, 16, 2, 1], doc: 'weight rows per workgroup, sharing each staged activation chunk' },
        { name: 'xChunk', values: [2048, 1024, 4096, 512], doc: 'activations staged in workgroup storage per pass over K' },
      ],
      restrictions: [],
    };
  }
  return {
    knobs: [
      { name: 'bm', values: [32, 64, 16], doc: 'activation rows per workgroup tile' },
      { name: 'bn', values: [64, 32, 128], doc: 'weight rows per workgroup tile' },
      { name: 'bk', values: [64, 32, 128], doc: 'K per step (whole weight blocks)' },
      { name: 'invocations', values: [...WORKGROUP_SIZES], doc: 'invocations per workgroup' },
      { name: 'buffers', values: [2, 1], doc: 'workgroup-storage buffers per operand (2: load the next step while computing this one)' },
    ],
    restrictions: [
      { reason: 'bk is not a multiple of the weight block', allows: (c) => (c.bk as number) % wpb === 0 },
      { reason: 'more than 64 accumulators per invocation', allows: (c) => ((c.bm as number) * (c.bn as number)) / (c.invocations as number) <= 64 },
      { reason: 'bk exceeds K', allows: (c) => (c.bk as number) <= req.shape.K || c.bk === wpb },
    ],
  };
}

function wgslPlan(req: Req, config: Config): PlanBody<'wgsl-matmul'> {
  const { op, shape, device, target } = req;
  const { M, N, K } = shape;
  const codec = codecOf(op.weight);
  const rowBytes = (K / codec.weightsPerBlock) * codec.bytesPerBlock;
  const invocations = config.invocations as number;
  const buffers: OnChipBuffer[] = [];
  const base = { M, N, K, rowBytes, bytesPerBlock: codec.bytesPerBlock, weightsPerBlock: codec.weightsPerBlock, invocations };
  let common: Pick<PlanBody<'wgsl-matmul'>, 'variant' | 'launch' | 'loops' | 'params'>;
  if (M <= WGSL_GEMV_MAX_M) {
    const rowsPerWorkgroup = config.rowsPerWorkgroup as number;
    const xChunk = Math.min(config.xChunk as number, K);
    buffers.push({ name: 'activation chunk', space: 'shared', size: M * xChunk * 4, why: `${M}x${xChunk} f32 activations shared by the workgroup's rows` });
    buffers.push({ name: 'reduction scratch', space: 'shared', size: invocations * M * 4, why: 'one partial sum per invocation and activation row (no subgroup size is assumed)' });
    common = {
      variant: 'gemv',
      launch: { grid: [ceilDiv(N, rowsPerWorkgroup), 1, 1], block: [invocations, 1, 1] },
      loops: [`${ceilDiv(N, rowsPerWorkgroup)} workgroups of ${rowsPerWorkgroup} rows`, `for k0 in [0, ${K}) step ${xChunk}: stage X chunk`, `  per row: ${invocations} invocations split K, reduce through workgroup storage`],
      params: { ...base, kernel: 'gemv', rowsPerWorkgroup, xChunk },
    };
  } else {
    const bm = config.bm as number;
    const bn = config.bn as number;
    const bk = config.bk as number;
    const nBuf = config.buffers as number;
    const wTileBytes = bn * (bk / codec.weightsPerBlock) * codec.bytesPerBlock;
    buffers.push({ name: 'activation tiles', space: 'shared', size: nBuf * bm * bk * 4, why: `${nBuf} buffer(s) of ${bm}x${bk} f32 activations` });
    buffers.push({ name: 'weight tiles', space: 'shared', size: nBuf * Math.ceil(wTileBytes / 4) * 4, why: `${nBuf} buffer(s) of ${bn} rows x ${bk} packed weights, as u32 words` });
    common = {
      variant: 'tiled',
      launch: { grid: [ceilDiv(N, bn), ceilDiv(M, bm), 1], block: [invocations, 1, 1] },
      loops: [`workgroups ${ceilDiv(N, bn)}x${ceilDiv(M, bm)} of ${bm}x${bn} outputs`, `for k0 in [0, ${K}) step ${bk}, ${nBuf} buffer(s)`, `  ${(bm * bn) / invocations} accumulators per invocation`],
      params: { ...base, kernel: 'tiled', bm, bn, bk, buffers: nBuf },
    };
  }
  return {
    family: 'wgsl-matmul',
    op, shape, target, device: device.name, config,
    ...common,
    buffers,
    budgets: workgroupBudgets(device, buffers, invocations),
    tolerance: toleranceFor({ actQuant: false, outF16: op.y === 'f16', inF16: op.x === 'f16' }),
    traffic: { bytes: N * rowBytes + M * K * dtypeBytes(op.x) + M * N * dtypeBytes(op.y), flops: 2 * M * N * K },
  };
}

/** The WGSL matmul planner. */
export const wgslMatmulPlanner: PlannerOf<'wgsl-matmul'> = { family: 'wgsl-matmul', space: wgslSpace, plan: wgslPlan };
