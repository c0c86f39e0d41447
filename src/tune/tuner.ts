import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { checkSupport, planRequest, renderPlan, runnerFor, targetFor } from '../backends/registry.js';
import type { KernelBuild, KernelRunner, TrialStatus } from '../backends/types.js';
import type { Trial, TrialRow, TuningDb, Workload } from '../db/types.js';
import { measuredDevice } from '../device/host.js';
import type { DeviceProfile, TargetName } from '../device/profile.js';
import type { Op, Shape } from '../ir/types.js';
import { opHash } from '../ir/validate.js';
import { opKit, type TestData } from '../ops/index.js';
import { Rng } from '../numeric/random.js';
import type { Plan } from '../plan/types.js';
import { commentText } from '../render/comment-text.js';
import { KGEN_VERSION } from '../version.js';
import { fingerprintFor } from './fingerprint.js';
import { rooflineMs } from '../plan/roofline.js';
import { configHash, pruneSpace, type Candidate, type PrunedSpace } from './space.js';
import { resolveStrategy } from './strategies/index.js';

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
  /** Host threads a CPU kernel's rows are split over while timed (default: the timed machine's cores, `measuredDevice`). */
  threads?: number;
  /** Per-execution timeout, ms. */
  timeoutMs?: number;
  /** Where builds are cached by source hash. */
  cacheDir: string;
  seed?: number;
  /** Aborting stops the session after (or during) the trial in flight; nothing half-done is recorded. */
  signal?: AbortSignal;
  onEvent?: (event: TuneEvent) => void;
  /** Builds compiled at once (default: the machine's cores). */
  parallelBuilds?: number;
  /** The runner for a candidate's plan (default: the target's runner for real timings, `timingRunner`). */
  runnerFor?: (plan: Plan) => KernelRunner;
}

/** What the CLI shows as a session goes; the tuner itself never prints. */
export type TuneEvent =
  | { kind: 'workload'; index: number; of: number; workload: Workload; space: PrunedSpace; resumed: number; planned: number }
  | { kind: 'trial'; workload: Workload; trial: TrialRow; best?: TrialRow; done: number; planned: number; failures: number; elapsedMs: number }
  | { kind: 'workload-done'; workload: Workload; best?: TrialRow; measured: number }
  | { kind: 'stopped'; reason: 'interrupted' | 'time budget' };

export interface WorkloadResult {
  workload: Workload;
  space: { total: number; legal: number; pruned: Record<string, number> };
  /** Trials written by this session (resumed ones are in the database already). */
  added: number;
  best?: TrialRow;
  default?: TrialRow;
}

export interface TuneSummary {
  results: WorkloadResult[];
  stopped?: 'interrupted' | 'time budget';
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
 * against the reference with the plan's tolerance, and only then keeps its time. Every trial is
 * written in its own transaction as it finishes; a bad candidate is a status, never an exception.
 */
export async function tune(opts: TuneOptions): Promise<TuneSummary> {
  const started = performance.now();
  const { strategy, options } = resolveStrategy(opts.strategy, opts.strategyOptions);
  const deadline = opts.timeBudgetMs !== undefined ? started + opts.timeBudgetMs : Infinity;
  const results: WorkloadResult[] = [];
  const origin = hostname();
  const stop = (): TuneSummary['stopped'] => (opts.signal?.aborted ? 'interrupted' : performance.now() >= deadline ? 'time budget' : undefined);
  // Plans follow the profile; timings (threads, cache flushes, roofline) follow the machine timed,
  // which differ only for a host forced by KGEN_HOST_PROFILE.
  const timed = measuredDevice(opts.device);
  const threads = opts.threads ?? timed.cpu?.cores ?? 1;
  const device = await withMeasuredBandwidth(timed, opts.target, opts.cacheDir, threads);
  // The runner follows each candidate's plan (a C ISA variant is built with its own flags).
  const runnerOf = opts.runnerFor ?? timingRunner;

  for (const [index, spec] of opts.workloads.entries()) {
    if (stop()) break;
    const req = planRequest({ op: spec.op, shape: spec.shape, device: opts.device, target: opts.target });
    checkSupport(req);
    const space = executableHere(pruneSpace(req, opts.fixed), runnerOf);
    if (space.legal.length === 0) continue;
    const defaultCandidate = space.legal[0]!;
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
    // Resume: what the database has for this workload is reported to the strategy first.
    const earlier = opts.db.trials(workload.id);
    const measured = new Set<string>();
    for (const t of earlier) {
      if (measured.has(t.configHash) || !byHash.has(t.configHash)) continue;
      measured.add(t.configHash);
      search.observe(byHash.get(t.configHash)!.config, t.timing?.medianMs);
    }
    const planned = Math.max(0, Math.min(opts.trials, space.legal.length) - measured.size);
    opts.onEvent?.({ kind: 'workload', index, of: opts.workloads.length, workload, space, resumed: measured.size, planned });
    const data = planned > 0 ? opKit(spec.op.kind).workloadData(spec.op, spec.shape, opts.seed ?? 1) : undefined;
    let added = 0;
    let failures = 0;
    // Outcomes by build id: configs whose source is identical are measured once.
    const bySource = new Map<string, Omit<Trial, 'uid' | 'config' | 'configHash' | 'origin' | 'createdAt' | 'strategy'>>();
    let expectedMs = rooflineMs(device, traffic) * 3;

    while (added < planned && !stop() && data) {
      const batch = search.propose(Math.min(planned - added, Math.max(2, opts.parallelBuilds ?? 2) * 2)).map((c) => byHash.get(configHash(c))!).filter(Boolean);
      if (batch.length === 0) break;
      const builds = await mapLimited(batch, opts.parallelBuilds ?? 2, async (c: Candidate) => {
        const runner = runnerOf(c.plan);
        return { candidate: c, runner, build: await runner.build(c.plan, renderPlan(c.plan, renderCtx), { cacheDir: opts.cacheDir }) };
      });
      for (const { candidate, runner, build } of builds) {
        if (added >= planned || stop()) break;
        let outcome = build.status === 'ok' ? bySource.get(build.id) : undefined;
        if (!outcome) {
          outcome = await measure(runner, candidate.plan, build, data, { expectedMs, threads, timeoutMs: opts.timeoutMs, device });
          // An interrupt kills the child mid-run: that is no verdict on the kernel, so nothing is recorded.
          if (stop() === 'interrupted') break;
          if (build.status === 'ok') bySource.set(build.id, outcome);
        }
        const trial = opts.db.addTrial(workload.id, {
          ...outcome,
          uid: randomUUID(),
          config: candidate.config,
          configHash: candidate.hash,
          strategy: strategy.name,
          origin,
          createdAt: new Date().toISOString(),
        });
        added++;
        if (trial.status !== 'ok') failures++;
        search.observe(candidate.config, trial.timing?.medianMs);
        const best = opts.db.best(workload.id);
        if (best?.timing) expectedMs = best.timing.medianMs;
        opts.onEvent?.({ kind: 'trial', workload, trial, best, done: added, planned, failures, elapsedMs: performance.now() - started });
      }
      for (const { build } of builds) if (build.status === 'ok') build.dispose();
    }
    const best = opts.db.best(workload.id);
    const trials = opts.db.trials(workload.id);
    opts.onEvent?.({ kind: 'workload-done', workload, best, measured: trials.length });
    results.push({
      workload,
      space: { total: space.total, legal: space.legal.length, pruned: Object.fromEntries(space.pruned) },
      added,
      best,
      default: trials.find((t) => t.configHash === defaultCandidate.hash && t.status === 'ok'),
    });
  }
  const stopped = stop();
  if (stopped) opts.onEvent?.({ kind: 'stopped', reason: stopped });
  return { results, stopped };
}

/** Runs one build: output checked against the reference, then its times kept, or a failure status. */
async function measure(
  runner: KernelRunner,
  plan: Plan,
  build: KernelBuild,
  data: TestData,
  o: { expectedMs: number; threads: number; timeoutMs?: number; device: DeviceProfile },
): Promise<{ status: TrialStatus; timing?: Trial['timing']; error?: string; nmse?: number; maxAbsError?: number; compileMs?: number; runner: string }> {
  if (build.status !== 'ok') return { status: 'compile_error', error: clip(build.detail), compileMs: build.compileMs, runner: runner.name };
  // About half a second of timed runs per candidate: 5 to 101 runs (odd, so the median is a run), after a warm-up.
  const runs = 2 * Math.floor(Math.max(5, Math.min(101, Math.round(500 / Math.max(o.expectedMs, 1e-3)))) / 2) + 1;
  const timing = { warmup: runs >= 10 ? 3 : 1, runs, flushBytes: 3 * (o.device.cpu?.l3Bytes ?? o.device.gpu?.l2Bytes ?? 0), threads: o.threads };
  const timeoutMs = o.timeoutMs ?? Math.max(30_000, 20 * o.expectedMs * (timing.warmup + runs));
  const exec = await runner.execute(build, data.inputs, { timeoutMs, timing });
  if (exec.status !== 'ok') return { status: exec.status, error: clip(exec.detail), compileMs: build.compileMs, runner: runner.name };
  const { ok, comparison } = data.check(exec.output, plan.tolerance);
  const base = { nmse: comparison.nmse, maxAbsError: comparison.maxAbsError, compileMs: build.compileMs, runner: runner.name };
  if (!ok) return { ...base, status: 'wrong_result', error: `NMSE ${comparison.nmse.toExponential(2)} (tolerance ${plan.tolerance.nmse}), max abs error ${comparison.maxAbsError.toExponential(2)}, ${comparison.nonFinite} non-finite` };
  return { ...base, status: 'ok', timing: exec.timing };
}

/**
 * The space without the candidates this machine cannot execute (a forced AVX-512 host on an AVX2
 * CPU), counted as pruned with their runner's reason: the tuner records only what it ran.
 */
function executableHere(space: PrunedSpace, runnerOf: (plan: Plan) => KernelRunner): PrunedSpace {
  const pruned = new Map(space.pruned);
  const legal = space.legal.filter((c) => {
    const why = runnerOf(c.plan).cannotExecute(c.plan);
    if (!why) return true;
    const reason = `cannot execute here: ${why}`;
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

