import { constants } from 'node:buffer';
import { totalmem } from 'node:os';
import { KgenError } from '../errors.js';
import type { MatmulOp, MatmulShape, Op, Shape } from '../ir/types.js';
import { formatShape } from '../ir/validate.js';
import { codecOf } from '../quant/index.js';

/** One host buffer a verify or tune run allocates (in kgen or in the harness process). */
export interface RunBuffer {
  name: string;
  bytes: number;
}

/**
 * The host buffers a run of a matmul allocates at its peak: seeded weights (f32, packed, and
 * dequantized for the reference), activations, the f64 reference and the output, counting the
 * copies the harness process holds. An upper bound: the tuner repeats weight rows and needs less.
 */
export function matmulRunBuffers(op: MatmulOp, shape: MatmulShape): RunBuffer[] {
  const { M, N, K } = shape;
  const codec = codecOf(op.weight);
  const packed = (K / codec.weightsPerBlock) * codec.bytesPerBlock * N;
  const yBytes = M * N * (op.y === 'f16' ? 2 : 4);
  const buffers: RunBuffer[] = [
    { name: 'W as f32', bytes: N * K * 4 },
    { name: 'W dequantized for the reference', bytes: N * K * 4 },
    { name: 'W packed (kgen and the harness)', bytes: 2 * packed },
    { name: 'X (kgen and the harness)', bytes: 2 * M * K * 4 },
    { name: 'the f64 reference output', bytes: M * N * 8 },
    { name: 'Y (the harness and its copy in kgen)', bytes: 2 * yBytes },
  ];
  if (op.epilogue.residual) buffers.push({ name: 'the residual (kgen and the harness)', bytes: 2 * yBytes });
  return buffers;
}

/** Host memory a run of `op` at `shape` needs, by buffer. */
export function runBuffers(op: Op, shape: Shape): RunBuffer[] {
  return op.kind === 'matmul' ? matmulRunBuffers(op, shape as MatmulShape) : [];
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
