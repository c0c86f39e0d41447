import { readFileSync } from 'node:fs';
import type { Timing } from '../backends/types.js';
import { KgenError } from '../errors.js';

/**
 * Telling a trustworthy timing from one another process disturbed. Two pieces of evidence per
 * timed run: the spread of its runs ((p90 - p10) / median, from the harness) and the CPU time
 * other processes used on this machine while it ran (from /proc/stat, before and after). The
 * decisions are pure functions of those figures (`assessInterference`, `pickAttempt`,
 * `representative`), so the tuner's behaviour under noise is tested without any noise.
 */

/** CPU seconds: all CPUs busy (from /proc/stat) and this process with its waited-for children. */
export interface CpuSample {
  /** Seconds every CPU spent busy since boot: user, nice, system, irq, softirq and steal (a hypervisor running other guests). */
  systemBusy: number;
  /** CPU seconds of this process and of its children that have been waited for (utime, stime, cutime, cstime). */
  own: number;
  /** Monotonic wall-clock time of the sample, seconds. */
  at: number;
}

/** USER_HZ: the unit of /proc/stat and /proc/self/stat on Linux. */
const USER_HZ = 100;

/** This machine's CPU counters now, or undefined where /proc cannot be read (not Linux). */
export function cpuSample(): CpuSample | undefined {
  try {
    const stat = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...
    const busy = stat[0]! + stat[1]! + stat[2]! + stat[5]! + stat[6]! + (stat[7] ?? 0);
    const self = readFileSync('/proc/self/stat', 'utf8');
    const fields = self.slice(self.lastIndexOf(')') + 2).split(' ').map(Number);
    // fields[0] is state (field 3); utime, stime, cutime, cstime are fields 14..17.
    const own = fields[11]! + fields[12]! + fields[13]! + fields[14]!;
    if (![busy, own].every(Number.isFinite)) return undefined;
    return { systemBusy: busy / USER_HZ, own: own / USER_HZ, at: performance.now() / 1000 };
  } catch {
    return undefined;
  }
}

/** CPU seconds other processes used between two samples (noise from concurrent work). */
export function foreignCpu(a: CpuSample | undefined, b: CpuSample | undefined): number | undefined {
  if (!a || !b) return undefined;
  return Math.max(0, b.systemBusy - a.systemBusy - (b.own - a.own));
}

/** What other processes took while a kernel ran: CPU seconds over a wall-clock window. */
export interface ForeignLoad {
  cpuSeconds: number;
  wallSeconds: number;
}

/** The foreign load between two samples, or undefined when either is missing or no time passed. */
export function foreignLoad(a: CpuSample | undefined, b: CpuSample | undefined): ForeignLoad | undefined {
  const cpuSeconds = foreignCpu(a, b);
  if (cpuSeconds === undefined || !a || !b || !(b.at > a.at)) return undefined;
  return { cpuSeconds, wallSeconds: b.at - a.at };
}

/**
 * When a timing counts as disturbed, and what the tuner does about it. Defaults:
 * `DEFAULT_TIMING_POLICY`; docs/tuning.md, "Timing the tuner can trust", gives the reasons.
 */
export interface TimingPolicy {
  /**
   * Extra timed attempts for a trial whose timing shows interference (default 2, so at most 3
   * timed executions per trial); an undisturbed attempt is recorded, else the fastest. 0: the first
   * is kept.
   */
  remeasure: number;
  /**
   * Spread of the timed runs, (p90 - p10) / median, above which a timing counts as disturbed
   * (default 0.25). A quiet machine times a kernel's runs within a few percent of each other.
   */
  maxSpread: number;
  /**
   * The spread counts only when the p90 - p10 gap is at least this many milliseconds (default
   * 0.005): a few microseconds of jitter (an interrupt, the timer's own resolution) is on every
   * machine, and is a large fraction of a sub-microsecond test kernel.
   */
  minSpreadMs: number;
  /**
   * Cores other processes kept busy on average while the kernel ran, beyond the cores the timed
   * run left idle (the machine's cores minus the kernel's threads; one host thread for a GPU
   * kernel), above which a timing counts as disturbed (default 0.25). A CPU kernel's rows are
   * split statically over its threads, so one thread losing its core for a quarter of the time
   * stretches every call it was in.
   */
  maxForeignCores: number;
  /**
   * Foreign CPU seconds below which the evidence is not counted at all (default 0.05): /proc/stat
   * counts in ticks, so a short window reads a few hundredths of a second of rounding.
   */
  minForeignCpuSeconds: number;
  /**
   * Configs re-timed back to back at the end of each workload, the winner chosen from those
   * re-timings (default 3). Below 2 there is no final re-timing.
   */
  finalists: number;
  /** Rounds of the final re-timing: each finalist is timed once per round, in a rotated order (default 3). */
  finalRounds: number;
}

export const DEFAULT_TIMING_POLICY: Readonly<TimingPolicy> = Object.freeze({
  remeasure: 2,
  maxSpread: 0.25,
  minSpreadMs: 0.005,
  maxForeignCores: 0.25,
  minForeignCpuSeconds: 0.05,
  finalists: 3,
  finalRounds: 3,
});

/**
 * The policy with `given` fields over the defaults, each checked: a bad one is a KgenError naming
 * it as the tuner's option (`timing.remeasure`), since a library caller passes it there (the CLI
 * checks its flags first).
 */
export function timingPolicy(given: Partial<TimingPolicy> = {}): TimingPolicy {
  const p = { ...DEFAULT_TIMING_POLICY, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) } as TimingPolicy;
  const bad = (k: keyof TimingPolicy, expected: string) =>
    new KgenError({ field: `timing.${k}`, problem: `got ${p[k]}`, expected, hint: `leave it out for the default (${DEFAULT_TIMING_POLICY[k]})` });
  const whole = (k: keyof TimingPolicy, min: number, max: number) => {
    if (!Number.isInteger(p[k]) || p[k] < min || p[k] > max) throw bad(k, `an integer from ${min} to ${max}`);
  };
  const positive = (k: keyof TimingPolicy) => {
    if (!(Number.isFinite(p[k]) && p[k] >= 0)) throw bad(k, 'a finite number >= 0');
  };
  whole('remeasure', 0, 10);
  whole('finalists', 0, 20);
  whole('finalRounds', 1, 15);
  positive('maxSpread');
  positive('minSpreadMs');
  positive('maxForeignCores');
  positive('minForeignCpuSeconds');
  return p;
}

/** How disturbed one timed execution looks. */
export interface Interference {
  /** True when some evidence is over its limit: the timing is not trusted as it is. */
  disturbed: boolean;
  /** Cores other processes kept busy on average beyond the idle ones; undefined without a CPU sample. */
  contendedCores?: number;
  /** True when the foreign CPU load alone is over its limit (evidence that also explains a timeout). */
  foreignOver: boolean;
  /** What was over its limit, for one line of progress, e.g. "spread 62% > 25%". */
  reasons: string[];
}

/**
 * Judges one timed execution: its spread (when it has a timing and the p90 - p10 gap is at least
 * `minSpreadMs`) and the foreign CPU load while it ran (when at least `minForeignCpuSeconds`),
 * against the policy. `idleCores` are the cores the run left free (cores - threads):
 * foreign work up to that much did not take the kernel's cores.
 */
export function assessInterference(
  timing: Pick<Timing, 'spread' | 'medianMs'> | undefined,
  foreign: ForeignLoad | undefined,
  o: Pick<TimingPolicy, 'maxSpread' | 'minSpreadMs' | 'maxForeignCores' | 'minForeignCpuSeconds'> & { idleCores: number },
): Interference {
  const reasons: string[] = [];
  if (timing && timing.spread * timing.medianMs >= o.minSpreadMs && timing.spread > o.maxSpread) reasons.push(`spread ${pct(timing.spread)} > ${pct(o.maxSpread)}`);
  let contendedCores: number | undefined;
  let foreignOver = false;
  if (foreign && foreign.wallSeconds > 0) {
    const contendedSeconds = Math.max(0, foreign.cpuSeconds - Math.max(0, o.idleCores) * foreign.wallSeconds);
    contendedCores = contendedSeconds / foreign.wallSeconds;
    if (contendedSeconds >= o.minForeignCpuSeconds) {
      foreignOver = contendedCores > o.maxForeignCores;
      if (foreignOver) reasons.push(`other processes took ${contendedCores.toFixed(2)} cores > ${o.maxForeignCores}`);
    }
  }
  return { disturbed: reasons.length > 0, contendedCores, foreignOver, reasons };
}

function pct(x: number): string {
  return `${Math.round(100 * x)}%`;
}

/**
 * Whether to time a trial again: its timing is disturbed, an attempt is left, and the outcome is
 * one interference can explain (an ok timing, or a timeout while other processes had the CPU).
 * A crash or a wrong result is a verdict on the kernel, never re-measured.
 */
export function needsRemeasure(status: string, interference: Interference, attemptsMade: number, policy: Pick<TimingPolicy, 'remeasure'>): boolean {
  if (!interference.disturbed || attemptsMade > policy.remeasure) return false;
  return status === 'ok' || (status === 'timeout' && interference.foreignOver);
}

/** One timed execution of a trial, as `pickAttempt` compares them. */
export interface Attempt {
  status: string;
  timing?: Pick<Timing, 'medianMs'>;
  interference: Pick<Interference, 'disturbed'>;
}

/**
 * The attempt a trial records, by index: a crash or wrong result if any attempt had one (a
 * kernel that fails once is not trusted); else an undisturbed attempt if there is one; else,
 * every attempt being disturbed, the fastest, since interference only ever adds time (an ok
 * timing before a timeout; the earlier on a tie).
 */
export function pickAttempt(attempts: readonly Attempt[]): number {
  if (attempts.length === 0) throw new RangeError('pickAttempt: no attempts');
  const verdict = attempts.findIndex((a) => a.status === 'crash' || a.status === 'wrong_result');
  if (verdict >= 0) return verdict;
  const key = (a: Attempt) => [a.interference.disturbed ? 1 : 0, a.status === 'ok' ? 0 : 1, a.timing?.medianMs ?? Infinity];
  let best = 0;
  for (let i = 1; i < attempts.length; i++) {
    const [a, b] = [key(attempts[i]!), key(attempts[best]!)];
    if (a[0]! < b[0]! || (a[0] === b[0] && (a[1]! < b[1]! || (a[1] === b[1] && a[2]! < b[2]!)))) best = i;
  }
  return best;
}

/**
 * The round that stands for a finalist after the final re-timing, by index: the median (the
 * lower middle for an even count) of its undisturbed rounds; when every round was disturbed, the
 * fastest (interference only ever adds time).
 */
export function representative(rounds: ReadonlyArray<{ timing: Pick<Timing, 'medianMs'>; interference: Pick<Interference, 'disturbed'> }>): number {
  if (rounds.length === 0) throw new RangeError('representative: no rounds');
  const all = rounds.map((r, i) => ({ ms: r.timing.medianMs, i, clean: !r.interference.disturbed })).sort((a, b) => a.ms - b.ms || a.i - b.i);
  const clean = all.filter((r) => r.clean);
  return clean.length ? clean[Math.floor((clean.length - 1) / 2)]!.i : all[0]!.i;
}

/** The order finalists are timed in round `round`: rotated by one each round, so none always goes first. */
export function roundOrder<T>(finalists: readonly T[], round: number): T[] {
  const n = finalists.length;
  if (n === 0) return [];
  const k = ((round % n) + n) % n;
  return [...finalists.slice(k), ...finalists.slice(0, k)];
}
