import { targetFor } from '../backends/registry.js';
import { withManifest, type EmitResult } from './emit.js';

/**
 * An emitted kernel with what its backend's compiler assigned to it (CUDA: ptxas's registers,
 * spills and static shared memory) in its manifest's `resources`, plus notes for the caller. Kept
 * apart from `emit`, which stays pure and synchronous: a backend's check compiles. A backend
 * without one returns the result unchanged.
 */
export async function withResources(result: EmitResult): Promise<{ result: EmitResult; notes: string[] }> {
  const inspect = targetFor(result.plan.target).backend?.resources;
  if (!inspect) return { result, notes: [] };
  const { resources, notes } = await inspect(result.plan, result.rendered);
  if (!resources) return { result, notes };
  return { result: withManifest(result, { ...result.manifest, resources }), notes };
}
