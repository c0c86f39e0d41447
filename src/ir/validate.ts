import { canonicalHash } from '../hash.js';
import { quoted, valueText } from '../io/message-text.js';
import { fail, isObject, oneOf, positiveInt } from './fields.js';
import { irOf, kindOfShape, OP_KINDS } from './ops.js';
import type { Op, Shape } from './types.js';

export { IDENTIFIER } from './fields.js';

/**
 * Checks untrusted JSON (a user's `--ir` file) and returns a normalised op. Every problem names the
 * field by its path (`ir.weight.groupSize`), what was expected and what to do; the op's own rules
 * are its kind's (src/ir/<op>.ts).
 */
export function validateOp(input: unknown, path = 'ir'): Op {
  if (!isObject(input)) fail(path, `got ${valueText(input)}`, 'a JSON object with a "kind" field');
  const kind = oneOf(input, 'kind', path, OP_KINDS);
  return irOf(kind).validate(input, path);
}

/** Stable identity of an op: equal ops hash equal whatever the key order of their JSON. */
export function opHash(op: Op): string {
  return canonicalHash(op);
}

/** Largest extent accepted for any dimension; keeps index arithmetic inside int64 and memory sane. */
export const MAX_DIM = 1 << 20;

/**
 * Parses `M=1,N=4096,K=4096` into a shape for `op` and checks it against the op's constraints
 * (a K that is not a multiple of the weight group is refused here, before anything is planned).
 */
export function parseShape(text: string, op: Op, field = '--shape'): Shape {
  const ir = irOf(op.kind);
  return validateShape(op, parseDimPairs(text, { dims: ir.dims, of: `${articleFor(op.kind)} ${op.kind}`, example: ir.exampleShape, field }), field);
}

/**
 * Reads `NAME=INTEGER` pairs separated by commas, each name one of `dims` and given at most once.
 * Values are not range-checked here: the caller validates them against what it needs.
 */
export function parseDimPairs(text: string, opts: { dims: readonly string[]; of: string; example: string; field: string }): Record<string, number> {
  const { dims, field } = opts;
  const values: Record<string, number> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z]+)=(\d+)$/.exec(part);
    if (!m) fail(field, `cannot read ${quoted(part, 40)}`, `NAME=INTEGER pairs like ${opts.example}`, 'separate pairs with commas');
    const [, key, num] = m;
    if (!dims.includes(key!)) fail(field, `unknown dimension "${key}"`, `the dimensions ${dims.join(', ')} of ${opts.of}`, `fix ${field} and run again`);
    if (key! in values) fail(field, `dimension ${key} given twice`, 'each dimension once', `fix ${field} and run again`);
    values[key!] = Number(num);
  }
  return values;
}

/** Checks a shape object (from `--shape`, a config file or the library API) against `op`. */
export function validateShape(op: Op, values: Record<string, unknown>, field = '--shape'): Shape {
  const shapeHint = `fix ${field.startsWith('--') ? field : 'the shape'} and run again`;
  const shapeFail = (f: string, problem: string, expected: string, hint = shapeHint): never => fail(f, problem, expected, hint);
  const ir = irOf(op.kind);
  const out: Record<string, number> = {};
  for (const d of ir.dims) {
    if (values[d] === undefined) shapeFail(field, `dimension ${d} is missing`, `all of ${ir.dims.join(', ')}, e.g. ${ir.exampleShape}`);
    out[d] = positiveInt(values[d], `${field} ${d}`, MAX_DIM, shapeHint);
  }
  for (const key of Object.keys(values)) {
    if (!ir.dims.includes(key)) shapeFail(field, `unknown dimension "${key}"`, `the dimensions ${ir.dims.join(', ')} of ${articleFor(op.kind)} ${op.kind}`);
  }
  const shape = out as unknown as Shape;
  ir.checkShape(op, shape, field, shapeFail);
  return shape;
}

/** `M=1,N=4096,K=4096`: dimensions in the op's order, whatever order the object holds them in. */
export function formatShape(shape: Shape): string {
  const kind = kindOfShape(shape);
  const dims = kind ? irOf(kind).dims : Object.keys(shape);
  return dims.map((d) => `${d}=${(shape as unknown as Record<string, number>)[d]}`).join(',');
}

/** "a matmul", "an attention". */
function articleFor(word: string): string {
  return /^[aeiou]/i.test(word) ? 'an' : 'a';
}
