import type { EpilogueActivation, WeightFormatName } from '../../ir/types.js';
import { wasmLoaderDeclarations } from './bindings.js';
import { configInUse } from '../../plan/index.js';
import type { PlanOf } from '../../plan/types.js';
import { FORMATS } from '../../quant/index.js';
import { Q35_LOOKUP_A, Q35_LOOKUP_B } from '../../quant/q35.js';
import { commentText } from '../../render/comment-text.js';
import { templateSet } from '../../render/templates.js';
import { FORMAT_NAMES } from '../c-family.js';
import { HARNESS_EXIT } from '../harness.js';
import type { RenderContext, RenderedKernel } from '../types.js';
import { assembleKernel } from './assemble.js';
import { chunkDecode, lanes, WASM_SCHEME, type WasmScheme } from './decode.js';
import { HALF_VIEW } from './half.js';
import { MEMORY_MAX_PAGES, memoryView, PAGE_BYTES } from './memory.js';
import { RELAXED_DOT } from './probe.js';

type CpuMatmulPlan = PlanOf<'cpu-matmul'>;

/**
 * The WebAssembly renderer of CPU matmul plans: one WebAssembly text module per instruction level,
 * `kernel.wat` (SIMD128: i8 widened to i16, `i32x4.dot_i16x8_s`) and, for the integer formats,
 * `kernel.relaxed.wat` (`i32x4.relaxed_dot_i8x16_i7x16_add_s`). Both read the packed weight bytes
 * the C kernels read and export the C kernel's functions (`_workspace_size`, `_prepare`, `_rows`
 * and the whole call) over an imported memory, pointers being byte offsets in it.
 *
 * Exactness of the relaxed module: the relaxed dot product is the same on every engine only when
 * every byte of its second operand is in [0, 127], so weights are always that operand, as codes in
 * that range: q4 and q4_0 nibbles as stored (0..15) with 8 x (the activation block's int8 sum,
 * which prepare stores) subtracted once per block, summed in i16 lanes within a block; q3.5 levels
 * as |w| with the sign applied to the activation; q8 and q8_0 (whose bytes may be -128) split into
 * their low 7 bits and their sign bit (w = (w & 127) - 128 (w >>> 7)), two dot products.
 */

/** Instruction levels of the WebAssembly target: SIMD128 runs everywhere, relaxed only where the probe passes. */
export const WASM_LEVELS = ['simd128', 'relaxed'] as const;
export type WasmLevel = (typeof WASM_LEVELS)[number];

/**
 * The levels a plan may prefer for weights of `format`, the default first (the plan's `isa` knob;
 * the tuner measures both). The preferred level is what the loader takes where the probe allows it;
 * the other module still ships, for `level` to force. Defaults by measurement (M=1, N=4096,
 * K=14336, docs/PERFORMANCE.md): q4 and q4_0 gain from relaxed (~1.4x on x86-64); q8 and q8_0
 * need two relaxed dots per vector (low 7 bits and sign), which costs more than it saves where V8
 * has no single instruction for it (x86-64 without AVX-VNNI); q3.5's relaxed module (one dot, the
 * sign moved onto the activation) measured 1.1x slower than SIMD128 with weights from DRAM. So
 * these default to SIMD128. f16 weights have no integer dot product: SIMD128 only.
 */
export function levelPreference(format: WeightFormatName | undefined): WasmLevel[] {
  if (format === undefined || format === 'f16') return ['simd128'];
  return WASM_SCHEME[format] === 'nibble' ? ['relaxed', 'simd128'] : ['simd128', 'relaxed'];
}

/** The level a plan's output prefers (its `isa` knob). */
export function preferredLevel(plan: CpuMatmulPlan): WasmLevel {
  const isa = plan.params.isa;
  if (!(WASM_LEVELS as readonly string[]).includes(isa)) throw new Error(`kgen: a WebAssembly plan's isa is a level (${WASM_LEVELS.join(', ')}), not ${isa}`);
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
/** Prepared activations are int8 in [-127, 127]: d = max|x| / 127. */
const ACT_QMAX = 127;
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

/** The largest nibble code (0..15) and activation magnitude (prepare's int8 range). */
const NIBBLE_MAX = 15;

/**
 * The largest |i16 lane| the unsigned relaxed dot reaches over one activation block: each chunk
 * of 32 weights adds two i16 dots of 2 products each per lane. Must stay within i16, since the
 * kernels sum a block's dots in i16 lanes before widening them.
 */
function nibbleI16Bound(actChunks: number): number {
  const bound = actChunks * 2 * 2 * ACT_QMAX * NIBBLE_MAX;
  if (bound > 32767) throw new Error(`kgen: ${actChunks} chunks per activation block overflow the i16 sums of the unsigned relaxed dot (${bound})`);
  return bound;
}

/**
 * The dot-product partial and its correction for a scheme at a level (see the file comment), and
 * the decode partial where it is not the scheme's own. `i16Bound` is set where a block's dots are
 * summed in i16 lanes (widened once per block).
 */
function dotOf(scheme: WasmScheme, level: WasmLevel, actChunks: number): { dotPartial: string; correct: boolean; i16Bound?: number; decodePartial?: string } {
  // SIMD128 nibbles: the 16 bytes widened to u16 once, each nibble taken with a 16-bit and/shift
  // (x86 has no 8-bit shift), as unsigned codes with the same correction as the relaxed module.
  if (level === 'simd128' && scheme === 'nibble') return { dotPartial: 'dot/unsigned_simd128.wat', correct: true, decodePartial: 'decode/nibble_wide.wat' };
  if (level === 'simd128') return { dotPartial: 'dot/signed_simd128.wat', correct: false };
  if (scheme === 'nibble') return { dotPartial: 'dot/unsigned_relaxed.wat', correct: true, i16Bound: nibbleI16Bound(actChunks) };
  // q3.5 levels are at most 125 in magnitude (never -128): |w| is an i7 operand as it is, and w's
  // sign moves onto the activation (+-a stays in [-127, 127]): one dot where the split takes two.
  if (scheme === 'q35' && Math.max(...Q35_LOOKUP_A.map(Math.abs), ...Q35_LOOKUP_B.map(Math.abs)) <= 127) return { dotPartial: 'dot/sign_relaxed.wat', correct: false };
  return { dotPartial: 'dot/split_relaxed.wat', correct: false };
}

interface MicroShape {
  name: string;
  rowCount: number;
  actCount: number;
}

/** The tile kernels `_rows` calls: full tiles, and one-row edges in N, in M and in both. */
function microShapes(plan: CpuMatmulPlan): { tile: Record<'full' | 'rowEdge' | 'actEdge' | 'bothEdge', string>; shapes: MicroShape[] } {
  const { rowsPerIter: R, mTile: T } = plan.params;
  const shape = (rowCount: number, actCount: number): MicroShape => ({ name: `micro_${rowCount}x${actCount}`, rowCount, actCount });
  const tile = { full: shape(R, T), rowEdge: shape(1, T), actEdge: shape(R, 1), bothEdge: shape(1, 1) };
  const shapes = [...new Map(Object.values(tile).map((s) => [s.name, s])).values()];
  return { tile: { full: tile.full.name, rowEdge: tile.rowEdge.name, actEdge: tile.actEdge.name, bothEdge: tile.bothEdge.name }, shapes };
}

/** Prepared activation bytes per block: int8 values, then f32 scale and i32 sum (padded as C pads). */
function actLayout(plan: CpuMatmulPlan) {
  const p = plan.params;
  const actStride = p.actBlock + 8 + p.actPad;
  return { actStride, xRowBytes: p.actQuant ? p.xBlocks * actStride : p.K * F32_BYTES };
}

/** Where in a prepared block's padding the 16-byte correction vector of unsigned codes sits. */
function actCorrOffset(plan: CpuMatmulPlan): number {
  const p = plan.params;
  const at = p.actBlock + 16;
  if (at + 16 > p.actBlock + 8 + p.actPad) throw new Error('kgen: the prepared activation block has no room for its correction vector');
  return at;
}

/** Weight rows whose f16 scales one vector widens (an f32 lane each). */
const SCALE_LANES = 4;

/** The byte indices of an `i8x16.shuffle` that repeats f32 lane `lane` in all four lanes. */
function splatLane(lane: number): string {
  return Array.from({ length: 16 }, (_, b) => F32_BYTES * lane + (b % F32_BYTES)).join(' ');
}

/** Everything one micro-kernel prints: its rows, activation rows, and per activation block its chunks. */
function microView(plan: CpuMatmulPlan, s: MicroShape, scheme: WasmScheme | undefined) {
  const p = plan.params;
  const { actStride, xRowBytes } = actLayout(plan);
  const rows = Array.from({ length: s.rowCount }, (_, r) => ({ r }));
  const acts = Array.from({ length: s.actCount }, (_, i) => ({ i, offset: i * xRowBytes }));
  const pairs = rows.flatMap(({ r }) => acts.map(({ i }) => ({ r, i })));
  // Row r's scale is f32 lane r % 4 of quad r / 4 (i16 lane 2 (r % 4), the low half of that lane).
  const scaleQuads = Array.from({ length: Math.ceil(s.rowCount / SCALE_LANES) }, (_, q) => {
    const quadRows = rows.slice(q * SCALE_LANES, (q + 1) * SCALE_LANES);
    return { q, first: quadRows[0]!.r, last: quadRows.at(-1)!.r, rows: quadRows.map(({ r }) => ({ r, halfLane: 2 * (r % SCALE_LANES) })) };
  });
  const quadActs = scaleQuads.flatMap(({ q }) => acts.map(({ i }) => ({ q, i })));
  const groups = scheme
    ? Array.from({ length: p.actBlocksPerBlock }, (_, g) => ({
        index: g,
        chunks: Array.from({ length: p.actChunks }, (_, j) => {
          const decode = chunkDecode(scheme, p.weightsPerBlock, g * p.actChunks + j);
          return {
            decodes: rows.map(({ r }) => ({ r, ...decode })),
            loads: acts.map(({ i }) => ({ i, lo: g * actStride + 32 * j, hi: g * actStride + 32 * j + 16 })),
            dots: pairs,
          };
        }),
        scales: acts.map(({ i }) => ({ i, scaleOff: g * actStride + p.actBlock })),
        finals: pairs.map(({ r, i }) => ({ r, i, quad: Math.floor(r / SCALE_LANES), splat: splatLane(r % SCALE_LANES), corrOff: g * actStride + actCorrOffset(plan) })),
      }))
    : [];
  return { ...s, rows, acts, pairs, groups, scaleQuads, quadActs };
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
  const { tile, shapes } = microShapes(plan);
  const needsExp = op.epilogue.activation !== 'none';
  return {
    ...p,
    ...(scheme ? dotOf(scheme, level, p.actChunks) : { dotPartial: 'dot/signed_simd128.wat', correct: false }),
    fn,
    level,
    version: ctx.version,
    irHash: ctx.irHash,
    command: ctx.command,
    opName: op.name,
    formatName: FORMAT_NAMES[format],
    formatVersion: FORMATS[format].version,
    actText: p.actQuant ? `int8 per ${p.actBlock}` : 'f32',
    configJson: commentText(JSON.stringify(configInUse(plan))),
    memory: memoryView(shared),
    half: HALF_VIEW,
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
    preparePartial: p.actQuant ? 'prepare/q8.wat' : 'prepare/f32.wat',
    microPartial: scheme ? 'micro/q8.wat' : 'micro/f16.wat',
    decodePartial: scheme ? (dotOf(scheme, level, p.actChunks).decodePartial ?? `decode/${scheme}.wat`) : 'decode/none.wat',
    nibbleMask16: Array(8).fill(15).join(' '),
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
    qMax: ACT_QMAX,
    xRowBytes,
    xBlockStep: p.actBlocksPerBlock * actStride,
    // f16 weights: 8 per step (one 16-byte load), activations 2 x 4 f32.
    kVecStep: 8,
    kVec: p.K - (p.K % 8),
    wVecBytes: 8 * F16_BYTES,
    wBytes: F16_BYTES,
    xHalfVecBytes: 4 * F32_BYTES,
    xVecStepBytes: 8 * F32_BYTES,
    nibbleMask: lanes(Array(16).fill(15)),
    nibbleBits: 4,
    codeOffset: NIBBLE_ZERO,
    codeOffsetVec: lanes(Array(16).fill(NIBBLE_ZERO)),
    split: { lowMask: lanes(Array(16).fill(127)), signShift: 7 },
    q35: {
      tableA: lanes(Q35_LOOKUP_A),
      tableB: lanes(Q35_LOOKUP_B),
      bit0: lanes(Array(16).fill(1)),
      bit1: lanes(Array(16).fill(2)),
      bit2: lanes(Array(16).fill(4)),
    },
    tile,
    micros: shapes.map((s) => microView(plan, s, scheme)),
  };
}

/** The instruction levels a plan's output has modules for: f16 weights have no integer dot product. */
export function levelsOf(plan: CpuMatmulPlan): WasmLevel[] {
  return plan.op.weight.format === 'f16' ? ['simd128'] : [...WASM_LEVELS];
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
  };
  files['kernel.mjs'] = templates.render('kernel.mjs', loaderView);
  files['kernel.d.mts'] = wasmLoaderDeclarations(plan, { fn, version: ctx.version, sizes: harnessLayout(plan).sizes, levels: levelsOf(plan), preferred: preferredLevel(plan) });
  files['kernel-worker.mjs'] = templates.render('kernel-worker.mjs', loaderView);
  const ptrs = 'i32 byte offsets into the imported memory';
  const rendered: RenderedKernel = {
    files,
    binaries: () => assembleKernel(rendered),
    mainFile: 'kernel.wat',
    harnessFiles: { 'harness.mjs': renderHarness(plan, fn) },
    templateHash: templates.hash,
    build: `assembled in-process by kgen (wabt, features simd and relaxed_simd): kernel.wasm from kernel.wat, kernel.relaxed.wasm from kernel.relaxed.wat; load kernel.relaxed.wasm only where probe.wasm's probe() returns 1; kernel.mjs takes the plan's preferred level (${preferredLevel(plan)}) by default`,
    abi: [
      { symbol: `${fn}_workspace_size`, signature: '() -> i32', doc: `bytes of workspace (${plan.params.workspaceBytes})` },
      { symbol: `${fn}_prepare`, signature: '(x, workspace: i32) -> ()', doc: `prepares X once per call (quantizes activations when actQuant); ${ptrs}` },
      { symbol: `${fn}_rows`, signature: '(workspace, w, bias, residual, y, row_begin, row_end: i32) -> ()', doc: `output rows [row_begin, row_end) for every activation row; disjoint ranges may run in different threads; ${ptrs}` },
      { symbol: fn, signature: '(x, w, bias, residual, y, workspace: i32) -> ()', doc: `prepare + all rows; ${ptrs}` },
    ],
  };
  return rendered;
}

function wasmName(wat: string): string {
  return wat.replace(/\.wat$/, '.wasm');
}

/** Byte offsets of the harness's buffers in its memory, each 16-byte aligned. */
export function harnessLayout(plan: CpuMatmulPlan) {
  const op = plan.op;
  const p = plan.params;
  const xBytes = p.M * p.K * (op.x === 'f16' ? F16_BYTES : F32_BYTES);
  const yBytes = p.M * p.N * (op.y === 'f16' ? F16_BYTES : F32_BYTES);
  const sizes = { x: xBytes, w: p.N * p.rowBytes, bias: op.epilogue.bias ? p.N * F32_BYTES : 0, residual: op.epilogue.residual ? yBytes : 0, y: yBytes, workspace: p.workspaceBytes };
  const at: Record<string, number> = {};
  // Offset 0 stays unused so that no buffer is the null pointer.
  let o = 16;
  for (const [name, bytes] of Object.entries(sizes)) {
    at[name] = o;
    o += Math.ceil(bytes / 16) * 16 + 16;
  }
  return { sizes, at, end: o };
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
