import type { Config } from '../../plan/types.js';
import type { Search, SearchContext, Strategy } from './types.js';

/**
 * A small genetic search over knob values. It seeds a population with the default config and random
 * legal configs, then breeds: two parents picked by tournament among the measured configs, a
 * uniform crossover of their knob values, and a mutation that moves each knob to a neighbouring
 * value (knob values are ordered) or, rarely, to any value. Children that are illegal or already
 * measured are redrawn; a share of proposals stay random so the search never stalls in one basin.
 * Each generation (`population` configs) is bred from the times of those before it, and proposed
 * in order whatever the size of the tuner's batches.
 */
export const evolutionary: Strategy = {
  name: 'evolutionary',
  doc: 'genetic search: tournament selection, crossover and neighbour mutation over knob values',
  options: [
    { name: 'population', doc: 'configs per generation (the first: the default and random ones)', default: 8, min: 2, max: 256 },
    { name: 'tournament', doc: 'candidates per parent tournament', default: 5, min: 1, max: 16 },
    { name: 'mutation', doc: 'probability that a knob of a child mutates', default: 0.3, min: 0, max: 1 },
    { name: 'explore', doc: 'share of proposals drawn at random', default: 0.1, min: 0, max: 1 },
  ],
  start(ctx: SearchContext): Search {
    const { knobs, rng, options } = ctx;
    const legal = new Map(ctx.legal.map((c) => [ctx.hashOf(c), c]));
    const seen = new Set<string>();
    const scored: Array<{ config: Config; ms: number }> = [];
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.next() * xs.length)]!;

    const randomUnseen = (): Config | undefined => {
      const left = ctx.legal.filter((c) => !seen.has(ctx.hashOf(c)));
      return left.length ? pick(left) : undefined;
    };
    const tournament = (): Config => {
      let best = pick(scored);
      for (let i = 1; i < options.tournament!; i++) {
        const c = pick(scored);
        if (c.ms < best.ms) best = c;
      }
      return best.config;
    };
    const breed = (): Config | undefined => {
      for (let attempt = 0; attempt < 64; attempt++) {
        const a = tournament();
        const b = tournament();
        const child: Config = {};
        for (const k of knobs) {
          // A knob that does not matter given the knobs before it holds its first value in every
          // legal config (enumerateConfigs): breeding another value would only make an illegal child.
          if (k.when && !k.when(child)) {
            child[k.name] = k.values[0]!;
            continue;
          }
          let v = rng.next() < 0.5 ? a[k.name]! : b[k.name]!;
          if (rng.next() < options.mutation!) {
            const i = k.values.indexOf(v);
            if (rng.next() < 0.8 && i >= 0) {
              // One step either way, held at the ends of the list (stepping inward there instead
              // searched worse on the synthetic landscapes of bench/search-quality.ts).
              const j = Math.min(k.values.length - 1, Math.max(0, i + (rng.next() < 0.5 ? -1 : 1)));
              v = k.values[j]!;
            } else {
              v = pick(k.values);
            }
          }
          child[k.name] = v;
        }
        const h = ctx.hashOf(child);
        if (legal.has(h) && !seen.has(h)) return legal.get(h)!;
      }
      return undefined;
    };

    // One generation, bred before any of it is proposed and handed out in order: the configs a
    // seed proposes do not depend on how many tune asks for at once (two per build slot, so the
    // machine's core count), and every child is bred from times (until 2026-12-06 a batch of 32
    // was filled at random before any of it was timed).
    const queue: Config[] = [];
    const nextGeneration = () => {
      const take = (c: Config | undefined) => {
        if (!c) return false;
        seen.add(ctx.hashOf(c));
        queue.push(c);
        return true;
      };
      // The default config first: it is the baseline every tuned result is compared with.
      if (ctx.legal.length && !seen.has(ctx.hashOf(ctx.legal[0]!))) take(ctx.legal[0]);
      while (queue.length < options.population!) {
        const breeding = scored.length >= Math.min(options.population!, 2) && seen.size >= options.population!;
        const c = breeding && rng.next() >= options.explore! ? (breed() ?? randomUnseen()) : randomUnseen();
        if (!take(c)) break;
      }
    };

    return {
      observe(config, ms) {
        seen.add(ctx.hashOf(config));
        if (ms !== undefined) scored.push({ config, ms });
      },
      propose(count) {
        if (!queue.length) nextGeneration();
        return queue.splice(0, Math.max(0, count));
      },
    };
  },
};
