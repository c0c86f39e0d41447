import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function findVersion(): string {
  for (const up of ['..', '../..']) {
    try {
      return (JSON.parse(readFileSync(join(here, up, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      // try the next candidate
    }
  }
  return '0.0.0';
}

/** kgen's version, from package.json; stamped into every manifest and generated file. */
export const KGEN_VERSION = findVersion();
