/**
 * The order in which a C decoder yields the weights of one activation block, as the order prepare
 * stores the block's int8 activations in. Storing activations in the decoder's order once per call
 * lets every weight row skip the shuffles that would restore natural order.
 */

/** Decode schemes of the C backend (one decode partial per scheme and ISA). */
export type DecodeScheme = 'nibble' | 'int8' | 'q35' | 'none';

/**
 * `order[j]` = which activation of the block sits at position j, or undefined for natural order,
 * for the decoder partial `decode/<scheme>_<decoder>` (an ISA's, or `vnni`).
 * The panel GEMM path decodes weights once into natural order, so its activations stay natural.
 */
export function activationOrder(scheme: DecodeScheme, decoder: string, actBlock: number, panel = false): number[] | undefined {
  if (panel) return undefined;
  if (decoder === 'avx2' && scheme === 'nibble' && actBlock === 64) {
    // One 32-byte load = two chunks: low nibbles are weights 0-15 | 32-47, high nibbles 16-31 | 48-63.
    return [...range(0, 16), ...range(32, 48), ...range(16, 32), ...range(48, 64)];
  }
  return undefined;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}
