import { randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { lstatSync, mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InternalError, KgenError } from '../errors.js';
import { fileHash } from '../hash.js';
import { pathText } from './message-text.js';

/**
 * Safe output: the one way kgen writes a file or directory a user named (`emit -o`, `pack -o`,
 * `db export -o`, the tuning database's directory).
 *
 * Invariants:
 * - a user's file is never deleted, and never replaced unless `force` is set and it is a regular
 *   file kgen is about to write; directories, symbolic links, devices, FIFOs and sockets are never
 *   replaced, with or without `force`; the only files ever deleted are an earlier output's that its
 *   caller names with the digest of the bytes kgen wrote then (`DirectoryOutputOptions.earlier`),
 *   and only while they are regular files holding exactly those bytes;
 * - every write goes to a temporary name beside its target first and is renamed into place, so a
 *   target holds either its old bytes or all of its new ones; a new output directory appears whole
 *   or not at all, and directories created on the way are removed again when a write fails;
 * - missing directories are created one component at a time (never `mkdir -p`, which spins forever
 *   under /proc in Node 20), each failure a KgenError naming the flag, the path and what to do.
 */
export interface OutputOptions {
  /** The flag or field the path came from (`--out`, `--db`), named in every error. */
  field: string;
  /** Replace regular files of the same names (kgen's own outputs from an earlier run). */
  force?: boolean;
  /**
   * The files the command reads (`--in`, `--db`): a target that is one of them (the same file,
   * through any name, link or hard link) is refused, with or without `force`.
   */
  inputs?: readonly { path: string; field: string }[];
}

/** What an fs error code means to someone who typed the path. */
const FS_PROBLEMS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  ENOTDIR: 'a component of the path is a file, not a directory',
  EISDIR: 'it is a directory',
  ENOENT: 'no such file or directory',
  ENAMETOOLONG: 'the name is too long',
  ELOOP: 'too many symbolic links',
  EEXIST: 'it already exists',
  EBUSY: 'it is busy',
  EXDEV: 'a rename would cross file systems',
  EINVAL: 'the file system refuses it',
  EIO: 'an input/output error',
};

/** One line for a failed file-system call on `path`: the path and the reason, never a stack. */
export function fsError(field: string, action: string, path: string, e: unknown, hint = 'choose another path'): KgenError {
  const code = (e as NodeJS.ErrnoException).code;
  const problem = (code && FS_PROBLEMS[code]) ?? (code || (e as Error).message?.split('\n')[0] || String(e));
  return new KgenError({ field, problem: `cannot ${action} ${pathText(path)}: ${problem}`, hint });
}

/** Refuses paths no command can use: empty, or holding a NUL byte (which the OS cannot take). */
export function checkPathText(path: string, field: string, what = 'a path'): void {
  if (path === '') throw new KgenError({ field, problem: 'empty', expected: what, hint: `an empty value names nothing: give ${field} a path, or drop the flag` });
  if (path.includes('\0')) throw new KgenError({ field, problem: `${pathText(path)} holds a NUL byte`, expected: what });
}

/**
 * What is at `path` (following a final link with `follow`, else the link itself), or undefined
 * when nothing is there (a dangling link counts as nothing when followed); any other failure is a
 * KgenError.
 */
function statOrNone(path: string, field: string, follow: boolean): Stats | undefined {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fsError(field, 'use', path, e);
  }
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'a special file';
}

/**
 * Creates the directory `path` and any missing parents, one component at a time. Returns the
 * directories it created, outermost first, so a caller can remove them again on failure.
 */
export function ensureDirectory(path: string, field: string): string[] {
  const missing: string[] = [];
  let p = resolve(path);
  for (;;) {
    const st = statOrNone(p, field, true);
    if (st) {
      if (!st.isDirectory()) throw new KgenError({ field, problem: `${pathText(p)} is ${kindOf(st) === 'a special file' ? 'a file' : kindOf(st)}, not a directory`, hint: 'choose a path under a directory' });
      break;
    }
    missing.push(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  const created: string[] = [];
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir);
      created.push(dir);
    } catch (e) {
      // Another process (a second tuner sharing the cache) made it first: as good as ours.
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && statOrNone(dir, field, true)?.isDirectory()) continue;
      removeCreated(created);
      throw fsError(field, 'create the directory', dir, e);
    }
  }
  return created;
}

/** Removes directories `ensureDirectory` created, innermost first, each only while it is empty. */
export function removeCreated(created: string[]): void {
  for (const dir of [...created].reverse()) {
    try {
      rmdirSync(dir);
    } catch {
      return; // something else is in it now: leave it
    }
  }
}

/** A fresh name beside `target` for a temporary file or directory. */
function tempBeside(target: string): string {
  return join(dirname(target), `.${basename(target)}.kgen-tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Writes a new file exclusively (never through an existing name or link) at `path`. */
function writeExclusive(path: string, content: string | Uint8Array, mode?: number): void {
  writeFileSync(path, content, { flag: 'wx', mode });
}

/**
 * Checks the entry at `path` before kgen writes a file there: nothing, or a regular file with
 * `force`. Returns the permission bits to keep when a file is replaced.
 */
function checkFileTarget(path: string, opts: OutputOptions, shown = path): { exists: boolean; mode?: number } {
  const st = statOrNone(path, opts.field, false);
  if (!st) return { exists: false };
  if (!st.isFile()) {
    const link = st.isSymbolicLink() ? ' (kgen replaces only regular files; give the path the link points to)' : '';
    throw new KgenError({ field: opts.field, problem: `${pathText(shown)} is ${kindOf(st)}${link}`, expected: 'a regular file or a new name', hint: 'choose another path; kgen never replaces it' });
  }
  for (const input of opts.inputs ?? []) {
    const read = statOrNone(input.path, input.field, true);
    if (read && read.dev === st.dev && read.ino === st.ino) {
      throw new KgenError({ field: opts.field, problem: `${pathText(shown)} is the file ${input.field} reads`, expected: 'another file than the input', hint: 'choose another path: writing there would destroy the input' });
    }
  }
  if (!opts.force) throw new KgenError({ field: opts.field, problem: `${pathText(shown)} already exists`, expected: 'a new file name', hint: 'pass --force to replace it, or choose another path' });
  return { exists: true, mode: st.mode & 0o7777 };
}

/**
 * Writes one file all or nothing: a temporary file beside it, then a rename. An existing regular
 * file is replaced only with `force` (keeping its permission bits); anything else is refused.
 */
export function writeOutputFile(path: string, content: string | Uint8Array, opts: OutputOptions): void {
  checkPathText(path, opts.field, 'a file path');
  const target = resolve(path);
  const { mode } = checkFileTarget(target, opts, path);
  const created = ensureDirectory(dirname(target), opts.field);
  const tmp = tempBeside(target);
  try {
    writeExclusive(tmp, content, mode);
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { force: true });
    removeCreated(created);
    throw fsError(opts.field, 'write', path, e);
  }
}

/**
 * Writes several files that belong together (packed weights and their sidecar) all or nothing, as
 * far as the file system allows: every target is checked as `writeOutputFile` checks one, before
 * anything is written; all contents go to temporary names first and are renamed into place only
 * once every one of them was written.
 */
export function writeOutputFiles(files: readonly { path: string; content: string | Uint8Array }[], opts: OutputOptions): void {
  const targets = files.map((f) => {
    checkPathText(f.path, opts.field, 'a file path');
    const target = resolve(f.path);
    return { ...f, target, mode: checkFileTarget(target, opts, f.path).mode };
  });
  const created: string[] = [];
  for (const t of targets) created.push(...ensureDirectory(dirname(t.target), opts.field));
  const temps: string[] = [];
  let at = targets[0]!;
  try {
    for (const t of targets) {
      at = t;
      const tmp = tempBeside(t.target);
      writeExclusive(tmp, t.content, t.mode);
      temps.push(tmp);
    }
    for (const [i, t] of targets.entries()) {
      at = t;
      renameSync(temps[i]!, t.target);
    }
  } catch (e) {
    for (const tmp of temps) rmSync(tmp, { force: true });
    removeCreated(created);
    throw fsError(opts.field, 'write', at.path, e);
  }
}

/** What `writeOutputDirectory` did. */
export interface DirectoryWrite {
  /** The directory did not exist and was created with the files in it. */
  created: boolean;
  /** Files that were there before and were replaced (only with `force`). */
  replaced: string[];
  /** Files of the earlier output (`DirectoryOutputOptions.earlier`) that were removed (only with `force`). */
  removed: string[];
}

export interface DirectoryOutputOptions extends OutputOptions {
  /**
   * The files an earlier output wrote into the directory (an earlier `emit -o`, as its manifest
   * lists them), by plain name, each with the hex sha256 (`fileHash`) of the bytes written then.
   * With `force`, the ones the new output does not replace are removed once the new files are in
   * place, so the directory does not hold a mix of two outputs: each only while it is a regular
   * file holding exactly those bytes. One that is gone is skipped; one that changed since, or is no
   * longer a regular file, is the user's now: it is refused, naming it, before anything is written.
   * Without `force` nothing is removed (the earlier output's files of the same names refuse the write).
   */
  earlier?: Readonly<Record<string, string>>;
}

/**
 * Writes `files` (plain names, no directories) into `dir`.
 *
 * - `dir` does not exist: the files go into a temporary sibling directory that is then renamed to
 *   `dir`, so the directory appears whole or not at all.
 * - `dir` exists: the files are written beside what is there, and nothing else in it is touched
 *   but an earlier output's unchanged files (`opts.earlier`, with `force`). A name that already
 *   exists is refused (without `force`) before anything is written; with `force` only regular files
 *   are replaced. All files are written to temporary names first and renamed into place only when
 *   every one of them was written; the earlier output's other files are removed after that.
 */
export function writeOutputDirectory(dir: string, files: Record<string, string | Uint8Array>, opts: DirectoryOutputOptions): DirectoryWrite {
  checkPathText(dir, opts.field, 'a directory path');
  for (const name of Object.keys(files)) {
    if (!name || name !== basename(name) || name === '.' || name === '..') throw new InternalError(`output file name ${JSON.stringify(name)} is not a plain name`);
  }
  const target = resolve(dir);
  const st = statOrNone(target, opts.field, true);
  if (st && !st.isDirectory()) {
    throw new KgenError({ field: opts.field, problem: `${pathText(dir)} exists and is ${st.isFile() ? 'a file' : kindOf(st)}`, expected: 'a directory path', hint: 'choose another -o' });
  }
  return st ? writeIntoExisting(target, dir, files, opts) : writeNewDirectory(target, dir, files, opts);
}

/**
 * Writes a new directory tree at `dir`, all or nothing: `files` are paths relative to it ('a/b.c':
 * every component a plain name), written into a temporary sibling that is renamed to `dir` once
 * complete. `dir` must not exist: kgen never writes into or over a directory tree it did not just
 * make (there is no `force` for this).
 */
export function writeOutputTree(dir: string, files: Record<string, string | Uint8Array>, opts: OutputOptions): void {
  checkPathText(dir, opts.field, 'a directory path');
  for (const name of Object.keys(files)) {
    const parts = name.split('/');
    if (parts.some((c) => !c || c !== basename(c) || c === '.' || c === '..')) throw new InternalError(`output path ${JSON.stringify(name)} is not a relative path of plain names`);
  }
  const target = resolve(dir);
  const st = statOrNone(target, opts.field, false);
  if (st) {
    throw new KgenError({ field: opts.field, problem: `${pathText(dir)} already exists (${kindOf(st) === 'a special file' ? 'a file' : kindOf(st)})`, expected: 'a new directory', hint: 'kgen writes a package whole and never into or over an existing one: choose a new path, or remove the old package yourself' });
  }
  writeNewDirectory(target, dir, files, opts);
}

function writeNewDirectory(target: string, shown: string, files: Record<string, string | Uint8Array>, opts: OutputOptions): DirectoryWrite {
  const created = ensureDirectory(dirname(target), opts.field);
  const tmp = tempBeside(target);
  try {
    mkdirSync(tmp);
  } catch (e) {
    removeCreated(created);
    throw fsError(opts.field, 'create a directory beside', shown, e);
  }
  try {
    for (const [name, content] of Object.entries(files)) {
      // Nested names (writeOutputTree): their folders inside the fresh temporary directory first.
      if (name.includes('/')) mkdirSync(join(tmp, dirname(name)), { recursive: true });
      writeExclusive(join(tmp, name), content);
    }
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    removeCreated(created);
    if ((e as NodeJS.ErrnoException).code === 'ENOTEMPTY' || (e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new KgenError({ field: opts.field, problem: `${pathText(shown)} appeared while kgen was writing it`, hint: 'run again' });
    }
    throw fsError(opts.field, 'write into', shown, e);
  }
  return { created: true, replaced: [], removed: [] };
}

function writeIntoExisting(target: string, shown: string, files: Record<string, string | Uint8Array>, opts: DirectoryOutputOptions): DirectoryWrite {
  const names = Object.keys(files);
  const existing: string[] = [];
  const modes = new Map<string, number | undefined>();
  for (const name of names) {
    const path = join(target, name);
    const st = statOrNone(path, opts.field, false);
    if (st && !st.isFile()) {
      throw new KgenError({ field: opts.field, problem: `${pathText(join(shown, name))} is ${kindOf(st)}`, expected: 'a regular file or a new name', hint: 'move it away or choose another -o; kgen never replaces it' });
    }
    if (st) {
      existing.push(name);
      modes.set(name, st.mode & 0o7777);
    }
  }
  if (existing.length && !opts.force) {
    throw new KgenError({
      field: opts.field,
      problem: `${pathText(shown)} already holds ${existing.join(', ')}`,
      expected: 'a directory without files of those names (other files stay as they are)',
      hint: 'pass --force to replace those files (nothing else in the directory is touched), or choose another -o',
    });
  }
  const stale = opts.force ? earlierFilesToRemove(target, shown, files, opts) : [];
  const temps = new Map<string, string>();
  try {
    for (const name of names) {
      const tmp = tempBeside(join(target, name));
      writeExclusive(tmp, files[name]!, modes.get(name));
      temps.set(name, tmp);
    }
    for (const [name, tmp] of temps) {
      renameSync(tmp, join(target, name));
      temps.delete(name);
    }
  } catch (e) {
    for (const tmp of temps.values()) {
      try {
        unlinkSync(tmp);
      } catch {
        /* already gone */
      }
    }
    throw fsError(opts.field, 'write into', shown, e);
  }
  return { created: false, replaced: existing, removed: removeEarlierFiles(target, shown, stale, opts.field) };
}

/** Whether `path` is a regular file (not a link) holding exactly the bytes whose `fileHash` is `digest`. */
function holdsBytes(path: string, digest: string, field: string): boolean {
  const st = statOrNone(path, field, false);
  if (!st?.isFile()) return false;
  try {
    return fileHash(readFileSync(path)) === digest;
  } catch (e) {
    throw fsError(field, 'read', path, e, 'check its permissions, or move it away');
  }
}

/**
 * The files of `opts.earlier` that the new output does not replace and that are still there, each
 * checked to hold the bytes the earlier output wrote; any other is refused, naming it.
 */
function earlierFilesToRemove(target: string, shown: string, files: Record<string, string | Uint8Array>, opts: DirectoryOutputOptions): { name: string; digest: string }[] {
  const stale: { name: string; digest: string }[] = [];
  const changed: string[] = [];
  for (const [name, digest] of Object.entries(opts.earlier ?? {})) {
    if (!name || name !== basename(name) || name === '.' || name === '..') throw new InternalError(`earlier output file name ${JSON.stringify(name)} is not a plain name`);
    if (name in files) continue;
    const path = join(target, name);
    if (!statOrNone(path, opts.field, false)) continue;
    if (holdsBytes(path, digest, opts.field)) stale.push({ name, digest });
    else changed.push(name);
  }
  if (changed.length) {
    throw new KgenError({
      field: opts.field,
      problem: `${pathText(shown)} holds ${changed.join(', ')} from the earlier kernel, changed since kgen wrote ${changed.length === 1 ? 'it' : 'them'}`,
      expected: "the earlier kernel's files as kgen wrote them (--force removes those the new kernel does not replace, and never a changed file)",
      hint: `move ${changed.length === 1 ? 'it' : 'them'} out of the directory (or delete ${changed.length === 1 ? 'it' : 'them'}) and run again, or choose another -o`,
    });
  }
  return stale;
}

/**
 * Removes the earlier output's files `earlierFilesToRemove` checked, each only while it still holds
 * the same bytes. Returns the names removed; a file that changed meanwhile or cannot be removed is
 * kept and named in a KgenError (the new files are in place by then).
 */
function removeEarlierFiles(target: string, shown: string, stale: readonly { name: string; digest: string }[], field: string): string[] {
  const removed: string[] = [];
  const kept: string[] = [];
  for (const { name, digest } of stale) {
    const path = join(target, name);
    try {
      if (!holdsBytes(path, digest, field)) {
        kept.push(name);
        continue;
      }
      unlinkSync(path);
      removed.push(name);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') kept.push(name);
    }
  }
  if (kept.length) {
    throw new KgenError({
      field,
      problem: `wrote the new files into ${pathText(shown)} but kept ${kept.join(', ')} from the earlier kernel (changed while kgen was writing, or not removable)`,
      hint: `remove ${kept.length === 1 ? 'it' : 'them'} yourself if ${kept.length === 1 ? 'it is' : 'they are'} not yours`,
    });
  }
  return removed;
}
