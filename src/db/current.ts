import type { Trial } from './types.js';

/**
 * The `strategy` of the trials the tuner's final re-timing writes (src/tune/tuner.ts): the best few
 * configs of a workload timed again back to back. The trials of one re-timing share their
 * `createdAt`; the config's first trial names the strategy that found it.
 */
export const RETIME_STRATEGY = 'retime';

type Row = Trial & { id?: number };

/**
 * Each config's current trial: its newest one (by `createdAt`, then row order), whatever its
 * status, ok trials fastest first, then the failures (the order of `TuningDb.trials`). A config
 * measured again (a final re-timing, a second tuner, an import) is judged by its latest
 * measurement, and a config whose latest run failed is out. Older trials stay in the database.
 */
export function currentTrials<T extends Row>(trials: readonly T[]): T[] {
  const newest = new Map<string, T>();
  for (const t of trials) {
    const seen = newest.get(t.configHash);
    if (!seen || isNewer(t, seen)) newest.set(t.configHash, t);
  }
  return [...newest.values()].sort(byTime);
}

/**
 * The ok trials that compete for a workload's best, fastest first (`TuningDb.best` is the first).
 * Each config counts by its current trial (`currentTrials`). Once the workload has a final
 * re-timing with an ok trial, that re-timing is the verdict: only its trials and those measured
 * after it compete, and configs measured before it that it did not re-time (they were not among
 * the best few then, or outside that session's `--config` pins) no longer do.
 */
export function contendingTrials<T extends Row>(trials: readonly T[]): T[] {
  let verdict: string | undefined;
  for (const t of trials) if (t.strategy === RETIME_STRATEGY && t.status === 'ok' && (verdict === undefined || t.createdAt > verdict)) verdict = t.createdAt;
  return currentTrials(trials).filter((t) => t.status === 'ok' && (verdict === undefined || t.createdAt >= verdict));
}

function isNewer(a: Row, b: Row): boolean {
  return a.createdAt > b.createdAt || (a.createdAt === b.createdAt && (a.id ?? 0) > (b.id ?? 0));
}

function byTime(a: Row, b: Row): number {
  return (a.status === 'ok' ? 0 : 1) - (b.status === 'ok' ? 0 : 1) || (a.timing?.medianMs ?? 0) - (b.timing?.medianMs ?? 0) || (a.id ?? 0) - (b.id ?? 0);
}
