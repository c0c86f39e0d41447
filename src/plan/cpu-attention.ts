import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { attentionTraffic } from './attention-common.js';
import { ceilDiv, cpuBudgets, CPU_WORK_REGISTERS, toleranceFor } from './common.js';
import type { CpuVariants } from './cpu-matmul.js';
import type { Config, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, SearchSpace } from './types.js';

/** CPU attention plans (C, and WebAssembly until it has its own): online softmax over KV blocks. */

export type CpuAttentionParams = { B: number; Hq: number; Hkv: number; Sq: number; Skv: number; D: number; kvBlock: number; qBlock: number; isa: string };

declare module './types.js' {
  interface PlanFamilies {
    'cpu-attention': { op: AttentionOp; shape: AttentionShape; params: CpuAttentionParams };
  }
}

type Req = PlanRequestFor<AttentionOp, AttentionShape>;

function cpuSpace(req: Req, variants: CpuVariants): SearchSpace {
  return {
    knobs: [
      { name: 'isa', values: variants.of(req.device), doc: variants.doc },
      { name: 'kvBlock', values: [64, 128, 32, 256], doc: 'keys per block of the online softmax' },
      { name: 'qBlock', values: [4, 1, 8, 16], doc: 'queries processed together, sharing each K/V load' },
    ],
    restrictions: [{ reason: 'qBlock exceeds Sq', allows: (c) => (c.qBlock as number) <= req.shape.Sq || c.qBlock === 1 }],
  };
}

function cpuPlan(req: Req, config: Config): PlanBody<'cpu-attention'> {
  const { op, shape, device } = req;
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const kvBlock = Math.min(config.kvBlock as number, Skv);
  const qBlock = config.qBlock as number;
  const buffers: OnChipBuffer[] = [
    { name: 'scores', space: 'l2', size: qBlock * kvBlock * 4, why: `${qBlock}x${kvBlock} f32 scores` },
    { name: 'K/V block', space: 'l2', size: 2 * kvBlock * D * 4, why: `${kvBlock} keys and values widened to f32` },
    { name: 'output accumulators', space: 'l2', size: qBlock * D * 4, why: `${qBlock} rows of ${D} f32` },
    { name: 'accumulators', space: 'registers', size: Math.min(qBlock, 8), why: 'dot-product accumulators' },
    { name: 'work registers', space: 'registers', size: CPU_WORK_REGISTERS, why: 'loads and exponentials' },
  ];
  return {
    family: 'cpu-attention',
    op, shape, target: req.target, device: device.name, config,
    variant: 'online_softmax',
    launch: { rows: B * Hq * ceilDiv(Sq, qBlock) },
    loops: [`for (b, h, q0) in ${B}x${Hq}x${ceilDiv(Sq, qBlock)}`, `  for j0 in [0, ${Skv}) step ${kvBlock}: scores, rescale, accumulate V`],
    buffers,
    budgets: cpuBudgets(device, buffers),
    tolerance: toleranceFor({ actQuant: false, outF16: op.o === 'f16', inF16: op.q === 'f16' }),
    traffic: attentionTraffic(op, shape),
    params: { B, Hq, Hkv, Sq, Skv, D, kvBlock, qBlock, isa: config.isa as string },
  };
}

/** The CPU attention planner of a target whose variants are `variants`. */
export function cpuAttentionPlanner(variants: CpuVariants): PlannerOf<'cpu-attention'> {
  return { family: 'cpu-attention', space: (req) => cpuSpace(req, variants), plan: cpuPlan };
}
