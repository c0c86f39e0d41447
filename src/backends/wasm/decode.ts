import type { WeightFormatName } from '../../ir/types.js';
import { q35Units, slicedAt } from '../../quant/q35.js';
import { InternalError } from '../../errors.js';

/**
 * How the WebAssembly kernels decode one 32-weight chunk of a weight block into two vectors
 * (weights 0-15 and 16-31 of the chunk, natural order, so prepared activations stay in natural
 * order): byte offsets from the row's start and the lane constants of each format's decode, all
 * computed here from the byte layouts of src/quant (docs/formats.md). Every shift is a 16-bit or
 * 64-bit one: x86 has no 8-bit shift, and V8 lowers `i8x16.shr_u` to five instructions.
 */

/** The decode partial (templates/wasm/decode/) of each format; f16 weights have none. */
export type WasmScheme = 'nibble' | 'int8' | 'q35';

export const WASM_SCHEME: Record<Exclude<WeightFormatName, 'f16'>, WasmScheme> = {
  q4: 'nibble',
  q4_0: 'nibble',
  q8: 'int8',
  q8_0: 'int8',
  q35: 'q35',
};

/** Bytes of the f16 scale at the start of every quantized block. */
const SCALE_BYTES = 2;

/** The instruction that loads exactly `bytes` bytes of a plane into a vector (no read past it). */
const LOAD_OF_WIDTH: Record<number, string> = { 16: 'v128.load', 8: 'v128.load64_zero', 4: 'v128.load32_zero', 2: 'v128.load16_splat' };

/** Lane values of an i8x16 constant, as `v128.const i8x16` prints them. */
export function lanes(values: readonly number[]): string {
  if (values.length !== 16) throw new InternalError(`an i8x16 constant needs 16 lanes, got ${values.length}`);
  return values.join(' ');
}

/** Bytes of an f32 or i32 lane. */
const LANE32_BYTES = 4;

/** The 32-bit lanes `ls` of two vectors (0-3 the first's, 4-7 the second's) as `i8x16.shuffle`'s byte indices. */
export function i32Lanes(ls: readonly number[]): string {
  return ls.flatMap((l) => Array.from({ length: LANE32_BYTES }, (_, b) => LANE32_BYTES * l + b)).join(' ');
}

/**
 * One q3.5 half chunk by gathering (any unit size): 16 pairs p0..p0+15 of a unit of P pairs, each
 * lane's nibble and B-plane bits moved to it by a byte swizzle and tested per lane.
 */
function q35Half(P: number, p0: number, isB: boolean, out: 'lo' | 'hi') {
  const ps = Array.from({ length: 16 }, (_, l) => p0 + l);
  const field = (f: number) => ps.map((p) => slicedAt(f, P, p));
  const nib = field(4), low = field(2), high = field(1);
  return {
    out,
    isB,
    idx4: lanes(nib.map(([b]) => b)),
    // A nibble field at bit 4 is the high nibble: select the shifted byte there.
    sel4: lanes(nib.map(([, s]) => (s ? 255 : 0))),
    idx2: lanes(low.map(([b]) => b)),
    k0: lanes(low.map(([, s]) => 1 << s)),
    k1: lanes(low.map(([, s]) => 2 << s)),
    idx1: lanes(high.map(([b]) => b)),
    k2: lanes(high.map(([, s]) => 1 << s)),
  };
}

/** Pairs of a 64-weight q3.5 unit, the one the fast decode reads. */
const UNIT64_PAIRS = 32;

/** Whether every unit of a q3.5 group of G weights takes the fast decode (64-weight units only). */
export function q35AllFast(G: number): boolean {
  return q35Units(G).every((u) => u.pairs === UNIT64_PAIRS);
}

/**
 * The lane constants of the 64-weight unit's B decode (the fast path, no gathers). In the nibble
 * plane byte j holds pair j (low nibble) and pair 16 + j (high nibble); the B index is that nibble
 * XOR y, y = low | high << 2. So one vector Y with pair j's y in bits 0-2 and pair 16 + j's in bits
 * 4-6 of byte j turns the 16 nibble bytes into the 32 B indices with one XOR:
 * - low plane (8 bytes): pair p in byte p % 8, bits 2 (p / 8). Lanes 0-7 take the plane, lanes
 *   8-15 the plane shifted right by 2 as one i64 (a splat, an i64 shift and a blend), so byte j of
 *   that vector has pair j or 8 + j in bits 0-1 and pair 16 + j or 24 + j in bits 4-5: mask 0x33.
 * - high plane (4 bytes): pair p in byte p % 4, bit p / 4, so a 32-bit splat puts pair j's byte in
 *   lane j. Lanes 2k and 2k + 1 (i16 lane k) both want bits b = k / 2 and b + 4 moved to 2 and 6:
 *   multiplying i16 lane k by 2^(3 - b) moves them to 3 and 7 of both bytes (no bit of the low
 *   byte reaches 11 or 15), then mask 0x88 and shift right by 1.
 * Both splats take their address as row pointer + offset (an `i32.add`), not as a load offset: V8
 * gives every offset of a splat load a base register of its own, held across the loop (16 with 8
 * rows, spilled and reloaded each block), where an add is one scalar op in the loop.
 */
const Q35_FAST = {
  lowMask: lanes(Array(16).fill(0x33)),
  /** Bytes 0-7 of the plane, then bytes 8-15 of the plane shifted right by 2 (an i8x16.shuffle). */
  lowBlend: Array.from({ length: 16 }, (_, l) => (l < 8 ? l : 16 + l)).join(' '),
  lowShift: 2,
  highMul: Array.from({ length: 8 }, (_, k) => 2 ** (3 - Math.floor(k / 2))).join(' '),
  highMask: lanes(Array(16).fill(0x88)),
  highShift: 1,
};

/** The constants both q3.5 decodes print (the fast path's, for the template). */
export const Q35_DECODE_CONSTANTS = Q35_FAST;

/**
 * The loads and lane constants of chunk `c` (weights 32c .. 32c + 31) of a q3.5 group of G weights,
 * for a row whose block starts `base` bytes after the kernel's row pointer. Both paths leave lookup
 * indices (0..15) in the chunk's two vectors; `halves` says which table each half looks up.
 */
function q35Chunk(G: number, c: number, base: number) {
  const w0 = 32 * c;
  const unit = q35Units(G).find((u) => u.firstWeight <= w0 && w0 < u.firstWeight + 2 * u.pairs)!;
  const P = unit.pairs;
  const at = base + unit.byteOffset;
  if (P === UNIT64_PAIRS) {
    // A 64-weight unit: weights 0-31 are the A weights of pairs 0-31, weights 32-63 the B weights.
    const isB = w0 !== unit.firstWeight;
    return {
      fast: { nibOff: at, lowOff: at + P / 2, highOff: at + P / 2 + P / 4 },
      isB,
      halves: [{ out: 'lo', isB }, { out: 'hi', isB }],
    };
  }
  // A 32-weight unit: its 16 A weights, then its 16 B weights, gathered lane by lane.
  const load = (bytes: number, off: number) => ({ op: LOAD_OF_WIDTH[bytes]!, off: at + off });
  return {
    nib: load(P / 2, 0),
    planes: { low: load(P / 4, P / 2), high: load(P / 8, P / 2 + P / 4) },
    halves: [q35Half(P, 0, false, 'lo'), q35Half(P, 0, true, 'hi')],
  };
}

/**
 * What the decode partial of `scheme` reads for chunk `c` of a block of `weightsPerBlock` weights,
 * in a row whose current block starts `base` bytes after the row pointer (a load's offset).
 */
export function chunkDecode(scheme: WasmScheme, weightsPerBlock: number, c: number, base: number): Record<string, unknown> {
  switch (scheme) {
    case 'nibble':
      // 16 bytes per 32 weights: weight j the low nibble of byte j, weight j + 16 its high nibble.
      return { off: base + SCALE_BYTES + 16 * c };
    case 'int8':
      return { off: base + SCALE_BYTES + 32 * c, offHi: base + SCALE_BYTES + 32 * c + 16 };
    case 'q35':
      return q35Chunk(weightsPerBlock, c, base);
  }
}
