import { CPU_CACHE_LINE_BYTES, type DeviceProfile } from '../device/profile.js';
import type { KvCacheFormat, MatmulOp, MatmulShape, WeightFormatName } from '../ir/types.js';
import { codecOf } from '../quant/index.js';
import { cpuBudgets, CPU_WORK_REGISTERS, dtypeBytes, I16_MAX, INT8_CODE_MAX, readConfig, toleranceFor, typedSpace, variantRegisters, type EarlierOf, type KnobOf, type RestrictionOf } from './common.js';
import type { Config, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, SearchSpace } from './types.js';
import { InternalError } from '../errors.js';

/**
 * CPU matmul plans (the C target, and the WebAssembly target until it has its own): weight tiles
 * of `nTile` rows in the L2 share, activation rows in blocks of `mTile`, `rowsPerIter x mTile`
 * register accumulators, activations quantized to int8 blocks or kept in f32.
 */

/** What the templates of a CPU matmul print: every number comes from here. */
export type CpuMatmulParams = {
  M: number;
  N: number;
  K: number;
  /** The instruction-set variant (a C ISA, or simd128). */
  isa: string;
  actQuant: boolean;
  /**
   * The largest magnitude of a prepared activation code (d = absmax / actCodeMax per block):
   * INT8_CODE_MAX (127), or less where the kernel sums products of codes in i16 (`i16PairSums`).
   * Every consumer of int8 activations reads it; the tolerance's inputRounding states it.
   */
  actCodeMax: number;
  /**
   * The kernel adds two i16 dot products (two products of a weight value and an activation code
   * each) in one i16 lane before widening it (CpuVariants.i16PairSums): exact because actCodeMax
   * keeps 4 x max|weight value| x actCodeMax <= I16_MAX.
   */
  i16PairSums: boolean;
  /**
   * The panel GEMM path: each tile of nTile weight rows is decoded once into int8 panels (8 rows
   * side by side per 4 weights, the block scales as f32) that every activation row reuses.
   */
  panel: boolean;
  /**
   * Weight rows per panel: 8 (a 4-weight step is 256 bits of codes), or 16 (512 bits: `panelBits`).
   * A panel is decoded as slices of 8 rows (a decoder fills one 256-bit vector a row), side by side.
   */
  panelRows: number;
  /** Vectors of one 4-weight step the micro-kernel takes per activation row: 1, or one per slice where the variant's vectors are narrower than the step. */
  panelVectors: number;
  /** The panel holds signed codes and its step widens every product pair to i32 (CpuVariants.panelSignedCodes). */
  panelSignedCodes: boolean;
  /** What a panel decoder of int8 table values (q3.5) adds to them: 128 for an unsigned x signed step (vpdpbusd), 0 for signed codes. */
  panelCodeOffset: number;
  /** Rows of one slice (8), slices per panel, and bytes of one slice's 4-weight step (one dword a row). */
  panelSliceRows: number;
  panelSlices: number;
  panelSliceBytes: number;
  /** Bytes of one 4-weight step of the whole panel (one dword a row): the micro-kernel's vector. */
  panelStepBytes: number;
  /** Weights of one step (4: one dword a row) and of one chunk (32); steps per chunk, bytes of one chunk of a panel (panelRows x 32 weights), and bytes of the decoded tile: codes, then f32 scales. */
  panelStepWeights: number;
  panelChunkWeights: number;
  panelSteps: number;
  panelChunkBytes: number;
  panelCodeBytes: number;
  panelScales: number;
  /**
   * Weight blocks per step of the block-step kernel, 4 or 8, or 0 when off (blocks go in pairs).
   * Only for weight blocks of 32 (one activation block each). A step's integer dot products are
   * merged into one vector of 8 i32 lanes before one conversion and two FMAs; blocks left over at
   * the end of a row take the pair step.
   */
  stepBlocks: number;
  /** 8 weight rows' i32 dot products summed into the lanes of one vector (one activation row at a time). */
  rowSums: boolean;
  /**
   * Weight blocks per step of the row-sums kernel (0 without it): every block's dot products, then
   * their row sums, and one prefetch per row for the step's bytes. See rowSumsStep.
   */
  rowSumsStep: number;
  /**
   * The row-sums kernel decodes each 64-weight unit into one 512-bit vector (one dot product
   * instruction a row and unit, a 512-bit row-sum tree) instead of two 256-bit halves.
   */
  rowSumsWide: boolean;
  /** i32 lanes of the merged dot product (8: one 256-bit vector). */
  stepLaneCount: number;
  /** Which block of the step each lane belongs to, as a C initializer list ("0, 0, 2, 2, ..."). */
  stepLanes: string;
  /** Per lane, 1 for the one lane per block that carries the block's code-offset term, else 0 (C list). */
  stepOffsetLanes: string;
  /** The 16-byte shuffle putting the step's f16 weight scales, packed in block order, in lane order (C list). */
  stepShuffle: string;
  /** Steps per activation row, and bytes of one step record prepare writes (pair-ordered int8, then dx and xo). */
  steps: number;
  stepRecordBytes: number;
  /** Workspace offset of the step records (after the activation blocks). */
  stepRecordsAt: number;
  rowsPerIter: number;
  /**
   * GEMV row order (CpuVariants.streamChunks): 0 for contiguous groups of rowsPerIter rows in tiles
   * of nTile; else S, the rows each of a micro-kernel call's rowsPerIter rows walks in sequence (the
   * `streamChunk` knob / rowsPerIter), its rows being S apart, so each is one stream of consecutive rows.
   */
  streamRows: number;
  mTile: number;
  nTile: number;
  unroll: number;
  weightsPerBlock: number;
  bytesPerBlock: number;
  /** Bytes of the f16 scale that opens each weight block; the codes follow. */
  scaleBytes: number;
  /** Bytes of codes per 32 weights (a decode chunk): 16 for the nibble formats, 32 for 8-bit, 14 for q3.5. */
  chunkCodeBytes: number;
  blocksPerRow: number;
  rowBytes: number;
  chunksPerBlock: number;
  chunkStep: number;
  actBlock: number;
  actBlocksPerBlock: number;
  actChunks: number;
  actPad: number;
  xBlocks: number;
  prefetchBytes: number;
  workspaceBytes: number;
};

declare module './types.js' {
  interface PlanFamilies {
    'cpu-matmul': { op: MatmulOp; shape: MatmulShape; params: CpuMatmulParams };
  }
}

type Req = PlanRequestFor<MatmulOp, MatmulShape>;

/** The instruction-set variants a target renders for a device, best first (its first knob). */
export interface CpuVariants {
  /**
   * The variants of `device` for weights of `format` (absent for an op without weights), best
   * first: the first is the default, the tuner measures them all.
   */
  of(device: DeviceProfile, format?: WeightFormatName): string[];
  /** What the knob means, for `kgen plan`. */
  doc: string;
  /** What it means for attention, where that differs (a target whose attention output has fewer modules). */
  attentionDoc?: string;
  /** The variants with a panel GEMM kernel, each with the weight formats its panel decodes. */
  panel?: Readonly<Record<string, readonly string[]>>;
  /**
   * The variants whose panel kernel can also take 16 weight rows per 4-weight step, 512 bits of
   * codes (the `panelBits` knob): one vector where the variant's are 512 bits wide (`f32Lanes` 16),
   * else one per 8-row slice. Each with the formats it does so for. Absent: 8 rows, 256 bits.
   */
  panelWide?: Readonly<Record<string, readonly string[]>>;
  /**
   * The variants whose panel step sums products in i16 before widening them to the i32 block sums
   * (AVX2's maddubs on unsigned codes): one more register per accumulator. Absent: none (VNNI sums
   * in i32).
   */
  panelI16Sums?: readonly string[];
  /**
   * The variants whose panel takes these formats' codes signed (table values, not + 128), each with
   * the formats: AVX2's q3.5, whose step multiplies |x| by the weight with x's sign and widens
   * every step to i32 (a pair of products reaches 2 x 125 x 127). Absent: none.
   */
  panelSignedCodes?: Readonly<Record<string, readonly string[]>>;
  /**
   * The variants whose kernels for these formats add a pair of i16 dot products (two products of a
   * weight value and an activation code each) in one i16 lane before widening it to i32, each with
   * the format's largest |weight value|: the plan then caps the activation codes at
   * floor(I16_MAX / (4 x that)) so no lane overflows or saturates on any engine (WebAssembly's
   * relaxed q3.5: 125, codes in [-65, 65]; CpuMatmulParams.actCodeMax). Absent: codes up to 127.
   */
  i16PairSums?: Readonly<Record<string, Readonly<Partial<Record<WeightFormatName, number>>>>>;
  /**
   * The variants with a block-step kernel (4 or 8 blocks of 32 weights per step), each with the
   * weight formats it decodes; it applies when the format's blocks hold 32 weights.
   */
  blockStep?: Readonly<Record<string, readonly string[]>>;
  /**
   * The variants with a row-sums kernel (the `rowSums` knob: 8 weight rows' i32 dot products summed
   * into one vector, one lane a row, before one conversion and FMA per block), each with the weight
   * formats it decodes; it applies to one activation row at a time when the format's blocks hold a
   * multiple of 64 weights.
   */
  rowSums?: Readonly<Record<string, readonly string[]>>;
  /**
   * The variants whose row-sums kernel can also decode each 64-weight unit into one 512-bit vector
   * and take its dot product with one 512-bit instruction (the `rowSumsBits` knob), each with the
   * weight formats it does so for. Absent: 256-bit vectors only.
   */
  rowSumsWide?: Readonly<Record<string, readonly string[]>>;
  /**
   * The chunk sizes (rows) a target's GEMV kernels offer (the `streamChunk` knob), the default first,
   * 0 for contiguous groups: a chunk's rows are split into rowsPerIter runs of consecutive rows, and
   * a micro-kernel call takes one row of each run, so each of its rows walks its run, one sequential
   * stream, call after call. For kernels with no prefetch instruction (WebAssembly), whose weights
   * stream only as fast as the hardware prefetcher follows them: it follows a few long streams
   * better than many short ones. Absent: no such knob.
   */
  streamChunks?: readonly number[];
  /**
   * The `rowsPerIter` values for one activation row (GEMV), the default first, by weight format,
   * where a target's measurements prefer another order than [8, 4, 2, 1].
   */
  gemvRowsPerIter?: Readonly<Partial<Record<WeightFormatName, readonly number[]>>>;
  /**
   * KnobsSoFar the target's kernels have no use for (WebAssembly has no prefetch instruction): held at
   * their first value, out of the tuned space, and a plan with no prefetch states 0 bytes of it.
   */
  without?: readonly ('unroll' | 'prefetch')[];
  /** Weight formats whose kernels take no unroll although the target's others do (held as `without` holds it). */
  noUnrollFormats?: readonly WeightFormatName[];
  /** The unroll knob's values, the default first; absent: [2, 1, 4]. */
  unrollValues?: readonly number[];
  /** f32 lanes of each variant's widest vectors (attention's chunk of D; the panel's vectors a step); absent variants take 4. */
  f32Lanes?: Readonly<Record<string, number>>;
  /**
   * Vector registers each variant's code can name, where fewer than a CPU may have: AVX2's VEX
   * encoding names 16 even on an AVX-512 CPU. Absent variants take the device's.
   */
  vectorRegisters?: Readonly<Record<string, number>>;
  /**
   * The variants whose attention kernels can take Q as int8 codes against int8 K codes (the
   * `qInt8` knob), each with the offset its integer dot product wants added to Q's codes: 128
   * where it multiplies unsigned by signed bytes (VNNI's vpdpbusd), else 0. Absent: no such knob.
   */
  attentionInt8Q?: Readonly<Record<string, number>>;
  /**
   * The variants whose attention kernels can take P.V as integer dot products (the `pvInt` knob:
   * P times V's scales as integer codes of at most `codeMax`, `laneKeys` keys summed per i32 lane
   * with V's int8 codes; `accumulators` i32 vectors a row in flight, 4 where absent; `prefill`
   * false where it is the decode default only, f32 P.V first for prefill on a device whose first
   * variant this is: measured no faster there; `partLoads` where it loads each part's codes of a key
   * on their own, the kernel's kg_pv_part_at, rather than the whole step; `outOfLineKeys` where its
   * P.V is a function of its own, not inlined into the task's, for tiles of at most that many keys).
   * Absent: no such knob.
   */
  attentionIntPV?: Readonly<Record<string, { laneKeys: number; codeMax: number; accumulators?: number; prefill?: boolean; partLoads?: boolean; outOfLineKeys?: number }>>;
  /**
   * The variants whose int8-Q attention scores can take a vector of keys at a time (the `keyLanes`
   * knob: each integer step of a block of keys' K codes transposed so each lane is one key), each
   * with `kBias`, the bias its integer dot product wants added to K's codes (Q's codes are then
   * signed): 128 where it multiplies unsigned by signed bytes; and `stepRegisters`, the vector
   * registers a block of keys' transposed step holds in the dot loop: lanes where all of it stays
   * in registers, fewer where it is reloaded from L1 per vector (the register restriction counts
   * these); `i16Sums` where its products' pair sums may add up in i16 over a Q scale group when K's
   * codes are small enough (kgen's q4_0 nibbles: the plan checks the bound), widened once a group.
   * Absent: no such knob.
   */
  attentionKeyLanes?: Readonly<Record<string, { kBias: number; stepRegisters: number; i16Sums?: boolean }>>;
  /**
   * The variants whose f32 attention scores can take each tile's K transposed (the `keyTile` knob:
   * dequantized and transposed once per task so each lane is one key; the C template's
   * kg_vtranspose per variant). Absent: no such knob.
   */
  attentionKeyTile?: readonly string[];
  /**
   * Keys per tile (`keys`: the `kvBlock` knob's first value) a variant's decode kernels (Sq up to
   * CPU_DECODE_MAX_SQ) default to, by KV cache format, where not the shared 64: where each task's
   * chunk of keys at the default split count holds at least `minChunkKeys` (shorter chunks keep
   * 64), on a device whose first variant this is (the knob's order cannot follow the isa knob).
   * Prefill keeps 64 first. Absent (variant or format): 64.
   */
  attentionDecodeKvBlock?: Readonly<Record<string, Readonly<Partial<Record<KvCacheFormat, { keys: number; minChunkKeys: number }>>>>>;
  /**
   * Whether the attention kernels can run every KV head of a key chunk in one task, tile by tile
   * (the `allHeads` knob: C's head loop, the WAT's row groups by head). Absent: no such knob, one
   * head per task.
   */
  attentionAllHeads?: boolean;
  /**
   * Whether a run-time KV length attention kernel rounds each KV split's share of the call's keys
   * up to whole tiles (kvBlock; `splitKeysUnit`), so a short call's keys go to few splits and the
   * rest do no work and are left out of the merge. Absent: every split takes ceil(kv_len / splits).
   */
  attentionSplitTiles?: boolean;
  /**
   * Whether the attention kernels can touch cache lines ahead with loads, having no prefetch
   * instruction (the `touch` knob). Absent: no such knob (C prefetches).
   */
  attentionTouch?: boolean;
  /**
   * The ISAs whose attention code sums the f32 scores of a block of `lanes` keys by a tree
   * (kg_vpair, log2(lanes) levels: one vector of scores a row per block) instead of a horizontal
   * sum a key. Absent: none.
   */
  attentionScoreTree?: readonly string[];
  /**
   * Bytes after the int8 values of a prepared activation block, by weight format, where a target's
   * kernels keep more per block than the scale, the sum and padding (at least ACT_BLOCK_TAIL; the
   * extra bytes follow it). Absent: ACT_BLOCK_TAIL.
   */
  actTailBytes?: Readonly<Partial<Record<WeightFormatName, number>>>;
}

/** Activation rows from which the planner offers (and by default takes) the panel GEMM path. */
export const PANEL_MIN_M = 16;

/** Weight rows of one panel slice: 8 rows in the dwords of one 256-bit vector (a panel holds one or two). */
export const PANEL_ROWS = 8;

/** Activation rows the panel micro-kernel on 512-bit vectors may take together (`mTile`; other kernels stop at 4). */
const PANEL_WIDE_MTILE = 8;

/** Weights of one panel step (one dword of codes a row: the integer dot product's 4 bytes). */
const PANEL_STEP_WEIGHTS = 4;

/** Weights of one panel chunk (a decoder's 32-byte vector a row; an activation block holds 1 or 2). */
const PANEL_CHUNK_WEIGHTS = 32;

/** What makes an int8 table value an unsigned byte for vpdpbusd's unsigned operand. */
const PANEL_UNSIGNED_OFFSET = 128;

/** Bits of one dword: a row's codes in one panel step. */
const DWORD_BITS = 32;

/** Weight rows the row-sums kernel sums together: 8, one per i32 lane of a 256-bit vector. */
export const ROW_SUMS_ROWS = 8;

/** Weights per block of the block-step kernel (one activation block each). */
const STEP_BLOCK_WEIGHTS = 32;

/**
 * The i32 lanes of a step's merged dot product (see CpuMatmulParams.stepLanes), by blocks per step.
 * Pairs (2p, 2p+1) are laid out as the pair step lays them, block 2p in the low 128 bits; one
 * horizontal add of two pairs gives [0 0 2 2 | 1 1 3 3], one more of two such gives [0 2 4 6 | 1 3 5 7].
 */
const STEP_LANES: Record<number, number[]> = { 4: [0, 0, 2, 2, 1, 1, 3, 3], 8: [0, 2, 4, 6, 1, 3, 5, 7] };

/** i32 lanes of a step's merged dot product: one 256-bit vector. */
const STEP_LANE_COUNT = 8;

/** Bytes of a step record after its int8 activations: per lane an f32 activation scale and an i32 offset term. */
const STEP_RECORD_TAIL = STEP_LANE_COUNT * 4 * 2;

/**
 * The most bytes a decoded panel tile may take: it lives on the stack of the thread calling _rows
 * (kernel.h states the figure). 256 KiB leaves room under macOS's 512 KiB secondary-thread stacks;
 * musl's 128 KiB default is too small for the larger tiles, which kernel.h makes visible.
 */
export const PANEL_MAX_BYTES = 256 * 1024;

/** The knobs of the space, by type (`streamChunk` only where the target offers streams). */
const KNOBS = {
  isa: 'string', actQuant: ['q8', 'f32'], panel: 'number', panelBits: 'number', stepBlocks: 'number',
  rowsPerIter: 'number', streamChunk: 'number?', mTile: 'number', rowSums: 'number', rowSumsBits: 'number',
  nTile: 'number', unroll: 'number', prefetch: 'number',
} as const;

/**
 * A config, or the knobs before a `when`'s knob: what the helpers below read, both from the space's
 * `when`s and from the plan, so any knob may be absent.
 */
type KnobsSoFar = EarlierOf<typeof KNOBS>;

/** Whether the panel path exists for this request and ISA variant (the knob matters only then). */
function panelUsable(req: Req, variants: CpuVariants, isa: string | undefined): boolean {
  return req.shape.M >= PANEL_MIN_M && formatsOf(variants.panel, isa).includes(req.op.weight.format);
}

/** The weight formats a per-variant table (`panel`, `blockStep`) lists for `isa`; none when absent. */
function formatsOf(table: Readonly<Record<string, readonly string[]>> | undefined, isa: string | undefined): readonly string[] {
  return table && isa !== undefined && Object.hasOwn(table, isa) ? table[isa]! : [];
}

/** Whether the panel kernel of this request and ISA variant can take 16 rows a step, 512 bits of codes (the `panelBits` knob matters only then). */
function panelWideUsable(req: Req, variants: CpuVariants, isa: string | undefined): boolean {
  return formatsOf(variants.panelWide, isa).includes(req.op.weight.format);
}

/** Vectors the panel micro-kernel takes per activation row and step: one, or one per slice where the variant's vectors hold fewer rows' dwords than the panel. */
function panelVectorsOf(variants: CpuVariants, isa: string, panelRows: number): number {
  return Math.max(1, Math.ceil(panelRows / (variants.f32Lanes?.[isa] ?? 4)));
}

/** Whether the block-step kernel exists for this request and ISA variant (the knob matters only then). */
function blockStepUsable(req: Req, variants: CpuVariants, isa: string | undefined): boolean {
  return formatsOf(variants.blockStep, isa).includes(req.op.weight.format) && codecOf(req.op.weight).weightsPerBlock === STEP_BLOCK_WEIGHTS;
}

/**
 * Whether the row-sums kernel applies to `config` (the knob matters only then): the variant has one
 * for the format, blocks hold a multiple of 64 weights, int8 activations off the panel path, and
 * 8 weight rows of one activation row.
 */
function rowSumsApply(req: Req, variants: CpuVariants, config: KnobsSoFar, panel: boolean): boolean {
  return formatsOf(variants.rowSums, config.isa).includes(req.op.weight.format) && codecOf(req.op.weight).weightsPerBlock % 64 === 0
    && config.actQuant === 'q8' && !panel && config.rowsPerIter === ROW_SUMS_ROWS && config.mTile === 1;
}

/** Whether the `rowSumsBits` knob matters for `config`: the row-sums kernel is on and its variant has a 512-bit decode of the format. */
function rowSumsWideApply(req: Req, variants: CpuVariants, config: KnobsSoFar, panel: boolean): boolean {
  return config.rowSums === 1 && rowSumsApply(req, variants, config, panel) && formatsOf(variants.rowSumsWide, config.isa).includes(req.op.weight.format);
}

/** Whether the `streamChunk` knob matters: the target offers streams, one activation row (GEMV), several weight rows a call. */
function streamChunkApply(req: Req, variants: CpuVariants, config: KnobsSoFar): boolean {
  return variants.streamChunks !== undefined && req.shape.M === 1 && config.rowsPerIter !== undefined && config.rowsPerIter > 1;
}

/** The GEMV stream length S of `config` (its chunk / rowsPerIter), or 0 where rows go in contiguous groups (CpuMatmulParams.streamRows). */
function streamRowsOf(req: Req, variants: CpuVariants, config: KnobsSoFar): number {
  const { streamChunk, rowsPerIter } = config;
  return streamChunkApply(req, variants, config) && streamChunk && rowsPerIter ? streamChunk / rowsPerIter : 0;
}

/**
 * Whether the kernel keeps a tile of `nTile` weight rows for several activation tiles (and the
 * `nTile` knob matters). Not in streams (each row read once, in the streams' order), nor where one
 * activation tile covers M without a panel (GEMV, or M <= mTile): that tile reads each weight row
 * once, and the row order is the same for every `nTile` (a multiple of rowsPerIter), so the tuner
 * would time equivalent kernels.
 */
function weightTileKept(req: Req, variants: CpuVariants, config: KnobsSoFar, panel: boolean): boolean {
  return streamRowsOf(req, variants, config) === 0 && (panel || (config.mTile !== undefined && req.shape.M > config.mTile));
}

/**
 * Weight blocks per step of the row-sums kernel: as many as the unroll knob asks for while they fit
 * in one cache line, else 1. Within a step every block's dot products are issued before their row
 * sums (which then find them done instead of waiting on the last row's), and one prefetch per row
 * covers the step. Measured on Zen 4 (AVX2, weights in L2): q3.5's 30-byte blocks two at a time
 * cost 5% less than one at a time, while q4's 34-byte and q8's 66-byte blocks two at a time
 * (no prefetch saved) were 1% and 5-8% slower.
 */
function rowSumsStep(bytesPerBlock: number, unroll: number): number {
  return Math.max(1, Math.min(unroll, Math.floor(CPU_CACHE_LINE_BYTES / bytesPerBlock)));
}

/**
 * Activation values per int8 block (one scale and one sum each) when activations are quantized: 64
 * when the weight group is a multiple of 64, else 32. A block never straddles a weight group, so a
 * kernel takes one integer dot product per block and applies (weight scale x activation scale) once.
 */
export function actBlockFor(groupWeights: number): number {
  return groupWeights % 64 === 0 ? 64 : 32;
}

/** Products of a weight value and an activation code one i16 lane adds under i16PairSums: two dots of two. */
export const I16_PAIR_PRODUCTS = 4;

/** The activation codes' range where a plan keeps them below INT8_CODE_MAX (`, codes in [-65, 65]`), else nothing: for loop and manifest texts. */
export function actCodesText(actCodeMax: number): string {
  return actCodeMax < INT8_CODE_MAX ? `, codes in [-${actCodeMax}, ${actCodeMax}]` : '';
}

/**
 * The activation code range of `isa`'s kernels for `format` (CpuMatmulParams.actCodeMax and
 * i16PairSums): INT8_CODE_MAX, or the largest codes whose pair sums fit an i16 lane.
 */
function actCodesOf(variants: CpuVariants, isa: string, format: WeightFormatName): { actCodeMax: number; i16PairSums: boolean } {
  const table = variants.i16PairSums;
  const weightMax = table && Object.hasOwn(table, isa) ? table[isa]![format] : undefined;
  if (weightMax === undefined) return { actCodeMax: INT8_CODE_MAX, i16PairSums: false };
  const actCodeMax = Math.min(INT8_CODE_MAX, Math.floor(I16_MAX / (I16_PAIR_PRODUCTS * weightMax)));
  if (actCodeMax < 1) throw new InternalError(`weight values up to ${weightMax} leave no activation codes for i16 pair sums`);
  return { actCodeMax, i16PairSums: true };
}

/** Bytes after the int8 values of a prepared activation block: f32 scale, i32 sum, padding to 32. */
export const ACT_BLOCK_TAIL = 32;

/** The tail of a prepared activation block for weights of `format` (CpuVariants.actTailBytes). */
function actTailOf(variants: CpuVariants, format: WeightFormatName): number {
  const tail = variants.actTailBytes?.[format] ?? ACT_BLOCK_TAIL;
  if (tail < ACT_BLOCK_TAIL) throw new InternalError(`a prepared activation block's tail holds at least ${ACT_BLOCK_TAIL} bytes, not ${tail}`);
  return tail;
}

function weightLayout(op: MatmulOp, K: number) {
  const codec = codecOf(op.weight);
  const blocksPerRow = K / codec.weightsPerBlock;
  return { codec, blocksPerRow, rowBytes: blocksPerRow * codec.bytesPerBlock };
}

function cpuSpace(req: Req, variants: CpuVariants): SearchSpace {
  const quantized = req.op.weight.format !== 'f16';
  const knobs: KnobOf<typeof KNOBS>[] = [
    { name: 'isa', values: variants.of(req.device, req.op.weight.format), doc: variants.doc },
    { name: 'actQuant', values: quantized ? ['q8', 'f32'] : ['f32'], doc: 'activations as int8 blocks of 32 (integer dot products) or f32' },
    {
      name: 'panel',
      values: [1, 0],
      doc: 'decode each weight tile once into int8 panels reused by all activation rows (1), or decode per activation tile (0)',
      when: (c) => panelUsable(req, variants, c.isa) && c.actQuant === 'q8',
    },
    {
      name: 'panelBits',
      values: [512, 256],
      doc: 'bits of codes per panel step: 16 weight rows (512 bits: one dot product on AVX-512, two 256-bit ones on AVX-VNNI), or 8 rows (256 bits)',
      when: (c) => usesPanel(c) && panelWideUsable(req, variants, c.isa),
    },
    {
      name: 'stepBlocks',
      values: [4, 8, 2],
      doc: 'blocks of 32 weights per step: 4 or 8 with their integer dot products merged before one conversion, or 2 (a pair per conversion)',
      when: (c) => blockStepUsable(req, variants, c.isa) && c.actQuant === 'q8' && !usesPanel(c),
    },
    {
      name: 'rowsPerIter',
      values: req.shape.M === 1 ? [...(variants.gemvRowsPerIter?.[req.op.weight.format] ?? [8, 4, 2, 1])] : [4, 2, 8, 1],
      doc: 'weight rows computed together, sharing each activation load',
    },
    // Only where the target offers streams: other targets' configs (and their hashes) have no such key.
    ...(variants.streamChunks ? [{
      name: 'streamChunk',
      values: [...variants.streamChunks],
      doc: 'GEMV row order: rows in chunks of this many, split into rowsPerIter runs of consecutive rows; a call takes a row of each run, so each of its rows walks its run, one stream the hardware prefetcher follows (0: contiguous groups of rowsPerIter rows)',
      when: (c: KnobsSoFar) => streamChunkApply(req, variants, c),
    }] satisfies KnobOf<typeof KNOBS>[] : []),
    { name: 'mTile', values: [PANEL_WIDE_MTILE, 4, 2, 1], doc: `activation rows computed together, sharing each decoded weight (${PANEL_WIDE_MTILE} on the panel of 512-bit vectors alone)` },
    {
      name: 'rowSums',
      values: [1, 0],
      doc: `sum ${ROW_SUMS_ROWS} weight rows' integer dot products into one vector (a lane a row) before one conversion and FMA per block (1), or convert and scale each row (0)`,
      when: (c) => rowSumsApply(req, variants, c, usesPanel(c)),
    },
    {
      name: 'rowSumsBits',
      values: [256, 512],
      doc: 'vector width of the row-sums kernel: each 64-weight unit decoded as two 256-bit halves, or as one 512-bit vector with one dot product instruction (faster where the CPU runs 512-bit operations at full width, as Zen 5 does; slower where it splits them, as Zen 4 does)',
      when: (c) => rowSumsWideApply(req, variants, c, usesPanel(c)),
    },
    {
      name: 'nTile',
      values: [32, 16, 64, 8, 128, 4, 2, 1],
      doc: 'weight rows per cache tile, reused across all activation rows',
      when: (c) => weightTileKept(req, variants, c, usesPanel(c)),
    },
    { name: 'unroll', values: [...(variants.unrollValues ?? [2, 1, 4])], doc: 'unroll of the loop over weight blocks', ...(unrolls(req, variants) ? {} : { when: () => false }) },
    {
      name: 'prefetch',
      values: [1, 0, 2],
      doc: 'software prefetch distance in row groups (rowsPerIter rows) ahead; 0 leaves it to the hardware',
      when: (c) => !usesPanel(c) && !variants.without?.includes('prefetch'),
    },
  ];
  const restrictions: RestrictionOf<typeof KNOBS>[] = [
    { reason: 'SIMD variants of quantized formats use int8 activations', allows: (c) => !quantized || c.isa === 'scalar' || c.actQuant === 'q8' },
    { reason: 'mTile exceeds M', allows: (c) => c.mTile <= Math.max(1, req.shape.M) || c.mTile === 1 },
    { reason: 'nTile is not a multiple of rowsPerIter', allows: (c) => c.nTile % c.rowsPerIter === 0 },
    { reason: 'streamChunk is not a multiple of rowsPerIter', allows: (c) => !c.streamChunk || c.streamChunk % c.rowsPerIter === 0 },
    { reason: 'unroll has no effect on the scalar variant', allows: (c) => c.isa !== 'scalar' || c.unroll === 1 },
    { reason: 'panel kernels compute 8 weight rows per vector (rowsPerIter 8)', allows: (c) => !usesPanel(c) || c.rowsPerIter === PANEL_ROWS },
    {
      // One accumulator and one block sum per activation row: 2 x 8 of 32 registers. The other
      // kernels hold rowsPerIter x mTile accumulators (or i16 partial sums too), which 8 rows overrun.
      reason: `mTile ${PANEL_WIDE_MTILE} is for the panel micro-kernel on 512-bit vectors alone`,
      allows: (c) => c.mTile !== PANEL_WIDE_MTILE || (usesWidePanel(c) && panelVectorsOf(variants, c.isa, 2 * PANEL_ROWS) === 1),
    },
    {
      reason: 'the 16-row panel takes nTile in whole panels of 16 rows',
      allows: (c) => !usesWidePanel(c) || c.nTile % (2 * PANEL_ROWS) === 0,
    },
    {
      reason: `the decoded panel tile exceeds ${PANEL_MAX_BYTES} bytes of stack`,
      allows: (c) => !usesPanel(c) || panelTileBytes(req, c.nTile) <= PANEL_MAX_BYTES,
    },
  ];
  function usesPanel(c: KnobsSoFar): boolean {
    return c.panel === 1 && c.actQuant === 'q8' && panelUsable(req, variants, c.isa);
  }
  function usesWidePanel(c: KnobsSoFar): boolean {
    return usesPanel(c) && c.panelBits === 512 && panelWideUsable(req, variants, c.isa);
  }
  return typedSpace(KNOBS, { knobs, restrictions });
}

/** Whether the target's kernels for this request's weights take the unroll knob. */
function unrolls(req: Req, variants: CpuVariants): boolean {
  return !variants.without?.includes('unroll') && !variants.noUnrollFormats?.includes(req.op.weight.format);
}

/** Bytes of a decoded panel tile of `nTile` rows: int8 codes, then one f32 scale per row and block. */
function panelTileBytes(req: Req, nTile: number): number {
  const { blocksPerRow } = weightLayout(req.op, req.shape.K);
  return nTile * req.shape.K + nTile * blocksPerRow * 4;
}

function cpuPlan(req: Req, config: Config, variants: CpuVariants): PlanBody<'cpu-matmul'> {
  const { op, shape, device } = req;
  const knobs = readConfig(KNOBS, config);
  const { M, N, K } = shape;
  const { codec, blocksPerRow, rowBytes } = weightLayout(op, K);
  const actQuant = knobs.actQuant === 'q8';
  const panel = actQuant && knobs.panel === 1 && panelUsable(req, variants, knobs.isa);
  const panelSlices = panel && knobs.panelBits === 512 && panelWideUsable(req, variants, knobs.isa) ? 2 : 1;
  const panelRows = PANEL_ROWS * panelSlices;
  const panelVectors = panelVectorsOf(variants, knobs.isa, panelRows);
  const panelVectorBits = (DWORD_BITS * panelRows) / panelVectors;
  const panelSignedCodes = panel && formatsOf(variants.panelSignedCodes, knobs.isa).includes(op.weight.format);
  const panelI16 = !panelSignedCodes && (variants.panelI16Sums?.includes(knobs.isa) ?? false);
  const stepBlocks = actQuant && !panel && blockStepUsable(req, variants, knobs.isa) && STEP_LANES[knobs.stepBlocks] ? knobs.stepBlocks : 0;
  const stepLanes = STEP_LANES[stepBlocks] ?? [];
  const rowsPerIter = knobs.rowsPerIter;
  const mTile = knobs.mTile;
  const rowSums = knobs.rowSums === 1 && rowSumsApply(req, variants, knobs, panel);
  const rowSumsWide = knobs.rowSumsBits === 512 && rowSumsWideApply(req, variants, knobs, panel);
  const nTile = knobs.nTile;
  const streamRows = streamRowsOf(req, variants, knobs);
  const tileKept = weightTileKept(req, variants, knobs, panel);
  const actBlock = actBlockFor(codec.weightsPerBlock);
  const { actCodeMax, i16PairSums } = actQuant ? actCodesOf(variants, knobs.isa, op.weight.format) : { actCodeMax: INT8_CODE_MAX, i16PairSums: false };
  const codesText = actCodesText(actCodeMax);
  const xBlocks = actQuant ? K / actBlock : 0;
  const actTail = actTailOf(variants, op.weight.format);
  // Prepared activations: int8 values plus scale, sum and padding per block, or f32.
  const xRowBytes = actQuant ? xBlocks * (actBlock + actTail) : K * 4;
  // Block steps read their activations from step records prepare writes after the blocks.
  const steps = stepBlocks ? Math.floor(xBlocks / stepBlocks) : 0;
  const stepRecordBytes = stepBlocks ? stepBlocks * actBlock + STEP_RECORD_TAIL : 0;
  const prefetchBytes = panel || variants.without?.includes('prefetch') ? 0 : knobs.prefetch * rowsPerIter * rowBytes;
  const unrolled = unrolls(req, variants) ? `, unrolled ${knobs.unroll}x` : '';
  const buffers: OnChipBuffer[] = [
    panel
      ? {
          name: 'accumulators',
          space: 'registers',
          size: (panelI16 ? 2 : 1) * panelVectors * mTile,
          why: `per activation row and panel vector: i32 block sums${panelI16 ? ' and i16 partial sums' : ''} of ${panelRows / panelVectors} weight rows (the f32 sums, touched once a block, may live in memory)`,
        }
      : { name: 'accumulators', space: 'registers', size: rowsPerIter * mTile, why: 'one vector accumulator per (weight row, activation row) pair' },
    { name: 'work registers', space: 'registers', size: CPU_WORK_REGISTERS, why: 'activation loads, decode temporaries and lookup tables' },
    // In streams, or with one activation tile, every weight row is read once: no tile to keep.
    ...(!tileKept ? [] : [panel
      ? { name: 'weight panels', space: 'l2', size: panelTileBytes(req, nTile), why: `${nTile} weight rows decoded to int8 panels and f32 scales once, reused by every activation row` }
      : { name: 'weight tile', space: 'l2', size: nTile * rowBytes, why: `${nTile} packed weight rows, reused by every activation row` }] as OnChipBuffer[]),
    { name: 'activation panel', space: 'l2', size: mTile * (xRowBytes + steps * stepRecordBytes), why: `${mTile} prepared activation rows` },
  ];
  const wsBytes = M * xRowBytes + M * steps * stepRecordBytes;
  const rowIndent = tileKept ? '    ' : '';
  const prepareLoop = `prepare: ${actQuant ? `quantize X[${M},${K}] to int8 blocks of ${actBlock}${codesText}` : `copy X[${M},${K}] to f32`} (once per call)`;
  return {
    family: 'cpu-matmul',
    op, shape, target: req.target, device: device.name, config,
    variant: M === 1 ? 'gemv' : 'gemm',
    launch: { rows: N },
    loops: panel ? [
      `prepare: quantize X[${M},${K}] to int8 blocks of ${actBlock}${codesText}, natural order (once per call)`,
      `for n0 in [row_begin, row_end) step ${nTile}        (weight tile decoded once into ${Math.ceil(nTile / panelRows)} panels of ${panelRows} rows, in L2)`,
      `  for m0 in [0, ${M}) step ${mTile}`,
      `    for each panel                          (${mTile} accumulators of ${panelRows} rows)`,
      `      for k in [0, ${K}) step 4               (${panelVectors === 1 ? 'one' : panelVectors} ${panelVectorBits}-bit panel vector${panelVectors === 1 ? '' : 's'}, one activation broadcast per row), unrolled ${knobs.unroll}x per block`,
    ] : streamRows ? [
      prepareLoop,
      `for n0 in [row_begin, row_end) step ${rowsPerIter} x S    (a chunk of ${rowsPerIter} streams of S consecutive rows, S = ${streamRows} or, at the range's end, its rows / ${rowsPerIter}; each row read once)`,
      `  for n in [n0, n0+S)                 (rows n, n+S, .., n+${rowsPerIter - 1}S: ${rowSums ? 'one accumulator, a lane per row' : `${rowsPerIter} accumulators`}; the rows left, fewer than ${rowsPerIter}, one at a time)`,
      `    for k in [0, ${K}) step ${codec.weightsPerBlock} (one weight group)${unrolled}`,
    ] : [
      prepareLoop,
      // With one activation tile the rows go in order, each read once: no tile loops to show.
      ...(tileKept ? [`for n0 in [row_begin, row_end) step ${nTile}        (weight tile in L2)`, `  for m0 in [0, ${M}) step ${mTile}`] : []),
      `${rowIndent}for n in [${tileKept ? `n0, n0+${nTile}` : 'row_begin, row_end'}) step ${rowsPerIter}     (${rowSums
        ? `one accumulator, a lane per row: row sums of ${rowSumsWide ? '512' : '256'}-bit i32 dot products, then one FMA`
        : `${rowsPerIter}x${mTile} accumulators`}${tileKept ? '' : `; ${M === 1 ? 'the one activation row' : `all ${M} activation rows in one tile`}: each weight row read once`})`,
      `${rowIndent}  for k in [0, ${K}) step ${stepBlocks ? `${stepBlocks * codec.weightsPerBlock} (${stepBlocks} weight groups, one conversion)` : `${codec.weightsPerBlock} (one weight group)`}${unrolled}${prefetchBytes ? `, prefetching ${prefetchBytes} bytes ahead` : ''}`,
    ],
    buffers,
    budgets: cpuBudgets(device, buffers, variantRegisters(variants, device, knobs.isa)),
    tolerance: toleranceFor({ int8Activations: actQuant ? actBlock : undefined, actCodeMax, outF16: op.y === 'f16', inF16: op.x === 'f16' }),
    traffic: { bytes: N * rowBytes + M * K * dtypeBytes(op.x) + M * N * dtypeBytes(op.y), flops: 2 * M * N * K },
    params: {
      M, N, K,
      isa: knobs.isa,
      actQuant,
      actCodeMax,
      i16PairSums,
      panel,
      panelRows,
      panelSliceRows: PANEL_ROWS,
      panelSlices,
      panelVectors,
      panelSignedCodes,
      panelCodeOffset: panelSignedCodes ? 0 : PANEL_UNSIGNED_OFFSET,
      panelSliceBytes: PANEL_STEP_WEIGHTS * PANEL_ROWS,
      panelStepBytes: PANEL_STEP_WEIGHTS * panelRows,
      panelStepWeights: PANEL_STEP_WEIGHTS,
      panelChunkWeights: PANEL_CHUNK_WEIGHTS,
      panelSteps: PANEL_CHUNK_WEIGHTS / PANEL_STEP_WEIGHTS,
      panelChunkBytes: PANEL_CHUNK_WEIGHTS * panelRows,
      panelCodeBytes: panel ? nTile * K : 0,
      panelScales: panel ? nTile * blocksPerRow : 0,
      stepBlocks,
      rowSums,
      rowSumsStep: rowSums ? rowSumsStep(codec.bytesPerBlock, knobs.unroll) : 0,
      rowSumsWide,
      stepLaneCount: STEP_LANE_COUNT,
      stepLanes: stepLanes.join(', '),
      stepOffsetLanes: stepLanes.map((b, j) => (stepLanes.indexOf(b) === j ? 1 : 0)).join(', '),
      // Byte pair j of the shuffle: the f16 of block stepLanes[j].
      stepShuffle: stepLanes.flatMap((b) => [2 * b, 2 * b + 1]).join(', '),
      steps,
      stepRecordBytes,
      stepRecordsAt: M * xRowBytes,
      rowsPerIter, streamRows, mTile, nTile, unroll: knobs.unroll,
      weightsPerBlock: codec.weightsPerBlock,
      bytesPerBlock: codec.bytesPerBlock,
      scaleBytes: codec.scaleBytes,
      chunkCodeBytes: ((codec.bytesPerBlock - codec.scaleBytes) * 32) / codec.weightsPerBlock,
      blocksPerRow,
      rowBytes,
      chunksPerBlock: Math.max(1, codec.weightsPerBlock / 32),
      // SIMD variants decode two 32-weight chunks per step when a block holds an even number.
      chunkStep: codec.weightsPerBlock % 64 === 0 ? 2 : 1,
      actBlock,
      actBlocksPerBlock: Math.max(1, codec.weightsPerBlock / actBlock),
      actChunks: actBlock / 32,
      actPad: actTail - 8,
      xBlocks,
      prefetchBytes,
      workspaceBytes: wsBytes,
    },
  };
}

/** The CPU matmul planner of a target whose variants are `variants`. */
export function cpuMatmulPlanner(variants: CpuVariants): PlannerOf<'cpu-matmul'> {
  return { family: 'cpu-matmul', space: (req) => cpuSpace(req, variants), plan: (req, config) => cpuPlan(req, config, variants) };
}
