import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { currentTrials } from '../db/current.js';
import { workloadFigures, workloadRequest, type FiguresMatch } from '../db/lookup.js';
import { notRunnable, notRunnableText } from '../db/not-runnable.js';
import type { Fingerprint, TrialRow, TuningDb, Workload } from '../db/types.js';
import { getDevice, type DeviceOptions } from '../device/index.js';
import { KgenError } from '../errors.js';
import { formatShape } from '../ir/validate.js';
import { defaultConfig } from '../plan/index.js';
import { roofOf, type Roof } from '../plan/roofline.js';
import { templateSet } from '../render/templates.js';
import { configHash } from '../tune/space.js';
import { KGEN_VERSION } from '../version.js';

/** One trial as the report plots it. Invariant: `medianMs` and `gflops` are present iff `status` is `ok`. */
export interface ReportTrial {
  id: number;
  status: TrialRow['status'];
  medianMs?: number;
  /** Achieved throughput: the workload's flops over the median time. */
  gflops?: number;
  spread?: number;
  config: TrialRow['config'];
  strategy?: string;
  createdAt: string;
  error?: string;
}

/** One workload (op, shape, target, device fingerprint) and its trials, oldest first. */
export interface ReportWorkload {
  id: number;
  /** The key of the device group it belongs to (`ReportDevice.key`). */
  deviceKey: string;
  target: string;
  op: string;
  shape: string;
  weightFormat?: string;
  bytes: number;
  flops: number;
  /** Flops per byte moved: the roofline plot's x. */
  intensity: number;
  rooflineMs: number;
  /** The roofline's bound at this intensity, in GFLOP/s (flops over `rooflineMs`). */
  roofGflops: number;
  trials: ReportTrial[];
  /** The config `emit` takes (the database's best: newest re-timing rules), and the default's time. */
  best?: { trialId: number; medianMs: number; config: TrialRow['config']; strategy?: string; percentOfRoofline: number };
  default?: { medianMs?: number; measured: boolean };
  /** Default median over best median, when both were measured. */
  speedup?: number;
  /**
   * The trials the measuring machine could not run (status `unsupported`), counted and named by
   * reason ("3 not runnable here: the adapter lacks shader-f16 (SwiftShader)"); absent when none.
   */
  notRunnable?: string;
  /** Best median so far after each trial (undefined until the first `ok` one): the search progress. */
  bestSoFarMs: (number | null)[];
}

/** Workloads measured on one device profile with one fingerprint (one machine, toolchain, ...). */
export interface ReportDevice {
  key: string;
  device: string;
  fingerprintHash: string;
  fingerprint: Fingerprint;
  workloadIds: number[];
  /**
   * The roofs of the device's profile as this kgen knows it: absent for a profile it does not know,
   * and for one whose figures are not those the workloads were tuned under (`figures` other).
   */
  roof?: Roof;
  /** How the fingerprint stands to the profile's current figures (`figuresMatch`); absent for a profile this kgen does not know. */
  figures?: FiguresMatch;
}

/** Everything `kgen report` shows, as data (embedded in the page, read back by its test). */
export interface ReportData {
  kgenVersion: string;
  generatedAt: string;
  /** What the page calls the database (its file name, not the full path). */
  source: string;
  devices: ReportDevice[];
  workloads: ReportWorkload[];
}

/** What `reportData` reads and resolves devices with. */
export interface ReportOptions extends DeviceOptions {
  /** Only the workloads recorded under this device name (all when absent). */
  device?: string;
  now?: Date;
}

/**
 * Reads the database (every workload, or `opts.device`'s) into the report's data: devices by
 * fingerprint, workloads, trials; `host`'s workloads are planned again (roof, default config) on
 * the host `opts` gives, those of a caller's own profile on `opts.profiles` (`DeviceOptions`);
 * other unknown devices get neither.
 */
export function reportData(db: TuningDb, source: string, opts: ReportOptions = {}): ReportData {
  const now = opts.now ?? new Date();
  const summaries = db.workloads(opts.device === undefined ? {} : { device: opts.device });
  const workloads = summaries.map((w) => workloadData(db, w, opts));
  const devices = new Map<string, ReportDevice>();
  for (const summary of summaries) {
    const key = `${summary.device}/${summary.fingerprintHash}`;
    let d = devices.get(key);
    if (!d) devices.set(key, (d = { key, device: summary.device, fingerprintHash: summary.fingerprintHash, fingerprint: summary.fingerprint, workloadIds: [], ...profileRoof(summary, opts) }));
    d.workloadIds.push(summary.id);
  }
  return { kgenVersion: KGEN_VERSION, generatedAt: now.toISOString(), source, devices: [...devices.values()], workloads };
}

function workloadData(db: TuningDb, w: Workload, opts: DeviceOptions): ReportWorkload {
  const rows = db.trials(w.id).slice().sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id - b.id);
  const trials = rows.map((t): ReportTrial => ({
    id: t.id,
    status: t.status,
    ...(t.timing ? { medianMs: t.timing.medianMs, gflops: w.flops / (t.timing.medianMs * 1e6), spread: t.timing.spread } : {}),
    config: t.config,
    strategy: t.strategy,
    createdAt: t.createdAt,
    ...(t.error ? { error: t.error } : {}),
  }));
  let best: number | null = null;
  const bestSoFarMs = trials.map((t) => (best = t.medianMs !== undefined && (best === null || t.medianMs < best) ? t.medianMs : best));
  const chosen = db.best(w.id);
  const defaultHash = defaultConfigHash(w, opts);
  const defaultTrial = defaultHash === undefined ? undefined : currentTrials(rows).find((t) => t.configHash === defaultHash);
  const data: ReportWorkload = {
    id: w.id,
    deviceKey: `${w.device}/${w.fingerprintHash}`,
    target: w.target,
    op: w.op.name,
    shape: formatShape(w.shape),
    weightFormat: w.weightFormat,
    bytes: w.bytes,
    flops: w.flops,
    intensity: w.flops / w.bytes,
    rooflineMs: w.rooflineMs,
    roofGflops: w.flops / (w.rooflineMs * 1e6),
    trials,
    bestSoFarMs,
  };
  const notRun = notRunnableText(notRunnable(rows));
  if (notRun) data.notRunnable = notRun;
  if (chosen?.timing) data.best = { trialId: chosen.id, medianMs: chosen.timing.medianMs, config: chosen.config, strategy: chosen.strategy, percentOfRoofline: (100 * w.rooflineMs) / chosen.timing.medianMs };
  if (defaultHash !== undefined) data.default = { measured: defaultTrial !== undefined, ...(defaultTrial?.timing ? { medianMs: defaultTrial.timing.medianMs } : {}) };
  if (data.best && data.default?.medianMs !== undefined) data.speedup = data.default.medianMs / data.best.medianMs;
  return data;
}

/** The roof of a workload's profile, and how its figures stand to those it was tuned under: no roof of other figures. */
function profileRoof(w: Workload, opts: DeviceOptions): { roof?: Roof; figures?: FiguresMatch } {
  const figures = workloadFigures(w, opts);
  if (figures === undefined) return {};
  return figures === 'other' ? { figures } : { roof: roofOf(getDevice(w.device, opts)), figures };
}

/**
 * The hash of the config `emit` would use without records for this workload, planned again on the
 * recorded device profile; undefined where the profile is not one this kgen knows (an imported
 * record) or has other figures now than the workload was tuned under, or no longer plans the op.
 */
function defaultConfigHash(w: Workload, opts: DeviceOptions): string | undefined {
  // Planned on other figures than the workload's, the default would be another device's.
  if (workloadFigures(w, opts) === 'other') return undefined;
  const planned = workloadRequest(w, opts);
  try {
    return planned && configHash(defaultConfig(planned.req));
  } catch (e) {
    // No legal config left for the recorded shape: no default to compare with.
    if (e instanceof KgenError) return undefined;
    throw e;
  }
}

/**
 * The report as one HTML file: the data as JSON, the page's script and Chart.js, all inline (no
 * network, works from a file:// URL). The JSON is escaped so no text in it can close the script.
 */
export function renderReport(data: ReportData): string {
  const chartJs = readFileSync(join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.js'), 'utf8');
  return templateSet('report').render('report.html', {
    title: `kgen tuning report: ${escapeHtml(data.source)}`,
    data: scriptJson(data),
    chartJs: chartJs.replace(/<\/script/gi, '<\\/script'),
  });
}

/** JSON that is safe inside a `<script>` element: every `<` written as its escape. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
