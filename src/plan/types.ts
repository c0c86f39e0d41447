import type { DeviceProfile } from '../device/profile.js';
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
  unit: 'bytes' | 'threads' | 'registers' | 'bindings' | 'workgroups' | 'blocks';
  /**
   * What to do when no config of a shape fits this budget (the hint of `defaultConfig`'s
   * BudgetError): said by the planner that knows the limit (split the op along a dimension, another
   * target or device), since no knob of the space can help by then.
   */
  remedy: string;
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
  /** CPU matmul: output rows, the `_rows` entry's range, which a caller may split across threads. */
  rows?: number;
  /** CPU attention: tasks, the `_tasks` entry's range, which a caller may split across threads. */
  tasks?: number;
  /** CPU attention with KV splits: output rows, the `_merge` entry's range (after every task), split the same way; absent: no merge. */
  mergeRows?: number;
  /**
   * WebAssembly CPU attention: when loadThreaded hands a range to its workers, a round of shares
   * paying for itself only past some work. `tasksFromKvLen`, by thread count (2 up): the fewest KV
   * positions a call reads (kvLen; a fixed length: Skv) from which its tasks go to the workers;
   * `mergeFromThreads`: the fewest threads from which the merge's rows do (absent: never). Below
   * either, the calling thread runs the whole range alone, with no worker round.
   */
  workers?: { tasksFromKvLen: Record<number, number>; mergeFromThreads?: number };
  /**
   * Bytes of device memory the caller passes besides the tensors, for the kernel's own use between
   * launches (CUDA split-KV decode: every split's partial results); 0 or absent: none.
   */
  workspaceBytes?: number;
  /** A kernel the entry point launches after the first, on the same stream (CUDA split-KV decode: the merge). */
  secondPass?: { what: string; grid: [number, number, number]; block: [number, number, number]; gridExpr: [string, string, string] };
}

/**
 * The plan families, by name: which op and shape a family plans and the type of its `params`
 * (every number and flag its templates print). Each planner file adds its own family here by
 * declaration merging (`declare module './types.js' { interface PlanFamilies { ... } }`), so a new
 * planner needs no edit of this file, and a renderer reads its family's params without casts.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface PlanFamilies {}

/** What every family entry of `PlanFamilies` holds. */
export interface PlanFamilyTypes {
  op: Op;
  shape: Shape;
  params: Record<string, number | string | boolean>;
}

export type PlanFamily = keyof PlanFamilies;

/** A registered family's op, shape and params types (never for one whose entry lacks them). */
export type FamilyTypes<F extends PlanFamily> = PlanFamilies[F] extends PlanFamilyTypes ? PlanFamilies[F] : never;

/**
 * A kernel plan: everything a template prints and everything the budget check needs, computed
 * once from (op, shape, device, target, config). Invariants: `config` is complete (every knob of
 * the space has a value); `budgets` has been checked (a `Plan` that exists is legal unless it was
 * made with `allowOverBudget` for the tuner's records); templates read numbers only from `params`.
 */
export interface PlanOf<F extends PlanFamily> {
  /** Which planner made it, naming the type of `params`. */
  family: F;
  op: FamilyTypes<F>['op'];
  shape: FamilyTypes<F>['shape'];
  target: string;
  /** The device's profile name, as records, manifests and emitted commands give it (`profile.name`). */
  device: string;
  /**
   * The profile the plan was made for (`PlanRequest.device`): renderers and runners read the
   * device's figures here, never by looking its name up again (a caller's own profile has no
   * file kgen could find by name).
   */
  profile: DeviceProfile;
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
  params: FamilyTypes<F>['params'];
}

/** Any plan: the union over the registered families. */
export type Plan = { [F in PlanFamily]: PlanOf<F> }[PlanFamily];

/** What a planner computes; `planWith` adds the knobs in use, which depend only on the space, and the request's profile. */
export type PlanBody<F extends PlanFamily> = Omit<PlanOf<F>, 'knobsInUse' | 'profile'>;

/**
 * What a plan is asked for. `planner` is the target's planner for the op's kind (the target
 * registry, src/backends/registry.ts, fills it in: `planRequest`).
 */
export interface PlanRequest {
  op: Op;
  shape: Shape;
  device: DeviceProfile;
  target: string;
  planner: Planner;
}

/** A request for an op and shape of known types. */
export type PlanRequestFor<O extends Op, S extends Shape> = Omit<PlanRequest, 'op' | 'shape'> & { op: O; shape: S };

/** A request as a family's planner sees it: its op and shape types. */
export type PlanRequestOf<F extends PlanFamily> = PlanRequestFor<FamilyTypes<F>['op'], FamilyTypes<F>['shape']>;

/**
 * One target's planner for one op kind, in its own file (src/plan/<target>-<op>.ts), in that
 * target's vocabulary: the search space (knobs in preference order, restrictions) and the plan of
 * a complete config.
 */
export interface PlannerOf<F extends PlanFamily> {
  family: F;
  space(req: PlanRequestOf<F>): SearchSpace;
  plan(req: PlanRequestOf<F>, config: Config): PlanBody<F>;
}

/** Any planner. */
export type Planner = { [F in PlanFamily]: PlannerOf<F> }[PlanFamily];
