import { textHash } from '../hash.js';
import type { Timing } from './types.js';

/**
 * What runners share about the programs they build around a kernel (the C harness, the CUDA run
 * program): the cache key of a build and the timing line the programs print.
 */

/** A build's key: its sources (generated header comments, which name the config, left out) and flags. */
export function sourceKey(files: Record<string, string>, flags: string[]): string {
  const body = Object.entries(files)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, text]) => `${name}\n${text.replace(/^\/\*[\s\S]*?\*\//, '')}`);
  return textHash([...body, flags.join(' ')].join('\n'));
}

/** Timing statistics of sorted times. */
export function timingOf(sortedMs: number[]): Timing {
  const q = (p: number) => sortedMs[Math.min(sortedMs.length - 1, Math.max(0, Math.round(p * (sortedMs.length - 1))))]!;
  const n = sortedMs.length;
  const median = n % 2 ? sortedMs[(n - 1) / 2]! : 0.5 * (sortedMs[n / 2 - 1]! + sortedMs[n / 2]!);
  return { medianMs: median, minMs: sortedMs[0]!, maxMs: sortedMs[n - 1]!, spread: median > 0 ? (q(0.9) - q(0.1)) / median : 0, runs: n };
}

/** The `{"times_ms":[...]}` line a timed harness run prints (sorted), or undefined when there is none. */
export function parseTimesLine(stdout: string): Timing | undefined {
  const line = /\{"times_ms":\[[^\]]*\]\}/.exec(stdout);
  if (!line) return undefined;
  const times = (JSON.parse(line[0]) as { times_ms: number[] }).times_ms;
  return times.length ? timingOf(times) : undefined;
}
