import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { TRIAL_STATUSES } from '../src/backends/types.js';
import { emit } from '../src/api/emit.js';
import { validateExchange } from '../src/db/exchange.js';
import { openTuningDb, schemaVersion } from '../src/db/sqlite.js';
import { forcedHost } from '../src/device/host.js';
import { KgenError } from '../src/errors.js';
import { canonicalHash, canonicalJson } from '../src/hash.js';
import { CATALOG } from '../src/ir/catalog.js';
import { opHash } from '../src/ir/validate.js';
import { KGEN_VERSION } from '../src/version.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'kgen-db-migration-'));
const migration = (name: string) => readFileSync(join(import.meta.dirname, '..', 'tuning-db', name), 'utf8');

/** Every column of every trial, by id, as SQLite holds it (typed values, nulls included). */
function trialRows(db: Database.Database): unknown[] {
  return db.prepare('SELECT * FROM trials ORDER BY id').all();
}

/** The indexes and foreign keys of `trials`, as SQLite reports them. */
function trialsShape(db: Database.Database): { indexes: unknown[]; foreignKeys: unknown[] } {
  return {
    indexes: db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'trials' AND sql IS NOT NULL ORDER BY name").all(),
    foreignKeys: db.prepare('PRAGMA foreign_key_list(trials)').all(),
  };
}

/**
 * A database as a schema-1 kgen left it (001_initial.sql alone, user_version 1, no application
 * id): one workload, and trials of every status schema 1 admits, ids not contiguous, odd values
 * in the nullable columns.
 */
function schema1Db(path: string): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec(migration('001_initial.sql'));
  db.pragma('user_version = 1');
  const op = CATALOG.matmul_q4!;
  db.prepare(
    `INSERT INTO workloads (id, key, device, fingerprint, fingerprint_hash, target, op_name, ir_hash, op_json, shape_json, weight_format, template_hash, kgen_version, bytes, flops, roofline_ms, created_at)
     VALUES (7, 'k', 'host', '{"profile":"host"}', 'fh', 'c', ?, ?, ?, '{"K":256,"M":1,"N":64}', 'q4', '0123456789abcdef', ?, 1e6, 2e6, 0.01, '2026-01-01T00:00:00.000Z')`,
  ).run(op.name, opHash(op), canonicalJson(op), KGEN_VERSION);
  const insert = db.prepare(
    `INSERT INTO trials (id, uid, workload_id, config_hash, config_json, status, median_ms, min_ms, max_ms, spread, runs, nmse, max_abs_error, error, compile_ms, strategy, runner, origin, created_at)
     VALUES (@id, @uid, 7, @hash, @config, @status, @median, @min, @max, @spread, @runs, @nmse, @mae, @error, @compileMs, @strategy, @runner, 'old-host', @createdAt)`,
  );
  const statuses = ['ok', 'over_budget', 'compile_error', 'crash', 'timeout', 'wrong_result'];
  statuses.forEach((status, i) => {
    for (const k of [0, 1]) {
      const config = { nTile: 8 * (i + 1), unroll: k + 1 };
      const ok = status === 'ok';
      insert.run({
        id: 3 + 10 * i + k,
        uid: `00000000-0000-4000-8000-${String(100 + 2 * i + k).padStart(12, '0')}`,
        hash: canonicalHash(config),
        config: canonicalJson(config),
        status,
        median: ok ? 0.125 + k : null,
        min: ok ? 0.1 : null,
        max: ok ? 0.3 : null,
        spread: ok ? 0.0625 : null,
        runs: ok ? 21 : null,
        nmse: status === 'wrong_result' ? 3.5e-2 : ok ? 1e-9 : null,
        mae: status === 'wrong_result' ? 0.75 : null,
        error: ok ? null : `${status} text\nsecond line`,
        compileMs: k ? 12.5 : null,
        strategy: k ? 'random' : null,
        runner: k ? 'native' : null,
        createdAt: `2026-01-0${1 + k}T00:00:0${i}.000Z`,
      });
    }
  });
  db.close();
}

describe('tuning database schema 2 (trials.status admits unsupported)', () => {
  it('is the newest schema, and TRIAL_STATUSES names the new status', () => {
    expect(schemaVersion()).toBe(2);
    expect(TRIAL_STATUSES).toContain('unsupported');
  });

  it('a schema-1 database migrates keeping every row, id, column value, index and foreign key, then takes an unsupported trial', () => {
    const path = join(tmp(), 'old.db');
    schema1Db(path);
    const raw1 = new Database(path, { readonly: true });
    const before = trialRows(raw1);
    const shapeBefore = trialsShape(raw1);
    const workloadsBefore = raw1.prepare('SELECT * FROM workloads').all();
    raw1.close();
    expect(before).toHaveLength(12);
    // Schema 1 refuses the new status: the migration is what admits it.
    const old = new Database(path);
    expect(() => old.prepare("UPDATE trials SET status = 'unsupported' WHERE id = 13").run()).toThrow(/CHECK constraint failed/);
    old.close();

    const db = openTuningDb(path);
    const w = db.workloads()[0]!;
    db.addTrial(w.id, { uid: '00000000-0000-4000-8000-000000000999', config: { nTile: 99 }, configHash: canonicalHash({ nTile: 99 }), status: 'unsupported', error: 'the adapter lacks shader-f16 (SwiftShader)', origin: 'new-host', createdAt: '2026-02-01T00:00:00.000Z' });
    db.close();

    const raw2 = new Database(path, { readonly: true });
    expect(raw2.pragma('user_version', { simple: true })).toBe(2);
    const after = trialRows(raw2) as Array<{ id: number; status: string }>;
    expect(after.slice(0, before.length)).toEqual(before);
    expect(after.slice(before.length)).toMatchObject([{ status: 'unsupported', error: 'the adapter lacks shader-f16 (SwiftShader)', median_ms: null }]);
    expect(raw2.prepare('SELECT * FROM workloads').all()).toEqual(workloadsBefore);
    expect(trialsShape(raw2)).toEqual(shapeBefore);
    expect(raw2.prepare('PRAGMA foreign_key_check').all()).toEqual([]);
    expect(raw2.pragma('integrity_check', { simple: true })).toBe('ok');
    // No table of the rebuild is left behind, and the foreign key still holds.
    expect(raw2.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all()).toEqual([{ name: 'trials' }, { name: 'workloads' }]);
    raw2.close();
    const fk = new Database(path);
    fk.pragma('foreign_keys = ON');
    expect(() => fk.prepare("INSERT INTO trials (uid, workload_id, config_hash, config_json, status, origin, created_at) VALUES ('x', 999, 'h', '{}', 'crash', 'o', 't')").run()).toThrow(/FOREIGN KEY constraint failed/);
    // The CHECKs of schema 1 stand: times only on ok trials, unknown statuses refused.
    expect(() => fk.prepare("INSERT INTO trials (uid, workload_id, config_hash, config_json, status, median_ms, origin, created_at) VALUES ('y', 7, 'h', '{}', 'unsupported', 1.0, 'o', 't')").run()).toThrow(/CHECK constraint failed/);
    expect(() => fk.prepare("INSERT INTO trials (uid, workload_id, config_hash, config_json, status, origin, created_at) VALUES ('z', 7, 'h', '{}', 'fast', 'o', 't')").run()).toThrow(/CHECK constraint failed/);
    fk.close();
  });

  it('a reading command reads a schema-1 database as it is, byte for byte unchanged', () => {
    const path = join(tmp(), 'old.db');
    schema1Db(path);
    const bytes = readFileSync(path);
    const wal = readFileSync(`${path}-wal`, { flag: 'a+' });
    const db = openTuningDb(path, { access: 'read' });
    expect(db.trials(db.workloads()[0]!.id)).toHaveLength(12);
    db.close();
    expect(readFileSync(path).equals(bytes)).toBe(true);
    expect(readFileSync(`${path}-wal`, { flag: 'a+' }).equals(wal)).toBe(true);
  });

  it('records from before profile hashes (no profileHash in their fingerprint) still give emit its config', () => {
    const path = join(tmp(), 'old.db');
    schema1Db(path);
    const db = openTuningDb(path, { access: 'read' });
    // A fixed CPU stands for host, so the config is legal on any machine (records of host go by its name and fingerprint).
    const e = emit({ target: 'c', op: 'matmul_q4', shape: 'M=1,N=64,K=256', host: forcedHost('epyc-7763'), records: db });
    expect(e.manifest.configSource).toBe('record');
    expect(e.manifest.record).toMatchObject({ workloadId: 7, medianMs: 0.125 });
    db.close();
  });

  it('a database of a newer schema is refused (what protects a schema-1 kgen from a schema-2 database)', () => {
    const path = join(tmp(), 'new.db');
    openTuningDb(path).close();
    const raw = new Database(path);
    raw.pragma(`user_version = ${schemaVersion() + 1}`);
    raw.close();
    expect(() => openTuningDb(path)).toThrow(/schema version 3, newer than this kgen's 2/);
    expect(() => openTuningDb(path, { access: 'read' })).toThrow(/schema version 3, newer than this kgen's 2/);
  });

  it('export and import round-trip an unsupported trial; an unknown status is refused naming the field and the statuses', () => {
    const db = openTuningDb(':memory:');
    const op = CATALOG.matmul_q4!;
    const w = db.ensureWorkload({ device: 'host', fingerprint: { profile: 'host' }, target: 'c', op, irHash: opHash(op), shape: { M: 1, N: 64, K: 256 }, weightFormat: 'q4', templateHash: '0123456789abcdef', kgenVersion: KGEN_VERSION, bytes: 1e6, flops: 2e6, rooflineMs: 0.01 });
    const t = { uid: '00000000-0000-4000-8000-000000000001', config: { nTile: 8 }, configHash: canonicalHash({ nTile: 8 }), status: 'unsupported' as const, error: 'nvcc 12.4.131 builds for sm_75, sm_80; not sm_89', runner: 'gpu', origin: 'box', createdAt: '2026-02-01T00:00:00.000Z' };
    db.addTrial(w.id, t);
    const exported = JSON.parse(JSON.stringify(db.exportAll()));
    db.close();
    const into = openTuningDb(':memory:');
    into.importExchange(validateExchange(exported), 'test');
    const [back] = into.trials(into.workloads()[0]!.id);
    expect(back).toMatchObject(t);
    expect(back!.timing).toBeUndefined();
    into.close();

    exported.workloads[0].trials[0].status = 'not_here';
    let err: unknown;
    try {
      validateExchange(exported);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KgenError);
    expect((err as KgenError).message).toMatch(/^import\.workloads\[0\]\.trials\[0\]\.status: got "not_here"; expected ok \| compile_error \| crash \| timeout \| wrong_result \| unsupported/);
  });
});
