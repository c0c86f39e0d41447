import type { Config, PlanRequest, SearchSpace } from '../plan/types.js';
import { planRequest } from '../backends/registry.js';
import { getDevice, type DeviceOptions } from '../device/index.js';
import { hostCpuIdentity } from '../device/host.js';
import { isShippedProfile, profileHash, type DeviceProfile } from '../device/profile.js';
import { KgenError } from '../errors.js';
import { canonicalJson } from '../hash.js';
import type { Shape } from '../ir/types.js';
import { formatShape } from '../ir/validate.js';
import { configShown, makePlan, spaceFor, type ResolvedPlan } from '../plan/index.js';
import { KGEN_VERSION } from '../version.js';
import { contendingTrials, currentTrials } from './current.js';
import type { Fingerprint, TrialRow, TuningDb, Workload, WorkloadInfo, WorkloadSummary } from './types.js';

/** A tuned config chosen for a request, and the record it came from. */
export interface RecordedChoice {
  resolved: ResolvedPlan;
  source: 'record' | 'nearest-record';
  workload: Workload;
  trial: TrialRow;
  /** The knob values the choice was narrowed to (`--isa`), if any. */
  pinned?: Config;
  /** How the record's fingerprint stands to the profile's figures (`figuresMatch`): never `other`. */
  figures: Exclude<FiguresMatch, 'other'>;
}

/**
 * How a record stands to the figures of the profile a request plans on (`profileHash`): `same`
 * where its fingerprint holds the profile's hash, or, for `host` (which has none), names this
 * machine's CPU (`hostFiguresMatch`); `other` where it holds another hash (tuned before the profile
 * was edited, or on another kgen's figures of a shipped profile) or, for `host`, names another CPU
 * (a database or export brought from another machine); `unchecked` where it holds no hash (recorded
 * by a kgen from before profile hashes, or imported from one).
 */
export type FiguresMatch = 'same' | 'other' | 'unchecked';

/** How a record's `fingerprint` stands to `device`'s figures now (`FiguresMatch`). */
export function figuresMatch(fingerprint: Fingerprint, device: DeviceProfile): FiguresMatch {
  const now = profileHash(device);
  if (now === undefined) return hostFiguresMatch(fingerprint, device);
  const then = fingerprint.profileHash;
  return then === undefined ? 'unchecked' : then === now ? 'same' : 'other';
}

/**
 * How a record of `host` stands to this machine. Its fingerprint names the CPU it was measured on
 * (the C target's `cpu` model and `isa` extensions: `hostCpuIdentity`) and, for a host
 * lent another profile's figures, that profile (`forcedFrom`): another CPU, ISA set or lent profile
 * is `other`. A fingerprint that names no CPU (none of kgen's targets records host trials without
 * one; a hand-made or very old record) cannot be told apart, and is taken as before: `same`.
 */
function hostFiguresMatch(fingerprint: Fingerprint, device: DeviceProfile): 'same' | 'other' {
  if (fingerprint.cpu === undefined) return 'same';
  if (fingerprint.forcedFrom !== device.forcedFrom) return 'other';
  const here = hostCpuIdentity();
  return fingerprint.cpu === here.cpu && (fingerprint.isa === undefined || fingerprint.isa === here.isa) ? 'same' : 'other';
}

/** Distance between two shapes of one op: the sum of |log2 ratio| over their dimensions. */
export function shapeDistance(a: Shape, b: Shape): number {
  let d = 0;
  for (const [k, v] of Object.entries(a)) d += Math.abs(Math.log2(v) - Math.log2((b as Record<string, number>)[k] ?? v));
  return d;
}

/**
 * The best recorded config for a request: the fastest ok trial of a workload with the same device
 * profile, target, op (IR hash) and shape; failing that, the best of the nearest recorded shape of
 * the same op whose config is legal at this shape. Among equal candidates one whose fingerprint
 * holds the profile's hash wins over one from before profile hashes, then the newest workload of
 * this kgen version (older templates may time differently). A record tuned under other figures of
 * the profile (`figuresMatch`: `recordsOfOtherFigures` lists them), or whose config the current
 * space no longer accepts, is passed over, never forced. With `pinned` knob values (`--isa`), only
 * trials whose config has them count.
 */
export function recordedConfig(db: TuningDb, req: PlanRequest & { irHash: string }, pinned: Config = {}): RecordedChoice | undefined {
  const rows = db
    .workloads({ device: req.device.name, target: req.target, irHash: req.irHash })
    .map((w) => ({ ...w, best: pinnedBest(db, w, pinned), figures: figuresMatch(w.fingerprint, req.device) }))
    .filter((w): w is typeof w & { figures: RecordedChoice['figures'] } => w.best !== undefined && w.figures !== 'other');
  const want = canonicalJson(req.shape);
  const rank = (w: Workload & { figures: FiguresMatch }) => (w.figures === 'same' ? 0 : 2) + (w.kgenVersion === KGEN_VERSION ? 0 : 1);
  const exact = rows.filter((w) => canonicalJson(w.shape) === want).sort((a, b) => rank(a) - rank(b) || b.id - a.id);
  const near = rows
    .filter((w) => canonicalJson(w.shape) !== want)
    .sort((a, b) => shapeDistance(a.shape, req.shape) - shapeDistance(b.shape, req.shape) || rank(a) - rank(b) || b.id - a.id);
  for (const [source, list] of [['record', exact], ['nearest-record', near]] as const) {
    for (const w of list) {
      try {
        const resolved = makePlan(req, w.best!.config);
        const { best: _best, figures, trials: _trials, byStatus: _byStatus, ...workload } = w;
        return { resolved, source, workload, trial: w.best!, figures, ...(Object.keys(pinned).length ? { pinned } : {}) };
      } catch (e) {
        if (!(e instanceof KgenError)) throw e;
      }
    }
  }
  return undefined;
}

/**
 * A workload's best trial among those whose config has every `pinned` knob value (`--isa`): its
 * best when nothing is pinned, else the fastest such trial that competes for the best, else (a final
 * re-timing held none of them) the fastest such config's current ok trial.
 */
function pinnedBest(db: TuningDb, w: WorkloadSummary, pinned: Config): TrialRow | undefined {
  const wanted = Object.entries(pinned);
  if (!wanted.length || !w.best) return w.best;
  const fits = (t: TrialRow) => wanted.every(([k, v]) => t.config[k] === v);
  const trials = db.trials(w.id);
  return contendingTrials(trials).find(fits) ?? currentTrials(trials).find((t) => t.status === 'ok' && fits(t));
}

/**
 * How a recorded workload stands to its device's profile as kgen and `opts` know it now
 * (`figuresMatch`); undefined where neither knows the profile (an imported record's device).
 */
export function workloadFigures(w: Pick<WorkloadInfo, 'device' | 'fingerprint'>, opts: DeviceOptions = {}): FiguresMatch | undefined {
  try {
    return figuresMatch(w.fingerprint, getDevice(w.device, opts));
  } catch (e) {
    if (!(e instanceof KgenError)) throw e;
    return undefined;
  }
}

/**
 * The workloads of a request's device, target and op recorded under other figures of its profile
 * (`figuresMatch`): what `recordedConfig` passes over for them, whatever their shape.
 */
export function recordsOfOtherFigures(db: TuningDb, req: PlanRequest & { irHash: string }): Workload[] {
  return db.workloads({ device: req.device.name, target: req.target, irHash: req.irHash }).filter((w) => figuresMatch(w.fingerprint, req.device) === 'other');
}

/**
 * What a choice of config owes the caller about the profile's figures (the CLI prints these on
 * stderr): records passed over as tuned under other figures, where the config is not an exact
 * record; a record taken that predates profile hashes, where the profile is the caller's own (a
 * shipped profile's figures move only with kgen, whose version `emit` compares already).
 */
export function figuresNotes(db: TuningDb, req: PlanRequest & { irHash: string }, choice: RecordedChoice | undefined): string[] {
  const notes: string[] = [];
  const device = req.device;
  if (choice?.figures === 'unchecked' && !isShippedProfile(device.name)) {
    notes.push(`that record predates profile hashes: kgen cannot tell which figures of ${device.name} it was tuned under; if the profile changed since, run \`kgen tune\` again to measure under these figures`);
  }
  if (choice?.source === 'record') return notes;
  const passed = recordsOfOtherFigures(db, req);
  if (!passed.length) return notes;
  const instead = choice ? `a record of ${formatShape(choice.workload.shape)} is taken instead` : 'the default config is taken instead';
  notes.push(`passed over ${passed.length} tuning record${passed.length === 1 ? '' : 's'} of ${device.name} (${req.target}, ${req.op.name}): ${otherFiguresText(passed, device)}, so ${instead}; run \`kgen tune\` to measure under these figures`);
  return notes;
}

/** Why records of `device` count as tuned under other figures (`figuresMatch` said `other` of each). */
export function otherFiguresText(records: readonly Pick<WorkloadInfo, 'fingerprint'>[], device: DeviceProfile): string {
  const distinct = (f: (w: Pick<WorkloadInfo, 'fingerprint'>) => unknown) => [...new Set(records.map((w) => String(f(w))))].join(', ');
  const now = profileHash(device);
  if (now !== undefined) return `tuned under other figures of its profile (profile hash ${distinct((w) => w.fingerprint.profileHash)}; the profile now hashes to ${now})`;
  return `measured on another CPU or under another lent profile (${distinct((w) => `${w.fingerprint.cpu ?? 'no CPU named'}, lent ${w.fingerprint.forcedFrom ?? 'none'}`)}; this host: ${hostCpuIdentity().cpu}, lent ${device.forcedFrom ?? 'none'})`;
}

/** One line saying which record a config came from, for stderr and manifests. */
export function describeChoice(c: RecordedChoice): string {
  const t = c.trial.timing!;
  const where = c.source === 'record' ? 'tuned for this shape' : `tuned for ${formatShape(c.workload.shape)}, the nearest recorded shape`;
  const pinned = c.pinned && Object.keys(c.pinned).length ? `, the fastest with ${Object.entries(c.pinned).map(([k, v]) => `${k} ${String(v)}`).join(', ')}` : '';
  return `config from the tuning database (${where}${pinned}: ${t.medianMs.toPrecision(3)} ms on ${c.workload.device}, ${c.trial.createdAt.slice(0, 10)})`;
}

/**
 * A workload's recorded configs as emit and tune print them: the knobs in use, planned again on the
 * workload's device profile here (`configShown`). Records keep whole configs (their hash names the
 * trial); this is only for people. Where this kgen does not know the profile (an imported record)
 * or no longer plans the op, configs are shown whole.
 */
export function recordedConfigView(w: Pick<WorkloadInfo, 'op' | 'shape' | 'device' | 'target'>, opts: DeviceOptions = {}): (config: Config) => Config {
  const planned = workloadRequest(w, opts);
  return planned ? (config) => configShown(planned.space, config) : (config) => config;
}

/**
 * A recorded workload planned again here: its op and shape on its device profile and target, and
 * that request's search space, a workload of `host` planned on the host `opts` gives and one of a
 * caller's own profile on the one in `opts.profiles` of its name (`DeviceOptions`). Undefined where
 * neither kgen nor `opts` knows the profile (an imported record) or kgen no longer plans the op.
 */
export function workloadRequest(w: Pick<WorkloadInfo, 'op' | 'shape' | 'device' | 'target'>, opts: DeviceOptions = {}): { req: PlanRequest; space: SearchSpace } | undefined {
  try {
    const req = planRequest({ op: w.op, shape: w.shape, device: getDevice(w.device, opts), target: w.target });
    return { req, space: spaceFor(req) };
  } catch (e) {
    if (!(e instanceof KgenError)) throw e;
    return undefined;
  }
}
