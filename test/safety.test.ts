import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { cRunner } from '../src/backends/c/runner.js';
import { emit } from '../src/api/emit.js';
import { opKit } from '../src/ops/index.js';
import { checkRunFits } from '../src/api/run-memory.js';
import { KGEN_APPLICATION_ID } from '../src/db/file-kind.js';
import { openTuningDb, schemaVersion } from '../src/db/sqlite.js';
import { KgenError } from '../src/errors.js';
import { CATALOG } from '../src/ir/catalog.js';
import type { MatmulOp, MatmulShape } from '../src/ir/types.js';
import { jsonDepth, parseJsonInput } from '../src/io/json-input.js';
import { pathText, quoted } from '../src/io/message-text.js';
import { ensureDirectory, writeOutputDirectory, writeOutputFile } from '../src/io/output.js';
import { makeTempDir, sweepOrphanTempDirs } from '../src/io/temp-dirs.js';
import { Rng } from '../src/numeric/random.js';
import { commentText } from '../src/render/comment-text.js';
import { hasTool, snapshot, suiteHost } from './helpers.js';

const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
const tmp = () => mkdtempSync(join(tmpdir(), 'kgen-safety-'));
const isRoot = process.getuid?.() === 0;

/** Runs kgen with a database path that does not exist unless the test names one. */
function run(args: string[], opts: { cwd?: string; env?: Record<string, string>; timeout?: number } = {}) {
  return execa(KGEN, args, { reject: false, cwd: opts.cwd, timeout: opts.timeout ?? 60_000, env: { ...process.env, KGEN_DB: join(tmp(), 'none.db'), ...opts.env } });
}

/** Exit 2, one line on stderr naming `pattern`, no stack trace, nothing on stdout. */
function expectRefused(r: { exitCode?: number; stderr: string; stdout: string; timedOut?: boolean }, pattern: RegExp): void {
  expect(r.timedOut, 'kgen hung').toBeFalsy();
  expect(r.exitCode, r.stderr).toBe(2);
  expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(/^kgen: /);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at |internal error/);
  expect(r.stdout).toBe('');
}

function f32File(dir: string, n: number): string {
  const path = join(dir, 'w.f32');
  writeFileSync(path, new Uint8Array(new Rng(3).fillNormal(new Float32Array(n)).buffer));
  return path;
}

const EMIT = ['emit', '--target', 'c', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64', '--isa', 'scalar'];
// Tuning host, on the scalar variant that runs natively anywhere: kgen tune refuses, before the checks
// tested here, a host whose first variant would run under an emulator (KGEN_HOST_PROFILE=apple-m2 on x86).
const TUNE_HOST = ['tune', '--device', 'host', '--config', '{"isa":"scalar"}'];

describe('output paths never lose a user file', () => {
  it('emit -o into an existing directory writes beside what is there and replaces only with --force', async () => {
    const dir = tmp();
    mkdirSync(join(dir, 'proj', 'src'), { recursive: true });
    writeFileSync(join(dir, 'proj', 'notes.txt'), 'notes');
    const r = await run([...EMIT, '-o', join(dir, 'proj')]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readdirSync(join(dir, 'proj')).sort()).toEqual(['kernel.c', 'kernel.h', 'manifest.json', 'notes.txt', 'src']);
    expect(readFileSync(join(dir, 'proj', 'notes.txt'), 'utf8')).toBe('notes');
    // A second emit would overwrite kgen's own files: refused without --force, and nothing changes.
    writeFileSync(join(dir, 'proj', 'kernel.c'), 'my edits');
    const before = snapshot(dir);
    expectRefused(await run([...EMIT, '-o', join(dir, 'proj')]), /--out: .*proj already holds kernel\.c, kernel\.h, manifest\.json; .*--force/);
    expect(snapshot(dir)).toEqual(before);
    const forced = await run([...EMIT, '-o', join(dir, 'proj'), '--force']);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(forced.stderr).toMatch(/replaced kernel\.c, kernel\.h, manifest\.json/);
    expect(readFileSync(join(dir, 'proj', 'kernel.c'), 'utf8')).toContain('kgen_matmul_q4_rows');
    expect(readFileSync(join(dir, 'proj', 'notes.txt'), 'utf8')).toBe('notes');
    expect(existsSync(join(dir, 'proj', 'src'))).toBe(true);
  });

  it("emit -o DIR --force over another target's emit removes that emit's other files, never a user's or a changed one", async () => {
    const dir = tmp();
    const proj = join(dir, 'proj');
    const WASM = ['emit', '--target', 'wasm', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'];
    const c = await run([...EMIT, '-o', proj, '--data']);
    expect(c.exitCode, c.stderr).toBe(0);
    writeFileSync(join(proj, 'notes.txt'), 'notes');
    writeFileSync(join(proj, 'x.bin.orig'), 'mine too');
    // The manifest lists every other file the emit wrote, with the sha256 of its bytes (a kernel
    // that rounds its activations to int8 also has the reference from that rounding).
    const cManifest = JSON.parse(readFileSync(join(proj, 'manifest.json'), 'utf8')) as { files: Record<string, string>; tolerance: { inputRounding?: unknown } };
    const cFiles = ['kernel.c', 'kernel.h', 'ref.bin', ...(cManifest.tolerance.inputRounding ? ['ref_rounded.bin'] : []), 'ref_terms.bin', 'w.bin', 'x.bin'];
    expect(Object.keys(cManifest.files).sort()).toEqual(cFiles);
    expect(cManifest.files['kernel.c']).toBe(createHash('sha256').update(readFileSync(join(proj, 'kernel.c'))).digest('hex'));

    const wasm = await run([...WASM, '-o', proj, '--force', '--json']);
    expect(wasm.exitCode, wasm.stderr).toBe(0);
    const written = JSON.parse(wasm.stdout) as { files: string[]; replaced: string[]; removed: string[] };
    expect(written.replaced).toEqual(['manifest.json']);
    expect(written.removed.sort()).toEqual(cFiles);
    // Exactly the WebAssembly emit's files beside the user's: no C kernel or data left to mix with them.
    expect(readdirSync(proj).sort()).toEqual([...written.files, 'notes.txt', 'x.bin.orig'].sort());
    expect(readFileSync(join(proj, 'notes.txt'), 'utf8')).toBe('notes');

    // A file of the earlier emit that the user changed is theirs now: refused, naming it, nothing touched.
    writeFileSync(join(proj, 'kernel.mjs'), '// my loader');
    let before = snapshot(dir);
    expectRefused(await run([...EMIT, '-o', proj, '--force']), /--out: .*proj holds kernel\.mjs from the earlier kernel, changed since kgen wrote it; .*move it out of the directory/);
    expect(snapshot(dir)).toEqual(before);

    // Without --force nothing is removed (the same names refuse the write).
    rmSync(join(proj, 'kernel.mjs'));
    before = snapshot(dir);
    expectRefused(await run([...EMIT, '-o', proj]), /--out: .*proj already holds manifest\.json/);
    expect(snapshot(dir)).toEqual(before);
    const back = await run([...EMIT, '-o', proj, '--force']);
    expect(back.exitCode, back.stderr).toBe(0);
    expect(back.stderr).toMatch(/; removed the earlier kernel's kernel\.wat, .*kernel-worker\.mjs/);
    expect(readdirSync(proj).sort()).toEqual(['kernel.c', 'kernel.h', 'manifest.json', 'notes.txt', 'x.bin.orig']);

    // A kgen manifest that does not list its files (an older kgen's): which files are kgen's cannot be told.
    const { files: _, ...unlisted } = JSON.parse(readFileSync(join(proj, 'manifest.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(proj, 'manifest.json'), JSON.stringify(unlisted));
    before = snapshot(dir);
    expectRefused(await run([...WASM, '-o', proj, '--force']), /--out: .*manifest\.json is an earlier kgen emit's manifest that does not list the files .*remove them and its manifest\.json yourself/);
    expect(snapshot(dir)).toEqual(before);
    // Another program's manifest.json names no files: --force replaces it like any file of the name.
    writeFileSync(join(proj, 'manifest.json'), JSON.stringify({ name: 'my app', files: { 'notes.txt': '0'.repeat(64) } }));
    const other = await run([...EMIT, '-o', proj, '--force']);
    expect(other.exitCode, other.stderr).toBe(0);
    expect(readdirSync(proj).sort()).toEqual(['kernel.c', 'kernel.h', 'manifest.json', 'notes.txt', 'x.bin.orig']);
  });

  it('emit -o . keeps the working directory, for C and for CUDA', async () => {
    for (const target of ['c', 'cuda']) {
      const dir = tmp();
      writeFileSync(join(dir, 'model.gguf'), 'weights');
      mkdirSync(join(dir, '.git'));
      const args = target === 'c' ? EMIT : ['emit', '--target', 'cuda', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64', '--no-ptxas'];
      const r = await run([...args, '-o', '.'], { cwd: dir });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(readFileSync(join(dir, 'model.gguf'), 'utf8')).toBe('weights');
      expect(existsSync(join(dir, '.git'))).toBe(true);
      expect(existsSync(join(dir, target === 'c' ? 'kernel.c' : 'kernel.cu'))).toBe(true);
    }
  });

  it('a new output directory appears whole, parents included, or not at all', async () => {
    const dir = tmp();
    const r = await run([...EMIT, '-o', join(dir, 'a', 'b', 'out')]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readdirSync(join(dir, 'a', 'b', 'out')).sort()).toEqual(['kernel.c', 'kernel.h', 'manifest.json']);
    expect(readdirSync(join(dir, 'a', 'b'))).toEqual(['out']); // no temporary left beside it
  });

  it('paths that are files, under files, special files or links are refused with exit 2 and left alone', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'afile'), 'mine');
    mkdirSync(join(dir, 'adir'));
    symlinkSync(join(dir, 'afile'), join(dir, 'alink'));
    const w = f32File(dir, 4 * 64);
    const pack = ['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', w];
    const kgenDb = join(tmp(), 'kgen.db');
    openTuningDb(kgenDb).close();
    const before = snapshot(dir);
    for (const [args, pattern] of [
      [[...EMIT, '-o', join(dir, 'afile')], /--out: .*afile exists and is a file/],
      [[...EMIT, '-o', join(dir, 'afile', 'sub')], /--out: .*a component of the path is a file/],
      [[...pack, '-o', join(dir, 'adir')], /--out: .*adir is a directory/],
      [[...pack, '-o', join(dir, 'afile')], /--out: .*afile already exists; .*--force/],
      [[...pack, '-o', join(dir, 'afile', 'x')], /--out: .*a component of the path is a file/],
      [[...pack, '-o', join(dir, 'alink'), '--force'], /--out: .*alink is a symbolic link/],
      [['db', 'export', '-o', join(dir, 'adir'), '--db', kgenDb], /--out: .*adir is a directory/],
      [['db', 'export', '-o', join(dir, 'afile'), '--db', kgenDb], /--out: .*afile already exists/],
    ] as const) {
      expectRefused(await run([...args]), pattern);
    }
    expect(snapshot(dir)).toEqual(before);
  });

  it('--force never writes over the file the command reads, through any name', async () => {
    const dir = tmp();
    const w = f32File(dir, 4 * 64);
    linkSync(w, join(dir, 'hard.f32'));
    copyFileSync(w, join(dir, 'raw.json'));
    const packed = join(dir, 'w.q4');
    expect((await run(['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', w, '-o', packed])).exitCode).toBe(0);
    const kgenDb = join(dir, 'kgen.db');
    openTuningDb(kgenDb).close();
    const before = snapshot(dir);
    for (const [args, pattern] of [
      [['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', w, '-o', join(dir, 'hard.f32'), '--force'], /--out: .*hard\.f32 is the file --in reads; .*destroy the input/],
      // The sidecar pack writes beside -o (OUT.json) is checked too, before either file is written.
      [['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', join(dir, 'raw.json'), '-o', join(dir, 'raw'), '--force'], /--out: .*raw\.json is the file --in reads/],
      [['unpack', '--in', packed, '-o', packed, '--force'], /--out: .*w\.q4 is the file --in reads/],
      [['unpack', '--in', packed, '-o', `${packed}.json`, '--force'], /--out: .*w\.q4\.json is the file --in sidecar reads/],
      [['db', 'export', '--db', kgenDb, '-o', kgenDb, '--force'], /--out: .*kgen\.db is the file --db reads/],
      [['report', '--db', kgenDb, '-o', kgenDb, '--force'], /--out: .*kgen\.db is the file --db reads/],
    ] as const) {
      expectRefused(await run([...args]), pattern);
    }
    expect(snapshot(dir)).toEqual(before);
  });

  it('paths under /proc and /sys end with exit 2 instead of spinning', async () => {
    const dir = tmp();
    const w = f32File(dir, 4 * 64);
    const exportFile = join(dir, 'export.json');
    writeFileSync(exportFile, JSON.stringify({ format: 'kgen-tuning', version: 1, workloads: [] }));
    for (const args of [
      [...EMIT, '-o', '/proc/kgen-test/out'],
      ['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', w, '-o', '/proc/kgen-test/w.q4'],
      ['db', 'import', exportFile, '--db', '/proc/kgen-test/t.db'],
      [...TUNE_HOST, '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64', '--cache-dir', '/proc/kgen-test/cache', '--db', join(dir, 't.db')],
      [...EMIT, '-o', '/sys/kgen-test/out'],
    ]) {
      const r = await run(args, { timeout: 20_000 });
      expect(r.timedOut, `hung: kgen ${args.join(' ')}`).toBeFalsy();
      expectRefused(r, /^kgen: (--out|--db|--cache-dir): cannot create the directory /);
    }
    expect(existsSync(join(dir, 't.db'))).toBe(false);
  });

  it.skipIf(!isRoot)('a device node named by pack -o stays a device node (root only: copying a device node needs it)', async () => {
    const dir = tmp();
    const dev = join(dir, 'null-copy');
    await execa('cp', ['-a', '/dev/null', dev]);
    const w = f32File(dir, 4 * 64);
    for (const force of [[], ['--force']]) {
      expectRefused(await run(['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', w, '-o', dev, ...force]), /--out: .*null-copy is a device/);
    }
    expect(statSync(dev).isCharacterDevice()).toBe(true);
  });

  it('FIFOs as inputs or outputs are refused at once, never read or opened', async () => {
    const dir = tmp();
    const fifo = join(dir, 'fifo');
    await execa('mkfifo', [fifo]);
    const w = f32File(dir, 4 * 64);
    for (const [args, pattern] of [
      [['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', fifo, '-o', join(dir, 'x')], /--in: .*fifo is not a regular file/],
      [['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', w, '-o', fifo, '--force'], /--out: .*fifo is a FIFO/],
      [['emit', '--ir', fifo, '--shape', 'M=1,N=64,K=64'], /--ir: .*fifo is not a regular file/],
      [['db', 'import', fifo], /import: .*fifo is not a regular file/],
      [['db', 'list', '--db', fifo], /--db: .*fifo is not a regular file/],
    ] as const) {
      expectRefused(await run([...args], { timeout: 20_000 }), pattern);
    }
  });

  it('empty path values are errors, never stdout or the working directory', async () => {
    const dir = tmp();
    const w = f32File(dir, 4 * 64);
    const before = snapshot(dir);
    for (const [args, pattern] of [
      [[...EMIT, '-o', ''], /--out: empty/],
      [['pack', '--format', 'q4', '--shape', 'N=4,K=64', '--in', w, '-o', ''], /--out: empty/],
      [['db', 'export', '-o', ''], /--out: empty/],
      [['db', 'import', join(dir, 'none.json'), '--db', ''], /--db: empty/],
      [['tune', '--device', 'host', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64', '--db', ''], /--db: empty/],
      [['tune', '--device', 'host', '--dry-run', '--cache-dir', ''], /--cache-dir: empty/],
      [['emit', '--ir', '', '--shape', 'M=1,N=64,K=64'], /--ir: empty/],
    ] as const) {
      expectRefused(await run([...args], { cwd: dir }), pattern);
    }
    expect(snapshot(dir)).toEqual(before);
  });
});

describe('user text never reaches generated source', () => {
  it('an -o path written to inject C leaves kernel.c without it, and the kernel compiles', async () => {
    const dir = tmp();
    const evil = join(dir, 'x*/\nint injected = 1;\n/*');
    const r = await run([...EMIT, '-o', evil]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const source = readFileSync(join(evil, 'kernel.c'), 'utf8');
    expect(source).not.toContain('injected');
    if (hasTool('gcc')) {
      const cc = await execa('gcc', ['-fsyntax-only', '-Wall', '-Werror', join(evil, 'kernel.c')], { reject: false });
      expect(cc.exitCode, cc.stderr).toBe(0);
    }
  });

  it('an --ir path with a comment end in it is shown inert in the header, and the kernel compiles', async () => {
    const dir = tmp();
    mkdirSync(join(dir, 'a*'));
    const ir = join(dir, 'a*', ' int evil;.json');
    writeFileSync(ir, JSON.stringify({ kind: 'matmul', name: 'm', weight: { format: 'q4' } }));
    const r = await run(['emit', '--ir', ir, '--shape', 'M=1,N=64,K=64', '--isa', 'scalar', '-o', join(dir, 'out')]);
    expect(r.exitCode, r.stderr).toBe(0);
    const source = readFileSync(join(dir, 'out', 'kernel.c'), 'utf8');
    const header = source.slice(0, source.indexOf('*/') + 2);
    expect(header).toContain('--ir');
    expect(header).toContain('a%2A/ int evil%3B.json');
    expect(header.endsWith(' */')).toBe(true);
    expect(source.slice(header.length)).not.toContain('evil');
    if (hasTool('gcc')) {
      const cc = await execa('gcc', ['-fsyntax-only', '-Wall', '-Werror', join(dir, 'out', 'kernel.c')], { reject: false });
      expect(cc.exitCode, cc.stderr).toBe(0);
    }
  });

  it('commentText leaves nothing that could end a comment in C, CUDA, WGSL, WAT or shell', () => {
    const rng = new Rng(11);
    const alphabet = ['*', '/', '\\', '?', ';', '(', ')', '\n', '\r', '\u2028', '\0', '#', '%', 'a', ' ', 'é', '🙂', "'", '"', '`', '$'];
    for (let i = 0; i < 2000; i++) {
      let text = '';
      const n = Math.floor(rng.next() * 24);
      for (let j = 0; j < n; j++) text += alphabet[Math.floor(rng.next() * alphabet.length)];
      const inert = commentText(`kgen emit ${text}`);
      expect(inert).not.toMatch(/\*|\\|\?|;|[\u0000-\u001f\u007f-\uffff]/);
      expect(inert).toMatch(/^kgen emit /);
    }
    expect(commentText('kgen emit --ir my op.json --config \'{"nTile":16}\'')).toBe('kgen emit --ir my op.json --config \'{"nTile":16}\'');
    expect(commentText('x*/y')).toBe('x%2A/y');
    expect(commentText('100%')).toBe('100%25');
  });
});

describe('the tuning database opens only kgen databases', () => {
  it('a reading command with no database says where it looked: $KGEN_DB by its path, the default location as such', async () => {
    const dir = tmp(), missing = join(dir, 'missing.db');
    for (const args of [['db', 'list'], ['report', '-o', join(dir, 'r.html')]]) {
      expectRefused(await run(args, { env: { KGEN_DB: missing } }), new RegExp(`^kgen: \\$KGEN_DB: no tuning database at ${missing.replace(/[.]/g, '\\.')} yet; run \`kgen tune\` first`));
      expectRefused(await run(args, { env: { KGEN_DB: '', XDG_DATA_HOME: dir } }), /^kgen: --db: no tuning database at the default location \(.*kgen\/tuning\.db\) yet; run `kgen tune` first/);
    }
    expect(existsSync(missing)).toBe(false);
  });

  /** Another application's database in each journal mode, and one that looks like kgen's from its table names. */
  function foreignDbs(dir: string): string[] {
    const make = (name: string, wal: boolean, sql: string, userVersion = 0) => {
      const path = join(dir, name);
      const db = new Database(path);
      if (wal) db.pragma('journal_mode = WAL');
      db.exec(sql);
      db.pragma(`user_version = ${userVersion}`);
      db.close();
      return path;
    };
    return [
      make('app.db', false, 'CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES (\'keep me\');'),
      make('app-wal.db', true, 'CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES (\'keep me\');', 7),
      make('has-workloads.db', false, 'CREATE TABLE workloads (x TEXT);'),
      make('lookalike-wal.db', true, 'CREATE TABLE workloads (x TEXT); CREATE TABLE trials (y TEXT);', 1),
      make('app-id.db', false, 'CREATE TABLE t (x); PRAGMA application_id = 1234;'),
    ];
  }

  it('refuses foreign SQLite files, non-databases and empty files in every command, changing nothing', async () => {
    const dir = tmp();
    const files = foreignDbs(dir);
    writeFileSync(join(dir, 'notes.db'), 'not a database at all, but the user\'s text');
    files.push(join(dir, 'notes.db'));
    const exportFile = join(dir, 'export.json');
    writeFileSync(exportFile, JSON.stringify({ format: 'kgen-tuning', version: 1, workloads: [] }));
    const before = snapshot(dir);
    for (const db of files) {
      for (const args of [
        ['db', 'list'],
        ['db', 'show', '1'],
        ['db', 'export'],
        ['db', 'best', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'],
        ['db', 'import', exportFile],
        ['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'],
        [...TUNE_HOST, '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64', '--cache-dir', join(dir, 'cache')],
      ]) {
        expectRefused(await run([...args, '--db', db]), /--db: .*(another application's SQLite database|not a kgen tuning database)/);
      }
      // The same file named by $KGEN_DB
      expectRefused(await run(['db', 'list'], { env: { KGEN_DB: db } }), /\$KGEN_DB: /);
    }
    expect(snapshot(dir), 'no byte changed and no -wal/-shm file appeared').toEqual(before);
    for (const db of files.filter((f) => !f.endsWith('notes.db'))) {
      const raw = new Database(db, { readonly: true });
      expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
      raw.close();
    }
    // 4 files x 8 commands run one after another, each a fresh Node: 50-75 s alone, over 120 s while
    // test:hosts runs the NEON kernels under qemu beside it.
  }, 360_000);

  it('readers leave an empty file empty; writers make a new database of it', async () => {
    const dir = tmp();
    const empty = join(dir, 'empty.db');
    writeFileSync(empty, '');
    for (const args of [['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'], ['db', 'list'], ['db', 'export']]) {
      expectRefused(await run([...args, '--db', empty]), /--db: .*empty\.db is empty: no tuning records yet/);
    }
    expect(statSync(empty).size).toBe(0);
    const exportFile = join(dir, 'export.json');
    writeFileSync(exportFile, JSON.stringify({ format: 'kgen-tuning', version: 1, workloads: [] }));
    const r = await run(['db', 'import', exportFile, '--db', empty]);
    expect(r.exitCode, r.stderr).toBe(0);
    const raw = new Database(empty, { readonly: true });
    expect(raw.pragma('application_id', { simple: true })).toBe(KGEN_APPLICATION_ID);
    raw.close();
  });

  it('a database from before the application id (schema 1, WAL) is still kgen\'s, read as it is and marked on the next write', async () => {
    const dir = tmp();
    const path = join(dir, 'old.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.exec(readFileSync(join(import.meta.dirname, '..', 'tuning-db', '001_initial.sql'), 'utf8'));
    db.pragma('user_version = 1');
    db.close();
    const before = readFileSync(path);
    const list = await run(['db', 'list', '--db', path]);
    expect(list.exitCode, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/no workloads/);
    expect(readFileSync(path).equals(before), 'a reading command changed the file').toBe(true);
    const exportFile = join(dir, 'export.json');
    writeFileSync(exportFile, JSON.stringify({ format: 'kgen-tuning', version: 1, workloads: [] }));
    expect((await run(['db', 'import', exportFile, '--db', path])).exitCode).toBe(0);
    const raw = new Database(path, { readonly: true });
    expect(raw.pragma('application_id', { simple: true })).toBe(KGEN_APPLICATION_ID);
    raw.close();
  });

  it('reading commands leave a database byte for byte as it was, and a newer schema is refused before it is opened', async () => {
    const dir = tmp();
    const path = join(dir, 'rollback.db');
    openTuningDb(path).close();
    const raw = new Database(path);
    raw.pragma('journal_mode = DELETE');
    raw.close();
    const before = readFileSync(path);
    for (const args of [['db', 'list'], ['db', 'export'], ['db', 'show', '1'], ['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64']]) {
      await run([...args, '--db', path]);
      expect(readFileSync(path).equals(before), `${args.join(' ')} changed the file`).toBe(true);
      expect(existsSync(`${path}-wal`), `${args.join(' ')} left a -wal file`).toBe(false);
    }
    const newer = new Database(path);
    newer.pragma(`user_version = ${schemaVersion() + 1}`);
    newer.close();
    const refused = readFileSync(path);
    writeFileSync(join(dir, 'empty.json'), JSON.stringify({ format: 'kgen-tuning', version: 1, workloads: [] }));
    // A reading and a writing command (tune opens the database as import does, after checks of the
    // host that differ by machine).
    for (const args of [['db', 'list'], ['db', 'import', join(dir, 'empty.json')]]) {
      const r = await run([...args, '--db', path]);
      expect(r.exitCode, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/newer than this kgen's .*nothing was written/);
      expect(readFileSync(path).equals(refused), `${args.join(' ')} changed a refused file`).toBe(true);
    }
  });

  it('directories, paths under files and empty names are refused before anything is created', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'f'), 'x');
    expect(() => openTuningDb(dir)).toThrow(/is a directory; .*e\.g\. --db .*tuning\.db/);
    expect(() => openTuningDb(join(dir, 'f', 'x.db'))).toThrow(/a component of the path is a file/);
    expect(() => openTuningDb('')).toThrow(/--db: empty/);
    expect(() => openTuningDb(join(dir, 'new', 'x.db'), { access: 'read' })).toThrow(/does not exist/);
    expect(existsSync(join(dir, 'new'))).toBe(false);
  });
});

describe('JSON input is bounded before anything recurses over it', () => {
  const deepArray = '['.repeat(5000) + ']'.repeat(5000);
  const deepObject = '{"a":'.repeat(5000) + '1' + '}'.repeat(5000);

  it('measures depth iteratively and refuses deep or long text with one line', () => {
    expect(jsonDepth(deepArray)).toBe(5000);
    expect(jsonDepth('{"a":"[[[[","b":[1,{"c":[]}]}')).toBe(4);
    expect(jsonDepth('"\\"[[["')).toBe(0);
    expect(() => parseJsonInput(deepObject, { field: '--config', expected: 'an object' })).toThrow(/--config: nests arrays or objects more than 32 levels deep/);
    expect(() => parseJsonInput('x'.repeat(2 << 20), { field: '--config', expected: 'an object' })).toThrow(/characters long/);
    try {
      parseJsonInput('{"a":\n\u0007 oops', { field: '--config', expected: 'an object' });
      expect.unreachable();
    } catch (e) {
      expect((e as KgenError).message).not.toMatch(/\n|\u0007|oops/);
    }
  });

  it('deep --ir, --config and import files are usage errors, not stack traces', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'deep.json'), deepArray);
    writeFileSync(join(dir, 'deep2.json'), deepObject);
    for (const [args, pattern] of [
      [['emit', '--ir', join(dir, 'deep.json'), '--shape', 'M=1,N=64,K=64'], /--ir: .*deep\.json nests arrays or objects more than 32 levels deep/],
      [[...EMIT, '--config', deepArray], /--config: nests/],
      [['tune', '--device', 'host', '--dry-run', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64', '--config', deepObject], /--config: nests/],
      [['db', 'import', join(dir, 'deep2.json'), '--db', join(dir, 'new.db')], /import: .*deep2\.json nests/],
    ] as const) {
      expectRefused(await run([...args]), pattern);
    }
    expect(existsSync(join(dir, 'new.db'))).toBe(false);
  });
});

describe('shapes whose test data cannot be allocated', () => {
  it('verify and emit --data refuse them up front with the bytes needed; emit alone still works', async () => {
    const huge = ['--op', 'matmul_q4', '--shape', 'M=1048576,N=1048576,K=64'];
    const t0 = performance.now();
    expectRefused(await run(['verify', ...huge]), /--shape: kgen verify would allocate 8796093022208 bytes \(8\.0 TiB\) for the f64 reference output/);
    expect(performance.now() - t0).toBeLessThan(20_000);
    const dir = tmp();
    expectRefused(await run(['emit', ...huge, '--data', '-o', join(dir, 'out')]), /--shape: kgen emit --data would allocate/);
    expect(existsSync(join(dir, 'out'))).toBe(false);
    const e = await run(['emit', ...huge, '--isa', 'scalar', '--json']);
    expect(e.exitCode, e.stderr).toBe(0);
  });

  it('the tuner refuses them before opening the database', async () => {
    const dir = tmp();
    expectRefused(await run([...TUNE_HOST, '--op', 'matmul_q8', '--shape', 'M=65536,N=1048576,K=1024', '--db', join(dir, 't.db')]), /--shape: the tuner would allocate/);
    expect(existsSync(join(dir, 't.db'))).toBe(false);
  });

  it('counts the buffers against the memory it is given', () => {
    const req = { op: CATALOG.matmul_q4!, shape: { M: 64, N: 4096, K: 4096 } };
    expect(() => checkRunFits(req, 'kgen verify', 64 << 20)).toThrow(/kgen verify needs \d+ bytes .* but this machine has 0\.1 GiB/);
    expect(() => checkRunFits(req, 'kgen verify', 1 << 30)).not.toThrow();
  });

  it.skipIf(!hasTool('gcc'))('a harness that cannot allocate says so, and the runner turns it into a usage error, not a crash', async () => {
    const op = CATALOG.matmul_q4 as MatmulOp;
    const shape: MatmulShape = { M: 1, N: 64, K: 64 };
    const result = emit({ target: 'c', op: 'matmul_q4', shape, isa: 'scalar', ...suiteHost() });
    const runner = cRunner('scalar');
    const build = await runner.build(result.plan, result.rendered);
    expect(build.status).toBe('ok');
    if (build.status !== 'ok') return;
    try {
      // The harness itself, with its address space limited: 100000 weight copies cannot fit.
      const data = opKit(op.kind).testData(op, shape, 1);
      const inputs = join(tmp(), 'in');
      mkdirSync(inputs);
      for (const [name, bytes] of Object.entries(data.inputs)) writeFileSync(join(inputs, name), bytes);
      const r = await execa('sh', ['-c', 'ulimit -v 200000; exec "$0" "$@"', join(build.dir, 'harness'), inputs, '1', '0', '1', '100000', '1'], { reject: false });
      expect(r.exitCode, r.stderr).toBe(5);
      expect(r.stderr).toMatch(/harness: cannot allocate \d+ bytes for a weight copy/);
    } finally {
      build.dispose();
    }
    // A harness that exits with the out-of-memory status: the runner throws a KgenError.
    const fake = tmp();
    writeFileSync(join(fake, 'harness'), '#!/bin/sh\necho "harness: cannot allocate 123 bytes for y" >&2\nexit 5\n');
    chmodSync(join(fake, 'harness'), 0o755);
    await expect(runner.execute({ status: 'ok', id: 'fake', dir: fake, compileMs: 0, cached: false, dispose: () => {} }, { 'x.bin': new Uint8Array(4) })).rejects.toThrow(
      /--shape: the test harness ran out of memory \(harness: cannot allocate 123 bytes for y\)/,
    );
  });
});

describe('every flag is checked, in every mode, with one number grammar', () => {
  it('tune --dry-run checks what a real run would', async () => {
    const base = ['tune', '--device', 'host', '--dry-run', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'];
    for (const [extra, pattern] of [
      [['--strategy', 'bogus'], /--strategy: unknown strategy "bogus"/],
      [['--trials', 'abc'], /--trials: got "abc"; expected an integer from 1/],
      [['--trials', '0x10'], /--trials: got "0x10"/],
      [['--trials', '1e1'], /--trials: got "1e1"/],
      [['--trials', '0'], /--trials: got 0/],
      [['--threads', '0'], /--threads: got 0/],
      [['--threads', '100000'], /--threads: got 100000; expected an integer from 1 to 256/],
      [['--time-budget', 'xyz'], /--time-budget: got "xyz"/],
      [['--time-budget', ''], /--time-budget: empty/],
      [['--timeout', ''], /--timeout: empty/],
      [['--timeout', '0s'], /--timeout: got "0s"; expected a duration above zero/],
      [['--seed', 'abc'], /--seed: got "abc"/],
      [['--seed', '-1'], /--seed: got "-1"/],
      [['--cache-dir', ''], /--cache-dir: empty/],
      [['--strategy-opt', 'population=1e3'], /--strategy-opt: got "population=1e3"/],
    ] as const) {
      expectRefused(await run([...base, ...extra]), pattern);
    }
  });

  it('db show, verify, emit --data and pack use the same grammar', async () => {
    for (const [args, pattern] of [
      [['db', 'show', '1', '--limit', 'abc'], /--limit: got "abc"/],
      [['db', 'show', '1', '--limit', '0'], /--limit: got 0/],
      [['db', 'show', '1', '--limit', '-2'], /--limit: got "-2"/],
      [['db', 'show', 'x1'], /workload: got "x1"/],
      [['verify', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64', '--seed', 'abc'], /--seed: got "abc"/],
      [[...EMIT, '--data', '0x1', '-o', join(tmp(), 'o')], /--data: got "0x1"/],
      [['pack', '--format', 'q4', '--group', 'abc', '--shape', 'N=4,K=64', '--in', 'w', '-o', 'x'], /--group: got "abc"; expected an integer/],
      [['pack', '--format', 'q4', '--group', '48', '--shape', 'N=4,K=64', '--in', 'w', '-o', 'x'], /--group: got 48; expected a multiple of 32/],
      [['emit', '--op', 'matmul_q4', '--shape', 'M=1e1,N=8,K=64'], /--shape: cannot read "M=1e1"/],
    ] as const) {
      expectRefused(await run([...args]), pattern);
    }
  });

  it('db import checks timings like any other field', async () => {
    const dir = tmp();
    const db = openTuningDb(join(dir, 'src.db'));
    const op = CATALOG.matmul_q4!;
    const w = db.ensureWorkload({ device: 'host', fingerprint: { cpu: 'x' }, target: 'c', op, irHash: (await import('../src/ir/validate.js')).opHash(op), shape: { M: 1, N: 64, K: 64 }, weightFormat: 'q4', templateHash: '0123456789abcdef', kgenVersion: '0.1.0', bytes: 1, flops: 1, rooflineMs: 1 });
    const config = { isa: 'scalar' };
    db.addTrial(w.id, { uid: '00000000-0000-4000-8000-000000000001', config, configHash: (await import('../src/hash.js')).canonicalHash(config), status: 'ok', timing: { medianMs: 1, minMs: 1, maxMs: 1, spread: 0, runs: 3 }, origin: 'test', createdAt: 'now' });
    const good = db.exportAll();
    db.close();
    for (const [mutate, pattern] of [
      [(t: { timing: Record<string, number> }) => (t.timing.runs = 2.5), /timing\.runs: got 2\.5; expected an integer from 1/],
      [(t: { timing: Record<string, number> }) => (t.timing.runs = 1e300), /timing\.runs: got 1e\+300/],
      [(t: { timing: Record<string, number> }) => (t.timing.medianMs = 1e300), /timing\.medianMs: got 1e\+300/],
      [(t: { timing: Record<string, number> }) => (t.timing.medianMs = 5), /medianMs: 5 is outside \[minMs 1, maxMs 1\]/],
    ] as const) {
      const bad = JSON.parse(JSON.stringify(good));
      mutate(bad.workloads[0].trials[0]);
      const file = join(dir, 'bad.json');
      writeFileSync(file, JSON.stringify(bad));
      expectRefused(await run(['db', 'import', file, '--db', join(dir, 'dst.db')]), pattern);
      expect(existsSync(join(dir, 'dst.db'))).toBe(false);
    }
  });

  it('db best refuses a target/device pair that emit refuses', async () => {
    const dir = tmp();
    const exportFile = join(dir, 'e.json');
    writeFileSync(exportFile, JSON.stringify({ format: 'kgen-tuning', version: 1, workloads: [] }));
    expect((await run(['db', 'import', exportFile, '--db', join(dir, 'a.db')])).exitCode).toBe(0);
    const args = ['--target', 'cuda', '--device', 'host', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'];
    const e = await run(['emit', ...args]);
    expectRefused(e, /--target: device host does not run cuda kernels/);
    expectRefused(await run(['db', 'best', ...args, '--db', join(dir, 'a.db')]), /--target: device host does not run cuda kernels/);
  });
});

describe('messages are one line, name the flag and say what to do', () => {
  it('user text is escaped, parse errors do not echo the input, hints fit the flag', async () => {
    for (const [args, pattern] of [
      [['emit', '--op', 'x\ny', '--shape', 'M=1,N=8,K=64'], /--op: unknown op "x\\ny"/],
      [['emit', '--op', 'constructor', '--shape', 'M=1,N=8,K=64'], /--op: unknown op "constructor"/],
      [[...EMIT, '--config', '{"nTile":\n 1 oops'], /--config: not valid JSON \(/],
      [['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=100'], /--shape K: .*; pad K to 128/],
      [['emit', '--op', 'matmul_q4', '--shape', 'M=0,N=8,K=64'], /--shape M: got 0; .*; fix --shape and run again$/m],
      [['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64', '--device', 'epyc-9654', '--isa', 'neon'], /--isa: device epyc-9654 has no neon .*--device apple-m2.*qemu-aarch64/],
      [['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64', '--isa', 'sse2'], /--isa: unknown ISA "sse2"; expected one of avx512, avxvnni, avx2, neon, scalar/],
      [['emit', '--bogus'], /unknown option '--bogus'; run `kgen emit --help`/],
      [['db', 'show', '1', '--bogus'], /unknown option '--bogus'; run `kgen db show --help`/],
      [['pack', '--format', 'q4', '--group', '4096x'], /--group: got "4096x"/],
    ] as const) {
      const r = await run([...args]);
      expectRefused(r, pattern);
      expect(r.stderr).not.toMatch(/IR file/);
      expect(r.stderr).not.toMatch(/oops/);
      if (!(args as readonly string[]).includes('--config')) expect(r.stderr).not.toMatch(/--config/);
    }
  });

  it('a typo of a command or option is answered with the one it was near', async () => {
    for (const [args, pattern] of [
      [['emitt'], /^kgen: unknown command 'emitt' \(did you mean emit\?\); run `kgen --help` for what it accepts$/m],
      [['tnue', '--help'], /unknown command 'tnue' \(did you mean tune\?\)/],
      // The nearest command, not the first one near enough (pack is listed before plan).
      [['plank'], /unknown command 'plank' \(did you mean plan\?\)/],
      [['help', 'emitt'], /unknown command 'emitt' \(did you mean emit\?\)/],
      [['xyz'], /^kgen: unknown command 'xyz'; run `kgen --help`/],
      [['emit', '--targt', 'c'], /^kgen: unknown option '--targt' \(did you mean --target\?\); run `kgen emit --help` for what it accepts$/m],
      [['db', 'lst'], /unknown command 'lst' \(did you mean list\?\); run `kgen db --help`/],
    ] as const) expectRefused(await run([...args]), pattern);
    // Below kgen, commander prints the help for `help NOSUCH` and then said only "(outputHelp)".
    const r = await run(['db', 'help', 'lst']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n').at(-1)).toBe('kgen: help: "lst" is not a command; run `kgen db --help` for what it accepts');
    expect(r.stderr).not.toMatch(/outputHelp/);
  });

  it('IR errors point to docs/ir.md, which exists', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'op.json'), JSON.stringify({ kind: 'matmul', name: 'm', weight: { format: 'q5' } }));
    const r = await run(['emit', '--ir', join(dir, 'op.json'), '--shape', 'M=1,N=8,K=64']);
    expectRefused(r, /ir\.weight\.format: got "q5"; .*docs\/ir\.md/);
    expect(existsSync(join(import.meta.dirname, '..', 'docs', 'ir.md'))).toBe(true);
  });

  it('quoted and pathText keep odd text on one line', () => {
    expect(quoted('a\nb\u2028c')).toBe('"a\\nb\\u2028c"');
    expect(quoted('x'.repeat(500)).length).toBeLessThanOrEqual(80);
    expect(pathText('/tmp/out-1/kernel.c')).toBe('/tmp/out-1/kernel.c');
    expect(pathText('my dir/x')).toBe('"my dir/x"');
  });
});

describe('safe output, as a library', () => {
  it('writes files all or nothing and reports what it replaced', () => {
    const dir = tmp();
    expect(writeOutputDirectory(join(dir, 'new'), { 'a.txt': 'a', 'b.bin': new Uint8Array([1, 2]) }, { field: '--out' })).toEqual({ created: true, replaced: [], removed: [] });
    writeFileSync(join(dir, 'new', 'mine.txt'), 'mine');
    expect(() => writeOutputDirectory(join(dir, 'new'), { 'a.txt': 'A', 'c.txt': 'c' }, { field: '--out' })).toThrow(/already holds a\.txt/);
    expect(existsSync(join(dir, 'new', 'c.txt'))).toBe(false);
    expect(writeOutputDirectory(join(dir, 'new'), { 'a.txt': 'A', 'c.txt': 'c' }, { field: '--out', force: true })).toEqual({ created: false, replaced: ['a.txt'], removed: [] });
    expect(readdirSync(join(dir, 'new')).sort()).toEqual(['a.txt', 'b.bin', 'c.txt', 'mine.txt']);
    writeOutputFile(join(dir, 'f', 'g', 'h.bin'), new Uint8Array([7]), { field: '--out' });
    chmodSync(join(dir, 'f', 'g', 'h.bin'), 0o640);
    writeOutputFile(join(dir, 'f', 'g', 'h.bin'), new Uint8Array([8]), { field: '--out', force: true });
    expect(readFileSync(join(dir, 'f', 'g', 'h.bin'))).toEqual(Buffer.from([8]));
    expect(statSync(join(dir, 'f', 'g', 'h.bin')).mode & 0o777).toBe(0o640);
    expect(readdirSync(join(dir, 'f', 'g'))).toEqual(['h.bin']);
  });

  it("removes an earlier output's files only with force, only while they hold the bytes written then", () => {
    const dir = tmp();
    const sha = (text: string) => createHash('sha256').update(text).digest('hex');
    writeOutputDirectory(dir, { 'old.c': 'old', 'both.h': 'h', 'gone.bin': 'g', 'edited.txt': 'e' }, { field: '--out' });
    writeFileSync(join(dir, 'mine.txt'), 'mine');
    rmSync(join(dir, 'gone.bin'));
    const earlier = { 'old.c': sha('old'), 'both.h': sha('h'), 'gone.bin': sha('g'), 'edited.txt': sha('e') };
    writeFileSync(join(dir, 'edited.txt'), 'edited');
    const before = snapshot(dir);
    expect(() => writeOutputDirectory(dir, { 'both.h': 'H', 'new.c': 'n' }, { field: '--out', force: true, earlier })).toThrow(/holds edited\.txt from the earlier kernel, changed since/);
    expect(snapshot(dir)).toEqual(before);
    // Without force: nothing removed, and the shared name refuses the write.
    const { 'edited.txt': _, ...unchanged } = earlier;
    expect(() => writeOutputDirectory(dir, { 'both.h': 'H', 'new.c': 'n' }, { field: '--out', earlier: unchanged })).toThrow(/already holds both\.h/);
    expect(writeOutputDirectory(dir, { 'both.h': 'H', 'new.c': 'n' }, { field: '--out', force: true, earlier: unchanged })).toEqual({ created: false, replaced: ['both.h'], removed: ['old.c'] });
    expect(readdirSync(dir).sort()).toEqual(['both.h', 'edited.txt', 'mine.txt', 'new.c']);
    // A link or a directory of a listed name is never removed.
    symlinkSync(join(dir, 'mine.txt'), join(dir, 'old.c'));
    expect(() => writeOutputDirectory(dir, { 'new.c': 'n2' }, { field: '--out', force: true, earlier: { 'old.c': sha('mine') } })).toThrow(/holds old\.c from the earlier kernel/);
    expect(readFileSync(join(dir, 'mine.txt'), 'utf8')).toBe('mine');
  });

  it('creates missing directories one at a time and removes them again when it fails', () => {
    const dir = tmp();
    expect(ensureDirectory(join(dir, 'a', 'b'), '--out')).toEqual([join(dir, 'a'), join(dir, 'a', 'b')]);
    expect(ensureDirectory(join(dir, 'a', 'b'), '--out')).toEqual([]);
    expect(() => ensureDirectory('/proc/kgen-test/a/b', '--out')).toThrow(KgenError);
  });
});

describe("the test run's temporary folder", () => {
  it('is a fresh directory of this run (test/temp-dir-setup.ts removes it at the end), inherited by the processes tests start', async () => {
    expect(basename(tmpdir())).toMatch(/^kgen-test-run-/);
    expect(process.env.TMPDIR).toBe(tmpdir());
    const child = await execa(process.execPath, ['-e', "process.stdout.write(require('node:os').tmpdir())"]);
    expect(child.stdout).toBe(tmpdir());
  });
});

describe('temporary directories of killed kgen processes', () => {
  it('are swept when their process is gone and they are old; a live or young one, or one of another name, is left', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-sweep-test-'));
    // A pid that surely ran and ended: a child that has exited.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid;
    const here = 'pid:[4026531836]';
    const hour = (Date.now() - 3_600_000) / 1000;
    const days = (Date.now() - 2 * 86_400_000) / 1000;
    // As makeTempDir leaves them (its marker naming a pid namespace inside), unless `marker` is
    // null: a user's directory.
    const make = (name: string, mtime: number | 'new', marker: string | null = here) => {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'k.bin'), new Uint8Array(16));
      if (marker !== null) writeFileSync(join(dir, name, '.kgen-temp'), marker);
      if (mtime !== 'new') utimesSync(join(dir, name), mtime, mtime);
    };
    make(`kgen-run-${dead}-AbC123`, hour);
    make(`kgen-cuda-gpu-run-${dead}-xyz789`, hour);
    make(`kgen-run-${dead}-young1`, 'new');
    make(`kgen-run-${process.ppid}-alive1`, hour);
    make(`kgen-run-${process.pid}-mine12`, hour);
    make('kgen-run-noPid1', hour);
    make(`other-${dead}-AbC123`, hour);
    make(`kgen-mine-${dead}-userX1`, hour, null);
    // Another container's (its pid means nothing here): kept for a day, then swept; so is a
    // marker naming no namespace (an older kgen).
    make(`kgen-run-${dead}-other1`, hour, 'pid:[4026532999]');
    make(`kgen-run-${dead}-other2`, days, 'pid:[4026532999]');
    make(`kgen-run-${dead}-older1`, hour, '');
    make(`kgen-run-${dead}-older2`, days, '');
    expect(sweepOrphanTempDirs({ dir, namespace: here })).toBe(4);
    expect(readdirSync(dir).sort()).toEqual(
      [
        `kgen-run-${dead}-young1`,
        `kgen-run-${process.pid}-mine12`,
        `kgen-run-${process.ppid}-alive1`,
        'kgen-run-noPid1',
        `other-${dead}-AbC123`,
        `kgen-mine-${dead}-userX1`,
        `kgen-run-${dead}-other1`,
        `kgen-run-${dead}-older1`,
      ].sort(),
    );
    // kgen's own temporary directories carry the pid, and their marker this process's namespace
    // (where the platform has one), which a sweep in the same namespace takes as its own.
    const made = makeTempDir('kgen-run-');
    try {
      expect(made).toMatch(new RegExp(`kgen-run-${process.pid}-[A-Za-z0-9]{6}$`));
      const marker = readFileSync(join(made, '.kgen-temp'), 'utf8');
      if (existsSync('/proc/self/ns/pid')) expect(marker).toMatch(/^pid:\[\d+\]$/);
    } finally {
      rmSync(made, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
