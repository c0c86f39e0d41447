import { ToolMissingError } from '../../errors.js';
import type { Plan } from '../../plan/types.js';
import type { RenderedKernel, ResourceReport } from '../types.js';
import { ptxasCheck } from './ptxas.js';

/**
 * What ptxas assigned to an emitted CUDA kernel (registers, spills, static shared memory), for the
 * manifest's `resources`, plus notes for the caller. It compiles (about a second) and needs nvcc:
 * without nvcc there is no report and a note says so; so does an arch this nvcc does not list (ruled
 * out before compiling). A source nvcc refuses is a note too (a kgen bug), as is a static
 * shared-memory size that differs from the plan's. `opts.nvcc`: the nvcc command (default on PATH).
 */
export async function ptxasResources(plan: Plan, kernel: RenderedKernel, opts: { nvcc?: string } = {}): Promise<ResourceReport> {
  const arch = kernel.arch;
  if (!arch || (plan.family !== 'cuda-matmul' && plan.family !== 'cuda-attention')) return { notes: [] };
  let check;
  try {
    check = await ptxasCheck(kernel, { arch, nvcc: opts.nvcc });
  } catch (e) {
    if (e instanceof ToolMissingError) return { notes: [`${e.field} not found: manifest.json has no ptxas figures (registers, spills)`] };
    throw e;
  }
  // This nvcc lacking the profile's arch is the toolkit's limit, not a fault in the kernel.
  if (check.status === 'arch_unsupported') return { notes: [`this nvcc cannot build for ${arch} (${check.detail}): manifest.json has no ptxas figures; build the kernel with a CUDA toolkit that supports ${arch}`] };
  if (check.status === 'compile_error') {
    const first = check.detail.split('\n')[0];
    if (!check.archsListed) return { notes: [`nvcc could not compile the emitted kernel: ${first}; this nvcc does not list the architectures it supports (\`nvcc --list-gpu-code\`, CUDA 11.0 and later), so it may lack ${arch}; if a toolkit that supports ${arch} fails too, please report it`] };
    return { notes: [`nvcc could not compile the emitted kernel (please report): ${first}`] };
  }
  // The plan's own kernel (its entry is named after the variant); a second pass (the split-KV merge) is noted.
  const main = check.entries.find((e) => e.entry.includes(plan.variant)) ?? check.entries[0]!;
  const report = { ...check.report, ...main };
  const notes = check.entries.map((e) => `ptxas (${arch}) ${e === main ? 'kernel' : e.entry}: ${e.registers} registers, ${e.spillStores + e.spillLoads} spill bytes, ${e.sharedBytes} bytes static shared memory`);
  const planned = plan.params.smemStatic;
  if (report.sharedBytes !== planned) notes.push(`ptxas counts ${report.sharedBytes} bytes of static shared memory but the plan ${planned} (please report)`);
  return { resources: { ...report }, notes };
}
