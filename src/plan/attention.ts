import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { ceilDiv, cpuBudgets, CPU_WORK_REGISTERS, dtypeBytes, gpuBudgets, isasFor, toleranceFor } from './common.js';
import type { Config, OnChipBuffer, OpPlanner, Plan, PlanBody, PlanRequest, SearchSpace } from './types.js';

type Req = PlanRequest & { op: AttentionOp; shape: AttentionShape };

/** Largest Sq served by the split-K decode variant on GPUs; longer query blocks use flash tiles. */
export const SPLITK_MAX_SQ = 8;

function kvBytesPerValue(op: AttentionOp): number {
  // q8: one int8 plus a 2-byte f16 scale per group.
  return op.kvCache === 'q8' ? 1 + 2 / op.kvGroupSize! : 2;
}

function cpuSpace(req: Req): SearchSpace {
  return {
    knobs: [
      { name: 'isa', values: isasFor(req.device, req.target), doc: 'instruction set of the C variant' },
      { name: 'kvBlock', values: [64, 128, 32, 256], doc: 'keys per block of the online softmax' },
      { name: 'qBlock', values: [4, 1, 8, 16], doc: 'queries processed together, sharing each K/V load' },
    ],
    restrictions: [{ reason: 'qBlock exceeds Sq', allows: (c) => (c.qBlock as number) <= req.shape.Sq || c.qBlock === 1 }],
  };
}

function cpuPlan(req: Req, config: Config): PlanBody {
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

function gpuSpace(req: Req): SearchSpace {
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
      { name: 'stages', values: [2, 1], doc: 'K/V pipeline stages' },
      { name: 'warps', values: [4, 8, 2, 1], doc: 'warps per block' },
    ],
    restrictions: [{ reason: 'fewer than 16 query rows per warp', allows: (c) => (c.br as number) / (c.warps as number) >= 16 }],
  };
}

function gpuPlan(req: Req, config: Config): PlanBody {
  const { op, shape, device, target } = req;
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const gpu = device.gpu!;
  const kvb = kvBytesPerValue(op);
  const buffers: OnChipBuffer[] = [];
  let threads: number;
  let launch: Plan['launch'];
  let variant: string;
  let loops: string[];
  const params: Plan['params'] = { B, Hq, Hkv, Sq, Skv, D };
  if (Sq <= SPLITK_MAX_SQ) {
    variant = 'splitk_decode';
    const kvSplit = config.kvSplit as number;
    const kvBlock = config.kvBlock as number;
    threads = (config.warps as number) * gpu.warpSize;
    const group = Hq / Hkv;
    buffers.push({ name: 'K/V tiles', space: 'shared', size: Math.ceil(2 * kvBlock * D * kvb), why: `${kvBlock} keys and values as stored` });
    buffers.push({ name: 'queries', space: 'shared', size: group * Sq * D * 4, why: `the ${group} query heads sharing one KV head` });
    buffers.push({ name: 'scores', space: 'shared', size: group * Sq * kvBlock * 4, why: 'scores of the current key tile' });
    buffers.push({ name: 'accumulators', space: 'registers', size: 40 + Math.ceil((group * Sq * D) / threads), why: 'estimate: output accumulators per thread' });
    launch = { grid: [kvSplit, Hkv, B], block: [threads, 1, 1] };
    loops = [`grid ${kvSplit} splits x ${Hkv} KV heads x ${B}`, `for j0 in split step ${kvBlock}: online softmax for ${group} query heads`, 'second pass: merge the splits by their max and sum'];
    Object.assign(params, { kvSplit, kvBlock, threads, group });
  } else {
    variant = 'flash_prefill';
    const br = config.br as number;
    const bc = config.bc as number;
    const stages = config.stages as number;
    threads = (config.warps as number) * gpu.warpSize;
    buffers.push({ name: 'query tile', space: 'shared', size: br * D * 2, why: `${br} queries in f16` });
    buffers.push({ name: 'K/V tiles', space: 'shared', size: Math.ceil(stages * 2 * bc * D * kvb), why: `${stages} stages of ${bc} keys and values as stored` });
    buffers.push({ name: 'accumulators', space: 'registers', size: 48 + Math.ceil((br * D + br * bc) / threads), why: 'estimate: output and score fragments per thread' });
    launch = { grid: [ceilDiv(Sq, br), Hq, B], block: [threads, 1, 1] };
    loops = [`grid ${ceilDiv(Sq, br)} query tiles x ${Hq} heads x ${B}`, `for j0 in [0, ${Skv}) step ${bc}, ${stages}-stage pipeline: online softmax`];
    Object.assign(params, { br, bc, stages, threads });
  }
  return {
    op, shape, target, device: device.name, config, variant, launch, loops, buffers,
    budgets: gpuBudgets(device, target, buffers, threads),
    tolerance: toleranceFor({ actQuant: false, outF16: op.o === 'f16', inF16: op.q === 'f16' }),
    traffic: attentionTraffic(op, shape),
    params,
  };
}

function attentionTraffic(op: AttentionOp, s: AttentionShape): Plan['traffic'] {
  const kv = 2 * s.B * s.Hkv * s.Skv * s.D * kvBytesPerValue(op);
  const qo = s.B * s.Hq * s.Sq * s.D * (dtypeBytes(op.q) + dtypeBytes(op.o));
  return { bytes: Math.ceil(kv + qo), flops: 4 * s.B * s.Hq * s.Sq * s.Skv * s.D };
}

export const attentionPlanner: OpPlanner<AttentionOp, AttentionShape> = {
  space: (req) => (req.target === 'c' || req.target === 'wasm' ? cpuSpace(req) : gpuSpace(req)),
  plan: (req, config) => (req.target === 'c' || req.target === 'wasm' ? cpuPlan(req, config) : gpuPlan(req, config)),
};
