/** kgen's 4-bit nibble blocks (ggml q4_0, kgen q4) in onnxruntime's MatMulNBits layout. */
import { readScale } from '../src/quant/scalar-codes.js';

export interface OrtWeights {
  /** uint8 [N, K/G, G/2]. */
  b: Uint8Array;
  /** f32 [N * K/G]. */
  scales: Float32Array;
}

/**
 * Re-packs blocks of G 4-bit weights stored as `{f16 d; u8 qs[G/2]}` with runs of 32 weights in
 * 16 bytes (weight j < 16 of a run in the low nibble of its byte j, j + 16 in the high nibble): ggml
 * q4_0 (G = 32) and kgen q4 (any G, docs/formats.md) into MatMulNBits' layout (weight 2i in the low
 * nibble of byte i, 2i+1 in the high nibble; f32 scales). Both decode to (code - 8) * d, so the
 * two compute the same product.
 */
export function nibbleBlocksToOrt(bytes: Uint8Array, N: number, K: number, G: number): OrtWeights {
  const blocks = (N * K) / G;
  const blockBytes = 2 + G / 2;
  const b = new Uint8Array(blocks * (G / 2));
  const scales = new Float32Array(blocks);
  const codes = new Uint8Array(G);
  for (let blk = 0; blk < blocks; blk++) {
    const src = blk * blockBytes;
    scales[blk] = readScale(bytes, src);
    for (let run = 0; run < G / 32; run++) {
      for (let j = 0; j < 16; j++) {
        const byte = bytes[src + 2 + run * 16 + j]!;
        codes[run * 32 + j] = byte & 0x0f;
        codes[run * 32 + j + 16] = byte >>> 4;
      }
    }
    for (let i = 0; i < G / 2; i++) b[blk * (G / 2) + i] = codes[2 * i]! | (codes[2 * i + 1]! << 4);
  }
  return { b, scales };
}

/** ggml q4_0 bytes (18-byte blocks of 32) in MatMulNBits' layout. */
export function q4_0ToOrt(q40: Uint8Array, N: number, K: number): OrtWeights {
  return nibbleBlocksToOrt(q40, N, K, 32);
}
