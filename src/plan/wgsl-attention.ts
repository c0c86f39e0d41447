import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { attentionTraffic, kvBytesPerValue, SPLITK_MAX_SQ } from './attention-common.js';
import { ceilDiv, toleranceFor } from './common.js';
import { WORKGROUP_SIZES, workgroupBudgets } from './wgsl-common.js';
import type { Config, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, SearchSpace } from './types.js';

/**
 * WGSL attention plans, in WebGPU's vocabulary: split-KV decode and flash prefill with tiles in
 * workgroup storage (16 KiB at the spec defaults), no assumed subgroup size. Plans and budgets
 * only: the kernels come with the attention issue.
 */

type Dims = { B: number; Hq: number; Hkv: number; Sq: number; Skv: number; D: number };
export type WgslAttentionParams =
  | (Dims & { kernel: 'splitk_decode'; kvSplit: number; kvBlock: number; invocations: number; group: number })
  | (Dims & { kernel: 'flash_prefill'; br: number; bc: number; invocations: number });

declare module './types.js' {
  interface PlanFamilies {
    'wgsl-attention': { op: AttentionOp; shape: AttentionShape; params: WgslAttentionParams };
  }
}

type Req = PlanRequestFor<AttentionOp, AttentionShape>;

function wgslSpace(req: Req): SearchSpace {
  if (req.shape.Sq <= SPLITK_MAX_SQ) {
    return {
      knobs: [
        { name: 'kvSplit', values: [16, 8, 32, 4, 64, 1], doc: 'partitions of the KV sequence, one workgroup each, merged in a second pass' },
        { name: 'kvBlock', values: [32, 16, 64], doc: 'keys staged in workgroup storage per step' },
        { name: 'invocations', values: [...WORKGROUP_SIZES], doc: 'invocations per workgroup' },
      ],
      restrictions: [{ reason: 'kvSplit leaves partitions shorter than kvBlock', allows: (c) => c.kvSplit === 1 || req.shape.Skv / (c.kvSplit as number) >= (c.kvBlock as number) }],
    };
  }
  return {
    knobs: [
      { name: 'br', values: [16, 32, 8], doc: 'query rows per workgroup' },
      { name: 'bc', values: [16, 32, 8], doc: 'keys per inner tile' },
      { name: 'invocations', values: [...WORKGROUP_SIZES], doc: 'invocations per workgroup' },
    ],
    restrictions: [],
  };
}

function wgslPlan(req: Req, config: Config): PlanBody<'wgsl-attention'> {
  const { op, shape, device, target } = req;
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const dims = { B, Hq, Hkv, Sq, Skv, D };
  const kvb = kvBytesPerValue(op);
  const invocations = config.invocations as number;
  const buffers: OnChipBuffer[] = [];
  let rest: Pick<PlanBody<'wgsl-attention'>, 'variant' | 'launch' | 'loops' | 'params'>;
  if (Sq <= SPLITK_MAX_SQ) {
    const kvSplit = config.kvSplit as number;
    const kvBlock = config.kvBlock as number;
    const group = Hq / Hkv;
    buffers.push({ name: 'K/V tiles', space: 'shared', size: Math.ceil(2 * kvBlock * D * kvb / 4) * 4, why: `${kvBlock} keys and values as stored, in u32 words` });
    buffers.push({ name: 'queries', space: 'shared', size: group * Sq * D * 4, why: `the ${group} query heads sharing one KV head, f32` });
    buffers.push({ name: 'scores', space: 'shared', size: group * Sq * kvBlock * 4, why: 'scores of the current key tile' });
    rest = {
      variant: 'splitk_decode',
      launch: { grid: [kvSplit, Hkv, B], block: [invocations, 1, 1] },
      loops: [`workgroups ${kvSplit} splits x ${Hkv} KV heads x ${B}`, `for j0 in split step ${kvBlock}: online softmax for ${group} query heads`, 'second pass: merge the splits by their max and sum'],
      params: { ...dims, kernel: 'splitk_decode', kvSplit, kvBlock, invocations, group },
    };
  } else {
    const br = config.br as number;
    const bc = config.bc as number;
    buffers.push({ name: 'query tile', space: 'shared', size: br * D * 4, why: `${br} queries in f32` });
    buffers.push({ name: 'K/V tiles', space: 'shared', size: Math.ceil(2 * bc * D * kvb / 4) * 4, why: `${bc} keys and values as stored, in u32 words` });
    buffers.push({ name: 'scores', space: 'shared', size: br * bc * 4, why: `${br}x${bc} f32 scores` });
    rest = {
      variant: 'flash_prefill',
      launch: { grid: [ceilDiv(Sq, br), Hq, B], block: [invocations, 1, 1] },
      loops: [`workgroups ${ceilDiv(Sq, br)} query tiles x ${Hq} heads x ${B}`, `for j0 in [0, ${Skv}) step ${bc}: online softmax`],
      params: { ...dims, kernel: 'flash_prefill', br, bc, invocations },
    };
  }
  return {
    family: 'wgsl-attention',
    op, shape, target, device: device.name, config,
    ...rest,
    buffers,
    budgets: workgroupBudgets(device, buffers, invocations),
    tolerance: toleranceFor({ actQuant: false, outF16: op.o === 'f16', inF16: op.q === 'f16' }),
    traffic: attentionTraffic(op, shape),
  };
}

/** The WGSL attention planner. */
export const wgslAttentionPlanner: PlannerOf<'wgsl-attention'> = { family: 'wgsl-attention', space: wgslSpace, plan: wgslPlan };
