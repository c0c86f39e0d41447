import type { TargetName } from '../device/profile.js';
import { KgenError } from '../errors.js';
import { cBackend } from './c/index.js';
import { cudaBackend } from './cuda/index.js';
import type { Backend } from './types.js';

/** Rendering backends by target; one line per target. */
const BACKENDS: Partial<Record<TargetName, Backend>> = {
  c: cBackend,
  cuda: cudaBackend,
};

export function backendFor(target: TargetName): Backend {
  const b = BACKENDS[target];
  if (!b) {
    throw new KgenError({
      field: '--target',
      problem: `the ${target} backend is planned but not implemented yet (its plans and budgets already work: see \`kgen plan --target ${target}\`)`,
      expected: `one of ${Object.keys(BACKENDS).join(', ')}`,
      hint: 'use --target c',
    });
  }
  return b;
}

export function implementedTargets(): TargetName[] {
  return Object.keys(BACKENDS) as TargetName[];
}
