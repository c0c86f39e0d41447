import { readFileSync } from 'node:fs';
import { packagePath } from './package-files.js';

/** kgen's version, from package.json; stamped into every manifest and generated file. */
export const KGEN_VERSION = (JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version: string }).version;
