import { KgenError } from '../errors.js';
import { textHash } from '../hash.js';
import { oneLine } from '../io/message-text.js';
import type { KernelInputs, ReadProbeTiming, Timing, TimingOptions } from './types.js';

/**
 * What runners share about the programs they build around a kernel (the C harness, the CUDA run
 * program): the cache key of a build and the timing line the programs print.
 */

/**
 * Exit statuses of the programs kgen builds around a kernel (C harness, CUDA run programs), shared
 * by the templates (through their views) and the runners that read them. A harness that cannot
 * allocate its buffers says so with `outOfMemory`: the machine's limit, not the kernel's fault.
 */
export const HARNESS_EXIT = { usage: 2, input: 3, output: 4, outOfMemory: 5 } as const;

/** Most threads a timed harness run splits rows over (the C harness's thread table). */
export const MAX_TIMED_THREADS = 256;

/** The runner's answer to a harness that ran out of host memory: a usage error, never a verdict. */
export function outOfMemoryError(detail: string): KgenError {
  return new KgenError({
    field: '--shape',
    problem: `the test harness ran out of memory (${oneLine(detail, 120)})`,
    expected: 'a shape whose test data fits in this machine\'s memory',
    hint: '`kgen emit` works at any shape; verify and tune a smaller one, or free memory and run again',
  });
}

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

/**
 * The `{"probe_bytes":N,"probe_sink":S,"probe_ms":[...]}` line a timed harness run with its read
 * probe prints (sorted; with huge pages asked for, `"huge_page_bytes":H` after the times, -1 where
 * the OS does not say), or undefined when there is none.
 */
export function parseProbeLine(stdout: string): ReadProbeTiming | undefined {
  const line = /\{"probe_bytes":\d+,"probe_sink":\d+,"probe_ms":\[[^\]]*\](?:,"huge_page_bytes":-?\d+)?\}/.exec(stdout);
  if (!line) return undefined;
  const p = JSON.parse(line[0]) as { probe_bytes: number; probe_ms: number[]; huge_page_bytes?: number };
  if (!p.probe_ms.length) return undefined;
  const huge = p.huge_page_bytes !== undefined && p.huge_page_bytes >= 0 ? { hugePageBytes: p.huge_page_bytes } : {};
  return { timing: timingOf(p.probe_ms), bytes: p.probe_bytes, ...huge };
}

/** Bytes a timed run rotates copies of: the weights (matmul), else the KV cache (attention). */
export function streamedBytes(inputs: KernelInputs): number {
  return inputs['w.bin']?.length ?? (inputs['k.bin']?.length ?? 0) + (inputs['v.bin']?.length ?? 0);
}

/**
 * Copies of W a timed harness run rotates through so that together they exceed `flushBytes` (cold
 * caches): at most 64 copies and 2 GiB, which also fits a 32-bit WebAssembly memory.
 */
export function weightCopies(t: TimingOptions, weightBytes: number): number {
  if (t.flushBytes <= 0 || weightBytes <= 0) return 1;
  return Math.max(1, Math.min(64, Math.ceil(t.flushBytes / weightBytes) + 1, Math.floor(2 ** 31 / weightBytes)));
}
