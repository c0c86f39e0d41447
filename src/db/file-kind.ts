import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';

/**
 * What is at a database path, judged without writing anything there: kgen opens only its own
 * databases, empty files and new paths, and leaves every other file exactly as it was.
 */
export type DbFileKind =
  | { kind: 'missing' }
  /** A zero-length file, or a SQLite database with no schema at all. */
  | { kind: 'empty' }
  /**
   * kgen's database: its application id, or a schema-1 database from before kgen set one.
   * `userVersion`: the schema version its header states (stale where a -wal file holds newer pages).
   */
  | { kind: 'kgen'; userVersion?: number }
  | { kind: 'foreign'; why: string }
  | { kind: 'not-database'; why: string };

/** `PRAGMA application_id` of kgen tuning databases: "kgen" in ASCII. */
export const KGEN_APPLICATION_ID = 0x6b67656e;

const MAGIC = 'SQLite format 3\0';
/**
 * kgen's databases from before it set an application id are schema version 1: exactly the tables
 * of migration 001, whose CREATE TABLE text SQLite keeps verbatim. `legacy` maps each table name to
 * that text.
 */
export type LegacySchema = ReadonlyMap<string, string>;

/** The CREATE TABLE statements of a migration's SQL, by table name. */
export function createTableStatements(sql: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of sql.matchAll(/CREATE TABLE (\w+) \([\s\S]*?\n\)/g)) out.set(m[1]!, m[0]);
  return out;
}

const squash = (sql: string) => sql.replace(/\s+/g, ' ').trim();

interface SchemaFacts {
  applicationId: number;
  userVersion: number;
  tables: { name: string; sql: string }[];
}

/** The first `n` bytes of a file (fewer if it is shorter). */
function head(path: string, n: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    const got = readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/**
 * Classifies the regular file at `path`. The SQLite header is read directly (magic, application
 * id, user version, schema cookie); only a header that could be kgen's schema-1 database is looked
 * into further, through a read-only SQLite connection where that creates no file, else by the
 * table names on its first page. A read-only connection to a WAL database would create `-wal` and
 * `-shm` files beside another application's file, so that is avoided.
 */
export function inspectDbFile(path: string, legacy: LegacySchema): DbFileKind {
  if (!existsSync(path)) return { kind: 'missing' };
  const size = statSync(path).size;
  const wal = existsSync(`${path}-wal`);
  const shm = existsSync(`${path}-shm`);
  if (size === 0) return wal ? viaSqlite(path, legacy) : { kind: 'empty' };
  const h = head(path, 100);
  if (h.length < 100 || h.toString('latin1', 0, 16) !== MAGIC) return { kind: 'not-database', why: 'it is not a SQLite database' };
  const userVersion = h.readUInt32BE(60);
  const applicationId = h.readUInt32BE(68);
  const walMode = h[18] === 2 || h[19] === 2;
  if (applicationId === KGEN_APPLICATION_ID) return { kind: 'kgen', userVersion };
  if (applicationId !== 0) return { kind: 'foreign', why: `another application's SQLite database (application id 0x${applicationId.toString(16)})` };
  // Changes not yet checkpointed live in the -wal file: the header alone may be stale.
  if (wal && shm) return viaSqlite(path, legacy);
  if (!walMode) return viaSqlite(path, legacy);
  const schemaCookie = h.readUInt32BE(40);
  if (userVersion === 0 && schemaCookie === 0) return { kind: 'empty' };
  if (userVersion !== 1) return { kind: 'foreign', why: `another application's SQLite database (user version ${userVersion})` };
  const tables = tablesOnFirstPage(path, h.readUInt16BE(16));
  if (!tables) return { kind: 'foreign', why: 'a SQLite database whose schema is not kgen\'s' };
  return judge({ applicationId, userVersion, tables }, legacy);
}

function judge(facts: SchemaFacts, legacy: LegacySchema): DbFileKind {
  const { applicationId, userVersion, tables } = facts;
  if (applicationId === KGEN_APPLICATION_ID) return { kind: 'kgen' };
  if (applicationId !== 0) return { kind: 'foreign', why: `another application's SQLite database (application id 0x${applicationId.toString(16)})` };
  if (tables.length === 0 && userVersion === 0) return { kind: 'empty' };
  const isLegacy = userVersion === 1 && tables.length === legacy.size && tables.every((t) => legacy.has(t.name) && squash(legacy.get(t.name)!) === squash(t.sql));
  if (isLegacy) return { kind: 'kgen' };
  const names = tables.map((t) => t.name).sort();
  const shown = names.slice(0, 5).join(', ') + (names.length > 5 ? ', ...' : '');
  return { kind: 'foreign', why: `another application's SQLite database (tables: ${shown || 'none'}; user version ${userVersion})` };
}

/** Asks SQLite itself, read-only; called only where that creates no file beside `path`. */
function viaSqlite(path: string, legacy: LegacySchema): DbFileKind {
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    const applicationId = (db.pragma('application_id', { simple: true }) as number) >>> 0;
    const userVersion = db.pragma('user_version', { simple: true }) as number;
    const tables = db.prepare<[], { name: string; sql: string }>("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all();
    return judge({ applicationId, userVersion, tables }, legacy);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'SQLITE_NOTADB') return { kind: 'not-database', why: 'it is not a SQLite database' };
    if (code === 'SQLITE_CORRUPT') return { kind: 'not-database', why: 'it is a damaged SQLite database' };
    return { kind: 'not-database', why: `SQLite cannot read it (${code ?? (e as Error).message})` };
  } finally {
    db?.close();
  }
}

/**
 * Table names in the schema stored on page 1, read from the raw file (valid when no `-wal` file
 * exists: the main file then holds every committed change). Undefined when the schema does not
 * fit on page 1 as one leaf page, which kgen's schema-1 database always does.
 */
function tablesOnFirstPage(path: string, pageSizeField: number): { name: string; sql: string }[] | undefined {
  const pageSize = pageSizeField === 1 ? 65536 : pageSizeField;
  const page = head(path, pageSize);
  if (page.length < pageSize || page[100] !== 0x0d) return undefined; // not a single leaf page
  const cells = page.readUInt16BE(103);
  const tables: { name: string; sql: string }[] = [];
  for (let i = 0; i < cells; i++) {
    const row = readSchemaRow(page, page.readUInt16BE(108 + 2 * i));
    if (!row) return undefined;
    const [type, name, , , sql] = row;
    if (typeof type !== 'string' || typeof name !== 'string') return undefined;
    if (type === 'table' && !name.startsWith('sqlite_')) tables.push({ name, sql: typeof sql === 'string' ? sql : '' });
  }
  return tables;
}

/** SQLite's variable-length integer at `pos`: its value and length. */
function varint(buf: Buffer, pos: number): { value: number; length: number } {
  let value = 0;
  for (let i = 0; i < 9; i++) {
    const b = buf[pos + i];
    if (b === undefined) return { value: -1, length: i + 1 };
    if (i === 8) return { value: value * 256 + b, length: 9 };
    value = value * 128 + (b & 0x7f);
    if (b < 0x80) return { value, length: i + 1 };
  }
  return { value, length: 9 };
}

/** Bytes a record value of SQLite serial type `t` occupies. */
function serialSize(t: number): number {
  if (t >= 12) return Math.floor((t - 12) / 2);
  return [0, 1, 2, 3, 4, 6, 8, 8, 0, 0, 0, 0][t]!;
}

/**
 * One sqlite_master row (a leaf cell that does not overflow): its columns as text, number or
 * undefined (NULL, blobs). Undefined when the cell is not what a schema row looks like.
 */
function readSchemaRow(page: Buffer, offset: number): (string | number | undefined)[] | undefined {
  if (offset <= 0 || offset >= page.length) return undefined;
  const payload = varint(page, offset);
  const rowid = varint(page, offset + payload.length);
  const start = offset + payload.length + rowid.length;
  if (payload.value < 0 || start + payload.value > page.length || payload.value > page.length - 35) return undefined;
  const headerSize = varint(page, start);
  const serials: number[] = [];
  for (let p = start + headerSize.length; p < start + headerSize.value; ) {
    const s = varint(page, p);
    if (s.value < 0 || s.value === 10 || s.value === 11) return undefined;
    serials.push(s.value);
    p += s.length;
  }
  const values: (string | number | undefined)[] = [];
  let body = start + headerSize.value;
  for (const t of serials) {
    const size = serialSize(t);
    if (body + size > start + payload.value) return undefined;
    if (t >= 13 && t % 2 === 1) values.push(page.toString('utf8', body, body + size));
    else if (t >= 1 && t <= 4) values.push(page.readIntBE(body, size));
    else values.push(undefined);
    body += size;
  }
  return values;
}
