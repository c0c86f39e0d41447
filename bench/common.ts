/** Shared pieces of the throughput bench (bench/run.ts). */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { detectMachine, hostFromEnvironment, type HostOptions } from '../src/device/host.js';
import { FLUSH_CACHE_MULTIPLE } from '../src/device/profile.js';
import { cannotRunNativelyReason } from '../src/backends/c/runner.js';

/**
 * L3 size the bench defeats: every timed row rotates through > 3x this many weight bytes. This
 * machine's L3 as sysfs reports it (a VM sees the whole socket's, e.g. 300 MiB on a 2-vCPU Xeon
 * slice), never less than 32 MiB: rotating through a fixed 96 MiB would time a 300 MiB L3, not DRAM.
 */
export const L3_BYTES = Math.max(32 * 2 ** 20, detectMachine().cpu?.l3Bytes ?? 0);

/**
 * Bytes every timed row that streams its operand (weights, a decode's KV cache) rotates through, at
 * least: FLUSH_CACHE_MULTIPLE (3) times the L3, as the tuner flushes, so no call finds its copy
 * still in the L3, for kgen's rows and every peer's alike.
 */
export const COLD_BYTES = FLUSH_CACHE_MULTIPLE * L3_BYTES;

/** Distinct copies of an operand of `bytes` that together exceed COLD_BYTES: one more than needed, at least 2. */
export function coldCopies(bytes: number): number {
  return Math.max(2, Math.ceil(COLD_BYTES / bytes) + 1);
}

/**
 * The host the bench plans its `host` kernels for: read from the environment here, at the bench's
 * edge, as the CLI reads it (`KGEN_HOST_PROFILE`, see hostFromEnvironment); this machine unless forced.
 */
export function benchHost(): HostOptions {
  return hostFromEnvironment(process.env);
}

export interface BenchRow {
  kind: 'probe' | 'kgen' | 'peer';
  /** e.g. 'gemv q4', 'probe read', 'ort MatMulNBits q4/32'. */
  case: string;
  shape: string;
  /** Host threads (0: not the bench's to choose, e.g. a WebGPU adapter's). */
  threads: number;
  /** Median wall time of one call, ms. */
  ms: number;
  minMs: number;
  /** Bytes one call moves: weights + activations + outputs (probe: bytes read). */
  bytes: number;
  gbps: number;
  /** 2*M*N*K / time (absent for the probe). */
  gflops?: number;
  /** gbps / probe gbps at the same thread count, in % (rows that stream their operand once: GEMV, decode). */
  pctProbe?: number;
  /** The read probe's GB/s at this row's thread count, mean of short probes right before and after its stage. */
  probeGbps?: number;
  /**
   * GB/s of a plain read (the probe's loop) of the very buffers this row's calls stream, by the same
   * threads in the same process, timed in rounds alternating with the calls' (C decode rows). The
   * VM's read speed differs from process to process and allocation to allocation (up to 2x), which
   * the bracket probes cannot see; this one reads the same pages at the same moments.
   */
  ownReadGbps?: number;
  /** The plain read's median time / the call's, in %: the share of the own read over the same bytes (set by the row). */
  pctOwnRead?: number;
  runs: number;
  /** Distinct weight copies rotated through (so weights come from DRAM). */
  copies?: number;
  /** Anything else worth keeping in --json (e.g. nmse of the check). */
  note?: string;
  /** CPU cores other processes kept busy, on average, while this row was measured (noise). */
  bgLoad?: number;
}

export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2]! : 0.5 * (s[n / 2 - 1]! + s[n / 2]!);
}

/** Runs a command, throwing with its stderr if it fails; returns stdout. */
export function run(cmd: string, args: readonly string[], opts: { echoStderr?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, stdio: ['ignore', 'pipe', 'pipe'] });
  if (opts.echoStderr && r.stderr) process.stderr.write(r.stderr);
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}\n${r.stderr}`);
  return r.stdout;
}

export const CFLAGS = ['-O3', '-march=native', '-pthread', '-Wall', '-Wno-unused-function'];

function fmt(n: number | undefined, digits: number): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  return n.toFixed(digits);
}

/** The human table: case, shape, threads, time ms, GB/s, GFLOPS, % of probe, % of own read. */
export function formatTable(rows: readonly BenchRow[]): string {
  const header = ['case', 'shape', 'threads', 'time ms', 'GB/s', 'GFLOPS', '% of probe', '% of own read'];
  const body = rows.map((r) => [
    r.case,
    r.shape,
    r.threads > 0 ? String(r.threads) : '-',
    fmt(r.ms, r.ms < 10 ? 3 : 1),
    fmt(r.gbps, r.gbps < 10 ? 2 : 1),
    fmt(r.gflops, 1),
    r.pctProbe === undefined ? '' : `${r.pctProbe.toFixed(0)}%`,
    r.pctOwnRead === undefined ? '' : `${r.pctOwnRead.toFixed(0)}%`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const numeric = [false, false, true, true, true, true, true, true];
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** The mark a row without numbers carries in its case (bench/kgen-rows.ts, the peers, run.ts). */
const UNTIMED = / \((WRONG OUTPUT|FAILED)\)$/;

/**
 * `--repeat`: the rows of N runs of one stage, merged per row (case without its WRONG/FAILED mark,
 * shape, threads; in order of first appearance). A row timed in every run keeps the run with the
 * lowest median; a row that was wrong, failed or missing in any run keeps no time (a kernel wrong in
 * one process of three is wrong), so best-of-N never hides a bad run. The note lists every run's
 * median (or what it was instead).
 */
export function bestOfRuns(runs: readonly (readonly BenchRow[])[]): BenchRow[] {
  if (runs.length === 1) return [...runs[0]!];
  const key = (r: BenchRow) => `${r.case.replace(UNTIMED, '')}\u0000${r.shape}\u0000${r.threads}`;
  const keys = [...new Set(runs.flatMap((rs) => rs.map(key)))];
  return keys.map((k) => {
    const same = runs.map((rs) => rs.find((r) => key(r) === k));
    const timed = same.filter((r): r is BenchRow => r !== undefined && Number.isFinite(r.ms));
    const medians = same.map((r) => (r === undefined ? 'absent' : Number.isFinite(r.ms) ? r.ms.toFixed(3) : (UNTIMED.exec(r.case)?.[1] ?? 'no time'))).join(' / ');
    if (timed.length === runs.length) {
      const best = timed.reduce((a, b) => (b.ms < a.ms ? b : a));
      return { ...best, note: [best.note, `best of ${runs.length} runs, medians ${medians} ms`].filter(Boolean).join('; ') };
    }
    const bad = same.find((r): r is BenchRow => r !== undefined && !Number.isFinite(r.ms));
    const base = bad ?? timed[0]!;
    const label = bad ? base.case : `${base.case} (FAILED)`;
    return { ...base, case: label, ms: NaN, minMs: NaN, gbps: NaN, gflops: NaN, note: [base.note, `no time: not timed in every one of ${runs.length} runs, medians ${medians} ms`].filter(Boolean).join('; ') };
  });
}

// The tuner judges its timings with the same counters (src/tune/interference.ts).
export { cpuSample, foreignCpu, type CpuSample } from '../src/tune/interference.js';

/** What one bench entry point accepts on its command line (names with their leading `--`). */
export interface BenchArgSpec {
  /** Switches: `--json`. */
  flags: readonly string[];
  /** Options that take a value: `--runs 51`. */
  options: readonly string[];
  /** Printed for `--help` / `-h` (then the process exits 0). */
  usage: string;
}

/** An entry point's command line, checked (benchArgs). */
export interface BenchArgs {
  flag(name: string): boolean;
  opt(name: string, fallback: string): string;
  /** A user's mistake on the command line: said on stderr with the usage, status 2, no stack trace. */
  refuse(message: string): never;
  /** A whole-number option of at least `min` (else refused). */
  count(name: string, fallback: string, min: number): number;
  /** A JSON object of knobs (`--config '{"rowGroup":8}'`; else refused), or undefined where not given. */
  knobs(name: string): Record<string, number> | undefined;
}

/**
 * The bench's command-line flags: `flag('--json')`, `opt('--runs', '51')`. Arguments are checked
 * against `spec` first: an unknown flag (a typo would otherwise be ignored and the whole bench run
 * without it), an option without its value or a stray word exits with a message naming it and
 * status 2. Asking for a name `spec` does not declare is a programming error and throws.
 */
export function benchArgs(argv: readonly string[], spec: BenchArgSpec): BenchArgs {
  const bare = (name: string) => name.replace(/^--/, '');
  const options: Record<string, { type: 'boolean' | 'string'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const f of spec.flags) options[bare(f)] = { type: 'boolean' };
  for (const o of spec.options) options[bare(o)] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    // parseArgs names the argument ("Unknown option '--cases2'", "Option '--runs <value>' argument missing").
    log(`${(err as Error).message.split('\n')[0]}; the options are:\n${spec.usage}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${spec.usage}\n`);
    process.exit(0);
  }
  const declared = (name: string, kind: 'boolean' | 'string') => {
    if (options[bare(name)]?.type !== kind) throw new Error(`bench: ${name} is not a declared ${kind === 'boolean' ? 'flag' : 'option'} of this entry point`);
    return bare(name);
  };
  const opt = (name: string, fallback: string) => (values[declared(name, 'string')] as string | undefined) ?? fallback;
  const refuse = (message: string): never => {
    log(`${message}\n${spec.usage}`);
    process.exit(2);
  };
  return {
    flag: (name) => values[declared(name, 'boolean')] === true,
    opt,
    refuse,
    count(name, fallback, min) {
      const text = opt(name, fallback);
      const n = Number(text);
      if (!Number.isInteger(n) || n < min) refuse(`${name} needs a whole number >= ${min}, got '${text}'`);
      return n;
    },
    knobs(name) {
      const text = opt(name, '');
      if (text === '') return undefined;
      try {
        const parsed: unknown = JSON.parse(text);
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, number>;
      } catch {
        // said below
      }
      return refuse(`${name} needs a JSON object of knobs, e.g. '{"rowGroup":8}', got '${text}'`);
    },
  };
}

/**
 * The C variants a bench times by default: AVX2 always (issue 13's goals are stated for it), then
 * AVX-VNNI and AVX-512 where this CPU runs them natively (not AVX-VNNI's stand-in build on AVX-512 VNNI).
 */
export function defaultBenchIsas(): string {
  return ['avx2', ...['avxvnni', 'avx512'].filter((isa) => cannotRunNativelyReason(isa) === undefined)].join(',');
}
