import type { DeviceProfile } from '../device/profile.js';
import { BudgetError, KgenError } from '../errors.js';
import { canonicalJson } from '../hash.js';
import { CATALOG } from '../ir/catalog.js';
import { isMatmulOp } from '../ir/matmul.js';
import type { AttentionOp, MatmulOp, Op, Shape } from '../ir/types.js';
import { knobError } from './common.js';
import type { BudgetCheck, Config, Knob, Plan, PlanFamily, PlannerOf, PlanRequest, SearchSpace } from './types.js';

export * from './types.js';

/**
 * The request's planner as one family's: the registry that filled `req.planner` matched it to the
 * op's kind, so the request is that family's (the one place the union meets a planner).
 */
function familyPlanner(req: PlanRequest): PlannerOf<Plan['family']> {
  return req.planner as PlannerOf<Plan['family']>;
}

export function spaceFor(req: PlanRequest): SearchSpace {
  checkTarget(req.device, req.target);
  return familyPlanner(req).space(req as never);
}

/**
 * The plan of a complete config, as it is (budgets recorded, not enforced: see `overBudget`).
 * `space` is the request's space; callers that loop over configs pass the one they hold.
 */
export function planWith(req: PlanRequest, config: Config, space: SearchSpace = spaceFor(req)): Plan {
  const planned = familyPlanner(req).plan(req as never, config);
  return { ...planned, profile: req.device, knobsInUse: knobsInUse(space, config) } as Plan;
}

/** Whether `knob` matters given the knobs before it (`earlier`): the one rule for `when`. */
function knobInUse(knob: Knob, earlier: Config): boolean {
  return !knob.when || knob.when(earlier);
}

/** The knobs of `space` that matter for `config`: each `when` judged on the knobs before it. */
export function knobsInUse(space: SearchSpace, config: Config): string[] {
  const earlier: Config = {};
  const used: string[] = [];
  for (const k of space.knobs) {
    if (knobInUse(k, earlier)) used.push(k.name);
    if (k.name in config) earlier[k.name] = config[k.name]!;
  }
  return used;
}

/** The config as a person should see it: only the knobs in use (`--config` fills in the rest). */
export function configInUse(plan: Plan): Config {
  return Object.fromEntries(plan.knobsInUse.filter((k) => k in plan.config).map((k) => [k, plan.config[k]!]));
}

/** A plan of a matmul family, and of an attention family: what code that serves one op kind takes. */
export type MatmulPlan = Extract<Plan, { op: MatmulOp }>;
export type AttentionPlan = Extract<Plan, { op: AttentionOp }>;

/** Whether `plan` is a matmul family's: every family plans one op kind, so its op's kind says which. */
export function isMatmulPlan(plan: Plan): plan is MatmulPlan {
  return isMatmulOp(plan.op);
}

/**
 * `plan` as a plan of one of `families`, for code that serves only those (`who`, e.g. a target's
 * package). Its callers hold plans of their own target, so another family is a KgenError naming a
 * kgen bug, never a user's mistake.
 */
export function planOfFamilies<F extends PlanFamily>(plan: Plan, families: readonly F[], who: string): Extract<Plan, { family: F }> {
  if (isOfFamilies(plan, families)) return plan;
  throw internalPlanError(plan, who, families.join(' or '));
}

/** `plan` as a matmul family's, for code that serves only matmul (`who`); see `planOfFamilies`. */
export function matmulPlanOf(plan: Plan, who: string): MatmulPlan {
  if (isMatmulPlan(plan)) return plan;
  throw internalPlanError(plan, who, 'a matmul plan');
}

function isOfFamilies<F extends PlanFamily>(plan: Plan, families: readonly F[]): plan is Extract<Plan, { family: F }> {
  const names: readonly string[] = families;
  return names.includes(plan.family);
}

function internalPlanError(plan: Plan, who: string, expected: string): KgenError {
  return new KgenError({
    field: 'plan.family',
    problem: `internal: ${who} was given a ${plan.family} plan (${plan.op.name})`,
    expected,
    hint: 'a kgen bug: the caller chose plans of another target or op kind',
  });
}

/**
 * `config` as a person should see it without its plan: the knobs of `space` in use for it, in the
 * space's order, then any key the space does not know (a record written by another kgen) as it is.
 */
export function configShown(space: SearchSpace, config: Config): Config {
  const known = new Set(space.knobs.map((k) => k.name));
  const used = knobsInUse(space, config).filter((k) => k in config);
  return Object.fromEntries([...used, ...Object.keys(config).filter((k) => !known.has(k))].map((k) => [k, config[k]!]));
}

export function checkTarget(device: DeviceProfile, target: string): void {
  if (!device.targets.includes(target)) {
    throw new KgenError({
      field: '--target',
      problem: `device ${device.name} does not run ${target} kernels`,
      expected: `one of ${device.targets.join(', ')} for ${device.name}`,
      hint: 'pick a matching --device or --target (`kgen devices` lists both)',
    });
  }
}

/** Every budget `budgets` exceeds (needed over available). */
function exceededBudgets(budgets: readonly BudgetCheck[]): BudgetCheck[] {
  return budgets.filter((b) => b.needed > b.available);
}

/** The first budget the plan exceeds, or undefined when it fits. */
export function overBudget(plan: Plan): BudgetCheck | undefined {
  return exceededBudgets(plan.budgets)[0];
}

/**
 * `config`'s knobs as pins of `space`: each must be a knob of the space, with one of its values;
 * else a KgenError naming `config.<knob>` and what the space offers.
 */
export function pinKnobs(space: SearchSpace, config: Record<string, unknown>): Config {
  const fixed: Config = {};
  for (const [key, value] of Object.entries(config)) {
    const knob = space.knobs.find((k) => k.name === key);
    if (!knob) throw knobError(`config.${key}`, 'unknown knob for this op, target and shape', `one of ${space.knobs.map((k) => k.name).join(', ')}`);
    if (!knob.values.includes(value as never)) throw knobError(`config.${key}`, `got ${JSON.stringify(value)}`, `one of ${knob.values.join(', ')} (${knob.doc})`);
    fixed[key] = value as Config[string];
  }
  return fixed;
}

/**
 * Every config of the space in preference order: the cartesian product of knob values, except that
 * a knob whose `when` is false for the knobs before it takes only its first value.
 */
export function* enumerateConfigs(space: SearchSpace): Generator<Config> {
  const { knobs } = space;
  function* from(i: number, partial: Config): Generator<Config> {
    if (i === knobs.length) {
      yield { ...partial };
      return;
    }
    const k = knobs[i]!;
    const values = knobInUse(k, partial) ? k.values : k.values.slice(0, 1);
    for (const v of values) {
      partial[k.name] = v;
      yield* from(i + 1, partial);
    }
    delete partial[k.name];
  }
  yield* from(0, {});
}

export interface ResolvedPlan {
  plan: Plan;
  /** Where the config came from: the default search or the caller. */
  source: 'default' | 'given';
}

/**
 * The legal plan for a request. Without `config`, the first legal config in the space's preference
 * order (the default). With a (possibly partial) `config`, that config over the default's values;
 * unknown knobs, values outside the space, broken restrictions and an over-budget footprint are
 * refused with a KgenError naming the knob or the budget with its bytes.
 */
export function makePlan(req: PlanRequest, config?: Record<string, unknown>, opts: { field?: '--config' | '--isa' } = {}): ResolvedPlan {
  const space = spaceFor(req);
  if (!config || Object.keys(config).length === 0) return { plan: planWith(req, defaultConfig(req, space), space), source: 'default' };
  const fixed = pinKnobs(space, config);
  // The given knobs are fixed; the others take the first values, in preference order, that make a
  // legal config. When the given knobs alone break a restriction or the budget, say which.
  const found = firstLegal(req, space, fixed);
  if ('config' in found) return { plan: planWith(req, found.config, space), source: 'given' };
  if (found.restriction) {
    const field = opts.field ?? '--config';
    throw knobError(field, `${JSON.stringify(fixed)} is ruled out: ${found.restriction}`, field === '--isa' ? 'another ISA, or none (the best legal one)' : 'a config the restrictions allow');
  }
  const over = found.over!;
  throw new BudgetError({
    budget: over.budget,
    needed: over.needed,
    available: over.available,
    unit: over.unit,
    hint: `${over.unit === 'bytes' ? 'choose smaller tiles' : `use fewer ${over.unit}`} or omit --config to use the default`,
  });
}

type Search = { config: Config } | { restriction?: string; over?: BudgetCheck };

/**
 * First config in preference order that agrees with `fixed` and is legal. Failing that, the reason:
 * the restriction every candidate broke (the one the fixed knobs cause), else the budget every
 * candidate exceeded (reported at its smallest need), else the check that came closest to fitting.
 */
function firstLegal(req: PlanRequest, space: SearchSpace, fixed: Config): Search {
  const narrowed: SearchSpace = {
    knobs: space.knobs.map((k) => (k.name in fixed ? { ...k, values: [fixed[k.name]!] } : k)),
    restrictions: space.restrictions,
  };
  const broken = new Map<string, number>();
  const exceeded = new Map<string, { count: number; least: BudgetCheck }>();
  let candidates = 0;
  let planned = 0;
  for (const c of enumerateConfigs(narrowed)) {
    candidates++;
    const failing = space.restrictions.filter((r) => !r.allows(c));
    for (const r of failing) broken.set(r.reason, (broken.get(r.reason) ?? 0) + 1);
    if (failing.length) continue;
    planned++;
    const overs = exceededBudgets(planWith(req, c, space).budgets);
    if (overs.length === 0) return { config: c };
    for (const o of overs) {
      const seen = exceeded.get(o.budget);
      if (!seen) exceeded.set(o.budget, { count: 1, least: o });
      else {
        seen.count++;
        if (o.needed < seen.least.needed) seen.least = o;
      }
    }
  }
  const always = [...broken].find(([, n]) => n === candidates);
  if (always) return { restriction: always[0] };
  const binding = [...exceeded.values()].find((e) => e.count === planned);
  if (binding) return { over: binding.least };
  const closest = [...exceeded.values()].map((e) => e.least).sort((a, b) => a.needed / a.available - b.needed / b.available)[0];
  return closest ? { over: closest } : { restriction: [...broken.keys()][0] };
}

/** The default: the first config, in preference order, that passes the restrictions and budgets. */
export function defaultConfig(req: PlanRequest, space: SearchSpace = spaceFor(req)): Config {
  const found = firstLegal(req, space, {});
  if ('config' in found) return found.config;
  if (!found.over) {
    // Not a budget: a rule of the target's kernels that no config of this op and shape can keep.
    // The catalog's op came from --op; any other (a user's IR, even one named like a catalog op) from --ir.
    const fromCatalog = canonicalJson(CATALOG[req.op.name] ?? null) === canonicalJson(req.op);
    throw new KgenError({
      field: fromCatalog ? '--op' : '--ir',
      problem: `no config of ${req.op.name} is legal for ${req.device.name}: ${found.restriction}`,
      expected: 'an op and shape the target\'s kernels take',
      // The rule may be about the op's types (matmul) or a dimension (attention's D): no example that misleads one of them.
      hint: 'change the op or the shape as that rule asks, or use another target',
    });
  }
  throw new BudgetError({
    field: '--shape',
    budget: found.over.budget,
    needed: found.over.needed,
    available: found.over.available,
    unit: found.over.unit,
    hint: `no config of ${req.op.name} fits ${req.device.name} at this shape: ${found.over.remedy}`,
  });
}

export type { Shape, Op };
