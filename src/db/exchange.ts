import { TARGETS } from '../device/profile.js';
import { KgenError } from '../errors.js';
import { canonicalHash } from '../hash.js';
import { validateOp, validateShape } from '../ir/validate.js';
import type { Exchange, Trial } from './types.js';

const STATUSES = new Set(['ok', 'over_budget', 'compile_error', 'crash', 'timeout', 'wrong_result']);

function fail(field: string, problem: string, expected: string): never {
  throw new KgenError({ field, problem, expected, hint: 'import files come from `kgen db export`; see docs/tuning.md for the format' });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function str(o: Record<string, unknown>, key: string, path: string, pattern?: RegExp): string {
  const v = o[key];
  if (typeof v !== 'string' || (pattern && !pattern.test(v))) fail(`${path}.${key}`, `got ${JSON.stringify(v)}`, pattern ? `a string matching ${pattern}` : 'a string');
  return v;
}

function num(o: Record<string, unknown>, key: string, path: string, optional = false): number | undefined {
  const v = o[key];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail(`${path}.${key}`, `got ${JSON.stringify(v)}`, 'a finite number >= 0');
  return v;
}

const HASH = /^[0-9a-f]{16}$/;

/**
 * Checks a parsed export file like any user input: every field's type and range, statuses from
 * the TrialStatus union, timings exactly on ok trials, ops and shapes through the IR validator,
 * config values as plain numbers or strings. Errors name the field (`import.workloads[2].trials[0].status`).
 */
export function validateExchange(data: unknown): Exchange {
  const root = 'import';
  if (!isObject(data)) fail(root, 'not a JSON object', 'an object written by `kgen db export`');
  if (data.format !== 'kgen-tuning') fail(`${root}.format`, `got ${JSON.stringify(data.format)}`, '"kgen-tuning"');
  if (data.version !== 1) fail(`${root}.version`, `got ${JSON.stringify(data.version)}`, '1 (the only export version so far)');
  if (!Array.isArray(data.workloads)) fail(`${root}.workloads`, 'missing or not an array', 'an array of workloads');
  const workloads = data.workloads.map((w: unknown, i: number) => {
    const p = `${root}.workloads[${i}]`;
    if (!isObject(w)) fail(p, 'not an object', 'a workload object');
    const op = (() => {
      try {
        return validateOp(w.op);
      } catch (e) {
        fail(`${p}.op`, (e as Error).message, 'a valid op');
      }
    })();
    if (!isObject(w.shape)) fail(`${p}.shape`, 'not an object', 'dimensions like {"M":1,"N":4096,"K":4096}');
    const shape = (() => {
      try {
        return validateShape(op, w.shape as Record<string, number>);
      } catch (e) {
        fail(`${p}.shape`, (e as Error).message, 'valid dimensions for the op');
      }
    })();
    const target = str(w, 'target', p);
    if (!TARGETS.includes(target as never)) fail(`${p}.target`, `got ${JSON.stringify(target)}`, `one of ${TARGETS.join(', ')}`);
    if (!isObject(w.fingerprint) || !Object.values(w.fingerprint).every((v) => ['string', 'number', 'boolean'].includes(typeof v))) {
      fail(`${p}.fingerprint`, 'not an object of plain values', 'an object of strings, numbers and booleans');
    }
    const irHash = str(w, 'irHash', p, HASH);
    if (canonicalHash(op) !== irHash) fail(`${p}.irHash`, `${irHash} is not the hash of the op given`, 'the op\'s IR hash');
    if (!Array.isArray(w.trials)) fail(`${p}.trials`, 'missing or not an array', 'an array of trials');
    const trials: Trial[] = w.trials.map((t: unknown, j: number) => validateTrial(t, `${p}.trials[${j}]`));
    return {
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
  });
  return { format: 'kgen-tuning', version: 1, exportedAt: typeof data.exportedAt === 'string' ? data.exportedAt : '', workloads };
}

function validateTrial(t: unknown, p: string): Trial {
  if (!isObject(t)) fail(p, 'not an object', 'a trial object');
  const status = str(t, 'status', p);
  if (!STATUSES.has(status)) fail(`${p}.status`, `got ${JSON.stringify(status)}`, [...STATUSES].join(' | '));
  if (!isObject(t.config) || !Object.values(t.config).every((v) => typeof v === 'number' || typeof v === 'string')) {
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
    out.timing = { medianMs: num(t.timing, 'medianMs', tp)!, minMs: num(t.timing, 'minMs', tp)!, maxMs: num(t.timing, 'maxMs', tp)!, spread: num(t.timing, 'spread', tp)!, runs: num(t.timing, 'runs', tp)! };
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
