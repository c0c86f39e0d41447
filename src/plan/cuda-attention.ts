import { kvRowFormat as storedRowFormat, softmaxScale } from '../ir/attention.js';
import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { attentionTraffic, GPU_KV_SPLITS, kvLayout, kvLengthParams, q8GroupOfFours, SPLITK_MAX_SQ, type KvRowParams } from './attention-common.js';
import { ceilDiv, readConfig, sumBytes, toleranceFor, typedSpace, type RestrictionOf } from './common.js';
import { CUDA_WARP, CUDA_WARP_LANES, type CudaFlush, type CudaWarp, cudaBudgets, cudaFlush, cudaGridBudgets, hasMmaM16n8k16 } from './cuda-common.js';
import type { Config, LaunchShape, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, Restriction, SearchSpace } from './types.js';

/**
 * CUDA attention plans. Both kernels run the same tile loop (templates/cuda/attention/tile_loop.hbs):
 * a block owns `rows` query rows, stages `keys` keys and values per tile in shared memory (as
 * stored: f16, int8 codes with their f16 scales, or ggml q8_0 / q4_0 blocks, dequantized in
 * registers), computes their
 * scores, updates an online softmax per row and accumulates P.V in registers.
 * - splitk_decode (Sq <= SPLITK_MAX_SQ): the rows are all query heads of one GQA group (Hq/Hkv x
 *   Sq rows sharing one KV head, so each K/V tile is loaded once for the group); the KV sequence is
 *   split across `splits` blocks, each writing its rows' (max, sum, unnormalized output) to a
 *   workspace, and a second kernel merges the splits by log-sum-exp. With one split there is
 *   nothing to merge: the block writes O itself, with no workspace and no second launch.
 * - flash_prefill: `br` query rows of one head per block, key tiles of `bc`; with `causal`, tiles
 *   past the block's last diagonal key are never loaded and only keys past a row's diagonal are
 *   masked.
 */

/**
 * Most query rows one decode block holds: 64, and no more than 32 KiB of f32 Q rows (32 rows at
 * D = 256); a larger GQA group is split over blocks along y.
 */
export function decodeMaxRows(D: number): number {
  return Math.min(64, Math.floor(32768 / (4 * D)));
}

type Dims = { B: number; Hq: number; Hkv: number; Sq: number; Skv: number; D: number };

/** What every attention kernel prints: the shape, the KV row format and layout, the staging ring, shared memory and grid. */
type RingParams = Dims & KvRowParams & CudaWarp & CudaFlush & {
  arch: string;
  /** __launch_bounds__'s minimum blocks per SM. */
  minBlocks: number;
  group: number;
  causal: boolean;
  /**
   * The kernels take kv_len, the positions a call reads (the first kv_len of each head's Skv), from
   * kvLenMin to Skv (op.kvLength 'runtime'); the grid stays sized for Skv.
   */
  runtimeKvLength: boolean;
  kvLenMin: number;
  /** scale x log2(e): scores are kept in base 2 (exp2f). */
  scaleLog2: number;
  /** Bytes of one ggml block (its f16 scale and codes; 0 for f16 and q8). */
  kvBlockBytes: number;
  /**
   * A row's stored bytes are staged as `kvChunks` chunks of `kvChunkBytes`: 16 for f16 and q8
   * codes; for ggml rows the widest of 16, 8, 4 and 2 dividing the row (a row starts no better
   * aligned). `kvChunkAsync`: chunks of 4 bytes or more go by cp.async, 2-byte ones by plain copies.
   * Pieces a row is staged as: its chunks, then one per scale of a q8 row.
   */
  kvChunkBytes: number;
  kvChunkAsync: boolean;
  kvChunks: number;
  kvPieces: number;
  /** Bytes of one staged row in shared memory: values, scales, padding (spreads rows over banks). */
  slotBytes: number;
  /** Byte offset of a staged row's scales. */
  slotScaleOffset: number;
  /** Query rows per block, rows of the block's row space (Hq/Hkv x Sq or Sq), keys per tile, pipeline depth. */
  rows: number;
  rowSpace: number;
  keys: number;
  stages: number;
  warps: number;
  threads: number;
  /** Staging items (16-byte chunks and scales of K and V) per thread and tile. */
  stageIters: number;
  /** Byte offset of the K/V stages in shared memory, and of one stage (K then V). */
  offKv: number;
  kvStageBytes: number;
  smemBytes: number;
  smemStatic: number;
  dynamicShared: boolean;
  gridX: number;
  gridY: number;
  gridZ: number;
};

/** The SIMT tile loop (templates/cuda/attention/tile_loop.hbs): Q rows, scores and row statistics in shared memory. */
type SimtParams = {
  /** Quads (4 values) of a row of D. */
  dQuads: number;
  /** Loop trip counts per thread: (row, key) scores, output quads. */
  scoreIters: number;
  quadsPerThread: number;
  /** Byte offsets of the Q rows (f32, pre-scaled), the scores and the row statistics. */
  offQ: number;
  offScores: number;
  offStats: number;
};

/** The tensor-core prefill: k16 slices and n8 blocks of D and of a key tile. */
type MmaParams = {
  dSlices: number;
  dBlocks: number;
  keySlices: number;
  keyBlocks: number;
  /**
   * Quantized K enters S = Q K^T as its codes (exact in f16), one scale group at a time: `kGroups`
   * groups a row of `kGroupSlices` k16 slices each, whose partial scores are multiplied by their
   * keys' scales in f32 (`mmaKGroups`). f16 K is exact as it is: one group of dSlices, unscaled.
   */
  kScaled: boolean;
  kGroups: number;
  kGroupSlices: number;
};

type PrefillParams = { br: number; bc: number; qTiles: number };

export type CudaAttentionParams =
  | (RingParams & SimtParams & {
      kernel: 'splitk_decode';
      /**
       * Blocks along the KV sequence (the kvSplit knob, fewer when the sequence is short) and keys per
       * split at Skv; with a run-time length each call's splits share its kv_len keys in whole tiles
       * (splits past them write a neutral partial: max -inf, sum 0).
       */
      splits: number;
      splitKeys: number;
      rowGroups: number;
      /** splits > 1: partials go to the workspace and a second kernel merges them; else the block writes O (workspace 0). */
      merge: boolean;
      /** Workspace: floats of unnormalized outputs, then (max, sum) pairs; byte size (0 without merge). */
      wsAccFloats: number;
      workspaceBytes: number;
      mergeWarps: number;
      mergeThreads: number;
      mergeGrid: number;
      /** Values of D per lane in the merge (ceil(D / CUDA_WARP_LANES)). */
      mergeIters: number;
    })
  | (RingParams & SimtParams & PrefillParams & { kernel: 'flash_prefill' })
  | (RingParams & MmaParams & PrefillParams & { kernel: 'flash_prefill_mma' });

declare module './types.js' {
  interface PlanFamilies {
    'cuda-attention': { op: AttentionOp; shape: AttentionShape; params: CudaAttentionParams };
  }
}

type Req = PlanRequestFor<AttentionOp, AttentionShape>;

/** The knobs of each kernel's space, by type. */
const DECODE_KNOBS = { kvSplit: 'number', kvBlock: 'number', warps: 'number', stages: 'number' } as const;
const PREFILL_KNOBS = { math: ['mma', 'simt'], br: 'number', bc: 'number', stages: 'number', warps: 'number' } as const;

/** Rules of both kernels, whatever the config: they hold for the op and shape or for none. */
function formatRestrictions(req: Req): Restriction[] {
  const { op, shape } = req;
  return [
    { reason: 'D is not a multiple of 16 (K/V rows are staged as 16-byte chunks)', allows: () => shape.D % 16 === 0 },
    q8GroupOfFours(op),
  ];
}

/** Blocks the decode grid has besides its splits. */
function decodeRowGroups(shape: Dims): number {
  return ceilDiv((shape.Hq / shape.Hkv) * shape.Sq, decodeMaxRows(shape.D));
}

/** Most output quads (4 f32 accumulators each) a SIMT thread holds: more spill (ptxas, sm_90, D = 256). */
const MAX_QUADS = 16;

/** The SIMT tile loop's register rule for `rows` query rows a block (a config's `warps` threads). */
function quadLimit(rows: number, D: number): RestrictionOf<{ warps: 'number' }> {
  return { reason: `simt: more than ${MAX_QUADS} output quads (4 accumulators each) per thread`, allows: (c) => ceilDiv((rows * D) / 4, CUDA_WARP_LANES * c.warps) <= MAX_QUADS };
}

/** Registers of the tensor-core prefill's fragments per thread: Q (D/16 x 4), scores (bc/8 x 4), output (D/8 x 4). */
function mmaRegisters(D: number, bc: number): number {
  return (D / 16) * 4 + (bc / 8) * 4 + (D / 8) * 4;
}

/**
 * Registers per thread of the tensor-core prefill, estimated: its fragments (with a quantized K, the
 * f32 fragment of one scale group's partial scores besides), one hoisted address per unrolled
 * staging copy of the K/V ring (`stageIters`, 2 registers each), per-warp indexing that shrinks as
 * warps are added, softmax state and addressing. Calibrated with `nvcc -cubin -Xptxas -v` (CUDA
 * 13.0, sm_80, 2026-12-05) over the legal configs of f16 D = 128 and q8 D = 96: an upper bound near
 * ptxas's 255 cap (a config over its budget spilled or sat at the cap; docs/cuda.md). Plus
 * `TWO_STAGES_FEW_WARPS` where the ring has 2 stages and the block fewer than 4 warps.
 */
function mmaPrefillRegisters(D: number, bc: number, stageIters: number, threads: number, kScaled: boolean, stages: number): number {
  return 70 + mmaRegisters(D, bc) + (kScaled ? 4 : 0) + 2 * stageIters + Math.floor(1024 / threads) + twoStagesFewWarps(stages, threads);
}

/** The registers `TWO_STAGES_FEW_WARPS` adds for a ring of `stages` and a block of `threads` (0 where it does not apply). */
function twoStagesFewWarps(stages: number, threads: number): number {
  return stages === 2 && threads < 4 * CUDA_WARP_LANES ? TWO_STAGES_FEW_WARPS : 0;
}

/**
 * Registers the tensor-core prefill takes beyond its estimate with a 2-stage ring and 1 or 2 warps.
 * Measured, not modelled: over every legal mma config of D = 64, 96 and 128 for the quantized caches
 * and the 2-stage ones for f16 (Sq = 64; ptxas 13.0; sm_80, sm_89, sm_90; 2026-12-05: 438
 * kernels), all 39 that spilled had 2 stages and
 * fewer than 4 warps, from an estimate of 194 (f16 and quantized caches alike), while the same tiles
 * with 3 stages, or 4 warps, stayed within 255. 62 puts the first spill over the 255 budget; the
 * 3-stage configs of those tiles stay legal.
 */
const TWO_STAGES_FEW_WARPS = 62;

/**
 * Registers of a SIMT attention thread besides its output quads and staging addresses (indexing,
 * softmax state, pointers). Measured: every legal SIMT prefill config of D = 128 and 256 for each KV
 * format on sm_90 (Sq = 64; ptxas 13.0, 2026-12-05: 439 kernels) spilled 7 times, q8_0 and q4_0
 * caches (2-byte staging pieces, so many copies a thread) at estimates of 240 and 248 with a base
 * of 40, while every config at 232 or less stayed within 255; 56 put those spills over the budget.
 * 64 since a sweep of the configs estimated at 210 or more (D = 64, 96 and 128, each format; sm_80,
 * sm_89 and sm_90; Sq = 64, Skv = 512; ptxas 13.0, 2026-12-06; 80 kernels): all 16 at 248 sat at
 * 252-255 registers and 4 spilled (q8 KV at D = 96, bc = 128, one warp; on sm_80 also before the
 * tile loop kept a masked key's V out of P.V), while every one at 232 or less stayed within 255.
 */
const SIMT_BASE_REGISTERS = 64;

/** Values of D one mma.sync m16n8k16 multiplies per step (a k16 slice). */
const MMA_K = 16;

/**
 * How the tensor-core prefill feeds K to S = Q K^T. A quantized K is not dequantized to f16 first:
 * code x scale rounded to f16 errs by up to 2^-12 of the value, and with LLM-like data (a pair of
 * outlier channels, Q ~ 12 and K ~ 10 there) those errors, times Q's large values, moved the scores
 * enough that exp() made O miss the f16 tolerance (NMSE 6e-6 on q8 and q8_0 caches at D = 64,
 * through the CPU shim). So the mma multiplies Q by K's codes, exact in f16 (int8, q4_0's nibble -
 * 8), one scale group of K at a time, and scales each group's partial scores in f32. A group must
 * then be whole k16 slices (`mmaScaleGroups`).
 */
function mmaKGroups(op: AttentionOp, D: number, kvGroup: number): { kScaled: boolean; kGroups: number; kGroupSlices: number } {
  if (op.kvCache === 'f16') return { kScaled: false, kGroups: 1, kGroupSlices: D / MMA_K };
  return { kScaled: true, kGroups: D / kvGroup, kGroupSlices: kvGroup / MMA_K };
}

/** The tensor-core prefill scales K's partial scores per scale group: a group must be whole k16 slices. */
function mmaScaleGroups(op: AttentionOp): RestrictionOf<typeof PREFILL_KNOBS> {
  return {
    reason: `mma: the q8 KV scale group (${op.kvGroupSize} values) is not a multiple of ${MMA_K}, an mma k-slice, so K's scales cannot be applied to the score accumulators between slices`,
    allows: (c) => c.math !== 'mma' || op.kvCache !== 'q8' || op.kvGroupSize! % MMA_K === 0,
  };
}

/** Whether D is a power of two (q8 scale indexing stays shifts and masks). */
const powerOfTwo = (n: number) => (n & (n - 1)) === 0;

function cudaSpace(req: Req): SearchSpace {
  const { shape, device } = req;
  if (shape.Sq <= SPLITK_MAX_SQ) {
    // Default split: the fewest splits that give every SM two blocks, else the most there are.
    const others = shape.B * shape.Hkv * decodeRowGroups(shape);
    const wanted = (2 * (device.gpu!.multiprocessors ?? 1)) / others;
    const sorted = [...GPU_KV_SPLITS].sort((a, b) => a - b);
    const first = sorted.find((s) => s >= wanted) ?? sorted[sorted.length - 1]!;
    return typedSpace(DECODE_KNOBS, {
      knobs: [
        { name: 'kvSplit', values: [first, ...GPU_KV_SPLITS.filter((s) => s !== first)], doc: 'blocks along the KV sequence, merged by log-sum-exp in a second kernel (1: no merge, no workspace)' },
        { name: 'kvBlock', values: [32, 64, 16, 128], doc: 'keys (and values) staged in shared memory per tile' },
        { name: 'warps', values: [4, 2, 8], doc: 'warps per block' },
        { name: 'stages', values: [2, 3], doc: 'K/V tiles in flight (cp.async pipeline)' },
      ],
      restrictions: [
        ...formatRestrictions(req),
        { reason: 'kvSplit leaves partitions shorter than kvBlock', allows: (c) => c.kvSplit === 1 || shape.Skv / c.kvSplit >= c.kvBlock },
        quadLimit(Math.min(shape.Sq * (shape.Hq / shape.Hkv), decodeMaxRows(shape.D)), shape.D),
      ],
    });
  }
  return typedSpace(PREFILL_KNOBS, {
    knobs: [
      { name: 'math', values: hasMmaM16n8k16(device) ? ['mma', 'simt'] : ['simt'], doc: 'mma: scores and P.V on tensor cores (mma.sync m16n8k16, f16 operands, a quantized K as its codes scaled in f32; sm_80+); simt: f32 FMA' },
      { name: 'br', values: [64, 128, 32, 16], doc: 'query rows per block' },
      { name: 'bc', values: [64, 32, 128, 16], doc: 'keys per tile' },
      { name: 'stages', values: [2, 3], doc: 'K/V tiles in flight (cp.async pipeline)' },
      { name: 'warps', values: [4, 8, 2, 1], doc: 'warps per block' },
    ],
    restrictions: [
      ...formatRestrictions(req),
      { reason: 'br exceeds Sq (a smaller br covers it)', allows: (c) => c.br / 2 < shape.Sq || c.br === 16 },
      { reason: 'mma: each warp owns 16 query rows (br = 16 x warps)', allows: (c) => c.math !== 'mma' || c.br === 16 * c.warps },
      { reason: 'mma: more than 160 accumulator registers per thread (Q, score and output fragments)', allows: (c) => c.math !== 'mma' || mmaRegisters(shape.D, c.bc) <= 160 },
      mmaScaleGroups(req.op),
      // Measured, not modelled: q8 rows of D = 96 (3 scale groups) spill from bc = 64 at any warp
      // count, and at bc = 32 with fewer than 4 warps (255 registers, 8-304 bytes; ptxas 13.0,
      // sm_80/sm_89, 2026-12-05); bc = 32 with 4 warps uses 240, bc = 16 at most 233.
      { reason: 'mma: q8 KV rows whose D is not a power of two spill past 16 keys per tile (32 with 4 or more warps)', allows: (c) => c.math !== 'mma' || req.op.kvCache !== 'q8' || powerOfTwo(shape.D) || c.bc <= 16 || (c.bc === 32 && c.warps >= 4) },
      { ...quadLimit(0, shape.D), allows: (c) => c.math === 'mma' || quadLimit(c.br, shape.D).allows(c) },
    ],
  });
}

const round16 = (n: number) => ceilDiv(n, 16) * 16;

/**
 * One K or V row of D values as stored (src/ir/attention.ts kvRowFormat) and as staged in shared
 * memory: the pieces it is staged as (chunks of its stored bytes, then one piece per 2-byte scale
 * of a q8 row; kg_kv_stage of the format's partial), and its slot: the stored bytes as they are,
 * a q8 row's scales at `slotScaleOffset`, 16 bytes of padding so consecutive rows start in
 * different banks. A format is one case here and one partial in templates/cuda/attention/kv/.
 */
function kvRowFormat(op: AttentionOp, D: number) {
  const stored = storedRowFormat(op, D);
  const kvRowBytes = stored.rowBytes;
  const kvScaleRowBytes = 2 * stored.scalesPerRow;
  // A ggml row is whole blocks of 34 or 18 bytes: row r starts at r x rowBytes, aligned to the
  // largest power of two dividing rowBytes (4 at D = 64, 8 at 128, 16 at 256, 2 at 96).
  const kvChunkBytes = [16, 8, 4, 2].find((b) => kvRowBytes % b === 0)!;
  const kvChunks = kvRowBytes / kvChunkBytes;
  const ggml = op.kvCache === 'q8_0' || op.kvCache === 'q4_0';
  const what = {
    f16: `${kvRowBytes} bytes of f16`,
    q8: `${kvRowBytes} bytes of int8 codes and ${kvScaleRowBytes} of f16 scales`,
    q8_0: `${kvRowBytes} bytes of ggml q8_0 blocks`,
    q4_0: `${kvRowBytes} bytes of ggml q4_0 blocks`,
  }[op.kvCache];
  return {
    kvGroup: stored.valuesPerScale || D,
    kvRowBytes,
    kvScaleRowBytes,
    // A ggml block: its f16 scale, then 32 int8 codes (q8_0, 34 bytes) or 16 bytes of nibbles (q4_0, 18).
    kvBlockBytes: ggml ? kvRowBytes / (D / stored.valuesPerScale) : 0,
    kvChunkBytes,
    kvChunkAsync: kvChunkBytes >= 4,
    kvChunks,
    kvPieces: kvChunks + stored.scalesPerRow,
    slotBytes: round16(kvRowBytes + kvScaleRowBytes) + 16,
    slotScaleOffset: kvRowBytes,
    what: kvChunkBytes === 16 ? what : `${what} (staged in ${kvChunkBytes}-byte pieces)`,
  };
}


function cudaPlan(req: Req, config: Config): PlanBody<'cuda-attention'> {
  const { op, shape, device, target } = req;
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const group = Hq / Hkv;
  const decode = Sq <= SPLITK_MAX_SQ;
  // Each kernel's knobs; `in` tells them apart below (kvBlock and kvSplit: decode, br, bc and math: prefill).
  const knobs = decode ? readConfig(DECODE_KNOBS, config) : readConfig(PREFILL_KNOBS, config);
  const warps = knobs.warps;
  const threads = warps * CUDA_WARP_LANES;
  const stages = knobs.stages;
  const keys = 'kvBlock' in knobs ? knobs.kvBlock : knobs.bc;
  const rowSpace = decode ? group * Sq : Sq;
  const rows = 'br' in knobs ? knobs.br : Math.min(rowSpace, decodeMaxRows(D));

  const row = kvRowFormat(op, D);
  const { kvRowBytes, kvScaleRowBytes, slotBytes } = row;
  const layout = kvLayout(op, shape);

  const mma = 'math' in knobs && knobs.math === 'mma';
  const kvStageBytes = 2 * keys * slotBytes;
  const kvBuffer: OnChipBuffer = { name: 'K/V tiles', space: 'shared', size: stages * kvStageBytes, why: `${stages} stages x (K and V) x ${keys} rows of ${slotBytes} bytes (${row.what}, padded)` };
  // SIMT: Q rows, the K/V ring, scores and row statistics in shared memory. mma: only the ring;
  // Q, scores and statistics live in registers.
  const qBytes = mma ? 0 : rows * D * 4;
  const scoreBytes = rows * keys * 4;
  // Per row: running max, sum and rescale factor (f32), and the keys of the tile it sees (int).
  const statBytes = round16(4 * rows * 4);
  const offQ = 0;
  const offKv = offQ + qBytes;
  const offScores = offKv + stages * kvStageBytes;
  const offStats = offScores + scoreBytes;
  const quadsPerThread = ceilDiv((rows * D) / 4, threads);
  const stageIters = ceilDiv(2 * keys * row.kvPieces, threads);
  const kFeed = mmaKGroups(op, D, row.kvGroup);
  const buffers: OnChipBuffer[] = mma
    ? [kvBuffer, { name: 'fragments', space: 'registers', size: mmaPrefillRegisters(D, keys, stageIters, threads, kFeed.kScaled, stages), why: `estimate: Q (${D / 16} k16 slices), scores (${keys / 8} n8 blocks)${kFeed.kScaled ? ', a K scale group\'s partial scores' : ''} and output (${D / 8} n8 blocks) fragments, 4 registers each, ${stageIters} staging copies' addresses, softmax state, indexing${twoStagesFewWarps(stages, threads) ? `, ${TWO_STAGES_FEW_WARPS} more measured with 2 stages and fewer than 4 warps` : ''}` }]
    : [
        { name: 'query rows', space: 'shared', size: qBytes, why: `${rows} rows x ${D} as f32, pre-scaled by scale x log2(e)` },
        kvBuffer,
        { name: 'scores', space: 'shared', size: scoreBytes, why: `${rows} x ${keys} f32 scores, then probabilities, of the current tile` },
        { name: 'row statistics', space: 'shared', size: statBytes, why: `running max, sum, rescale factor and keys seen of ${rows} rows` },
        // Calibrated with the mma estimate (2026-12-05): 2 registers per unrolled staging copy; the
        // only SIMT spill measured then (f16 D = 128, bc = 128, one warp: 128 copies) is over the
        // budget. SIMT_BASE_REGISTERS from later sweeps (below).
        { name: 'accumulators', space: 'registers', size: SIMT_BASE_REGISTERS + 4 * quadsPerThread + 2 * stageIters, why: `estimate: ${quadsPerThread} output quads (4 values of D) per thread, ${stageIters} staging copies' addresses, indexing` },
      ];
  const shared = sumBytes(buffers, 'shared');
  const isStatic = shared <= device.gpu!.sharedPerBlockBytes;
  const common = {
    B, Hq, Hkv, Sq, Skv, D,
    arch: device.gpu!.arch,
    ...CUDA_WARP,
    ...cudaFlush(device),
    // __launch_bounds__'s minimum blocks per SM (templates/cuda/kernel_head.hbs).
    minBlocks: 1,
    group,
    causal: op.causal,
    ...kvLengthParams(op, shape),
    scaleLog2: softmaxScale(op, D) * Math.LOG2E,
    kvLayout: layout.name,
    kvBatchRows: layout.batchRows,
    kvHeadRows: layout.headRows,
    kvPosRows: layout.posRows,
    kvRowBytes, kvScaleRowBytes, slotBytes,
    kvGroup: row.kvGroup,
    kvBlockBytes: row.kvBlockBytes,
    kvChunkBytes: row.kvChunkBytes,
    kvChunkAsync: row.kvChunkAsync,
    kvChunks: row.kvChunks,
    kvPieces: row.kvPieces,
    slotScaleOffset: row.slotScaleOffset,
    rows, rowSpace, keys, stages, warps, threads,
    stageIters,
    offKv, kvStageBytes,
    smemBytes: shared,
    smemStatic: isStatic ? shared : 0,
    dynamicShared: !isStatic,
  };
  const base = {
    family: 'cuda-attention' as const,
    op, shape, target, device: device.name, config,
    buffers,
    budgets: cudaBudgets(device, buffers, threads),
    // mma rounds Q, V and P to f16; K enters exactly (f16 as stored, quantized as codes scaled in f32).
    tolerance: toleranceFor({ outF16: op.o === 'f16', inF16: op.q === 'f16' || mma }),
    traffic: attentionTraffic(op, shape),
  };
  const block: [number, number, number] = [threads, 1, 1];
  const simt = { dQuads: D / 4, scoreIters: ceilDiv(rows * keys, threads), quadsPerThread, offQ, offScores, offStats };
  if ('kvSplit' in knobs) {
    const rowGroups = decodeRowGroups(shape);
    const splitKeys = ceilDiv(ceilDiv(Skv, knobs.kvSplit), keys) * keys;
    const splits = ceilDiv(Skv, splitKeys);
    // One split has nothing to merge: the block normalizes its rows and writes O itself.
    const merge = splits > 1;
    const partials = merge ? B * Hkv * splits * rowSpace : 0;
    const wsAccFloats = partials * D;
    const workspaceBytes = 4 * (wsAccFloats + 2 * partials);
    const mergeWarps = 4;
    const mergeGrid = ceilDiv(B * Hq * Sq, mergeWarps);
    const grid: [number, number, number] = [splits, Hkv * rowGroups, B];
    const secondPass: LaunchShape['secondPass'] = { what: 'merge the splits by log-sum-exp', grid: [mergeGrid, 1, 1], block: [mergeWarps * CUDA_WARP_LANES, 1, 1], gridExpr: [`ceil(B * Hq * Sq / ${mergeWarps})`, '1', '1'] };
    return {
      ...base,
      budgets: [...base.budgets, ...cudaGridBudgets(merge ? [grid, secondPass.grid] : [grid])],
      variant: 'splitk_decode',
      launch: {
        grid, block,
        gridExpr: [`ceil(Skv / ${splitKeys})`, `Hkv * ${rowGroups}`, 'B'],
        sharedBytes: shared,
        dynamicShared: !isStatic,
        workspaceBytes,
        ...(merge ? { secondPass } : {}),
      },
      loops: [
        `grid ${splits} split${merge ? 's' : ''} of ${op.kvLength === 'runtime' ? `ceil(kv_len / ${splits}) keys rounded up to ${keys} (${splitKeys} at Skv; empty ones write a partial the merge weighs 0)` : `${splitKeys} keys`} x ${Hkv} KV heads${rowGroups > 1 ? ` x ${rowGroups} row groups` : ''} x ${B}`,
        `  ${Math.min(rows, rowSpace)} query rows (${group} heads sharing the KV head x Sq=${Sq}); for j0 in split step ${keys}, ${stages}-stage cp.async ring:`,
        merge
          ? '    scores, online softmax (base 2), acc += P.V; write (max, sum, acc) per row to the workspace'
          : '    scores, online softmax (base 2), acc += P.V; O = acc / sum (one split: no workspace, no merge)',
        ...(merge ? [`merge: ${mergeGrid} blocks of ${mergeWarps} warps, one output row per warp: O = sum_s acc_s 2^(m_s - M) / sum_s l_s 2^(m_s - M)`] : []),
      ],
      params: {
        ...common, ...simt, kernel: 'splitk_decode', splits, splitKeys, rowGroups, merge, wsAccFloats, workspaceBytes, mergeWarps,
        mergeThreads: mergeWarps * CUDA_WARP_LANES, mergeGrid, mergeIters: ceilDiv(D, CUDA_WARP_LANES), gridX: grid[0], gridY: grid[1], gridZ: grid[2],
      },
    };
  }
  const br = knobs.br;
  const qTiles = ceilDiv(Sq, br);
  const grid: [number, number, number] = [qTiles, Hq, B];
  const prefill = { br, bc: keys, qTiles, gridX: grid[0], gridY: grid[1], gridZ: grid[2] };
  const variant = mma ? 'flash_prefill_mma' : 'flash_prefill';
  return {
    ...base,
    budgets: [...base.budgets, ...cudaGridBudgets([grid])],
    variant,
    launch: { grid, block, gridExpr: [`ceil(Sq / ${br})`, 'Hq', 'B'], sharedBytes: shared, dynamicShared: !isStatic, workspaceBytes: 0 },
    loops: [
      `grid ${qTiles} query tiles of ${br} rows x ${Hq} heads x ${B}`,
      `  for j0 in [0, ${op.causal ? 'the tile\'s last diagonal key' : String(Skv)}) step ${keys}, ${stages}-stage cp.async ring:${op.causal ? ' keys past a row\'s diagonal masked' : ''}`,
      mma
        ? `    per warp 16 rows: S = Q K^T${kFeed.kScaled ? ` (K as its codes, ${kFeed.kGroups} scale groups of ${kFeed.kGroupSlices} k16 slices, each group's partial scores times its keys' scales in f32)` : ''} and O += P V as mma.sync m16n8k16 (f16 fragments, f32 accumulators), online softmax in registers (base 2); O = acc / sum`
        : '    scores, online softmax (base 2), acc += P.V; O = acc / sum',
    ],
    params: mma
      ? { ...common, ...prefill, kernel: 'flash_prefill_mma', dSlices: D / MMA_K, dBlocks: D / 8, keySlices: keys / MMA_K, keyBlocks: keys / 8, ...kFeed }
      : { ...common, ...simt, ...prefill, kernel: 'flash_prefill' },
  };
}

/** The CUDA attention planner. */
export const cudaAttentionPlanner: PlannerOf<'cuda-attention'> = { family: 'cuda-attention', space: cudaSpace, plan: cudaPlan };
