/**
 * The memory every WebAssembly kernel imports: the host's, plain or shared (threads). A module
 * declares the fewest pages any host memory has and, shared, the most a 32-bit memory holds (a
 * shared memory needs a maximum).
 */

/** Bytes of a WebAssembly page, and the most pages of a 32-bit memory. */
export const PAGE_BYTES = 65536;
export const MEMORY_MAX_PAGES = 65536;
const MEMORY_MIN_PAGES = 1;

/** `memory` of a module's view: the import's limits and how the header names it. */
export function memoryView(shared: boolean) {
  return { min: MEMORY_MIN_PAGES, max: MEMORY_MAX_PAGES, shared, text: shared ? 'shared, for threads' : 'not shared' };
}
