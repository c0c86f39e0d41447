/**
 * The load-time probe of `i32x4.relaxed_dot_i8x16_i7x16_add_s` and `i16x8.relaxed_dot_i8x16_i7x16_s`
 * (as XNNPACK probes relaxed SIMD): a tiny module that runs both on known inputs, of the kind the
 * kernels give them (first operand int8 in [-127, 127], second in [0, 127], a non-zero accumulator),
 * and returns 1 only when every lane is the exact sum the kernels rely on (pair sums of such
 * products fit in i16, so the i16 form has no saturation to differ in). A loader uses kernel.relaxed.wasm only where the
 * probe compiles, instantiates and returns 1; anywhere else (an engine without relaxed SIMD, or one
 * that computes it differently, such as Node 20's Liftoff baseline compiler, which returns twice
 * the dot product and drops the accumulator) it takes kernel.wasm.
 */

/** Activation-like bytes: both extremes, zero, small and mixed signs. */
const A = [-127, 127, -1, 5, 100, -100, 3, -7, 1, 2, 3, 4, -127, -127, -127, -127];
/** Weight codes: the ends of [0, 127] and values in between. */
const B = [127, 127, 0, 1, 64, 3, 127, 0, 1, 1, 1, 1, 127, 127, 127, 127];
/** Accumulators, so an engine that drops or doubles them is caught. */
const C = [1, -2, 3, 100000];

function expected(): number[] {
  return C.map((c, lane) => c + [0, 1, 2, 3].reduce((s, j) => s + A[4 * lane + j]! * B[4 * lane + j]!, 0));
}

/** The i16 form's lanes: each the sum of one pair of products, no accumulator. */
function expected16(): number[] {
  return Array.from({ length: 8 }, (_, lane) => A[2 * lane]! * B[2 * lane]! + A[2 * lane + 1]! * B[2 * lane + 1]!);
}

function i16Bytes(v: number[]): number[] {
  const out = new Uint8Array(2 * v.length);
  v.forEach((x, i) => new DataView(out.buffer).setInt16(2 * i, x, true));
  return [...out];
}

/** Bytes as a WebAssembly text data string (`\hh` escapes). */
function dataString(bytes: number[]): string {
  return bytes.map((b) => `\\${(b & 255).toString(16).padStart(2, '0')}`).join('');
}

function i32Bytes(v: number[]): number[] {
  const out = new Uint8Array(4 * v.length);
  v.forEach((x, i) => new DataView(out.buffer).setInt32(4 * i, x, true));
  return [...out];
}

/** The view of templates/wasm/probe.wat.hbs: inputs at byte offsets 0, 16 and 32, the expected lanes at 48 and 64. */
export const RELAXED_DOT = {
  data: dataString([...A, ...B, ...i32Bytes(C), ...i32Bytes(expected()), ...i16Bytes(expected16())]),
  a: 0,
  b: 16,
  c: 32,
  expected: 48,
  expected16: 64,
};

/** What the probe computes, in the test's terms: the inputs and the lanes a correct engine returns. */
export const RELAXED_DOT_CASE = { a: A, b: B, c: C, expected: expected(), expected16: expected16() };
