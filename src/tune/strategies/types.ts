import type { Rng } from '../../numeric/random.js';
import type { Config, Knob } from '../../plan/types.js';

/** One option a strategy accepts (`--strategy-opt name=value`), with its meaning and default. */
export interface StrategyOption {
  name: string;
  doc: string;
  default: number;
  min: number;
  max: number;
}

/**
 * What a strategy searches: the legal configs (restrictions and budgets already applied), the
 * knobs they vary, and a way to name a config (its canonical hash).
 */
export interface SearchContext {
  knobs: readonly Knob[];
  /** Every legal config, in the space's preference order (the first is the default config). */
  legal: readonly Config[];
  hashOf(config: Config): string;
  rng: Rng;
  options: Record<string, number>;
}

/**
 * A running search. The tuner asks for configs, measures them, and reports each outcome; configs
 * measured earlier (a resumed run) are reported before the first `propose`.
 * Invariant: `propose` returns legal configs not reported before, at most `count` of them (fewer
 * when the strategy wants the outcomes of those first), and an empty list only when the strategy
 * is done.
 */
export interface Search {
  propose(count: number): Config[];
  /** `ms` is the median time of an ok trial, undefined for any failure. */
  observe(config: Config, ms: number | undefined): void;
}

/** A search strategy plug-in: declares its options; registering it is one line in strategies/index.ts. */
export interface Strategy {
  name: string;
  doc: string;
  options: readonly StrategyOption[];
  start(ctx: SearchContext): Search;
}
