import { randomUUID } from 'node:crypto';
import { availableParallelism, cpus, hostname } from 'node:os';
import { checkSupport, planRequest, renderPlan, runnerFor, targetFor } from '../backends/registry.js';
import type { KernelBuild, KernelRunner, TrialStatus } from '../backends/types.js';
import { contendingTrials, currentTrials, RETIME_STRATEGY } from '../db/current.js';
import type { Trial, TrialRow, TuningDb, Workload } from '../db/types.js';
import { measuredDevice } from '../device/host.js';
import { FLUSH_CACHE_MULTIPLE, type DeviceProfile, type TargetName } from '../device/profile.js';
import type { Op, Shape } from '../ir/types.js';
import { opHash } from '../ir/validate.js';
import { opKit, type TestData } from '../ops/index.js';
import { Rng } from '../numeric/random.js';
import type { Config, Plan, PlanRequest } from '../plan/types.js';
import { commentText } from '../render/comment-text.js';
import { KGEN_VERSION } from '../version.js';
import { fingerprintFor } from './fingerprint.js';
import { rooflineMs } from '../plan/roofline.js';
import { configHash, pruneSpace, type Candidate, type PrunedSpace } from './space.js';
import { resolveStrategy } from './strategies/index.js';
import { checkPresent, checkTimesAreReal } from './timeable.js';
import {
  assessInterference,
  cpuSample,
  foreignLoad,
  needsRemeasure,
  pickAttempt,
  representative,
  roundOrder,
  timingPolicy,
  type CpuSample,
  type Interference,
  type TimingPolicy,
} from './interference.js';

export { RETIME_STRATEGY };

/** One op at one shape: what a tune session measures configs of. */
export interface WorkloadSpec {
  op: Op;
  shape: Shape;
}

export interface TuneOptions {
  db: TuningDb;
  device: DeviceProfile;
  target: TargetName;
  workloads: WorkloadSpec[];
  /** Knobs pinned to one value (a partial config), e.g. `{isa: 'avx2'}`. */
  fixed?: Record<string, unknown>;
  strategy: string;
  strategyOptions?: Record<string, number>;
  /** Trials per workload at most (the legal space may be smaller). */
  trials: number;
  /** Wall-clock budget for the whole session, ms; the session stops cleanly when it runs out. */
  timeBudgetMs?: number;
  /** Host threads a CPU kernel's rows are split over while timed (default: the timed profile's cores, `measuredDevice`, at most `machineCores`). */
  threads?: number;
  /** Per-execution timeout, ms. */
  timeoutMs?: number;
  /** Where builds are cached by source hash. */
  cacheDir: string;
  seed?: number;
  /** Aborting stops the session after (or during) the trial in flight; nothing half-done is recorded. */
  signal?: AbortSignal;
  onEvent?: (event: TuneEvent) => void;
  /** Builds compiled at once (default: one per core of the machine timed, `measuredDevice`, or of this machine for a GPU). */
  parallelBuilds?: number;
  /**
   * The runner for a candidate's plan (default: the target's runner for real timings, `timingRunner`).
   * A caller that brings its own (the tests' stand-ins) answers for its times: the tuner then skips
   * its checks that the device is here and that the runner times it truly (`checkPresent`,
   * `checkTimesAreReal`).
   */
  runnerFor?: (plan: Plan) => KernelRunner;
  /**
   * How timings are judged and taken again (fields over `DEFAULT_TIMING_POLICY`, src/tune/interference.ts):
   * a trial whose timing shows interference (spread over `maxSpread`, other processes' CPU time
   * over `maxForeignCores`) is timed again up to `remeasure` more times, recording an undisturbed
   * attempt, else the fastest; at the end of each workload the best `finalists` configs are re-timed back
   * to back, interleaved over `finalRounds` rounds, and the winner is chosen from those re-timings.
   */
  timing?: Partial<TimingPolicy>;
  /**
   * Reads this machine's CPU counters before and after each timed execution, for the CPU time
   * other processes took meanwhile (default `cpuSample`: /proc/stat and /proc/self/stat; where it
   * returns undefined, the spread is the only evidence). Tests pass a fake.
   */
  cpuSampler?: () => CpuSample | undefined;
  /**
   * Cores of the machine whose counters `cpuSampler` reads (default: this machine's, `os.cpus()`),
   * for the cores a timed run leaves idle, and the most threads a run takes by default. Not the
   * profile's: wasm-simd128 models one core of a typical desktop, while its kernels run here beside
   * this machine's other cores. Tests pass it with their fake sampler.
   */
  machineCores?: number;
}

/** What the CLI shows as a session goes; the tuner itself never prints. */
export type TuneEvent =
  | { kind: 'workload'; index: number; of: number; workload: Workload; space: PrunedSpace; resumed: number; planned: number }
  | {
      kind: 'trial';
      workload: Workload;
      trial: TrialRow;
      best?: TrialRow;
      done: number;
      planned: number;
      /** Trials that failed (compile error, crash, timeout, wrong result); `unsupported` ones not counted. */
      failures: number;
      /** Trials this machine could not run (`unsupported`): no verdict on their configs. */
      unsupported: number;
      elapsedMs: number;
      /** Timed executions this trial took (1 unless interference made the tuner time it again; 0 for a compile error). */
      attempts: number;
      /** The evidence on the recorded attempt (still `disturbed` when every attempt was). */
      interference?: Interference;
    }
  | {
      kind: 'remeasure';
      workload: Workload;
      config: Config;
      /** The attempt about to start (2 or more) and the most there will be. */
      attempt: number;
      of: number;
      /** Why the previous attempt was not trusted, e.g. "spread 62% > 25%". */
      reasons: string[];
      /** The previous attempt's median, when it had a timing. */
      medianMs?: number;
      /** True inside the final re-timing. */
      final: boolean;
    }
  /**
   * `finalists`: the best few, then the default config where `withDefault` (it was not among them),
   * then where `withLeader` the best config outside this session's `--config` pins (when it is
   * among the workload's best `finalists`).
   */
  | { kind: 'retiming'; workload: Workload; finalists: TrialRow[]; withDefault: boolean; withLeader: boolean; rounds: number }
  | { kind: 'retimed'; workload: Workload; result: FinalRetiming }
  | { kind: 'workload-done'; workload: Workload; best?: TrialRow; measured: number }
  | { kind: 'stopped'; reason: 'interrupted' | 'time budget' }
  /** A workload with no config that is legal and runs here: nothing to measure, nothing recorded. */
  | { kind: 'skipped'; index: number; of: number; op: string; shape: Shape; space: PrunedSpace };

/** One config of the final re-timing. */
export interface Finalist {
  /** The trial the re-timing recorded for it (strategy `retime`): its representative round, or the failure. */
  trial: TrialRow;
  /** Its median before the re-timing. */
  beforeMs: number;
  /** The median of each round it ran (a failed round ends its list). */
  roundsMs: number[];
  /** True when the recorded round was disturbed too (every round was). */
  disturbed: boolean;
}

/**
 * The final re-timing of a workload's best configs. Its trials are the verdict: the winner is
 * the workload's recorded best until a config measured later is faster (`contendingTrials`).
 */
export interface FinalRetiming {
  /** Every config re-timed, fastest first, failures last. */
  finalists: Finalist[];
  /** The fastest re-timed config; undefined when every finalist failed when run again. */
  winner?: TrialRow;
  /** The default config was re-timed too, not being among the best few. */
  withDefault: boolean;
  /** The best config outside this session's `--config` pins, among the workload's best few, was re-timed too. */
  withLeader: boolean;
  rounds: number;
}

export interface WorkloadResult {
  workload: Workload;
  space: { total: number; legal: number; pruned: Record<string, number> };
  /** Trials written by this session (resumed ones are in the database already), re-timings not counted. */
  added: number;
  best?: TrialRow;
  default?: TrialRow;
  /** The final re-timing, when this session ran one (two or more ok configs, not interrupted, something new to decide). */
  final?: FinalRetiming;
  /**
   * Trials of this session (re-timings included) whose every attempt showed interference: their
   * times are the fastest attempt's, likely slower than the kernel on a quiet machine.
   */
  disturbed: number;
}

export interface TuneSummary {
  results: WorkloadResult[];
  stopped?: 'interrupted' | 'time budget';
}

/**
 * Refuses, before any workload is registered or anything measured, a session whose times would
 * not be the device's own: a device that is not here, or (judged by the first workload's first
 * legal config) a runner that does not time it truly. The CLI runs the same checks earlier, before
 * it creates the database.
 */
function checkTimeable(opts: TuneOptions): void {
  checkPresent(opts.device);
  const [first] = opts.workloads;
  if (!first) return;
  const req = planRequest({ op: first.op, shape: first.shape, device: opts.device, target: opts.target });
  checkSupport(req);
  const candidate = pruneSpace(req, opts.fixed).legal[0];
  if (candidate) checkTimesAreReal(opts.device, opts.target, timingRunner(candidate.plan));
}

/** The runner the tuner times with: it must time the real device, here. */
export function timingRunner(plan: Plan): KernelRunner {
  return runnerFor(plan, { preferReal: true });
}

/** Runs `f` over `items` with at most `limit` at once; results in input order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/**
 * Tunes each workload in turn: prunes the space (restrictions, budgets) before anything compiles,
 * skips configs the database already has a trial for (resume), lets the strategy propose configs,
 * compiles a batch in parallel (cached by source hash; configs that render the same source share
 * one measurement), then runs each alone in a child process with a timeout, checks its output
 * against the reference with the plan's tolerance, and only then keeps its time. A timing that
 * shows interference (its spread, other processes' CPU time) is taken again, and an undisturbed
 * attempt is kept, else the fastest. At the end of each workload its best few configs are re-timed back
 * to back and the winner is chosen from those re-timings (`TimingPolicy`). Every trial is written
 * in its own transaction as it finishes; a bad candidate is a status, never an exception.
 */
export async function tune(opts: TuneOptions): Promise<TuneSummary> {
  const started = performance.now();
  const { strategy, options } = resolveStrategy(opts.strategy, opts.strategyOptions);
  const policy = timingPolicy(opts.timing);
  const deadline = opts.timeBudgetMs !== undefined ? started + opts.timeBudgetMs : Infinity;
  const results: WorkloadResult[] = [];
  const origin = hostname();
  // Set when a workload's trials were cut short by the budget: no further workload starts.
  let budgetSpent = false;
  const stop = (): TuneSummary['stopped'] => (opts.signal?.aborted ? 'interrupted' : budgetSpent || performance.now() >= deadline ? 'time budget' : undefined);
  if (!opts.runnerFor) checkTimeable(opts);
  // Plans follow the profile; timings (threads, cache flushes, roofline) follow the machine timed,
  // which differ only for a forced host (`forcedHost`).
  const timed = measuredDevice(opts.device);
  // The profile's cores, but no more than this machine has: a profile that matches here while it
  // claims more cores (a file written for a bigger machine) would time every trial oversubscribed.
  const machineCores = opts.machineCores ?? cpus().length;
  const threads = opts.threads ?? Math.min(timed.cpu?.cores ?? 1, machineCores);
  const device = await withMeasuredBandwidth(timed, opts.target, opts.cacheDir, threads);
  // The runner follows each candidate's plan (a C ISA variant is built with its own flags).
  const runnerOf = opts.runnerFor ?? timingRunner;
  const parallelBuilds = Math.max(1, opts.parallelBuilds ?? timed.cpu?.cores ?? availableParallelism());
  const timing: TimingContext = {
    threads,
    timeoutMs: opts.timeoutMs,
    device,
    policy,
    sample: opts.cpuSampler ?? cpuSample,
    // A CPU kernel keeps `threads` cores busy; a GPU kernel, the one host thread that launches and times it.
    // The rest of this machine's cores (the sampler's counters are this machine's) are idle to it.
    idleCores: Math.max(0, machineCores - (device.kind === 'cpu' ? threads : 1)),
    interrupted: () => Boolean(opts.signal?.aborted),
  };

  // A session pinned by --config: its re-timing also takes the workload's best outside the pins.
  const pinned = Object.keys(opts.fixed ?? {}).length > 0;
  let stopped: TuneSummary['stopped'];
  for (const [index, spec] of opts.workloads.entries()) {
    stopped = stop();
    if (stopped) break;
    const req = planRequest({ op: spec.op, shape: spec.shape, device: opts.device, target: opts.target });
    checkSupport(req);
    const space = executableHere(pruneSpace(req, opts.fixed), runnerOf);
    if (space.legal.length === 0) {
      opts.onEvent?.({ kind: 'skipped', index, of: opts.workloads.length, op: spec.op.name, shape: spec.shape, space });
      continue;
    }
    const defaultCandidate = space.legal[0]!;
    runnerOf(defaultCandidate.plan).checkTimedThreads?.(threads);
    const renderCtx = { version: KGEN_VERSION, irHash: opHash(spec.op), command: commentText('kgen tune') };
    const templateHash = renderPlan(defaultCandidate.plan, renderCtx).templateHash;
    const traffic = defaultCandidate.plan.traffic;
    const workload = opts.db.ensureWorkload({
      device: opts.device.name,
      fingerprint: await fingerprintFor(opts.device, opts.target, space.space),
      target: opts.target,
      op: spec.op,
      irHash: opHash(spec.op),
      shape: spec.shape,
      weightFormat: opKit(spec.op.kind).weights(spec.op)?.format,
      templateHash,
      kgenVersion: KGEN_VERSION,
      bytes: traffic.bytes,
      flops: traffic.flops,
      rooflineMs: rooflineMs(device, traffic),
    });

    const byHash = new Map(space.legal.map((c) => [c.hash, c]));
    const search = strategy.start({
      knobs: space.space.knobs,
      legal: space.legal.map((c) => c.config),
      hashOf: configHash,
      rng: new Rng(opts.seed ?? 1),
      options,
    });
    // Resume: what the database has for this workload is reported to the strategy first (each
    // config by its newest trial, as `best` judges it). An `unsupported` trial counts as measured:
    // the workload's key holds the fingerprint, and the fingerprint what decided it (the adapter's
    // features and subgroup sizes, the nvcc version), so a machine that can run the config files
    // its trials under another workload and measures it there.
    const measured = new Set<string>();
    for (const t of currentTrials(opts.db.trials(workload.id))) {
      if (!byHash.has(t.configHash)) continue;
      measured.add(t.configHash);
      search.observe(byHash.get(t.configHash)!.config, t.timing?.medianMs);
    }
    const planned = Math.max(0, Math.min(opts.trials, space.legal.length) - measured.size);
    opts.onEvent?.({ kind: 'workload', index, of: opts.workloads.length, workload, space, resumed: measured.size, planned });
    let data: TestData | undefined;
    const dataOf = (): TestData => (data ??= opKit(spec.op.kind).workloadData(spec.op, spec.shape, opts.seed ?? 1));
    let added = 0;
    let failures = 0;
    let unsupported = 0;
    let disturbed = 0;
    // Outcomes by build id: configs whose source is identical are measured once.
    const bySource = new Map<string, Measured>();
    let expectedMs = rooflineMs(device, traffic) * 3;
    // Wall time of each ok timed execution: the final re-timing's share of a time budget (the
    // finalists, the default config and, when pinned, the workload's best outside the pins) is kept free.
    const execMs: number[] = [];
    const extraFinalists = 1 + (pinned ? 1 : 0);
    const reserveMs = () => (policy.finalists >= 2 && execMs.length ? (policy.finalists + extraFinalists) * policy.finalRounds * middle(execMs) : 0);
    const trialsStop = () => stop() ?? (performance.now() >= deadline - reserveMs() ? 'time budget' : undefined);

    while (added < planned && !trialsStop()) {
      const batch = search.propose(Math.min(planned - added, Math.max(2, parallelBuilds) * 2)).map((c) => byHash.get(configHash(c))!).filter(Boolean);
      if (batch.length === 0) break;
      const builds = await mapLimited(batch, parallelBuilds, async (c: Candidate) => {
        const runner = runnerOf(c.plan);
        return { candidate: c, runner, build: await runner.build(c.plan, renderPlan(c.plan, renderCtx), { cacheDir: opts.cacheDir }) };
      });
      for (const { candidate, runner, build } of builds) {
        if (added >= planned || trialsStop()) break;
        let m = build.status === 'ok' ? bySource.get(build.id) : undefined;
        if (!m) {
          m = await measureTimed(runner, candidate.plan, build, dataOf(), { ...timing, expectedMs }, (attempt, reasons, medianMs) =>
            opts.onEvent?.({ kind: 'remeasure', workload, config: candidate.config, attempt, of: policy.remeasure + 1, reasons, medianMs, final: false }),
          );
          // An interrupt kills the child mid-run: that is no verdict on the kernel, so nothing is recorded.
          if (timing.interrupted()) break;
          if (build.status === 'ok') bySource.set(build.id, m);
          if (m.outcome.status === 'ok') execMs.push(m.wallMs);
        }
        const trial = opts.db.addTrial(workload.id, {
          ...m.outcome,
          uid: randomUUID(),
          config: candidate.config,
          configHash: candidate.hash,
          strategy: strategy.name,
          origin,
          createdAt: new Date().toISOString(),
        });
        added++;
        if (trial.status === 'unsupported') unsupported++;
        else if (trial.status !== 'ok') failures++;
        if (m.interference?.disturbed) disturbed++;
        search.observe(candidate.config, trial.timing?.medianMs);
        const best = opts.db.best(workload.id);
        if (best?.timing) expectedMs = best.timing.medianMs;
        opts.onEvent?.({ kind: 'trial', workload, trial, best, done: added, planned, failures, unsupported, elapsedMs: performance.now() - started, attempts: m.attempts, interference: m.interference });
      }
      for (const { build } of builds) if (build.status === 'ok') build.dispose();
    }
    if (added < planned && !timing.interrupted() && trialsStop() === 'time budget') budgetSpent = true;
    // The winner is declared only after the best few were re-timed back to back (skipped when interrupted).
    const final = timing.interrupted()
      ? undefined
      : await finalRetiming({
          db: opts.db,
          workload,
          byHash,
          runnerOf,
          renderCtx,
          cacheDir: opts.cacheDir,
          data: dataOf,
          timing,
          origin,
          measuredNew: added > failures + unsupported,
          defaultHash: defaultCandidate.hash,
          // Pinned: the configs outside the pins, planned only when the workload's best is one of them.
          outside: pinned ? lazyOutside(req, runnerOf) : undefined,
          emit: (e) => opts.onEvent?.(e),
        });
    if (final) opts.onEvent?.({ kind: 'retimed', workload, result: final });
    const best = opts.db.best(workload.id);
    const current = currentTrials(opts.db.trials(workload.id));
    opts.onEvent?.({ kind: 'workload-done', workload, best, measured: current.length });
    results.push({
      workload,
      space: { total: space.total, legal: space.legal.length, pruned: Object.fromEntries(space.pruned) },
      added,
      best,
      default: current.find((t) => t.configHash === defaultCandidate.hash && t.status === 'ok'),
      final,
      disturbed: disturbed + (final?.finalists.filter((x) => x.disturbed).length ?? 0),
    });
  }
  // Past the deadline with every workload done is not a stop: nothing is left to resume.
  stopped ??= opts.signal?.aborted ? 'interrupted' : budgetSpent ? 'time budget' : undefined;
  if (stopped) opts.onEvent?.({ kind: 'stopped', reason: stopped });
  return { results, stopped };
}

/** What a measurement records in a trial. */
type Outcome = { status: TrialStatus; timing?: Trial['timing']; error?: string; nmse?: number; maxAbsError?: number; compileMs?: number; runner: string };

/** A recorded measurement: its outcome, the evidence on it and how many timed executions it took. */
interface Measured {
  outcome: Outcome;
  /** Absent for a compile error (nothing ran). */
  interference?: Interference;
  attempts: number;
  /** Wall time of the recorded execution, ms. */
  wallMs: number;
}

/** What every timed execution of a session shares. */
interface TimingContext {
  threads: number;
  timeoutMs?: number;
  device: DeviceProfile;
  policy: TimingPolicy;
  sample: () => CpuSample | undefined;
  /** Cores a timed run leaves to other processes (the machine's cores minus the run's threads). */
  idleCores: number;
  interrupted: () => boolean;
}

/**
 * Measures a build, sampling the CPU time other processes take meanwhile; while the timing shows
 * interference (`needsRemeasure`) it is measured again, up to `policy.remeasure` more times, and
 * an undisturbed attempt is kept, else the fastest (`pickAttempt`). `remeasuring` is told before each retry.
 */
async function measureTimed(
  runner: KernelRunner,
  plan: Plan,
  build: KernelBuild,
  data: TestData,
  o: TimingContext & { expectedMs: number },
  remeasuring: (attempt: number, reasons: string[], medianMs?: number) => void,
): Promise<Measured> {
  const tries: Array<Measured & { interference: Interference }> = [];
  for (;;) {
    const before = o.sample();
    const t0 = performance.now();
    const outcome = await measure(runner, plan, build, data, o);
    const wallMs = performance.now() - t0;
    if (build.status !== 'ok') return { outcome, attempts: 0, wallMs };
    const interference = assessInterference(outcome.timing, foreignLoad(before, o.sample()), { ...o.policy, idleCores: o.idleCores });
    tries.push({ outcome, interference, attempts: tries.length + 1, wallMs });
    if (o.interrupted() || !needsRemeasure(outcome.status, interference, tries.length, o.policy)) break;
    remeasuring(tries.length + 1, interference.reasons, outcome.timing?.medianMs);
  }
  const kept = tries[pickAttempt(tries.map((t) => ({ status: t.outcome.status, timing: t.outcome.timing, interference: t.interference })))]!;
  return { ...kept, attempts: tries.length };
}

/** Runs one build: output checked against the reference, then its times kept, or a failure status. */
async function measure(runner: KernelRunner, plan: Plan, build: KernelBuild, data: TestData, o: { expectedMs: number; threads: number; timeoutMs?: number; device: DeviceProfile }): Promise<Outcome> {
  if (build.status !== 'ok') return { status: build.status, error: clip(build.detail), compileMs: build.compileMs, runner: runner.name };
  // About half a second of timed runs per candidate: 5 to 101 runs (odd, so the median is a run), after a warm-up.
  const runs = 2 * Math.floor(Math.max(5, Math.min(101, Math.round(500 / Math.max(o.expectedMs, 1e-3)))) / 2) + 1;
  const timing = { warmup: runs >= 10 ? 3 : 1, runs, flushBytes: FLUSH_CACHE_MULTIPLE * (o.device.cpu?.l3Bytes ?? o.device.gpu?.l2Bytes ?? 0), threads: o.threads };
  const timeoutMs = o.timeoutMs ?? Math.max(30_000, 20 * o.expectedMs * (timing.warmup + runs));
  const exec = await runner.execute(build, data.inputs, { timeoutMs, timing });
  if (exec.status !== 'ok') return { status: exec.status, error: clip(exec.detail), compileMs: build.compileMs, runner: runner.name };
  const { ok, comparison } = data.check(exec.output, plan.tolerance);
  const base = { nmse: comparison.nmse, maxAbsError: comparison.maxAbsError, compileMs: build.compileMs, runner: runner.name };
  if (!ok) return { ...base, status: 'wrong_result', error: `NMSE ${comparison.nmse.toExponential(2)} (tolerance ${plan.tolerance.nmse}), max abs error ${comparison.maxAbsError.toExponential(2)}, ${comparison.nonFinite} non-finite` };
  return { ...base, status: 'ok', timing: exec.timing };
}

/** What the final re-timing of a workload needs from the session. */
interface FinalContext {
  db: TuningDb;
  workload: Workload;
  /** The configs this session may measure, by hash: only these are re-timed. */
  byHash: Map<string, Candidate>;
  runnerOf: (plan: Plan) => KernelRunner;
  renderCtx: Parameters<typeof renderPlan>[1];
  cacheDir: string;
  data: () => TestData;
  timing: TimingContext;
  origin: string;
  /** Whether this session recorded a new ok trial for the workload. */
  measuredNew: boolean;
  /** The hash of the workload's default config (the space's first), re-timed with the finalists. */
  defaultHash: string;
  /** A session pinned by `--config`: the legal configs of the whole space that run here, by hash. */
  outside?: (hash: string) => Candidate | undefined;
  emit: (e: TuneEvent) => void;
}

/**
 * Re-times the workload's best `finalists` configs (those competing for its best, within this
 * session's space) back to back, interleaved over `finalRounds` rounds, and records one `retime`
 * trial per config, its median round (`representative`): the fastest of them is then the
 * workload's best (`contendingTrials`). The default config goes with them when it competes and is
 * not among them, so "best is Nx faster than the default" compares times taken together (a default
 * timed once while another process held a core read 6.2 ms against a 2.1 ms best on a machine
 * where it takes 2.3). Skipped with fewer than two finalists, or when the session measured nothing
 * new and the best is a re-timing already; undefined then, and when interrupted (nothing of an
 * interrupted re-timing is recorded).
 */
async function finalRetiming(f: FinalContext): Promise<FinalRetiming | undefined> {
  const { policy } = f.timing;
  if (policy.finalists < 2) return undefined;
  const all = contendingTrials(f.db.trials(f.workload.id));
  const contending = all.filter((t) => f.byHash.has(t.configHash));
  const top = contending.slice(0, policy.finalists);
  // A session that measured nothing new re-times only a best that was never re-timed (an earlier session was interrupted).
  if (top.length < 2 || (!f.measuredNew && top[0]!.strategy === RETIME_STRATEGY)) return undefined;
  const byDefault = contending.find((t) => t.configHash === f.defaultHash);
  // The workload's best outside the pins goes with them: the re-timing is the verdict, and a
  // verdict without it would drop it from the contest it leads (a pinned `--config '{"isa":"avx2"}'`
  // session made a slower AVX2 kernel what emit takes).
  // Among the workload's best few, not only its first: a pinned config measured luckily fast must
  // beat it timed side by side, not by dropping it.
  const leader = all.slice(0, policy.finalists).find((t) => !f.byHash.has(t.configHash) && f.outside?.(t.configHash));
  const extraDefault = byDefault && !top.includes(byDefault) ? byDefault : undefined;
  const timed = [...top, ...(extraDefault ? [extraDefault] : []), ...(leader ? [leader] : [])];
  const withDefault = extraDefault !== undefined;
  const withLeader = leader !== undefined;
  f.emit({ kind: 'retiming', workload: f.workload, finalists: timed, withDefault, withLeader, rounds: policy.finalRounds });
  const beforeMs = new Map(timed.map((t) => [t.configHash, t.timing!.medianMs]));
  const finalists = await retimePass(f, timed, (hash) => beforeMs.get(hash)!);
  if (!finalists) return undefined;
  return { finalists, winner: finalists.find((x) => x.trial.status === 'ok')?.trial, withDefault, withLeader, rounds: policy.finalRounds };
}

/** ok trials fastest first, then failures. */
function byTime(a: TrialRow, b: TrialRow): number {
  return (a.status === 'ok' ? 0 : 1) - (b.status === 'ok' ? 0 : 1) || (a.timing?.medianMs ?? 0) - (b.timing?.medianMs ?? 0);
}

/** The final re-timing's rounds: every contender timed once per round, in rotated order; undefined when interrupted. */
async function retimePass(f: FinalContext, contenders: readonly TrialRow[], beforeMs: (hash: string) => number): Promise<Finalist[] | undefined> {
  const { policy } = f.timing;
  // The same number of timed runs for every contender: about half a second at the fastest one's time.
  const expectedMs = Math.min(...contenders.map((t) => t.timing?.medianMs ?? Infinity));
  // Builds come from the cache (source hash); configs of one source are timed once, as in the session.
  type Group = { configs: Candidate[]; runner: KernelRunner; build: Extract<KernelBuild, { status: 'ok' }>; rounds: Measured[]; failed?: Measured };
  const groups = new Map<string, Group>();
  const unbuilt: Array<{ candidate: Candidate; outcome: Outcome }> = [];
  for (const t of contenders) {
    const candidate = (f.byHash.get(t.configHash) ?? f.outside?.(t.configHash))!;
    const runner = f.runnerOf(candidate.plan);
    const build = await runner.build(candidate.plan, renderPlan(candidate.plan, f.renderCtx), { cacheDir: f.cacheDir });
    if (build.status !== 'ok') {
      unbuilt.push({ candidate, outcome: { status: build.status, error: clip(build.detail), compileMs: build.compileMs, runner: runner.name } });
      continue;
    }
    const same = groups.get(build.id);
    if (same) {
      same.configs.push(candidate);
      build.dispose();
    } else {
      groups.set(build.id, { configs: [candidate], runner, build, rounds: [] });
    }
  }
  try {
    let active = [...groups.values()];
    for (let round = 0; round < policy.finalRounds && active.length > 0; round++) {
      for (const g of roundOrder(active, round)) {
        const m = await measureTimed(g.runner, g.configs[0]!.plan, g.build, f.data(), { ...f.timing, expectedMs }, (attempt, reasons, medianMs) =>
          f.emit({ kind: 'remeasure', workload: f.workload, config: g.configs[0]!.config, attempt, of: policy.remeasure + 1, reasons, medianMs, final: true }),
        );
        if (f.timing.interrupted()) return undefined;
        // A kernel that fails when run again is out, whatever it did before.
        if (m.outcome.status === 'ok') g.rounds.push(m);
        else g.failed = m;
      }
      active = active.filter((g) => !g.failed);
    }
  } finally {
    for (const g of groups.values()) g.build.dispose();
  }
  // One time for all: these trials were timed together and are judged together.
  const createdAt = new Date().toISOString();
  const record = (candidate: Candidate, chosen: Pick<Measured, 'outcome' | 'interference'>, roundsMs: number[]): Finalist => ({
    trial: f.db.addTrial(f.workload.id, { ...chosen.outcome, uid: randomUUID(), config: candidate.config, configHash: candidate.hash, strategy: RETIME_STRATEGY, origin: f.origin, createdAt }),
    beforeMs: beforeMs(candidate.hash),
    roundsMs,
    disturbed: Boolean(chosen.interference?.disturbed),
  });
  const out: Finalist[] = [];
  for (const g of groups.values()) {
    const chosen = g.failed ?? g.rounds[representative(g.rounds.map((m) => ({ timing: m.outcome.timing!, interference: m.interference! })))]!;
    for (const c of g.configs) out.push(record(c, chosen, g.rounds.map((m) => m.outcome.timing!.medianMs)));
  }
  for (const u of unbuilt) out.push(record(u.candidate, { outcome: u.outcome }, []));
  return out.sort((a, b) => byTime(a.trial, b.trial));
}

/**
 * The legal configs of `req`'s whole space (no pins) that run here, by hash, pruned on first use:
 * a pinned session needs them only to re-time a best outside its pins.
 */
function lazyOutside(req: PlanRequest, runnerOf: (plan: Plan) => KernelRunner): (hash: string) => Candidate | undefined {
  let all: Map<string, Candidate> | undefined;
  return (hash) => (all ??= new Map(executableHere(pruneSpace(req), runnerOf).legal.map((c) => [c.hash, c]))).get(hash);
}

/** The middle value (upper middle for an even count). */
function middle(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * The space without the candidates this machine cannot execute (a forced AVX-512 host on an AVX2
 * CPU) or can run only with times that are not the device's (a variant's stand-in build: AVX-VNNI
 * on an AVX-512 VNNI CPU), counted as pruned with their runner's reason: the tuner records only
 * what it ran and timed as it is. (A target whose every runner's times are not real is refused
 * before: checkTimesAreReal.)
 */
function executableHere(space: PrunedSpace, runnerOf: (plan: Plan) => KernelRunner): PrunedSpace {
  const pruned = new Map(space.pruned);
  const legal = space.legal.filter((c) => {
    const runner = runnerOf(c.plan);
    const cannot = runner.cannotExecute(c.plan);
    if (!cannot && runner.timesAreReal) return true;
    const reason = cannot ? `cannot execute here: ${cannot}` : `its times here are not the device's: it runs through ${runner.name}`;
    pruned.set(reason, (pruned.get(reason) ?? 0) + 1);
    return false;
  });
  return { ...space, legal, pruned };
}

/**
 * The device with its memory bandwidth measured by the target's probe, for `host` (whose profile
 * only estimates it); other devices, and targets without a probe, as their profiles state them.
 */
async function withMeasuredBandwidth(device: DeviceProfile, target: TargetName, cacheDir: string, threads: number): Promise<DeviceProfile> {
  const probe = targetFor(target).measureBandwidth;
  // Only the detected host's bandwidth is an estimate; the other profiles state a measured figure.
  if (device.name !== 'host' || !probe) return device;
  const gbps = await probe(cacheDir, threads);
  return gbps ? { ...device, memory: { ...device.memory, bandwidthGBs: gbps }, sources: { ...device.sources, memory: `measured by the read probe, ${threads} thread(s)` } } : device;
}

/** Keeps the head and tail of long compiler or runtime text. */
function clip(text: string, max = 4000): string {
  return text.length <= max ? text : `${text.slice(0, max / 2)}\n...\n${text.slice(-max / 2)}`;
}

