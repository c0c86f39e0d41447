import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { attentionTraffic, kvBytesPerValue, SPLITK_MAX_SQ } from './attention-common.js';
import { ceilDiv, toleranceFor } from './common.js';
import { cudaBudgets } from './cuda-common.js';
import type { Config, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, SearchSpace } from './types.js';

/**
 * CUDA attention plans: split-KV decode (Sq <= SPLITK_MAX_SQ: the KV sequence split across blocks,
 * merged in a second pass) and flash prefill (query tiles, online softmax). Plans and budgets
 * only: the kernels come with the attention issue.
 */

type Dims = { B: number; Hq: number; Hkv: number; Sq: number; Skv: number; D: number };
export type CudaAttentionParams =
  | (Dims & { kernel: 'splitk_decode'; kvSplit: number; kvBlock: number; threads: number; group: number })
  | (Dims & { kernel: 'flash_prefill'; br: number; bc: number; stages: number; threads: number });

declare module './types.js' {
  interface PlanFamilies {
    'cuda-attention': { op: AttentionOp; shape: AttentionShape; params: CudaAttentionParams };
  }
}

type Req = PlanRequestFor<AttentionOp, AttentionShape>;

function cudaSpace(req: Req): SearchSpace {
  if (req.shape.Sq <= SPLITK_MAX_SQ) {
    return {
      knobs: [
        { name: 'kvSplit', values: [16, 8, 32, 4, 64, 1], doc: 'partitions of the KV sequence, reduced in a second pass' },
        { name: 'kvBlock', values: [64, 32, 128, 16], doc: 'keys staged in shared memory per step' },
        { name: 'warps', values: [4, 2, 8], doc: 'warps per block' },
      ],
      restrictions: [{ reason: 'kvSplit leaves partitions shorter than kvBlock', allows: (c) => c.kvSplit === 1 || req.shape.Skv / (c.kvSplit as number) >= (c.kvBlock as number) }],
    };
  }
  return {
    knobs: [
      { name: 'br', values: [64, 128, 32, 16], doc: 'query rows per block' },
      { name: 'bc', values: [64, 32, 128, 16], doc: 'keys per inner tile' },
      { name: 'stages', values: [2, 1], doc: 'K/V pipeline stages (cp.async)' },
      { name: 'warps', values: [4, 8, 2, 1], doc: 'warps per block' },
    ],
    restrictions: [{ reason: 'fewer than 16 query rows per warp', allows: (c) => (c.br as number) / (c.warps as number) >= 16 }],
  };
}

function cudaPlan(req: Req, config: Config): PlanBody<'cuda-attention'> {
  const { op, shape, device, target } = req;
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const dims = { B, Hq, Hkv, Sq, Skv, D };
  const kvb = kvBytesPerValue(op);
  const threads = (config.warps as number) * device.gpu!.warpSize;
  const buffers: OnChipBuffer[] = [];
  let rest: Pick<PlanBody<'cuda-attention'>, 'variant' | 'launch' | 'loops' | 'params'>;
  if (Sq <= SPLITK_MAX_SQ) {
    const kvSplit = config.kvSplit as number;
    const kvBlock = config.kvBlock as number;
    const group = Hq / Hkv;
    buffers.push({ name: 'K/V tiles', space: 'shared', size: Math.ceil(2 * kvBlock * D * kvb), why: `${kvBlock} keys and values as stored` });
    buffers.push({ name: 'queries', space: 'shared', size: group * Sq * D * 4, why: `the ${group} query heads sharing one KV head` });
    buffers.push({ name: 'scores', space: 'shared', size: group * Sq * kvBlock * 4, why: 'scores of the current key tile' });
    buffers.push({ name: 'accumulators', space: 'registers', size: 40 + Math.ceil((group * Sq * D) / threads), why: 'estimate: output accumulators per thread' });
    rest = {
      variant: 'splitk_decode',
      launch: { grid: [kvSplit, Hkv, B], block: [threads, 1, 1] },
      loops: [`grid ${kvSplit} splits x ${Hkv} KV heads x ${B}`, `for j0 in split step ${kvBlock}: online softmax for ${group} query heads`, 'second pass: merge the splits by their max and sum'],
      params: { ...dims, kernel: 'splitk_decode', kvSplit, kvBlock, threads, group },
    };
  } else {
    const br = config.br as number;
    const bc = config.bc as number;
    const stages = config.stages as number;
    buffers.push({ name: 'query tile', space: 'shared', size: br * D * 2, why: `${br} queries in f16` });
    buffers.push({ name: 'K/V tiles', space: 'shared', size: Math.ceil(stages * 2 * bc * D * kvb), why: `${stages} stages of ${bc} keys and values as stored` });
    buffers.push({ name: 'accumulators', space: 'registers', size: 48 + Math.ceil((br * D + br * bc) / threads), why: 'estimate: output and score fragments per thread' });
    rest = {
      variant: 'flash_prefill',
      launch: { grid: [ceilDiv(Sq, br), Hq, B], block: [threads, 1, 1] },
      loops: [`grid ${ceilDiv(Sq, br)} query tiles x ${Hq} heads x ${B}`, `for j0 in [0, ${Skv}) step ${bc}, ${stages}-stage pipeline: online softmax`],
      params: { ...dims, kernel: 'flash_prefill', br, bc, stages, threads },
    };
  }
  return {
    family: 'cuda-attention',
    op, shape, target, device: device.name, config,
    ...rest,
    buffers,
    budgets: cudaBudgets(device, buffers, threads),
    tolerance: toleranceFor({ actQuant: false, outF16: op.o === 'f16', inF16: op.q === 'f16' }),
    traffic: attentionTraffic(op, shape),
  };
}

/** The CUDA attention planner. */
export const cudaAttentionPlanner: PlannerOf<'cuda-attention'> = { family: 'cuda-attention', space: cudaSpace, plan: cudaPlan };
