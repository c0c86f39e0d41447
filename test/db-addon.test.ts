// better-sqlite3 whose native module does not load (an install with --ignore-scripts, or a build
// for another Node): every database is refused with what to rebuild, before any file is touched.
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { openTuningDb, preflightTuningDb } from '../src/db/sqlite.js';
import { KgenError } from '../src/errors.js';

vi.mock('better-sqlite3', () => ({
  default: class {
    constructor() {
      throw new Error('Could not locate the bindings file.');
    }
  },
}));

describe('a tuning database without a loadable better-sqlite3', () => {
  it.each([
    ['opening', (path: string) => openTuningDb(path)],
    ['checking', (path: string) => preflightTuningDb(path, { field: '$KGEN_DB' })],
    ['opening in memory', () => openTuningDb(':memory:')],
  ])('%s is a KgenError saying to rebuild it, and writes nothing', (_what, call) => {
    const path = join(mkdtempSync(join(tmpdir(), 'kgen-addon-')), 'sub', 'tuning.db');
    const err = (() => { try { call(path); } catch (e) { return e; } })();
    expect(err).toBeInstanceOf(KgenError);
    expect((err as KgenError).problem).toMatch(/^better-sqlite3 \(the tuning database's SQLite\) does not load in Node v[\d.]+: Could not locate the bindings file\.$/);
    expect((err as KgenError).hint).toMatch(/npm rebuild better-sqlite3/);
    expect(existsSync(join(path, '..'))).toBe(false);
  });
});
