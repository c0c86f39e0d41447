import type { EpilogueActivation, WeightFormatName } from '../../ir/types.js';
import { wasmLoaderDeclarations } from './bindings.js';
import { configInUse } from '../../plan/index.js';
import { ACT_BLOCK_TAIL, actCodesText, cpuMatmulPlanner, I16_PAIR_PRODUCTS, type CpuVariants } from '../../plan/cpu-matmul.js';
import { I16_MAX, INT8_CODE_MAX } from '../../plan/common.js';
import type { PlanOf, PlannerOf } from '../../plan/types.js';
import { FORMATS } from '../../quant/index.js';
import { Q35_LOOKUP_A, Q35_LOOKUP_B, Q35_MAX_MAGNITUDE } from '../../quant/q35.js';
import { commentText } from '../../render/comment-text.js';
import { templateSet } from '../../render/templates.js';
import { FORMAT_NAMES } from '../c-family.js';
import { HARNESS_EXIT } from '../harness.js';
import type { RenderContext, RenderedKernel } from '../types.js';
import { assembleKernel } from './assemble.js';
import { dispatchView, LOADER_MAX_THREADS, type WorkerCall } from './dispatch.js';
import { chunkDecode, i32Lanes, lanes, q35AllFast, Q35_DECODE_CONSTANTS, WASM_SCHEME, type WasmScheme } from './decode.js';
import { F16_STEP, F16_STEP_VALUES, HALF_VIEW } from './half.js';
import { MEMORY_MAX_PAGES, memoryBudget, memoryView, PAGE_BYTES, placeBuffers } from './memory.js';
import { RELAXED_DOT } from './probe.js';
import { InternalError } from '../../errors.js';

type CpuMatmulPlan = PlanOf<'cpu-matmul'>;

/**
 * The WebAssembly renderer of CPU matmul plans: one WebAssembly text module per instruction level,
 * `kernel.wat` (SIMD128: `i32x4.dot_i16x8_s` on the even and odd bytes of i16 lanes) and, for the
 * integer formats, `kernel.relaxed.wat` (the relaxed dot products). Both read the packed weight
 * bytes the C kernels read and export the C kernel's functions (`_workspace_size`, `_prepare`,
 * `_rows` and the whole call) over an imported memory, pointers being byte offsets in it.
 *
 * Exactness of the relaxed module: the relaxed dot product is the same on every engine only when
 * every byte of its second operand is in [0, 127]: q4 and q4_0 nibbles as stored (0..15) with
 * 8 x (the activation block's int8 sum, which prepare stores) subtracted once per block, summed in
 * i16 lanes within a block; q3.5 takes |x| as that operand and w x sign(x) (one table lookup at the
 * index with all four bits flipped where x < 0, the tables being point-symmetric) as the other;
 * q8 and q8_0 (whose bytes may be -128) split into their low 7 bits and their sign bit
 * (w = (w & 127) - 128 (w >>> 7)), two dot products. `i8x16.relaxed_swizzle` only ever sees
 * indices below 16, where it is defined the same everywhere.
 */

/** Instruction levels of the WebAssembly target: SIMD128 runs everywhere, relaxed only where the probe passes. */
export const WASM_LEVELS = ['simd128', 'relaxed'] as const;
export type WasmLevel = (typeof WASM_LEVELS)[number];

/**
 * The levels a plan may prefer for weights of `format`, the default first (the plan's `isa` knob;
 * the tuner measures both). The preferred level is what the loader takes where the probe allows it;
 * the other module still ships, for `level` to force. Defaults by measurement (docs/PERFORMANCE.md,
 * x86-64 without AVX-VNNI): q4 and q4_0 gain from relaxed (one relaxed i16 dot per 16 nibbles,
 * 1.5x SIMD128 in L2); q3.5's relaxed module (one dot per vector, the sign moved onto the lookup)
 * measured 1.25x SIMD128's speed; q8 and q8_0 need two relaxed dots per vector (low 7 bits and
 * sign), which costs more than it saves where V8 has no single instruction for it, so they default
 * to SIMD128. f16 weights have no integer dot product: SIMD128 only.
 */
export function levelPreference(format: WeightFormatName | undefined): WasmLevel[] {
  if (format === undefined || format === 'f16') return ['simd128'];
  return WASM_SCHEME[format] === 'int8' ? ['simd128', 'relaxed'] : ['relaxed', 'simd128'];
}

/** The level a plan's output prefers (its `isa` knob). */
export function preferredLevel(plan: CpuMatmulPlan): WasmLevel {
  const isa = plan.params.isa;
  if (!(WASM_LEVELS as readonly string[]).includes(isa)) throw new InternalError(`a WebAssembly plan's isa is a level (${WASM_LEVELS.join(', ')}), not ${isa}`);
  return isa as WasmLevel;
}

/**
 * The file each level's module text is written to (the binary takes `.wasm`), for a plain memory
 * import and for a shared one (threads: workers computing row ranges over one memory). The two
 * differ only in the import; a shared memory needs cross-origin isolation in a browser.
 */
export const LEVEL_FILE: Record<WasmLevel, { plain: string; shared: string }> = {
  simd128: { plain: 'kernel.wat', shared: 'kernel.shared.wat' },
  relaxed: { plain: 'kernel.relaxed.wat', shared: 'kernel.relaxed.shared.wat' },
};


/** q4 and q4_0 store each weight as nibble = level + 8 (docs/formats.md). */
const NIBBLE_ZERO = 8;
const F32_BYTES = 4;
const F16_BYTES = 2;

/** e^x in f64 for the silu and gelu epilogues: Taylor terms after range reduction by ln 2. */
const EXP_TERMS = 11;
const EXP = {
  terms: EXP_TERMS,
  lo: -700,
  hi: 700,
  log2e: Math.LOG2E,
  ln2: Math.LN2,
  // Horner from the last term: p = 1 + p * r / k for k = terms .. 1.
  coefficients: Array.from({ length: EXP_TERMS }, (_, i) => 1 / (EXP_TERMS - i)),
  bias: 1023,
  mantBits: 52,
};

/** Each epilogue activation as WebAssembly text on the f32 local $v (GELU in its tanh form, as the reference). */
const ACTIVATION_WAT: Record<EpilogueActivation, string> = {
  none: ';; no activation',
  silu: '(local.set $v (f32.div (local.get $v) (f32.add (f32.const 1) (call $exp (f32.neg (local.get $v))))))',
  gelu:
    '(local.set $v (f32.mul (f32.mul (f32.const 0.5) (local.get $v)) (f32.sub (f32.const 2) (f32.div (f32.const 2) (f32.add (f32.const 1) (call $exp (f32.mul (f32.const 1.5957691216) ' +
    '(f32.add (local.get $v) (f32.mul (f32.const 0.044715) (f32.mul (local.get $v) (f32.mul (local.get $v) (local.get $v))))))))))))',
};

/** The largest nibble code (0..15). */
const NIBBLE_MAX = 15;
/** Bits of a nibble: a packed byte's high nibble is its bits 4-7. */
const NIBBLE_BITS = 4;

/** Bits of an i16 lane, and its mask in an i32 lane. */
const I16_BITS = 16;
const I16_LANE_MASK = 0xffff;

/**
 * The largest |i16 lane| the unsigned relaxed dot reaches over one activation block: each chunk
 * of 32 weights adds two i16 dots of 2 products each per lane. Must stay within i16, since the
 * kernels sum a block's dots in i16 lanes before widening them.
 */
function nibbleI16Bound(actChunks: number, actCodeMax: number): number {
  const bound = nibbleLaneProducts(actChunks) * actCodeMax * NIBBLE_MAX;
  if (bound > I16_MAX) throw new InternalError(`${actChunks} chunks per activation block overflow the i16 sums of the unsigned relaxed dot (${bound})`);
  return bound;
}

/** Products one i16 lane of a row's block sum adds: per chunk two relaxed dots of 2 products each. */
function nibbleLaneProducts(actChunks: number): number {
  return actChunks * 2 * 2;
}

/**
 * The largest |i16 lane| of four rows' block sums taken to one i16 pair per row (the transposing
 * sum's two steps in i16) less the code offset's share of the activation sum: a lane then adds
 * SCALE_LANES row lanes' products of (code - offset) x activation. The unsigned sums wrap there,
 * but the corrected value fits, so i16 arithmetic (modulo 2^16) gives it exactly.
 */
function nibbleI16QuadBound(actChunks: number, actCodeMax: number): number {
  return SCALE_LANES * nibbleLaneProducts(actChunks) * actCodeMax * Math.max(NIBBLE_ZERO, NIBBLE_MAX - NIBBLE_ZERO);
}

/**
 * The even/odd SIMD128 dot: `i32x4.dot_i16x8_s` on the bytes of each i16 lane taken apart, the
 * even byte (lane bits 0-7) and the odd byte (bits 8-15), with every product scaled by 2^8 so that
 * each side needs one instruction: signed weight bytes as w_even << 8 (a 16-bit shift) and
 * w_odd << 8 (a mask), against x_even and x_odd sign-extended (shared by all rows). Nibble codes
 * take one instruction each from the 16-bit lane as loaded (bits 0-3 weight 2k, 4-7 weight 16 + 2k,
 * 8-11 weight 2k + 1, 12-15 weight 17 + 2k): c << 0, c << 4 and c << 8 by masks (0x000f, 0x00f0,
 * 0x0f00), the top nibble by a logical shift right by 12 (c << 0), against x << 8, x << 4 (a shift
 * left by 8 and an arithmetic shift right by 4), x and x << 8 (mask 0xff00); the activation side is
 * shared by all rows. The block's i32 sum is then exactly 2^8 x the dot product: |products| <=
 * 2^8 x 128 x 127 and at most 64 per lane keep it below 2^31, so the kernel shifts it back (exact)
 * before converting.
 */
const EVEN_ODD = {
  byteBits: 8,
  evenNibble: Array(8).fill(0x000f).join(' '),
  oddNibble: Array(8).fill(0x0f00).join(' '),
  /** The even byte's high nibble (weight 16 + 2k) in place, i.e. times 2^4; its activation is x << 4. */
  evenHighNibble: Array(8).fill(0x00f0).join(' '),
  evenHighXShift: 4,
  /** The odd byte's high nibble (weight 17 + 2k) shifted down to bits 0-3; its activation is x << 8. */
  oddHighShift: 12,
  // 0xff00 as a signed i16 lane.
  oddByte: Array(8).fill(-256).join(' '),
};

/**
 * Byte indices of the shuffles that sum four i32x4 vectors e0..e3 into one vector of their lane
 * sums (lane r = e_r[0] + e_r[1] + e_r[2] + e_r[3]): (e0, e1) and (e2, e3) take their 64-bit halves
 * apart and add them, then the even and odd i32 lanes of the two results. x86 has one instruction
 * for each (punpcklqdq, punpckhqdq, shufps).
 */
const TRANSPOSE = { low64: i32Lanes([0, 1, 4, 5]), high64: i32Lanes([2, 3, 6, 7]), even32: i32Lanes([0, 2, 4, 6]), odd32: i32Lanes([1, 3, 5, 7]) };

/**
 * Whether negating a q3.5 lookup value is flipping all four bits of its index (both tables): true
 * for point-symmetric tables, LOOKUP[parity << 3 | level] = TABLE[2 level + parity] and
 * TABLE[15 - k] = -TABLE[k]. Then w x sign(x) is one table lookup at index ^ (x < 0 ? 15 : 0).
 */
const Q35_INDEX_FLIP = 15;
function q35SignByIndex(): boolean {
  return [Q35_LOOKUP_A, Q35_LOOKUP_B].every((t) => t.every((v, i) => t[i ^ Q35_INDEX_FLIP] === -v));
}

/** How one level's kernels take a scheme's weights: decode, activation preparation, dot and its block sum. */
interface KernelPath {
  decodePartial: string;
  xprepPartial: string;
  dotPartial: string;
  /** What the dot accumulates, for the kernel's comment. */
  dotText: string;
  /** The nibble codes are unsigned (0..15): the block sum less codeOffset x the activation sum. */
  correct: boolean;
  /** The block's dots are summed in i16 lanes (at most this), widened once per block. */
  i16Bound?: number;
  /** Unsigned codes summed in i16: the bound of four rows' corrected i16 pair sums (nibbleI16QuadBound). */
  i16QuadBound?: number;
  /** The block's i32 sums are 2^dotShift x the dot product (the even/odd dot). */
  dotShift: number;
  /** q3.5: the decode looks its indices up in the tables (else the dot does, with the sign). */
  q35Lookup: boolean;
  /** Prepare leaves |x| and the sign record (Q35_SIGN_RECORD_BYTES) for the kernels to load. */
  signRecord?: boolean;
  /** The two halves' relaxed dots of a vector are added in i16 before one widening (CpuMatmulParams.i16PairSums). */
  pairSums?: boolean;
}

/**
 * The path of a scheme at a level (see the file comment for exactness). SIMD128 multiplies in i16
 * lanes (the even/odd dot); the relaxed module uses the relaxed dot with its second operand in
 * [0, 127]: nibble codes as stored (summed in i16), q3.5 lookups signed by the activation against
 * |x| (one lookup per vector: the sign is an index flip), q8 split into low 7 bits and sign bit.
 */
function kernelPath(scheme: WasmScheme, level: WasmLevel, actChunks: number, actCodeMax: number, i16PairSums: boolean): KernelPath {
  const evenOdd = { xprepPartial: 'xprep/evenodd_signed.wat', dotPartial: 'dot/signed_evenodd.wat', dotText: 'i16 products of the even and odd bytes, i32 sums', correct: false, dotShift: EVEN_ODD.byteBits, q35Lookup: true };
  const decodePartial = `decode/${scheme}.wat`;
  if (scheme === 'nibble') {
    if (level === 'simd128') {
      return { ...evenOdd, decodePartial: 'decode/nibble_raw.wat', xprepPartial: 'xprep/evenodd_nibble.wat', dotPartial: 'dot/nibble_evenodd.wat', dotText: 'i16 products of the even and odd nibble codes, i32 sums', correct: true };
    }
    return { decodePartial, xprepPartial: 'xprep/none.wat', dotPartial: 'dot/unsigned_relaxed.wat', dotText: `relaxed dots of the unsigned codes summed in i16 lanes (at most ${nibbleI16Bound(actChunks, actCodeMax)})`, correct: true, i16Bound: nibbleI16Bound(actChunks, actCodeMax), i16QuadBound: nibbleI16QuadBound(actChunks, actCodeMax), dotShift: 0, q35Lookup: false };
  }
  if (level === 'simd128') return { ...evenOdd, decodePartial };
  if (scheme === 'q35') {
    // q3.5 levels are at most 125 in magnitude, so w x sign(x) is an int8 and |x| an i7 operand.
    const small = Q35_MAX_MAGNITUDE <= INT8_CODE_MAX;
    if (small && q35SignByIndex()) {
      const signed = { decodePartial, xprepPartial: 'xprep/sign.wat', dotPartial: 'dot/sign_relaxed.wat', correct: false, dotShift: 0, q35Lookup: false, signRecord: true };
      if (!i16PairSums) return { ...signed, dotText: `relaxed i16 dots of w x sign(x) and |x| (each at most 2 x ${Q35_MAX_MAGNITUDE} x ${actCodeMax}), widened by an i16 dot with ones` };
      // The plan's codes keep a lane's four products within i16 (CpuVariants.i16PairSums).
      const pairBound = I16_PAIR_PRODUCTS * Q35_MAX_MAGNITUDE * actCodeMax;
      if (pairBound > I16_MAX) throw new InternalError(`q3.5 i16 pair sums reach ${pairBound} with activation codes up to ${actCodeMax}`);
      return { ...signed, pairSums: true, dotText: `relaxed i16 dots of w x sign(x) and |x|, a vector's two summed in i16 (at most ${pairBound}), widened by an i16 dot with ones` };
    }
    return { ...evenOdd, decodePartial };
  }
  return { decodePartial, xprepPartial: 'xprep/none.wat', dotPartial: 'dot/split_relaxed.wat', dotText: 'relaxed dots of the low 7 bits and the sign bit', correct: false, dotShift: 0, q35Lookup: false };
}

/**
 * How the block's i16 sums (a path with `i16Bound`) become the i32 lane sums of four rows:
 * `widen16` widens each row's vector (an i16 dot with ones), `widen16Late` first adds two rows'
 * 64-bit halves in i16 lanes (the transposing add's first step), which stays exact while twice the
 * bound fits in i16, and widens once per two rows. `quad16` (unsigned codes whose corrected quad
 * sums fit in i16, `i16QuadBound`) takes both steps in i16, subtracts the correction there (prepare
 * writes it as an i16 pair per row: `corr16`) and widens once per four rows: one `pmaddwd` per
 * quad instead of two (L2 q4 relaxed GEMV about 2% faster, PERFORMANCE).
 */
function widening(path: KernelPath | undefined) {
  const i16Bound = path?.i16Bound;
  if (i16Bound === undefined) return { widen16: false, widen16Late: false, quad16: false };
  const i16PairBound = 2 * i16Bound;
  const quad16 = path?.correct === true && path.i16QuadBound !== undefined && path.i16QuadBound <= I16_MAX;
  return { widen16: true, widen16Late: i16PairBound <= I16_MAX, quad16, i16PairBound, i16QuadBound: path?.i16QuadBound };
}

interface MicroShape {
  name: string;
  rowCount: number;
  actCount: number;
  /** Rows apart of the kernel's rows (the GEMV's whole stream chunks): one pointer, row r at r x this many rows' bytes. */
  strideRows?: number;
}

/** The largest byte offset a fixed-stride kernel puts in a load's offset immediate (a u32; kept signed). */
const MAX_LOAD_OFFSET = 2 ** 31 - 1;

/** The name of the micro-kernel for `rowCount` weight rows x `actCount` activation rows. */
function microName(rowCount: number, actCount: number): string {
  return `micro_${rowCount}x${actCount}`;
}

/**
 * The tile kernels `_rows` calls: full tiles, and one-row edges in N, in M and in both. With
 * `fixedStride` (quantized weights) a GEMV in streams also gets `fixed`: the full tile for a whole
 * chunk of streams (the stride is `streamRows`), its rows at constant offsets from one pointer, where
 * `full` keeps a pointer per row (8 adds a block and, on x86, the registers V8 then spills).
 */
function microShapes(plan: CpuMatmulPlan, fixedStride: boolean): { tile: Record<'full' | 'rowEdge' | 'actEdge' | 'bothEdge', string> & { fixed?: string }; shapes: MicroShape[] } {
  const { rowsPerIter: R, mTile: T, streamRows: S, rowBytes } = plan.params;
  const shape = (rowCount: number, actCount: number): MicroShape => ({ name: microName(rowCount, actCount), rowCount, actCount });
  const tile = { full: shape(R, T), rowEdge: shape(1, T), actEdge: shape(R, 1), bothEdge: shape(1, 1) };
  const fixed = fixedStride && S > 0 && R > 1 && R * S * rowBytes <= MAX_LOAD_OFFSET ? { ...shape(R, T), name: `${microName(R, T)}_stride${S}`, strideRows: S } : undefined;
  const shapes = [...new Map([...Object.values(tile), ...(fixed ? [fixed] : [])].map((s) => [s.name, s])).values()];
  return { tile: { full: tile.full.name, rowEdge: tile.rowEdge.name, actEdge: tile.actEdge.name, bothEdge: tile.bothEdge.name, ...(fixed ? { fixed: fixed.name } : {}) }, shapes };
}

/** Prepared activation bytes per block: int8 values, then f32 scale and i32 sum (padded as C pads). */
function actLayout(plan: CpuMatmulPlan) {
  const p = plan.params;
  const actStride = p.actBlock + 8 + p.actPad;
  return { actStride, xRowBytes: p.actQuant ? p.xBlocks * actStride : p.K * F32_BYTES };
}

/**
 * q3.5's relaxed module keeps, after each prepared block's usual tail, a sign record: per 32
 * activations one 16-byte vector of index flips (byte j: 0x0f where activation j is negative, 0xf0
 * where activation 16 + j is), and prepare leaves |x| in place of x. The kernels then load both
 * instead of taking |x| and the signs apart once per block and weight-row step (18 vector ops per
 * 64 activations, and six more live vectors); the plan sizes the tail (CpuVariants.actTailBytes).
 */
export const Q35_SIGN_RECORD_BYTES = 32;
/** Bytes of one flip vector of the sign record: 32 activations. */
const SIGN_VECTOR_BYTES = 16;
const CHUNK_WEIGHTS = 32;

/**
 * The 32-activation chunks of a prepared block: their two 16-byte halves and, where the block's
 * tail holds a sign record, the chunk's flip vector in it.
 */
function preparedChunks(plan: CpuMatmulPlan) {
  const p = plan.params;
  const recordAt = p.actBlock + ACT_BLOCK_TAIL;
  const hasRecord = recordAt + SIGN_VECTOR_BYTES * p.actChunks <= p.actBlock + 8 + p.actPad;
  return Array.from({ length: p.actChunks }, (_, j) => ({
    lo: CHUNK_WEIGHTS * j,
    hi: CHUNK_WEIGHTS * j + SIGN_VECTOR_BYTES,
    ...(hasRecord ? { sx: recordAt + SIGN_VECTOR_BYTES * j } : {}),
  }));
}

/** The sign record's flip vectors, for a path that reads them: the plan must have sized the tail for it. */
function signChunks(plan: CpuMatmulPlan) {
  const chunks = preparedChunks(plan);
  if (chunks.some((c) => c.sx === undefined)) throw new InternalError(`the prepared activation blocks of ${plan.op.weight.format} weights have no room for the sign record (CpuVariants.actTailBytes)`);
  return chunks;
}

/** Where in a prepared block's padding the 16-byte correction vector of unsigned codes sits. */
function actCorrOffset(plan: CpuMatmulPlan): number {
  const p = plan.params;
  const at = p.actBlock + 16;
  if (at + 16 > p.actBlock + 8 + p.actPad) throw new InternalError('the prepared activation block has no room for its correction vector');
  return at;
}

/** Weight rows whose f16 scales one vector widens (an f32 lane each), and whose sums one vector holds. */
const SCALE_LANES = 4;

/**
 * Whether a micro-kernel walks a block row by row (every chunk of a row, then the next row) rather
 * than chunk by chunk: q3.5's relaxed GEMV with the sign record and 64-weight units. Its rows then
 * keep no sums live across the block's chunks (chunk by chunk, V8 spilled and reloaded all eight
 * rows' sums each block) and take one pin per row (per pair of rows, summed, in whole quads:
 * `summedEarly` in microView) instead of one per chunk. The activations of all chunks are loaded first (four vectors and two
 * flips). L2 q3.5 relaxed GEMV: 3.9 -> 3.35 ns per 64 weights with the sign record (PERFORMANCE).
 */
function rowMajorOrder(plan: CpuMatmulPlan, scheme: WasmScheme | undefined, path: KernelPath | undefined, actCount: number): boolean {
  return scheme === 'q35' && path?.signRecord === true && actCount === 1 && q35AllFast(plan.params.weightsPerBlock);
}

/** Everything one micro-kernel prints: its rows, activation rows, and per activation block its chunks. */
function microView(plan: CpuMatmulPlan, s: MicroShape, scheme: WasmScheme | undefined, path: KernelPath | undefined) {
  const p = plan.params;
  const { actStride, xRowBytes } = actLayout(plan);
  // Row r of the micro-kernel: in contiguous groups r x rowBytes after its first row (a load
  // offset, one pointer); in streams (plan.params.streamRows) `$stride` rows after row r - 1, a
  // pointer of its own.
  const streams = p.streamRows > 0 && s.rowCount > 1 && s.strideRows === undefined;
  // rowN: row r's output row after $n (contiguous and fixed-stride kernels).
  const rowN = (r: number) => r * (s.strideRows ?? 1);
  const rows = Array.from({ length: s.rowCount }, (_, r) => ({ r, rowN: rowN(r), rowOff: streams ? 0 : rowN(r) * p.rowBytes, ptr: streams && r > 0 ? `$p${r}` : '$p' }));
  const streamPtrs = streams ? rows.slice(1).map(({ r, ptr }) => ({ r, ptr, prev: rows[r - 1]!.ptr })) : [];
  const acts = Array.from({ length: s.actCount }, (_, i) => ({ i, offset: i * xRowBytes }));
  const pairs = rows.flatMap(({ r }) => acts.map(({ i }) => ({ r, rowN: rowN(r), i, quad: Math.floor(r / SCALE_LANES), lane: r % SCALE_LANES })));
  // Row r's scale is f32 lane r % 4 of quad r / 4 (i16 lane 2 (r % 4) + 1, the high half of that
  // lane, where the sign needs no shift), and its sums lane r % 4 of that quad's accumulator.
  const scaleQuads = Array.from({ length: Math.ceil(s.rowCount / SCALE_LANES) }, (_, q) => {
    const quadRows = rows.slice(q * SCALE_LANES, (q + 1) * SCALE_LANES);
    return { q, first: quadRows[0]!.r, last: quadRows.at(-1)!.r, rows: quadRows.map(({ r, rowOff, ptr }) => ({ r, rowOff, ptr, halfLane: 2 * (r % SCALE_LANES) + 1 })) };
  });
  const quadActs = scaleQuads.flatMap(({ q, first, last, rows: quadRows }) => acts.map(({ i }) => ({ q, i, first, last, quadRows })));
  // Whole quads widen their scales finite-only (scaleGroups); an inf or NaN scale sends the call's
  // rows to the exact one-row kernel (`exactRows`, a shape every tile set has: microShapes).
  const fastScales = s.rowCount > 1 && s.rowCount % SCALE_LANES === 0;
  const tables = { A: lanes(Q35_LOOKUP_A), B: lanes(Q35_LOOKUP_B) };
  const chunkAt = preparedChunks(plan);
  // Row-major: every chunk's activations first, then each row's chunks (rowMajorOrder).
  const rowMajor = rowMajorOrder(plan, scheme, path, acts.length);
  // GEMV with whole quads and i32 sums (q3.5 at both levels, q4/q4_0 SIMD128): in a group's last
  // chunk each pair of rows takes the transposing sum's first step (and one pin) as soon as both
  // are done, each quad the second step; the block's end only scales and adds. Fewer sums stay live
  // across rows and fewer pins (L2: q3.5 relaxed 2%, q3.5 SIMD128 2.5%, q4 SIMD128 1.5%, q4_0
  // SIMD128 2.5% faster). The i16 paths (relaxed nibbles) sum at the block's end: pairs widened as
  // they finished measured no faster there.
  const summedEarly = (scheme === 'q35' || scheme === 'nibble') && acts.length === 1 && s.rowCount % SCALE_LANES === 0 && path?.i16Bound === undefined;
  const rowSums = (r: number) => ({
    // Sums of (row, activation row 0).
    ...(r % 2 === 1 ? { pairSum: { a: r - 1, b: r, i: 0 } } : {}),
    // The quad's two pair sums, each held in its pair's first row.
    ...(r % SCALE_LANES === SCALE_LANES - 1 ? { quadSum: { a: r + 1 - SCALE_LANES, b: r - 1, last: r, i: 0 } } : {}),
  });
  // GEMV q3.5: each row's B planes (the 64-weight unit's y vector, decode/q35_planes) decoded ahead
  // of the chunk that XORs them in, into a local, pinned: they depend on nothing else of the block,
  // and decoded at their use their load, multiply and shifts sat on the row's path to its pin
  // (L2, Zen 4: relaxed 4.6%, SIMD128 4% faster; docs/PERFORMANCE.md).
  const earlyPlanes = scheme === 'q35' && acts.length === 1;
  // Their locals, one per (row, chunk of a block): the same names in every step and the tail.
  const planeLocals = new Set<string>();
  // A row's chunk whose nibble bytes the row's previous chunk loaded (a unit's A and B halves) reuses them.
  const nibOf = (d: { fast?: { nibOff: number } }) => d.fast?.nibOff;
  const blockOrder = <D extends { pin: boolean; nibLoaded: boolean; fast?: { nibOff: number } }, C extends { decodes: D[]; loads: unknown[] }>(chunks: C[]) =>
    rowMajor
      ? [
          { loads: chunks.flatMap((c) => c.loads), decodes: [] },
          ...rows.map((_, r) => ({
            loads: [],
            decodes: chunks.map((c, j) => {
              const d = c.decodes[r]!;
              const prev = j > 0 ? chunks[j - 1]!.decodes[r] : undefined;
              return { ...d, pin: d.pin && j === chunks.length - 1, nibLoaded: prev !== undefined && nibOf(prev) !== undefined && nibOf(prev) === nibOf(d) };
            }),
          })),
        ]
      : chunks;
  // Block u of a loop step: its weights u x bytesPerBlock after the row pointers, its prepared
  // activations u x xBlockStep after the activation pointers (load offsets, no pointer arithmetic).
  const blockAt = (u: number) => {
    const wAt = u * p.bytesPerBlock;
    const xAt = u * p.actBlocksPerBlock * actStride;
    const groups = scheme
      ? Array.from({ length: p.actBlocksPerBlock }, (_, g) => {
          const chunks = Array.from({ length: p.actChunks }, (_, j) => {
            const c = g * p.actChunks + j;
            const x = (i: number) => (rowMajor ? `${i}_${j}` : `${i}`);
            // Row by row: each row's decode, then its dots, then a pin (see templates/wasm/kernel.wat.hbs).
            const decodes = rows.map(({ r, rowOff, ptr }) => {
              const d = chunkDecode(scheme, p.weightsPerBlock, c, wAt + rowOff);
              // q3.5: the table each half looks up (A or B), for the decode or the dot.
              const halves = ((d.halves ?? []) as { isB: boolean }[]).map((h) => ({ ...h, table: h.isB ? tables.B : tables.A }));
              const [tableLo, tableHi] = [halves[0]?.table, halves[1]?.table];
              // q3.5's fast decode with one activation row leaves both halves' indices packed in the
              // nibble bytes ($t): one sign flip there and a split per (row, activation row) costs 4 ops
              // against 3 + 2 per activation row for a split per row and two flips per (row, activation row).
              // (The SIMD128 path looks its indices up in the decode, unsigned: nothing to flip.)
              const packed = d.fast !== undefined && acts.length === 1 && path?.q35Lookup === false;
              const sums = summedEarly && j === p.actChunks - 1 ? rowSums(r) : undefined;
              // (Chunk by chunk, only where the group has a chunk before this one to decode them in.)
              const plane = earlyPlanes && d.fast !== undefined && d.isB === true && (rowMajor || j > 0) ? { name: `$pl${r}_${c}`, r, ptr, fast: d.fast } : undefined;
              if (plane !== undefined) planeLocals.add(plane.name);
              return { r, ptr, ...d, plane, packed, x: x(0), nibLoaded: false, halves, tableLo, tableHi, pin: sums === undefined, ...sums, dots: acts.map(({ i }) => ({ r, i, x: x(i), first: j === 0, packed, tableLo, tableHi })) };
            });
            const blockAt = xAt + g * actStride;
            const { lo, hi, sx } = chunkAt[j]!;
            return { decodes, loads: acts.map(({ i }) => ({ i, x: x(i), lo: blockAt + lo, hi: blockAt + hi, ...(sx === undefined ? {} : { sx: blockAt + sx }) })) };
          });
          // Early B planes (earlyPlanes): row-major, all of the group's after its activation loads (a
          // row's own A chunk is too close); chunk by chunk, each row's with its previous chunk's decode,
          // before that row's pin (at the group's start, SIMD128 1% against 3.5% faster).
          const ahead = chunks.map((c, j) => ({ ...c, decodes: c.decodes.map((d, r) => ({ ...d, planeAhead: rowMajor ? undefined : chunks[j + 1]?.decodes[r]?.plane })) }));
          return {
            index: g,
            chunks: blockOrder(ahead),
            planes: rowMajor ? chunks.flatMap((c) => c.decodes.flatMap(({ plane }) => (plane === undefined ? [] : [plane]))) : [],
            scales: acts.map(({ i }) => ({ i, scaleOff: xAt + g * actStride + p.actBlock })),
            quadActs,
            finals: quadActs.map(({ q, i, first, last, quadRows }) => ({
              q,
              i,
              first,
              last,
              summed: summedEarly,
              // Rows missing from a quad (edge kernels) add zero lanes.
              slots: Array.from({ length: SCALE_LANES }, (_, slot) => (quadRows[slot] ? { s: slot, r: quadRows[slot]!.r } : { s: slot, zero: true })),
              corrOff: xAt + g * actStride + actCorrOffset(plan),
            })),
          };
        })
      : [];
    const quads = scaleQuads.map((sq) => ({ ...sq, rows: sq.rows.map((row) => ({ ...row, rowOff: wAt + row.rowOff })) }));
    return { u, scaleQuads: fastScales ? [] : quads, scaleGroups: fastScales ? scaleGroupsOf(quads) : [], groups };
  };
  // The loop over weight blocks takes `unroll` blocks per step, then the blocks left one at a time.
  const unroll = Math.max(1, p.unroll);
  const mainBlocks = p.blocksPerRow - (p.blocksPerRow % unroll);
  const loop = {
    unroll,
    mainBlocks,
    steps: Array.from({ length: unroll }, (_, u) => blockAt(u)),
    stepBytes: unroll * p.bytesPerBlock,
    stepX: unroll * p.actBlocksPerBlock * actStride,
    hasTail: p.blocksPerRow > mainBlocks,
    tail: { unroll: 1, steps: [blockAt(0)], stepBytes: p.bytesPerBlock, stepX: p.actBlocksPerBlock * actStride },
  };
  // Locals of the prepared activation vectors: per activation row, and per chunk when row-major.
  const actSlots = acts.flatMap(({ i }) => (rowMajor ? Array.from({ length: p.actChunks }, (_, j) => ({ x: `${i}_${j}` })) : [{ x: `${i}` }]));
  return { ...s, streams, streamPtrs, rows, acts, actSlots, pairs, scaleQuads, quadActs, loop, fastScales, planeLocals: [...planeLocals], exactRows: microName(1, s.actCount) };
}

/**
 * Whole scale quads two to a vector for the finite-only widening: the first quad's f16 scales in the
 * high halves of the i32 lanes (i16 lanes 1, 3, 5, 7), the second's in the low halves (0, 2, 4, 6),
 * widened after a shift by `pairShift` (F16_STEP's even/odd order). The group's first scale is
 * loaded splat (no zeroing; every lane it fills is a real scale, so the inf/NaN check holds), the
 * others into their lanes. Per 8 rows 8 loads and 9 operations, where two exact quads took 2 x 12.
 */
function scaleGroupsOf<R extends { rowOff: number; ptr: string }>(quads: { q: number; first: number; last: number; rows: R[] }[]) {
  return Array.from({ length: Math.ceil(quads.length / 2) }, (_, g) => {
    const [odd, even] = [quads[2 * g]!, quads[2 * g + 1]];
    const rows = [...odd.rows.map((row, l) => ({ ...row, halfLane: 2 * l + 1 })), ...(even?.rows ?? []).map((row, l) => ({ ...row, halfLane: 2 * l }))];
    return { first: odd.first, last: (even ?? odd).last, splat: rows[0]!, inserts: rows.slice(1), odd: odd.q, even: even?.q };
  });
}

/**
 * What micro/f16 and prepare/f32_evenodd print: 8 weights per step (one 16-byte load), activations
 * 2 x 4 f32 (the even, then the odd ones), and what the exact redo of a call's steps rewinds each
 * weight and activation pointer by. Every weight of a row is in a whole step: the IR keeps K a
 * multiple of 32 for f16 weights.
 */
function f16WeightsView(K: number) {
  if (K % F16_STEP_VALUES !== 0) throw new InternalError(`f16 weights need K in whole steps of ${F16_STEP_VALUES}, got K=${K}`);
  return {
    kVecStep: F16_STEP_VALUES,
    kVec: K,
    wVecBytes: F16_STEP_VALUES * F16_BYTES,
    xHalfVecBytes: (F16_STEP_VALUES / 2) * F32_BYTES,
    xVecStepBytes: F16_STEP_VALUES * F32_BYTES,
    f16x8: { ...F16_STEP, wRewindBytes: K * F16_BYTES, xRewindBytes: K * F32_BYTES },
  };
}

/** The view of one level's module. */
function levelView(plan: CpuMatmulPlan, ctx: RenderContext, level: WasmLevel, shared: boolean) {
  const op = plan.op;
  const p = plan.params;
  const format = op.weight.format;
  const scheme = format === 'f16' ? undefined : WASM_SCHEME[format];
  const fn = ctx.symbol ?? `kgen_${op.name}`;
  const { actStride, xRowBytes } = actLayout(plan);
  const xBytes = op.x === 'f16' ? F16_BYTES : F32_BYTES;
  const { tile, shapes } = microShapes(plan, scheme !== undefined);
  const needsExp = op.epilogue.activation !== 'none';
  const path = scheme ? kernelPath(scheme, level, p.actChunks, p.actCodeMax, p.i16PairSums) : undefined;
  const widen = widening(path);
  return {
    ...p,
    ...(path ?? { correct: false }),
    fn,
    level,
    version: ctx.version,
    irHash: ctx.irHash,
    command: ctx.command,
    opName: op.name,
    formatName: FORMAT_NAMES[format],
    formatVersion: FORMATS[format].version,
    actText: p.actQuant ? `int8 per ${p.actBlock}${actCodesText(p.actCodeMax)}` : 'f32',
    configJson: commentText(JSON.stringify(configInUse(plan))),
    memory: memoryView(shared),
    half: HALF_VIEW,
    f16x8: F16_STEP,
    yF16: op.y === 'f16',
    needsExp,
    exp: EXP,
    hasBias: op.epilogue.bias,
    hasResidual: op.epilogue.residual,
    activationPartial: 'act/activation.wat',
    activationWat: ACTIVATION_WAT[op.epilogue.activation],
    loadResidualPartial: `io/res_${op.y}.wat`,
    storeYPartial: `io/y_${op.y}.wat`,
    loadX4Partial: `io/x4_${op.x}.wat`,
    loadX1Partial: `io/x1_${op.x}.wat`,
    // f16 weights take their activations in the even/odd order of their 8-value steps (F16_STEP).
    preparePartial: p.actQuant ? 'prepare/q8.wat' : format === 'f16' ? 'prepare/f32_evenodd.wat' : 'prepare/f32.wat',
    microPartial: scheme ? 'micro/q8.wat' : 'micro/f16.wat',
    ...widen,
    // The relaxed module adds each block's scaled sums with relaxed_madd: one FMA where the engine
    // has one, a multiply and an add elsewhere (either rounding is within the verify tolerance, as
    // the C kernels' FMA is). L2 q4 relaxed GEMV about 3% faster (PERFORMANCE).
    fusedMadd: level === 'relaxed',
    evenOdd: EVEN_ODD,
    // i16 pair sums to i32 (i32x4.dot_i16x8_s against ones: one pmaddwd on x86).
    ones16: Array(8).fill(1).join(' '),
    transpose: TRANSPOSE,
    signFlip: lanes(Array(16).fill(Q35_INDEX_FLIP)),
    // The flip of a packed byte's high nibble (its index, after the 16-bit shift by nibbleBits).
    signFlipHigh: lanes(Array(16).fill(Q35_INDEX_FLIP << NIBBLE_BITS)),
    f32Bytes: F32_BYTES,
    xBytes,
    yBytes: op.y === 'f16' ? F16_BYTES : F32_BYTES,
    xElements: p.M * p.K,
    // Prepare: 4 activations per vector.
    xVecBytes: 4 * xBytes,
    actVecs: p.actBlock / 4,
    vecLog2: 2,
    xBlockBytes: p.actBlock * xBytes,
    actBlocksTotal: p.M * p.xBlocks,
    actStride,
    actSumOffset: p.actBlock + F32_BYTES,
    actCorrOffset: actCorrOffset(plan),
    // quad16's correction: i16 lane l of a four-row sum holds the activations at positions p with
    // (p >> 1) & 1 = l & 1 (a relaxed i16 dot's lane l takes bytes 2l and 2l + 1 of each 16-byte
    // activation vector), i.e. prepare's 4-lane sums' lanes 0, 1 and lanes 2, 3.
    // The odd lanes' term is the offset times 2^16 (the i32 lane's high half), the even lanes' masked.
    corr16: widen.quad16 ? { lowLanes: [0, 1], highLanes: [2, 3], laneMask: I16_LANE_MASK, highOffset: NIBBLE_ZERO * 2 ** I16_BITS } : undefined,
    ...(path?.signRecord ? { signChunks: signChunks(plan) } : {}),
    qMax: p.actCodeMax,
    xRowBytes,
    xBlockStep: p.actBlocksPerBlock * actStride,
    ...(format === 'f16' ? f16WeightsView(p.K) : {}),
    nibbleMask: lanes(Array(16).fill(15)),
    nibbleBits: NIBBLE_BITS,
    codeOffset: NIBBLE_ZERO,
    split: { lowMask: lanes(Array(16).fill(127)), signShift: 7, signBit: lanes(Array(16).fill(1)) },
    q35: {
      ...Q35_DECODE_CONSTANTS,
      bit0: lanes(Array(16).fill(1)),
      bit1: lanes(Array(16).fill(2)),
      bit2: lanes(Array(16).fill(4)),
    },
    tile,
    micros: shapes.map((s) => microView(plan, s, scheme, path)),
  };
}

/** The instruction levels an output for weights of `format` has modules for: f16 weights have no integer dot product. */
export function levelsOfFormat(format: WeightFormatName): WasmLevel[] {
  return format === 'f16' ? ['simd128'] : [...WASM_LEVELS];
}

/** The instruction levels a plan's output has modules for. */
export function levelsOf(plan: CpuMatmulPlan): WasmLevel[] {
  return levelsOfFormat(plan.op.weight.format);
}

/** What a worker of loadThreaded runs: `<fn>_rows(workspace, w, bias, residual, y, rowBegin, rowEnd)`. */
const WORKER_CALLS: readonly WorkerCall[] = [{ name: 'rows', args: 7 }];

/**
 * The most threads the loader's loadThreaded takes, and why: each thread computes at least one
 * output row, and no more than `LOADER_MAX_THREADS` run at all.
 */
function loaderThreads(plan: CpuMatmulPlan): { maxThreads: number; maxThreadsWhy: string } {
  const N = plan.params.N;
  return N < LOADER_MAX_THREADS
    ? { maxThreads: N, maxThreadsWhy: `each thread computes at least one of the ${N} output rows` }
    : { maxThreads: LOADER_MAX_THREADS, maxThreadsWhy: `${LOADER_MAX_THREADS} threads at most, more than any machine's cores` };
}

/** kernel.wat (and kernel.relaxed.wat) of a CPU matmul plan, plus the harness verify and the tuner run. */
export function renderWasmMatmul(plan: CpuMatmulPlan, ctx: RenderContext): RenderedKernel {
  const templates = templateSet('wasm');
  const files: Record<string, string> = {};
  for (const level of levelsOf(plan)) {
    for (const shared of [false, true]) files[LEVEL_FILE[level][shared ? 'shared' : 'plain']] = templates.render('kernel.wat', levelView(plan, ctx, level, shared));
  }
  files['probe.wat'] = templates.render('probe.wat', RELAXED_DOT);
  const fn = ctx.symbol ?? `kgen_${plan.op.name}`;
  const loaderView = {
    fn,
    version: ctx.version,
    command: ctx.command,
    N: plan.params.N,
    sizesJson: JSON.stringify(harnessLayout(plan).sizes),
    levelsJson: JSON.stringify(levelsOf(plan)),
    preferredJson: JSON.stringify(preferredLevel(plan)),
    filesJson: JSON.stringify(Object.fromEntries(levelsOf(plan).map((l) => [l, { plain: wasmName(LEVEL_FILE[l].plain), shared: wasmName(LEVEL_FILE[l].shared) }]))),
    ...dispatchView(WORKER_CALLS, loaderThreads(plan)),
  };
  files['kernel.mjs'] = templates.render('kernel.mjs', loaderView);
  files['kernel.d.mts'] = wasmLoaderDeclarations(plan, { fn, version: ctx.version, sizes: harnessLayout(plan).sizes, levels: levelsOf(plan), preferred: preferredLevel(plan), ...loaderThreads(plan) });
  files['kernel-worker.mjs'] = templates.render('loader/worker.mjs', { ...loaderView, workerCallsText: '`rows` over the row ranges it is given' });
  const ptrs = 'i32 byte offsets into the imported memory';
  const rendered: RenderedKernel = {
    files,
    binaries: () => assembleKernel(rendered),
    mainFile: 'kernel.wat',
    harnessFiles: { 'harness.mjs': renderHarness(plan, fn) },
    templateHash: templates.hash,
    workspaceBytes: plan.params.workspaceBytes,
    build: `assembled in-process by kgen (wabt, features simd and relaxed_simd): kernel.wasm from kernel.wat, kernel.relaxed.wasm from kernel.relaxed.wat; load kernel.relaxed.wasm only where probe.wasm's probe() returns 1; kernel.mjs takes the plan's preferred level (${preferredLevel(plan)}) by default`,
    abi: [
      { symbol: `${fn}_workspace_size`, signature: '() -> i32', doc: `bytes of workspace (${plan.params.workspaceBytes})` },
      { symbol: `${fn}_prepare`, signature: '(x, workspace: i32) -> ()', doc: `prepares X once per call (quantizes activations when actQuant${actCodesText(plan.params.actCodeMax)}); ${ptrs}` },
      { symbol: `${fn}_rows`, signature: '(workspace, w, bias, residual, y, row_begin, row_end: i32) -> ()', doc: `output rows [row_begin, row_end) for every activation row; disjoint ranges may run in different threads; ${ptrs}` },
      { symbol: fn, signature: '(x, w, bias, residual, y, workspace: i32) -> ()', doc: `prepare + all rows; ${ptrs}` },
    ],
  };
  return rendered;
}

function wasmName(wat: string): string {
  return wat.replace(/\.wat$/, '.wasm');
}

/** The CPU matmul planner, with the budget of one 32-bit memory over the harness's buffers (`memoryBudget`). */
export function wasmMatmulPlanner(variants: CpuVariants): PlannerOf<'cpu-matmul'> {
  const shared = cpuMatmulPlanner(variants);
  return {
    ...shared,
    plan(req, config) {
      const body = shared.plan(req, config);
      return { ...body, budgets: [...body.budgets, memoryBudget(harnessLayout(body).end)] };
    },
  };
}

/** Byte offsets of the harness's buffers in its memory (placeBuffers: aligned, none at 0). */
export function harnessLayout(plan: Pick<CpuMatmulPlan, 'op' | 'params'>) {
  const op = plan.op;
  const p = plan.params;
  const xBytes = p.M * p.K * (op.x === 'f16' ? F16_BYTES : F32_BYTES);
  const yBytes = p.M * p.N * (op.y === 'f16' ? F16_BYTES : F32_BYTES);
  const sizes = { x: xBytes, w: p.N * p.rowBytes, bias: op.epilogue.bias ? p.N * F32_BYTES : 0, residual: op.epilogue.residual ? yBytes : 0, y: yBytes, workspace: p.workspaceBytes };
  return { sizes, ...placeBuffers(sizes) };
}

function renderHarness(plan: CpuMatmulPlan, fn: string): string {
  const layout = harnessLayout(plan);
  return templateSet('wasm').render('harness.mjs', {
    fn,
    N: plan.params.N,
    exitJson: JSON.stringify(HARNESS_EXIT),
    layoutJson: JSON.stringify(layout),
    pageBytes: PAGE_BYTES,
    maxPages: MEMORY_MAX_PAGES,
  });
}
