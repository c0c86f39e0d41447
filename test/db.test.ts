import { chmodSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import type { PlanOf } from '../src/plan/types.js';
import { emit } from '../src/api/emit.js';
import { resolveRequest } from '../src/api/request.js';
import { recordDevice } from '../src/cli/common.js';
import { validateExchange } from '../src/db/exchange.js';
import { recordedConfig } from '../src/db/lookup.js';
import { openTuningDb, schemaVersion, workloadKey } from '../src/db/sqlite.js';
import type { Fingerprint, Trial, TuningDb, WorkloadInfo } from '../src/db/types.js';
import { getDevice } from '../src/device/index.js';
import type { GpuDetection } from '../src/device/gpu.js';
import { hostIsa } from '../src/device/host.js';
import { profileHash, type DeviceProfile } from '../src/device/profile.js';
import { fingerprintFor } from '../src/tune/fingerprint.js';
import { InternalError, KgenError } from '../src/errors.js';
import { canonicalHash } from '../src/hash.js';
import { CATALOG } from '../src/ir/catalog.js';
import type { Shape } from '../src/ir/types.js';
import { opHash } from '../src/ir/validate.js';
import { configInUse, spaceFor } from '../src/plan/index.js';
import { KGEN_VERSION } from '../src/version.js';
import { hasTool } from './helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'kgen-db-'));
/** No GPU here: fingerprints of CPU records read none. */
const NO_GPUS: GpuDetection = { status: 'none', gpus: [], how: 'no NVIDIA GPU (a test)' };

function info(shape: Shape, over: Partial<WorkloadInfo> = {}): WorkloadInfo {
  const op = CATALOG.matmul_q4!;
  return {
    device: 'host',
    fingerprint: { profile: 'host', cpu: 'test CPU', 'compiler:gcc': '12.2.0' },
    target: 'c',
    op,
    irHash: opHash(op),
    shape,
    weightFormat: 'q4',
    templateHash: '0123456789abcdef',
    kgenVersion: KGEN_VERSION,
    bytes: 1e6,
    flops: 2e6,
    rooflineMs: 0.01,
    ...over,
  };
}

let uidCounter = 0;
function trial(config: Record<string, number | string>, ms?: number, status: Trial['status'] = ms === undefined ? 'crash' : 'ok'): Trial {
  const uid = `00000000-0000-4000-8000-${String(++uidCounter).padStart(12, '0')}`;
  return {
    uid,
    config,
    configHash: canonicalHash(config),
    status,
    timing: status === 'ok' ? { medianMs: ms!, minMs: ms! * 0.9, maxMs: ms! * 1.2, spread: 0.05, runs: 21 } : undefined,
    error: status === 'ok' ? undefined : 'exit 139: segmentation fault',
    origin: 'test',
    createdAt: new Date().toISOString(),
  };
}

const GEMV = { isa: 'avx2', actQuant: 'q8', rowsPerIter: 4, mTile: 1, nTile: 16, unroll: 1, prefetch: 2 };
const FAST = { isa: 'avx2', actQuant: 'q8', rowsPerIter: 2, mTile: 1, nTile: 8, unroll: 4, prefetch: 0 };

describe('tuning database', () => {
  it('creates its schema, checks the version, and refuses a newer one', () => {
    const path = join(tmp(), 'a.db');
    openTuningDb(path).close();
    const raw = new Database(path);
    expect(raw.pragma('user_version', { simple: true })).toBe(schemaVersion());
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.pragma(`user_version = ${schemaVersion() + 1}`);
    raw.close();
    expect(() => openTuningDb(path)).toThrow(/schema version 3, newer than this kgen's 2/);
  });

  it('keeps the lowest roofline a session measured for a workload (a probe is only ever slowed down)', () => {
    const db = openTuningDb(':memory:');
    const first = db.ensureWorkload({ ...info({ M: 1, N: 64, K: 256 }), rooflineMs: 0.2 });
    expect(db.ensureWorkload({ ...info({ M: 1, N: 64, K: 256 }), rooflineMs: 0.3 }).rooflineMs).toBe(0.2);
    const lowered = db.ensureWorkload({ ...info({ M: 1, N: 64, K: 256 }), rooflineMs: 0.1 });
    expect(lowered).toMatchObject({ id: first.id, rooflineMs: 0.1 });
    expect(db.workload(first.id)!.rooflineMs).toBe(0.1);
    db.close();
  });

  it('keys workloads canonically and keeps timings only on ok trials', () => {
    const db = openTuningDb(':memory:');
    const a = db.ensureWorkload(info({ M: 1, N: 4096, K: 4096 }));
    // The same workload with its keys in another order is the same row.
    const b = db.ensureWorkload(info({ K: 4096, N: 4096, M: 1 } as Shape));
    expect(b.id).toBe(a.id);
    expect(a.key).toBe(workloadKey(info({ M: 1, N: 4096, K: 4096 })));
    expect(db.ensureWorkload(info({ M: 1, N: 4096, K: 4096 }, { templateHash: 'fedcba9876543210' })).id).not.toBe(a.id);
    db.addTrial(a.id, trial(GEMV, 0.5));
    db.addTrial(a.id, trial(FAST, 0.3));
    db.addTrial(a.id, trial({ ...GEMV, nTile: 4 }));
    expect(db.best(a.id)!.config).toEqual(FAST);
    expect(db.measuredConfigs(a.id).size).toBe(3);
    // A kgen bug if reached (the tuner records a timing exactly for ok trials), not a user's mistake.
    expect(() => db.addTrial(a.id, { ...trial(GEMV, 0.2), timing: undefined })).toThrow(InternalError);
    expect(() => db.addTrial(a.id, { ...trial(GEMV, 0.2), timing: undefined })).toThrow(/timing is recorded exactly for ok trials/);
    const summary = db.workloads({ device: 'host' })[0]!;
    expect(summary.byStatus).toEqual({ ok: 2, crash: 1 });
    db.close();
  });

  it("names its recorded devices once each, first recorded first, without reading the workloads (recordDevice's --device check)", () => {
    const db = openTuningDb(':memory:');
    expect(db.devices!()).toEqual([]);
    for (const [device, N] of [['lab-box', 64], ['epyc-9654', 64], ['lab-box', 128]] as const) db.ensureWorkload(info({ M: 1, N, K: 256 }, { device }));
    expect(db.devices!()).toEqual(['lab-box', 'epyc-9654']);
    // `db list --device` resolves the name, then reads the workloads once, filtered.
    const named = new Proxy(db, { get: (t, k) => (k === 'workloads' ? () => expect.fail('workloads() read to learn the device names') : Reflect.get(t, k) as unknown) });
    expect(recordDevice('lab-box', named)?.name).toBe('lab-box');
    expect(() => recordDevice('lab-bx', named)).toThrow(/unknown device "lab-bx".*expected one of host, .*epyc-9654.*, lab-box, or a profile file/);
    db.close();
  });

  it('exports and imports without losing or duplicating trials', () => {
    const src = openTuningDb(join(tmp(), 'src.db'));
    const w = src.ensureWorkload(info({ M: 1, N: 4096, K: 4096 }));
    for (const t of [trial(GEMV, 0.5), trial(FAST, 0.3), trial({ ...GEMV, nTile: 4 })]) src.addTrial(w.id, t);
    const exported = JSON.parse(JSON.stringify(src.exportAll()));
    src.close();

    const dst = openTuningDb(join(tmp(), 'dst.db'));
    // The destination has its own trial on the same workload: merging keeps it.
    const own = dst.ensureWorkload(info({ M: 1, N: 4096, K: 4096 }));
    dst.addTrial(own.id, trial({ ...GEMV, unroll: 2 }, 0.45));
    expect(dst.importExchange(validateExchange(exported), 'test')).toEqual({ workloadsAdded: 0, trialsAdded: 3, trialsPresent: 0 });
    expect(dst.trials(own.id)).toHaveLength(4);
    expect(dst.importExchange(validateExchange(exported), 'test')).toEqual({ workloadsAdded: 0, trialsAdded: 0, trialsPresent: 3 });
    expect(dst.best(own.id)!.config).toEqual(FAST);
    dst.close();
    // Into a fresh database the workload arrives with its own date, not the import's.
    const fresh = openTuningDb(join(tmp(), 'fresh.db'));
    fresh.importExchange(validateExchange({ ...exported, workloads: exported.workloads.map((w: { createdAt: string }) => ({ ...w, createdAt: '2026-01-02T03:04:05.000Z' })) }), 'test');
    expect(fresh.workloads().map((w) => w.createdAt)).toEqual(['2026-01-02T03:04:05.000Z']);
    fresh.close();
  });

  it.skipIf(process.getuid?.() !== 0 || !hasTool('setpriv'))('a reader who may not write the database\'s directory reads it from a private copy (root only: runs kgen as nobody)', async () => {
    const dir = tmp();
    chmodSync(dir, 0o755);
    const path = join(dir, 'shared.db');
    const db = openTuningDb(path);
    db.addTrial(db.ensureWorkload(info({ M: 1, N: 64, K: 256 })).id, trial(GEMV, 0.5));
    const records = join(tmp(), 'records.json');
    writeFileSync(records, JSON.stringify(db.exportAll()));
    chmodSync(dirname(records), 0o755);
    db.close();
    const asNobody = (args: string[]) => execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, join(import.meta.dirname, '..', 'bin', 'kgen'), ...args], { reject: false, env: { HOME: dir } });
    const list = await asNobody(['db', 'list', '--db', path]);
    expect(list.exitCode, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/host( \(other figures\))? +c +matmul_q4 +M=1,N=64,K=256 +1 +1/);
    // Nothing appears beside it, and writing says why it cannot.
    expect(readdirSync(dir)).toEqual(['shared.db']);
    const importing = await asNobody(['db', 'import', '--db', path, records]);
    expect(importing.exitCode).toBe(2);
    expect(importing.stderr).toMatch(/--db: cannot use .*shared\.db as the tuning database: (its directory is read-only|it is read-only)/);
  });

  it('validates an import file like user input, naming the field', () => {
    const db = openTuningDb(':memory:');
    const w = db.ensureWorkload(info({ M: 1, N: 64, K: 256 }));
    db.addTrial(w.id, trial(GEMV, 0.5));
    const good = JSON.parse(JSON.stringify(db.exportAll()));
    const cases: Array<[(x: any) => void, RegExp]> = [
      [(x) => (x.format = 'csv'), /^import\.format: got "csv"/],
      [(x) => (x.workloads[0].trials[0].status = 'fast'), /^import\.workloads\[0\]\.trials\[0\]\.status: got "fast"; expected ok \| compile_error/],
      [(x) => delete x.workloads[0].trials[0].timing, /trials\[0\]\.timing: missing on an ok trial/],
      [(x) => (x.workloads[0].trials[0].config.nTile = 99), /trials\[0\]\.configHash: .* is not the hash of the config given/],
      [(x) => (x.workloads[0].op.name = 'x; DROP TABLE trials'), /^import\.workloads\[0\]\.op: /],
      [(x) => (x.workloads[0].shape.K = 100), /^import\.workloads\[0\]\.shape: /],
      [(x) => (x.workloads[0].trials[0].timing.medianMs = -1), /timing\.medianMs: got -1/],
      [(x) => (x.workloads[0].key = '0123456789abcdef'), /^import\.workloads\[0\]\.key: 0123456789abcdef is not the key of the workload given/],
      [(x) => (x.workloads[0].fingerprint.cores = 64), /^import\.workloads\[0\]\.key: .* is not the key of the workload given/],
      // Two trials under one uid: the second would be counted "already present" and dropped.
      [(x) => x.workloads[0].trials.push({ ...x.workloads[0].trials[0], createdAt: '2026-01-01T00:00:00.000Z' }), /^import\.workloads\[0\]\.trials\[1\]\.uid: \S+ is also import\.workloads\[0\]\.trials\[0\]'s/],
    ];
    for (const [mutate, message] of cases) {
      const bad = JSON.parse(JSON.stringify(good));
      mutate(bad);
      let err: unknown;
      try {
        validateExchange(bad);
      } catch (e) {
        err = e;
      }
      expect(err, String(message)).toBeInstanceOf(KgenError);
      expect((err as Error).message).toMatch(message);
    }
    db.close();
  });
});

describe('emit takes its config from the records', () => {
  // Records of a fixed AVX2 CPU: whether a recorded config is legal follows the device's figures, and `host`'s follow the machine.
  const DEVICE = 'epyc-7763';
  function dbWith(entries: Array<[Shape, Record<string, number | string>, number]>, over: Partial<WorkloadInfo> = {}): TuningDb {
    const db = openTuningDb(':memory:');
    for (const [shape, config, ms] of entries) db.addTrial(db.ensureWorkload(info(shape, { device: DEVICE, fingerprint: { profile: DEVICE }, ...over })).id, trial(config, ms));
    return db;
  }

  it('uses the best record for the shape, the nearest shape otherwise, and --config over both', () => {
    const db = dbWith([
      [{ M: 1, N: 4096, K: 4096 }, GEMV, 0.5],
      // 0.1 + 0.2 is 0.30000000000000004: the manifest says 0.3 (six significant digits).
      [{ M: 1, N: 4096, K: 4096 }, FAST, 0.1 + 0.2],
      [{ M: 1, N: 1024, K: 4096 }, { ...GEMV, nTile: 64 }, 0.1],
      [{ M: 256, N: 4096, K: 4096 }, { ...GEMV, mTile: 4, rowsPerIter: 2, nTile: 32 }, 9],
    ]);
    const base = { target: 'c', op: 'matmul_q4', device: DEVICE, records: db } as const;
    const exact = emit({ ...base, shape: 'M=1,N=4096,K=4096' });
    expect(exact.manifest.configSource).toBe('record');
    // The record predates the `panel` knob, which does not matter at M=1 (the plan holds its first
    // value); its nTile stays in the plan but is not shown (one activation tile reads each row once).
    const { nTile, ...fastInUse } = FAST;
    expect(configInUse(exact.plan)).toEqual(fastInUse);
    expect(exact.plan.config.nTile).toBe(nTile);
    expect(exact.manifest.record!.medianMs).toBe(0.3);
    expect(exact.manifest.record).toMatchObject({ shape: { M: 1, N: 4096, K: 4096 } });
    expect(exact.notes[0]).toMatch(/tuned for this shape/);

    // N=1536 is 0.58 octaves from N=1024 and 1.42 from N=4096.
    const near = emit({ ...base, shape: 'M=1,N=1536,K=4096' });
    expect(near.manifest.configSource).toBe('nearest-record');
    expect(near.plan.config.nTile).toBe(64);
    expect(near.notes[0]).toMatch(/tuned for M=1,N=1024,K=4096, the nearest recorded shape/);

    // mTile 4 is illegal at M=2, so the M=256 record is passed over for a legal one.
    const legal = emit({ ...base, shape: 'M=2,N=4096,K=4096' });
    expect(legal.manifest.configSource).toBe('nearest-record');
    expect(legal.plan.config.mTile).toBe(1);

    const given = emit({ ...base, shape: 'M=1,N=4096,K=4096', config: { nTile: 8 } });
    expect(given.manifest.configSource).toBe('given');
    expect(given.manifest.record).toBeUndefined();

    // A GEMM record from before the panel path (rowsPerIter 2) still plans the row-path kernel it timed.
    const gemm = emit({ ...base, shape: 'M=256,N=4096,K=4096' });
    expect(gemm.manifest.configSource).toBe('record');
    expect((gemm.plan as PlanOf<'cpu-matmul'>).params.panel).toBe(false);

    const other = emit({ ...base, op: 'matmul_q8', shape: 'M=1,N=4096,K=4096' });
    expect(other.manifest.configSource).toBe('default');
    db.close();
  });

  it('--isa narrows the records to that ISA (the fastest of its trials), and plans its default where it has none', () => {
    const SCALAR = { isa: 'scalar', actQuant: 'f32', rowsPerIter: 2, mTile: 1, nTile: 8, unroll: 1, prefetch: 1 };
    const db = dbWith([
      [{ M: 1, N: 4096, K: 4096 }, FAST, 0.3],
      [{ M: 1, N: 4096, K: 4096 }, SCALAR, 4],
      [{ M: 1, N: 4096, K: 4096 }, { ...SCALAR, rowsPerIter: 1 }, 5],
    ]);
    const base = { target: 'c', op: 'matmul_q4', device: DEVICE, records: db, shape: 'M=1,N=4096,K=4096' } as const;
    const scalar = emit({ ...base, isa: 'scalar' });
    expect(scalar.manifest.configSource).toBe('record');
    expect(scalar.plan.config).toMatchObject({ isa: 'scalar', rowsPerIter: 2 });
    expect(scalar.manifest.record).toMatchObject({ medianMs: 4 });
    expect(scalar.notes[0]).toMatch(/tuned for this shape, the fastest with isa scalar: 4\.00 ms/);
    expect(emit({ ...base, isa: 'avx2' }).manifest.record).toMatchObject({ medianMs: 0.3 });
    // No record of the ISA at any shape: its default, as without records.
    const none = dbWith([[{ M: 1, N: 4096, K: 4096 }, FAST, 0.3]]);
    const unrecorded = emit({ ...base, records: none, isa: 'scalar' });
    expect(unrecorded.manifest.configSource).toBe('given');
    expect(unrecorded.plan.config).toEqual(emit({ ...base, records: undefined, isa: 'scalar' }).plan.config);
    // --config with --isa still passes the records over.
    expect(emit({ ...base, isa: 'scalar', config: { unroll: 1 } }).manifest.configSource).toBe('given');
    db.close();
    none.close();
  });

  it('says when a record was timed on a kernel rendered from other templates or by another kgen', () => {
    const shape = { M: 1, N: 4096, K: 4096 };
    const current = emit({ target: 'c', op: 'matmul_q4', device: DEVICE, shape: 'M=1,N=4096,K=4096' }).manifest.templateHash;
    for (const [over, stale] of [
      [{}, true],
      [{ templateHash: current }, false],
      [{ templateHash: current, kgenVersion: '0.0.9' }, true],
    ] as const) {
      const db = dbWith([[shape, FAST, 0.3]], over);
      const e = emit({ target: 'c', op: 'matmul_q4', device: DEVICE, shape: 'M=1,N=4096,K=4096', records: db });
      expect(e.manifest.configSource).toBe('record');
      expect(e.manifest.record!.templateHash, JSON.stringify(over)).toBe(over.templateHash ?? '0123456789abcdef');
      expect(e.notes[0]).toMatch(/tuned for this shape/);
      if (stale) {
        expect(e.notes[1], JSON.stringify(over)).toMatch(/^that record was timed on the kernel kgen \S+ rendered from templates [0-9a-f]+; this is kgen \S+ with templates [0-9a-f]+, so the kernel emitted may differ from the one timed: run `kgen tune` again/);
      } else {
        expect(e.notes, JSON.stringify(over)).toHaveLength(1);
      }
      db.close();
    }
  });

  describe('of a user\'s own profile file', () => {
    // A copy of a fixed AVX2 CPU under a name of its own, as a user writes one; records made the way `kgen tune` makes them.
    const dir = tmp();
    const file = join(dir, 'lab.json');
    const base = { ...getDevice(DEVICE), name: 'qa-lab', match: undefined };
    const write = (profile: DeviceProfile) => (writeFileSync(file, JSON.stringify(profile)), file);
    const shape = 'M=1,N=4096,K=4096';
    async function recorded(profile: DeviceProfile, fingerprintOver: Record<string, string | undefined> = {}): Promise<TuningDb> {
      const device = getDevice(write(profile));
      const req = resolveRequest({ target: 'c', op: 'matmul_q4', shape, device });
      const fingerprint = JSON.parse(JSON.stringify({ ...(await fingerprintFor(device, 'c', spaceFor(req), NO_GPUS)), ...fingerprintOver })) as Fingerprint;
      const db = openTuningDb(':memory:');
      db.addTrial(db.ensureWorkload(info({ M: 1, N: 4096, K: 4096 }, { device: 'qa-lab', fingerprint })).id, trial(FAST, 0.3));
      return db;
    }

    it('are passed over, with a note saying why, once a figure of the profile changes; a change of its prose is no change', async () => {
      const db = await recorded(base);
      expect(emit({ target: 'c', op: 'matmul_q4', shape, device: file, records: db }).manifest.configSource).toBe('record');
      // Prose, presence and the list of targets plan nothing: the record still holds.
      write({ ...base, description: 'the lab box, renamed in prose', sources: { ...base.sources, cpu: 'measured again' } });
      expect(emit({ target: 'c', op: 'matmul_q4', shape, device: file, records: db }).manifest.configSource).toBe('record');
      for (const cpu of [{ l2Bytes: base.cpu!.l2Bytes * 2 }, { cores: 4, threads: 4 }, { vectorRegisters: 32 }]) {
        write({ ...base, cpu: { ...base.cpu!, ...cpu } });
        const e = emit({ target: 'c', op: 'matmul_q4', shape, device: file, records: db });
        expect(e.manifest.configSource, JSON.stringify(cpu)).toBe('default');
        expect(e.manifest.record).toBeUndefined();
        expect(e.notes.join('\n')).toMatch(/passed over 1 tuning record of qa-lab \(c, matmul_q4\): tuned under other figures of its profile \(profile hash [0-9a-f]{16}; the profile now hashes to [0-9a-f]{16}\)[^;]*; run `kgen tune` to measure under these figures/);
        expect(recordedConfig(db, resolveRequest({ target: 'c', op: 'matmul_q4', shape, device: file }))).toBeUndefined();
      }
      // `kgen tune` files the new figures' trials under a workload of their own: it measures again.
      const edited = getDevice(file);
      const fp = await fingerprintFor(edited, 'c', spaceFor(resolveRequest({ target: 'c', op: 'matmul_q4', shape, device: edited })), NO_GPUS);
      expect(db.ensureWorkload(info({ M: 1, N: 4096, K: 4096 }, { device: 'qa-lab', fingerprint: fp })).id).not.toBe(db.workloads()[0]!.id);
      expect(db.measuredConfigs(db.workloads()[1]!.id).size).toBe(0);
      db.close();
    });

    it('from before kgen kept profile hashes are still taken, and said to be unchecked', async () => {
      const db = await recorded(base, { profileHash: undefined });
      const e = emit({ target: 'c', op: 'matmul_q4', shape, device: write({ ...base, cpu: { ...base.cpu!, vectorRegisters: 32 } }), records: db });
      expect(e.manifest.configSource).toBe('record');
      expect(e.notes.join('\n')).toMatch(/that record predates profile hashes: kgen cannot tell which figures of qa-lab it was tuned under; if the profile changed since, run `kgen tune` again/);
      db.close();
    });
  });

  it('passes over records of a shipped profile tuned under other figures of it (another kgen\'s), and takes those of its figures', () => {
    const request = { target: 'c', op: 'matmul_q4', device: DEVICE, shape: 'M=1,N=4096,K=4096' } as const;
    const now = profileHash(getDevice(DEVICE))!;
    // Prose is no figure: a shipped profile's hash moves only with what plans read.
    expect(profileHash({ ...getDevice(DEVICE), description: 'reworded', sources: {}, match: undefined, targets: ['c'] })).toBe(now);
    expect(profileHash({ ...getDevice(DEVICE), cpu: { ...getDevice(DEVICE).cpu!, isa: [...getDevice(DEVICE).cpu!.isa].reverse() } })).toBe(now);
    const same = dbWith([[{ M: 1, N: 4096, K: 4096 }, FAST, 0.3]], { fingerprint: { profile: DEVICE, profileHash: now } });
    expect(emit({ ...request, records: same }).manifest.configSource).toBe('record');
    const other = dbWith([[{ M: 1, N: 4096, K: 4096 }, FAST, 0.3]], { fingerprint: { profile: DEVICE, profileHash: '0123456789abcdef' } });
    const e = emit({ ...request, records: other });
    expect(e.manifest.configSource).toBe('default');
    expect(e.notes).toEqual([expect.stringMatching(/^passed over 1 tuning record of epyc-7763 \(c, matmul_q4\): tuned under other figures of its profile \(profile hash 0123456789abcdef; the profile now hashes to [0-9a-f]{16}\)/)]);
    // Another shape under the current figures is taken instead, and the note says so.
    other.addTrial(other.ensureWorkload(info({ M: 1, N: 1024, K: 4096 }, { device: DEVICE, fingerprint: { profile: DEVICE, profileHash: now } })).id, trial(FAST, 0.1));
    const near = emit({ ...request, records: other });
    expect(near.manifest.configSource).toBe('nearest-record');
    expect(near.notes.at(-1)).toMatch(/so a record of M=1,N=1024,K=4096 is taken instead; run `kgen tune`/);
    same.close();
    other.close();
  });

  it('passes over host records measured on another CPU or lent profile (a database brought from another machine), and takes this CPU\'s', () => {
    const request = { target: 'c', op: 'matmul_q4', device: 'host', shape: 'M=1,N=4096,K=4096' } as const;
    // The default config is legal on whatever CPU runs this; a record of it is told apart by configSource.
    const config = emit(request).plan.config as Record<string, number | string>;
    const here = { profile: 'host', target: 'c', cpu: hostIsa().model.trim(), isa: [...hostIsa().isa].sort().join(' ') };
    const withFingerprint = (fingerprint: WorkloadInfo['fingerprint']) => {
      const db = openTuningDb(':memory:');
      db.addTrial(db.ensureWorkload(info({ M: 1, N: 4096, K: 4096 }, { device: 'host', fingerprint })).id, trial(config, 0.3));
      return db;
    };
    const same = withFingerprint(here);
    expect(emit({ ...request, records: same }).manifest.configSource).toBe('record');
    const elsewhere = withFingerprint({ ...here, cpu: 'Another CPU 9000' });
    const e = emit({ ...request, records: elsewhere });
    expect(e.manifest.configSource).toBe('default');
    expect(e.notes).toEqual([expect.stringMatching(/^passed over 1 tuning record of host \(c, matmul_q4\): measured on another CPU or under another lent profile \(Another CPU 9000, lent none; this host: .+, lent none\), so the default config is taken instead/)]);
    const lent = withFingerprint({ ...here, forcedFrom: 'epyc-9654' });
    expect(emit({ ...request, records: lent }).manifest.configSource).toBe('default');
    for (const db of [same, elsewhere, lent]) db.close();
  });

  it('passes over records from another device', () => {
    const db = dbWith([[{ M: 1, N: 4096, K: 4096 }, FAST, 0.3]]);
    const req = resolveRequest({ target: 'c', op: 'matmul_q4', shape: 'M=1,N=4096,K=4096', device: 'epyc-9654' });
    expect(recordedConfig(db, req)).toBeUndefined();
    expect(getDevice('host').name).toBe('host');
    db.close();
  });
});

