import type { TargetName } from '../device/profile.js';
import type { OpKind, WeightFormatName } from '../ir/types.js';
import type { Plan } from '../plan/types.js';

/** What a backend can render; checked before rendering so a gap is a clear error, not a crash. */
export interface BackendCapabilities {
  ops: readonly OpKind[];
  formats: readonly WeightFormatName[];
  /** Instruction-set variants (C) or none. */
  isas: readonly string[];
}

/** Rendered source files by name, plus what the manifest says about them. */
export interface RenderedKernel {
  files: Record<string, string>;
  /** Entry points and their C (or WGSL, JS) signatures, for the manifest's ABI section. */
  abi: AbiEntry[];
  /** Hash of the template text that produced the files (changes when a template changes). */
  templateHash: string;
  /** How to build the files, as the manifest states it. */
  build: string;
}

export interface AbiEntry {
  symbol: string;
  signature: string;
  doc: string;
}

/** Who asked for the source: printed into its header so it can be regenerated. */
export interface RenderContext {
  version: string;
  irHash: string;
  command: string;
}

/**
 * A code generation target: a small interface plus a capability table. Adding a target is one
 * folder under src/backends, one under templates, and one line in the registry.
 */
export interface Backend {
  target: TargetName;
  capabilities: BackendCapabilities;
  render(plan: Plan, ctx: RenderContext): RenderedKernel;
}

/**
 * The outcome of building and running one kernel: data, never a sentinel time. `over_budget` is
 * decided by the plan before anything compiles; the others by compiling, running and comparing.
 */
export type TrialStatus = 'ok' | 'over_budget' | 'compile_error' | 'crash' | 'timeout' | 'wrong_result';
