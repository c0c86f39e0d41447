/**
 * Tuning rows of the bench: the tuned config against the default config on the host, and how fast
 * each search strategy gets within 5% of the exhaustive best.
 *
 * Strategy figures come from replaying the strategies against an exhaustive run's measurements
 * (Kernel Tuner's "simulation mode"): every config of the space is measured once, then each
 * strategy is run from 20 seeds with its "measurement" looked up in that table, counting trials
 * until its best is within 5% of the table's best. The comparison is exact for the measured data and
 * costs no extra runs; it inherits the exhaustive run's noise.
 */
import { join } from 'node:path';
import { planRequest } from '../src/backends/registry.js';
import { openTuningDb } from '../src/db/sqlite.js';
import type { TuningDb } from '../src/db/types.js';
import { getDevice } from '../src/device/index.js';
import { CATALOG } from '../src/ir/catalog.js';
import type { MatmulShape } from '../src/ir/types.js';
import { formatShape } from '../src/ir/validate.js';
import { Rng } from '../src/numeric/random.js';
import { configHash, pruneSpace } from '../src/tune/space.js';
import { resolveStrategy, STRATEGIES } from '../src/tune/strategies/index.js';
import { tune, type TuneEvent } from '../src/tune/tuner.js';
import { benchHost, log } from './common.js';

export interface TunedRow {
  kind: 'tuned';
  case: string;
  shape: string;
  trials: number;
  defaultMs: number;
  tunedMs: number;
  speedup: number;
  tunedConfig: Record<string, unknown>;
}

export interface StrategyRow {
  kind: 'strategy';
  case: string;
  shape: string;
  strategy: string;
  space: number;
  /** Trials until the best is within 5% of the exhaustive best: median, 90th percentile, worst over seeds. */
  median: number;
  p90: number;
  worst: number;
  /** median / space size, in %. */
  medianPct: number;
  seeds: number;
}

const progress = (label: string) => (e: TuneEvent) => {
  if (e.kind === 'workload') log(`${label}: ${e.space.legal.length} legal configs of ${e.space.total}, measuring ${e.planned}`);
  if (e.kind === 'trial' && (e.done % 25 === 0 || e.done === e.planned)) log(`${label}: ${e.done}/${e.planned} trials, best ${e.best?.timing?.medianMs.toFixed(3) ?? '-'} ms, ${e.failures} failed`);
};

/** Tunes GEMV and GEMM (q4) on the host with the guided strategy and compares with the default config. */
export async function tunedRows(workDir: string, cacheDir: string, trials: number, threads: number): Promise<TunedRow[]> {
  const db = openTuningDb(join(workDir, 'tuned.db'));
  const device = getDevice('host', benchHost());
  const rows: TunedRow[] = [];
  try {
    for (const [name, shape] of [['gemv', { M: 1, N: 4096, K: 14336 }], ['gemm', { M: 256, N: 4096, K: 4096 }]] as const) {
      const label = `tuned ${name} q4`;
      const summary = await tune({ db, device, target: 'c', workloads: [{ op: CATALOG.matmul_q4!, shape }], strategy: 'evolutionary', trials, threads, cacheDir, onEvent: progress(label) });
      const r = summary.results[0]!;
      if (!r.best?.timing || !r.default?.timing) {
        log(`${label}: no ok default or best trial; skipped`);
        continue;
      }
      rows.push({ kind: 'tuned', case: label, shape: formatShape(shape), trials: r.added, defaultMs: r.default.timing.medianMs, tunedMs: r.best.timing.medianMs, speedup: r.default.timing.medianMs / r.best.timing.medianMs, tunedConfig: r.best.config });
    }
  } finally {
    db.close();
  }
  return rows;
}

/** Workloads the strategies are compared on (AVX2 variants: 234 to 702 configs each). */
export const STRATEGY_WORKLOADS: ReadonlyArray<{ op: string; shape: MatmulShape }> = [
  { op: 'matmul_q4', shape: { M: 1, N: 4096, K: 4096 } },
  { op: 'matmul_q35', shape: { M: 1, N: 4096, K: 4096 } },
  { op: 'matmul_q8_0', shape: { M: 1, N: 4096, K: 4096 } },
  { op: 'matmul_q4', shape: { M: 16, N: 4096, K: 4096 } },
];

/** Exhaustive run of each workload, then every other strategy replayed from 20 seeds. */
export async function strategyRows(workDir: string, cacheDir: string, count: number, threads: number): Promise<StrategyRow[]> {
  const db = openTuningDb(join(workDir, 'strategies.db'));
  const device = getDevice('host', benchHost());
  const fixed = { isa: 'avx2' };
  const rows: StrategyRow[] = [];
  try {
    for (const { op: name, shape } of STRATEGY_WORKLOADS.slice(0, count)) {
      const op = CATALOG[name]!;
      const label = `exhaustive ${name} ${formatShape(shape)}`;
      const summary = await tune({ db, device, target: 'c', workloads: [{ op, shape }], fixed, strategy: 'exhaustive', trials: 1e9, threads, cacheDir, onEvent: progress(label) });
      const table = timesByConfig(db, summary.results[0]!.workload.id);
      const space = pruneSpace(planRequest({ op, shape, device, target: 'c' }), fixed);
      const best = Math.min(...table.values());
      for (const strategy of Object.keys(STRATEGIES).filter((s) => s !== 'exhaustive')) {
        const counts = Array.from({ length: 20 }, (_, seed) => replay(strategy, space, table, best, seed + 1)).sort((a, b) => a - b);
        const median = counts[Math.floor(counts.length / 2)]!;
        rows.push({ kind: 'strategy', case: name, shape: formatShape(shape), strategy, space: space.legal.length, median, p90: counts[Math.floor(counts.length * 0.9)]!, worst: counts.at(-1)!, medianPct: (100 * median) / space.legal.length, seeds: counts.length });
      }
      // Exhaustive itself: trials until within 5%, in preference order (one order, no seeds).
      const order = space.legal.map((c) => table.get(c.hash));
      const ex = order.findIndex((ms) => ms !== undefined && ms <= best * 1.05) + 1;
      rows.push({ kind: 'strategy', case: name, shape: formatShape(shape), strategy: 'exhaustive', space: space.legal.length, median: ex, p90: ex, worst: ex, medianPct: (100 * ex) / space.legal.length, seeds: 1 });
    }
  } finally {
    db.close();
  }
  return rows;
}

/** Median time of each config's ok trial (failed configs are absent). */
function timesByConfig(db: TuningDb, workloadId: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of db.trials(workloadId)) if (t.timing && !out.has(t.configHash)) out.set(t.configHash, t.timing.medianMs);
  return out;
}

/** Trials a strategy takes (from this seed) until its best is within 5% of the exhaustive best. */
function replay(name: string, space: ReturnType<typeof pruneSpace>, table: Map<string, number>, best: number, seed: number): number {
  const { strategy, options } = resolveStrategy(name);
  const search = strategy.start({ knobs: space.space.knobs, legal: space.legal.map((c) => c.config), hashOf: configHash, rng: new Rng(seed), options });
  let trials = 0;
  for (;;) {
    const batch = search.propose(4);
    if (!batch.length) return trials;
    for (const c of batch) {
      trials++;
      const ms = table.get(configHash(c));
      if (ms !== undefined && ms <= best * 1.05) return trials;
      search.observe(c, ms);
    }
  }
}

export function formatTuningTables(tuned: TunedRow[], strategies: StrategyRow[]): string {
  const lines: string[] = [];
  if (tuned.length) {
    lines.push('', 'case                 shape                trials  default ms  tuned ms  speedup  tuned config');
    for (const r of tuned) {
      lines.push(`${r.case.padEnd(20)} ${r.shape.padEnd(20)} ${String(r.trials).padStart(6)}  ${r.defaultMs.toFixed(3).padStart(10)}  ${r.tunedMs.toFixed(3).padStart(8)}  ${`${r.speedup.toFixed(2)}x`.padStart(7)}  ${JSON.stringify(r.tunedConfig)}`);
    }
  }
  if (strategies.length) {
    lines.push('', 'strategy      workload                        space  trials to within 5% of the exhaustive best: median (p90, worst)  median % of space');
    for (const r of strategies) {
      lines.push(`${r.strategy.padEnd(13)} ${`${r.case} ${r.shape}`.padEnd(31)} ${String(r.space).padStart(5)}  ${`${r.median} (${r.p90}, ${r.worst})`.padStart(20)}${' '.repeat(43)}${`${r.medianPct.toFixed(1)}%`.padStart(6)}`);
    }
  }
  return lines.join('\n');
}
