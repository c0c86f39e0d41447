import type { Config, PlanRequest, SearchSpace } from '../plan/types.js';
import { planRequest } from '../backends/registry.js';
import { getDevice, type DeviceOptions } from '../device/index.js';
import { KgenError } from '../errors.js';
import { canonicalJson } from '../hash.js';
import type { Shape } from '../ir/types.js';
import { formatShape } from '../ir/validate.js';
import { configShown, makePlan, spaceFor, type ResolvedPlan } from '../plan/index.js';
import { KGEN_VERSION } from '../version.js';
import { contendingTrials, currentTrials } from './current.js';
import type { TrialRow, TuningDb, Workload, WorkloadInfo, WorkloadSummary } from './types.js';

/** A tuned config chosen for a request, and the record it came from. */
export interface RecordedChoice {
  resolved: ResolvedPlan;
  source: 'record' | 'nearest-record';
  workload: Workload;
  trial: TrialRow;
  /** The knob values the choice was narrowed to (`--isa`), if any. */
  pinned?: Config;
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
 * the same op whose config is legal at this shape. Among equal candidates the newest workload of
 * this kgen version wins (older templates may time differently). A record whose config the current
 * space no longer accepts is passed over, never forced. With `pinned` knob values (`--isa`), only
 * trials whose config has them count.
 */
export function recordedConfig(db: TuningDb, req: PlanRequest & { irHash: string }, pinned: Config = {}): RecordedChoice | undefined {
  const rows = db
    .workloads({ device: req.device.name, target: req.target, irHash: req.irHash })
    .map((w) => ({ ...w, best: pinnedBest(db, w, pinned) }))
    .filter((w) => w.best);
  const want = canonicalJson(req.shape);
  const rank = (w: Workload) => (w.kgenVersion === KGEN_VERSION ? 0 : 1);
  const exact = rows.filter((w) => canonicalJson(w.shape) === want).sort((a, b) => rank(a) - rank(b) || b.id - a.id);
  const near = rows
    .filter((w) => canonicalJson(w.shape) !== want)
    .sort((a, b) => shapeDistance(a.shape, req.shape) - shapeDistance(b.shape, req.shape) || rank(a) - rank(b) || b.id - a.id);
  for (const [source, list] of [['record', exact], ['nearest-record', near]] as const) {
    for (const w of list) {
      try {
        const resolved = makePlan(req, w.best!.config);
        return { resolved, source, workload: w, trial: w.best!, ...(Object.keys(pinned).length ? { pinned } : {}) };
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
