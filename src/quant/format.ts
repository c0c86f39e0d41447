import type { WeightFormatName, WeightSpec } from '../ir/types.js';

/**
 * How one block of weights is stored. A row of K weights is K / weightsPerBlock blocks laid end to
 * end, and a matrix W[N,K] is its N rows laid end to end (`rowBytes * N` bytes, no padding).
 *
 * Invariants: `quantizeBlock` writes exactly `bytesPerBlock` bytes; `dequantizeBlock` reads only
 * those bytes and writes exactly `weightsPerBlock` values; dequantize(quantize(x)) is the value the
 * kernels compute with, bit for bit, once the f16 scale has been widened to f32.
 */
export interface BlockCodec {
  readonly weightsPerBlock: number;
  readonly bytesPerBlock: number;
  /** Bytes of the f16 scale that opens each block (0 where a block has none); its codes follow. */
  readonly scaleBytes: number;
  quantizeBlock(src: Float32Array, srcOffset: number, dst: Uint8Array, dstOffset: number): void;
  dequantizeBlock(src: Uint8Array, srcOffset: number, dst: Float32Array, dstOffset: number): void;
}

/** A weight format: a family of block codecs, one per group size. */
export interface WeightFormat {
  readonly name: WeightFormatName;
  /** One line for `kgen ops` and manifests. */
  readonly summary: string;
  /**
   * Version of the byte layout kernels read and `kgen pack` writes; raised whenever bytes of the
   * old layout would decode to other values. Manifests state it (`weights.formatVersion`).
   */
  readonly version: number;
  codec(groupSize: number | undefined): BlockCodec;
}

export function bitsPerWeight(codec: BlockCodec): number {
  return (codec.bytesPerBlock * 8) / codec.weightsPerBlock;
}

export function rowBytes(codec: BlockCodec, K: number): number {
  return (K / codec.weightsPerBlock) * codec.bytesPerBlock;
}

/** Quantizes row-major W[N,K] into the format's bytes. K must be a multiple of the block size. */
export function quantizeMatrix(codec: BlockCodec, w: Float32Array, N: number, K: number): Uint8Array {
  const blocksPerRow = K / codec.weightsPerBlock;
  const out = new Uint8Array(N * blocksPerRow * codec.bytesPerBlock);
  for (let b = 0; b < N * blocksPerRow; b++) {
    codec.quantizeBlock(w, b * codec.weightsPerBlock, out, b * codec.bytesPerBlock);
  }
  return out;
}

/** Inverse of `quantizeMatrix`: the f32 values the kernels multiply with. */
export function dequantizeMatrix(codec: BlockCodec, bytes: Uint8Array, N: number, K: number): Float32Array {
  const blocksPerRow = K / codec.weightsPerBlock;
  const out = new Float32Array(N * K);
  for (let b = 0; b < N * blocksPerRow; b++) {
    codec.dequantizeBlock(bytes, b * codec.bytesPerBlock, out, b * codec.weightsPerBlock);
  }
  return out;
}

/**
 * The index of the first weight whose block decodes to a non-finite value (its f16 scale
 * overflowed: ggml's q4_0 and q8_0 past |w| ~5.2e5 and ~8.3e6, f16 weights past 65504); undefined
 * where every weight decodes to a finite value.
 */
export function firstNonFiniteWeight(codec: BlockCodec, bytes: Uint8Array, N: number, K: number): number | undefined {
  const block = new Float32Array(codec.weightsPerBlock);
  const blocks = (N * K) / codec.weightsPerBlock;
  for (let b = 0; b < blocks; b++) {
    codec.dequantizeBlock(bytes, b * codec.bytesPerBlock, block, 0);
    const j = block.findIndex((v) => !Number.isFinite(v));
    if (j >= 0) return b * codec.weightsPerBlock + j;
  }
  return undefined;
}
