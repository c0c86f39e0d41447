import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InternalError } from './errors.js';

/**
 * The folders of the package kgen reads at run time, beside `package.json`. Invariant: every path
 * `packagePath` builds starts with one of these, and package.json's `files` ships each of them
 * (test/npm-package.test.ts packs kgen and checks), so an installed kgen finds them.
 */
export const RUNTIME_FOLDERS = ['templates', 'targets', 'tuning-db'] as const;
export type RuntimeFolder = (typeof RUNTIME_FOLDERS)[number];

/** The package root: the folder holding kgen's package.json, from src/ (tests) or dist/src/ (built). */
const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++, dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'templates'))) return dir;
  }
  throw new InternalError(`package root not found above ${dirname(fileURLToPath(import.meta.url))}`);
})();

/** A path inside the installed package: under one of `RUNTIME_FOLDERS`, or its `package.json`. */
export function packagePath(first: RuntimeFolder | 'package.json', ...rest: string[]): string {
  return join(ROOT, first, ...rest);
}
