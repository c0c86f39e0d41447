import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import type { TrialStatus } from '../backends/types.js';
import { InternalError, KgenError } from '../errors.js';
import { canonicalHash, canonicalJson } from '../hash.js';
import { checkPathText, ensureDirectory, fsError } from '../io/output.js';
import { oneLine, pathText } from '../io/message-text.js';
import { makeTempDir } from '../io/temp-dirs.js';
import { packagePath } from '../package-files.js';
import { contendingTrials } from './current.js';
import type { DbFileKind } from './file-kind.js';
import { createTableStatements, inspectDbFile, KGEN_APPLICATION_ID } from './file-kind.js';
import type { Exchange, ImportSummary, Trial, TrialRow, TuningDb, Workload, WorkloadFilter, WorkloadInfo, WorkloadSummary } from './types.js';

/** tuning-db/ in the package: NNN_name.sql migrations, applied in order. */
const MIGRATIONS_DIR = packagePath('tuning-db');

interface Migration {
  version: number;
  name: string;
  sql: string;
}

function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((f) => ({ version: Number(f.slice(0, 3)), name: f, sql: readFileSync(join(dir, f), 'utf8') }));
}

/** The tables of schema version 1 (migration 001), by which kgen knows its databases from before it set an application id. */
function legacySchema(): Map<string, string> {
  return createTableStatements(loadMigrations().find((m) => m.version === 1)?.sql ?? '');
}

/**
 * The oldest schema version this kgen's reading queries work on unmigrated: a reading command
 * (which never changes the file) reads a database of this version or newer as it is. Schema 2
 * only widened trials.status's CHECK, which readers never see. Raise it with a migration that
 * changes what the reading queries select (a new column, a renamed table).
 */
const READABLE_SINCE = 1;

/** The schema version this kgen reads and writes (the newest migration). */
export function schemaVersion(): number {
  const all = loadMigrations();
  return all.length ? all[all.length - 1]!.version : 0;
}

/** The canonical key of a workload: every identifying field, hashed once, the same everywhere. */
export function workloadKey(w: Omit<WorkloadInfo, 'bytes' | 'flops' | 'rooflineMs'>): string {
  return canonicalHash({
    device: w.device,
    fingerprint: w.fingerprint,
    target: w.target,
    irHash: w.irHash,
    shape: w.shape,
    weightFormat: w.weightFormat ?? null,
    templateHash: w.templateHash,
    kgenVersion: w.kgenVersion,
  });
}

interface WorkloadRowDb {
  id: number;
  key: string;
  device: string;
  fingerprint: string;
  fingerprint_hash: string;
  target: string;
  op_name: string;
  ir_hash: string;
  op_json: string;
  shape_json: string;
  weight_format: string | null;
  template_hash: string;
  kgen_version: string;
  bytes: number;
  flops: number;
  roofline_ms: number;
  created_at: string;
}

interface TrialRowDb {
  id: number;
  uid: string;
  workload_id: number;
  config_hash: string;
  config_json: string;
  status: TrialStatus;
  median_ms: number | null;
  min_ms: number | null;
  max_ms: number | null;
  spread: number | null;
  runs: number | null;
  nmse: number | null;
  max_abs_error: number | null;
  error: string | null;
  compile_ms: number | null;
  strategy: string | null;
  runner: string | null;
  origin: string;
  created_at: string;
}

function toWorkload(r: WorkloadRowDb): Workload {
  return {
    id: r.id,
    key: r.key,
    device: r.device,
    fingerprint: JSON.parse(r.fingerprint) as Workload['fingerprint'],
    fingerprintHash: r.fingerprint_hash,
    target: r.target as Workload['target'],
    op: JSON.parse(r.op_json) as Workload['op'],
    irHash: r.ir_hash,
    shape: JSON.parse(r.shape_json) as Workload['shape'],
    weightFormat: r.weight_format ?? undefined,
    templateHash: r.template_hash,
    kgenVersion: r.kgen_version,
    bytes: r.bytes,
    flops: r.flops,
    rooflineMs: r.roofline_ms,
    createdAt: r.created_at,
  };
}

function toTrial(r: TrialRowDb): TrialRow {
  const t: TrialRow = {
    id: r.id,
    workloadId: r.workload_id,
    uid: r.uid,
    config: JSON.parse(r.config_json) as TrialRow['config'],
    configHash: r.config_hash,
    status: r.status,
    origin: r.origin,
    createdAt: r.created_at,
  };
  if (r.median_ms !== null) t.timing = { medianMs: r.median_ms, minMs: r.min_ms!, maxMs: r.max_ms!, spread: r.spread ?? 0, runs: r.runs! };
  if (r.nmse !== null) t.nmse = r.nmse;
  if (r.max_abs_error !== null) t.maxAbsError = r.max_abs_error;
  if (r.error !== null) t.error = r.error;
  if (r.compile_ms !== null) t.compileMs = r.compile_ms;
  if (r.strategy !== null) t.strategy = r.strategy;
  if (r.runner !== null) t.runner = r.runner;
  return t;
}

export interface OpenOptions {
  /**
   * `read` (emit, `db list/show/best/export`): the database must exist already; nothing is created
   * or initialised. `write` (default; tune, import): a new path or an empty file becomes a new
   * tuning database.
   */
  access?: 'read' | 'write';
  /** The flag or variable the path came from, named in every error (default `--db`). */
  field?: string;
}

/**
 * Opens the SQLite tuning database at `path`: WAL journal so readers never block the writer, a
 * busy timeout so concurrent tune processes wait for each other instead of failing, migrations
 * applied in one transaction, and the schema version checked: a database written by a newer kgen
 * is refused rather than misread.
 *
 * Only kgen's own databases, new paths and empty files are opened. Anything else (another
 * application's SQLite file, a file that is not a database, a directory or a device) is refused
 * with a KgenError before anything is written there: its bytes stay as they were and no `-wal` or
 * `-shm` file appears beside it (see `inspectDbFile`).
 */
export function openTuningDb(path: string, opts: OpenOptions = {}): TuningDb {
  const field = opts.field ?? '--db';
  checkSqliteLoads(field);
  if (path === ':memory:') return openChecked(path, path, field, false);
  const kind = preflightTuningDb(path, opts);
  if (kind === 'missing') ensureDirectory(dirname(path), field);
  return openChecked(path, path, field, (opts.access ?? 'write') === 'read');
}

/**
 * The checks `openTuningDb` makes before it opens anything, without creating or changing a file:
 * callers with other side effects (the tuner's build cache) run it first, so a refused database
 * leaves nothing behind. Returns what is there: a kgen database, an empty file or nothing.
 */
export function preflightTuningDb(path: string, opts: OpenOptions = {}): 'kgen' | 'empty' | 'missing' {
  const field = opts.field ?? '--db';
  checkSqliteLoads(field);
  checkPathText(path, field, 'a database file path');
  const kind = classify(path, field);
  const expected = 'a tuning database written by `kgen tune` or `kgen db import`';
  if (kind.kind === 'foreign' || kind.kind === 'not-database') {
    throw new KgenError({ field, problem: `${pathText(path)} is ${kind.kind === 'foreign' ? kind.why : `not a kgen tuning database: ${kind.why}`}`, expected, hint: 'kgen keeps its records in a file of its own: pass another --db (nothing was written)' });
  }
  // A newer kgen's database is refused before SQLite opens it, which would change its header.
  if (kind.kind === 'kgen' && kind.userVersion !== undefined && kind.userVersion > schemaVersion()) throw newerSchemaError(path, kind.userVersion);
  if ((opts.access ?? 'write') === 'read' && kind.kind !== 'kgen') {
    throw new KgenError({ field, problem: kind.kind === 'missing' ? `${pathText(path)} does not exist` : `${pathText(path)} is empty: no tuning records yet`, expected, hint: 'run `kgen tune` or `kgen db import` first, or check the path' });
  }
  return kind.kind;
}

let sqliteLoads = false;

/**
 * Refuses every database while better-sqlite3's native module does not load (installed with
 * --ignore-scripts and no prebuilt binary, or built for another Node): an in-memory database can
 * fail for no other reason, so its failure is told as what to rebuild, not as a fault of the path.
 */
function checkSqliteLoads(field: string): void {
  if (sqliteLoads) return;
  try {
    new Database(':memory:').close();
    sqliteLoads = true;
  } catch (e) {
    throw new KgenError({
      field,
      problem: `better-sqlite3 (the tuning database's SQLite) does not load in Node ${process.version}: ${oneLine((e as Error).message ?? String(e), 80)}`,
      expected: 'better-sqlite3 built for this Node',
      hint: 'run `npm rebuild better-sqlite3` where kgen is installed (nothing was written)',
    });
  }
}

/** A regular file (or a link to one), or nothing: what may be classified and opened. */
function classify(path: string, field: string): DbFileKind {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw fsError(field, 'open the database', path, e);
  }
  if (st.isDirectory()) throw new KgenError({ field, problem: `${pathText(path)} is a directory`, expected: 'a database file path', hint: `e.g. ${field} ${pathText(join(path, 'tuning.db'))}` });
  if (!st.isFile()) throw new KgenError({ field, problem: `${pathText(path)} is not a regular file`, expected: 'a database file path', hint: 'choose another path' });
  try {
    return inspectDbFile(path, legacySchema());
  } catch (e) {
    throw fsError(field, 'read', path, e);
  }
}

/**
 * `reading`: the file is only read and never changed (its journal mode and application id stay as
 * they are: a writing command sets them); else it becomes WAL and is migrated.
 */
function openChecked(path: string, shown: string, field: string, reading: boolean): TuningDb {
  let db: Database.Database;
  try {
    db = new Database(path, { fileMustExist: reading });
    configure(db, { wal: !reading });
  } catch (e) {
    // A database kgen may read but not write (a shared, read-only file): read it as it is.
    if (!reading) throw sqliteError(field, shown, e);
    try {
      return migrated(new Database(path, { readonly: true, fileMustExist: true }), path, shown);
    } catch (e2) {
      // SQLite reads a WAL database only with its -shm file beside it, which it cannot create in a
      // directory the user may not write: read a private copy instead.
      if (!isReadonlyDirectory(e2)) throw e2 instanceof KgenError ? e2 : sqliteError(field, shown, e2);
      return openReadonlyCopy(path, shown, field);
    }
  }
  try {
    return migrated(db, path, shown, undefined, reading);
  } catch (e) {
    throw e instanceof KgenError ? e : sqliteError(field, shown, e);
  }
}

/**
 * The database opened as `db`, its schema checked (and migrated unless `db` is read-only or only
 * `reading`); on any failure `db` is closed, `onClose` run, and the error passed on as it is.
 */
function migrated(db: Database.Database, path: string, shown: string, onClose?: () => void, reading = db.readonly): TuningDb {
  try {
    migrate(db, shown, reading || db.readonly);
  } catch (e) {
    db.close();
    onClose?.();
    throw e;
  }
  return new SqliteTuningDb(db, path, onClose);
}

/** SQLite's codes for a read-only open that needs to create a file (the -shm) beside the database. */
function isReadonlyDirectory(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === 'SQLITE_READONLY_DIRECTORY' || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_READONLY';
}

/**
 * Reads a copy of the database (and its -wal file, where one is left) made in a private temporary
 * directory, removed again on close. Only for reading: nothing is ever written back.
 */
function openReadonlyCopy(path: string, shown: string, field: string): TuningDb {
  const dir = makeTempDir('kgen-db-read-');
  const remove = () => rmSync(dir, { recursive: true, force: true });
  const copy = join(dir, 'tuning.db');
  try {
    copyFileSync(path, copy);
    if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${copy}-wal`);
    return migrated(new Database(copy, { readonly: true, fileMustExist: true }), path, shown, remove);
  } catch (e) {
    remove();
    throw e instanceof KgenError ? e : sqliteError(field, shown, e);
  }
}

function configure(db: Database.Database, opts: { wal: boolean }): void {
  try {
    db.pragma('busy_timeout = 30000');
    if (opts.wal) db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
  } catch (e) {
    db.close();
    throw e;
  }
}

function sqliteError(field: string, path: string, e: unknown): KgenError {
  const code = (e as { code?: string }).code;
  const reason = code === 'SQLITE_CANTOPEN' ? 'cannot open or create the file there'
    : code === 'SQLITE_READONLY' ? 'it is read-only'
    : code === 'SQLITE_READONLY_DIRECTORY' ? 'its directory is read-only (SQLite creates its -wal and -shm files there)'
    : code === 'SQLITE_FULL' ? 'the disk is full'
    : code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' ? 'the file is damaged (restore it from a copy, or move it aside and let kgen start a new one)'
    : oneLine((e as Error).message ?? String(e), 80);
  return new KgenError({ field, problem: `cannot use ${pathText(path)} as the tuning database: ${reason}`, expected: 'a writable file path', hint: 'pass --db PATH or set KGEN_DB' });
}

function newerSchemaError(path: string, version: number): KgenError {
  const newest = schemaVersion();
  return new KgenError({
    field: '--db',
    problem: `${pathText(path)} has schema version ${version}, newer than this kgen's ${newest}`,
    expected: `a database of schema version <= ${newest}`,
    hint: 'upgrade kgen, or use another database with --db (nothing was written)',
  });
}

function migrate(db: Database.Database, path: string, readonly: boolean): void {
  const migrations = loadMigrations();
  const newest = migrations.length ? migrations[migrations.length - 1]!.version : 0;
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > newest) throw newerSchemaError(path, current);
  const marked = (db.pragma('application_id', { simple: true }) as number) >>> 0 === KGEN_APPLICATION_ID;
  if (current === newest && (marked || readonly)) return;
  if (readonly && current >= READABLE_SINCE) return;
  if (readonly) {
    throw new KgenError({ field: '--db', problem: `${pathText(path)} has schema version ${current}; this kgen needs ${newest}`, hint: 'run a writing command (`kgen db import`, `kgen tune`) on it once to migrate it' });
  }
  // One writer migrates; another process opening at the same time waits on the lock, then sees
  // the new version and applies nothing. The application id marks the file as kgen's.
  db.transaction(() => {
    const now = db.pragma('user_version', { simple: true }) as number;
    for (const m of migrations.filter((x) => x.version > now)) db.exec(m.sql);
    db.pragma(`user_version = ${newest}`);
    db.pragma(`application_id = ${KGEN_APPLICATION_ID}`);
  }).immediate();
}

class SqliteTuningDb implements TuningDb {
  private readonly stmts;

  constructor(
    private readonly db: Database.Database,
    readonly location: string,
    /** Runs after the connection closes (removes a private read-only copy). */
    private readonly onClose?: () => void,
  ) {
    this.stmts = {
      workloadByKey: db.prepare<[string], WorkloadRowDb>('SELECT * FROM workloads WHERE key = ?'),
      workloadById: db.prepare<[number], WorkloadRowDb>('SELECT * FROM workloads WHERE id = ?'),
      lowerRoofline: db.prepare<[number, number]>('UPDATE workloads SET roofline_ms = MIN(roofline_ms, ?) WHERE id = ?'),
      insertWorkload: db.prepare(
        `INSERT INTO workloads (key, device, fingerprint, fingerprint_hash, target, op_name, ir_hash, op_json, shape_json,
           weight_format, template_hash, kgen_version, bytes, flops, roofline_ms, created_at)
         VALUES (@key, @device, @fingerprint, @fingerprint_hash, @target, @op_name, @ir_hash, @op_json, @shape_json,
           @weight_format, @template_hash, @kgen_version, @bytes, @flops, @roofline_ms, @created_at)
         ON CONFLICT (key) DO NOTHING`,
      ),
      insertTrial: db.prepare(
        `INSERT INTO trials (uid, workload_id, config_hash, config_json, status, median_ms, min_ms, max_ms, spread, runs,
           nmse, max_abs_error, error, compile_ms, strategy, runner, origin, created_at)
         VALUES (@uid, @workload_id, @config_hash, @config_json, @status, @median_ms, @min_ms, @max_ms, @spread, @runs,
           @nmse, @max_abs_error, @error, @compile_ms, @strategy, @runner, @origin, @created_at)
         ON CONFLICT (uid) DO NOTHING`,
      ),
      trialByUid: db.prepare<[string], TrialRowDb>('SELECT * FROM trials WHERE uid = ?'),
      measured: db.prepare<[number], { config_hash: string }>('SELECT DISTINCT config_hash FROM trials WHERE workload_id = ?'),
      trials: db.prepare<[number], TrialRowDb>('SELECT * FROM trials WHERE workload_id = ? ORDER BY (status = \'ok\') DESC, median_ms, id'),
      devices: db.prepare<[], { device: string }>('SELECT device FROM workloads GROUP BY device ORDER BY MIN(id)'),
      counts: db.prepare<[number], { status: TrialStatus; n: number }>('SELECT status, count(*) AS n FROM trials WHERE workload_id = ? GROUP BY status'),
    };
  }

  ensureWorkload(info: WorkloadInfo & { createdAt?: string }): Workload {
    const key = workloadKey(info);
    const existing = this.stmts.workloadByKey.get(key);
    if (existing) {
      if (!(info.rooflineMs < existing.roofline_ms)) return toWorkload(existing);
      this.stmts.lowerRoofline.run(info.rooflineMs, existing.id);
      return toWorkload(this.stmts.workloadById.get(existing.id)!);
    }
    this.stmts.insertWorkload.run({
      key,
      device: info.device,
      fingerprint: canonicalJson(info.fingerprint),
      fingerprint_hash: canonicalHash(info.fingerprint),
      target: info.target,
      op_name: info.op.name,
      ir_hash: info.irHash,
      op_json: canonicalJson(info.op),
      shape_json: canonicalJson(info.shape),
      weight_format: info.weightFormat ?? null,
      template_hash: info.templateHash,
      kgen_version: info.kgenVersion,
      bytes: info.bytes,
      flops: info.flops,
      roofline_ms: info.rooflineMs,
      created_at: info.createdAt ?? new Date().toISOString(),
    });
    // Another process may have inserted the same key first: read back whichever row won.
    return toWorkload(this.stmts.workloadByKey.get(key)!);
  }

  measuredConfigs(workloadId: number): Set<string> {
    return new Set(this.stmts.measured.all(workloadId).map((r) => r.config_hash));
  }

  addTrial(workloadId: number, t: Trial): TrialRow {
    if ((t.status === 'ok') !== (t.timing !== undefined)) {
      throw new InternalError(`trial ${t.uid}: a timing is recorded exactly for ok trials (status ${t.status})`);
    }
    this.stmts.insertTrial.run({
      uid: t.uid,
      workload_id: workloadId,
      config_hash: t.configHash,
      config_json: canonicalJson(t.config),
      status: t.status,
      median_ms: t.timing?.medianMs ?? null,
      min_ms: t.timing?.minMs ?? null,
      max_ms: t.timing?.maxMs ?? null,
      spread: t.timing?.spread ?? null,
      runs: t.timing?.runs ?? null,
      nmse: t.nmse ?? null,
      max_abs_error: t.maxAbsError ?? null,
      error: t.error ?? null,
      compile_ms: t.compileMs ?? null,
      strategy: t.strategy ?? null,
      runner: t.runner ?? null,
      origin: t.origin,
      created_at: t.createdAt,
    });
    return toTrial(this.stmts.trialByUid.get(t.uid)!);
  }

  trials(workloadId: number): TrialRow[] {
    return this.stmts.trials.all(workloadId).map(toTrial);
  }

  best(workloadId: number): TrialRow | undefined {
    return contendingTrials(this.trials(workloadId))[0];
  }

  devices(): string[] {
    return this.stmts.devices.all().map((r) => r.device);
  }

  workload(id: number): Workload | undefined {
    const r = this.stmts.workloadById.get(id);
    return r ? toWorkload(r) : undefined;
  }

  workloads(filter: WorkloadFilter = {}): WorkloadSummary[] {
    const where: string[] = [];
    const args: Record<string, string> = {};
    if (filter.device) (where.push('device = @device'), (args.device = filter.device));
    if (filter.target) (where.push('target = @target'), (args.target = filter.target));
    if (filter.opName) (where.push('op_name = @opName'), (args.opName = filter.opName));
    if (filter.irHash) (where.push('ir_hash = @irHash'), (args.irHash = filter.irHash));
    const rows = this.db.prepare<Record<string, string>, WorkloadRowDb>(`SELECT * FROM workloads ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id`).all(args);
    return rows.map((r) => {
      const byStatus: WorkloadSummary['byStatus'] = {};
      let trials = 0;
      for (const c of this.stmts.counts.all(r.id)) {
        byStatus[c.status] = c.n;
        trials += c.n;
      }
      return { ...toWorkload(r), trials, byStatus, best: this.best(r.id) };
    });
  }

  exportAll(filter: WorkloadFilter = {}): Exchange {
    return {
      format: 'kgen-tuning',
      version: 1,
      exportedAt: new Date().toISOString(),
      workloads: this.workloads(filter).map((w) => {
        const { id: _id, trials: _n, byStatus: _s, best: _b, ...rest } = w;
        return { ...rest, trials: this.trials(w.id).map(({ id: _tid, workloadId: _wid, ...t }) => t) };
      }),
    };
  }

  importExchange(data: Exchange, origin: string): ImportSummary {
    const summary: ImportSummary = { workloadsAdded: 0, trialsAdded: 0, trialsPresent: 0 };
    // All or nothing: a file that fails half-way leaves the database as it was.
    this.db.transaction(() => {
      for (const w of data.workloads) {
        const existed = this.stmts.workloadByKey.get(w.key) !== undefined;
        const row = this.ensureWorkload(w);
        if (row.key !== w.key) {
          throw new KgenError({ field: 'import', problem: `workload ${w.key} hashes to ${row.key} here (edited by hand, or exported by an incompatible kgen)`, hint: 're-export it with `kgen db export`' });
        }
        if (!existed) summary.workloadsAdded++;
        for (const t of w.trials) {
          if (this.stmts.trialByUid.get(t.uid)) {
            summary.trialsPresent++;
            continue;
          }
          this.addTrial(row.id, { ...t, origin: t.origin || origin });
          summary.trialsAdded++;
        }
      }
    }).immediate();
    return summary;
  }

  close(): void {
    if (!this.db.open) return;
    this.db.close();
    this.onClose?.();
  }
}
