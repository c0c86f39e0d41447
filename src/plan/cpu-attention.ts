import { kvLayoutOf, kvRowFormat, kvRowStrides } from '../ir/attention.js';
import type { AttentionOp, AttentionShape, KvLayout } from '../ir/types.js';
import { attentionTraffic } from './attention-common.js';
import { ceilDiv, cpuBudgets, CPU_WORK_REGISTERS, toleranceFor } from './common.js';
import type { CpuVariants } from './cpu-matmul.js';
import type { Config, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, Restriction, SearchSpace } from './types.js';

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
  /** Vectors of D taken together per row (each its own accumulators, for more independent FMA chains). */
  chunkStep: number;
  /** One KV row (D values of one position of one head) as stored; scales in their own array (q8). */
  rowBytes: number;
  scalesPerRow: number;
  valuesPerScale: number;
  /** Row of (b, head, position) = b * Hkv * Skv + head * headStride + position * positionStride. */
  headStride: number;
  positionStride: number;
  kvLayout: KvLayout;
  /**
   * Task order: splits outermost (every head of a KV chunk, one after another, while the chunk is
   * in cache: positions x heads rows), else heads outermost (each head's rows are contiguous).
   */
  splitsOuter: boolean;
  /** Queries per task, query tiles, rows per task (queries x group) and rows padded to rowGroup. */
  qBlock: number;
  qTiles: number;
  taskRows: number;
  taskRowsPadded: number;
  /** Rows computed together in registers, sharing each K and V vector. */
  rowGroup: number;
  kvBlock: number;
  /** KV splits per (batch, head, query tile) and the keys each covers (the last may have fewer). */
  splits: number;
  chunkKeys: number;
  tasks: number;
  /** Output rows (B * Hq * Sq): the merge pass's units. */
  outRows: number;
  causal: boolean;
  /** Query i sees keys j < i + causalOffset + 1. */
  causalOffset: number;
  /** The softmax scale times log2(e): scores are kept in base 2. */
  scaleLog2: number;
  /** Workspace: Q as scaled f32, then (splits > 1) each task's partial rows of D + 2 floats. */
  qFloats: number;
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
 * tiles already give the threads work, does not.
 */
export function defaultSplits(req: Req): number {
  const { B, Hkv, Sq, Skv } = req.shape;
  const base = B * Hkv * ceilDiv(Sq, defaultQBlock(Sq));
  const wanted = ceilDiv(2 * (req.device.cpu?.threads ?? 1), base);
  return Math.max(1, Math.min(wanted, Math.floor(Skv / MIN_SPLIT_KEYS)));
}

function taskStackBytes(rowsPadded: number, kvBlock: number, D: number): number {
  // scores, accumulators, and per row: max, sum, correction, visible keys, Q and O pointers.
  return 4 * rowsPadded * (kvBlock + D) + rowsPadded * (4 * 4 + 2 * 8);
}

function cpuSpace(req: Req, variants: CpuVariants): SearchSpace {
  const { Sq, Skv, D, Hq, Hkv } = req.shape;
  const group = Hq / Hkv;
  const splits = [...new Set([defaultSplits(req), 1, 2, 4, 8, 16, 32, 64])].filter((s) => s <= Skv);
  const qBlocks = Sq <= CPU_DECODE_MAX_SQ ? [...new Set([Sq, 1])] : [16, 8, 32, 4, 64, 1];
  const restrictions: Restriction[] = [
    { reason: 'qBlock exceeds Sq', allows: (c) => (c.qBlock as number) <= Sq },
    { reason: 'rowGroup exceeds the rows of a task (qBlock x group)', allows: (c) => c.rowGroup === 1 || (c.rowGroup as number) <= (c.qBlock as number) * group },
    { reason: 'splits leave chunks shorter than kvBlock', allows: (c) => c.splits === 1 || ceilDiv(Skv, c.splits as number) >= Math.min(c.kvBlock as number, Skv) },
    { reason: 'D is not a whole number of vectors', allows: (c) => D % lanesOf(variants, c.isa as string) === 0 },
    {
      reason: 'q8 scale groups hold no whole number of vectors',
      allows: (c) => req.op.kvCache !== 'q8' || req.op.kvGroupSize! % lanesOf(variants, c.isa as string) === 0,
    },
    {
      reason: `a task's scores and accumulators exceed ${ATTENTION_TASK_STACK_MAX} bytes of stack`,
      allows: (c) => taskStackBytes(ceilDiv((c.qBlock as number) * group, c.rowGroup as number) * (c.rowGroup as number), Math.min(c.kvBlock as number, Skv), D) <= ATTENTION_TASK_STACK_MAX,
    },
  ];
  return {
    knobs: [
      { name: 'isa', values: variants.of(req.device), doc: variants.doc },
      { name: 'qBlock', values: qBlocks, doc: 'queries per task; with the GQA group, the rows that share each K/V load' },
      { name: 'splits', values: splits, doc: `KV sequence chunks per task row block, merged by log-sum-exp (first: from Skv and the device's threads)` },
      { name: 'kvBlock', values: [64, 128, 32, 256], doc: 'keys per tile of the online softmax' },
      { name: 'rowGroup', values: [8, 4, 16, 2, 1], doc: 'rows computed together in registers, sharing each K and V vector' },
    ],
    restrictions,
  };
}

function cpuPlan(req: Req, config: Config, variants: CpuVariants): PlanBody<'cpu-attention'> {
  const { op, shape, device } = req;
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const isa = config.isa as string;
  const group = Hq / Hkv;
  const lanes = lanesOf(variants, isa);
  const row = kvRowFormat(op, D);
  const layout = kvLayoutOf(op);
  const { headStride, positionStride } = kvRowStrides(layout, shape);
  const qBlock = config.qBlock as number;
  const qTiles = ceilDiv(Sq, qBlock);
  const rowGroup = config.rowGroup as number;
  const taskRows = qBlock * group;
  const taskRowsPadded = ceilDiv(taskRows, rowGroup) * rowGroup;
  const kvBlock = Math.min(config.kvBlock as number, Skv);
  const splits = config.splits as number;
  const chunkKeys = ceilDiv(Skv, splits);
  const tasks = B * Hkv * qTiles * splits;
  const qFloats = B * Hq * Sq * D;
  const partialFloats = splits > 1 ? tasks * taskRowsPadded * (D + 2) : 0;
  const stack = taskStackBytes(taskRowsPadded, kvBlock, D);
  // Two vectors of D per row when D holds an even number and 2 x rowGroup accumulators, rowGroup
  // broadcast probabilities and the work registers fit; else one.
  const chunks = D / lanes;
  const chunkStep = chunks % 2 === 0 && 3 * rowGroup + CPU_WORK_REGISTERS <= (device.cpu?.vectorRegisters ?? 16) ? 2 : 1;
  const buffers: OnChipBuffer[] = [
    { name: 'accumulators', space: 'registers', size: chunkStep * rowGroup, why: `${chunkStep} vector(s) per row of a row group of ${rowGroup}` },
    { name: 'work registers', space: 'registers', size: CPU_WORK_REGISTERS, why: 'K/V vectors, dequantization and exponentials' },
    { name: 'scores and accumulators', space: 'l2', size: stack, why: `${taskRowsPadded} rows of ${kvBlock} f32 scores and ${D} f32 accumulators` },
    { name: 'K/V tile', space: 'l2', size: 2 * kvBlock * (row.rowBytes + 2 * row.scalesPerRow), why: `${kvBlock} keys and values as stored` },
  ];
  const scale = op.scale ?? 1 / Math.sqrt(D);
  return {
    family: 'cpu-attention',
    op, shape, target: req.target, device: device.name, config,
    variant: splits > 1 ? 'split_kv' : Sq <= CPU_DECODE_MAX_SQ ? 'decode' : 'flash',
    launch: { rows: tasks },
    loops: [
      `prepare: Q[${B},${Hq},${Sq},${D}] to f32 times scale*log2(e) (once per call)`,
      `for task in ${B}x${Hkv}x${qTiles}x${splits} (batch, KV head, query tile of ${qBlock}, split of ${chunkKeys} keys): ${taskRows} rows = ${qBlock} queries x ${group} heads`,
      `  for j0 in the split's keys${op.causal ? ' up to the tile\'s last visible key' : ''} step ${kvBlock}`,
      `    scores: each K row dequantized in registers once per ${rowGroup} rows; ${op.causal ? 'causal mask on diagonal tiles; ' : ''}online softmax (base 2)`,
      `    accumulate: each V vector dequantized once per ${rowGroup} rows`,
      splits > 1 ? `merge: ${B * Hq * Sq} output rows, ${splits} partials each, by log-sum-exp` : 'output: accumulators / sum, written by the task',
    ],
    buffers,
    budgets: cpuBudgets(device, buffers),
    tolerance: toleranceFor({ actQuant: false, outF16: op.o === 'f16', inF16: op.q === 'f16' }),
    traffic: attentionTraffic(op, shape),
    params: {
      B, Hq, Hkv, Sq, Skv, D, group, isa,
      kvFormat: op.kvCache,
      lanes,
      chunks,
      chunkStep,
      rowBytes: row.rowBytes,
      scalesPerRow: row.scalesPerRow,
      valuesPerScale: row.valuesPerScale,
      headStride, positionStride,
      kvLayout: layout,
      splitsOuter: layout === 'positions_heads',
      qBlock, qTiles, taskRows, taskRowsPadded, rowGroup, kvBlock, splits, chunkKeys, tasks,
      outRows: B * Hq * Sq,
      causal: op.causal,
      causalOffset: Skv - Sq,
      scaleLog2: scale * Math.LOG2E,
      qFloats,
      partialFloats,
      workspaceBytes: 4 * (qFloats + partialFloats),
      taskStackBytes: stack,
    },
  };
}

/** The CPU attention planner of a target whose variants are `variants`. */
export function cpuAttentionPlanner(variants: CpuVariants): PlannerOf<'cpu-attention'> {
  return { family: 'cpu-attention', space: (req) => cpuSpace(req, variants), plan: (req, config) => cpuPlan(req, config, variants) };
}
