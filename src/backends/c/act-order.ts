/**
 * The order in which a C decoder yields the weights of one activation block, as the order prepare
 * stores the block's int8 activations in. Storing activations in the decoder's order once per call
 * lets every weight row skip the shuffles that would restore natural order.
 */

/** Decode schemes of the C backend (one decode partial per scheme and ISA). */
export type DecodeScheme = 'nibble' | 'int8' | 'q35' | 'none';

/** `order[j]` = which activation of the block sits at position j, or undefined for natural order. */
export function activationOrder(scheme: DecodeScheme, isa: string, actBlock: number): number[] | undefined {
  if (isa === 'avx2' && scheme === 'nibble' && actBlock === 64) {
    // One 32-byte load = two chunks: low nibbles are weights 0-15 | 32-47, high nibbles 16-31 | 48-63.
    return [...range(0, 16), ...range(32, 48), ...range(16, 32), ...range(48, 64)];
  }
  if (isa === 'avx2' && scheme === 'q35') {
    // Per chunk of 32 (two 7-byte units of 8 pairs (i, i+8)): A values of unit 0 and 1 = weights
    // 0-7 and 16-23, B values = 8-15 and 24-31. 64: two chunks, A vector then B vector.
    if (actBlock === 32) return [...range(0, 8), ...range(16, 24), ...range(8, 16), ...range(24, 32)];
    return [...range(0, 8), ...range(16, 24), ...range(32, 40), ...range(48, 56), ...range(8, 16), ...range(24, 32), ...range(40, 48), ...range(56, 64)];
  }
  if (isa === 'avx512' && scheme === 'q35') {
    // Each 16-bit word holds pair i of a unit: A weight i in the low byte, B weight i + 8 in the high.
    return Array.from({ length: actBlock }, (_, j) => 16 * Math.floor(j / 16) + ((j % 16) >> 1) + 8 * (j % 2));
  }
  return undefined;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}
