import type { MatmulOp, MatmulShape } from '../ir/types.js';
import { codecOf } from '../quant/index.js';
import { ceilDiv, dtypeBytes, readConfig, sumBytes, toleranceFor, typedSpace, type ConfigOf, type EarlierOf, type KnobOf, type RestrictionOf } from './common.js';
import { CUDA_WARP, CUDA_WARP_LANES, cudaBudgets, cudaFlush, cudaGridBudgets, hasMmaM16n8k16 } from './cuda-common.js';
import type { Config, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, SearchSpace } from './types.js';

/**
 * CUDA matmul plans: what templates/cuda/ renders, number for number. Two kernels:
 *
 * - `gemv` (M <= 8): each warp owns `rowsPerWarp` weight rows and one of `kSplit` slices of K. Per
 *   step it stages 32 x `piecesPerLane` pieces of each row (16 weights of one scale group, 8 for
 *   f16) into its own shared-memory ring with 16-byte cp.async, `stages` steps ahead; each lane
 *   decodes its pieces in registers and takes dot products with the X chunk (f32, padded) that the
 *   block stages `xChunk` weights at a time. Warp shuffles reduce the lanes, shared memory the K
 *   slices.
 * - `tiled` (any M): `bm` x `bn` output tiles, K in steps of `bk` through a `stages`-deep cp.async
 *   pipeline holding an X tile and the raw weight bytes of `bn` rows. `math: mma` decodes weights
 *   into f16 B fragments in registers for mma.sync m16n8k16 (sm_80+); `math: simt` decodes the
 *   weight tile once into shared memory as f32 and runs a register-tiled FMA loop (any arch).
 *
 * Weight rows are not 16-byte aligned in general (a q3.5 block is 30 bytes), so a staged span is
 * copied as the aligned 16-byte chunks covering it; bytes past the end of a row are zero-filled,
 * which decodes to zero weights, and X past K is staged as zeros: ragged K needs no masking.
 */

/** What the templates of a CUDA matmul print: the gemv kernel's or the tiled kernel's numbers. */
export type CudaGemvParams = ReturnType<typeof gemvPlan>['params'];
export type CudaTiledParams = ReturnType<typeof tiledPlan>['params'];
export type CudaMatmulParams = CudaGemvParams | CudaTiledParams;

declare module './types.js' {
  interface PlanFamilies {
    'cuda-matmul': { op: MatmulOp; shape: MatmulShape; params: CudaMatmulParams };
  }
}

type Req = PlanRequestFor<MatmulOp, MatmulShape>;

/** Largest M the gemv kernel serves; larger M always uses the tiled kernel. */
export const GPU_GEMV_MAX_M = 8;


/**
 * A weight row as CUDA kernels see it: blocks of `weights` weights in `bytes` bytes, the f16 scale
 * first. f16 weights have no scale; they are read in virtual blocks of 8 (16 bytes) and a row whose
 * K is not a multiple of 8 ends inside its last block (the zero-filled tail makes that harmless).
 */
export function cudaWeightLayout(op: MatmulOp, K: number) {
  const codec = codecOf(op.weight);
  const f16 = op.weight.format === 'f16';
  return {
    rowBytes: (K / codec.weightsPerBlock) * codec.bytesPerBlock,
    blockWeights: f16 ? 8 : codec.weightsPerBlock,
    blockBytes: f16 ? 16 : codec.bytesPerBlock,
    /** GEMV piece: weights one lane decodes with one scale. */
    piece: f16 ? 8 : 16,
  };
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** The knobs of the space, by type: both kernels', the other kernel's held at their first values. */
const KNOBS = {
  kernel: ['gemv', 'tiled'],
  warps: 'number', rowsPerWarp: 'number', kSplit: 'number', xChunk: 'number',
  math: ['mma', 'simt'], bm: 'number', bn: 'number', bk: 'number', warpsM: 'number', warpsN: 'number',
  stages: 'number',
} as const;
type Knobs = ConfigOf<typeof KNOBS>;

/** Whether a config's knob matters to its kernel; irrelevant knobs are held at their first value. */
const GEMV_KNOBS = ['warps', 'rowsPerWarp', 'kSplit', 'xChunk'] as const;
const TILED_KNOBS = ['math', 'bm', 'bn', 'bk', 'warpsM', 'warpsN'] as const;

/** Knobs of one kernel only vary when that kernel is chosen (the `kernel` knob comes first). */
const gemvKnob = (c: EarlierOf<typeof KNOBS>) => c.kernel === 'gemv';
const tiledKnob = (c: EarlierOf<typeof KNOBS>) => c.kernel === 'tiled';

function cudaSpace(req: Req): SearchSpace {
  const { M, K } = req.shape;
  const layout = cudaWeightLayout(req.op, K);
  const g = layout.blockWeights;
  const quantized = req.op.weight.format !== 'f16';
  // bk must hold whole scale groups (and whole k16 slices); groups that divide none of the usual
  // sizes (e.g. 96) get their own multiples.
  const bkValues = [...new Set([64, 128, 32, 256, ...(quantized && 256 % g !== 0 ? [g, 2 * g] : [])])].filter((v) => !quantized || v % g === 0);
  // Default tiles: bm just covers M (up to 128); bn the largest that still gives every SM a block.
  const bmFirst = Math.min(128, Math.max(16, 2 ** Math.ceil(Math.log2(M))));
  const sms = req.device.gpu!.multiprocessors ?? 1;
  const bnFirst = [128, 64].find((bn) => ceilDiv(req.shape.N, bn) * ceilDiv(M, bmFirst) >= sms) ?? 32;
  const knobs: KnobOf<typeof KNOBS>[] = [
    { name: 'kernel', values: M <= GPU_GEMV_MAX_M ? ['gemv', 'tiled'] : ['tiled'], doc: `gemv: warps stream weight rows (M <= ${GPU_GEMV_MAX_M}); tiled: output tiles through a shared-memory pipeline` },
    { name: 'warps', values: [4, 8, 2], doc: 'gemv: warps per block', when: gemvKnob },
    { name: 'rowsPerWarp', values: [2, 4, 1], doc: 'gemv: weight rows per warp, sharing each activation load', when: gemvKnob },
    { name: 'kSplit', values: [1, 2, 4], doc: 'gemv: warps sharing the same rows, each reducing a slice of K (summed in shared memory)', when: gemvKnob },
    { name: 'xChunk', values: xChunkValues(M), doc: 'gemv: activations staged in shared memory per pass over K', when: gemvKnob },
    { name: 'math', values: hasMmaM16n8k16(req.device) ? ['mma', 'simt'] : ['simt'], doc: 'tiled: mma.sync m16n8k16 on f16 fragments (sm_80+) or f32 FMA', when: tiledKnob },
    { name: 'bm', values: preferFirst([128, 64, 32, 16], bmFirst), doc: 'tiled: activation rows per block tile', when: tiledKnob },
    { name: 'bn', values: preferFirst([128, 64, 256, 32], bnFirst), doc: 'tiled: weight rows per block tile', when: tiledKnob },
    { name: 'bk', values: bkValues, doc: 'tiled: K per pipeline stage (whole scale groups)', when: tiledKnob },
    { name: 'warpsM', values: [2, 1, 4], doc: 'tiled: warps along M', when: tiledKnob },
    { name: 'warpsN', values: [2, 4, 1], doc: 'tiled: warps along N', when: tiledKnob },
    { name: 'stages', values: [3, 2, 4], doc: 'cp.async pipeline depth (weight steps or K tiles in flight)' },
  ];
  const first = Object.fromEntries(knobs.map((k) => [k.name, k.values[0]]));
  const restrictions: RestrictionOf<typeof KNOBS>[] = [
    {
      reason: 'knob has no effect on this kernel (held at its first value)',
      allows: (c) => (c.kernel === 'gemv' ? TILED_KNOBS : GEMV_KNOBS).every((k) => c[k] === first[k]),
    },
    { reason: 'gemv: kSplit does not divide warps', allows: (c) => c.kernel !== 'gemv' || c.warps % c.kSplit === 0 },
    { reason: `gemv: more than ${CUDA_WARP_LANES} outputs per row group (rowsPerWarp x M)`, allows: (c) => c.kernel !== 'gemv' || c.rowsPerWarp * M <= CUDA_WARP_LANES },
    { reason: 'tiled: warp tile not a multiple of the mma tile (16 x 8) or SIMT tile (4 x 8)', allows: (c) => c.kernel !== 'tiled' || warpTileOk(c) },
    { reason: 'tiled: more than 128 accumulators per thread', allows: (c) => c.kernel !== 'tiled' || (c.bm * c.bn) / (c.warpsM * c.warpsN * CUDA_WARP_LANES) <= 128 },
    { reason: 'tiled: bk exceeds K (a smaller bk covers it)', allows: (c) => c.kernel !== 'tiled' || c.bk <= K || c.bk === Math.min(...bkValues) },
    { reason: 'tiled: bm exceeds M (a smaller bm covers it)', allows: (c) => c.kernel !== 'tiled' || c.bm / 2 < M || c.bm === 16 },
  ];
  return typedSpace(KNOBS, { knobs, restrictions });
}

function preferFirst(values: number[], first: number): number[] {
  return [first, ...values.filter((v) => v !== first)];
}

/** X chunks of about 16 KiB first (several blocks fit on an SM), then larger and smaller ones. */
function xChunkValues(M: number): number[] {
  const first = 2 ** Math.max(9, Math.floor(Math.log2(16384 / (4 * Math.max(1, M)))));
  return [first, first * 2, first / 2, first * 4, first / 4].filter((v) => v >= 256 && v <= 16384);
}

function warpTileOk(c: Knobs): boolean {
  const wm = c.bm / c.warpsM;
  const wn = c.bn / c.warpsN;
  return c.math === 'mma' ? wm % 16 === 0 && wn % 8 === 0 : wm % 4 === 0 && wn % 8 === 0;
}

/**
 * Bytes of shared memory for a staged span of `bytes` bytes that starts anywhere in its first
 * 16-byte chunk: up to 15 bytes before it, and a word after it that a funnel-shifted 32-bit read of
 * its last bytes also loads (those bits are shifted out).
 */
function slotFor(bytes: number): number {
  return ceilDiv(bytes + 15 + 4, 16) * 16;
}

/** Largest of 16, 8, 4 bytes that divides an X row, so every cp.async of X is aligned. */
function xCopyBytes(K: number, elemBytes: number): number {
  return [16, 8, 4].find((b) => (K * elemBytes) % b === 0)!;
}

function cudaPlan(req: Req, config: Config): PlanBody<'cuda-matmul'> {
  const knobs = readConfig(KNOBS, config);
  return knobs.kernel === 'gemv' ? gemvPlan(req, knobs) : tiledPlan(req, knobs);
}

/** The CUDA matmul planner: gemv (M <= GPU_GEMV_MAX_M) and tiled kernels, in CUDA's vocabulary. */
export const cudaMatmulPlanner: PlannerOf<'cuda-matmul'> = { family: 'cuda-matmul', space: cudaSpace, plan: cudaPlan };

/** Fields every CUDA matmul plan's params carry. */
function commonParams(req: Req) {
  const { op, shape } = req;
  const layout = cudaWeightLayout(op, shape.K);
  // Byte offsets into W (rows past N included, up to a tile of 256) fit in 32 bits below 2 GiB.
  const wOffsetType: string = (shape.N + 256) * layout.rowBytes + 64 < 2 ** 31 ? 'int' : 'long long';
  return {
    M: shape.M,
    N: shape.N,
    K: shape.K,
    rowBytes: layout.rowBytes,
    weightBytes: shape.N * layout.rowBytes,
    blockWeights: layout.blockWeights,
    blockBytes: layout.blockBytes,
    arch: req.device.gpu!.arch,
    ...CUDA_WARP,
    ...cudaFlush(req.device),
    wOffsetType,
    lutBytes: op.weight.format === 'q35' ? 128 : 0,
    // __launch_bounds__'s minimum blocks per SM. Stated explicitly because without it ptxas for
    // sm_90 picks its own register cap from the occupancy shared memory allows, and spills.
    minBlocks: 1,
  };
}

function finish<P extends object>(req: Req, parts: { config: Config; variant: string; threads: number; grid: [number, number, number]; gridExpr: [string, string, string]; loops: string[]; buffers: OnChipBuffer[]; params: P; f16Math: boolean }) {
  const { op, shape, device, target } = req;
  const shared = sumBytes(parts.buffers, 'shared');
  const isStatic = shared <= device.gpu!.sharedPerBlockBytes;
  const layout = cudaWeightLayout(op, shape.K);
  return {
    family: 'cuda-matmul' as const,
    op, shape, target, device: device.name, config: parts.config, variant: parts.variant,
    launch: { grid: parts.grid, block: [parts.threads, 1, 1] as [number, number, number], gridExpr: parts.gridExpr, sharedBytes: shared, dynamicShared: !isStatic },
    loops: parts.loops,
    buffers: parts.buffers,
    budgets: [...cudaBudgets(device, parts.buffers, parts.threads), ...cudaGridBudgets([parts.grid])],
    tolerance: toleranceFor({ outF16: op.y === 'f16' || parts.f16Math, inF16: op.x === 'f16' || parts.f16Math }),
    traffic: { bytes: shape.N * layout.rowBytes + shape.M * shape.K * dtypeBytes(op.x) + shape.M * shape.N * dtypeBytes(op.y), flops: 2 * shape.M * shape.N * shape.K },
    params: {
      ...parts.params,
      threads: parts.threads,
      gridX: parts.grid[0],
      gridY: parts.grid[1],
      smemBytes: shared,
      smemStatic: isStatic ? shared : 0,
      dynamicShared: !isStatic,
    },
  };
}

/**
 * The GEMV's staged activation chunk keeps X_PAD_FLOATS floats of padding after every X_PAD_EVERY
 * (a power of two), so the lanes' float4 reads of consecutive pieces fall in distinct banks.
 */
const X_PAD_EVERY = 32;
const X_PAD_FLOATS = 4;

function gemvPlan(req: Req, config: Knobs) {
  const { op, shape } = req;
  const { M, N, K } = shape;
  const base = commonParams(req);
  const { blockWeights: gw, blockBytes: gb, piece } = cudaWeightLayout(op, K);
  const { warps, rowsPerWarp, kSplit, stages } = config;
  // A step holds whole blocks: a warp's lanes x piecesPerLane pieces is a multiple of the block.
  const lanePieces = CUDA_WARP_LANES * piece;
  const piecesPerLane = gw / gcd(lanePieces, gw);
  const stepWeights = lanePieces * piecesPerLane;
  const stepBytes = (stepWeights / gw) * gb;
  const spanChunks = ceilDiv(stepBytes + 15, 16);
  const slotBytes = slotFor(stepBytes);
  const stepsPerRow = ceilDiv(K, stepWeights);
  const xChunk = Math.max(stepWeights, Math.floor(Math.min(config.xChunk, stepsPerRow * stepWeights) / stepWeights) * stepWeights);
  const xStride = xChunk + (xChunk / X_PAD_EVERY) * X_PAD_FLOATS;
  const rowGroups = warps / kSplit;
  const rowsPerBlock = rowGroups * rowsPerWarp;
  const threads = warps * CUDA_WARP_LANES;
  const xBytes = M * xStride * 4;
  const ringBytes = warps * stages * rowsPerWarp * slotBytes;
  const redBytes = kSplit > 1 ? ceilDiv(warps * rowsPerWarp * M * 4, 16) * 16 : 0;
  const buffers: OnChipBuffer[] = [
    { name: 'activation chunk', space: 'shared', size: xBytes, why: `${M}x${xChunk} f32 activations, ${X_PAD_FLOATS} floats of padding per ${X_PAD_EVERY} (conflict-free float4 reads)` },
    { name: 'weight rings', space: 'shared', size: ringBytes, why: `${warps} warps x ${stages} stages x ${rowsPerWarp} rows x ${slotBytes} bytes (${stepBytes}-byte steps as 16-byte chunks)` },
  ];
  if (redBytes) buffers.push({ name: 'K-split partial sums', space: 'shared', size: redBytes, why: `${kSplit} K slices of ${rowsPerWarp}x${M} sums per row group` });
  if (base.lutBytes) buffers.push({ name: 'q3.5 tables', space: 'shared', size: base.lutBytes, why: 'tables A and B as f32, indexed by the codes' });
  // Calibrated like tiledRegisters (ptxas 13.0, sm_80, 2026-12-05): 102-168 registers measured, no spills.
  buffers.push({ name: 'registers', space: 'registers', size: 72 + 2 * rowsPerWarp * M + 4 * M, why: 'estimate: sums and partial sums per (row, activation row), one float4 of X per activation row, decode temporaries, addressing' });
  const offX = 0;
  const offRing = offX + xBytes;
  const offRed = offRing + ringBytes;
  const offLut = offRed + redBytes;
  return finish(req, {
    config,
    variant: 'gemv',
    threads,
    grid: [ceilDiv(N, rowsPerBlock), 1, 1],
    gridExpr: [`ceil(N / ${rowsPerBlock})`, '1', '1'],
    loops: [
      `grid: ${ceilDiv(N, rowsPerBlock)} blocks of ${rowsPerBlock} rows (${rowGroups} row groups x ${rowsPerWarp} rows; ${kSplit} warps per group split K)`,
      `for k0 in [0, ${K}) step ${xChunk}: stage X[0:${M}, k0:k0+${xChunk}) as f32`,
      `  each warp: steps of ${stepWeights} weights (${stepBytes} bytes per row), ${stages}-stage cp.async ring`,
      `    each lane: ${piecesPerLane} piece(s) of ${piece} weights per row, decoded in registers, one scale per piece`,
      `shuffle-reduce ${rowsPerWarp}x${M} sums per warp${kSplit > 1 ? `, then ${kSplit} K slices in shared memory` : ''}; epilogue`,
    ],
    buffers,
    f16Math: false,
    params: {
      ...base,
      kernel: 'gemv' as const,
      warps, rowsPerWarp, kSplit, stages, rowGroups, rowsPerBlock,
      piece,
      piecesPerBlock: gw / piece,
      piecesPerLane,
      stepWeights,
      stepBytes,
      stepsPerRow,
      spanChunks,
      chunkIters: ceilDiv(spanChunks, CUDA_WARP_LANES),
      slotBytes,
      slotWords: slotBytes / 4,
      xChunk,
      xStride,
      xPadEvery: X_PAD_EVERY,
      xPadShift: Math.log2(X_PAD_EVERY),
      xPadFloats: X_PAD_FLOATS,
      xStageIters: ceilDiv(M * xChunk, threads),
      outputs: rowsPerWarp * M,
      offX, offRing, offRed, offLut,
    },
  });
}

/**
 * Registers per thread of the tiled kernels, estimated from what the templates keep live across the
 * K loop: the accumulators and operand fragments, one address per unrolled staging copy (ptxas
 * hoists their loop-invariant parts out of the K loop: `xIssueIters` + `wIssueIters`), and for SIMT
 * the temporaries of the unrolled decode of the weight tile (`decodeIters`, about 6 registers each,
 * 9 for q3.5's table lookups). mma adds the per-warp indexing that shrinks as warps are added.
 *
 * Calibrated with `nvcc -cubin -Xptxas -v` (CUDA 13.0) on 2026-12-05 for sm_75 and sm_80 (spot
 * checks on sm_89 and sm_90), over about 400 legal tiled configs: an upper bound of the real count
 * near ptxas's 255 cap, so that every sampled config over its budget (255, and 65536 / threads)
 * spilled or sat at the cap, and none at or under it spilled; far below the cap it can be 50-70
 * registers low (docs/cuda.md has the table).
 */
export function tiledRegisters(t: { mma: boolean; mi: number; ni: number; tm: number; tn: number; xIssueIters: number; wIssueIters: number; decodeIters: number; threads: number; q35: boolean }): number {
  const staging = t.xIssueIters + t.wIssueIters;
  if (t.mma) return 48 + t.mi * t.ni * 4 + 2 * t.mi + 2 * t.ni + staging + Math.floor(2048 / t.threads);
  return 48 + t.tm * t.tn + t.tm + t.tn + (t.q35 ? 9 : 6) * t.decodeIters + staging;
}

function tiledPlan(req: Req, config: Knobs) {
  const { op, shape } = req;
  const { M, N, K } = shape;
  const base = commonParams(req);
  const { blockWeights: gw, blockBytes: gb, piece } = cudaWeightLayout(op, K);
  const mma = config.math === 'mma';
  const { bm, bn, bk, stages, warpsM, warpsN } = config;
  const threads = warpsM * warpsN * CUDA_WARP_LANES;
  const wm = bm / warpsM;
  const wn = bn / warpsN;
  const xElemBytes = dtypeBytes(op.x);
  const xCopy = xCopyBytes(K, xElemBytes);
  const xStride = bk + 8;
  const xStageBytes = bm * xStride * xElemBytes;
  const span = (bk / gw) * gb;
  const wChunks = ceilDiv(span + 15, 16);
  const wSlot = slotFor(span);
  const wStageBytes = bn * wSlot;
  const wdStride = bk + 4;
  const wdBytes = mma ? 0 : bn * wdStride * 4;
  const xChunksPerRow = (bk * xElemBytes) / xCopy;
  const buffers: OnChipBuffer[] = [
    { name: 'activation tiles', space: 'shared', size: stages * xStageBytes, why: `${stages} stages of ${bm}x${bk} ${op.x} activations (rows padded by 8)` },
    { name: 'weight tiles', space: 'shared', size: stages * wStageBytes, why: `${stages} stages of ${bn} rows x ${span} packed bytes as ${wChunks} 16-byte chunks` },
  ];
  if (wdBytes) buffers.push({ name: 'decoded weight tile', space: 'shared', size: wdBytes, why: `${bn}x${bk} f32 weights, decoded once per K step` });
  if (base.lutBytes) buffers.push({ name: 'q3.5 tables', space: 'shared', size: base.lutBytes, why: 'tables A and B as f32, indexed by the codes' });
  const mi = wm / 16;
  const ni = wn / 8;
  const tm = wm / 4;
  const tn = wn / 8;
  const xIssueIters = ceilDiv((bm * bk * xElemBytes) / xCopy, threads);
  const wIssueIters = ceilDiv(bn * wChunks, threads);
  const decodeIters = ceilDiv((bn * bk) / 4, threads);
  const regs = tiledRegisters({ mma, mi, ni, tm, tn, xIssueIters, wIssueIters, decodeIters, threads, q35: base.lutBytes > 0 });
  buffers.push({
    name: 'registers', space: 'registers', size: regs,
    why: mma
      ? `estimate: ${mi}x${ni} mma tiles of 4 f32 accumulators, A fragments and B row offsets, ${xIssueIters}+${wIssueIters} staging copies' addresses, indexing`
      : `estimate: ${tm}x${tn} f32 accumulators and operands, ${decodeIters} unrolled weight decodes, ${xIssueIters}+${wIssueIters} staging copies' addresses, indexing`,
  });
  const offX = 0;
  const offW = stages * xStageBytes;
  const offWd = offW + stages * wStageBytes;
  const offLut = offWd + wdBytes;
  const grid: [number, number, number] = [ceilDiv(N, bn), ceilDiv(M, bm), 1];
  return finish(req, {
    config,
    variant: mma ? 'tiled_mma' : 'tiled_simt',
    threads,
    grid,
    gridExpr: [`ceil(N / ${bn})`, `ceil(M / ${bm})`, '1'],
    loops: [
      `grid ${grid[0]}x${grid[1]} tiles of ${bm}x${bn}; ${warpsM}x${warpsN} warps of ${wm}x${wn}`,
      `for k0 in [0, ${K}) step ${bk}, ${stages}-stage cp.async pipeline (X tile + raw weight bytes)`,
      mma ? `  per k16: A fragments (${op.x === 'f16' ? 'ldmatrix.x4' : 'f32 -> f16'}), B fragments decoded in registers, ${mi}x${ni} mma.sync m16n8k16` : `  decode the weight tile to f32 in shared memory, then ${tm}x${tn} FMA per thread per k`,
      'epilogue per element, ragged M and N guarded',
    ],
    buffers,
    f16Math: mma,
    params: {
      ...base,
      kernel: 'tiled' as const,
      mma,
      bm, bn, bk, stages, warpsM, warpsN, wm, wn,
      mi, ni, tm, tn,
      kTiles: ceilDiv(K, bk),
      k16PerTile: bk / 16,
      slicesPerBlock: Math.max(1, gw / 16),
      xElemBytes,
      xCopy,
      xCopyElems: xCopy / xElemBytes,
      xChunksPerRow,
      xIssueIters,
      xStride,
      xStageBytes,
      span,
      wChunks,
      wSlot,
      wStageBytes,
      wIssueIters,
      wdStride,
      piece,
      piecesPerBlock: gw / piece,
      piecesPerTile: bk / piece,
      decodeIters,
      offX, offW, offWd, offLut,
    },
  });
}
