import { alignUp } from '../../plan/common.js';
import type { BudgetCheck } from '../../plan/types.js';

/**
 * The memory every WebAssembly kernel imports: the host's, plain or shared (threads). A module
 * declares the fewest pages any host memory has and, shared, the most a 32-bit memory holds (a
 * shared memory needs a maximum).
 */

/** Bytes of a WebAssembly page, and the most pages of a 32-bit memory. */
export const PAGE_BYTES = 65536;
export const MEMORY_MAX_PAGES = 65536;
const MEMORY_MIN_PAGES = 1;

/**
 * The plan budget every WebAssembly kernel has beside the cache's: its buffers as the harness places
 * them (`placeBuffers`: tensors, weights and workspace, from byte 16, aligned) end within the 4 GiB
 * a 32-bit memory addresses. Past it the memory cannot grow to hold them, and an i32 byte offset
 * past 2^32 - 1 would wrap.
 */
export function memoryBudget(placedEnd: number): BudgetCheck {
  return {
    budget: 'bytes of one 32-bit WebAssembly memory (tensors, weights and workspace as placed)',
    needed: placedEnd,
    available: MEMORY_MAX_PAGES * PAGE_BYTES,
    unit: 'bytes',
    remedy: 'split the op across calls (along M, or N for the weights; batch or positions for attention) so each fits 4 GiB, or use the C target, which addresses more',
  };
}

/** `memory` of a module's view: the import's limits and how the header names it. */
export function memoryView(shared: boolean) {
  return { min: MEMORY_MIN_PAGES, max: MEMORY_MAX_PAGES, shared, text: shared ? 'shared, for threads' : 'not shared' };
}

/** Buffers placed in a memory start on a v128 boundary, one v128 apart, and never at offset 0 (the null pointer). */
export const BUFFER_ALIGN = 16;

/**
 * Places buffers one after another from `start` (default BUFFER_ALIGN: offset 0 stays the null
 * pointer), each BUFFER_ALIGN-aligned with a gap of BUFFER_ALIGN after it; `end` is where the
 * next buffer would go. With `emptyIsNull`, a 0-byte buffer (one the op does not have) is the null
 * pointer and takes no room, as the kernels expect of a package's memory; without, it gets a
 * place of its own (a harness passes every pointer).
 */
export function placeBuffers<K extends string>(sizes: Readonly<Record<K, number>>, o: { start?: number; emptyIsNull?: boolean } = {}): { at: Record<K, number>; end: number } {
  const at = {} as Record<K, number>;
  let end = o.start ?? BUFFER_ALIGN;
  for (const [name, bytes] of Object.entries(sizes) as [K, number][]) {
    if (o.emptyIsNull && bytes === 0) {
      at[name] = 0;
      continue;
    }
    at[name] = end;
    end += alignUp(bytes, BUFFER_ALIGN) + BUFFER_ALIGN;
  }
  return { at, end };
}
