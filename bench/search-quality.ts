/**
 * Search quality of the tuner's strategies on synthetic landscapes over real search spaces: no
 * kernel is built or run. Each strategy is driven as `tune()` drives it (batches of
 * `max(2, parallelBuilds) * 2` proposals, every outcome observed before the next batch), and a
 * session's best is compared with the exhaustive optimum of the landscape.
 *
 *   node dist/bench/search-quality.js [--seeds 100] [--json]
 *
 * The landscapes are cost functions of each knob's position in its value list (0 for the first
 * value, 1 for the last), seeded per run, with an optimum at a random legal config:
 * - smooth: a weighted sum of squared distances to the optimum, one basin;
 * - dominant: one knob (the one with most values) weighs 30 times the others;
 * - rugged: smooth, times 1 + 0.25 u with u uniform per config (many local optima);
 * - failing: smooth, but half the configs fail at random, and so do all configs holding one
 *   non-optimal value of one knob (a failed region); a failure reports no time.
 * A hit is a session whose best is within 5% of the optimum (the optimum itself is always legal and ok).
 */
import { planRequest } from '../src/backends/registry.js';
import { getDevice } from '../src/device/index.js';
import { CATALOG } from '../src/ir/catalog.js';
import { Rng } from '../src/numeric/random.js';
import type { Config, Knob } from '../src/plan/types.js';
import { pruneSpace } from '../src/tune/space.js';
import { resolveStrategy } from '../src/tune/strategies/index.js';
import { benchArgs, log } from './common.js';

/** A real space: its knobs and legal configs in preference order. */
export interface SimSpace {
  label: string;
  knobs: readonly Knob[];
  legal: readonly Config[];
}

/** A cost per config; undefined is a failed trial (compile error, wrong result, timeout). */
export type Landscape = (config: Config) => number | undefined;

export const LANDSCAPES = ['smooth', 'dominant', 'rugged', 'failing'] as const;
export type LandscapeName = (typeof LANDSCAPES)[number];

/** The spaces of the table: C on an EPYC 7763 profile and CUDA on H100 (q4, GEMV and GEMM). */
export function simSpaces(): SimSpace[] {
  const cases = [
    { device: 'epyc-7763', target: 'c', shape: { M: 1, N: 4096, K: 4096 } },
    { device: 'epyc-7763', target: 'c', shape: { M: 16, N: 4096, K: 4096 } },
    { device: 'h100-sxm', target: 'cuda', shape: { M: 256, N: 4096, K: 4096 } },
  ] as const;
  return cases.map(({ device, target, shape }) => {
    const s = pruneSpace(planRequest({ op: CATALOG.matmul_q4!, shape, device: getDevice(device), target }));
    return { label: `${target} q4 M=${shape.M}`, knobs: s.space.knobs, legal: s.legal.map((c) => c.config) };
  });
}

/** A cheap name for a config within one space (the strategies only need a consistent one). */
export const keyOf = (knobs: readonly Knob[]) => (c: Config): string => knobs.map((k) => String(c[k.name])).join('|');

/** FNV-1a of a string and a seed, as a uniform number in [0, 1). */
function uniform(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0x5bd1e995) >>> 0;
  return ((h ^ (h >>> 15)) >>> 0) / 4294967296;
}

/** The landscape `name` over `space` for one seed; its optimum is a random legal config. */
export function landscape(space: SimSpace, name: LandscapeName, seed: number): Landscape {
  const rng = new Rng(seed * 7919 + LANDSCAPES.indexOf(name) + 1);
  const knobs = space.knobs.filter((k) => k.values.length > 1);
  const key = keyOf(space.knobs);
  const optimum = space.legal[Math.floor(rng.next() * space.legal.length)]!;
  const pos = (k: Knob, c: Config) => k.values.indexOf(c[k.name]!) / (k.values.length - 1);
  const widest = knobs.reduce((a, k) => (k.values.length > a.values.length ? k : a), knobs[0]!);
  const weights = knobs.map((k) => (name === 'dominant' ? (k === widest ? 30 : 1) : 0.5 + 1.5 * rng.next()));
  const smooth = (c: Config) => 1 + knobs.reduce((sum, k, i) => sum + weights[i]! * (pos(k, c) - pos(k, optimum)) ** 2, 0);
  const region = knobs[Math.floor(rng.next() * knobs.length)]!;
  const badValue = region.values.filter((v) => v !== optimum[region.name])[Math.floor(rng.next() * (region.values.length - 1))];
  const optimumKey = key(optimum);
  return (c) => {
    const k = key(c);
    if (name === 'rugged') return smooth(c) * (1 + 0.25 * uniform(k, seed));
    if (name === 'failing' && k !== optimumKey && (c[region.name] === badValue || uniform(k, seed) < 0.5)) return undefined;
    return smooth(c);
  };
}

/** One simulated session's outcome. */
export interface SimRun {
  /** Best cost over the optimum (1: found it); Infinity when nothing ran ok. */
  ratio: number;
  measured: number;
  defaultMeasured: boolean;
  duplicates: number;
  illegal: number;
}

/**
 * Drives `strategy` over `space` the way tune() does: proposals in batches of `batch`, each
 * outcome observed, at most `trials` measured (a batch's tail past that is dropped, as tune drops it).
 */
export function simulate(space: SimSpace, cost: Landscape, o: { strategy: string; trials: number; batch: number; seed: number; options?: Record<string, number> }): SimRun {
  const { strategy, options } = resolveStrategy(o.strategy, o.options);
  const hashOf = keyOf(space.knobs);
  const legal = new Set(space.legal.map(hashOf));
  const search = strategy.start({ knobs: space.knobs, legal: space.legal, hashOf, rng: new Rng(o.seed), options });
  const seen = new Set<string>();
  let best = Infinity;
  let duplicates = 0;
  let illegal = 0;
  const planned = Math.min(o.trials, space.legal.length);
  while (seen.size < planned) {
    const batch = search.propose(Math.min(planned - seen.size, o.batch));
    if (!batch.length) break;
    for (const c of batch) {
      if (seen.size >= planned) break;
      const h = hashOf(c);
      if (seen.has(h)) duplicates++;
      if (!legal.has(h)) illegal++;
      seen.add(h);
      const ms = cost(c);
      if (ms !== undefined) best = Math.min(best, ms);
      search.observe(c, ms);
    }
  }
  let optimum = Infinity;
  for (const c of space.legal) optimum = Math.min(optimum, cost(c) ?? Infinity);
  return { ratio: best / optimum, measured: seen.size, defaultMeasured: seen.has(hashOf(space.legal[0]!)), duplicates, illegal };
}

/** One cell of the table: hits within 5% (and exact) over `seeds` seeds. */
export interface QualityRow {
  space: string;
  landscape: LandscapeName;
  strategy: string;
  trials: number;
  batch: number;
  seeds: number;
  within5: number;
  exact: number;
}

export function qualityTable(o: { seeds: number; spaces?: SimSpace[]; trials?: number[]; batches?: number[]; strategies?: string[] }): QualityRow[] {
  const rows: QualityRow[] = [];
  for (const space of o.spaces ?? simSpaces()) {
    for (const name of LANDSCAPES) {
      const costs = Array.from({ length: o.seeds }, (_, s) => landscape(space, name, s + 1));
      for (const batch of o.batches ?? [4, 32]) {
        for (const trials of o.trials ?? [24, 40]) {
          for (const strategy of o.strategies ?? ['random', 'evolutionary']) {
            let within5 = 0;
            let exact = 0;
            costs.forEach((cost, s) => {
              const r = simulate(space, cost, { strategy, trials, batch, seed: s + 1 });
              if (r.duplicates || r.illegal || !r.defaultMeasured || r.measured !== Math.min(trials, space.legal.length)) {
                throw new Error(`${strategy} on ${space.label} ${name} seed ${s + 1}: ${JSON.stringify(r)}`);
              }
              if (r.ratio <= 1.05) within5++;
              if (r.ratio === 1) exact++;
            });
            rows.push({ space: `${space.label} (${space.legal.length})`, landscape: name, strategy, trials, batch, seeds: o.seeds, within5, exact });
          }
        }
      }
    }
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // Checked like every bench entry point: a misspelt option stops it (status 2) instead of running 100 seeds.
  const args = benchArgs(process.argv.slice(2), { flags: ['--json'], options: ['--seeds'], usage: '  node dist/bench/search-quality.js [--seeds 100] [--json]' });
  const seedsText = args.opt('--seeds', '100');
  const seeds = Number(seedsText);
  if (!/^\d+$/.test(seedsText) || seeds < 1) {
    log(`--seeds needs a whole number of seeds, 1 or more, got '${seedsText}'`);
    process.exit(2);
  }
  const rows = qualityTable({ seeds });
  if (args.flag('--json')) {
    for (const r of rows) console.log(JSON.stringify(r));
  } else {
    console.log(`space               landscape  batch trials  random within 5% (exact)  evolutionary within 5% (exact)   [${seeds} seeds]`);
    for (let i = 0; i < rows.length; i += 2) {
      const [r, e] = [rows[i]!, rows[i + 1]!];
      const pct = (x: QualityRow) => `${Math.round((100 * x.within5) / x.seeds)}% (${Math.round((100 * x.exact) / x.seeds)}%)`.padStart(10);
      console.log(`${r.space.padEnd(19)} ${r.landscape.padEnd(9)} ${String(r.batch).padStart(6)} ${String(r.trials).padStart(6)}  ${pct(r).padStart(25)}  ${pct(e).padStart(31)}`);
    }
  }
}
