/**
 * Where the WebAssembly GEMV benches (wasm-decode-driver.ts, wasm-gemv-ab.ts) put one call's
 * tensors in a memory, and the weight bytes they time: arbitrary codes (a fixed LCG; decode work
 * does not depend on them) with each block's f16 scale set, so the f32 sums stay normal.
 */

/** Alignment of each tensor in the memory. */
export const GEMV_ALIGN = 64;

/** Byte offsets of X, Y, the workspace and W (each GEMV_ALIGN-aligned, W one alignment past the workspace), and the end. */
export function gemvLayout(xBytes: number, yBytes: number, workspaceBytes: number, wBytes: number): { x: number; y: number; workspace: number; w: number; end: number } {
  const up = (n: number) => Math.ceil(n / GEMV_ALIGN) * GEMV_ALIGN;
  const x = GEMV_ALIGN;
  const y = x + up(xBytes);
  const workspace = y + up(yBytes) + GEMV_ALIGN;
  const w = up(workspace + workspaceBytes + GEMV_ALIGN);
  return { x, y, workspace, w, end: w + wBytes };
}

/** `bytes` weight bytes: LCG codes, each `blockBytes` block's first two bytes the f16 `scales[b % scales.length]`. */
export function gemvWeightBytes(bytes: number, blockBytes: number, scales: readonly number[]): Uint8Array {
  let seed = 12345;
  const w = new Uint8Array(bytes).map(() => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
  const view = new DataView(w.buffer);
  for (let b = 0; b < bytes; b += blockBytes) view.setUint16(b, scales[(b / blockBytes) % scales.length]!, true);
  return w;
}
