import type { PtxasOptions, PtxasReport } from '../backends/cuda/ptxas.js';
import { ptxasCheck } from '../backends/cuda/ptxas.js';
import { ToolMissingError } from '../errors.js';
import type { EmitResult } from './emit.js';

/**
 * An emitted CUDA kernel with what ptxas assigned to it (registers, spills, static shared memory)
 * in its manifest's `resources`, plus notes for the caller. Kept apart from `emit`, which stays pure
 * and synchronous: this compiles (about a second) and needs nvcc. Without nvcc the result is
 * returned unchanged with a note saying so; a source nvcc refuses is a note too (a kgen bug).
 */
export async function withPtxasResources(result: EmitResult, opts: Omit<PtxasOptions, 'arch'> = {}): Promise<{ result: EmitResult; notes: string[] }> {
  const arch = result.rendered.arch;
  if (result.plan.target !== 'cuda' || !arch) return { result, notes: [] };
  let check;
  try {
    check = await ptxasCheck(result.rendered, { ...opts, arch });
  } catch (e) {
    if (e instanceof ToolMissingError) return { result, notes: [`${e.field} not found: manifest.json has no ptxas figures (registers, spills)`] };
    throw e;
  }
  if (check.status !== 'ok') return { result, notes: [`nvcc could not compile the emitted kernel (please report): ${check.detail.split('\n')[0]}`] };
  const report: PtxasReport = check.report;
  const manifest = { ...result.manifest, resources: report };
  const notes = [`ptxas (${arch}): ${report.registers} registers, ${report.spillStores + report.spillLoads} spill bytes, ${report.sharedBytes} bytes static shared memory`];
  const planned = result.plan.params.smemStatic as number;
  if (report.sharedBytes !== planned) notes.push(`ptxas counts ${report.sharedBytes} bytes of static shared memory but the plan ${planned} (please report)`);
  return { result: { ...result, manifest, files: { ...result.files, 'manifest.json': `${JSON.stringify(manifest, null, 2)}\n` } }, notes };
}
