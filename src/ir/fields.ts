import { KgenError } from '../errors.js';
import { valueText } from '../io/message-text.js';

/**
 * The field checks every op's IR validator is made of. Each names the field by its path
 * (`ir.weight.groupSize`), says what was expected and, by default, what to do.
 */

/** Identifiers reach generated source verbatim, so they are held to a strict pattern. */
export const IDENTIFIER = /^[a-z][a-z0-9_]{0,47}$/;

export const ACT_DTYPES = ['f32', 'f16'] as const;

export type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export const IR_HINT = 'fix the IR file and run again (docs/ir.md)';

export function fail(field: string, problem: string, expected: string, hint = IR_HINT): never {
  throw new KgenError({ field, problem, expected, hint });
}

export function noUnknownKeys(obj: Json, path: string, allowed: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) fail(`${path}.${key}`, 'unknown field', `one of ${allowed.join(', ')}`);
  }
}

export function oneOf<T extends string>(obj: Json, key: string, path: string, options: readonly T[], fallback?: T): T {
  const v = obj[key];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string' || !options.includes(v as T)) {
    fail(`${path}.${key}`, `got ${valueText(v, 40)}`, `one of ${options.join(', ')}`);
  }
  return v as T;
}

export function bool(obj: Json, key: string, path: string, fallback: boolean): boolean {
  const v = obj[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') fail(`${path}.${key}`, `got ${valueText(v, 40)}`, 'true or false');
  return v;
}

export function positiveInt(v: unknown, field: string, max = 1 << 30, hint?: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    fail(field, `got ${valueText(v, 40)}`, `an integer from 1 to ${max}`, hint);
  }
  return v;
}

export function identifier(obj: Json, path: string): string {
  const v = obj.name;
  if (typeof v !== 'string' || !IDENTIFIER.test(v)) {
    fail(`${path}.name`, `got ${valueText(v, 40)}`, 'a lower-case identifier matching [a-z][a-z0-9_]* of at most 48 characters',
      'names become C and WGSL symbols, so only plain identifiers are allowed');
  }
  return v;
}

/** A number field that must be finite and above zero. */
export function positiveNumber(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(field, `got ${valueText(v)}`, 'a finite number > 0');
  return v;
}
