import { readFileSync, statSync, type Stats } from 'node:fs';
import { KgenError } from '../errors.js';
import { pathText } from './message-text.js';
import { fsError } from './output.js';

/**
 * What is at `path`, when it is a regular file: a missing path, a directory, a device or a FIFO
 * (which a read could block on) is a KgenError naming `field` and what was `expected`.
 */
export function statRegularFile(path: string, field: string, expected: string): Stats {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw fsError(field, 'read', path, e, 'check the path');
  }
  if (!st.isFile()) throw new KgenError({ field, problem: `${pathText(path)} is not a regular file`, expected });
  return st;
}

/**
 * The bytes of the regular file at `path` (see `statRegularFile`), after `check` has seen its
 * size: a caller refuses a wrong or oversized file before anything is read.
 */
export function readRegularFile(path: string, field: string, expected: string, check: (st: Stats) => void = () => {}): Buffer {
  check(statRegularFile(path, field, expected));
  try {
    return readFileSync(path);
  } catch (e) {
    throw fsError(field, 'read', path, e, 'check the path');
  }
}
