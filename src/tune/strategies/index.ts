import { quoted } from '../../io/message-text.js';
import { KgenError } from '../../errors.js';
import { evolutionary } from './evolutionary.js';
import { exhaustive } from './exhaustive.js';
import { random } from './random.js';
import type { Strategy } from './types.js';

export type { Search, SearchContext, Strategy, StrategyOption } from './types.js';

/** Search strategies by name; one line each. */
export const STRATEGIES: Record<string, Strategy> = {
  exhaustive,
  random,
  evolutionary,
};

/**
 * The strategy and its options: `opts` as given (`--strategy-opt population=16`), unknown names and
 * out-of-range values refused with the option list, missing ones at their defaults.
 */
export function resolveStrategy(name: string, opts: Record<string, number> = {}): { strategy: Strategy; options: Record<string, number> } {
  const strategy = Object.hasOwn(STRATEGIES, name) ? STRATEGIES[name] : undefined;
  if (!strategy) {
    throw new KgenError({ field: '--strategy', problem: `unknown strategy ${quoted(name)}`, expected: `one of ${Object.keys(STRATEGIES).join(', ')}` });
  }
  const options: Record<string, number> = {};
  for (const o of strategy.options) options[o.name] = o.default;
  for (const [key, value] of Object.entries(opts)) {
    const o = strategy.options.find((x) => x.name === key);
    if (!o) {
      const known = strategy.options.map((x) => `${x.name} (${x.doc}, default ${x.default})`).join('; ');
      throw new KgenError({ field: `--strategy-opt ${key}`, problem: `${name} has no option "${key}"`, expected: known || `no options: ${name} takes none` });
    }
    if (!Number.isFinite(value) || value < o.min || value > o.max) {
      throw new KgenError({ field: `--strategy-opt ${key}`, problem: `got ${value}`, expected: `a number in [${o.min}, ${o.max}] (${o.doc})` });
    }
    options[key] = value;
  }
  return { strategy, options };
}
