import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * kgen's temporary directories (builds, a run's input files, a copy of a database being read).
 * Each is named `<prefix><pid>-XXXXXX` in the OS temp folder: the process that made it removes it,
 * and where that process was killed (SIGKILL, a crash, a machine out of memory) a later kgen can
 * tell from the pid that nobody will. A run's inputs can be a KV cache of hundreds of MB. Each
 * holds a marker file, `TEMP_MARKER`: a directory of the same shape of name without it is not
 * kgen's, and the sweep leaves it alone. The marker names the pid namespace of the process that
 * made it (Linux: `/proc/self/ns/pid`), because a pid says nothing across namespaces: containers
 * sharing one temp folder see each other's directories but not each other's processes, and a
 * long tune in one must not lose its files to a sweep in another.
 */

/** The file `makeTempDir` leaves in each directory it makes: the sweep removes only those. */
const TEMP_MARKER = '.kgen-temp';

/** The names `makeTempDir` gives: `kgen-` and more words, the pid, mkdtemp's six characters. */
const TEMP_NAME = /^kgen-(?:[a-z0-9]+-)+?(\d+)-[A-Za-z0-9]{6}$/;

/**
 * A directory whose marker names another pid namespace (or none: an older kgen, or a platform
 * without namespaces seen from Linux) is swept only once it is this old: its process cannot be
 * asked about, and no kgen run keeps one directory unchanged for a day.
 */
const FOREIGN_MIN_AGE_MS = 24 * 3_600_000;

/** This process's pid namespace (`pid:[4026531836]`), or '' where the platform has none. */
function pidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return '';
  }
}

/** A new temporary directory `<prefix><pid>-XXXXXX` with kgen's marker; `prefix` starts with `kgen-` and ends with `-`. */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}${process.pid}-`));
  writeFileSync(join(dir, TEMP_MARKER), pidNamespace());
  return dir;
}

/** Whether a process with this pid exists (EPERM: it does, another user's). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes kgen temporary directories (named by `makeTempDir` and holding its marker) whose process
 * is gone and that were last changed more than `minAgeMs` ago: the pid is asked about only where the
 * marker names this process's pid namespace; a directory of another namespace (or a marker naming
 * none) is removed only after `FOREIGN_MIN_AGE_MS`. Anything it cannot read or remove is left
 * alone. Returns how many it removed. `namespace` stands in for this process's (tests).
 */
export function sweepOrphanTempDirs(opts: { dir?: string; minAgeMs?: number; now?: number; namespace?: string } = {}): number {
  const dir = opts.dir ?? tmpdir();
  const minAgeMs = opts.minAgeMs ?? 10 * 60_000;
  const now = opts.now ?? Date.now();
  const namespace = opts.namespace ?? pidNamespace();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const m = TEMP_NAME.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    const path = join(dir, name);
    try {
      const st = statSync(path);
      const marker = join(path, TEMP_MARKER);
      if (!st.isDirectory() || now - st.mtimeMs < minAgeMs || !existsSync(marker)) continue;
      const ours = namespace !== '' && readFileSync(marker, 'utf8') === namespace;
      if (!ours && now - st.mtimeMs < FOREIGN_MIN_AGE_MS) continue;
      rmSync(path, { recursive: true, force: true });
      removed++;
    } catch {
      // Another user's, or removed meanwhile: not ours to report.
    }
  }
  return removed;
}
