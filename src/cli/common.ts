import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { KernelRequest } from '../api/request.js';
import { DB_ENV, defaultDbPath } from '../db/location.js';
import { openTuningDb } from '../db/sqlite.js';
import type { TuningDb } from '../db/types.js';
import { KgenError } from '../errors.js';

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

export function addKernelFlags(cmd: Command, defaults: { target?: string } = {}): Command {
  return cmd
    .option('--target <target>', 'c | cuda | wgsl | wasm', defaults.target ?? 'c')
    .option('--op <name>', 'catalog op (see `kgen ops`)')
    .option('--ir <file>', 'your own op as a JSON file (instead of --op)')
    .option('--shape <dims>', 'dimensions, e.g. M=1,N=4096,K=4096 (attention: B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128)')
    .option('--device <name>', 'device profile (see `kgen devices`); default per target: c host, cuda rtx4090, wgsl webgpu, wasm wasm-simd128')
    .option('--isa <isa>', 'C variant: scalar | avx2 | avx512 | neon (default: best the device has)')
    .option('--config <json>', 'knob values over the default, e.g. \'{"nTile":16}\'')
    .option('--json', 'machine-readable output');
}

/** Reads a user's IR file; a missing or malformed file is a KgenError naming it. */
export function readIr(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new KgenError({ field: '--ir', problem: `cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, expected: 'a readable JSON file' });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KgenError({ field: '--ir', problem: `${path} is not valid JSON (${(e as Error).message})`, expected: 'a JSON object describing an op (see docs/ir.md)' });
  }
}

export function toRequest(flags: KernelFlags): KernelRequest {
  if (!flags.shape) throw new KgenError({ field: '--shape', problem: 'missing', expected: 'dimensions like M=1,N=4096,K=4096' });
  return {
    target: flags.target,
    op: flags.op,
    ir: flags.ir !== undefined ? readIr(flags.ir) : undefined,
    shape: flags.shape,
    device: flags.device,
    isa: flags.isa,
    config: flags.config,
  };
}

/**
 * Writes `files` into `dir` all or nothing: everything goes to a fresh sibling directory first,
 * which then replaces `dir`. An interrupted or failed write never leaves a half-written `dir`.
 */
export function writeDirAtomically(dir: string, files: Record<string, string | Uint8Array>): void {
  const target = resolve(dir);
  if (existsSync(target) && !statSync(target).isDirectory()) {
    throw new KgenError({ field: '--out', problem: `${dir} exists and is not a directory`, expected: 'a directory path', hint: 'choose another -o' });
  }
  const parent = dirname(target);
  mkdirSync(parent, { recursive: true });
  const tmp = join(parent, `.${basename(target)}.kgen-tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(tmp, name), content);
    if (existsSync(target)) {
      const old = join(parent, `.${basename(target)}.kgen-old-${process.pid}`);
      renameSync(target, old);
      renameSync(tmp, target);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, target);
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Writes one file all or nothing (temporary file in the same directory, then rename). */
export function writeFileAtomically(path: string, content: Uint8Array): void {
  const target = resolve(path);
  mkdirSync(dirname(target), { recursive: true });
  const tmp = join(dirname(target), `.${basename(target)}.kgen-tmp-${process.pid}`);
  try {
    writeFileSync(tmp, content);
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
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

/** The database a command uses: --db, else the default location. */
export function dbPath(flags: { db?: string }): string {
  return flags.db ?? defaultDbPath(process.env);
}

/**
 * Opens the tuning database. With `ifExists`, a database that does not exist yet is no error (emit
 * without records) unless --db named it explicitly.
 */
export function openDb(flags: { db?: string }, opts: { ifExists?: boolean } = {}): TuningDb | undefined {
  const path = dbPath(flags);
  if (opts.ifExists && !existsSync(path)) {
    if (flags.db) throw new KgenError({ field: '--db', problem: `${path} does not exist`, expected: 'a database written by `kgen tune` or `kgen db import`', hint: 'check the path, or drop --db' });
    return undefined;
  }
  return openTuningDb(path, { mustExist: opts.ifExists });
}
