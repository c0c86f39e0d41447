import { targetNames } from '../backends/registry.js';
import { TRIAL_STATUSES, type TrialStatus } from '../backends/types.js';
import { KgenError } from '../errors.js';
import { canonicalHash } from '../hash.js';
import { valueText } from '../io/message-text.js';
import { validateOp, validateShape } from '../ir/validate.js';
import { workloadKey } from './sqlite.js';
import type { Exchange, Trial } from './types.js';

const STATUSES = new Set<TrialStatus>(TRIAL_STATUSES);

function fail(field: string, problem: string, expected: string): never {
  throw new KgenError({ field, problem, expected, hint: 'import files come from `kgen db export`; see docs/tuning.md for the format' });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function str(o: Record<string, unknown>, key: string, path: string, pattern?: RegExp): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length > MAX_TEXT || (pattern && !pattern.test(v))) fail(`${path}.${key}`, `got ${valueText(v)}`, pattern ? `a string matching ${pattern}` : `a string of at most ${MAX_TEXT} characters`);
  return v;
}

/** A number >= 0 and at most `max` (a time, a traffic figure, an error measure). */
function num(o: Record<string, unknown>, key: string, path: string, optional = false, max = Number.MAX_VALUE): number | undefined {
  const v = o[key];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) fail(`${path}.${key}`, `got ${valueText(v)}`, max === Number.MAX_VALUE ? 'a finite number >= 0' : `a finite number from 0 to ${max}`);
  return v;
}

/** A whole count from 1 to `max` (runs of a timing). */
function count(o: Record<string, unknown>, key: string, path: string, max: number): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) fail(`${path}.${key}`, `got ${valueText(v)}`, `an integer from 1 to ${max}`);
  return v;
}

/** Longest text field accepted (error text is clipped to 4000 characters when recorded). */
const MAX_TEXT = 65536;
/** Longest time accepted for one call, ms (a day): a larger figure is a corrupt record. */
const MAX_MS = 86_400_000;
/** Most timed runs one trial can have. */
const MAX_RUNS = 1_000_000;

const HASH = /^[0-9a-f]{16}$/;

/**
 * Checks a parsed export file like any user input: every field's type and range, statuses from
 * the TrialStatus union, timings exactly on ok trials, ops and shapes through the IR validator,
 * config values as plain numbers or strings. Errors name the field (`import.workloads[2].trials[0].status`).
 */
export function validateExchange(data: unknown): Exchange {
  const root = 'import';
  if (!isObject(data)) fail(root, 'not a JSON object', 'an object written by `kgen db export`');
  if (data.format !== 'kgen-tuning') fail(`${root}.format`, `got ${valueText(data.format)}`, '"kgen-tuning"');
  if (data.version !== 1) fail(`${root}.version`, `got ${valueText(data.version)}`, '1 (the only export version so far)');
  if (!Array.isArray(data.workloads)) fail(`${root}.workloads`, 'missing or not an array', 'an array of workloads');
  const uids = new Map<string, string>();
  const workloads = data.workloads.map((w: unknown, i: number) => {
    const p = `${root}.workloads[${i}]`;
    if (!isObject(w)) fail(p, 'not an object', 'a workload object');
    const op = (() => {
      try {
        return validateOp(w.op);
      } catch (e) {
        fail(`${p}.op`, problemOf(e), 'a valid op');
      }
    })();
    if (!isObject(w.shape)) fail(`${p}.shape`, 'not an object', 'dimensions like {"M":1,"N":4096,"K":4096}');
    const shape = (() => {
      try {
        return validateShape(op, w.shape as Record<string, number>);
      } catch (e) {
        fail(`${p}.shape`, problemOf(e), 'valid dimensions for the op');
      }
    })();
    const target = str(w, 'target', p);
    if (!targetNames().includes(target)) fail(`${p}.target`, `got ${valueText(target)}`, `one of ${targetNames().join(', ')}`);
    if (!isObject(w.fingerprint) || !Object.values(w.fingerprint).every((v) => ['string', 'number', 'boolean'].includes(typeof v))) {
      fail(`${p}.fingerprint`, 'not an object of plain values', 'an object of strings, numbers and booleans');
    }
    const irHash = str(w, 'irHash', p, HASH);
    if (canonicalHash(op) !== irHash) fail(`${p}.irHash`, `${irHash} is not the hash of the op given`, 'the op\'s IR hash');
    if (!Array.isArray(w.trials)) fail(`${p}.trials`, 'missing or not an array', 'an array of trials');
    const trials: Trial[] = w.trials.map((t: unknown, j: number) => {
      const trial = validateTrial(t, `${p}.trials[${j}]`);
      // A uid names one measurement: a second trial under it would be taken for the first and dropped.
      const first = uids.get(trial.uid);
      if (first !== undefined) fail(`${p}.trials[${j}].uid`, `${trial.uid} is also ${first}'s`, 'a uid of its own (as `kgen db export` writes)');
      uids.set(trial.uid, `${p}.trials[${j}]`);
      return trial;
    });
    const workload = {
      key: str(w, 'key', p, HASH),
      device: str(w, 'device', p, /^[a-z0-9][a-z0-9-]*$/),
      fingerprint: w.fingerprint as Record<string, string | number | boolean>,
      fingerprintHash: canonicalHash(w.fingerprint),
      target: target as Exchange['workloads'][number]['target'],
      op,
      irHash,
      shape,
      weightFormat: w.weightFormat === undefined ? undefined : str(w, 'weightFormat', p),
      templateHash: str(w, 'templateHash', p, HASH),
      kgenVersion: str(w, 'kgenVersion', p, /^\d+\.\d+\.\d+/),
      bytes: num(w, 'bytes', p)!,
      flops: num(w, 'flops', p)!,
      rooflineMs: num(w, 'rooflineMs', p)!,
      createdAt: str(w, 'createdAt', p),
      trials,
    };
    const key = workloadKey(workload);
    if (key !== workload.key) fail(`${p}.key`, `${workload.key} is not the key of the workload given (it hashes to ${key}: edited by hand, or exported by an incompatible kgen)`, 'the key `kgen db export` wrote for it');
    return workload;
  });
  return { format: 'kgen-tuning', version: 1, exportedAt: typeof data.exportedAt === 'string' ? data.exportedAt : '', workloads };
}

/** What a validator's error says is wrong, without its own field (a shape error names `--shape`). */
function problemOf(e: unknown): string {
  if (!(e instanceof KgenError)) return (e as Error).message;
  return e.field.startsWith('--') ? e.problem : `${e.field}: ${e.problem}`;
}

function validateTrial(t: unknown, p: string): Trial {
  if (!isObject(t)) fail(p, 'not an object', 'a trial object');
  const status = str(t, 'status', p);
  if (!STATUSES.has(status as TrialStatus)) fail(`${p}.status`, `got ${valueText(status)}`, [...STATUSES].join(' | '));
  if (!isObject(t.config) || !Object.values(t.config).every((v) => (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v.length <= 64))) {
    fail(`${p}.config`, 'not an object of knob values', 'an object of numbers and strings');
  }
  const configHash = str(t, 'configHash', p, HASH);
  if (canonicalHash(t.config) !== configHash) fail(`${p}.configHash`, `${configHash} is not the hash of the config given`, 'the config\'s canonical hash');
  const out: Trial = {
    uid: str(t, 'uid', p, /^[0-9a-f-]{16,64}$/),
    config: t.config as Trial['config'],
    configHash,
    status: status as Trial['status'],
    origin: typeof t.origin === 'string' ? t.origin : '',
    createdAt: str(t, 'createdAt', p),
  };
  if (status === 'ok') {
    if (!isObject(t.timing)) fail(`${p}.timing`, 'missing on an ok trial', 'an object with medianMs, minMs, maxMs, spread, runs');
    const tp = `${p}.timing`;
    out.timing = { medianMs: num(t.timing, 'medianMs', tp, false, MAX_MS)!, minMs: num(t.timing, 'minMs', tp, false, MAX_MS)!, maxMs: num(t.timing, 'maxMs', tp, false, MAX_MS)!, spread: num(t.timing, 'spread', tp, false, 1e6)!, runs: count(t.timing, 'runs', tp, MAX_RUNS) };
    if (!(out.timing.minMs <= out.timing.medianMs && out.timing.medianMs <= out.timing.maxMs)) fail(`${tp}.medianMs`, `${out.timing.medianMs} is outside [minMs ${out.timing.minMs}, maxMs ${out.timing.maxMs}]`, 'minMs <= medianMs <= maxMs');
  } else if (t.timing !== undefined) {
    fail(`${p}.timing`, `present on a ${status} trial`, 'times only on ok trials');
  }
  for (const k of ['nmse', 'maxAbsError', 'compileMs'] as const) {
    const v = num(t, k, p, true);
    if (v !== undefined) out[k] = v;
  }
  for (const k of ['error', 'strategy', 'runner'] as const) if (t[k] !== undefined) out[k] = str(t, k, p);
  return out;
}
