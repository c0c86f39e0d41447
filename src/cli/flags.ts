import { KgenError } from '../errors.js';
import { quoted } from '../io/message-text.js';
import { checkPathText } from '../io/output.js';

/**
 * The number grammar of every flag: decimal digits only, as in `--shape M=1,N=4096` (no sign,
 * exponent, hex or fraction), within [min, max]. An empty value is an error, never "not given".
 */
export function parseCount(text: string, field: string, range: { min?: number; max?: number } = {}): number {
  const min = range.min ?? 1;
  const max = range.max ?? 2 ** 31 - 1;
  const expected = `an integer from ${min} to ${max} (decimal digits only)`;
  if (!/^\d{1,15}$/.test(text)) throw new KgenError({ field, problem: text === '' ? 'empty' : `got ${quoted(text, 40)}`, expected, hint: `fix ${field} and run again` });
  const n = Number(text);
  if (n < min || n > max) throw new KgenError({ field, problem: `got ${n}`, expected, hint: `fix ${field} and run again` });
  return n;
}

/** `parseCount` for an optional flag. */
export function optionalCount(text: string | undefined, field: string, range?: { min?: number; max?: number }): number | undefined {
  return text === undefined ? undefined : parseCount(text, field, range);
}

/** A seed: any integer from 0 to 2^32 - 1. */
export function parseSeed(text: string, field = '--seed'): number {
  return parseCount(text, field, { min: 0, max: 2 ** 32 - 1 });
}

/** `10m`, `90s`, `1h`, `500ms` or plain seconds, in milliseconds; digits as `parseCount` takes them. */
export function parseDuration(text: string, field: string): number {
  const m = /^(\d{1,9}(?:\.\d{1,6})?)(ms|s|m|h)?$/.exec(text);
  if (!m) throw new KgenError({ field, problem: text === '' ? 'empty' : `got ${quoted(text, 40)}`, expected: 'a duration like 90s, 10m, 1h or 500ms', hint: `fix ${field} and run again` });
  const scale = { ms: 1, s: 1e3, m: 60e3, h: 3600e3 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const ms = Number(m[1]) * scale;
  if (ms <= 0) throw new KgenError({ field, problem: `got ${quoted(text, 40)}`, expected: 'a duration above zero, like 90s', hint: `fix ${field} and run again` });
  return ms;
}

/** A path flag that was given: empty or NUL-holding values are refused, never taken as "not given". */
export function optionalPath(text: string | undefined, field: string, what = 'a path'): string | undefined {
  if (text === undefined) return undefined;
  checkPathText(text, field, what);
  return text;
}
