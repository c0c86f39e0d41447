import type { WeightFormatName } from '../../ir/types.js';
import { q35Units, slicedAt } from '../../quant/q35.js';

/**
 * How the WebAssembly kernels decode one 32-weight chunk of a weight block into two i8x16 vectors
 * (weights 0-15 and 16-31 of the chunk, natural order, so prepared activations stay in natural
 * order): byte offsets from the block's start and the lane constants of each format's decode, all
 * computed here from the byte layouts of src/quant (docs/formats.md).
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
  if (values.length !== 16) throw new Error(`kgen: an i8x16 constant needs 16 lanes, got ${values.length}`);
  return values.join(' ');
}

/** One q3.5 half chunk: 16 pairs p0..p0+15 of a unit of P pairs, decoded with table A or B. */
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

/** The loads and lane constants of chunk `c` (weights 32c .. 32c + 31) of a q3.5 group of G weights. */
function q35Chunk(G: number, c: number) {
  const w0 = 32 * c;
  const unit = q35Units(G).find((u) => u.firstWeight <= w0 && w0 < u.firstWeight + 2 * u.pairs)!;
  const P = unit.pairs;
  const load = (bytes: number, off: number) => ({ op: LOAD_OF_WIDTH[bytes]!, off: unit.byteOffset + off });
  const nib = load(P / 2, 0);
  const planes = { low: load(P / 4, P / 2), high: load(P / 8, P / 2 + P / 4) };
  if (P === 16) {
    // A 32-weight unit: its 16 A weights, then its 16 B weights.
    return { nib, planes, halves: [q35Half(P, 0, false, 'lo'), q35Half(P, 0, true, 'hi')] };
  }
  // A 64-weight unit: weights 0-31 are the A weights of pairs 0-31, weights 32-63 the B weights.
  const isB = w0 !== unit.firstWeight;
  return { nib, planes: isB ? planes : undefined, halves: [q35Half(P, 0, isB, 'lo'), q35Half(P, 16, isB, 'hi')] };
}

/** What the decode partial of `scheme` reads for chunk `c` of a block of `weightsPerBlock` weights. */
export function chunkDecode(scheme: WasmScheme, weightsPerBlock: number, c: number): Record<string, unknown> {
  switch (scheme) {
    case 'nibble':
      // 16 bytes per 32 weights: weight j the low nibble of byte j, weight j + 16 its high nibble.
      return { off: SCALE_BYTES + 16 * c };
    case 'int8':
      return { off: SCALE_BYTES + 32 * c, offHi: SCALE_BYTES + 32 * c + 16 };
    case 'q35':
      return q35Chunk(weightsPerBlock, c);
  }
}
