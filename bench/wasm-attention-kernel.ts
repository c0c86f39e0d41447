/**
 * A WebAssembly attention kernel as the wasm benches time it: emitted into its own folder (kernel
 * files and binaries) and its loader imported, and one shared memory holding every buffer.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as kgen from '../src/index.js';

const ALIGN = 64;
const PAGE = 65536;
/** f16 bits of 2^-7: K and V scales that keep the scores and sums normal. */
const F16_SMALL = 0x2000;

export type Sizes = Record<'q' | 'k' | 'k_scales' | 'v' | 'v_scales' | 'o' | 'workspace', number>;
export interface Threaded {
  run(q: number, k: number, kScales: number, v: number, vScales: number, o: number, workspace: number, kvLen?: number): Promise<void>;
  close(): void;
}
export interface AttentionLoader {
  sizes: Sizes;
  loadThreaded(o: { memory: WebAssembly.Memory; threads: number }): Promise<Threaded>;
}

/** Emits a WebAssembly attention kernel with `emit` (this build's or another's) into `dir` and imports its loader. */
export async function wasmAttentionKernel(emit: typeof kgen.emit, dir: string, ir: Record<string, unknown>, shape: string, config?: Record<string, number>): Promise<AttentionLoader> {
  const e = emit({ target: 'wasm', ir, shape, ...(config ? { config } : {}) });
  const built = await e.rendered.binaries!();
  if ('error' in built) throw new Error(built.error);
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries({ ...e.rendered.files, ...built.files })) writeFileSync(join(dir, name), content);
  return (await import(pathToFileURL(join(dir, 'kernel.mjs')).href)) as AttentionLoader;
}

/**
 * A shared memory holding every buffer of `sizes` (offsets in `at`), every 16-bit word of it
 * F16_SMALL: Q, an f16 cache and every scale small normal f16 values, the codes of the others
 * small integers (the work does not depend on them; random f16 bits would be NaN and subnormals).
 */
export function memoryFor(sizes: Sizes) {
  const up = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
  const at = {} as Record<keyof Sizes, number>;
  let o = ALIGN;
  for (const name of Object.keys(sizes) as (keyof Sizes)[]) {
    at[name] = o;
    o += up(sizes[name]) + ALIGN;
  }
  const pages = Math.ceil(o / PAGE);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  new Uint16Array(memory.buffer).fill(F16_SMALL);
  return { memory, at };
}
