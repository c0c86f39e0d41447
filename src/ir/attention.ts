import { ACT_DTYPES, bool, fail, identifier, noUnknownKeys, oneOf, positiveInt, positiveNumber, type Json } from './fields.js';
import type { AttentionOp, AttentionShape, KvCacheFormat, KvLayout, OpIr } from './types.js';
import { ATTENTION_DIMS } from './types.js';

/** The KV cache formats and row orders an attention op may name. */
export const KV_FORMATS: readonly KvCacheFormat[] = ['f16', 'q8', 'q8_0', 'q4_0'];
export const KV_LAYOUTS: readonly KvLayout[] = ['heads_positions', 'positions_heads'];
/** Whether a kernel reads Skv positions every call ('fixed') or a length each call passes ('runtime'). */
export const KV_LENGTHS = ['fixed', 'runtime'] as const;

/** Values per ggml block (q8_0, q4_0) along D. */
export const GGML_KV_BLOCK = 32;

/** Values the GPU kernels dequantize at a time: a kgen q8 scale group must hold whole runs of them. */
export const Q8_KV_DEQUANT_VALUES = 4;

/** Most values one attention tensor (K, V, Q or O) may hold: keeps byte sizes and int64 offsets exact. */
const MAX_TENSOR_VALUES = 2 ** 40;

/** The factor scores are multiplied by before the softmax: the op's `scale`, else 1/sqrt(D). */
export function softmaxScale(op: AttentionOp, D: number): number {
  return op.scale ?? 1 / Math.sqrt(D);
}

/**
 * The row order of an op's KV cache: as the IR names it, else kgen's heads x positions for f16 and
 * q8 and llama.cpp's positions x heads for its q8_0 and q4_0 blocks (so its cache reads as is).
 */
export function kvLayoutOf(op: AttentionOp): KvLayout {
  return op.kvLayout ?? (op.kvCache === 'q8_0' || op.kvCache === 'q4_0' ? 'positions_heads' : 'heads_positions');
}

/**
 * How one KV row (the D values of one position of one head) is stored. Invariants: a row is
 * `rowBytes` bytes with no padding; `scalesPerRow` f16 scales per row live in a separate array
 * (kgen q8 only, 0 otherwise); a ggml row is D/32 blocks end to end.
 */
export interface KvRowFormat {
  rowBytes: number;
  scalesPerRow: number;
  /** Values per scale (q8 group, ggml block); 0 for f16. */
  valuesPerScale: number;
}

export function kvRowFormat(op: AttentionOp, D: number): KvRowFormat {
  switch (op.kvCache) {
    case 'f16':
      return { rowBytes: 2 * D, scalesPerRow: 0, valuesPerScale: 0 };
    case 'q8':
      return { rowBytes: D, scalesPerRow: D / op.kvGroupSize!, valuesPerScale: op.kvGroupSize! };
    case 'q8_0':
      return { rowBytes: (D / GGML_KV_BLOCK) * 34, scalesPerRow: 0, valuesPerScale: GGML_KV_BLOCK };
    case 'q4_0':
      return { rowBytes: (D / GGML_KV_BLOCK) * 18, scalesPerRow: 0, valuesPerScale: GGML_KV_BLOCK };
  }
}

/**
 * The lengths a call may pass as kv_len (op.kvLength 'runtime'): at least one key, and with causal
 * masking at least Sq (query 0 sees kv_len - Sq + 1 keys); at most the capacity Skv.
 */
export function kvLengthRange(op: AttentionOp, shape: AttentionShape): { min: number; max: number } {
  return { min: op.causal ? shape.Sq : 1, max: shape.Skv };
}

/** The KV cache's extents in its row order (the last, D, within a row) and the order's name, for usage text. */
export function kvCacheDims(op: AttentionOp, s: AttentionShape): { order: string; dims: number[] } {
  return kvLayoutOf(op) === 'heads_positions'
    ? { order: 'heads x positions', dims: [s.B, s.Hkv, s.Skv, s.D] }
    : { order: 'positions x heads', dims: [s.B, s.Skv, s.Hkv, s.D] };
}

/** How kernel headers and usage text name each KV cache format. */
export const KV_FORMAT_NAMES: Readonly<Record<KvCacheFormat, string>> = { f16: 'f16', q8: 'kgen q8', q8_0: 'ggml q8_0', q4_0: 'ggml q4_0' };

/** The KV cache's rows in its order, e.g. "heads x positions rows [1,8,4096]", for kernel headers. */
export function kvRowsText(op: AttentionOp, s: AttentionShape): string {
  const { order, dims } = kvCacheDims(op, s);
  return `${order} rows [${dims.slice(0, 3).join(',')}]`;
}

/**
 * Where KV row (b, head, position) is, in rows from the start of K (or V), for a layout: row =
 * b * Hkv * Skv + head * headStride + position * positionStride. Skv is the capacity: a call that
 * reads kv_len < Skv positions (op.kvLength 'runtime') reads the first kv_len of each head's.
 */
export function kvRowStrides(layout: KvLayout, shape: AttentionShape): { headStride: number; positionStride: number } {
  return layout === 'heads_positions' ? { headStride: shape.Skv, positionStride: 1 } : { headStride: 1, positionStride: shape.Hkv };
}

function validateAttention(obj: Json, path: string): AttentionOp {
  noUnknownKeys(obj, path, ['kind', 'name', 'q', 'kvCache', 'kvGroupSize', 'kvLayout', 'o', 'causal', 'scale', 'kvLength']);
  const name = identifier(obj, path);
  const q = oneOf(obj, 'q', path, ACT_DTYPES, 'f16');
  const o = oneOf(obj, 'o', path, ACT_DTYPES, 'f16');
  const kvCache = oneOf(obj, 'kvCache', path, KV_FORMATS, 'f16');
  const causal = bool(obj, 'causal', path, true);
  const op: AttentionOp = { kind: 'attention', name, q, kvCache, o, causal };
  if (kvCache === 'q8') {
    op.kvGroupSize = obj.kvGroupSize === undefined ? 32 : positiveInt(obj.kvGroupSize, `${path}.kvGroupSize`, 1024);
  } else if (obj.kvGroupSize !== undefined) {
    fail(`${path}.kvGroupSize`, `only a q8 KV cache has a choice of scale groups (${kvCache === 'f16' ? 'f16 has none' : `ggml ${kvCache} blocks are 32`})`, `no kvGroupSize with kvCache "${kvCache}"`);
  }
  if (obj.kvLayout !== undefined) op.kvLayout = oneOf(obj, 'kvLayout', path, KV_LAYOUTS);
  if (obj.scale !== undefined) op.scale = positiveNumber(obj.scale, `${path}.scale`);
  // "fixed" is the default and leaves the op (and its IR hash) as without the field.
  if (obj.kvLength !== undefined && oneOf(obj, 'kvLength', path, KV_LENGTHS) === 'runtime') op.kvLength = 'runtime';
  return op;
}

/**
 * What to do when D does not hold whole KV scale groups: a q8 cache takes another group size, which
 * only an IR file can set (the catalog's ops have 32); ggml's blocks are fixed at 32.
 */
function kvBlockHint(kvCache: AttentionOp['kvCache'], D: number): string {
  // The largest power of two from the catalog's 32 down that divides D and that every target's
  // kernels take (whole runs of Q8_KV_DEQUANT_VALUES; the CPU's vectors hold 4, 8 or 16 lanes).
  let group: number | undefined;
  for (let g = GGML_KV_BLOCK; g >= Q8_KV_DEQUANT_VALUES && group === undefined; g /= 2) if (D % g === 0) group = g;
  const otherCache = 'or a cache format whose blocks divide D (an f16 cache has none)';
  if (kvCache !== 'q8') return `ggml ${kvCache} blocks are always 32 values: use head dims divisible by 32, ${otherCache}`;
  return group
    ? `write the op as an IR file with "kvGroupSize": ${group} (it divides D=${D}) and pass it with --ir (docs/ir.md), ${otherCache}`
    : `no scale group of ${Q8_KV_DEQUANT_VALUES} or more values divides D=${D}: use an f16 cache (op attention_f16)`;
}

/** The attention op's IR: grouped-query attention over a KV cache. */
export const attentionIr: OpIr<AttentionOp, AttentionShape> = {
  kind: 'attention',
  dims: ATTENTION_DIMS,
  exampleShape: 'B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128',
  validate: validateAttention,
  checkShape(op, shape, field, shapeFail) {
    if (shape.Hq % shape.Hkv !== 0) shapeFail(`${field} Hq`, `Hq=${shape.Hq} is not a multiple of Hkv=${shape.Hkv}`, 'Hq divisible by Hkv (grouped-query attention)');
    const block = op.kvCache === 'q8' ? op.kvGroupSize! : op.kvCache === 'f16' ? 1 : GGML_KV_BLOCK;
    if (shape.D % block !== 0) {
      shapeFail(`${field} D`, `D=${shape.D} is not a multiple of the ${op.kvCache} KV ${op.kvCache === 'q8' ? 'group' : 'block'} size ${block}`, `D divisible by ${block}`,
        kvBlockHint(op.kvCache, shape.D));
    }
    if (op.causal && shape.Sq > shape.Skv) shapeFail(`${field} Sq`, `Sq=${shape.Sq} exceeds Skv=${shape.Skv}`, 'Sq <= Skv for causal attention');
    // Each dimension is capped on its own; their products are what buffers and int64 offsets hold.
    for (const [what, dims] of [['K and V', [shape.B, shape.Hkv, shape.Skv, shape.D]], ['Q and O', [shape.B, shape.Hq, shape.Sq, shape.D]]] as const) {
      const values = dims.reduce((a, d) => a * BigInt(d), 1n); // exact where a double would round
      if (values > BigInt(MAX_TENSOR_VALUES)) shapeFail(field, `${what} would hold ${values} values each`, `at most 2^40 (${MAX_TENSOR_VALUES}) values per tensor`, 'use fewer heads, positions or batches per kernel');
    }
  },
};
