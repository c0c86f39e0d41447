import { CPU_CACHE_LINE_BYTES, type DeviceProfile } from '../device/profile.js';
import { GGML_KV_BLOCK, kvLayoutOf, kvRowFormat, kvRowStrides, softmaxScale } from '../ir/attention.js';
import type { AttentionOp, AttentionShape, KvLayout } from '../ir/types.js';
import { attentionTraffic, kvLengthParams, kvLenText as kvLenTextOf } from './attention-common.js';
import { ceilDiv, cpuBudgets, CPU_WORK_REGISTERS, I16_MAX, INT8_CODE_MAX, readConfig, toleranceFor, typedSpace, variantRegisters, type ConfigOf, type KnobOf, type RestrictionOf } from './common.js';
import type { CpuVariants } from './cpu-matmul.js';
import type { Config, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, SearchSpace } from './types.js';

/**
 * CPU attention plans (C, and WebAssembly until it has its own): one kernel for decode and
 * prefill. A task is (batch, KV head, query tile, KV split): the rows of its query tile times the
 * GQA group share every K and V row it loads (dequantized in registers), keys go by in tiles of
 * `kvBlock` with an online softmax, and causal tiles past the tile's last query are skipped. With
 * more than one split (flash-decoding), each task leaves a partial (max, sum, accumulators) that a
 * second pass merges by log-sum-exp.
 */

/** What the templates of a CPU attention kernel print: every number comes from here. */
export type CpuAttentionParams = {
  B: number; Hq: number; Hkv: number; Sq: number; Skv: number; D: number;
  /** Query heads per KV head (Hq / Hkv). */
  group: number;
  isa: string;
  kvFormat: AttentionOp['kvCache'];
  /** f32 lanes per vector, and vectors per row of D. */
  lanes: number;
  chunks: number;
  /**
   * Vectors of D taken together per row by the scores (each its own accumulators, for more
   * independent FMA chains) and by f32 P.V (kept in registers across a tile's keys).
   */
  chunkStep: number;
  pvStep: number;
  /**
   * f32 scores (kg_scores) of each whole block of `lanes` keys summed by a tree of log2(lanes)
   * levels (kg_vpair) into one vector a row, the keys in lane order; 0: each key's score by a
   * horizontal sum (also the tail of a tile past its last whole block).
   */
  scoreTreeLevels: number;
  /**
   * Passes P.V makes over a tile's keys (integer P.V: one per integer step; f32 P.V: one per
   * pvStep vectors) and cache lines a KV row starts (rowBytes / line, rounded up): P.V prefetches
   * the next tile's V rows while it reads this tile's, each line once, spread evenly over the passes.
   */
  pvPasses: number;
  rowLines: number;
  /**
   * Integer P.V: next-tile V lines each key group (pvLaneKeys keys) prefetches in a pass, the fewest
   * that cover rowLines x pvLaneKeys lines a group over the pvPasses passes (kg_prefetch_v_group: the
   * early passes prefetch, the rest none; which ones is a constant of the unrolled passes, so the key
   * loop tests nothing per key). 0 without pvInt, and where a row is not whole cache lines (q8_0's
   * 136 bytes, q4_0's 72): there, out of cache, the per-key spread of kg_prefetch_v_lines measured
   * 3-6% faster (AVX2, Skv=1024; docs/PERFORMANCE.md, "AVX2 integer P.V per key").
   */
  pvPrefetches: number;
  /** One KV row (D values of one position of one head) as stored; scales in their own array (q8). */
  rowBytes: number;
  scalesPerRow: number;
  valuesPerScale: number;
  /**
   * Scale groups per KV row (D / valuesPerScale; 0 for f16), and that at least 1: the stride of the
   * V scales a tile converts to f32 once per key (kvBlock x scaleGroupsPadded floats).
   */
  scaleGroups: number;
  scaleGroupsPadded: number;
  /** Row of (b, head, position) = b * Hkv * Skv + head * headStride + position * positionStride. */
  headStride: number;
  positionStride: number;
  kvLayout: KvLayout;
  /**
   * Task order: splits outermost (every head of a KV chunk, one after another, while the chunk is
   * in cache: positions x heads rows), else heads outermost (each head's rows are contiguous).
   */
  splitsOuter: boolean;
  /** Queries per task, query tiles, rows per task and head (queries x group) and those padded to rowGroup. */
  qBlock: number;
  qTiles: number;
  taskRows: number;
  taskRowsPadded: number;
  /**
   * KV heads per task (config allHeads: Hkv, else 1). A task's rows are taskHeads x taskRowsPadded,
   * head by head; the split partials stay per (batch, head, query tile, split) of taskRowsPadded rows.
   */
  taskHeads: number;
  /** Tasks per batch and query tile and split along the heads (Hkv / taskHeads), and a task's rows (taskHeads x taskRowsPadded). */
  headTasks: number;
  taskRowsAllPadded: number;
  /** Rows computed together in registers, sharing each K and V vector. */
  rowGroup: number;
  kvBlock: number;
  /**
   * KV splits per (batch, head, query tile) and the keys each covers at Skv (the last may have
   * fewer); with a run-time length each call's splits share its kv_len keys the same way.
   */
  splits: number;
  chunkKeys: number;
  /**
   * With a run-time length, each split takes ceil(kv_len / splits) of a call's keys rounded up to a
   * multiple of splitKeysUnit, so a short call's keys go to the first splits in whole tiles and the
   * splits past them hold none. kvBlock where the target rounds splits (`attentionSplitTiles`: a
   * split of a few keys costs a whole tile's fixed work and a merge share) and tasks run splits
   * innermost (with splits outermost a thread's share is a run of splits, so empty ones would idle
   * the later threads); else 1.
   */
  splitKeysUnit: number;
  tasks: number;
  /** Output rows (B * Hq * Sq): the merge pass's units. */
  outRows: number;
  causal: boolean;
  /** Query i sees keys j < i + causalOffset + 1 (at the kernel's Skv; with a run-time length kv_len - Sq). */
  causalOffset: number;
  /** The kernel takes kv_len, the positions a call reads, from kvLenMin to Skv (op.kvLength 'runtime'). */
  runtimeKvLength: boolean;
  kvLenMin: number;
  /** The softmax scale times log2(e): scores are kept in base 2. */
  scaleLog2: number;
  /**
   * Q as int8 codes (config qInt8 = 1; K codes int8 too: never with an f16 cache): prepare rounds
   * each group of qGroup values of a Q row to nearest on a symmetric scale of the group's absmax /
   * qCodeMax, and scores are integer dot products of KG_ISTEP codes at a time, each step's i32 lanes
   * times the step's K scale(s) and Q group scale(s) in f32. Else Q is scaled f32 and K is
   * dequantized to f32.
   */
  qInt8: boolean;
  /** Largest |code| of an int8 Q group (its absmax maps to it). */
  qCodeMax: number;
  /**
   * Q values per int8 scale (Q_GROUP, as llama.cpp's q8_0 Q), and the groups of a row (the last may
   * be partial). A scale per row let one outlier channel leave the others a few bits.
   */
  qGroup: number;
  qGroups: number;
  /** Added to every Q code as stored (0..255 when 128): what the variant's dot product wants. */
  qCodeOffset: number;
  /**
   * K codes per integer dot step: 4 per i32 lane of a vector of `lanes` (so each lane's sum
   * converts to one f32 lane); D holds a whole number of steps, `iSteps`. Each step is loaded in
   * `iPieces` pieces of `iPiece` contiguous bytes of codes, never across a run of the format's
   * row: a q4_0 half-block (16 nibbles), a q8_0 block (32), the whole step (kgen q8).
   */
  iStep: number;
  /** 0 without int8 Q or int8 P.V (then iPiece = iStep: one piece). */
  iSteps: number;
  iPiece: number;
  iPieces: number;
  /**
   * K scale groups per step: 1 (the step inside one group) or 2 (the step is two groups, each on
   * half of the lanes). Only meaningful with qInt8 or pvInt.
   */
  iScalesPerStep: number;
  /**
   * P.V as integer dot products (config pvInt = 1; int8 V codes, never with an f16 cache): each
   * tile rounds every row's probabilities times each V scale group's scales to integer codes
   * (symmetric, absmax / pvCodeMax per row, group and tile, to nearest), and each i32 lane sums
   * `pvLaneKeys` keys' products with V's codes (taken `iStep` at a time, like K's with int8 Q,
   * interleaved across the keys), scaled back in f32 per tile. Else P.V is f32 FMAs on dequantized V.
   */
  pvInt: boolean;
  /**
   * Codes an i32 lane's integer dot product sums of a step (4): an integer step is `laneCodes`
   * vectors of values.
   */
  laneCodes: number;
  /**
   * Integer P.V's i32 accumulators a row (vectors of a step taken together, dividing laneCodes; 0
   * without pvInt): the variant's `accumulators`, or the whole step. A step is `pvParts` parts, each a
   * loop over the tile's keys with pvAccumulators of its vectors a row (AVX2's 16 registers: a whole
   * step's 4 a row leave room for one row; half of it, 4 rows).
   */
  pvAccumulators: number;
  /** laneCodes / pvAccumulators (0 without pvInt). */
  pvParts: number;
  /**
   * V codes of a key that each integer P.V part loads by themselves (iStep / pvParts, contiguous in
   * the row: a part never crosses one of the format's runs, iPiece), where the variant takes a
   * part's codes so (`partLoads`); 0: each part reads its share of the whole step's load.
   */
  pvPiece: number;
  /** Integer P.V as a function of its own, never inlined into the task's: the variant's `outOfLineKeys` holds kvBlock. */
  pvOutOfLine: boolean;
  pvCodeMax: number;
  /** Keys per i32 lane of integer P.V (0 without it); pvCodeMax is the variant's (0: none) either way. */
  pvLaneKeys: number;
  /** Keys of a tile rounded up to whole lanes (pvInt): the padding keys get P code 0. */
  pvKeys: number;
  /**
   * Scores with keys across the lanes (config keyLanes = 1; int8 Q on the caches with int8 codes):
   * `lanes` keys at a time, each integer step of their K codes (plus `kCodeBias`) transposed once
   * for all the row group's rows so each lane is one key, Q's codes signed (qCodeOffset 0), no
   * horizontal sums. The keys' scales go by vector: kgen q8's from its scale array (so only on
   * heads x positions rows), the ggml blocks' gathered from their rows (any layout).
   */
  keyLanes: boolean;
  /** Added to K's codes with keyLanes (0 without): what the variant's dot product wants. */
  kCodeBias: number;
  /**
   * keyLanes' dot products summed in i16 over each Q scale group, widened to i32 once a group
   * (a variant with `i16Sums` whose K codes keep those sums within i16: q4_0's nibbles); else in
   * i32 at every step.
   */
  keyLanesI16: boolean;
  /**
   * f32 scores from a transposed K tile (config keyTile = 1; f32 Q): each tile's K rows dequantized
   * and transposed once per task (dimension-major, a key per lane), shared by every row group,
   * whose scores are then FMAs of a broadcast Q value and `keyTileVectors` vectors of keys, with no
   * horizontal sums. Else each K row is dequantized once per row group and every row's dot product
   * summed across the lanes.
   */
  keyTile: boolean;
  /**
   * Touch loads for a variant without a prefetch instruction (config touch = 1; WebAssembly): the
   * score loop loads and drops a byte of every cache line of each key's V row and of the next
   * tile's K row, so that memory traffic starts early. Else no such loads (C prefetches instead).
   */
  touch: boolean;
  /** Vectors of keys a row group's keyTile scores take together (0 without keyTile). */
  keyTileVectors: number;
  /** Floats per dimension of the transposed tile: kvBlock rounded up to whole passes of keyTileVectors vectors (0 without). */
  keyTileStride: number;
  /** Q rows (B * Hq * Sq): int8 Q keeps qGroups f32 scales each. */
  qRows: number;
  /** Workspace: Q as scaled f32, then (splits > 1) each task's partial rows of D + 2 floats. */
  qFloats: number;
  /**
   * f32 words the workspace's Q region takes, before the partials: qFloats, or with int8 Q the
   * qRows x qGroups scales then the qFloats codes (one byte each) rounded up to whole words.
   */
  qWords: number;
  partialFloats: number;
  workspaceBytes: number;
  /** Bytes of the stack a task uses (scores, accumulators, row state). */
  taskStackBytes: number;
};

declare module './types.js' {
  interface PlanFamilies {
    'cpu-attention': { op: AttentionOp; shape: AttentionShape; params: CpuAttentionParams };
  }
}

type Req = PlanRequestFor<AttentionOp, AttentionShape>;

/** Query rows up to which a task takes every query (decode); longer query blocks are tiled. */
export const CPU_DECODE_MAX_SQ = 8;

/** Fewest keys a split should cover: below this the merge costs more than the parallelism gains. */
export const MIN_SPLIT_KEYS = 256;

/**
 * The most bytes a task's scores and accumulators may take: they live on the stack of the thread
 * running it (kernel.h states the figure); as the matmul panel, room under 512 KiB thread stacks.
 */
export const ATTENTION_TASK_STACK_MAX = 256 * 1024;

/** The plan buffer of what a task keeps on its thread's stack (scores, accumulators, row state). */
export const TASK_STACK_BUFFER = 'scores and accumulators';

function lanesOf(variants: CpuVariants, isa: string): number {
  return variants.f32Lanes?.[isa] ?? 4;
}

/** The default query tile: every query when decoding, else 16. */
function defaultQBlock(Sq: number): number {
  return Sq <= CPU_DECODE_MAX_SQ ? Sq : 16;
}

/**
 * The default split count: enough tasks for two per hardware thread, each split covering at
 * least MIN_SPLIT_KEYS keys. Long-context decode with few KV heads splits; prefill, whose query
 * tiles already give the threads work, does not. Tasks that take every KV head (`allHeads`) are
 * counted without the heads.
 *
 * (Until the eighth session, decode over positions x heads rows that share cache lines also split
 * until a head's chunk fit the L2, so two heads' shared lines stayed cached: q8_0 51% -> 59-64% of its
 * own read. Every head in one task reads those lines together, and replaced it: docs/PERFORMANCE.md,
 * "Eighth session".)
 */
export function defaultSplits(req: Req, allHeads: boolean): number {
  const { B, Hkv, Sq, Skv } = req.shape;
  const base = B * (allHeads ? 1 : Hkv) * ceilDiv(Sq, defaultQBlock(Sq));
  const wanted = ceilDiv(2 * (req.device.cpu?.threads ?? 1), base);
  return Math.max(1, Math.min(wanted, Math.floor(Skv / MIN_SPLIT_KEYS)));
}

/**
 * Whether tasks take every KV head of their chunk by default (the `allHeads` knob): for decode over
 * positions x heads rows (llama.cpp's cache) with more than one KV head. A task then reads each tile's
 * positions for all heads, one contiguous run of the cache, where one head a task reads a row in
 * every Hkv and comes back to the same pages Hkv times. Measured (Skv=32768, two threads, Zen 4 VM):
 * docs/PERFORMANCE.md, "Eighth session". Heads x positions rows are contiguous per head already.
 */
function defaultAllHeads(req: Req, variants: CpuVariants): boolean {
  const { Hkv, Sq } = req.shape;
  return variants.attentionAllHeads === true && kvLayoutOf(req.op) === 'positions_heads' && Sq <= CPU_DECODE_MAX_SQ && Hkv > 1;
}

/**
 * The knobs of the space, by type. The optional ones are the space's only where the target's
 * variants have the kernel (and allHeads where there is more than one KV head).
 */
const KNOBS = {
  isa: 'string', qBlock: 'number', splits: 'number', allHeads: 'number?', kvBlock: 'number', pvInt: 'number?',
  rowGroup: 'number', qInt8: 'number?', touch: 'number?', keyLanes: 'number?', keyTile: 'number?',
} as const;
type Knobs = ConfigOf<typeof KNOBS>;
type CpuAttentionRestriction = RestrictionOf<typeof KNOBS>;
type CpuAttentionKnob = KnobOf<typeof KNOBS>;

/** `knob` where `present`, else none: a knob only some variants' kernels (or shapes) have. */
const knobIf = (present: unknown, knob: CpuAttentionKnob): CpuAttentionKnob[] => (present ? [knob] : []);

/** KV heads a task takes under a config: all of them (allHeads: 1) or one. */
function taskHeadsOf(req: Req, config: Knobs): number {
  return config.allHeads === 1 ? req.shape.Hkv : 1;
}

/** Scale groups of a KV row at least 1 (f16 has none): the stride of a tile's V scales as f32. */
function scaleGroupsPadded(op: AttentionOp, D: number): number {
  const { valuesPerScale } = kvRowFormat(op, D);
  return valuesPerScale ? D / valuesPerScale : 1;
}

function taskStackBytes(rowsPadded: number, kvBlock: number, D: number, groupsPadded: number, rowGroup: number, pvLaneKeys: number, keyTileStride: number): number {
  // scores, accumulators, per row: max, sum, correction, visible keys, Q, O and Q scale pointers,
  // Q's code sums by Q scale group (keyLanes); and the tile's V scales as f32; with integer P.V
  // (pvLaneKeys > 0) also the tile's V scales by group, V row pointers and a row group's int16 P
  // codes and scales; with keyTile the transposed K tile (D x keyTileStride f32).
  const keys = pvLaneKeys ? pvKeysOf(kvBlock, pvLaneKeys) : 0;
  const pv = keys * (4 * groupsPadded + 8 + 2 * rowGroup * groupsPadded) + (pvLaneKeys ? 4 * rowGroup * groupsPadded : 0);
  return 4 * rowsPadded * (kvBlock + D) + rowsPadded * (4 * 4 + 3 * 8 + 4 * Math.max(groupsPadded, ceilDiv(D, Q_GROUP))) + 4 * kvBlock * groupsPadded + pv + 4 * D * keyTileStride;
}

/** A tile's keys rounded up to whole i32 lanes of integer P.V. */
function pvKeysOf(kvBlock: number, laneKeys: number): number {
  return ceilDiv(kvBlock, laneKeys) * laneKeys;
}

/**
 * Most vectors of keys a row group's keyTile scores take together: 2 (AVX-512, f16 prefill
 * Sq=Skv=2048, one thread: 1, 2 and 4 within 3% of each other; 2 keeps AVX2's 8 rows in 16 registers
 * at 1).
 */
const KEY_TILE_MAX_VECTORS = 2;

/**
 * keyTile's vectors of keys per pass and the transposed tile's floats per dimension for a config,
 * or undefined without keyTile: the most vectors (at most KEY_TILE_MAX_VECTORS) whose rowGroup x
 * vectors accumulators, the key vectors and a broadcast Q value fit the registers with the spare
 * ones; 0 vectors where not even one does.
 */
function keyTileOf(variants: CpuVariants, device: DeviceProfile, config: Knobs, kvBlock: number): { vectors: number; stride: number } | undefined {
  if (config.keyTile !== 1) return undefined;
  const { isa, rowGroup } = config;
  const registers = variantRegisters(variants, device, isa);
  let vectors = KEY_TILE_MAX_VECTORS;
  while (vectors > 0 && vectors * rowGroup + vectors + 1 + STEP_SPARE_REGISTERS > registers) vectors--;
  const pass = Math.max(1, vectors) * lanesOf(variants, isa);
  return { vectors, stride: ceilDiv(kvBlock, pass) * pass };
}

/** Keys per i32 lane of integer P.V for a config (0: f32 P.V, or a variant without it). */
function pvLaneKeysOf(variants: CpuVariants, config: Knobs): number {
  return config.pvInt === 1 ? variants.attentionIntPV?.[config.isa]?.laneKeys ?? 0 : 0;
}

/** Integer P.V's i32 accumulators a row on a variant with it: its own, or a whole step's. */
function pvAccumulatorsOf(variants: CpuVariants, isa: string): number {
  return variants.attentionIntPV?.[isa]?.accumulators ?? CODES_PER_I32_LANE;
}

/**
 * Most vectors of D per row a loop takes together: the scores 2 (4 measured slower: f16, AVX-512,
 * Skv=1024, one thread, 0.195 -> 0.204 ms), f32 P.V 4 (AVX-512: 0.209 -> 0.195 ms against 2; 8 spills).
 */
const SCORE_MAX_STEP = 2;
const PV_MAX_STEP = 4;

/** Registers a loop's step leaves free for addresses' spills and decode temporaries. */
const STEP_SPARE_REGISTERS = 2;

/**
 * The largest step of vectors (4, 2 or 1, at most `max`, dividing `chunks`) whose registers (`need`)
 * and the spare ones fit: fewer steps than registers allow lose FMA chains (f16, AVX2, 16 registers:
 * one vector a row is 26% slower than two), more spill.
 */
function chunkStepFor(chunks: number, max: number, need: (step: number) => number, registers: number): number {
  return [4, 2, 1].find((s) => s <= max && chunks % s === 0 && need(s) + STEP_SPARE_REGISTERS <= registers) ?? 1;
}

/** Vectors of f16 a block of keys' K scales may take with keyLanes (kg_kt_scales permutes two). */
const KEY_LANES_SCALE_VECTORS = 2;

/** The largest |K code| of a cache with int8 codes: q4_0's nibbles minus 8 reach -8; int8 codes 128. */
function kCodeMax(op: AttentionOp): number {
  return op.kvCache === 'q4_0' ? 8 : 128;
}

/**
 * Whether keyLanes' pair sums (two products of a K and a Q code) may add up in i16 over a Q scale
 * group (Q_GROUP / 2 products a lane) on this variant and cache, with no bias on K (the sums start
 * at 0).
 */
function keyLanesI16(variants: CpuVariants, isa: string, op: AttentionOp): boolean {
  const cap = variants.attentionKeyLanes?.[isa];
  return cap?.i16Sums === true && cap.kBias === 0 && (Q_GROUP / 2) * kCodeMax(op) * INT8_CODE_MAX <= I16_MAX;
}

/** Codes per integer dot step of int8 Q: 4 per i32 lane (vpdpbusd, sdot, madd of maddubs pairs). */
const CODES_PER_I32_LANE = 4;

/**
 * Q values per int8 scale: as llama.cpp's q8_0 Q, and every KV format's scale group along D is a
 * multiple or (kgen q8 groups of 8, 16) a divisor of it. With a scale per row an outlier channel
 * (LLM Q and K have a few, 10x the rest) set the row's scale and left the others a few bits: NMSE
 * 3.6e-4 against a tolerance of 2e-4 (q8_0, D=128, one outlier channel; docs/PERFORMANCE.md,
 * "Twenty-fifth session").
 */
export const Q_GROUP = 32;

/**
 * How far an int8-Q kernel's error may exceed that of Q's rounding alone (Tolerance.inputRounding):
 * the kernel rounds the same values the same way, so its error follows the rounding's (kernel /
 * rounding-alone NMSE 0.98-1.00 and the largest errors within 3% on every format, Sq and D of the
 * attention test matrix, C and WebAssembly); its ties, f32 scales and sums move it a little. Small
 * enough that a coarser rounding fails: a Q scale per row instead of per 32 values costs 1.5x at D=64
 * (the outlier pair's group is half the row), 3.6x at D=128.
 */
const Q_ROUNDING_FACTOR = 1.25;

/**
 * Codes in a contiguous run of a KV row: q4_0's half-blocks (16 bytes whose low, then high,
 * nibbles are the block's halves), q8_0's blocks; kgen q8 rows are codes throughout.
 */
function codeRun(op: AttentionOp, D: number): number {
  return op.kvCache === 'q4_0' ? GGML_KV_BLOCK / 2 : op.kvCache === 'q8_0' ? GGML_KV_BLOCK : D;
}

/** Integer dot step of int8 Q for a variant: see CpuAttentionParams.iStep. */
function iStepOf(variants: CpuVariants, isa: string): number {
  return CODES_PER_I32_LANE * lanesOf(variants, isa);
}

/** K scale groups per integer step (1 or 2), or undefined when the groups and steps do not nest so. */
function iScalesPerStep(variants: CpuVariants, isa: string, valuesPerScale: number): number | undefined {
  const step = iStepOf(variants, isa);
  if (valuesPerScale % step === 0) return 1;
  return step === 2 * valuesPerScale && lanesOf(variants, isa) % 2 === 0 ? 2 : undefined;
}

/**
 * What a knob that takes K's or V's int8 codes in integer dot steps (qInt8: K, pvInt: V) needs:
 * int8 codes (not f16), a variant with the kernel, D in whole steps, and scale groups that hold
 * whole steps or half of one.
 */
function integerCodeRestrictions(req: Req, variants: CpuVariants, k: { knob: 'pvInt' | 'qInt8'; label: string; tensor: 'K' | 'V'; isas: object; noVariant: string }): CpuAttentionRestriction[] {
  const { D } = req.shape;
  const { valuesPerScale } = kvRowFormat(req.op, D);
  const off = (c: Knobs) => c[k.knob] === 0;
  return [
    { reason: `${k.label} needs int8 ${k.tensor} codes: the f16 KV cache has none`, allows: (c) => off(c) || req.op.kvCache !== 'f16' },
    { reason: `${k.label}: ${k.noVariant}`, allows: (c) => off(c) || Object.hasOwn(k.isas, c.isa) },
    { reason: `${k.label}: D is not a whole number of integer dot steps (4 codes per f32 lane)`, allows: (c) => off(c) || D % iStepOf(variants, c.isa) === 0 },
    {
      reason: `${k.label}: a ${k.tensor} scale group neither holds whole integer dot steps nor half of one`,
      allows: (c) => off(c) || req.op.kvCache === 'f16' || iScalesPerStep(variants, c.isa, valuesPerScale) !== undefined,
    },
  ];
}

/** The tile sizes every variant takes, the shared default first. */
const KV_BLOCKS = [64, 128, 32, 256];

/**
 * The kvBlock knob's values, its default first: for decode, the device's first variant's own tile
 * for the KV cache format where it states one (`attentionDecodeKvBlock`) and the default split
 * leaves chunks of at least its `minChunkKeys` (a pinned other variant or split count gets the
 * same order, as pvInt's), else 64.
 */
function kvBlockValues(req: Req, variants: CpuVariants, splits: number): number[] {
  const { Sq, Skv } = req.shape;
  const own = Sq <= CPU_DECODE_MAX_SQ ? variants.attentionDecodeKvBlock?.[variants.of(req.device)[0] ?? '']?.[req.op.kvCache] : undefined;
  const first = own && ceilDiv(Skv, splits) >= own.minChunkKeys ? own.keys : KV_BLOCKS[0]!;
  return [...new Set([first, ...KV_BLOCKS])];
}

function cpuSpace(req: Req, variants: CpuVariants): SearchSpace {
  const { Sq, Skv, D, Hq, Hkv } = req.shape;
  const group = Hq / Hkv;
  const allHeads = defaultAllHeads(req, variants);
  const splits = [...new Set([defaultSplits(req, allHeads), 1, 2, 4, 8, 16, 32, 64])].filter((s) => s <= Skv);
  const qBlocks = Sq <= CPU_DECODE_MAX_SQ ? [...new Set([Sq, 1])] : [16, 8, 32, 4, 64, 1];
  const groupsPadded = scaleGroupsPadded(req.op, D);
  const restrictions: CpuAttentionRestriction[] = [
    { reason: 'qBlock exceeds Sq', allows: (c) => c.qBlock <= Sq },
    { reason: 'rowGroup exceeds the rows of a task (qBlock x group)', allows: (c) => c.rowGroup === 1 || c.rowGroup <= c.qBlock * group },
    { reason: 'splits leave chunks shorter than kvBlock', allows: (c) => c.splits === 1 || ceilDiv(Skv, c.splits) >= Math.min(c.kvBlock, Skv) },
    { reason: `D is not a multiple of the ISA's f32 lanes (${Object.entries(variants.f32Lanes ?? {}).map(([isa, n]) => `${isa} ${n}`).join(', ') || 'all 4'})`, allows: (c) => D % lanesOf(variants, c.isa) === 0 },
    {
      reason: 'q8 scale groups hold no whole number of vectors',
      allows: (c) => req.op.kvCache !== 'q8' || req.op.kvGroupSize! % lanesOf(variants, c.isa) === 0,
    },
    {
      reason: `a task's scores and accumulators exceed ${ATTENTION_TASK_STACK_MAX} bytes of stack`,
      allows: (c) => {
        const kvBlock = Math.min(c.kvBlock, Skv);
        const rowsPadded = taskHeadsOf(req, c) * ceilDiv(c.qBlock * group, c.rowGroup) * c.rowGroup;
        const stride = keyTileOf(variants, req.device, c, kvBlock)?.stride ?? 0;
        return taskStackBytes(rowsPadded, kvBlock, D, groupsPadded, c.rowGroup, pvLaneKeysOf(variants, c), stride) <= ATTENTION_TASK_STACK_MAX;
      },
    },
  ];
  const int8Q = variants.attentionInt8Q;
  const intPV = variants.attentionIntPV;
  if (intPV) {
    // V's codes are taken in the integer steps of int8 Q (iStep codes, the same pieces).
    restrictions.push(
      ...integerCodeRestrictions(req, variants, { knob: 'pvInt', label: 'integer P.V (pvInt: 1)', tensor: 'V', isas: intPV, noVariant: 'the variant has no integer P.V kernel' }),
      // Measured (q8 prefill, Sq=Skv=1024, one AVX-512 thread): rowGroup 8 with integer P.V spills
      // and is 5-10% slower than f32 P.V at rowGroup 8; rowGroup 4 with it is 3-5% faster. Each
      // variant keeps its own i32 accumulators a row (AVX-512's vpdpwssd step 4; AVX2's and
      // WebAssembly's 2, half a step: 4 rows in 16 registers).
      ...Object.keys(intPV).map((isa): CpuAttentionRestriction => {
        const accumulators = pvAccumulatorsOf(variants, isa);
        return {
          reason: `integer P.V (pvInt: 1): rowGroup x ${accumulators} i32 accumulators, a step's ${accumulators} V vectors and the work registers exceed the vector registers`,
          allows: (c) => c.pvInt === 0 || c.isa !== isa || (c.rowGroup + 1) * accumulators + CPU_WORK_REGISTERS <= variantRegisters(variants, req.device, isa),
        };
      }),
    );
  }
  // Integer P.V first (the default) but for prefill where the device's first variant says otherwise:
  // the knob's order cannot follow the isa knob, so a pinned other variant gets the first's order.
  const pvIntFirst = Sq <= CPU_DECODE_MAX_SQ || intPV?.[variants.of(req.device)[0] ?? '']?.prefill !== false;
  if (int8Q) restrictions.push(...integerCodeRestrictions(req, variants, { knob: 'qInt8', label: 'int8 Q (qInt8: 1)', tensor: 'K', isas: int8Q, noVariant: 'the variant has no integer dot product' }));
  const keyLanes = variants.attentionKeyLanes;
  if (keyLanes) {
    const on = (c: Knobs) => c.keyLanes === 1;
    const { scalesPerRow, valuesPerScale } = kvRowFormat(req.op, D);
    const { positionStride } = kvRowStrides(kvLayoutOf(req.op), req.shape);
    restrictions.push(
      { reason: 'keys across the lanes (keyLanes: 1): the variant has no such score kernel', allows: (c) => !on(c) || Object.hasOwn(keyLanes, c.isa) },
      { reason: 'keys across the lanes (keyLanes: 1) needs int8 Q (qInt8: 1)', allows: (c) => !on(c) || c.qInt8 === 1 },
      // kgen q8 keeps a row's scales in an array: a block of keys' scales must be two vectors of
      // contiguous f16. ggml blocks keep theirs in the rows, gathered a key per lane at any stride.
      {
        reason: `keys across the lanes (keyLanes: 1): a block of keys' kgen q8 scales is not ${KEY_LANES_SCALE_VECTORS} vectors of contiguous f16 (heads x positions rows, at most ${KEY_LANES_SCALE_VECTORS * 2} scale groups a row)`,
        // A vector holds 2 x lanes f16 and a block's scales are lanes x scalesPerRow.
        allows: (c) => !on(c) || req.op.kvCache !== 'q8' || (positionStride === 1 && scalesPerRow <= 2 * KEY_LANES_SCALE_VECTORS),
      },
      // A Q scale group's sums convert once, times one K scale a key: K's groups must hold whole Q
      // groups (kgen q8 groups of 16 are half of AVX2's integer step, legal for qInt8).
      {
        reason: `keys across the lanes (keyLanes: 1): K's scale groups of ${valuesPerScale} values are smaller than Q's (${Q_GROUP})`,
        allows: (c) => !on(c) || !valuesPerScale || valuesPerScale % Q_GROUP === 0,
      },
      {
        reason: 'keys across the lanes (keyLanes: 1): the registers of a block of keys\' transposed step, 2 x rowGroup accumulators and the work registers exceed the vector registers',
        allows: (c) => !on(c) || !Object.hasOwn(keyLanes, c.isa) || keyLanes[c.isa]!.stepRegisters + 2 * c.rowGroup + CPU_WORK_REGISTERS <= variantRegisters(variants, req.device, c.isa),
      },
    );
  }
  const keyTile = variants.attentionKeyTile;
  if (keyTile) {
    const on = (c: Knobs) => c.keyTile === 1;
    restrictions.push(
      { reason: 'a transposed K tile (keyTile: 1): the variant has no such score kernel', allows: (c) => !on(c) || keyTile.includes(c.isa) },
      { reason: 'a transposed K tile (keyTile: 1) is for f32 scores (qInt8: 0)', allows: (c) => !on(c) || c.qInt8 !== 1 },
      {
        reason: 'a transposed K tile (keyTile: 1): rowGroup accumulators per vector of keys, the key vectors and the work registers exceed the vector registers',
        allows: (c) => !on(c) || keyTileOf(variants, req.device, c, Math.min(c.kvBlock, Skv))!.vectors > 0,
      },
    );
  }
  return typedSpace(KNOBS, {
    knobs: [
      { name: 'isa', values: variants.of(req.device), doc: variants.attentionDoc ?? variants.doc },
      { name: 'qBlock', values: qBlocks, doc: 'queries per task; with the GQA group, the rows that share each K/V load' },
      { name: 'splits', values: splits, doc: `KV sequence chunks per task row block, merged by log-sum-exp (first: from Skv and the device's threads)` },
      // Before kvBlock: where every head's tile of K and V exceeds the L2 share, a shorter tile with
      // every head is preferred to one head a task.
      ...knobIf(variants.attentionAllHeads && Hkv > 1, { name: 'allHeads', values: allHeads ? [1, 0] : [0, 1], doc: 'KV heads per task: all of them, each tile\'s positions for every head in turn (1: one contiguous run of a positions x heads cache per tile; the default there for decode), or one (0)' }),
      { name: 'kvBlock', values: kvBlockValues(req, variants, defaultSplits(req, allHeads)), doc: 'keys per tile of the online softmax (first: 64, or for decode the device\'s first variant\'s own for the cache)' },
      // Before rowGroup: where integer P.V is legal it takes precedence over 8 rows (which it refuses
      // for registers), since 4 rows with it beat 8 without (prefill, q8 / q8_0 / q4_0: 3-5%).
      ...knobIf(intPV, { name: 'pvInt', values: pvIntFirst ? [1, 0] : [0, 1], doc: 'P.V as integer dot products (1: each tile\'s P times V\'s scales as int16 codes against the int8 V codes; q8, q8_0, q4_0) or f32 FMAs (0)' }),
      { name: 'rowGroup', values: [8, 4, 16, 2, 1], doc: 'rows computed together in registers, sharing each K and V vector' },
      // Last, so a cache or shape that rules int8 Q out keeps every other knob's default.
      ...knobIf(int8Q, { name: 'qInt8', values: [1, 0], doc: 'Q as int8 codes (1: integer dot products with the int8 K codes; q8, q8_0, q4_0) or f32 (0: K dequantized to f32)' }),
      ...knobIf(variants.attentionTouch, { name: 'touch', values: touchValues(req), doc: 'touch loads ahead of use (1: a dropped byte load of every cache line of each key\'s V row and of the next tile\'s K row, for a target without prefetch) or none (0)' }),
      // After qInt8, which it needs.
      ...knobIf(keyLanes, { name: 'keyLanes', values: [1, 0], doc: 'int8-Q scores with keys across the vector lanes (1: each integer step of a block of keys\' K codes transposed once for the row group, no horizontal sums; the caches with int8 codes) or one key at a time (0)' }),
      // After qInt8, which rules it out. On by default where a task has many row groups to share
      // the transposed tile (prefill: f16, AVX-512, Sq=Skv=2048, 514 -> 395 ms on one thread);
      // decoding has one or two, and the transposition then costs more than the sums it saves.
      ...knobIf(keyTile, { name: 'keyTile', values: Sq <= CPU_DECODE_MAX_SQ ? [0, 1] : [1, 0], doc: 'f32 scores from each tile\'s K transposed once per task (1: a key per lane, shared by every row group, no horizontal sums) or one K row at a time per row group (0)' }),
    ],
    restrictions,
  });
}

function cpuPlan(req: Req, config: Config, variants: CpuVariants): PlanBody<'cpu-attention'> {
  const { op, shape, device } = req;
  const knobs = readConfig(KNOBS, config);
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const isa = knobs.isa;
  const group = Hq / Hkv;
  const lanes = lanesOf(variants, isa);
  const row = kvRowFormat(op, D);
  const layout = kvLayoutOf(op);
  const { headStride, positionStride } = kvRowStrides(layout, shape);
  const qBlock = knobs.qBlock;
  const qTiles = ceilDiv(Sq, qBlock);
  const rowGroup = knobs.rowGroup;
  const taskRows = qBlock * group;
  const taskRowsPadded = ceilDiv(taskRows, rowGroup) * rowGroup;
  const taskHeads = taskHeadsOf(req, knobs);
  const headTasks = Hkv / taskHeads;
  const taskRowsAllPadded = taskHeads * taskRowsPadded;
  const kvBlock = Math.min(knobs.kvBlock, Skv);
  const splits = knobs.splits;
  const chunkKeys = ceilDiv(Skv, splits);
  const tasks = B * headTasks * qTiles * splits;
  const qFloats = B * Hq * Sq * D;
  const qRows = B * Hq * Sq;
  const qInt8 = knobs.qInt8 === 1;
  const pvInt = knobs.pvInt === 1;
  const pvLaneKeys = pvLaneKeysOf(variants, knobs);
  const pvAccumulators = pvInt ? pvAccumulatorsOf(variants, isa) : 0;
  const pvParts = pvAccumulators ? CODES_PER_I32_LANE / pvAccumulators : 0;
  const keyLanes = knobs.keyLanes === 1;
  const keyTile = keyTileOf(variants, device, knobs, Math.min(knobs.kvBlock, Skv));
  // Integer steps of K's codes (int8 Q) or V's (integer P.V).
  const iCodes = qInt8 || pvInt;
  const qGroups = ceilDiv(D, Q_GROUP);
  const qWords = qInt8 ? qRows * qGroups + ceilDiv(qFloats, 4) : qFloats;
  const iStep = iStepOf(variants, isa);
  // Without int8 Q the step is not used (and need not divide D): one piece, no steps.
  const iPiece = iCodes ? Math.min(codeRun(op, D), iStep) : iStep;
  const partCodes = pvParts ? iStep / pvParts : 0;
  const pvPiece = pvInt && variants.attentionIntPV?.[isa]?.partLoads && iPiece % partCodes === 0 ? partCodes : 0;
  const scaleGroups = row.valuesPerScale ? D / row.valuesPerScale : 0;
  const groupsPadded = scaleGroupsPadded(op, D);
  const partialFloats = splits > 1 ? tasks * taskRowsAllPadded * (D + 2) : 0;
  const stack = taskStackBytes(taskRowsAllPadded, kvBlock, D, groupsPadded, rowGroup, pvLaneKeys, keyTile?.stride ?? 0);
  const chunks = D / lanes;
  const registers = variantRegisters(variants, device, isa);
  // Scores: step x rowGroup accumulators, the step's K vectors and a Q vector; f32 P.V: step x
  // rowGroup accumulators, rowGroup broadcast probabilities and the step's V vectors.
  // The tree where a row group's pending partials (one a level and row, and the key's own) fit the
  // registers beside a K vector: rowGroup 4 on AVX-512, not 8 (prefill's).
  const treeLevels = Math.log2(lanes);
  const scoreTreeLevels = variants.attentionScoreTree?.includes(isa) && rowGroup * (treeLevels + 1) + 1 + STEP_SPARE_REGISTERS <= registers ? treeLevels : 0;
  // With the tree those partials take registers the second step's accumulators had: one vector a
  // row measured faster there (f16, AVX-512, Skv=1024: two take 1.015 of one's time in L3, 1.021 from DRAM;
  // docs/PERFORMANCE.md, "f16 decode: scores summed by a tree").
  const chunkStep = scoreTreeLevels ? 1 : chunkStepFor(chunks, SCORE_MAX_STEP, (s) => s * rowGroup + s + 1, registers);
  const pvStep = chunkStepFor(chunks, PV_MAX_STEP, (s) => s * rowGroup + rowGroup + s, registers);
  const pvPasses = pvInt ? (D / iStep) * pvParts : ceilDiv(chunks, pvStep);
  const rowLines = ceilDiv(row.rowBytes, CPU_CACHE_LINE_BYTES);
  const buffers: OnChipBuffer[] = [
    { name: 'accumulators', space: 'registers', size: Math.max(keyTile?.vectors ?? chunkStep, pvStep) * rowGroup, why: `${keyTile?.vectors ?? chunkStep} vector(s) per row of a row group of ${rowGroup} in the scores, ${pvStep} in P.V` },
    { name: 'work registers', space: 'registers', size: CPU_WORK_REGISTERS, why: 'K/V vectors, dequantization and exponentials' },
    { name: TASK_STACK_BUFFER, space: 'l2', size: stack, why: `${taskRowsAllPadded} rows of ${kvBlock} f32 scores and ${D} f32 accumulators${keyTile ? `, the transposed K tile (${D} x ${keyTile.stride} f32)` : ''}` },
    { name: 'K/V tile', space: 'l2', size: taskHeads * 2 * kvBlock * (row.rowBytes + 2 * row.scalesPerRow), why: `${kvBlock} keys and values as stored${taskHeads > 1 ? `, for each of ${taskHeads} KV heads` : ''}` },
  ];
  const scale = softmaxScale(op, D);
  // A run-time KV length: each call's splits share its kv_len keys, in whole splitKeysUnit.
  const splitKeysUnit = variants.attentionSplitTiles && layout !== 'positions_heads' && splits > 1 ? kvBlock : 1;
  const splitShare = splitKeysUnit > 1 ? `ceil(kv_len / ${splits}) rounded up to a multiple of ${splitKeysUnit}` : `ceil(kv_len / ${splits})`;
  const splitText = op.kvLength === 'runtime' ? `${splitShare} keys, ${chunkKeys} at Skv` : `${chunkKeys} keys`;
  return {
    family: 'cpu-attention',
    op, shape, target: req.target, device: device.name, config,
    variant: splits > 1 ? 'split_kv' : Sq <= CPU_DECODE_MAX_SQ ? 'decode' : 'flash',
    launch: splits > 1 ? { tasks, mergeRows: B * Hq * Sq } : { tasks },
    loops: [
      qInt8
        ? `prepare: Q[${B},${Hq},${Sq},${D}] to int8 codes, a scale of absmax/${INT8_CODE_MAX} times scale*log2(e) per ${Q_GROUP} values (once per call)`
        : `prepare: Q[${B},${Hq},${Sq},${D}] to f32 times scale*log2(e) (once per call)`,
      taskHeads > 1
        ? `for task in ${B}x${qTiles}x${splits} (batch, query tile of ${qBlock}, split of ${splitText}): ${Hkv} KV heads x ${taskRows} rows = ${qBlock} queries x ${group} heads`
        : `for task in ${B}x${Hkv}x${qTiles}x${splits} (batch, KV head, query tile of ${qBlock}, split of ${splitText}): ${taskRows} rows = ${qBlock} queries x ${group} heads`,
      `  for j0 in the split's keys${op.causal ? ' up to the tile\'s last visible key' : ''}${op.kvLength === 'runtime' ? ' (keys < kv_len)' : ''} step ${kvBlock}${taskHeads > 1 ? `, each of the ${Hkv} KV heads in turn` : ''}`,
      `    scores: ${keyTile ? `K tile dequantized and transposed to ${D} x ${kvBlock} f32 (a key per lane) once, then per ${rowGroup} rows FMAs of broadcast Q values with ${keyTile.vectors} vector(s) of keys, no horizontal sums` : keyLanes ? `${lanes} keys at a time: each integer step of their K codes transposed (a key per lane) once per ${rowGroup} rows, integer dot products of 4 codes of every key, scaled in f32 per scale group` : qInt8 ? `integer dot products of ${iStep} int8 codes per step, each K step loaded once per ${rowGroup} rows and scaled in f32` : `each K row dequantized in registers once per ${rowGroup} rows`}; ${op.causal ? 'causal mask on diagonal tiles; ' : ''}online softmax (base 2)`,
      pvInt
        ? `    accumulate: P times V's scales to integer codes per row, group and tile; integer dot products over ${pvLaneKeys} keys a lane, each V step loaded once per ${rowGroup} rows`
        : `    accumulate: each V vector dequantized once per ${rowGroup} rows`,
      splits > 1 ? `merge: ${B * Hq * Sq} output rows, ${splits} partials each, by log-sum-exp` : 'output: accumulators / sum, written by the task',
    ],
    buffers,
    budgets: cpuBudgets(device, buffers, registers),
    // int8 Q as matmul's int8 activations (a scale per 32 values). Held on N(0,1) data (NMSE ~3e-5,
    // softmax nearly flat); on peaked scores with a pair of outlier channels (docs/PERFORMANCE.md,
    // "Twenty-fifth session") it measures 1.0-1.4e-4 at D=128 (a scale per row: 3.1-9.2e-4) and
    // ~2e-4 at D=64, at the bound: an outlier's group keeps its other 31 values to a few bits, and
    // the outlier's own rounding times K's outlier spread remains, which exp() amplifies.
    tolerance: {
      // Int8 Q's own error is judged against Q's rounding on the checked data (inputRounding), not a fixed bound.
      ...toleranceFor({ int16Weights: pvInt, outF16: op.o === 'f16', inF16: op.q === 'f16' }),
      ...(qInt8 ? { inputRounding: { input: 'q', bits: 8, group: Q_GROUP, factor: Q_ROUNDING_FACTOR } } : {}),
    },
    traffic: attentionTraffic(op, shape),
    params: {
      B, Hq, Hkv, Sq, Skv, D, group, isa,
      kvFormat: op.kvCache,
      lanes,
      chunks,
      chunkStep,
      pvStep,
      scoreTreeLevels,
      pvPasses,
      rowLines,
      pvPrefetches: pvInt && row.rowBytes % CPU_CACHE_LINE_BYTES === 0 ? ceilDiv(rowLines * pvLaneKeys, pvPasses) : 0,
      rowBytes: row.rowBytes,
      scalesPerRow: row.scalesPerRow,
      valuesPerScale: row.valuesPerScale,
      scaleGroups,
      scaleGroupsPadded: groupsPadded,
      headStride, positionStride,
      kvLayout: layout,
      splitsOuter: layout === 'positions_heads',
      qBlock, qTiles, taskRows, taskRowsPadded, taskHeads, headTasks, taskRowsAllPadded, rowGroup, kvBlock, splits, chunkKeys, splitKeysUnit, tasks,
      outRows: B * Hq * Sq,
      causal: op.causal,
      causalOffset: Skv - Sq,
      ...kvLengthParams(op, shape),
      scaleLog2: scale * Math.LOG2E,
      qInt8,
      qCodeMax: INT8_CODE_MAX,
      qGroup: Q_GROUP,
      qGroups,
      // With keyLanes K carries the bias and Q's codes stay signed.
      qCodeOffset: qInt8 && !keyLanes ? variants.attentionInt8Q![isa]! : 0,
      iStep,
      iSteps: iCodes ? D / iStep : 0,
      iPiece,
      iPieces: iStep / iPiece,
      iScalesPerStep: (iCodes && iScalesPerStep(variants, isa, row.valuesPerScale)) || 1,
      laneCodes: CODES_PER_I32_LANE,
      pvAccumulators,
      pvParts,
      pvPiece,
      pvOutOfLine: pvInt && kvBlock <= (variants.attentionIntPV?.[isa]?.outOfLineKeys ?? 0),
      pvInt,
      pvCodeMax: variants.attentionIntPV?.[isa]?.codeMax ?? 0,
      pvLaneKeys,
      pvKeys: pvLaneKeys ? pvKeysOf(kvBlock, pvLaneKeys) : 0,
      keyLanes,
      kCodeBias: keyLanes ? variants.attentionKeyLanes![isa]!.kBias : 0,
      keyLanesI16: keyLanes && keyLanesI16(variants, isa, op),
      touch: knobs.touch === 1,
      keyTile: keyTile !== undefined,
      keyTileVectors: keyTile?.vectors ?? 0,
      keyTileStride: keyTile?.stride ?? 0,
      qRows,
      qFloats,
      qWords,
      partialFloats,
      workspaceBytes: 4 * (qWords + partialFloats),
      taskStackBytes: stack,
    },
  };
}

/** What one task of a CPU attention plan covers, for headers and docs: "batch x KV head x query tile x KV split", or with allHeads every KV head of a (batch, query tile, KV split). */
export function taskUnitsText(p: Pick<CpuAttentionParams, 'taskHeads'>): string {
  return p.taskHeads > 1 ? `batch x query tile x KV split, each over all ${p.taskHeads} KV heads` : 'batch x KV head x query tile x KV split';
}

/**
 * What the ABI docs say about kv_len, the positions a call of a run-time-length kernel reads
 * (runtimeKvLength), for every CPU target's entries that take it.
 */
export function kvLenText(p: Pick<CpuAttentionParams, 'Skv' | 'kvLenMin' | 'causal'>): string {
  return kvLenTextOf(p, 'returns 0, or -1 with nothing written');
}

/** What the workspace's split partials of a CPU attention plan hold, for the ABI docs. */
export function splitPartialsText(p: Pick<CpuAttentionParams, 'splits' | 'partialFloats' | 'tasks' | 'taskHeads' | 'taskRowsPadded' | 'D'>): string {
  return p.splits > 1
    ? `${4 * p.partialFloats} of split partials (${p.tasks} tasks x ${p.taskHeads > 1 ? `${p.taskHeads} heads x ` : ''}${p.taskRowsPadded} rows x (max, sum, ${p.D} accumulators) in f32)`
    : 'no split partials (one KV split)';
}

/**
 * The touch knob's values, the default first: on, but off for ggml q8_0 in positions x heads rows,
 * where the touches slowed the WebAssembly decode down (Skv=32768, two threads: 26-32 ms with them,
 * 12-20 without; Skv=4096, one thread: 6.9-7.0 against 3.9-4.0), while they sped up q8 in the same
 * rows and config and q8_0 in heads x positions rows (docs/PERFORMANCE.md).
 */
function touchValues(req: Req): number[] {
  return req.op.kvCache === 'q8_0' && kvLayoutOf(req.op) === 'positions_heads' ? [0, 1] : [1, 0];
}

/** The CPU attention planner of a target whose variants are `variants`. */
export function cpuAttentionPlanner(variants: CpuVariants): PlannerOf<'cpu-attention'> {
  return { family: 'cpu-attention', space: (req) => cpuSpace(req, variants), plan: (req, config) => cpuPlan(req, config, variants) };
}
