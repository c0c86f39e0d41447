import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import type { KernelRequest } from '../api/request.js';
import { targetFor, targetNames } from '../backends/registry.js';
import { DB_ENV, defaultDbPath } from '../db/location.js';
import { getDevice, hostFromEnvironment, isProfileFile, isShippedProfile, loadProfiles, type DeviceOptions, type DeviceProfile, type HostOptions } from '../device/index.js';
import { openTuningDb, preflightTuningDb } from '../db/sqlite.js';
import type { TuningDb } from '../db/types.js';
import { KgenError } from '../errors.js';
import { catalogOp } from '../ir/catalog.js';
import { irOf, OP_KINDS } from '../ir/ops.js';
import type { OpKind } from '../ir/types.js';
import { parseJsonInput, SMALL_JSON } from '../io/json-input.js';
import { pathText, quoted } from '../io/message-text.js';
import { readRegularFile } from '../io/input-file.js';
import { checkPathText } from '../io/output.js';

/** Flags shared by emit, verify and plan, as commander sees them. */
export interface KernelFlags {
  target: string;
  op?: string;
  ir?: string;
  shape?: string;
  device?: string;
  isa?: string;
  config?: string;
  json?: boolean;
}

/** `--target`'s help: the registered targets. */
export function targetChoices(): string {
  return targetNames().join(' | ');
}

/** `--device`'s default for each target, as help says it ("c host, cuda rtx4090, ..."). */
function defaultDevices(): string {
  return targetNames().map((n) => `${n} ${targetFor(n).defaultDevice}`).join(', ');
}

/** `--isa`'s help: each target with variants, its variants. */
function variantChoices(): string {
  return targetNames()
    .map((n) => targetFor(n))
    .filter((t) => t.variants)
    .map((t) => `${t.title} variant: ${t.variants!.all.join(' | ')}`)
    .join('; ');
}

export function addKernelFlags(cmd: Command, defaults: { target?: string } = {}): Command {
  return cmd
    .option('--target <target>', targetChoices(), defaults.target ?? targetNames()[0])
    .option('--op <name>', 'catalog op (see `kgen ops`)')
    .option('--ir <file>', 'your own op as a JSON file (instead of --op)')
    .option('--shape <dims>', 'dimensions, e.g. M=1,N=4096,K=4096 (attention: B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128)')
    .option('--device <name>', `device profile (see \`kgen devices\`), or your own as a file NAME.json (docs/ARCHITECTURE.md, "Device profiles"); default per target: ${defaultDevices()}`)
    .option('--isa <isa>', `${variantChoices()} (default: best the device has)`)
    .option('--config <json>', 'knob values over the default, e.g. \'{"nTile":16}\'')
    .option('--json', 'machine-readable output');
}

/** Reads a user's IR file; a missing, oversized, too deep or malformed file is a KgenError naming it. */
export function readIr(path: string): unknown {
  return parseJsonInput(readUserFile(path, '--ir', SMALL_JSON.maxChars), { field: '--ir', source: pathText(path), expected: 'a JSON object describing an op (docs/ir.md)' });
}

/**
 * Reads a text file a user named, refusing directories, devices and FIFOs (which could block) and
 * anything over `maxBytes`, before reading it.
 */
export function readUserFile(path: string, field: string, maxBytes: number): string {
  checkPathText(path, field, 'a file path');
  return readRegularFile(path, field, 'a readable file', (st) => {
    if (st.size > maxBytes) throw new KgenError({ field, problem: `${pathText(path)} is ${st.size} bytes, more than the ${maxBytes} accepted`, expected: 'a smaller file' });
  }).toString('utf8');
}

/**
 * The --shape a user left out, as the op given needs it (an attention op's B,Hq,Hkv,Sq,Skv,D, not a
 * matmul's M,N,K); every kind's example when the op is unknown or not given.
 */
export function missingShapeError(shape: string | undefined, op: string | undefined, ir: unknown): KgenError {
  const given = op !== undefined ? catalogOp(op)?.kind : (ir as { kind?: unknown } | undefined)?.kind;
  const kinds = OP_KINDS.includes(given as OpKind) ? [given as OpKind] : OP_KINDS;
  return new KgenError({ field: '--shape', problem: shape === '' ? 'empty' : 'missing', expected: `dimensions like ${kinds.map((k) => irOf(k).exampleShape).join(' or ')}` });
}

/**
 * The host the CLI plans for: the CPU profile `KGEN_HOST_PROFILE` forces, else this machine. The
 * CLI is where kgen reads that variable; every library call that resolves `host` is handed this.
 */
export function cliHost(): HostOptions {
  return hostFromEnvironment(process.env);
}

export function toRequest(flags: KernelFlags): KernelRequest {
  const ir = flags.ir !== undefined ? readIr(flags.ir) : undefined;
  if (!flags.shape) throw missingShapeError(flags.shape, flags.op, ir);
  return {
    ...cliHost(),
    target: flags.target,
    op: flags.op,
    ir,
    irFile: flags.ir,
    shape: flags.shape,
    device: flags.device,
    isa: flags.isa,
    config: flags.config,
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Milliseconds as tables print them: three significant-ish digits; '-' for none. */
export function fmtMs(ms: number | undefined): string {
  return ms === undefined ? '-' : ms >= 100 ? ms.toFixed(0) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3);
}

/** Left-aligned text table. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** Adds --db to a command that reads or writes the tuning database. */
export function addDbFlag(cmd: Command): Command {
  return cmd.option('--db <path>', `tuning database (default: $${DB_ENV}, else $XDG_DATA_HOME/kgen/tuning.db or ~/.local/share/kgen/tuning.db)`);
}

/** Where the database a command uses is, and which flag or variable said so (for its errors). */
export function dbLocation(flags: { db?: string }): { path: string; field: string; explicit: boolean } {
  if (flags.db !== undefined) return { path: flags.db, field: '--db', explicit: true };
  if (process.env[DB_ENV]) return { path: process.env[DB_ENV]!, field: `$${DB_ENV}`, explicit: false };
  return { path: defaultDbPath(process.env), field: 'the default database', explicit: false };
}

/**
 * The error of a reading command that found no database where `flags` point: said as the place it
 * looked ($KGEN_DB or the default location; --db names a path that must exist, refused earlier).
 */
export function noTuningDb(flags: { db?: string }, hint: string): KgenError {
  const { path, field } = dbLocation(flags);
  const atDefault = field === 'the default database';
  return new KgenError({ field: atDefault ? '--db' : field, problem: `no tuning database at ${atDefault ? `the default location (${pathText(path)})` : pathText(path)} yet`, hint });
}

/** Checks the database a writing command will use, creating nothing (see `preflightTuningDb`). */
export function preflightDbForWriting(flags: { db?: string }): void {
  const { path, field } = dbLocation(flags);
  preflightTuningDb(path, { access: 'write', field });
}

/** Opens the tuning database to add records (tune, import): a new path becomes a new database. */
export function openDbForWriting(flags: { db?: string }): TuningDb {
  const { path, field } = dbLocation(flags);
  return openTuningDb(path, { access: 'write', field });
}

/**
 * Opens the tuning database to read it. A database that is not there yet is undefined at the
 * default location or $KGEN_DB (no records yet), and an error when --db named it.
 */
export function openDbForReading(flags: { db?: string }): TuningDb | undefined {
  const { path, field, explicit } = dbLocation(flags);
  if (!explicit && !existsSync(path)) return undefined;
  return openTuningDb(path, { access: 'read', field });
}

/**
 * Runs `body` with the database emit, plan and verify take a config from: none with --no-records or
 * --config (which wins over any record), else `openDbForReading`'s; closed when `body` has settled.
 */
export async function withRecords<T>(flags: { db?: string; records: boolean; config?: string }, body: (records: TuningDb | undefined) => T | Promise<T>): Promise<T> {
  const records = flags.records && flags.config === undefined ? openDbForReading(flags) : undefined;
  try {
    return await body(records);
  } finally {
    records?.close();
  }
}

/** Help of a reading command's `--device`: which records it keeps. */
export const RECORD_DEVICE_HELP = 'only the records of this device: a profile name (see `kgen devices`), a device the database holds records of, or your own profile file NAME.json (its name selects, its figures give the roofline)';

/**
 * What a reading command's `--device` (db list, db export, report) stands for: the records' device
 * name to keep, and the caller's own profile when a FILE.json named it (read as `getDevice` reads
 * it, so `DeviceOptions.profiles` resolves its records). A name is kgen's (`host`, a shipped
 * profile) or one the database holds records of (imported from a machine with its own profile);
 * any other is a KgenError on --device. Undefined when the flag was not given.
 */
export function recordDevice(device: string | undefined, db: TuningDb): { name: string; options: DeviceOptions } | undefined {
  if (device === undefined) return undefined;
  const host = cliHost();
  if (isProfileFile(device)) {
    const profile: DeviceProfile = getDevice(device, host);
    return { name: profile.name, options: { ...host, profiles: [profile] } };
  }
  const recorded = db.devices?.() ?? [...new Set(db.workloads().map((w) => w.device))];
  if (device === 'host' || recorded.includes(device) || isShippedProfile(device)) return { name: device, options: host };
  throw new KgenError({
    field: '--device',
    problem: `unknown device ${quoted(device)}: no profile of that name, and ${pathText(db.location)} holds no records of it`,
    expected: `one of ${[...new Set(['host', ...loadProfiles().map((d) => d.name), ...recorded])].join(', ')}, or a profile file (NAME.json)`,
    hint: '`kgen db list` shows the devices with records; pass your own profile as FILE.json',
  });
}
