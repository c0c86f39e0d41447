import type { DeviceProfile, TargetName } from '../device/profile.js';
import type { Op, Shape } from '../ir/types.js';
import type { Tolerance } from '../reference/compare.js';

export type ConfigValue = number | string;
/** The inputs of a plan that a user or the tuner chooses: tile sizes, threads, ISA, ... */
export type Config = Record<string, ConfigValue>;

/**
 * One tunable dimension of a search space. `values` are in order of preference: the default config
 * is the first legal combination in that order.
 */
export interface Knob {
  name: string;
  values: readonly ConfigValue[];
  doc: string;
  /**
   * When the knob matters, judged from the knobs listed before it (e.g. a tiled-kernel knob only
   * when `kernel` is `tiled`). Where it does not, enumeration holds it at its first value instead
   * of multiplying the space by configs that render the same kernel.
   */
  when?: (earlier: Config) => boolean;
}

/** A rule that rules configs out before anything is planned, with the reason counted on pruning. */
export interface Restriction {
  reason: string;
  allows(config: Config): boolean;
}

export interface SearchSpace {
  knobs: Knob[];
  restrictions: Restriction[];
}

/** Where an on-chip buffer lives: GPU shared/workgroup memory, CPU cache share, or registers. */
export type MemorySpace = 'shared' | 'registers' | 'l1' | 'l2';

export interface OnChipBuffer {
  name: string;
  space: MemorySpace;
  /** Bytes for `shared`/`l1`/`l2`; vector or scalar registers for `registers`. */
  size: number;
  why: string;
}

/** One limit checked against the device. A plan is legal iff every check has needed <= available. */
export interface BudgetCheck {
  budget: string;
  needed: number;
  available: number;
  unit: 'bytes' | 'threads' | 'registers';
}

export interface LaunchShape {
  /** GPU grid (blocks/workgroups) and block (threads), as bound for this shape. */
  grid?: [number, number, number];
  block?: [number, number, number];
  /** CUDA: the grid as formulas of the shape's dimensions (`ceil(N / 128)`), which `grid` evaluates. */
  gridExpr?: [string, string, string];
  /** CUDA: shared memory per block in bytes; static when it fits the static limit, else dynamic (opt-in). */
  sharedBytes?: number;
  dynamicShared?: boolean;
  /** CPU: independent units of work (output rows) a caller may split across threads. */
  rows?: number;
}

/**
 * A kernel plan: everything a template prints and everything the budget check needs, computed
 * once from (op, shape, device, target, config). Invariants: `config` is complete (every knob of
 * the space has a value); `budgets` has been checked (a `Plan` that exists is legal unless it was
 * made with `allowOverBudget` for the tuner's records); templates read numbers only from `params`.
 */
export interface Plan {
  op: Op;
  shape: Shape;
  target: TargetName;
  device: string;
  config: Config;
  /**
   * The knobs that shape this kernel, in space order: those without a `when` or whose `when` holds.
   * The others stay in `config` at their first values (so hashes stay those of enumerated configs)
   * but are left out where a config is shown to a person (`configInUse`).
   */
  knobsInUse: string[];
  variant: string;
  launch: LaunchShape;
  /** Loop nest, outermost first, as human-readable lines for manifests and `--dry-run`. */
  loops: string[];
  buffers: OnChipBuffer[];
  budgets: BudgetCheck[];
  tolerance: Tolerance;
  /** Bytes that must cross the memory bus at least once, and arithmetic work, for rooflines. */
  traffic: { bytes: number; flops: number };
  /** Every number and flag a template prints. */
  params: Record<string, number | string | boolean>;
}

/** What an op planner computes; `planWith` adds the knobs in use, which depend only on the space. */
export type PlanBody = Omit<Plan, 'knobsInUse'>;

export interface PlanRequest {
  op: Op;
  shape: Shape;
  device: DeviceProfile;
  target: TargetName;
}

/** The per-op planner: one file per op in this folder, each with this shape. */
export interface OpPlanner<O extends Op, S extends Shape> {
  space(req: PlanRequest & { op: O; shape: S }): SearchSpace;
  /** The plan of a complete config; `planWith` adds which knobs are in use. */
  plan(req: PlanRequest & { op: O; shape: S }, config: Config): PlanBody;
}
