import type { MatmulOp, MatmulShape } from '../ir/types.js';
import { codecOf } from '../quant/index.js';
import { ceilDiv, dtypeBytes, INT8_CODE_MAX, readConfig, toleranceFor, typedSpace, type EarlierOf } from './common.js';
import { weightChunkLimit, WORKGROUP_SIZES, workgroupBudgets, workgroupVarBytes } from './wgsl-common.js';
import type { Config, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, SearchSpace } from './types.js';
import { InternalError } from '../errors.js';
import { WEBGPU_STORAGE_OFFSET_ALIGNMENT } from '../device/profile.js';

/**
 * WGSL matmul plans, in WebGPU's vocabulary (workgroups, invocations, workgroup storage; no warps,
 * no asynchronous copies, no assumed subgroup size). Weights are read as u32 words of the bytes
 * `kgen pack` writes, at byte addresses (ggml's 18-byte blocks are not word aligned); activations
 * are f32, or f16 read two to a word and widened (unpack2x16float, no shader-f16); outputs are f32.
 *
 * - `gemv` (M <= 8): a workgroup owns `rowsPerWorkgroup` weight rows; its invocations split K in
 *   groups of 4 weights, stage `xChunk` activations per row of X in workgroup storage, and reduce
 *   their partial sums through workgroup storage, or, with `subgroups`, first within each subgroup
 *   (any size in the profile's range: each subgroup takes a slot with an atomic counter, and the
 *   slots are sized for the smallest subgroup).
 * - `rows` (M <= 8): each invocation owns `rowsPerInvocation` weight rows and walks all of K for
 *   them, summing each block's unscaled products before its scale; no workgroup storage, no
 *   barriers, no reduction, so neighbouring invocations read rows far apart. Where subgroups are at
 *   most 4 wide (SwiftShader: a CPU's SIMD lanes, every barrier a task switch) it is the default.
 *   q4 and q4_0 with an even number of blocks per row walk K a pair of blocks at a time, every
 *   word read once and decoded without shifts ({@link WgslNibblePairs}).
 * - `tiled`: `bm` x `bn` output tiles, K in steps of `bk` through `buffers` workgroup-storage
 *   buffers of f32 activations and raw weight bytes (each tile row padded to whole words).
 */

/** Largest M the gemv variant serves. */
export const WGSL_GEMV_MAX_M = 8;

/** Weights every decode step reads (one u32 of nibbles or int8, two of f16). */
export const WGSL_DECODE_WEIGHTS = 4;

type WgslCommonParams = {
  M: number; N: number; K: number; rowBytes: number; bytesPerBlock: number; weightsPerBlock: number; scaleBytes: number; invocations: number;
  /** Bytes of the weights as bound: the packed matrix padded to whole words plus one word, so a 32-bit read at any even byte offset stays inside. */
  weightBindingBytes: number;
  /**
   * The weights are bound as `weightChunks` consecutive bindings of `weightChunkBytes` (the last one
   * shorter): the largest multiple of 256 bytes the profile's storage binding size allows, so a
   * matrix over that limit (an f16 28672 x 8192 is 470 MB; the WebGPU default is 128 MiB) still binds.
   */
  weightChunkBytes: number; weightChunks: number;
};
export type WgslMatmulParams =
  | (WgslCommonParams & {
      kernel: 'gemv'; rowsPerWorkgroup: number; xChunk: number; xStageFloats: number; accumulators: number;
      /** Whether partial sums are first reduced within subgroups (the device has them and the config asks). */
      subgroups: boolean;
      /** Partial sums per activation row in the reduction scratch: one per invocation, or one per subgroup of the smallest size. */
      reductionSlots: number; reductionFloats: number;
      /**
       * With `subgroups`: the narrowest subgroup the scratch has a slot for (the profile's
       * gpu.features.subgroupSizes[0]); narrower ones would need more slots than there are, so the
       * kernel ships it as a requirement (`BindingInterface.subgroupMinSize`). 0 without subgroups.
       */
      subgroupMinSize: number;
    })
  | (WgslCommonParams & {
      kernel: 'rows'; rowsPerInvocation: number;
      /** Sums per invocation: rowsPerInvocation x M (the rows walk K together, sharing each activation load). */
      accumulators: number;
      /**
       * A step decodes 8 weights of a row, k..k+3 and k+pairGap..k+pairGap+3 (pairGap 16 where a byte
       * holds two of them, as the nibble formats do, else 4): steps take `pairQuads` quads, then jump
       * `pairSpan` = 2 x pairGap; `runSteps` steps make a run.
       */
      pairGap: number; pairQuads: number; pairSpan: number; runSteps: number;
      /** Steps whose f16 sums are added to f32 at a time (f16SumWeights / 8). */
      f16SumSteps: number;
      /** Products and partial sums of `f16SumWeights` weights in f16 (shader-f16), else all in f32. */
      f16Math: boolean; f16SumWeights: number;
      /**
       * dot4I8Packed (int8 weights only): each block of activations quantized to int8 (round(x x
       * int8Max / max|x|)) in the kernel, 4 products per instruction, the block's sum as an i32.
       */
      dot8: boolean; int8Max: number;
      /** Weights summed before a scale is applied: one block (f16, unscaled: 32 weights). */
      scaleRun: number; unscaled: boolean;
      /**
       * q4 and q4_0 with an even number of blocks per row and f32 arithmetic: K is walked a pair of
       * blocks at a time (`pairWords` whole words, each read once), decoded without shifts (the
       * pair fields, {@link WgslNibblePairs}, are 0 where the stepwise kernel runs instead).
       */
      nibblePairs: boolean;
      /**
       * Pair walk only: per run of 32 weights, lane j (< 4) of each subgroup loads activation quads
       * j and j + 4 and subgroupBroadcast hands them to the others (every subgroup has at least 4
       * lanes, and no invocation leaves early); else every invocation loads every quad.
       */
      xBroadcast: boolean;
    } & WgslNibblePairs)
  | (WgslCommonParams & {
      kernel: 'tiled'; bm: number; bn: number; bk: number; buffers: number; singleBuffer: boolean;
      threadsN: number; threadsM: number; rowsPerThread: number; colsPerThread: number; accumulators: number;
      tileRowBytes: number; tileRowWords: number; xTileFloats: number; wTileWords: number; steps: number;
    });

declare module './types.js' {
  interface PlanFamilies {
    'wgsl-matmul': { op: MatmulOp; shape: MatmulShape; params: WgslMatmulParams };
  }
}

/**
 * The `rows` kernel's pair walk of a nibble format (q4, q4_0). A block is an f16 scale and G / 2
 * bytes, 2 mod 4 bytes in all, so two blocks are 1 + G / 4 whole words and, with an even number
 * of blocks per row, every pair starts on a word: word 0 holds the first scale and data bytes 0-1,
 * word G / 8 the first block's last two bytes and the second scale, words G / 8 + 1 .. G / 4 the
 * second block. Each word is read once (the first block's steps take the upper half of one word
 * and the lower half of the next: the words are carried, not re-read).
 */
export type WgslNibblePairs = {
  pairs: number; pairWords: number; pairWeights: number; rowWords: number;
  /** Steps (of 8 weights) per block: G / 8; the second block's scale is in the upper half of word pairSteps. */
  pairSteps: number;
};

/**
 * The unrolled steps of a pair walk: in the first block, step i decodes the upper half of word
 * `word - 1` and the lower half of `word`; in the second, word `word`; both give weights k..k+3
 * (low nibbles) and k+16..k+19 (high) of the pair. Step i covers data bytes 4i..4i+3 of its
 * block: run i / 4 of 32 weights, bytes (i % 4) x 4 of its 16.
 */
export function wgslNibblePairSteps(p: WgslNibblePairs): { steps0: WgslPairStep[]; steps1: WgslPairStep[] } {
  const G = p.pairWeights / 2;
  const step = (block: number, i: number, word: number): WgslPairStep => {
    const runK = block * G + Math.floor(i / 4) * 32;
    return { k: runK + (i % 4) * 4, word, runK, quad: i % 4, runStart: i % 4 === 0 };
  };
  return {
    steps0: Array.from({ length: p.pairSteps }, (_, i) => step(0, i, i + 1)),
    steps1: Array.from({ length: p.pairSteps }, (_, i) => step(1, i, p.pairSteps + 1 + i)),
  };
}

/**
 * One unrolled step of a pair walk: weights k..k+3 and k+16..k+19 of the pair; its run of 32
 * weights starts at runK, and the step is quad `quad` (0..3) of it (runStart: the run's first).
 */
export type WgslPairStep = { k: number; word: number; runK: number; quad: number; runStart: boolean };

/** Largest group whose pair of blocks the `rows` kernel unrolls (2 x G / 8 steps per pair). */
const WGSL_PAIRS_MAX_GROUP = 128;

/**
 * The pair walk for `format` at K, or null where it does not apply: other formats, an odd number
 * of blocks per row (rows then start at half-words), groups over WGSL_PAIRS_MAX_GROUP, f16 arithmetic.
 */
function nibblePairsFor(format: string, K: number, weightsPerBlock: number, bytesPerBlock: number, f16Math: boolean): WgslNibblePairs | null {
  const G = weightsPerBlock;
  const blocks = K / G;
  if ((format !== 'q4' && format !== 'q4_0') || f16Math || blocks % 2 !== 0 || G > WGSL_PAIRS_MAX_GROUP) return null;
  if (bytesPerBlock !== 2 + G / 2 || G % 32 !== 0) throw new InternalError(`a ${format} block of ${G} weights is not an f16 scale and ${G / 2} bytes`);
  return { pairs: blocks / 2, pairWords: (2 * bytesPerBlock) / 4, pairWeights: 2 * G, rowWords: (blocks * bytesPerBlock) / 4, pairSteps: G / 8 };
}

/** The flat params of no pair walk. */
const NO_PAIRS: WgslNibblePairs = { pairs: 0, pairWords: 0, pairWeights: 0, rowWords: 0, pairSteps: 0 };

type Req = PlanRequestFor<MatmulOp, MatmulShape>;

const lcm = (a: number, b: number): number => {
  let x = a;
  let y = b;
  while (y) [x, y] = [y, x % y];
  return (a / x) * b;
};

/** The knobs of the space, by type: every kernel's, those of the other kernels held at their first values. */
const KNOBS = {
  kernel: ['gemv', 'rows', 'tiled'], invocations: 'number',
  rowsPerInvocation: 'number', dot8: 'number', xBroadcast: 'number', f16Math: 'number',
  rowsPerWorkgroup: 'number', xChunk: 'number', subgroups: 'number',
  bm: 'number', bn: 'number', bk: 'number', buffers: 'number',
} as const;
type Knobs = EarlierOf<typeof KNOBS>;

const isGemv = (c: Knobs) => c.kernel === 'gemv';
const isRows = (c: Knobs) => c.kernel === 'rows';

/** Subgroup width at or below which the barrier-free `rows` kernel is the default (SwiftShader's 4: CPU SIMD lanes). */
export const WGSL_NARROW_SUBGROUP = 4;

/**
 * Lanes of each subgroup that load the activations xBroadcast shares (lanes 0..3: the 4 quads of a
 * nibble pair walk's step): a device whose subgroups may be narrower cannot run it.
 */
const WGSL_BROADCAST_LANES = 4;

/** Formats whose codes are int8, as dot4I8Packed takes them. */
const INT8_FORMATS: readonly string[] = ['q8', 'q8_0'];

/** Weights an f16 `rows` kernel sums per step of its outer loop (no scale; K is a multiple of 32). */
const F16_RUN = 32;

/** Weights a `rows` step decodes: two quads of 4. */
const WGSL_ROWS_STEP_WEIGHTS = 2 * WGSL_DECODE_WEIGHTS;

/**
 * Distance between the two quads a `rows` step decodes. In q4 and q4_0 each byte of a 32-weight
 * run holds weight j (low nibble) and j + 16 (high nibble), so one read gives both quads; other
 * formats read each quad on its own and take the next one.
 */
function rowsPairGap(format: string): number {
  return format === 'q4' || format === 'q4_0' ? 16 : WGSL_DECODE_WEIGHTS;
}

/**
 * Weights whose products an `f16Math` kernel sums in f16 before adding to f32: every block size
 * is a multiple of 32, and 32 int8 codes times activations of a few units stay far below 65504.
 */
export const WGSL_F16_SUM_WEIGHTS = 32;
const isTiled = (c: Knobs) => c.kernel === 'tiled';

/**
 * Sums a `rows` invocation keeps (rowsPerInvocation x M, unrolled into scalars): past this the
 * kernel spills on GPUs with 64-128 registers per invocation at full occupancy.
 */
const WGSL_ROWS_MAX_SUMS = 32;

function wgslSpace(req: Req): SearchSpace {
  const codec = codecOf(req.op.weight);
  const wpb = codec.weightsPerBlock;
  const gpu = req.device.gpu!;
  // K steps are whole weight blocks and whole decode groups of 4 (q3.5 blocks of 96 weights: 96, 192, ...).
  const bks = [...new Set([64, 32, 128].map((b) => lcm(lcm(b, wpb), WGSL_DECODE_WEIGHTS)))];
  return typedSpace(KNOBS, {
    knobs: [
      {
        name: 'kernel',
        values: req.shape.M > WGSL_GEMV_MAX_M ? ['tiled'] : gpu.features.subgroupSizes[1] <= WGSL_NARROW_SUBGROUP ? ['rows', 'gemv', 'tiled'] : ['gemv', 'rows', 'tiled'],
        doc: 'gemv (M <= 8: rows per workgroup, K split across invocations), rows (M <= 8: K walked by one invocation per row, no barriers) or tiled (output tiles in workgroup storage)',
      },
      { name: 'invocations', values: [...WORKGROUP_SIZES], doc: 'invocations per workgroup' },
      { name: 'rowsPerInvocation', values: [8, 4, 2, 1], doc: 'weight rows each invocation computes', when: isRows },
      { name: 'dot8', values: [0, 1], doc: 'int8 products with dot4I8Packed on activations quantized per block (1: q8 and q8_0, where the device has packed_4x8_integer_dot_product) or f32 (0)', when: isRows },
      // Where loads are per-lane gathers (a CPU adapter: subgroups at most 4 wide) one load and 4
      // broadcasts cost less than 4 loads; a GPU serves a same-address load to all lanes at once.
      {
        name: 'xBroadcast', values: gpu.features.subgroups ? (gpu.features.subgroupSizes[1] <= WGSL_NARROW_SUBGROUP ? [1, 0] : [0, 1]) : [0],
        doc: 'activations of the q4/q4_0 pair walk: 4 lanes of each subgroup load them and subgroupBroadcast shares them (1) or every invocation loads them (0)', when: isRows,
      },
      { name: 'f16Math', values: [0, 1], doc: 'products and short sums in f16 (1: needs the shader-f16 feature) or in f32 (0)', when: isRows },
      { name: 'rowsPerWorkgroup', values: [8, 4, 16, 2, 1], doc: 'weight rows per workgroup, sharing each staged activation chunk', when: isGemv },
      { name: 'xChunk', values: [2048, 1024, 4096, 512, 256], doc: 'activations staged in workgroup storage per pass over K', when: isGemv },
      // Only where the profile says subgroup operations exist; the kernel is then correct for every size in its range.
      { name: 'subgroups', values: gpu.features.subgroups ? [1, 0] : [0], doc: 'reduce partial sums within subgroups before workgroup storage (1) or only through workgroup storage (0)', when: isGemv },
      { name: 'bm', values: [32, 64, 16], doc: 'activation rows per workgroup tile', when: isTiled },
      { name: 'bn', values: [64, 32, 128], doc: 'weight rows per workgroup tile', when: isTiled },
      { name: 'bk', values: bks, doc: 'K per step (whole weight blocks)', when: isTiled },
      { name: 'buffers', values: [2, 1], doc: 'workgroup-storage buffers per operand (2: one barrier per K step instead of 2)', when: isTiled },
    ],
    restrictions: [
      { reason: 'the WGSL kernels write f32 outputs', allows: () => req.op.y === 'f32' },
      // From the profile (an adapter's own features when tuning one): never assumed.
      { reason: `f16 arithmetic (f16Math: 1) needs the WebGPU feature shader-f16, which ${req.device.name} lacks (gpu.features.f16)`, allows: (c) => c.f16Math !== 1 || gpu.features.f16 },
      { reason: `dot4I8Packed (dot8: 1) takes int8 weight codes: q8 and q8_0 only, not ${req.op.weight.format}`, allows: (c) => c.dot8 !== 1 || INT8_FORMATS.includes(req.op.weight.format) },
      { reason: `dot4I8Packed (dot8: 1) needs the WGSL language feature packed_4x8_integer_dot_product, which ${req.device.name} lacks (gpu.features.dot8)`, allows: (c) => c.dot8 !== 1 || gpu.features.dot8.includes('dot4I8Packed') },
      {
        reason: 'xBroadcast (1) shares the activations of the pair walk: q4 or q4_0 with an even number of blocks per row, f32 arithmetic',
        allows: (c) => !isRows(c) || c.xBroadcast !== 1 || nibblePairsFor(req.op.weight.format, req.shape.K, codec.weightsPerBlock, codec.bytesPerBlock, c.f16Math === 1) !== null,
      },
      { reason: 'dot8 and f16Math are two arithmetic paths: one at a time', allows: (c) => c.dot8 !== 1 || c.f16Math !== 1 },
      {
        reason: `xBroadcast (1) reads lanes 0..${WGSL_BROADCAST_LANES - 1} of every subgroup, and ${req.device.name}'s may be ${gpu.features.subgroupSizes[0]} wide (gpu.features.subgroupSizes)`,
        allows: (c) => !isRows(c) || c.xBroadcast !== 1 || gpu.features.subgroupSizes[0] >= WGSL_BROADCAST_LANES,
      },
      { reason: `more than ${WGSL_ROWS_MAX_SUMS} sums per invocation (rowsPerInvocation x M)`, allows: (c) => !isRows(c) || c.rowsPerInvocation * req.shape.M <= WGSL_ROWS_MAX_SUMS },
      { reason: 'more than 64 accumulators per invocation', allows: (c) => !isTiled(c) || (c.bm * c.bn) / c.invocations <= 64 },
      { reason: 'fewer outputs in a tile than invocations', allows: (c) => !isTiled(c) || c.bm * c.bn >= c.invocations },
      { reason: 'bm is not a multiple of the invocations per tile column', allows: (c) => !isTiled(c) || c.bm % (c.invocations / Math.min(c.bn, c.invocations)) === 0 },
      { reason: 'bk exceeds K', allows: (c) => !isTiled(c) || c.bk <= req.shape.K || c.bk === Math.min(...bks) },
    ],
  });
}

function wgslPlan(req: Req, config: Config): PlanBody<'wgsl-matmul'> {
  const { op, shape, device, target } = req;
  const { M, N, K } = shape;
  const codec = codecOf(op.weight);
  const rowBytes = (K / codec.weightsPerBlock) * codec.bytesPerBlock;
  const knobs = readConfig(KNOBS, config);
  const invocations = knobs.invocations;
  const buffers: OnChipBuffer[] = [];
  const weightBindingBytes = ceilDiv(N * rowBytes, 4) * 4 + 4;
  const align = WEBGPU_STORAGE_OFFSET_ALIGNMENT;
  const weightChunkBytes = Math.min(Math.floor(weightChunkLimit(device) / align) * align, ceilDiv(weightBindingBytes, align) * align);
  const weightChunks = ceilDiv(weightBindingBytes, weightChunkBytes);
  const base = { M, N, K, rowBytes, bytesPerBlock: codec.bytesPerBlock, weightsPerBlock: codec.weightsPerBlock, scaleBytes: codec.scaleBytes, invocations, weightBindingBytes, weightChunkBytes, weightChunks };
  let common: Pick<PlanBody<'wgsl-matmul'>, 'variant' | 'launch' | 'loops' | 'params'>;
  if (knobs.kernel === 'gemv') {
    const rowsPerWorkgroup = knobs.rowsPerWorkgroup;
    const xChunk = Math.min(knobs.xChunk, ceilDiv(K, WGSL_DECODE_WEIGHTS) * WGSL_DECODE_WEIGHTS);
    const subgroups = knobs.subgroups === 1;
    const minSubgroup = device.gpu!.features.subgroupSizes[0];
    const reductionSlots = subgroups ? ceilDiv(invocations, minSubgroup) : invocations;
    buffers.push({ name: 'activation chunk', space: 'shared', size: workgroupVarBytes(M * xChunk * 4), why: `${M}x${xChunk} f32 activations shared by the workgroup's rows` });
    buffers.push({
      name: 'reduction scratch', space: 'shared', size: workgroupVarBytes(reductionSlots * M * 4),
      why: subgroups ? `one partial sum per subgroup (at most ${reductionSlots}: subgroups of ${minSubgroup} or more) and activation row` : 'one partial sum per invocation and activation row (no subgroup size is assumed)',
    });
    if (subgroups) buffers.push({ name: 'subgroup slot counter', space: 'shared', size: workgroupVarBytes(4), why: 'an atomic u32 handing each subgroup its scratch slot (counted as 16 bytes, as WebGPU counts every variable)' });
    const grid: [number, number, number] = [ceilDiv(N, rowsPerWorkgroup), 1, 1];
    common = {
      variant: 'gemv',
      launch: { grid, block: [invocations, 1, 1], gridExpr: [`ceil(N / ${rowsPerWorkgroup})`, '1', '1'] },
      loops: [
        `${grid[0]} workgroups of ${rowsPerWorkgroup} rows`,
        `for k0 in [0, ${K}) step ${xChunk}: stage X chunk`,
        `  per row: ${invocations} invocations split K in groups of ${WGSL_DECODE_WEIGHTS}, reduce through ${subgroups ? 'subgroups, then ' : ''}workgroup storage`,
      ],
      params: {
        ...base, kernel: 'gemv', rowsPerWorkgroup, xChunk, xStageFloats: M * xChunk, accumulators: rowsPerWorkgroup * M,
        subgroups, reductionSlots, reductionFloats: reductionSlots * M, subgroupMinSize: subgroups ? minSubgroup : 0,
      },
    };
  } else if (knobs.kernel === 'rows') {
    const rowsPerInvocation = knobs.rowsPerInvocation;
    const perWorkgroup = invocations * rowsPerInvocation;
    const grid: [number, number, number] = [ceilDiv(N, perWorkgroup), 1, 1];
    const unscaled = op.weight.format === 'f16';
    const scaleRun = unscaled ? F16_RUN : codec.weightsPerBlock;
    const pairGap = rowsPairGap(op.weight.format);
    // Every block is a whole number of 32-weight runs (q3.5: 96 or more), so a run is whole steps.
    if (scaleRun % (2 * pairGap) !== 0) throw new InternalError(`a run of ${scaleRun} weights is not whole steps of ${2 * pairGap}`);
    const f16Math = knobs.f16Math === 1;
    const nibblePairs = nibblePairsFor(op.weight.format, K, codec.weightsPerBlock, codec.bytesPerBlock, f16Math);
    common = {
      variant: 'rows',
      launch: { grid, block: [invocations, 1, 1], gridExpr: [`ceil(N / ${perWorkgroup})`, '1', '1'] },
      loops: [
        `${grid[0]} workgroups of ${invocations} invocations, ${rowsPerInvocation} row(s) each`,
        nibblePairs
          ? `  for k0 in [0, ${K}) step ${nibblePairs.pairWeights}: a pair of blocks (${nibblePairs.pairWords} words per row, each read once), ${rowsPerInvocation} row(s) x ${M} sums of ${nibblePairs.pairSteps} x 8 weights per block, then times the block scale`
          : `  for k0 in [0, ${K}) step ${scaleRun}: ${rowsPerInvocation} row(s) x ${M} sums of ${scaleRun / WGSL_ROWS_STEP_WEIGHTS} x 8 weights (each activation load shared by the rows), then ${unscaled ? 'added' : 'times the block scale'}`,
      ],
      params: {
        ...base, kernel: 'rows', rowsPerInvocation, scaleRun, unscaled,
        pairGap, pairQuads: pairGap / WGSL_DECODE_WEIGHTS, pairSpan: 2 * pairGap, runSteps: scaleRun / WGSL_ROWS_STEP_WEIGHTS,
        nibblePairs: nibblePairs !== null, ...(nibblePairs ?? NO_PAIRS), xBroadcast: knobs.xBroadcast === 1, f16Math, f16SumWeights: WGSL_F16_SUM_WEIGHTS, f16SumSteps: WGSL_F16_SUM_WEIGHTS / WGSL_ROWS_STEP_WEIGHTS,
        dot8: knobs.dot8 === 1, int8Max: INT8_CODE_MAX, accumulators: rowsPerInvocation * M,
      },
    };
  } else {
    const { bm, bn, bk, buffers: nBuf } = knobs;
    const threadsN = Math.min(bn, invocations);
    const threadsM = invocations / threadsN;
    const tileRowBytes = (bk / codec.weightsPerBlock) * codec.bytesPerBlock;
    const tileRowWords = ceilDiv(tileRowBytes, 4);
    buffers.push({ name: 'activation tiles', space: 'shared', size: workgroupVarBytes(nBuf * bm * bk * 4), why: `${nBuf} buffer(s) of ${bm}x${bk} f32 activations` });
    buffers.push({ name: 'weight tiles', space: 'shared', size: workgroupVarBytes(nBuf * bn * tileRowWords * 4), why: `${nBuf} buffer(s) of ${bn} rows x ${bk} packed weights, each row ${tileRowBytes} bytes in ${tileRowWords} u32 words` });
    const grid: [number, number, number] = [ceilDiv(N, bn), ceilDiv(M, bm), 1];
    common = {
      variant: 'tiled',
      launch: { grid, block: [invocations, 1, 1], gridExpr: [`ceil(N / ${bn})`, `ceil(M / ${bm})`, '1'] },
      loops: [`workgroups ${grid[0]}x${grid[1]} of ${bm}x${bn} outputs`, `for k0 in [0, ${K}) step ${bk}, ${nBuf} buffer(s)`, `  ${(bm * bn) / invocations} accumulators per invocation`],
      params: {
        ...base, kernel: 'tiled', bm, bn, bk, buffers: nBuf, singleBuffer: nBuf === 1, threadsN, threadsM,
        rowsPerThread: bm / threadsM, colsPerThread: bn / threadsN, accumulators: (bm / threadsM) * (bn / threadsN),
        tileRowBytes, tileRowWords, xTileFloats: nBuf * bm * bk, wTileWords: nBuf * bn * tileRowWords, steps: ceilDiv(K, bk),
      },
    };
  }
  const weightBindings = Array.from({ length: weightChunks }, (_, i) => Math.min(weightChunkBytes, weightBindingBytes - i * weightChunkBytes));
  const bindingBytes = [M * K * dtypeBytes(op.x), ...weightBindings, M * N * 4, ...(op.epilogue.bias ? [N * 4] : []), ...(op.epilogue.residual ? [M * N * 4] : [])];
  return {
    family: 'wgsl-matmul',
    op, shape, target, device: device.name, config,
    ...common,
    buffers,
    budgets: workgroupBudgets(device, buffers, invocations, { bindingBytes, grid: common.launch.grid!, addressedBytes: weightBindingBytes }),
    // f16 arithmetic rounds as f16 activations do (and each short sum once more): the f16 tolerance.
    // dot8 rounds X per weight block (the rows kernel's scale run), judged against that rounding.
    tolerance: toleranceFor({ int8Activations: knobs.dot8 === 1 ? codec.weightsPerBlock : undefined, outF16: op.y === 'f16', inF16: op.x === 'f16' || knobs.f16Math === 1 }),
    traffic: { bytes: N * rowBytes + M * K * dtypeBytes(op.x) + M * N * dtypeBytes(op.y), flops: 2 * M * N * K },
  };
}

/** The WGSL matmul planner. */
export const wgslMatmulPlanner: PlannerOf<'wgsl-matmul'> = { family: 'wgsl-matmul', space: wgslSpace, plan: wgslPlan };
