import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InternalError } from './errors.js';

/** The package root: the folder holding kgen's package.json, from src/ (tests) or dist/src/ (built). */
const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++, dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'templates'))) return dir;
  }
  throw new InternalError(`package root not found above ${dirname(fileURLToPath(import.meta.url))}`);
})();

/** A path inside the installed package: `templates`, `targets`, `tuning-db`, `package.json`. */
export function packagePath(...parts: string[]): string {
  return join(ROOT, ...parts);
}
