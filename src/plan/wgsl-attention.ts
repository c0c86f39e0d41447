import { GGML_KV_BLOCK, kvRowFormat, softmaxScale } from '../ir/attention.js';
import type { AttentionOp, AttentionShape } from '../ir/types.js';
import { attentionTraffic, GPU_KV_SPLITS, kvLayout, kvLengthParams, q8GroupOfFours, SPLITK_MAX_SQ, type KvRowParams } from './attention-common.js';
import { ceilDiv, dtypeBytes, readConfig, toleranceFor, typedSpace } from './common.js';
import { WORKGROUP_SIZES, workgroupBudgets, workgroupVarBytes } from './wgsl-common.js';
import type { Config, OnChipBuffer, PlanBody, PlannerOf, PlanRequestFor, Restriction, SearchSpace } from './types.js';

/**
 * WGSL attention plans, in WebGPU's vocabulary. Both kernels run one tile loop
 * (templates/wgsl/attention/tile_loop.hbs): a workgroup owns `rows` query rows (pre-scaled by
 * scale x log2(e), f32, in workgroup storage), stages `keys` K and V rows per step in workgroup
 * storage as stored (u32 words of f16, int8 codes or ggml blocks, and the q8 scales beside them),
 * dequantizes them in registers, keeps per-row online-softmax statistics in workgroup storage and
 * the output accumulators in registers (vec4s of D, spread over the invocations). No subgroup
 * operations: every reduction goes through workgroup storage, so any subgroup size works.
 * - splitk_decode (Sq <= SPLITK_MAX_SQ): the rows are the query heads of one GQA group x Sq (so
 *   each K/V tile is loaded once for the group); `splits` workgroups along the KV sequence each
 *   write their rows' (max, sum, unnormalized output) to a workspace, and a second dispatch (the
 *   merge entry point) combines the splits by log-sum-exp.
 * - flash_prefill: `br` query rows of one head per workgroup, key tiles of `bc`; with `causal`
 *   the loop stops at the tile holding the workgroup's last diagonal key (later tiles are never
 *   loaded) and only keys past a row's diagonal are masked.
 */

type Dims = { B: number; Hq: number; Hkv: number; Sq: number; Skv: number; D: number };

/** What both kernels print: the shape, KV format and layout, tile sizes and the grid. */
type CommonParams = Dims & KvRowParams & {
  group: number;
  causal: boolean;
  /** scale x log2(e): scores are kept in base 2 (exp2). */
  scaleLog2: number;
  /** Skv - Sq: query i sees keys j <= i + causalOffset (with a run-time length kv_len - Sq). */
  causalOffset: number;
  /**
   * The kernel takes kv_len, the positions a call reads (the first kv_len of each head's Skv, the
   * capacity), from kvLenMin to Skv, in a uniform buffer (op.kvLength 'runtime').
   */
  runtimeKvLength: boolean;
  kvLenMin: number;
  /** Bytes of one ggml block (34 for q8_0, 18 for q4_0; 0 otherwise) and the values in half a q4_0 block. */
  blockBytes: number;
  halfBlock: number;
  /** u32 words one staged row (values) and its scales take in workgroup storage. */
  slotWords: number;
  scaleSlotWords: number;
  /** Query rows per workgroup, keys per tile, invocations. */
  rows: number;
  keys: number;
  invocations: number;
  /** vec4 accumulators of D per invocation (rows x D / 4 spread over the invocations). */
  quadsPerInvocation: number;
  dQuads: number;
  gridX: number;
  gridY: number;
  gridZ: number;
  /** Bytes of each binding (rounded up to words). */
  qBytes: number;
  kvBytes: number;
  kvScaleBytes: number;
  oBytes: number;
};

export type WgslAttentionParams =
  | (CommonParams & {
      kernel: 'splitk_decode';
      kvSplit: number;
      kvBlock: number;
      /**
       * Workgroups along the KV sequence and keys per split (a multiple of kvBlock) at Skv; with a
       * run-time length each call's splits take ceil(kv_len / splits) keys rounded up to kvBlock,
       * and workgroups past kv_len write a neutral partial.
       */
      splits: number;
      splitKeys: number;
      /** Query rows of one KV head (group x Sq) and the workgroups they are spread over along y. */
      rowSpace: number;
      rowGroups: number;
      /** Floats of one partial record (max, sum, D accumulators), and the workspace's bytes. */
      recordFloats: number;
      workspaceBytes: number;
      /** The merge: invocations per workgroup (one workgroup per output row). */
      mergeInvocations: number;
      mergeGridX: number;
      mergeGridY: number;
    })
  | (CommonParams & { kernel: 'flash_prefill'; br: number; bc: number; qTiles: number });

declare module './types.js' {
  interface PlanFamilies {
    'wgsl-attention': { op: AttentionOp; shape: AttentionShape; params: WgslAttentionParams };
  }
}

type Req = PlanRequestFor<AttentionOp, AttentionShape>;

/** The knobs of each kernel's space, by type. */
const DECODE_KNOBS = { kvSplit: 'number', kvBlock: 'number', invocations: 'number' } as const;
const PREFILL_KNOBS = { br: 'number', bc: 'number', invocations: 'number' } as const;

/** Invocations of the merge dispatch (each handles pairs of D of one output row). */
const MERGE_INVOCATIONS = 64;

/** Most bytes of f32 query rows one decode workgroup holds (a larger GQA group x Sq is split along y). */
const DECODE_QUERY_BYTES = 4096;

function formatRestrictions(req: Req): Restriction[] {
  const { op, shape } = req;
  return [
    { reason: 'D is not a multiple of 4 (values are dequantized four at a time)', allows: () => shape.D % 4 === 0 },
    q8GroupOfFours(op),
  ];
}

function wgslSpace(req: Req): SearchSpace {
  if (req.shape.Sq <= SPLITK_MAX_SQ) {
    return typedSpace(DECODE_KNOBS, {
      knobs: [
        { name: 'kvSplit', values: [...GPU_KV_SPLITS], doc: 'partitions of the KV sequence, one workgroup each, merged in a second pass' },
        { name: 'kvBlock', values: [32, 16, 64, 8], doc: 'keys staged in workgroup storage per step (8: f16 rows of D = 256 within 16 KiB)' },
        { name: 'invocations', values: [...WORKGROUP_SIZES], doc: 'invocations per workgroup' },
      ],
      restrictions: [
        ...formatRestrictions(req),
        { reason: 'kvSplit leaves partitions shorter than kvBlock', allows: (c) => c.kvSplit === 1 || req.shape.Skv / c.kvSplit >= c.kvBlock },
      ],
    });
  }
  return typedSpace(PREFILL_KNOBS, {
    knobs: [
      { name: 'br', values: [16, 32, 8, 4], doc: 'query rows per workgroup' },
      { name: 'bc', values: [16, 32, 8, 4], doc: 'keys per inner tile' },
      { name: 'invocations', values: [...WORKGROUP_SIZES], doc: 'invocations per workgroup' },
    ],
    restrictions: [
      ...formatRestrictions(req),
      { reason: 'br exceeds Sq (a smaller br covers it)', allows: (c) => c.br / 2 < req.shape.Sq || c.br === 4 },
    ],
  });
}

const roundWords = (bytes: number) => ceilDiv(bytes, 4) * 4;

function wgslPlan(req: Req, config: Config): PlanBody<'wgsl-attention'> {
  const { op, shape, device, target } = req;
  const { B, Hq, Hkv, Sq, Skv, D } = shape;
  const group = Hq / Hkv;
  const decode = Sq <= SPLITK_MAX_SQ;
  const runtime = op.kvLength === 'runtime';
  // Each kernel's knobs; `in` tells them apart below (kvBlock and kvSplit: decode, br and bc: prefill).
  const knobs = decode ? readConfig(DECODE_KNOBS, config) : readConfig(PREFILL_KNOBS, config);
  const invocations = knobs.invocations;
  const keys = 'kvBlock' in knobs ? knobs.kvBlock : knobs.bc;
  const rowSpace = decode ? group * Sq : Sq;
  const rows = 'br' in knobs ? knobs.br : Math.min(rowSpace, Math.max(1, Math.floor(DECODE_QUERY_BYTES / (4 * D))));

  const f = kvRowFormat(op, D);
  const ggml = op.kvCache === 'q8_0' || op.kvCache === 'q4_0';
  const kvScaleRowBytes = 2 * f.scalesPerRow;
  const slotWords = ceilDiv(f.rowBytes, 4);
  const scaleSlotWords = ceilDiv(kvScaleRowBytes, 4);
  const layout = kvLayout(op, shape);
  const kvRows = B * Hkv * Skv;
  const qoValues = B * Hq * Sq * D;

  const buffers: OnChipBuffer[] = [
    { name: 'query rows', space: 'shared', size: workgroupVarBytes(rows * D * 4), why: `${rows} rows x ${D} as f32, pre-scaled by scale x log2(e)` },
    { name: 'K/V tiles', space: 'shared', size: 2 * workgroupVarBytes(keys * slotWords * 4), why: `K and V: ${keys} rows of ${slotWords} u32 words as stored (${f.rowBytes} bytes)` },
    ...(scaleSlotWords ? [{ name: 'K/V scales', space: 'shared' as const, size: 2 * workgroupVarBytes(keys * scaleSlotWords * 4), why: `K and V: ${keys} rows of ${f.scalesPerRow} f16 scales` }] : []),
    { name: 'scores', space: 'shared', size: workgroupVarBytes(rows * keys * 4), why: `${rows} x ${keys} f32 scores, then probabilities, of the current tile` },
    { name: 'row statistics', space: 'shared', size: workgroupVarBytes(3 * rows * 4), why: `running max, sum and rescale factor of ${rows} rows` },
  ];
  const dQuads = D / 4;
  const common = {
    B, Hq, Hkv, Sq, Skv, D,
    group,
    causal: op.causal,
    scaleLog2: softmaxScale(op, D) * Math.LOG2E,
    causalOffset: Skv - Sq,
    ...kvLengthParams(op, shape),
    kvLayout: layout.name,
    kvBatchRows: layout.batchRows,
    kvHeadRows: layout.headRows,
    kvPosRows: layout.posRows,
    kvRowBytes: f.rowBytes,
    kvScaleRowBytes,
    kvGroup: f.valuesPerScale || D,
    blockBytes: ggml ? f.rowBytes / (D / GGML_KV_BLOCK) : 0,
    halfBlock: GGML_KV_BLOCK / 2,
    slotWords,
    scaleSlotWords,
    rows, keys, invocations,
    quadsPerInvocation: ceilDiv(rows * dQuads, invocations),
    dQuads,
    qBytes: roundWords(qoValues * dtypeBytes(op.q)),
    kvBytes: roundWords(kvRows * f.rowBytes),
    kvScaleBytes: roundWords(kvRows * kvScaleRowBytes),
    oBytes: roundWords(qoValues * dtypeBytes(op.o)),
  };
  const block: [number, number, number] = [invocations, 1, 1];
  const bindingBytes = [common.qBytes, common.kvBytes, common.kvBytes, ...(scaleSlotWords ? [common.kvScaleBytes, common.kvScaleBytes] : []), common.oBytes];
  const base = {
    family: 'wgsl-attention' as const,
    op, shape, target, device: device.name, config,
    buffers,
    tolerance: toleranceFor({ outF16: op.o === 'f16', inF16: op.q === 'f16' }),
    traffic: attentionTraffic(op, shape),
  };
  if ('kvSplit' in knobs) {
    const kvSplit = knobs.kvSplit;
    const kvBlock = keys;
    const splitKeys = ceilDiv(ceilDiv(Skv, kvSplit), kvBlock) * kvBlock;
    const splits = ceilDiv(Skv, splitKeys);
    const rowGroups = ceilDiv(rowSpace, rows);
    const recordFloats = D + 2;
    const workspaceBytes = 4 * B * Hkv * splits * rowSpace * recordFloats;
    const grid: [number, number, number] = [splits, Hkv * rowGroups, B];
    const mergeGrid: [number, number, number] = [Hq * Sq, B, 1];
    const use = { bindingBytes: [...bindingBytes, workspaceBytes], grid: [Math.max(grid[0], mergeGrid[0]), Math.max(grid[1], mergeGrid[1]), grid[2]] as [number, number, number], addressedBytes: Math.max(...bindingBytes, workspaceBytes) };
    return {
      ...base,
      budgets: workgroupBudgets(device, buffers, invocations, use),
      variant: 'splitk_decode',
      launch: {
        grid, block,
        gridExpr: [`ceil(Skv / ${splitKeys})`, `Hkv * ${rowGroups}`, 'B'],
        workspaceBytes,
        secondPass: { what: 'merge the splits by log-sum-exp', grid: mergeGrid, block: [MERGE_INVOCATIONS, 1, 1], gridExpr: ['Hq * Sq', 'B', '1'] },
      },
      loops: [
        `workgroups ${splits} splits of ${runtime ? `ceil(kv_len / ${splits}) keys rounded up to ${kvBlock} (${splitKeys} at kv_len ${Skv}; empty ones write max -1e30, sum 0)` : `${splitKeys} keys`} x ${Hkv} KV heads${rowGroups > 1 ? ` x ${rowGroups} row groups` : ''} x ${B}`,
        `  ${rows} query rows (${group} heads sharing the KV head x Sq=${Sq}); for j0 in split step ${kvBlock}: stage K/V, scores, online softmax (base 2), acc += P.V`,
        '  write (max, sum, acc) per row to the workspace',
        `merge: ${Hq * Sq} x ${B} workgroups, one output row each: O = sum_s acc_s 2^(m_s - M) / sum_s l_s 2^(m_s - M)`,
      ],
      params: {
        ...common, kernel: 'splitk_decode', kvSplit, kvBlock, splits, splitKeys, rowSpace, rowGroups, recordFloats, workspaceBytes,
        mergeInvocations: MERGE_INVOCATIONS, mergeGridX: mergeGrid[0], mergeGridY: mergeGrid[1], gridX: grid[0], gridY: grid[1], gridZ: grid[2],
      },
    };
  }
  const br = rows;
  const bc = keys;
  const qTiles = ceilDiv(Sq, br);
  const grid: [number, number, number] = [qTiles, Hq, B];
  const use = { bindingBytes, grid, addressedBytes: Math.max(...bindingBytes) };
  return {
    ...base,
    budgets: workgroupBudgets(device, buffers, invocations, use),
    variant: 'flash_prefill',
    launch: { grid, block, gridExpr: [`ceil(Sq / ${br})`, 'Hq', 'B'], workspaceBytes: 0 },
    loops: [
      `workgroups ${qTiles} query tiles of ${br} rows x ${Hq} heads x ${B}`,
      `  for j0 in [0, ${op.causal ? "the tile's last diagonal key" : runtime ? 'kv_len' : String(Skv)}) step ${bc}: stage K/V, scores${op.causal ? " (keys past a row's diagonal masked)" : ''}, online softmax (base 2), acc += P.V`,
      '  O = acc / sum',
    ],
    params: { ...common, kernel: 'flash_prefill', br, bc, qTiles, gridX: grid[0], gridY: grid[1], gridZ: grid[2] },
  };
}

/** The WGSL attention planner. */
export const wgslAttentionPlanner: PlannerOf<'wgsl-attention'> = { family: 'wgsl-attention', space: wgslSpace, plan: wgslPlan };
