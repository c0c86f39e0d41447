import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Vitest global setup (vitest.config.ts, vitest.gpu.config.ts): one fresh temporary directory per
 * run, removed with everything in it when the run ends. TMPDIR points at it before any test worker
 * starts, so `os.tmpdir()` in the workers, and every process they start that inherits the
 * environment (bin/kgen, compilers, nvcc, Chromium), makes its temporary files there rather than
 * leaving them in the system's temp folder: the suite makes hundreds of directories (one per
 * `mkdtempSync` of a test) and does not remove them all itself.
 */
export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'kgen-test-run-'));
  // As /tmp is (sticky, anyone may write): tests run kgen as another user (db.test.ts, as nobody),
  // which reaches its files and makes its private copies here too.
  chmodSync(dir, 0o1777);
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = dir;
  return () => {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    rmSync(dir, { recursive: true, force: true });
  };
}
