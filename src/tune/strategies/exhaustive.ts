import type { Config } from '../../plan/types.js';
import type { Search, SearchContext, Strategy } from './types.js';

/** Every legal config once, in the space's preference order (defaults first). */
export const exhaustive: Strategy = {
  name: 'exhaustive',
  doc: 'every legal config, in preference order',
  options: [],
  start(ctx: SearchContext): Search {
    const seen = new Set<string>();
    let next = 0;
    return {
      observe: (config) => void seen.add(ctx.hashOf(config)),
      propose(count) {
        const out: Config[] = [];
        while (out.length < count && next < ctx.legal.length) {
          const c = ctx.legal[next++]!;
          if (!seen.has(ctx.hashOf(c))) out.push(c);
        }
        for (const c of out) seen.add(ctx.hashOf(c));
        return out;
      },
    };
  },
};
