import type { Config } from '../../plan/types.js';
import type { Search, SearchContext, Strategy } from './types.js';

/** Legal configs in a seeded random order, the default config first. */
export const random: Strategy = {
  name: 'random',
  doc: 'legal configs in seeded random order (the default config first)',
  options: [],
  start(ctx: SearchContext): Search {
    const order = ctx.legal.slice(1);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(ctx.rng.next() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    if (ctx.legal.length) order.unshift(ctx.legal[0]!);
    const seen = new Set<string>();
    let next = 0;
    return {
      observe: (config) => void seen.add(ctx.hashOf(config)),
      propose(count) {
        const out: Config[] = [];
        while (out.length < count && next < order.length) {
          const c = order[next++]!;
          if (!seen.has(ctx.hashOf(c))) out.push(c);
        }
        for (const c of out) seen.add(ctx.hashOf(c));
        return out;
      },
    };
  },
};
