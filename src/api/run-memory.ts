import { constants } from 'node:buffer';
import { totalmem } from 'node:os';
import { KgenError } from '../errors.js';
import type { Op, Shape } from '../ir/types.js';
import { formatShape } from '../ir/validate.js';
import { opKit, type RunBuffer } from '../ops/index.js';

/** Host memory a run of `op` at `shape` needs, by buffer (the op kit's account). */
export function runBuffers(op: Op, shape: Shape): RunBuffer[] {
  return opKit(op.kind).runBuffers(op, shape);
}

function gib(bytes: number): string {
  return bytes >= 2 ** 40 ? `${(bytes / 2 ** 40).toFixed(1)} TiB` : `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/**
 * Refuses, before anything is generated or run, a shape whose test data cannot be allocated: a
 * buffer larger than one allocation may be, or all of them together more than this machine's
 * memory. `who` says what would run (`kgen verify`, `the tuner`). Emit is never limited by this.
 */
export function checkRunFits(req: { op: Op; shape: Shape }, who: string, memoryBytes = totalmem()): void {
  const buffers = runBuffers(req.op, req.shape);
  const total = buffers.reduce((a, b) => a + b.bytes, 0);
  const largest = [...buffers].sort((a, b) => b.bytes - a.bytes)[0];
  const hint = '`kgen emit` works at any shape; verify and tune a smaller one (fewer rows M or N), whose kernel is the same code';
  if (largest && largest.bytes > constants.MAX_LENGTH) {
    throw new KgenError({ field: '--shape', problem: `${who} would allocate ${largest.bytes} bytes (${gib(largest.bytes)}) for ${largest.name} at ${formatShape(req.shape)}, more than one buffer can hold (${gib(constants.MAX_LENGTH)})`, expected: 'a shape whose test data fits in memory', hint });
  }
  if (total > memoryBytes) {
    throw new KgenError({ field: '--shape', problem: `${who} needs ${total} bytes (${gib(total)}) of test data at ${formatShape(req.shape)} but this machine has ${gib(memoryBytes)} of memory`, expected: 'a shape whose test data fits in memory', hint });
  }
}
