import { homedir } from 'node:os';
import { join } from 'node:path';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { resolveRequest } from '../api/request.js';
import { checkSupport, planRequest, targetNames } from '../backends/registry.js';
import { contendingTrials, currentTrials } from '../db/current.js';
import { notRunnable, notRunnableText } from '../db/not-runnable.js';
import type { TrialRow, TuningDb, Workload } from '../db/types.js';
import { getDevice, type HostOptions } from '../device/index.js';
import type { DeviceProfile, TargetName } from '../device/profile.js';
import { KgenError } from '../errors.js';
import { formatShape } from '../ir/validate.js';
import { sumBytes } from '../plan/common.js';
import { configInUse, configShown, spaceFor } from '../plan/index.js';
import type { Config } from '../plan/types.js';
import { rooflineMs } from '../plan/roofline.js';
import { checkPins, pruneSpace, type PrunedSpace } from '../tune/space.js';
import { resolveStrategy, STRATEGIES } from '../tune/strategies/index.js';
import { DEFAULT_TIMING_POLICY } from '../tune/interference.js';
import { RETIME_STRATEGY, timingRunner, tune, type FinalRetiming, type TuneEvent, type TuneSummary, type WorkloadSpec } from '../tune/tuner.js';
import { checkPresent, checkTimesAreReal } from '../tune/timeable.js';
import { standardWorkload } from '../tune/workloads.js';
import { checkRunFits } from '../api/run-memory.js';
import { parseJsonInput } from '../io/json-input.js';
import { quoted } from '../io/message-text.js';
import { ensureDirectory, removeCreated } from '../io/output.js';
import { sweepOrphanTempDirs } from '../io/temp-dirs.js';
import { MAX_TIMED_THREADS } from '../backends/harness.js';
import { addDbFlag, cliHost, fmtMs, missingShapeError, targetChoices, openDbForWriting, preflightDbForWriting, readIr, table } from './common.js';
import { optionalCount, optionalPath, parseDuration, parseSeed } from './flags.js';

interface TuneFlags {
  device: string;
  target?: string;
  op?: string;
  ir?: string;
  shape?: string;
  strategy: string;
  strategyOpt: string[];
  trials?: string;
  timeBudget?: string;
  db?: string;
  dryRun?: boolean;
  json?: boolean;
  seed: string;
  threads?: string;
  timeout?: string;
  cacheDir?: string;
  config?: string;
  remeasure?: string;
  retime?: string;
}

function parseStrategyOpts(pairs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of pairs) {
    const m = /^([a-z][a-zA-Z0-9]{0,31})=(-?\d{1,9}(?:\.\d{1,9})?)$/.exec(p);
    if (!m) throw new KgenError({ field: '--strategy-opt', problem: `got ${quoted(p, 40)}`, expected: 'name=number, e.g. population=16' });
    if (Object.hasOwn(out, m[1]!)) throw new KgenError({ field: '--strategy-opt', problem: `${m[1]} given twice`, expected: 'each option once' });
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

function workloadsOf(flags: TuneFlags, target: TargetName, device: DeviceProfile, hostOpts: HostOptions): WorkloadSpec[] {
  if (!flags.op && !flags.ir) {
    if (flags.shape) throw new KgenError({ field: '--shape', problem: 'given without --op', expected: '--op NAME (or --ir FILE) with --shape', hint: 'omit both to tune the standard workload' });
    return standardWorkload();
  }
  const ir = flags.ir !== undefined ? readIr(flags.ir) : undefined;
  if (!flags.shape) throw missingShapeError(flags.shape, flags.op, ir);
  // The profile itself, not its name: a profile file's name is no device kgen knows.
  const req = resolveRequest({ target, op: flags.op, ir, shape: flags.shape, device, ...hostOpts });
  return [{ op: req.op, shape: req.shape }];
}

function parseFixed(text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  const expected = 'a JSON object like {"isa":"avx2"}';
  const v = parseJsonInput(text, { field: '--config', expected });
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new KgenError({ field: '--config', problem: `got ${quoted(text, 40)}`, expected });
  return v as Record<string, unknown>;
}

/** Every tune flag, checked the same way with or without --dry-run, before anything runs. */
function parseSettings(flags: TuneFlags, withOp: boolean) {
  const strategyOptions = parseStrategyOpts(flags.strategyOpt);
  resolveStrategy(flags.strategy, strategyOptions);
  const cacheDir = optionalPath(flags.cacheDir, '--cache-dir', 'a directory path');
  optionalPath(flags.db, '--db', 'a database file path');
  return {
    strategyOptions,
    trials: optionalCount(flags.trials, '--trials', { max: 1_000_000 }) ?? (withOp ? 40 : 24),
    timeBudgetMs: flags.timeBudget !== undefined ? parseDuration(flags.timeBudget, '--time-budget') : undefined,
    threads: optionalCount(flags.threads, '--threads', { max: MAX_TIMED_THREADS }),
    timeoutMs: flags.timeout !== undefined ? parseDuration(flags.timeout, '--timeout') : undefined,
    cacheDir: cacheDir ?? join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kgen', 'builds'),
    seed: parseSeed(flags.seed),
    timing: {
      remeasure: optionalCount(flags.remeasure, '--remeasure', { min: 0, max: 10 }),
      finalists: optionalCount(flags.retime, '--retime', { min: 0, max: 20 }),
    },
  };
}

export function registerTune(program: Command): void {
  const cmd = program
    .command('tune')
    .description('autotune kernels on this machine: prune the search space, compile, run, check and time configs, and record every trial in the tuning database')
    .requiredOption('--device <name>', 'the device to tune: host (this CPU) or a profile that is present (see `kgen devices`; a profile file NAME.json is present where its match finds it)')
    .option('--target <target>', `${targetChoices()} (default: the device's first target, see \`kgen devices\`)`)
    .option('--op <name>', 'catalog op (default: the standard workload, see below)')
    .option('--ir <file>', 'your own op as a JSON file (instead of --op)')
    .option('--shape <dims>', 'dimensions, e.g. M=1,N=4096,K=4096 (with --op)')
    .option('--config <json>', 'pin knobs to one value each (a partial config), e.g. \'{"isa":"avx2"}\'')
    .option('--strategy <name>', `search strategy: ${Object.keys(STRATEGIES).join(' | ')}`, 'evolutionary')
    .option('--strategy-opt <name=value>', 'a strategy option (repeatable); see below', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--trials <n>', 'trials per workload at most (default: 40 with --op, 24 for the standard workload)')
    .option('--time-budget <duration>', 'stop cleanly after this long, e.g. 90s, 10m, 1h')
    .option('--dry-run', 'print the search space (legal configs with footprint and roofline time, pruned configs by reason); runs nothing')
    .option('--seed <n>', 'seed of the strategy and of the test data', '1')
    .option('--threads <n>', 'host threads a CPU kernel is timed on (default: the profile\'s cores, at most this machine\'s: all of them for host, 1 for wasm-simd128, whose matmul harness runs 1 thread and attention harness 1 to 16)')
    .option('--timeout <duration>', 'per-run timeout for a candidate (default: 30s or more for slow shapes)')
    .option('--cache-dir <dir>', 'where compiled candidates are cached by source hash (default: $XDG_CACHE_HOME/kgen/builds, else ~/.cache/kgen/builds)')
    .option('--remeasure <n>', `time a trial up to n more times when its timing shows interference, keeping an undisturbed one, else the fastest (default ${DEFAULT_TIMING_POLICY.remeasure}; 0: never)`)
    .option('--retime <n>', `at the end of each workload, re-time the best n configs back to back and take the winner from those re-timings (default ${DEFAULT_TIMING_POLICY.finalists}; below 2: off)`)
    .option('--json', 'machine-readable output (JSON lines of progress events on stdout, then the summary; with --dry-run one JSON array, a workload\'s space per line)');
  addDbFlag(cmd);
  cmd.addHelpText(
    'after',
    `
Without --op, tune runs the standard workload: the matmul layers of Llama-3-8B and -70B
(N x K = 14336x4096, 4096x14336, 4096x4096, 1024x4096, 28672x8192, 8192x8192) at M = 1, 16, 256 in
the formats q4, q35, q4_0, q8, q8_0, decode (M=1) first. Ctrl-C stops cleanly: every finished
trial is in the database, and running the same command again resumes where it stopped.

Timing the tuner can trust: a timing counts as disturbed when the spread of its runs
((p90 - p10) / median) is over ${pct(DEFAULT_TIMING_POLICY.maxSpread)} (and p90 - p10 at least ${DEFAULT_TIMING_POLICY.minSpreadMs * 1000} us), or when other
processes kept more than ${DEFAULT_TIMING_POLICY.maxForeignCores} cores busy on average beyond the cores the kernel left idle
(/proc/stat, Linux; at least ${DEFAULT_TIMING_POLICY.minForeignCpuSeconds} CPU seconds). A disturbed trial is timed again, up to
--remeasure more times, recording an undisturbed attempt, else the fastest; a line says so. When a
workload's trials are done, its best --retime configs are timed again back to back, interleaved
over ${DEFAULT_TIMING_POLICY.finalRounds} rounds, each recorded as a trial (strategy "retime") with its median round. That
re-timing is the verdict: its winner is the recorded best that emit takes, until a config
measured later is faster. A time budget keeps room for it.

Strategy options: ${Object.values(STRATEGIES).map((s) => `${s.name}: ${s.options.map((o) => `${o.name} (${o.doc}, default ${o.default})`).join('; ') || 'none'}`).join('. ')}.

Examples:
  kgen tune --device host --op matmul_q4 --shape M=1,N=4096,K=4096 --trials 40
  kgen tune --device host --time-budget 10m
  kgen tune --device host --op matmul_q35 --shape M=16,N=4096,K=4096 --strategy exhaustive --config '{"isa":"avx2"}'
  kgen tune --device rtx4090 --dry-run --op matmul_q4 --shape M=1,N=4096,K=14336`,
  );
  cmd.action(async (flags: TuneFlags) => {
    // Ctrl-C before the first trial starts: nothing is recorded yet, so say so and stop; once the
    // tuner runs, the first asks it to finish cleanly and a second quits at once.
    const controller = new AbortController();
    let tuning = false;
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (!tuning) {
        process.stderr.write(`\nkgen: ${sig}: stopped before any trial ran; nothing was recorded\n`);
        process.exit(130);
      }
      if (signals > 1) process.exit(130); // a second Ctrl-C: every finished trial is already committed
      process.stderr.write(`\nkgen: ${sig}: finishing cleanly (again to quit now); run the same command to resume\n`);
      controller.abort();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      await tuneAction(flags, controller, () => (tuning = true));
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
}

/** `kgen tune`'s work once its signal handling is in place; `started` marks the first trial's start. */
async function tuneAction(flags: TuneFlags, controller: AbortController, started: () => void): Promise<void> {
  const hostOpts = cliHost();
  const device = getDevice(flags.device, hostOpts);
  const target = flags.target ?? device.targets[0]!;
  if (!targetNames().includes(target) || !device.targets.includes(target)) {
    throw new KgenError({ field: '--target', problem: `${quoted(String(flags.target))} is not a target of ${device.name}`, expected: `one of ${device.targets.join(', ')}` });
  }
  const workloads = workloadsOf(flags, target, device, hostOpts);
  const fixed = parseFixed(flags.config);
  const { strategyOptions, ...settings } = parseSettings(flags, Boolean(flags.op || flags.ir));
  if (flags.dryRun) return dryRun(device, target, workloads, fixed, Boolean(flags.json));
  checkPresent(device);
  const firstReq = planRequest({ op: workloads[0]!.op, shape: workloads[0]!.shape, device, target });
  checkSupport(firstReq);
  // Named (--op, --ir) or pinned (--config) workloads are refused here when none of their configs
  // is legal, before anything exists; the standard set, whose spaces all hold configs, is not
  // planned twice for that (the tuner reports any workload it skips).
  const pinned = flags.config !== undefined;
  const first = (pinned || flags.op || flags.ir ? legalSpaces(workloads, device, target, fixed, pinned, flags.ir !== undefined ? '--ir' : '--op')[0]! : pruneSpace(firstReq, fixed)).legal[0];
  // tune() refuses these too; here they come before the database and the cache exist.
  if (first) {
    const runner = timingRunner(first.plan);
    checkTimesAreReal(device, target, runner);
    if (settings.threads !== undefined) runner.checkTimedThreads?.(settings.threads);
  }
  for (const w of workloads) checkRunFits(w, 'the tuner');
  // Every flag and the database are checked before anything is created.
  preflightDbForWriting(flags);
  const createdCache = ensureDirectory(settings.cacheDir, '--cache-dir');
  let db: TuningDb;
  try {
    db = openDbForWriting(flags);
  } catch (e) {
    removeCreated(createdCache); // a refused database leaves no new cache directory behind
    throw e;
  }
  started();
  // A tune killed outright (SIGKILL, out of memory) leaves its builds and input files behind.
  const swept = sweepOrphanTempDirs();
  if (swept && !flags.json) process.stderr.write(`kgen tune: removed ${swept} temporary director${swept === 1 ? 'y' : 'ies'} left by kgen processes that no longer run\n`);
  const shown = configViewer(device, target);
  const progress = makeProgress(Boolean(flags.json), shown);
  let summary: TuneSummary;
  try {
    summary = await tune({
      db,
      device,
      target,
      workloads,
      fixed,
      strategy: flags.strategy,
      strategyOptions,
      ...settings,
      signal: controller.signal,
      onEvent: progress.event,
    });
  } catch (e) {
    db.close(); // every finished trial is committed already
    throw e;
  } finally {
    progress.stop();
  }
  try {
    report(db, summary, Boolean(flags.json), shown);
  } finally {
    db.close();
  }
  if (summary.stopped === 'interrupted') process.exitCode = 130;
}

function pct(x: number): string {
  return `${Math.round(100 * x)}%`;
}

/**
 * "the best 3", with "the default config" where the default was re-timed with them, and "the best
 * outside --config" where a pinned session re-timed the workload's best too.
 */
function finalistsText(f: { finalists: readonly unknown[]; withDefault: boolean; withLeader: boolean }): string {
  const extra = [f.withDefault && 'the default config', f.withLeader && 'the best outside --config'].filter((x): x is string => Boolean(x));
  const best = `the best ${f.finalists.length - extra.length}`;
  return extra.length ? `${[best, ...extra.slice(0, -1)].join(', ')} and ${extra.at(-1)}` : best;
}

/** One line on what the final re-timing decided; `config` is the winner's as shown. */
function retimedLine(f: FinalRetiming, config: (c: Config) => Config): string {
  const w = f.winner;
  const head = `re-timed ${finalistsText(f)} back to back, ${f.rounds} rounds`;
  return w?.timing ? `${head}: winner ${fmtMs(w.timing.medianMs)} ms (measured ${fmtMs(f.finalists.find((x) => x.trial.id === w.id)!.beforeMs)} ms before) ${JSON.stringify(config(w.config))}` : `${head}: every one failed when run again`;
}

/** How the text output shows a workload's config: the knobs in use only. */
type ConfigView = (w: Pick<WorkloadSpec, 'op' | 'shape'>, config: Config) => Config;

/**
 * The configs of the text output as `emit` shows them: the knobs that matter for each (records and
 * `--json` keep the whole config, which names the trial). One search space per op and shape.
 */
function configViewer(device: DeviceProfile, target: TargetName): ConfigView {
  const spaces = new Map<string, ReturnType<typeof spaceFor>>();
  return (w, config) => {
    const key = `${w.op.name} ${formatShape(w.shape)}`;
    let space = spaces.get(key);
    if (!space) spaces.set(key, (space = spaceFor(planRequest({ op: w.op, shape: w.shape, device, target }))));
    return configShown(space, config);
  };
}

/** A duration for the progress bar: "45s", "3m 05s", "1h 02m". */
export function durationText(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

/** Progress: a bar on a terminal (stderr), plain lines otherwise, JSON lines with --json. */
function makeProgress(json: boolean, shown: ConfigView): { event: (e: TuneEvent) => void; stop: () => void } {
  if (json) return { event: (e) => process.stdout.write(`${JSON.stringify(eventJson(e))}\n`), stop: () => {} };
  const tty = Boolean(process.stderr.isTTY);
  const bar = tty
    ? new cliProgress.SingleBar(
        { format: '{workload} [{bar}] {value}/{total} trials | {failures} failed{unsupported} | best {best} | {left} left', stream: process.stderr, hideCursor: true },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let started = false;
  let lastLine = 0;
  // The time left, from this workload's trials so far (the bar's own estimate reads "0s" before the first).
  let workloadStart = 0;
  const leftText = (done: number, planned: number): string => (done === 0 ? '?' : durationText(((performance.now() - workloadStart) / done) * (planned - done)));
  // A line of its own, above the bar on a terminal.
  const say = (line: string) => process.stderr.write(bar && started ? `\r\x1b[2K  ${line}\n` : `kgen tune:   ${line}\n`);
  return {
    event(e) {
      if (e.kind === 'workload') {
        const name = `${e.workload.op.name} ${formatShape(e.workload.shape)}`;
        const line = `[${e.index + 1}/${e.of}] ${name}: ${e.space.legal.length} legal of ${e.space.total} configs, ${e.resumed} measured before, ${e.planned} to measure`;
        if (bar) {
          if (started) bar.stop();
          process.stderr.write(`${line}\n`);
          bar.start(Math.max(e.planned, 1), 0, { workload: name, failures: 0, unsupported: '', best: '-', left: '?' });
          workloadStart = performance.now();
          started = true;
        } else {
          process.stderr.write(`kgen tune: ${line}\n`);
        }
      } else if (e.kind === 'skipped') {
        say(`[${e.index + 1}/${e.of}] ${e.op} ${formatShape(e.shape)}: skipped, no config runs here: ${mainPruningText(e.space)}`);
      } else if (e.kind === 'trial') {
        const best = e.best?.timing ? `${fmtMs(e.best.timing.medianMs)} ms` : '-';
        const notRun = e.unsupported ? `, ${e.unsupported} not runnable here` : '';
        if (bar) bar.update(e.done, { failures: e.failures, unsupported: notRun, best, left: leftText(e.done, e.planned) });
        else if (e.done === e.planned || performance.now() - lastLine > 5000 || e.trial.status !== 'ok') {
          lastLine = performance.now();
          const what = e.trial.timing ? `${fmtMs(e.trial.timing.medianMs)} ms` : e.trial.status;
          process.stderr.write(`kgen tune:   trial ${e.done}/${e.planned}: ${what} ${JSON.stringify(shown(e.workload, e.trial.config))}; best ${best}, ${e.failures} failed${notRun}\n`);
        }
      } else if (e.kind === 'remeasure') {
        const what = e.medianMs !== undefined ? `${fmtMs(e.medianMs)} ms, ` : '';
        say(`${e.final ? 're-timing: ' : ''}${what}${e.reasons.join(', ')}: measuring again (attempt ${e.attempt} of ${e.of})`);
      } else if (e.kind === 'retiming') {
        say(`re-timing ${finalistsText(e)} back to back, ${e.rounds} rounds`);
      } else if (e.kind === 'retimed') {
        say(retimedLine(e.result, (c) => shown(e.workload, c)));
      } else if (e.kind === 'stopped') {
        if (bar && started) bar.stop();
        started = false;
        process.stderr.write(`kgen tune: stopped (${e.reason}); every finished trial is recorded\n`);
      }
    },
    stop() {
      if (bar && started) bar.stop();
    },
  };
}

function eventJson(e: TuneEvent): unknown {
  switch (e.kind) {
    case 'workload':
      return { event: 'workload', index: e.index, of: e.of, workloadId: e.workload.id, op: e.workload.op.name, shape: e.workload.shape, total: e.space.total, legal: e.space.legal.length, pruned: Object.fromEntries(e.space.pruned), resumed: e.resumed, planned: e.planned };
    case 'trial':
      return {
        event: 'trial',
        workloadId: e.workload.id,
        done: e.done,
        planned: e.planned,
        status: e.trial.status,
        config: e.trial.config,
        medianMs: e.trial.timing?.medianMs,
        spread: e.trial.timing?.spread,
        attempts: e.attempts,
        disturbed: e.interference?.disturbed,
        reasons: e.interference?.reasons.length ? e.interference.reasons : undefined,
        error: e.trial.error?.split('\n')[0],
        bestMs: e.best?.timing?.medianMs,
      };
    case 'remeasure':
      return { event: 'remeasure', workloadId: e.workload.id, config: e.config, attempt: e.attempt, of: e.of, reasons: e.reasons, medianMs: e.medianMs, final: e.final };
    case 'retiming':
      return { event: 'retiming', workloadId: e.workload.id, rounds: e.rounds, configs: e.finalists.map((t) => t.config), withDefault: e.withDefault, withLeader: e.withLeader };
    case 'retimed':
      return { event: 'retimed', workloadId: e.workload.id, ...finalJson(e.result) };
    case 'workload-done':
      return { event: 'workload-done', workloadId: e.workload.id, measured: e.measured, bestMs: e.best?.timing?.medianMs, bestConfig: e.best?.config };
    case 'stopped':
      return { event: 'stopped', reason: e.reason };
    case 'skipped':
      return { event: 'skipped', index: e.index, of: e.of, op: e.op, shape: e.shape, total: e.space.total, pruned: Object.fromEntries(e.space.pruned) };
  }
}

/** Rows of the results table: time, GB/s, GFLOPS and % of the device's roofline. */
export function performanceRow(w: Workload, t: TrialRow): { ms: number; gbps: number; gflops: number; roofline: number } {
  const ms = t.timing!.medianMs;
  return { ms, gbps: w.bytes / (ms * 1e-3) / 1e9, gflops: w.flops / (ms * 1e-3) / 1e9, roofline: (100 * w.rooflineMs) / ms };
}

function finalJson(f: FinalRetiming): Record<string, unknown> {
  return {
    rounds: f.rounds,
    winnerConfig: f.winner?.config,
    winnerMs: f.winner?.timing?.medianMs,
    finalists: f.finalists.map((x) => ({ config: x.trial.config, status: x.trial.status, medianMs: x.trial.timing?.medianMs, beforeMs: x.beforeMs, roundsMs: x.roundsMs })),
  };
}

function report(db: TuningDb, summary: TuneSummary, json: boolean, shown: ConfigView): void {
  const out = summary.results.map((r) => {
    // The configs competing for the best, as db best and emit judge them (after a re-timing: its finalists and anything newer).
    const trials = db.trials(r.workload.id);
    const top = contendingTrials(trials).slice(0, 5);
    return { r, top, notRun: notRunnable(currentTrials(trials)) };
  });
  if (json) {
    // JSON lines: the summary is the last line, like the events before it.
    process.stdout.write(`${JSON.stringify({
      event: 'summary',
      stopped: summary.stopped ?? null,
      workloads: out.map(({ r, top, notRun }) => ({
        workloadId: r.workload.id,
        op: r.workload.op.name,
        shape: r.workload.shape,
        space: r.space,
        added: r.added,
        disturbed: r.disturbed,
        notRunnable: notRun,
        defaultMs: r.default?.timing?.medianMs,
        top: top.map((t) => ({ config: t.config, ...performanceRow(r.workload, t), retimed: t.strategy === RETIME_STRATEGY })),
        final: r.final ? finalJson(r.final) : undefined,
      })),
    })}\n`);
    return;
  }
  for (const { r, top, notRun } of out) {
    const w = r.workload;
    process.stdout.write(`\n${w.op.name} ${formatShape(w.shape)} on ${w.device} (${w.target}); workload ${w.id}, ${r.added} new trials\n`);
    const notRunLine = notRunnableText(notRun);
    if (notRunLine) process.stdout.write(`  ${notRunLine} (no verdict on those configs; a machine that can run them measures them)\n`);
    if (!top.length) {
      process.stdout.write('  no config ran correctly yet (see `kgen db show ' + w.id + '`)\n');
      continue;
    }
    const rows = [['rank', 'time ms', 'GB/s', 'GFLOPS', '% roofline', 'config']];
    top.forEach((t, i) => {
      const p = performanceRow(w, t);
      rows.push([String(i + 1), fmtMs(p.ms), p.gbps.toFixed(1), p.gflops.toFixed(1), `${p.roofline.toFixed(0)}%`, JSON.stringify(shown(w, t.config))]);
    });
    process.stdout.write(`${table(rows).replace(/^/gm, '  ')}\n`);
    if (r.final) process.stdout.write(`  ${retimedLine(r.final, (c) => shown(w, c))}\n`);
    if (r.disturbed) {
      process.stdout.write(`  warning: ${r.disturbed} timing(s) showed interference in every attempt (other processes busy, or a noisy machine): those times are likely too slow; tune again on a quiet machine, or with --threads below the core count\n`);
    }
    if (r.default?.timing && r.best?.timing) {
      process.stdout.write(`  default config: ${fmtMs(r.default.timing.medianMs)} ms; best is ${(r.default.timing.medianMs / r.best.timing.medianMs).toFixed(2)}x faster\n`);
    }
  }
  if (summary.stopped) process.stdout.write(`\nstopped early (${summary.stopped}); run the same command again to resume\n`);
}

/** A space's three most common pruning reasons: "of N, n1 by reason; ...". */
function mainPruningText(s: PrunedSpace): string {
  return `of ${s.total}, ${[...s.pruned].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([reason, n]) => `${n} by ${reason}`).join('; ')}`;
}

/**
 * Each workload's pruned space; a workload with no legal config is refused before anything runs
 * (most often a --config pinning a knob value the restrictions rule out): the tuner would skip it
 * without a word.
 */
function legalSpaces(workloads: WorkloadSpec[], device: DeviceProfile, target: TargetName, fixed: Record<string, unknown>, pinned: boolean, opFlag: '--op' | '--ir') {
  return workloads.map((w) => {
    const s = pruneSpace(planRequest({ op: w.op, shape: w.shape, device, target }), fixed);
    if (s.legal.length > 0) return s;
    throw new KgenError({
      field: pinned ? '--config' : opFlag,
      problem: `no config of ${w.op.name} ${formatShape(w.shape)} on ${device.name} (${target}) is legal: ${mainPruningText(s)}`,
      expected: pinned ? 'knob values the restrictions allow' : 'an op and shape this device can run',
      hint: 'the same command with --dry-run lists every pruned config by reason',
    });
  });
}

/**
 * The search spaces, one workload at a time: each is enumerated, printed and dropped before the
 * next (every legal config of ~90 workloads at once took over a gigabyte). `--json` prints one JSON
 * array, a workload's object per line. Every request and pin is checked first, so a refusal prints
 * nothing on stdout.
 */
function dryRun(device: DeviceProfile, target: TargetName, workloads: WorkloadSpec[], fixed: Record<string, unknown>, json: boolean): void {
  const requests = workloads.map((w) => planRequest({ op: w.op, shape: w.shape, device, target }));
  for (const req of requests) checkPins(req, fixed);
  if (json) process.stdout.write('[');
  workloads.forEach((w, at) => {
    const s = pruneSpace(requests[at]!, fixed);
    if (json) {
      const legal = s.legal.map((c) => ({ config: c.config, footprint: footprint(c.plan.buffers), rooflineMs: rooflineMs(device, c.plan.traffic) }));
      process.stdout.write(`${at ? ',' : ''}\n${JSON.stringify({ op: w.op.name, shape: w.shape, total: s.total, legal, pruned: Object.fromEntries(s.pruned) })}`);
      return;
    }
    process.stdout.write(`${w.op.name} ${formatShape(w.shape)} on ${device.name} (${target}): ${s.legal.length} legal of ${s.total} configs\n`);
    for (const [reason, n] of [...s.pruned].sort((a, b) => b[1] - a[1])) process.stdout.write(`  pruned ${n}: ${reason}\n`);
    if (workloads.length === 1) {
      const rows = [['#', 'config', 'on-chip bytes', 'registers', 'roofline ms']];
      s.legal.forEach((c, i) => {
        const f = footprint(c.plan.buffers);
        // Each candidate has its plan: the knobs in use come with it.
        rows.push([String(i + 1), JSON.stringify(configInUse(c.plan)), String(f.bytes), String(f.registers), fmtMs(rooflineMs(device, c.plan.traffic))]);
      });
      process.stdout.write(`${table(rows).replace(/^/gm, '  ')}\n`);
    }
  });
  if (json) process.stdout.write('\n]\n');
  else if (workloads.length > 1) process.stdout.write(`(${workloads.length} workloads; give --op and --shape to list one workload's configs)\n`);
}

function footprint(buffers: Parameters<typeof sumBytes>[0]): { bytes: number; registers: number } {
  return { bytes: sumBytes(buffers, 'shared') + sumBytes(buffers, 'l1') + sumBytes(buffers, 'l2'), registers: sumBytes(buffers, 'registers') };
}
