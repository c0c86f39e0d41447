/**
 * Seeded fuzz test of the CLI's handling of bad input: every generated case is a valid command with
 * exactly one mistake in it (a flag, a shape, a config, an IR file, an import file, a path), so each
 * must end with exit 2, one line on stderr naming what is wrong, no stack trace, nothing on stdout
 * and nothing written: the protected sandbox (a kgen database, foreign databases, user files,
 * special files) is compared byte for byte after every case.
 *
 * Cases run in-process through `main` (hundreds per second); a sample also runs through the real
 * `bin/kgen` to check the process's exit code. KGEN_FUZZ_SEED and KGEN_FUZZ_CASES reproduce or
 * widen a run; KGEN_FUZZ_LOG=FILE writes every case and its message there.
 */
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { openTuningDb } from '../src/db/sqlite.js';
import { canonicalHash } from '../src/hash.js';
import { CATALOG } from '../src/ir/catalog.js';
import { opHash } from '../src/ir/validate.js';
import { Rng } from '../src/numeric/random.js';
import { KGEN_VERSION } from '../src/version.js';
import { snapshot } from './helpers.js';

const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
const SEED = Number(process.env.KGEN_FUZZ_SEED ?? 20261130);
const CASES = Number(process.env.KGEN_FUZZ_CASES ?? 640);
const isRoot = process.getuid?.() === 0;

/** The protected sandbox: what no refused command may touch. */
let S = '';
/** Inputs written for the cases (IR and import files), outside the sandbox. */
let IN = '';
let KDB = '';
let W = '';
let EXPORT = '';
let before: Record<string, string> = {};
const savedEnv = { KGEN_DB: process.env.KGEN_DB, XDG_CACHE_HOME: process.env.XDG_CACHE_HOME };

beforeAll(async () => {
  S = mkdtempSync(join(tmpdir(), 'kgen-fuzz-'));
  IN = mkdtempSync(join(tmpdir(), 'kgen-fuzz-in-'));
  W = join(S, 'w.f32');
  writeFileSync(W, new Uint8Array(new Rng(2).fillNormal(new Float32Array(4 * 64)).buffer));
  writeFileSync(join(S, 'op.json'), JSON.stringify({ kind: 'matmul', name: 'fuzz_op', weight: { format: 'q4' } }));
  KDB = join(S, 'kgen.db');
  const db = openTuningDb(KDB);
  const op = CATALOG.matmul_q4!;
  const w = db.ensureWorkload({ device: 'host', fingerprint: { cpu: 'fuzz' }, target: 'c', op, irHash: opHash(op), shape: { M: 1, N: 64, K: 64 }, weightFormat: 'q4', templateHash: '0123456789abcdef', kgenVersion: KGEN_VERSION, bytes: 8192, flops: 8192, rooflineMs: 0.001 });
  const config = { isa: 'scalar', actQuant: 'none', rowsPerIter: 1, mTile: 1, nTile: 32, unroll: 1, prefetch: 1 };
  db.addTrial(w.id, { uid: '00000000-0000-4000-8000-00000000f022', config, configHash: canonicalHash(config), status: 'ok', timing: { medianMs: 0.01, minMs: 0.009, maxMs: 0.02, spread: 0.1, runs: 11 }, origin: 'fuzz', createdAt: '2026-11-30T00:00:00Z' });
  EXPORT = join(S, 'export.json');
  writeFileSync(EXPORT, JSON.stringify(db.exportAll()));
  db.close();
  const foreign = (name: string, wal: boolean) => {
    const f = new Database(join(S, name));
    if (wal) f.pragma('journal_mode = WAL');
    f.exec("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep')");
    f.close();
  };
  foreign('foreign.db', false);
  foreign('foreign-wal.db', true);
  writeFileSync(join(S, 'notdb.db'), 'plain text, not a database');
  writeFileSync(join(S, 'empty.db'), '');
  writeFileSync(join(S, 'afile'), 'a user file');
  mkdirSync(join(S, 'adir'));
  writeFileSync(join(S, 'adir', 'keep.txt'), 'keep');
  mkdirSync(join(S, 'existing-out'));
  for (const f of ['kernel.c', 'kernel.h', 'manifest.json']) writeFileSync(join(S, 'existing-out', f), `the user's ${f}`);
  symlinkSync(join(S, 'afile'), join(S, 'link'));
  await execa('mkfifo', [join(S, 'fifo')]);
  if (isRoot) await execa('cp', ['-a', '/dev/null', join(S, 'devnull')]);
  before = snapshot(S);
  process.env.KGEN_DB = join(S, 'default-never.db');
  process.env.XDG_CACHE_HOME = join(S, 'cache-never');
});

afterAll(() => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

interface Outcome {
  exitCode: number;
  stdout: string;
  stderr: string;
  thrown?: unknown;
}

/** Runs `kgen argv` in this process, capturing what it prints and its exit code. */
async function runInProcess(argv: string[]): Promise<Outcome> {
  const out: string[] = [];
  const err: string[] = [];
  const stdoutWrite = process.stdout.write;
  const stderrWrite = process.stderr.write;
  process.stdout.write = ((chunk: unknown) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: unknown) => (err.push(String(chunk)), true)) as typeof process.stderr.write;
  process.exitCode = undefined;
  let thrown: unknown;
  try {
    await main(['node', 'kgen', ...argv]);
  } catch (e) {
    thrown = e;
  } finally {
    process.stdout.write = stdoutWrite;
    process.stderr.write = stderrWrite;
  }
  const exitCode = thrown === undefined ? Number(process.exitCode ?? 0) : 70;
  process.exitCode = undefined;
  return { exitCode, stdout: out.join(''), stderr: err.join(''), thrown };
}

// ---- generators ------------------------------------------------------------------------------

const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng.next() * items.length)]!;

/** Text of random characters, ASCII-heavy with some hostile ones. */
function junk(rng: Rng, maxLen = 12): string {
  const chars = 'abcxyzQ019_-=,.;:/\\*?()[]{}"\' \t\n\r%$#@!é\u2028\u0007🙂';
  const n = 1 + Math.floor(rng.next() * maxLen);
  let s = '';
  for (let i = 0; i < n; i++) s += [...chars][Math.floor(rng.next() * [...chars].length)];
  return s;
}

/** A string that is none of `valid` (and not an inherited property name either). */
function notOneOf(rng: Rng, valid: readonly string[]): string {
  const candidates = ['', ' ', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'C', 'AVX2', 'q5', 'matmul', 'host ', 'rtx-4090', 'neon2'];
  for (;;) {
    const v = rng.next() < 0.4 ? pick(rng, candidates) : junk(rng);
    if (!valid.includes(v)) return v;
  }
}

/** Values no count flag takes (decimal digits only, in range): `min`/`max` of the flag. */
function badCount(rng: Rng, min: number, max: number): string {
  const fixed = ['', ' ', '0x10', '1e1', '1.5', '-1', '+1', 'abc', '1_000', '99999999999999999999', 'NaN', 'Infinity', '1 ', ' 1', '١٢', '0b1', '2e0', String(max + 1), String(min - 1)];
  for (;;) {
    const v = rng.next() < 0.7 ? pick(rng, fixed) : junk(rng, 6);
    const ok = /^\d{1,15}$/.test(v) && Number(v) >= min && Number(v) <= max;
    if (!ok) return v;
  }
}

function badDuration(rng: Rng): string {
  const fixed = ['', ' ', 'soon', '10x', '-1s', '0', '0s', '0ms', '1e3s', '1.5.5s', '10 m', 'm', 's10', '1h30m', 'Infinity', '10M'];
  for (;;) {
    const v = rng.next() < 0.8 ? pick(rng, fixed) : junk(rng, 5);
    const m = /^(\d{1,9}(?:\.\d{1,6})?)(ms|s|m|h)?$/.exec(v);
    if (!m || Number(m[1]) === 0) return v;
  }
}

/** A shape string with one mistake, for an op whose dims are `dims` (pack: N and K). */
function badShape(rng: Rng, dims: readonly string[], group = 64): string {
  const good: Record<string, number> = { M: 1, N: 64, K: 64 };
  const pairs = () => dims.map((d) => `${d}=${good[d]}`);
  switch (Math.floor(rng.next() * 8)) {
    case 0: {
      const p = pairs();
      p.splice(Math.floor(rng.next() * p.length), 1);
      return dims.length === 2 ? p.join(',') : p.join(','); // a dimension missing
    }
    case 1: {
      const p = pairs();
      return [...p, pick(rng, p)].join(','); // given twice
    }
    case 2:
      return [...pairs(), `${pick(rng, ['D', 'Q', 'X', 'Hq', 'B'])}=4`].join(','); // unknown dimension
    case 3: {
      const d = pick(rng, dims);
      let v = badCount(rng, 1, 1 << 20);
      // Pairs are trimmed, so "1 " would be a good value here.
      while (/^\d{1,15}$/.test(v.trim()) && Number(v.trim()) >= 1 && Number(v.trim()) <= 1 << 20) v = badCount(rng, 1, 1 << 20);
      return pairs().map((p) => (p.startsWith(`${d}=`) ? `${d}=${v}` : p)).join(','); // bad value
    }
    case 4:
      return pairs().map((p) => (p.startsWith('K=') ? `K=${group + 1 + Math.floor(rng.next() * (group - 2))}` : p)).join(','); // K off the group
    case 5:
      return pairs().join(pick(rng, [';', ' ', '|', ', ,x'])); // wrong separator
    case 6:
      return pairs().map((p) => (p.startsWith('N=') ? `N=${(1 << 20) + 1 + Math.floor(rng.next() * 1000)}` : p)).join(','); // too large
    default:
      return rng.next() < 0.3 ? '' : `${junk(rng)}=${junk(rng, 3)}`;
  }
}

/** JSON text with one mistake for a --config. */
function badConfig(rng: Rng): string {
  switch (Math.floor(rng.next() * 7)) {
    case 0: {
      const text = '{"isa":"scalar","nTile":16}';
      return text.slice(0, Math.floor(rng.next() * (text.length - 1))); // truncated
    }
    case 1: {
      const depth = 33 + Math.floor(rng.next() * 5000);
      return rng.next() < 0.5 ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    }
    case 2:
      return pick(rng, ['1', '"x"', '[]', 'null', 'true', '[{"isa":"scalar"}]']);
    case 3:
      return JSON.stringify({ [notOneOf(rng, ['isa', 'actQuant', 'rowsPerIter', 'mTile', 'nTile', 'unroll', 'prefetch'])]: 1 });
    case 4:
      return JSON.stringify(pick(rng, [{ nTile: 3 }, { nTile: '16' }, { isa: 'sse' }, { unroll: -1 }, { mTile: 1.5 }, { prefetch: null }, { isa: ['scalar'] }]));
    case 5:
      return '{"__proto__":{"polluted":1}}';
    default: {
      const text = junk(rng, 20).replace(/^[\s{[]*/, '{');
      try {
        JSON.parse(text);
        return '{'; // the junk happened to be JSON
      } catch {
        return text;
      }
    }
  }
}

const VALID_IR = { kind: 'matmul', name: 'fuzz_op', x: 'f32', weight: { format: 'q4', groupSize: 64 }, y: 'f32', epilogue: { bias: false, activation: 'none', residual: false } };

/** The text of an IR file with one mistake. */
function badIr(rng: Rng): string {
  const ir = JSON.parse(JSON.stringify(VALID_IR)) as Record<string, unknown> & { weight: Record<string, unknown>; epilogue: Record<string, unknown> };
  const wrong = () => pick(rng, [1, -1, 'x', '', null, [], {}, true, [1, 2], { a: 1 }]);
  switch (Math.floor(rng.next() * 10)) {
    case 0:
      delete ir[pick(rng, ['kind', 'name', 'weight'])];
      break;
    case 1:
      delete ir.weight.format;
      break;
    case 2: {
      const field = pick(rng, ['kind', 'x', 'y', 'weight', 'epilogue']);
      const v = wrong();
      ir[field] = field === 'epilogue' && v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0 ? 1 : v; // {} is a valid epilogue
      break;
    }
    case 3:
      Object.defineProperty(ir, notOneOf(rng, ['kind', 'name', 'x', 'weight', 'y', 'epilogue']), { value: 1, enumerable: true });
      break;
    case 4:
      for (;;) {
        const name = rng.next() < 0.2 ? 'a'.repeat(49) : junk(rng, 30);
        if (!/^[a-z][a-z0-9_]{0,47}$/.test(name)) {
          ir.name = name;
          break;
        }
      }
      break;
    case 5:
      ir.weight.groupSize = pick(rng, [0, 33, 48, 4097, 8192, 'x', 1.5, -64, null]);
      break;
    case 6:
      ir.epilogue[pick(rng, ['bias', 'activation', 'residual'])] = pick(rng, ['relu', 1, 'yes', null, ['silu']]);
      break;
    case 7: {
      const depth = 33 + Math.floor(rng.next() * 3000);
      return '{"kind":"matmul","name":"x","weight":' + '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) + '}';
    }
    case 8:
      return pick(rng, ['', '{', 'not json', '\u0000\u0001\u0002', '{"kind":"matmul",}', JSON.stringify(VALID_IR).slice(0, 20)]);
    default:
      return JSON.stringify({ kind: 'attention', name: 'att', kvCache: pick(rng, ['q4', 'f32', 1]), q: 'f16' });
  }
  return JSON.stringify(ir);
}

/** An import file with one mistake: a strict field's type or range, the format, or the text. */
function badImport(rng: Rng): string {
  const data = JSON.parse(readFileSync(EXPORT, 'utf8'));
  const w = data.workloads[0];
  const t = w.trials[0];
  const wrongStr = () => pick(rng, [1, null, [], {}, true]);
  const wrongNum = () => pick(rng, [-1, 'x', null, [], '1', true]);
  switch (Math.floor(rng.next() * 12)) {
    case 0:
      data.format = pick(rng, ['kgen', 'kgen-tuning-2', 1, null]);
      break;
    case 1:
      data.version = pick(rng, [0, 2, '1', null]);
      break;
    case 2:
      data.workloads = pick(rng, [null, {}, 'x', 1]);
      break;
    case 3:
      w[pick(rng, ['key', 'device', 'target', 'irHash', 'templateHash', 'kgenVersion', 'createdAt'])] = wrongStr();
      break;
    case 4:
      w[pick(rng, ['bytes', 'flops', 'rooflineMs'])] = wrongNum();
      break;
    case 5:
      w.op = { ...w.op, name: 'renamed_op' }; // the irHash no longer matches
      break;
    case 6:
      t[pick(rng, ['uid', 'configHash', 'createdAt'])] = wrongStr();
      break;
    case 7:
      t.status = notOneOf(rng, ['ok', 'over_budget', 'compile_error', 'crash', 'timeout', 'wrong_result', 'unsupported']);
      break;
    case 8:
      t.timing[pick(rng, ['runs'])] = pick(rng, [2.5, 0, 1e300, -3, '11']);
      break;
    case 9:
      t.timing[pick(rng, ['medianMs', 'minMs', 'maxMs'])] = pick(rng, [-1, 1e300, 'fast', null]);
      break;
    case 10:
      delete w[pick(rng, ['op', 'shape', 'trials', 'fingerprint'])];
      break;
    default:
      return pick(rng, ['', '{', '[]', 'null', '{"format":"kgen-cuda-run","version":1}', '{"format":"kgen-cuda-run","version":1,"kernel":{"target":"cuda"}}']);
  }
  return JSON.stringify(data);
}

interface Case {
  kind: string;
  argv: string[];
  /** What the single mistake is, for the failure message. */
  note: string;
}

/** Case `i`: one base command, one mistake. */
function makeCase(rng: Rng, i: number): Case {
  const fresh = (what: string) => join(S, `never-${what}-${i}`);
  const emit = ['emit', '--target', 'c', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64', '--isa', 'scalar'];
  const tuneDry = ['tune', '--device', 'host', '--dry-run', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'];
  const tune = ['tune', '--device', 'host', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64', '--trials', '1', '--db', fresh('tune.db'), '--cache-dir', fresh('cache')];
  const pack = (out = fresh('w.q4')) => ['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', W, '-o', out];
  const classes = ['number', 'enum', 'shape', 'config', 'ir', 'import', 'path', 'usage'] as const;
  const kind = classes[i % classes.length]!;
  switch (kind) {
    case 'number': {
      const table: [string[], string, () => string][] = [
        [tuneDry, '--trials', () => badCount(rng, 1, 1_000_000)],
        [tuneDry, '--threads', () => badCount(rng, 1, 256)],
        [tuneDry, '--seed', () => badCount(rng, 0, 2 ** 32 - 1)],
        [tuneDry, '--time-budget', () => badDuration(rng)],
        [tuneDry, '--timeout', () => badDuration(rng)],
        [tuneDry, '--strategy-opt', () => `population=${badCount(rng, 0, 1e9)}`],
        [tune, '--trials', () => badCount(rng, 1, 1_000_000)],
        [tune, '--seed', () => badCount(rng, 0, 2 ** 32 - 1)],
        [['verify', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64', '--isa', 'scalar'], '--seed', () => badCount(rng, 0, 2 ** 32 - 1)],
        [[...emit, '-o', fresh('out')], '--data', () => badCount(rng, 0, 2 ** 32 - 1)],
        [['db', 'show', '1', '--db', KDB], '--limit', () => badCount(rng, 1, 1_000_000)],
        [pack(), '--group', () => badCount(rng, 32, 4096)],
      ];
      const [base, flag, value] = pick(rng, table);
      const v = value();
      return { kind, argv: [...base, flag, v], note: `${flag} ${JSON.stringify(v)}` };
    }
    case 'enum': {
      const table: [string[], string, readonly string[]][] = [
        [['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'], '--target', ['c', 'cuda', 'wgsl', 'wasm']],
        [['emit', '--shape', 'M=1,N=64,K=64'], '--op', Object.keys(CATALOG)],
        [['plan', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'], '--device', []],
        [['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'], '--isa', ['avx512', 'avx2', 'neon', 'scalar']],
        [['pack', '--shape', 'N=4,K=64', '--in', W, '-o', fresh('w')], '--format', ['q35', 'q4', 'q8', 'q4_0', 'q8_0', 'f16']],
        [['pack', '--shape', 'N=4,K=64', '--in', W, '-o', fresh('w')], '--op', ['matmul_q35', 'matmul_q4', 'matmul_q8', 'matmul_q4_0', 'matmul_q8_0', 'matmul_f16']],
        [tuneDry, '--strategy', ['exhaustive', 'random', 'evolutionary']],
        [['tune', '--dry-run', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'], '--device', []],
        [['db', 'best', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64', '--db', KDB], '--target', ['c', 'wasm']],
        [['db', 'best', '--shape', 'M=1,N=64,K=64', '--db', KDB], '--op', Object.keys(CATALOG)],
      ];
      const [base, flag, valid] = pick(rng, table);
      const devices = ['host', 'rtx4090', 'l40s', 'a100-80gb', 'h100-sxm', 'h200', 't4', 'epyc-7763', 'epyc-9654', 'xeon-8592', 'apple-m2', 'webgpu', 'swiftshader', 'wasm-simd128'];
      const v = notOneOf(rng, flag === '--device' ? devices : valid);
      return { kind, argv: [...base, flag, v], note: `${flag} ${JSON.stringify(v)}` };
    }
    case 'shape': {
      const table: [string[], readonly string[], number][] = [
        [emit, ['M', 'N', 'K'], 64],
        [['plan', '--op', 'matmul_q4_0'], ['M', 'N', 'K'], 32],
        [['verify', '--op', 'matmul_q4', '--isa', 'scalar'], ['M', 'N', 'K'], 64],
        [['tune', '--device', 'host', '--dry-run', '--op', 'matmul_q4'], ['M', 'N', 'K'], 64],
        [['db', 'best', '--op', 'matmul_q4', '--db', KDB], ['M', 'N', 'K'], 64],
        [['pack', '--format', 'q4', '--in', W, '-o', fresh('w')], ['N', 'K'], 64],
      ];
      const [base, dims, group] = pick(rng, table);
      const shape = badShape(rng, dims, group);
      const withoutShape = base.filter((a, j) => a !== '--shape' && base[j - 1] !== '--shape');
      return { kind, argv: [...withoutShape, '--shape', shape], note: `--shape ${JSON.stringify(shape)}` };
    }
    case 'config': {
      const base = pick(rng, [emit, ['plan', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'], ['verify', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64'], tuneDry, tune]);
      const config = badConfig(rng);
      return { kind, argv: [...base, '--config', config], note: `--config ${JSON.stringify(config.slice(0, 60))}` };
    }
    case 'ir': {
      const file = join(IN, `ir-${i}.json`);
      writeFileSync(file, badIr(rng));
      const base = pick(rng, [['emit', '--shape', 'M=1,N=64,K=64'], ['plan', '--shape', 'M=1,N=64,K=64'], ['verify', '--shape', 'M=1,N=8,K=64'], ['tune', '--device', 'host', '--dry-run', '--shape', 'M=1,N=64,K=64'], ['db', 'best', '--shape', 'M=1,N=64,K=64', '--db', KDB]]);
      return { kind, argv: [...base, '--ir', file], note: `--ir ${readFileSync(file, 'utf8').slice(0, 80)}` };
    }
    case 'import': {
      const file = join(IN, `import-${i}.json`);
      writeFileSync(file, badImport(rng));
      return { kind, argv: ['db', 'import', file, '--db', rng.next() < 0.5 ? fresh('import.db') : KDB], note: `import ${readFileSync(file, 'utf8').slice(0, 120)}` };
    }
    case 'path': {
      const proc = `/proc/kgen-fuzz-${i}/x`;
      const table: [string, () => string[]][] = [
        ['emit -o', () => [...emit, '-o', pick(rng, ['', join(S, 'afile'), join(S, 'afile', 'sub'), join(S, 'existing-out'), join(S, 'fifo'), join(S, 'link'), proc])]],
        ['pack -o', () => pack(pick(rng, ['', join(S, 'adir'), join(S, 'afile'), join(S, 'afile', 'x'), join(S, 'fifo'), join(S, 'link'), proc, ...(isRoot ? [join(S, 'devnull')] : [])]))],
        ['pack --in', () => ['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', pick(rng, ['', join(S, 'missing.f32'), join(S, 'adir'), join(S, 'fifo'), join(S, 'notdb.db'), join(S, 'afile')]), '-o', fresh('w')]],
        ['unpack --in', () => ['unpack', '--in', pick(rng, ['', join(S, 'missing.q4'), join(S, 'adir'), join(S, 'fifo'), join(S, 'notdb.db'), join(S, 'afile')]), '-o', fresh('u.f32')]],
        ['export -o', () => ['db', 'export', '--db', KDB, '-o', pick(rng, ['', join(S, 'adir'), join(S, 'afile'), join(S, 'afile', 'x'), join(S, 'fifo'), join(S, 'link'), proc])]],
        ['reader --db', () => [...pick(rng, [['db', 'list'], ['db', 'show', '1'], ['db', 'export'], ['db', 'best', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'], ['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64']]), '--db', pick(rng, ['', join(S, 'foreign.db'), join(S, 'foreign-wal.db'), join(S, 'notdb.db'), join(S, 'empty.db'), join(S, 'adir'), join(S, 'afile', 'x.db'), join(S, 'fifo'), join(S, 'missing.db'), proc])]],
        ['writer --db', () => [...pick(rng, [['db', 'import', EXPORT], tune.filter((a, j) => a !== '--db' && tune[j - 1] !== '--db')]), '--db', pick(rng, ['', join(S, 'foreign.db'), join(S, 'foreign-wal.db'), join(S, 'notdb.db'), join(S, 'adir'), join(S, 'afile', 'x.db'), join(S, 'fifo'), proc])]],
        ['--ir', () => ['emit', '--shape', 'M=1,N=64,K=64', '--ir', pick(rng, ['', join(S, 'missing.json'), join(S, 'adir'), join(S, 'fifo'), join(S, 'notdb.db'), join(S, 'empty.db'), join(S, 'kgen.db')])]],
        ['--cache-dir', () => [...tune.filter((a, j) => a !== '--cache-dir' && tune[j - 1] !== '--cache-dir'), '--cache-dir', pick(rng, ['', join(S, 'afile'), join(S, 'afile', 'x'), proc])]],
      ];
      const [what, make] = pick(rng, table);
      const argv = make();
      return { kind, argv, note: `${what}: ${argv.join(' ')}` };
    }
    case 'usage': {
      const options = [
        () => [...emit, `--${junk(rng, 6).replace(/[^a-z]/g, '') || 'bogus'}x`],
        () => [pick(rng, ['emitt', 'tunee', 'dbx', 'Emit', 'verif', 'packs'])],
        () => [...emit.slice(0, -1)], // --isa without its value
        () => ['emit', 'extra-argument', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'],
        () => ['db', 'show'],
        () => ['db', pick(rng, ['lst', 'drop', 'vacuum'])],
        () => ['tune', '--dry-run'],
        () => ['emit', '--op', 'matmul_q4'],
        () => ['emit', '--op', 'matmul_q4', '--ir', join(S, 'op.json'), '--shape', 'M=1,N=64,K=64'],
        () => ['tune', '--device', 'host', '--dry-run', '--shape', 'M=1,N=64,K=64'],
      ];
      const argv = pick(rng, options)();
      return { kind, argv, note: argv.join(' ') };
    }
  }
}

function cases(): Case[] {
  const rng = new Rng(SEED);
  return Array.from({ length: CASES }, (_, i) => makeCase(rng, i));
}

/** The verdict the test holds every case to; a string says what was wrong. */
function judge(c: Case, r: Outcome): string | undefined {
  if (r.thrown !== undefined) return `threw ${(r.thrown as Error)?.stack ?? String(r.thrown)}`;
  if (r.exitCode !== 2) return `exit ${r.exitCode} (stdout ${r.stdout.slice(0, 200)} stderr ${r.stderr.slice(0, 300)})`;
  const lines = r.stderr.trimEnd().split('\n');
  if (lines.length !== 1) return `${lines.length} lines on stderr: ${r.stderr.slice(0, 400)}`;
  if (!/^kgen: \S/.test(r.stderr)) return `stderr does not start with "kgen: ": ${r.stderr.slice(0, 200)}`;
  if (/\n\s+at |internal error/.test(r.stderr)) return `stack trace: ${r.stderr.slice(0, 400)}`;
  if (r.stdout !== '') return `printed on stdout: ${r.stdout.slice(0, 200)}`;
  return undefined;
}

describe(`CLI fuzz (seed ${SEED}, ${CASES} cases)`, () => {
  it('every case with one mistake exits 2 with one line and writes nothing', async () => {
    const all = cases();
    expect(all.length).toBeGreaterThanOrEqual(500);
    const failures: string[] = [];
    const byKind = new Map<string, number>();
    for (const [i, c] of all.entries()) {
      const r = await runInProcess(c.argv);
      if (process.env.KGEN_FUZZ_LOG) appendFileSync(process.env.KGEN_FUZZ_LOG, `${i} [${c.kind}] ${c.note.replace(/\n/g, '\\n')}\n    -> ${r.exitCode} ${r.stderr.trim()}\n`);
      byKind.set(c.kind, (byKind.get(c.kind) ?? 0) + 1);
      const wrong = judge(c, r);
      const after = snapshot(S);
      const changed = Object.keys({ ...before, ...after }).filter((k) => before[k] !== after[k]);
      if (wrong || changed.length) {
        failures.push(`case ${i} [${c.kind}] ${c.note}\n  ${wrong ?? ''}${changed.length ? ` changed: ${changed.join(', ')}` : ''}`);
        if (failures.length >= 10) break;
      }
    }
    expect(failures, failures.join('\n')).toEqual([]);
    for (const kind of ['number', 'enum', 'shape', 'config', 'ir', 'import', 'path', 'usage']) expect(byKind.get(kind) ?? 0).toBeGreaterThanOrEqual(50);
  });

  it('a sample of the cases gives the same verdict through bin/kgen', async () => {
    const all = cases();
    const sample = all.filter((_, i) => i % 24 === 5);
    const results = await Promise.all(
      sample.map(async (c) => {
        const r = await execa(KGEN, c.argv, { reject: false, timeout: 60_000, env: { ...process.env, KGEN_DB: join(S, 'default-never.db'), XDG_CACHE_HOME: join(S, 'cache-never') } });
        return { c, wrong: judge(c, { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr }) };
      }),
    );
    const failures = results.filter((x) => x.wrong).map((x) => `[${x.c.kind}] ${x.c.note}: ${x.wrong}`);
    expect(failures, failures.join('\n')).toEqual([]);
    expect(snapshot(S)).toEqual(before);
  });
});
