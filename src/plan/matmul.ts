import type { MatmulOp, MatmulShape } from '../ir/types.js';
import { codecOf } from '../quant/index.js';
import { ceilDiv, cpuBudgets, CPU_WORK_REGISTERS, dtypeBytes, gpuBudgets, isasFor, toleranceFor } from './common.js';
import type { Config, Knob, OnChipBuffer, OpPlanner, Plan, PlanBody, PlanRequest, Restriction, SearchSpace } from './types.js';
import { cudaPlan, cudaSpace, GPU_GEMV_MAX_M } from './matmul-cuda.js';

type Req = PlanRequest & { op: MatmulOp; shape: MatmulShape };

/**
 * Activation values per int8 block (one scale and one sum each) when activations are quantized: 64
 * when the weight group is a multiple of 64, else 32. A block never straddles a weight group, so a
 * kernel takes one integer dot product per block and applies (weight scale x activation scale) once.
 */
export function actBlockFor(groupWeights: number): number {
  return groupWeights % 64 === 0 ? 64 : 32;
}

/** Bytes after the int8 values of a prepared activation block: f32 scale, i32 sum, padding to 32. */
export const ACT_BLOCK_TAIL = 32;

function weightLayout(op: MatmulOp, K: number) {
  const codec = codecOf(op.weight);
  const blocksPerRow = K / codec.weightsPerBlock;
  return { codec, blocksPerRow, rowBytes: blocksPerRow * codec.bytesPerBlock };
}

function cpuSpace(req: Req): SearchSpace {
  const quantized = req.op.weight.format !== 'f16';
  const knobs: Knob[] = [
    { name: 'isa', values: isasFor(req.device, req.target), doc: 'instruction set of the C variant' },
    { name: 'actQuant', values: quantized ? ['q8', 'f32'] : ['f32'], doc: 'activations as int8 blocks of 32 (integer dot products) or f32' },
    { name: 'rowsPerIter', values: req.shape.M === 1 ? [8, 4, 2, 1] : [4, 2, 8, 1], doc: 'weight rows computed together, sharing each activation load' },
    { name: 'mTile', values: [4, 2, 1], doc: 'activation rows computed together, sharing each decoded weight' },
    { name: 'nTile', values: [32, 16, 64, 8, 128, 4, 2, 1], doc: 'weight rows per cache tile, reused across all activation rows' },
    { name: 'unroll', values: [2, 1, 4], doc: 'unroll of the loop over weight blocks' },
    { name: 'prefetch', values: [1, 0, 2], doc: 'software prefetch distance in row groups (rowsPerIter rows) ahead; 0 leaves it to the hardware' },
  ];
  const restrictions: Restriction[] = [
    { reason: 'SIMD variants of quantized formats use int8 activations', allows: (c) => !quantized || c.isa === 'scalar' || c.actQuant === 'q8' },
    { reason: 'mTile exceeds M', allows: (c) => (c.mTile as number) <= Math.max(1, req.shape.M) || c.mTile === 1 },
    { reason: 'nTile is not a multiple of rowsPerIter', allows: (c) => (c.nTile as number) % (c.rowsPerIter as number) === 0 },
    { reason: 'unroll has no effect on the scalar variant', allows: (c) => c.isa !== 'scalar' || c.unroll === 1 },
  ];
  return { knobs, restrictions };
}

function cpuPlan(req: Req, config: Config): PlanBody {
  const { op, shape, device } = req;
  const { M, N, K } = shape;
  const { codec, blocksPerRow, rowBytes } = weightLayout(op, K);
  const actQuant = config.actQuant === 'q8';
  const rowsPerIter = config.rowsPerIter as number;
  const mTile = config.mTile as number;
  const nTile = config.nTile as number;
  const actBlock = actBlockFor(codec.weightsPerBlock);
  const xBlocks = actQuant ? K / actBlock : 0;
  // Prepared activations: int8 values plus scale, sum and padding per block, or f32.
  const xRowBytes = actQuant ? xBlocks * (actBlock + ACT_BLOCK_TAIL) : K * 4;
  const prefetchBytes = (config.prefetch as number) * rowsPerIter * rowBytes;
  const buffers: OnChipBuffer[] = [
    { name: 'accumulators', space: 'registers', size: rowsPerIter * mTile, why: 'one vector accumulator per (weight row, activation row) pair' },
    { name: 'work registers', space: 'registers', size: CPU_WORK_REGISTERS, why: 'activation loads, decode temporaries and lookup tables' },
    { name: 'weight tile', space: 'l2', size: nTile * rowBytes, why: `${nTile} packed weight rows, reused by every activation row` },
    { name: 'activation panel', space: 'l2', size: mTile * xRowBytes, why: `${mTile} prepared activation rows` },
  ];
  const wsBytes = M * xRowBytes;
  return {
    op, shape, target: req.target, device: device.name, config,
    variant: M === 1 ? 'gemv' : 'gemm',
    launch: { rows: N },
    loops: [
      `prepare: ${actQuant ? `quantize X[${M},${K}] to int8 blocks of ${actBlock}` : `copy X[${M},${K}] to f32`} (once per call)`,
      `for n0 in [row_begin, row_end) step ${nTile}        (weight tile in L2)`,
      `  for m0 in [0, ${M}) step ${mTile}`,
      `    for n in [n0, n0+${nTile}) step ${rowsPerIter}     (${rowsPerIter}x${mTile} accumulators)`,
      `      for k in [0, ${K}) step ${codec.weightsPerBlock} (one weight group), unrolled ${config.unroll}x${prefetchBytes ? `, prefetching ${prefetchBytes} bytes ahead` : ''}`,
    ],
    buffers,
    budgets: cpuBudgets(device, buffers),
    tolerance: toleranceFor({ actQuant, outF16: op.y === 'f16', inF16: op.x === 'f16' }),
    traffic: { bytes: N * rowBytes + M * K * dtypeBytes(op.x) + M * N * dtypeBytes(op.y), flops: 2 * M * N * K },
    params: {
      M, N, K,
      isa: config.isa as string,
      actQuant,
      rowsPerIter, mTile, nTile, unroll: config.unroll as number,
      weightsPerBlock: codec.weightsPerBlock,
      bytesPerBlock: codec.bytesPerBlock,
      blocksPerRow,
      rowBytes,
      chunksPerBlock: Math.max(1, codec.weightsPerBlock / 32),
      // SIMD variants decode two 32-weight chunks per step when a block holds an even number.
      chunkStep: codec.weightsPerBlock % 64 === 0 ? 2 : 1,
      actBlock,
      actBlocksPerBlock: Math.max(1, codec.weightsPerBlock / actBlock),
      actChunks: actBlock / 32,
      actPad: ACT_BLOCK_TAIL - 8,
      xBlocks,
      prefetchBytes,
      workspaceBytes: wsBytes,
    },
  };
}

/** WGSL plans (CUDA has its own, in matmul-cuda.ts). */
function gpuSpace(req: Req): SearchSpace {
  const wpb = codecOf(req.op.weight).weightsPerBlock;
  if (req.shape.M <= GPU_GEMV_MAX_M) {
    return {
      knobs: [
        { name: 'warpsPerBlock', values: [4, 8, 2, 1], doc: 'warps per block, each owning its own output rows' },
        { name: 'rowsPerWarp', values: [2, 1, 4], doc: 'output rows per warp' },
        { name: 'xChunk', values: [4096, 2048, 8192, 1024, 16384], doc: 'activation elements staged in shared memory per pass over K' },
      ],
      restrictions: [],
    };
  }
  return {
    knobs: [
      { name: 'bm', values: [64, 128, 32, 16], doc: 'activation rows per block tile' },
      { name: 'bn', values: [128, 64, 256, 32], doc: 'weight rows per block tile' },
      { name: 'bk', values: [64, 32, 128], doc: 'K extent per pipeline stage' },
      { name: 'stages', values: [3, 2, 4, 1], doc: 'shared-memory pipeline stages (cp.async)' },
      { name: 'warps', values: [4, 8, 2], doc: 'warps per block' },
    ],
    restrictions: [
      { reason: 'bk is not a multiple of the weight block', allows: (c) => (c.bk as number) % wpb === 0 },
      { reason: 'more than 128 accumulators per thread', allows: (c) => ((c.bm as number) * (c.bn as number)) / ((c.warps as number) * 32) <= 128 },
      { reason: 'bk exceeds K', allows: (c) => (c.bk as number) <= req.shape.K || c.bk === wpb },
    ],
  };
}

function gpuPlan(req: Req, config: Config): PlanBody {
  const { op, shape, device, target } = req;
  const { M, N, K } = shape;
  const gpu = device.gpu!;
  const { codec, rowBytes } = weightLayout(op, K);
  const xBytes = dtypeBytes(op.x);
  const buffers: OnChipBuffer[] = [];
  let threads: number;
  let launch: Plan['launch'];
  let variant: string;
  let loops: string[];
  const params: Plan['params'] = { M, N, K, rowBytes, bytesPerBlock: codec.bytesPerBlock, weightsPerBlock: codec.weightsPerBlock };
  if (M <= GPU_GEMV_MAX_M) {
    variant = 'gemv';
    const warps = config.warpsPerBlock as number;
    const rowsPerWarp = config.rowsPerWarp as number;
    const xChunk = Math.min(config.xChunk as number, K);
    threads = warps * gpu.warpSize;
    const rowsPerBlock = warps * rowsPerWarp;
    buffers.push({ name: 'activation chunk', space: 'shared', size: M * xChunk * xBytes, why: `${M}x${xChunk} activations shared by the block's rows` });
    if (target === 'wgsl') {
      buffers.push({ name: 'reduction scratch', space: 'shared', size: threads * rowsPerWarp * M * 4, why: 'cross-lane sums (subgroups are not guaranteed in WebGPU)' });
    }
    buffers.push({ name: 'accumulators', space: 'registers', size: 40 + rowsPerWarp * M * 2, why: 'estimate: partial sums, 128-bit weight loads and addressing' });
    launch = { grid: [ceilDiv(N, rowsPerBlock), 1, 1], block: [threads, 1, 1] };
    loops = [`grid over ${ceilDiv(N, rowsPerBlock)} blocks of ${rowsPerBlock} rows`, `for k0 in [0, ${K}) step ${xChunk}: stage X chunk`, '  each warp: lanes stride K with 128-bit weight loads, shuffle-reduce'];
    Object.assign(params, { warps, rowsPerWarp, rowsPerBlock, xChunk, threads });
  } else {
    const bm = config.bm as number;
    const bn = config.bn as number;
    const bk = config.bk as number;
    const stages = config.stages as number;
    const warps = config.warps as number;
    // WGSL has no tensor-core path (CUDA plans live in matmul-cuda.ts).
    variant = 'tiled_simt';
    threads = warps * gpu.warpSize;
    const wTileBytes = bn * (bk / codec.weightsPerBlock) * codec.bytesPerBlock;
    buffers.push({ name: 'activation tiles', space: 'shared', size: stages * bm * bk * 2, why: `${stages} stages of ${bm}x${bk} f16 activations` });
    buffers.push({ name: 'weight tiles', space: 'shared', size: stages * wTileBytes, why: `${stages} stages of ${bn} rows x ${bk} packed weights` });
    buffers.push({ name: 'accumulators', space: 'registers', size: 48 + (bm * bn) / threads, why: 'estimate: f32 accumulators per thread plus fragments and addressing' });
    launch = { grid: [ceilDiv(N, bn), ceilDiv(M, bm), 1], block: [threads, 1, 1] };
    loops = [`grid ${ceilDiv(N, bn)}x${ceilDiv(M, bm)} tiles of ${bm}x${bn}`, `for k0 in [0, ${K}) step ${bk}, ${stages}-stage pipeline`, '  SIMT FMA'];
    Object.assign(params, { bm, bn, bk, stages, warps, threads });
  }
  return {
    op, shape, target, device: device.name, config, variant, launch, loops, buffers,
    budgets: gpuBudgets(device, target, buffers, threads),
    tolerance: toleranceFor({ actQuant: false, outF16: op.y === 'f16', inF16: op.x === 'f16' }),
    traffic: { bytes: N * rowBytes + M * K * xBytes + M * N * dtypeBytes(op.y), flops: 2 * M * N * K },
    params,
  };
}

export const matmulPlanner: OpPlanner<MatmulOp, MatmulShape> = {
  space: (req) => (req.target === 'c' || req.target === 'wasm' ? cpuSpace(req) : req.target === 'cuda' ? cudaSpace(req) : gpuSpace(req)),
  plan: (req, config) => (req.target === 'c' || req.target === 'wasm' ? cpuPlan(req, config) : req.target === 'cuda' ? cudaPlan(req, config) : gpuPlan(req, config)),
};
