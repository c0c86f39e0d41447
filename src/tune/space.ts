import { canonicalHash } from '../hash.js';
import { enumerateConfigs, overBudget, pinKnobs, planWith, spaceFor } from '../plan/index.js';
import type { Config, Plan, PlanRequest, SearchSpace } from '../plan/types.js';

/** A legal config with the plan it makes (footprint, launch, traffic). */
export interface Candidate {
  config: Config;
  hash: string;
  plan: Plan;
}

/**
 * A pruned search space. Invariant: every config of the space is either in `legal` or counted once
 * in `pruned`, under the first restriction it breaks or, passing them all, the first budget it
 * exceeds; nothing is compiled to find that out.
 */
export interface PrunedSpace {
  space: SearchSpace;
  total: number;
  legal: Candidate[];
  /** Reason -> configs ruled out for it (`restriction: ...`, `over budget: <budget>`). */
  pruned: Map<string, number>;
}

/** The canonical hash of a config: how trials name it in the database. */
export function configHash(config: Config): string {
  return canonicalHash(config);
}

/**
 * Refuses `fixed` where pruneSpace would (an unknown knob, a value outside the space), without
 * enumerating or planning a config: for a caller that must refuse before it prints anything.
 */
export function checkPins(req: PlanRequest, fixed: Record<string, unknown>): void {
  pinKnobs(spaceFor(req), fixed);
}

/**
 * Enumerates the space of a request and splits it into legal candidates and pruned counts. `fixed`
 * pins knobs to one value each (e.g. `{isa: 'avx2'}` tunes only the AVX2 variant); an unknown knob
 * or a value outside the space is refused naming it.
 */
export function pruneSpace(req: PlanRequest, fixed: Record<string, unknown> = {}): PrunedSpace {
  const full = spaceFor(req);
  const pins = pinKnobs(full, fixed);
  const space: SearchSpace = { ...full, knobs: full.knobs.map((k) => (k.name in pins ? { ...k, values: [pins[k.name]!] } : k)) };
  const pruned = new Map<string, number>();
  const legal: Candidate[] = [];
  let total = 0;
  const count = (reason: string) => pruned.set(reason, (pruned.get(reason) ?? 0) + 1);
  for (const config of enumerateConfigs(space)) {
    total++;
    const broken = space.restrictions.find((r) => !r.allows(config));
    if (broken) {
      count(`restriction: ${broken.reason}`);
      continue;
    }
    const p = planWith(req, config, full);
    const over = overBudget(p);
    if (over) {
      count(`over budget: ${over.budget}`);
      continue;
    }
    legal.push({ config, hash: configHash(config), plan: p });
  }
  return { space, total, legal, pruned };
}
