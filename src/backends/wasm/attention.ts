import { InternalError } from '../../errors.js';
import { CPU_CACHE_LINE_BYTES } from '../../device/profile.js';
import { GGML_KV_BLOCK, KV_FORMAT_NAMES, kvRowsText } from '../../ir/attention.js';
import type { AttentionOp } from '../../ir/types.js';
import { alignUp, cpuBudgets, variantRegisters } from '../../plan/common.js';
import { cpuAttentionPlanner, kvLenText, splitPartialsText, TASK_STACK_BUFFER, taskUnitsText } from '../../plan/cpu-attention.js';
import type { CpuVariants } from '../../plan/cpu-matmul.js';
import type { PlanOf, PlannerOf } from '../../plan/types.js';
import { unusedScalesText } from '../../ops/attention.js';
import { codecOf } from '../../quant/index.js';
import { templateSet } from '../../render/templates.js';
import { EXP2_COEFFICIENTS, EXP2_MIN, F32_BIAS, F32_MANT_BITS, f32Digits } from '../exp2-poly.js';
import { HARNESS_EXIT } from '../harness.js';
import { attentionHeaderView } from '../kernel-header.js';
import type { RenderContext, RenderedKernel } from '../types.js';
import { assembleKernel } from './assemble.js';
import { wasmAttentionDeclarations } from './bindings.js';
import { dispatchView, type WorkerCall } from './dispatch.js';
import { i32Lanes } from './decode.js';
import { F16_STEP, F16_STEP_VALUES, HALF_VIEW } from './half.js';
import { BUFFER_ALIGN, MEMORY_MAX_PAGES, memoryBudget, memoryView, PAGE_BYTES, placeBuffers } from './memory.js';

/**
 * The WebAssembly renderer of CPU attention plans: one SIMD128 module (`kernel.wat`, and
 * `kernel.shared.wat` importing a shared memory for threads) doing what the C kernel does, task for
 * task: a task is (batch, KV head, query tile, KV split), or with `allHeads` (batch, query tile, KV
 * split) over every KV head, each head's rows in turn; a head's rows (queries x the GQA group) share
 * every K and V vector it dequantizes (`rowGroup` rows at a time, their accumulators in locals);
 * keys go by in tiles of `kvBlock` with an online softmax in base 2; causal tiles past a tile's
 * last query are skipped; with splits, the merge export combines the partials by log-sum-exp.
 *
 * What the C kernel keeps on its stack (scores, accumulators, row state) lives in the workspace
 * here: after the plan's workspace (Q as f32, split partials) come `WASM_ATTENTION_SLOTS` scratch
 * slots, one per thread that runs tasks at the same time; `_tasks` takes its slot's index.
 * The plan's `chunkStep` (two vectors of D per row in flight) is not used: one vector per row.
 */

type CpuAttentionPlan = PlanOf<'cpu-attention'>;

/** Threads that may run tasks at once: the scratch slots the workspace holds. */
export const WASM_ATTENTION_SLOTS = 16;

/** The most threads the loader's loadThreaded takes, and why: one scratch slot each. */
const LOADER_THREADS = { maxThreads: WASM_ATTENTION_SLOTS, maxThreadsWhy: `one of the workspace's ${WASM_ATTENTION_SLOTS} scratch slots per thread` };

/** The paths a task's per-key work takes: integer scores (Q as int8 codes) and integer P.V, one of them, or neither. */
type KeyPath = 'int' | 'intQ' | 'intPV' | 'f32';

/**
 * What loadThreaded's rounds cost, from which the plan says when a round of shares on the workers
 * pays (`loaderWorkers`). Measured on decode B=1, Hq=32, Hkv=8, Sq=1, D=128, the cache in L2/L3 as a
 * short length's is, each figure the minimum of 30-300 calls:
 * - `round`: a round's cost beyond the share it takes off, tasks(0, 2) at kv_len 1 on 2 threads less
 *   the same on 1 (2026-12-05, 2-vCPU Zen 5 VM, Node 20, shared with other jobs, load 6-20): 2 us
 *   where the worker is still spinning on a free core, 40-230 us where it waits for one, ~110 us
 *   the median of 20 such minima at load 6-10; the session before measured ~90 us for the two
 *   rounds of a split kernel at kv_len 64. A page or a model shares its cores too, so 100 us: on an
 *   idle machine a call below the thresholds gives up at most about that much.
 * - `taskPerRowValue`: a task's ns per key x query row x D value on one thread, (tasks at kv_len
 *   512 - at 1) / 511 / (32 rows x 128), by cache and by the config's `KeyPath` (qInt8 and pvInt:
 *   f32 scores cost q8 and q8_0 ~50% more a key, q4_0 ~60%; f32 P.V 2-15%). 2026-12-06, AMD EPYC
 *   VM (2 vCPUs, shared), splits 1 (docs/PERFORMANCE.md, WebAssembly attention). Prefill's rows
 *   share each K and V row's decoding, so this overstates their cost: longer calls still go to the
 *   workers, as before.
 * - `mergePerValue`: the merge's ns per output row x split x D value on one thread, 16 us for 32
 *   rows x 16 splits x 128 (q8 at kv_len 4096, every split holding keys; each split's weight
 *   computed once a row). Before that was so, 105 us: 1.6 ns.
 */
const LOADER_COST_NS = {
  round: 100_000,
  taskPerRowValue: {
    f16: { f32: 0.21 },
    q8: { int: 0.118, intQ: 0.136, intPV: 0.175, f32: 0.191 },
    q8_0: { int: 0.124, intQ: 0.13, intPV: 0.198, f32: 0.204 },
    q4_0: { int: 0.18, intQ: 0.191, intPV: 0.288, f32: 0.301 },
  } satisfies Record<AttentionOp['kvCache'], Partial<Record<KeyPath, number>>>,
  mergePerValue: 0.25,
};

/** A task's ns per key x row x D value for the plan's cache and paths (`LOADER_COST_NS.taskPerRowValue`). */
function keyCost(p: Pick<CpuAttentionPlan['params'], 'kvFormat' | 'qInt8' | 'pvInt'>): number {
  const path: KeyPath = p.qInt8 ? (p.pvInt ? 'int' : 'intQ') : p.pvInt ? 'intPV' : 'f32';
  const ns = (LOADER_COST_NS.taskPerRowValue[p.kvFormat] as Partial<Record<KeyPath, number>>)[path];
  if (ns === undefined) throw new InternalError(`no loader cost for a ${p.kvFormat} cache on the ${path} path (qInt8 ${p.qInt8}, pvInt ${p.pvInt}): the planner allows no such config`);
  return ns;
}

/**
 * When loadThreaded's rounds go to the workers (the plan's `launch.workers`). On T threads the
 * loader gives this thread ceil(units / T) of a range's units (tasks, or merged rows), so a round
 * takes the rest of its work W off this thread and costs `LOADER_COST_NS.round`: it pays where
 * W (1 - ceil(units / T) / units) >= round. The tasks' W is the call's KV positions times every
 * output row's D values (each key's share, at the config's per-key cost; a fixed-length kernel
 * reads Skv), the merge's its rows x splits x D. A range of one unit never pays: its threshold is
 * past any length (Skv + 1).
 */
export function loaderWorkers(p: Pick<CpuAttentionPlan['params'], 'kvFormat' | 'qInt8' | 'pvInt' | 'outRows' | 'D' | 'splits' | 'tasks' | 'Skv'>): NonNullable<CpuAttentionPlan['launch']['workers']> {
  const keyNs = p.outRows * p.D * keyCost(p);
  const mergeNs = p.outRows * p.splits * p.D * LOADER_COST_NS.mergePerValue;
  const offShare = (units: number, threads: number) => 1 - Math.ceil(units / threads) / units;
  const counts = Array.from({ length: LOADER_THREADS.maxThreads - 1 }, (_, i) => i + 2);
  const tasksFrom = (t: number) => (offShare(p.tasks, t) > 0 ? Math.min(p.Skv + 1, Math.ceil(LOADER_COST_NS.round / (offShare(p.tasks, t) * keyNs))) : p.Skv + 1);
  const mergeFromThreads = p.splits > 1 ? counts.find((t) => mergeNs * offShare(p.outRows, t) >= LOADER_COST_NS.round) : undefined;
  return {
    tasksFromKvLen: Object.fromEntries(counts.map((t) => [t, tasksFrom(t)])),
    ...(mergeFromThreads !== undefined ? { mergeFromThreads } : {}),
  };
}

/** f32 lanes of a SIMD128 vector, and its bytes. */
const LANES = 4;
const VEC_BYTES = 16;
const F32_BYTES = 4;
const F16_BYTES = 2;
const I16_BYTES = 2;
/** Int8-Q scores: K codes a load takes (one v128, a step), and codes each `i32x4.dot_i16x8_s` takes (one i16x8, a half). */
const INT_STEP_CODES = 16;
const INT_HALF_CODES = 8;
/** A nibble of 16 int8 lanes: its width, its mask and its zero point (q4_0's value is nibble - 8), as the templates print them. */
const NIBBLE = { bits: 4, mask16: Array(16).fill(15).join(' '), zero16: Array(16).fill(8).join(' ') };



/**
 * The CPU attention planner with the WebAssembly scratch slot (`scratchLayout`) as the plan's
 * figure for a task's working set in L2, in place of the C stack it stands for: the slot also holds
 * a zero row and, for f32 P.V on int8 V codes, every row's P.V coefficients (rowGroup x kvBlock x
 * the scale groups, f32), which the C stack does not. The plan's budgets and `kgen plan` then state
 * the bytes the kernel uses.
 */
export function wasmAttentionPlanner(variants: CpuVariants): PlannerOf<'cpu-attention'> {
  const shared = cpuAttentionPlanner(variants);
  return {
    ...shared,
    plan(req, config) {
      const body = shared.plan(req, config);
      const p = body.params;
      const slot = scratchLayout(body);
      const buffers = body.buffers.map((b) =>
        // The shared planner's task stack, which the scratch slot replaces.
        b.name !== TASK_STACK_BUFFER
          ? b
          : {
              name: 'scratch slot', space: b.space, size: slot.bytes,
              why: `a task's ${p.taskRowsAllPadded} rows of ${p.kvBlock} f32 scores, ${p.D} f32 accumulators and softmax state, a zero row${slot.size.coef ? `, the P.V coefficients (${slot.size.coef} bytes)` : ''}; one slot per thread running tasks`,
            },
      );
      const budgets = [...cpuBudgets(req.device, buffers, variantRegisters(variants, req.device, p.isa)), memoryBudget(attentionHarnessLayout(body).end)];
      return { ...body, launch: { ...body.launch, workers: loaderWorkers(p) }, buffers, budgets };
    },
  };
}

/**
 * Byte offsets (`at`) and sizes (`size`) within one scratch slot: scores (rows x kvBlock f32),
 * accumulators (rows x D f32), per row max, sum, correction (f32), visible keys (i32), Q row pointer
 * (i32), a zero row of D floats that padding rows read as their query, then (int8 V codes) a row
 * group's P.V coefficients (`pvCodesLayout`).
 */
export function scratchLayout(plan: Pick<CpuAttentionPlan, 'params'>) {
  const p = plan.params;
  const rows = p.taskRowsAllPadded;
  const pv = pvCodesLayout(plan);
  const parts = { scores: rows * p.kvBlock * F32_BYTES, acc: rows * p.D * F32_BYTES, max: rows * F32_BYTES, sum: rows * F32_BYTES, corr: rows * F32_BYTES, visible: rows * F32_BYTES, qrow: rows * F32_BYTES, zero: p.D * F32_BYTES, coef: pv ? p.rowGroup * pv.rowCoefBytes + pv.scalesBytes : 0 };
  const at: Record<keyof typeof parts, number> = { scores: 0, acc: 0, max: 0, sum: 0, corr: 0, visible: 0, qrow: 0, zero: 0, coef: 0 };
  let o = 0;
  for (const [name, bytes] of Object.entries(parts) as [keyof typeof parts, number][]) {
    at[name] = o;
    o += alignUp(bytes, BUFFER_ALIGN);
  }
  return { at, size: parts, bytes: o };
}

/**
 * Int8 Q (qInt8) as the WebAssembly scores read it: per Q row a record of its f32 scales, one per
 * qGroup values (the group's absmax / qCodeMax times scale*log2(e)), from byte 0 and its D codes
 * as i16 from byte `codesOffset`, so `i32x4.dot_i16x8_s` takes each 8 codes straight from memory (int8 codes would
 * need two widening operations per row and vector). Undefined without int8 Q.
 */
export function int8QRecords(plan: Pick<CpuAttentionPlan, 'params'>): { codesOffset: number; rowBytes: number; bytes: number } | undefined {
  const p = plan.params;
  if (!p.qInt8) return undefined;
  const codesOffset = alignUp(F32_BYTES * p.qGroups, VEC_BYTES);
  const rowBytes = alignUp(codesOffset + I16_BYTES * p.D, BUFFER_ALIGN);
  return { codesOffset, rowBytes, bytes: p.qRows * rowBytes };
}

/**
 * P.V on int8 V codes (every cache but f16): each tile first multiplies every row's probabilities by
 * each key's V scales once (the coefficients: per row, `kvBlock` keys of `groupsPadded` f32, the
 * groups rounded up to whole vectors), so the accumulate loop converts the codes to f32 without a
 * scale and takes one broadcast coefficient per row, key and chunk. A chunk is `vectors` f32x4 of V
 * (two, as the plan's pvStep allows, where 8 values never cross a scale group; else one).
 * With integer P.V (pvInt) a row's coefficients are per key pair (`pvLaneKeys` keys) one i32 of
 * the two keys' i16 codes per group, and the tile's V scales as f32 (`scalesBytes`) follow the
 * rows'. Undefined for the f16 cache (no scales).
 */
export function pvCodesLayout(plan: Pick<CpuAttentionPlan, 'params'>) {
  const p = plan.params;
  if (p.kvFormat === 'f16') return undefined;
  // Integer P.V always takes 8 values (its restrictions keep scale groups multiples of 8).
  const vectors = p.pvInt || (p.pvStep >= 2 && p.valuesPerScale % (2 * LANES) === 0) ? 2 : 1;
  const groupsPadded = Math.ceil(p.scaleGroups / LANES) * LANES;
  const keyCoefBytes = groupsPadded * F32_BYTES;
  // pvInt: per row and key pair an i32 per group (the two keys' i16 codes); the tile's f32 V scales after the rows.
  const slots = p.pvInt ? Math.ceil(p.kvBlock / p.pvLaneKeys) : p.kvBlock;
  return { vectors, width: vectors * LANES, groupsPadded, keyCoefBytes, rowCoefBytes: slots * keyCoefBytes, scalesBytes: p.pvInt ? p.kvBlock * keyCoefBytes : 0 };
}

/** What the P.V on int8 V codes (`pvCodesLayout`) prints: the layout, the quads of scale groups, the codes partial. */
function pvView(plan: CpuAttentionPlan) {
  const p = plan.params;
  const pv = pvCodesLayout(plan);
  if (!pv) return undefined;
  const blockBytes = ggmlBlockBytes(plan);
  const ggml = blockBytes > 0;
  // Each key's scale groups 4 at a time: their f16 scales gathered into the lanes of one vector
  // (lanes past the last group stay 0), widened, and times each row's probability.
  const quads = Array.from({ length: pv.groupsPadded / LANES }, (_, qd) => ({
    scalesOffset: p.rowGroup * pv.rowCoefBytes + qd * VEC_BYTES,
    lanes: Array.from({ length: LANES }, (_, l) => qd * LANES + l).filter((g) => g < p.scaleGroups).map((g, l) => ({ l, scaleOffset: kvScaleAt(plan, g).offset })),
    rows: Array.from({ length: p.rowGroup }, (_, r) => ({ coefOffset: r * pv.rowCoefBytes + qd * VEC_BYTES, sOff: r * p.kvBlock * F32_BYTES })),
  }));
  return {
    ...pv,
    scalesOffset: p.rowGroup * pv.rowCoefBytes,
    pairBytes: p.pvLaneKeys * p.positionStride * p.rowBytes,
    codeMaxText: f32Digits(p.pvCodeMax),
    lowHalfMask: Array(LANES).fill(0xffff).join(' '),
    // i16 lanes of two keys' codes a and b, interleaved as (a, b) pairs: values 0-3, then 4-7.
    pairsLow: [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23].join(' '),
    pairsHigh: [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31].join(' '),
    two: pv.vectors === 2,
    chunks: p.D / pv.width,
    chunkBytes: pv.width * F32_BYTES,
    groupBytesShift: Math.log2(F32_BYTES),
    quads,
    // pvInt's coefficient pass: for each row, each quad of groups' scales (at `scalesOffset` from the
    // key's) times the row's probability into its codes (at `coefOffset` from the pair's).
    codeRows: Array.from({ length: p.rowGroup }, (_, r) => ({ r, sOff: r * p.kvBlock * F32_BYTES, quads: quads.map((q) => ({ coefOffset: q.rows[r]!.coefOffset, scalesOffset: q.scalesOffset })) })),
    codesPartial: `attention/codes/${p.kvFormat}.wat`,
    codes16Partial: `attention/codes16/${p.kvFormat}.wat`,
    scaleBase: kvScaleAt(plan, 0).base,
    // Where chunk value v's codes are (attention/pv_chunk): kgen q8 rows are one run of codes,
    // q8_0's blocks one run each after the scale, q4_0's two (low nibbles, then high).
    block: ggml ? GGML_KV_BLOCK : p.D,
    blockBytes,
    codesOffset: ggml ? F16_BYTES : 0,
    run: p.kvFormat === 'q4_0' ? GGML_KV_BLOCK / 2 : ggml ? GGML_KV_BLOCK : p.D,
    nibbleBits: NIBBLE.bits,
    nibbleMask16: NIBBLE.mask16,
    nibbleZero16: NIBBLE.zero16,
    rows: Array.from({ length: p.rowGroup }, (_, r) => ({ r, coefOffset: r * pv.rowCoefBytes, sOff: r * p.kvBlock * F32_BYTES, accOff: r * p.D * F32_BYTES, accOff1: r * p.D * F32_BYTES + VEC_BYTES, corrOff: r * F32_BYTES, visOff: r * F32_BYTES })),
  };
}

/**
 * The workspace of the WebAssembly kernel: Q as prepare leaves it (scaled f32, or with int8 Q the
 * records of `int8QRecords`), the split partials, with splits the merge's weights (per output row,
 * each split's 2^(max - the row's max), f32: computed once a row, not once per vector of D), then
 * the scratch slots.
 */
export function wasmAttentionWorkspace(plan: Pick<CpuAttentionPlan, 'params'>) {
  const p = plan.params;
  const scratch = scratchLayout(plan);
  const q16 = int8QRecords(plan);
  const qBytes = q16?.bytes ?? p.qFloats * F32_BYTES;
  const partialsOffset = alignUp(qBytes, BUFFER_ALIGN);
  const weightsOffset = alignUp(partialsOffset + p.partialFloats * F32_BYTES, BUFFER_ALIGN);
  const weightsBytes = p.splits > 1 ? p.outRows * p.splits * F32_BYTES : 0;
  const scratchBase = alignUp(weightsOffset + weightsBytes, BUFFER_ALIGN);
  return { scratch, q16, qBytes, partialsOffset, weightsOffset, weightsBytes, scratchBase, bytes: scratchBase + WASM_ATTENTION_SLOTS * scratch.bytes };
}

/** Bytes of each buffer a call reads or writes (the loader's `sizes`); scales are 0 without a kgen q8 cache. */
export function attentionSizes(plan: Pick<CpuAttentionPlan, 'op' | 'params'>) {
  const op = plan.op;
  const p = plan.params;
  const kvRows = p.B * p.Hkv * p.Skv;
  const scales = kvRows * p.scalesPerRow * F16_BYTES;
  const qo = p.B * p.Hq * p.Sq * p.D;
  return {
    q: qo * (op.q === 'f16' ? F16_BYTES : F32_BYTES),
    k: kvRows * p.rowBytes,
    k_scales: scales,
    v: kvRows * p.rowBytes,
    v_scales: scales,
    o: qo * (op.o === 'f16' ? F16_BYTES : F32_BYTES),
    workspace: wasmAttentionWorkspace(plan).bytes,
  };
}

/** Byte offsets of the harness's buffers in its memory (placeBuffers: aligned, none at 0). */
export function attentionHarnessLayout(plan: Pick<CpuAttentionPlan, 'op' | 'params'>) {
  const sizes = attentionSizes(plan);
  return { sizes, ...placeBuffers(sizes) };
}

/** Bytes of a ggml KV block ({ f16 d; codes }: q8_0, q4_0); 0 for the caches without blocks. */
function ggmlBlockBytes(plan: CpuAttentionPlan): number {
  const f = plan.params.kvFormat;
  return f === 'q8_0' || f === 'q4_0' ? codecOf({ format: f, groupSize: GGML_KV_BLOCK }).bytesPerBlock : 0;
}

/**
 * Where a KV row's scale of group g is: kgen q8 keeps a row's scales in their own array (the
 * local $sr points at the row's), ggml blocks start with theirs ($kr points at the row).
 */
function kvScaleAt(plan: CpuAttentionPlan, g: number): { base: '$sr' | '$kr'; offset: number } {
  return plan.params.kvFormat === 'q8' ? { base: '$sr', offset: g * F16_BYTES } : { base: '$kr', offset: g * ggmlBlockBytes(plan) };
}

/** What the KV partial (templates/wasm/attention/kv/) of the op's format prints. */
function kvView(plan: CpuAttentionPlan) {
  const p = plan.params;
  const blockBytes = ggmlBlockBytes(plan);
  return {
    kvPartial: `attention/kv/${p.kvFormat}.wat`,
    f16VecBytes: LANES * F16_BYTES,
    vecsPerScale: p.valuesPerScale / LANES,
    blockBytes,
    scaleBytes: F16_BYTES,
    halfBlock: GGML_KV_BLOCK / 2,
    nibbleBits: NIBBLE.bits,
    nibbleMask4: [15, 15, 15, 15].join(' '),
    nibbleZero4: [8, 8, 8, 8].join(' '),
  };
}

/**
 * The f16 cache's scores and P.V 8 values at a time (`F16_STEP`, where D is a multiple of 8; else 4
 * by the KV partial): no unpacking, and the pointer and loop work of one step serve 8 values.
 * prepare writes Q's f32 rows in the steps' even/odd order, and P.V puts each row's accumulators in
 * it when it loads them (one shuffle a vector, per step and tile, not per key) and back when it
 * stores them. Undefined for the other caches.
 */
function f16StepView(plan: CpuAttentionPlan) {
  const p = plan.params;
  if (p.kvFormat !== 'f16' || p.D % F16_STEP_VALUES !== 0) return undefined;
  return {
    ...F16_STEP,
    stepBytes: F16_STEP_VALUES * F16_BYTES,
    stepValues: F16_STEP_VALUES,
    rowBytes: p.D * F16_BYTES,
    qStepBytes: F16_STEP_VALUES * F32_BYTES,
    accBytesPerKvByte: F32_BYTES / F16_BYTES,
    evenLanes: i32Lanes([0, 2, 4, 6]),
    oddLanes: i32Lanes([1, 3, 5, 7]),
    lowLanes: i32Lanes([0, 4, 1, 5]),
    highLanes: i32Lanes([2, 6, 3, 7]),
  };
}

/** Dot products of 8 K codes (halves of a load) a row takes at a time between two writes of `$pin`. */
const INT_CHUNK_HALVES = 4;

/**
 * The int8-Q scores of one key (qInt8), unrolled over D as chunks of up to 4 halves (8 K codes
 * each) within one sum group: a K scale group, or where that holds several Q scale groups (qGroup
 * values), each of them. A chunk's `loads` bring its steps' 16 K codes each into two i16
 * registers (`regs`: values 0-7 and 8-15; steps alternate between $k0/$k1 and $k2/$k3), read as
 * the format stores them (q4_0's second step of a block reuses the first one's bytes in $t); then
 * each row adds its `dots` (a register times its 8 Q codes at `qOffset` in the row's record) to its
 * i32 sums of the group ($i, started by the group's first chunk) and writes them to `$pin`; at
 * `groupEnd` the group's K scale (f16, at `scaleOffset` from `scaleBase`) times each row's Q scale
 * (f32, at `qScaleOffset` in its record) times its sums is added to its f32 accumulator. Groups are whole halves: the plan's restrictions keep them a
 * multiple of 16 values or half of one.
 */
function intScoresView(plan: CpuAttentionPlan) {
  const p = plan.params;
  const q16 = int8QRecords(plan);
  if (!q16) return undefined;
  const blockBytes = ggmlBlockBytes(plan);
  const regsOf = (step: number) => [`$k${(2 * step) % INT_CHUNK_HALVES}`, `$k${((2 * step) % INT_CHUNK_HALVES) + 1}`];
  const loadOf = (step: number) => {
    const v0 = step * INT_STEP_CODES;
    const [lo, hi] = regsOf(step);
    if (p.kvFormat === 'q4_0') {
      // A block's 16 bytes: its values 0-15 the low nibbles, 16-31 the high ones (two steps).
      const high = v0 % GGML_KV_BLOCK >= GGML_KV_BLOCK / 2;
      return { lo, hi, offset: Math.floor(v0 / GGML_KV_BLOCK) * blockBytes + F16_BYTES, nibbles: true, high, reuse: high };
    }
    const offset = p.kvFormat === 'q8_0' ? Math.floor(v0 / GGML_KV_BLOCK) * blockBytes + F16_BYTES + (v0 % GGML_KV_BLOCK) : v0;
    return { lo, hi, offset, nibbles: false, high: false, reuse: false };
  };
  const halvesPerGroup = p.valuesPerScale / INT_HALF_CODES;
  // Sum groups: K's scale groups, split at Q's (qGroup values; K's groups are multiples or divisors of it).
  const halvesPerSum = Math.min(halvesPerGroup, p.qGroup / INT_HALF_CODES);
  const chunks = [];
  let loaded = -1;
  for (let h = 0; h < p.D / INT_HALF_CODES; ) {
    const g = Math.floor(h / halvesPerSum);
    const groupEnd = (g + 1) * halvesPerSum;
    const end = Math.min(groupEnd, h + INT_CHUNK_HALVES);
    const loads = [];
    for (let step = Math.floor(h / 2); step <= Math.floor((end - 1) / 2); step++) {
      if (step > loaded) loads.push(loadOf((loaded = step)));
    }
    const dots = Array.from({ length: end - h }, (_, i) => ({ k: regsOf(Math.floor((h + i) / 2))[(h + i) % 2]!, qOffset: q16.codesOffset + I16_BYTES * INT_HALF_CODES * (h + i), first: i === 0 && h === g * halvesPerSum }));
    const kGroup = Math.floor(h / halvesPerGroup), qScaleOffset = F32_BYTES * Math.floor((h * INT_HALF_CODES) / p.qGroup);
    chunks.push({ loads, dots, groupEnd: end === groupEnd ? { scaleOffset: kvScaleAt(plan, kGroup).offset, qScaleOffset, first: g === 0 } : undefined });
    h = end;
  }
  return {
    chunks,
    scaleBase: kvScaleAt(plan, 0).base,
    codesOffset: q16.codesOffset,
    rowBytes: q16.rowBytes,
    nibbleMask16: NIBBLE.mask16,
    nibbleZero16: NIBBLE.zero16,
    nibbleBits: NIBBLE.bits,
    codeMaxText: f32Digits(p.qCodeMax),
  };
}

function moduleView(plan: CpuAttentionPlan, ctx: RenderContext, shared: boolean) {
  const op = plan.op;
  const p = plan.params;
  const fn = ctx.symbol ?? `kgen_${op.name}`;
  const ws = wasmAttentionWorkspace(plan);
  const s = ws.scratch.at;
  const oBytes = op.o === 'f16' ? F16_BYTES : F32_BYTES;
  // The planner gives WebAssembly 4 lanes (WASM_VARIANTS has no f32Lanes): only a plan made elsewhere differs.
  if (p.lanes !== LANES) throw new InternalError(`a WebAssembly attention plan has ${LANES} f32 lanes per vector, not ${p.lanes}`);
  const splat = (x: string) => [x, x, x, x].join(' ');
  const f16x8 = f16StepView(plan);
  return {
    ...p,
    ...attentionHeaderView(plan, ctx),
    ...kvView(plan),
    int: intScoresView(plan),
    pv: pvView(plan),
    // Integer P.V's tiles crossing a causal diagonal (prefill; a single query's tiles never do) go
    // to a second function taking each row's V scale over the keys it sees, not the tile's: a
    // masked key's NaN or infinite scale leaves earlier queries' O as it was, and the other tiles
    // keep the one scale.
    pvDiagonal: p.pvInt && p.causal && p.Sq > 1,
    f16x8,
    pinGlobal: Boolean(p.qInt8) || f16x8 !== undefined,
    fn,
    kvFormatName: KV_FORMAT_NAMES[p.kvFormat],
    kvLayoutText: kvRowsText(op, plan.shape),
    memory: memoryView(shared),
    half: HALF_VIEW,
    qF16: op.q === 'f16',
    oF16: op.o === 'f16',
    split: p.splits > 1,
    // With a run-time KV length (the $kvlen argument), the positions read and each split's share
    // of them (ceil(kv_len / splits) in whole splitKeysUnit, $ck) are the call's; else the plan's constants.
    kvEnd: p.runtimeKvLength ? '(local.get $kvlen)' : `(i32.const ${p.Skv})`,
    splitKeys: p.runtimeKvLength ? '(local.get $ck)' : `(i32.const ${p.chunkKeys})`,
    splitsLess1: p.splits - 1,
    splitKeysUnit: p.splitKeysUnit,
    splitKeysUnitLess1: p.splitKeysUnit - 1,
    lanes: LANES,
    laneList: Array.from({ length: LANES }, (_, l) => ({ l, offset: l * oBytes })),
    vecBytes: VEC_BYTES,
    f32Bytes: F32_BYTES,
    f16Bytes: F16_BYTES,
    i16Bytes: I16_BYTES,
    qValueBytes: op.q === 'f16' ? F16_BYTES : F32_BYTES,
    qRowBytes: p.D * (op.q === 'f16' ? F16_BYTES : F32_BYTES),
    oBytes,
    oVecBytes: LANES * oBytes,
    dBytes: p.D * F32_BYTES,
    oRowBytes: p.D * oBytes,
    kvBlockBytes: p.kvBlock * F32_BYTES,
    touchOffsets: Array.from({ length: Math.ceil(p.rowBytes / CPU_CACHE_LINE_BYTES) }, (_, i) => i * CPU_CACHE_LINE_BYTES),
    positionRowBytes: p.positionStride * p.rowBytes,
    scaleRowBytes: p.scalesPerRow * F16_BYTES,
    kvRowsPerBatch: p.Hkv * p.Skv,
    bhTiles: p.B * p.headTasks * p.qTiles,
    partialsOffset: ws.partialsOffset,
    weightsOffset: ws.weightsOffset,
    splitsBytes: p.splits * F32_BYTES,
    partialRowBytes: (p.D + 2) * F32_BYTES,
    partialTaskBytes: p.taskRowsPadded * (p.D + 2) * F32_BYTES,
    partialAccOffset: 2 * F32_BYTES,
    partialSumOffset: F32_BYTES,
    accRowsBytes: ws.scratch.size.acc,
    rowGroupAccBytes: p.rowGroup * p.D * F32_BYTES,
    rowGroupScoreBytes: p.rowGroup * p.kvBlock * F32_BYTES,
    rowGroupRowBytes: p.rowGroup * F32_BYTES,
    groupRows: Array.from({ length: p.rowGroup }, (_, r) => ({ r, acc: `$a${r}`, qOff: r * F32_BYTES, sOff: r * p.kvBlock * F32_BYTES, accOff: r * p.D * F32_BYTES, accOff1: r * p.D * F32_BYTES + VEC_BYTES, corrOff: r * F32_BYTES })),
    scratch: { ...s, base: ws.scratchBase, bytes: ws.scratch.bytes, slots: WASM_ATTENTION_SLOTS },
    workspaceTotal: ws.bytes,
    scaleLog2Text: f32Digits(p.scaleLog2),
    exp2: {
      coefficients: [...EXP2_COEFFICIENTS].reverse().slice(1).map((c) => splat(f32Digits(c))),
      highest: splat(f32Digits(EXP2_COEFFICIENTS.at(-1)!)),
      one: splat('1'),
      min: splat(f32Digits(EXP2_MIN)),
      bias: splat(String(F32_BIAS)),
      mantBits: F32_MANT_BITS,
    },
  };
}

/**
 * What a worker of loadThreaded runs: `<fn>_tasks(workspace, k, kScales, v, vScales, o, taskBegin,
 * taskEnd, slot[, kvLen])` (kvLen with a run-time KV length) and `<fn>_merge(workspace, o, rowBegin, rowEnd)`.
 */
function workerCalls(p: CpuAttentionPlan['params']): readonly WorkerCall[] {
  return [
    { name: 'tasks', args: p.runtimeKvLength ? 10 : 9 },
    { name: 'merge', args: 4 },
  ];
}

/** What the ABI says about kv_len: the CPU targets' text, and the loader's check before the kernel's. */
function kvLenDoc(p: CpuAttentionPlan['params']): string {
  return `${kvLenText(p)} (the loader throws a RangeError first)`;
}

/** kernel.wat (and kernel.shared.wat), the loader and its types, and the harness of a CPU attention plan. */
export function renderWasmAttention(plan: CpuAttentionPlan, ctx: RenderContext): RenderedKernel {
  const templates = templateSet('wasm');
  const fn = ctx.symbol ?? `kgen_${plan.op.name}`;
  const p = plan.params;
  const layout = attentionHarnessLayout(plan);
  const files: Record<string, string> = {
    'kernel.wat': templates.render('attention/kernel.wat', moduleView(plan, ctx, false)),
    'kernel.shared.wat': templates.render('attention/kernel.wat', moduleView(plan, ctx, true)),
  };
  const kvLen = { runtimeKvLength: p.runtimeKvLength, kvLenMin: p.kvLenMin, Skv: p.Skv, Sq: p.Sq, causal: p.causal };
  const workers = plan.launch.workers;
  // wasmAttentionPlanner always states it: only a plan made by another planner lacks it.
  if (!workers) throw new InternalError('a WebAssembly attention plan states when its loader uses the workers (launch.workers); make it with the wasm target\'s planner');
  const loaderView = { fn, tasksFromKvLenJson: JSON.stringify(workers.tasksFromKvLen), mergeFromThreadsJson: JSON.stringify(workers.mergeFromThreads ?? null), version: ctx.version, command: ctx.command, tasks: p.tasks, taskUnits: taskUnitsText(p), outRows: p.outRows, split: p.splits > 1, slots: WASM_ATTENTION_SLOTS, sizesJson: JSON.stringify(layout.sizes), ...kvLen, ...dispatchView(workerCalls(p), LOADER_THREADS) };
  files['kernel.mjs'] = templates.render('attention/kernel.mjs', loaderView);
  files['kernel-worker.mjs'] = templates.render('loader/worker.mjs', { ...loaderView, workerCallsText: '`tasks` in its own scratch slot, `merge` over output rows' });
  files['kernel.d.mts'] = wasmAttentionDeclarations(plan, { fn, version: ctx.version, sizes: layout.sizes, slots: WASM_ATTENTION_SLOTS, ...LOADER_THREADS });
  const ptrs = 'i32 byte offsets into the imported memory';
  const unusedScales = unusedScalesText(plan.op.kvCache);
  const ws = wasmAttentionWorkspace(plan);
  const rendered: RenderedKernel = {
    files,
    binaries: () => assembleKernel(rendered),
    mainFile: 'kernel.wat',
    harnessFiles: {
      'harness.mjs': templates.render('attention/harness.mjs', { fn, exitJson: JSON.stringify(HARNESS_EXIT), layoutJson: JSON.stringify(layout), tasks: p.tasks, outRows: p.outRows, slots: WASM_ATTENTION_SLOTS, pageBytes: PAGE_BYTES, maxPages: MEMORY_MAX_PAGES, ...kvLen }),
    },
    templateHash: templates.hash,
    workspaceBytes: ws.bytes,
    build: 'assembled in-process by kgen (wabt, features simd and threads): kernel.wasm from kernel.wat, kernel.shared.wasm (a shared memory import, for threads) from kernel.shared.wat; kernel.mjs loads them',
    abi: [
      {
        symbol: `${fn}_workspace_size`,
        signature: '() -> i32',
        doc: `bytes of workspace (${ws.bytes}): ${ws.q16 ? `${ws.qBytes} of Q as int8 codes (per row a record of ${ws.q16.rowBytes} bytes: its f32 scales, one per ${p.qGroup} values, then from byte ${ws.q16.codesOffset} its codes as i16)` : `${ws.qBytes} of Q as scaled f32`}, from byte ${ws.partialsOffset} ${splitPartialsText(p)}${ws.weightsBytes ? `, from byte ${ws.weightsOffset} the merge's weights (${p.splits} f32 per output row)` : ''}, then from byte ${ws.scratchBase} ${WASM_ATTENTION_SLOTS} scratch slots of ${ws.scratch.bytes} bytes (scores, accumulators and row state of the task a thread runs)`,
      },
      { symbol: `${fn}_prepare`, signature: '(q, workspace: i32) -> ()', doc: `${p.qInt8 ? `quantizes Q to int8 codes (a scale per ${p.qGroup} values)` : 'converts and scales Q'} once per call; ${ptrs}` },
      {
        symbol: `${fn}_tasks`,
        signature: p.runtimeKvLength ? '(workspace, k, k_scales, v, v_scales, o, task_begin, task_end, slot, kv_len: i32) -> i32' : '(workspace, k, k_scales, v, v_scales, o, task_begin, task_end, slot: i32) -> ()',
        doc: `tasks [task_begin, task_end) of ${p.tasks} (${taskUnitsText(p)}) in scratch slot \`slot\` (0..${WASM_ATTENTION_SLOTS - 1}); disjoint ranges may run in different threads, each with its own slot; ${ptrs}${p.runtimeKvLength ? `; ${kvLenDoc(p)}` : ''}`,
      },
      { symbol: `${fn}_merge`, signature: '(workspace, o, row_begin, row_end: i32) -> ()', doc: `output rows [row_begin, row_end) of ${p.outRows}, after every task; merges the split partials by log-sum-exp (nothing to do with one split); ${ptrs}` },
      {
        symbol: fn,
        signature: p.runtimeKvLength ? '(q, k, k_scales, v, v_scales, o, workspace, kv_len: i32) -> i32' : '(q, k, k_scales, v, v_scales, o, workspace: i32) -> ()',
        doc: `prepare + every task (slot 0) + merge, on this thread; ${ptrs}${unusedScales ? `; k_scales, v_scales: ${unusedScales} (offset 0)` : ''}${p.runtimeKvLength ? `; ${kvLenDoc(p)}` : ''}`,
      },
    ],
  };
  return rendered;
}

/** What a package's usage snippet prints about an attention kernel: its shape, arrays and KV format. */
export function attentionUsageView(plan: CpuAttentionPlan, symbol: string) {
  const op = plan.op;
  const p = plan.params;
  return {
    symbol,
    B: p.B, Hq: p.Hq, Hkv: p.Hkv, Sq: p.Sq, Skv: p.Skv, D: p.D,
    qArray: op.q === 'f16' ? 'Uint16Array' : 'Float32Array',
    oArray: op.o === 'f16' ? 'Uint16Array' : 'Float32Array',
    qoCount: p.B * p.Hq * p.Sq * p.D,
    hasScales: p.scalesPerRow > 0,
    runtimeKvLength: p.runtimeKvLength,
    kvLenMin: p.kvLenMin,
    kvText: `${KV_FORMAT_NAMES[p.kvFormat]}, ${kvRowsText(plan.op, plan.shape)}`,
  };
}
