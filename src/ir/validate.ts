import { KgenError } from '../errors.js';
import { canonicalHash } from '../hash.js';
import { quoted, valueText } from '../io/message-text.js';
import type { AttentionOp, Epilogue, MatmulOp, Op, Shape, WeightFormatName } from './types.js';
import { dimsOf } from './types.js';

/** Identifiers reach generated source verbatim, so they are held to a strict pattern. */
export const IDENTIFIER = /^[a-z][a-z0-9_]{0,47}$/;

const WEIGHT_FORMATS: readonly WeightFormatName[] = ['q35', 'q4', 'q8', 'q4_0', 'q8_0', 'f16'];
const ACT_DTYPES = ['f32', 'f16'] as const;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function fail(field: string, problem: string, expected: string, hint = 'fix the IR file and run again (docs/ir.md)'): never {
  throw new KgenError({ field, problem, expected, hint });
}
const failIr = fail;

function noUnknownKeys(obj: Json, path: string, allowed: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) fail(`${path}.${key}`, 'unknown field', `one of ${allowed.join(', ')}`);
  }
}

function oneOf<T extends string>(obj: Json, key: string, path: string, options: readonly T[], fallback?: T): T {
  const v = obj[key];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string' || !options.includes(v as T)) {
    fail(`${path}.${key}`, `got ${valueText(v, 40)}`, `one of ${options.join(', ')}`);
  }
  return v as T;
}

function bool(obj: Json, key: string, path: string, fallback: boolean): boolean {
  const v = obj[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') fail(`${path}.${key}`, `got ${valueText(v, 40)}`, 'true or false');
  return v;
}

function positiveInt(v: unknown, field: string, max = 1 << 30, hint?: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    fail(field, `got ${valueText(v, 40)}`, `an integer from 1 to ${max}`, hint);
  }
  return v;
}

function identifier(obj: Json, path: string): string {
  const v = obj.name;
  if (typeof v !== 'string' || !IDENTIFIER.test(v)) {
    fail(`${path}.name`, `got ${valueText(v, 40)}`, 'a lower-case identifier matching [a-z][a-z0-9_]* of at most 48 characters',
      'names become C and WGSL symbols, so only plain identifiers are allowed');
  }
  return v;
}

/**
 * Checks untrusted JSON (a user's `--ir` file) and returns a normalised op. Every problem names the
 * field by its path (`ir.weight.groupSize`), what was expected and what to do.
 */
export function validateOp(input: unknown, path = 'ir'): Op {
  if (!isObject(input)) fail(path, `got ${valueText(input)}`, 'a JSON object with a "kind" field');
  const kind = oneOf(input, 'kind', path, ['matmul', 'attention'] as const);
  return kind === 'matmul' ? validateMatmul(input, path) : validateAttention(input, path);
}

function validateMatmul(obj: Json, path: string): MatmulOp {
  noUnknownKeys(obj, path, ['kind', 'name', 'x', 'weight', 'y', 'epilogue']);
  const name = identifier(obj, path);
  const x = oneOf(obj, 'x', path, ACT_DTYPES, 'f32');
  const y = oneOf(obj, 'y', path, ACT_DTYPES, 'f32');
  const w = obj.weight;
  if (!isObject(w)) fail(`${path}.weight`, `got ${valueText(w)}`, 'an object like {"format": "q4", "groupSize": 64}');
  noUnknownKeys(w, `${path}.weight`, ['format', 'groupSize']);
  const format = oneOf(w, 'format', `${path}.weight`, WEIGHT_FORMATS);
  let groupSize: number | undefined;
  if (format === 'q4_0' || format === 'q8_0') {
    if (w.groupSize !== undefined && w.groupSize !== 32) {
      fail(`${path}.weight.groupSize`, `got ${valueText(w.groupSize)}`, '32 (fixed by the ggml block layout) or no value');
    }
    groupSize = 32;
  } else if (format === 'f16') {
    if (w.groupSize !== undefined) fail(`${path}.weight.groupSize`, 'f16 weights have no scale groups', 'no groupSize');
  } else {
    groupSize = w.groupSize === undefined ? 64 : positiveInt(w.groupSize, `${path}.weight.groupSize`, 4096);
    if (groupSize % 32 !== 0) {
      fail(`${path}.weight.groupSize`, `got ${groupSize}`, 'a multiple of 32 (kernels consume 32 weights at a time)');
    }
  }
  const e = obj.epilogue ?? {};
  if (!isObject(e)) fail(`${path}.epilogue`, `got ${valueText(e)}`, 'an object like {"bias": true, "activation": "silu"}');
  noUnknownKeys(e, `${path}.epilogue`, ['bias', 'activation', 'residual']);
  const epilogue: Epilogue = {
    bias: bool(e, 'bias', `${path}.epilogue`, false),
    activation: oneOf(e, 'activation', `${path}.epilogue`, ['none', 'silu', 'gelu'] as const, 'none'),
    residual: bool(e, 'residual', `${path}.epilogue`, false),
  };
  return { kind: 'matmul', name, x, weight: groupSize === undefined ? { format } : { format, groupSize }, y, epilogue };
}

function validateAttention(obj: Json, path: string): AttentionOp {
  noUnknownKeys(obj, path, ['kind', 'name', 'q', 'kvCache', 'kvGroupSize', 'o', 'causal', 'scale']);
  const name = identifier(obj, path);
  const q = oneOf(obj, 'q', path, ACT_DTYPES, 'f16');
  const o = oneOf(obj, 'o', path, ACT_DTYPES, 'f16');
  const kvCache = oneOf(obj, 'kvCache', path, ['f16', 'q8'] as const, 'f16');
  const causal = bool(obj, 'causal', path, true);
  const op: AttentionOp = { kind: 'attention', name, q, kvCache, o, causal };
  if (kvCache === 'q8') {
    op.kvGroupSize = obj.kvGroupSize === undefined ? 32 : positiveInt(obj.kvGroupSize, `${path}.kvGroupSize`, 1024);
  } else if (obj.kvGroupSize !== undefined) {
    fail(`${path}.kvGroupSize`, 'only a q8 KV cache has scale groups', 'no kvGroupSize with kvCache "f16"');
  }
  if (obj.scale !== undefined) {
    const s = obj.scale;
    if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0) fail(`${path}.scale`, `got ${valueText(s)}`, 'a finite number > 0');
    op.scale = s;
  }
  return op;
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
  const example = op.kind === 'matmul' ? 'M=1,N=4096,K=4096' : 'B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128';
  return validateShape(op, parseDimPairs(text, { dims: dimsOf(op.kind), of: `a ${op.kind}`, example, field }), field);
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
  const fail = (f: string, problem: string, expected: string, hint = shapeHint): never => failIr(f, problem, expected, hint);
  const dims = dimsOf(op.kind);
  const example = op.kind === 'matmul' ? 'M=1,N=4096,K=4096' : 'B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128';
  const out: Record<string, number> = {};
  for (const d of dims) {
    if (values[d] === undefined) fail(field, `dimension ${d} is missing`, `all of ${dims.join(', ')}, e.g. ${example}`);
    out[d] = positiveInt(values[d], `${field} ${d}`, MAX_DIM, shapeHint);
  }
  for (const key of Object.keys(values)) {
    if (!dims.includes(key)) fail(field, `unknown dimension "${key}"`, `the dimensions ${dims.join(', ')} of a ${op.kind}`);
  }
  if (op.kind === 'matmul') {
    const g = op.weight.groupSize;
    if (g !== undefined && out.K! % g !== 0) {
      fail(`${field} K`, `K=${out.K} is not a multiple of the ${op.weight.format} group size ${g}`,
        `K divisible by ${g}`, `pad K to ${Math.ceil(out.K! / g) * g} with zero weights, or use a format with a smaller group`);
    }
    if (op.weight.format === 'f16' && out.K! % 32 !== 0) {
      fail(`${field} K`, `K=${out.K} is not a multiple of 32`, 'K divisible by 32 for f16 weights (kernels consume 32 weights at a time)',
        `pad K to ${Math.ceil(out.K! / 32) * 32} with zero weights`);
    }
  } else {
    if (out.Hq! % out.Hkv! !== 0) fail(`${field} Hq`, `Hq=${out.Hq} is not a multiple of Hkv=${out.Hkv}`, 'Hq divisible by Hkv (grouped-query attention)');
    if (op.kvCache === 'q8' && out.D! % op.kvGroupSize! !== 0) {
      fail(`${field} D`, `D=${out.D} is not a multiple of the KV group size ${op.kvGroupSize}`, `D divisible by ${op.kvGroupSize}`);
    }
    if (op.causal && out.Sq! > out.Skv!) fail(`${field} Sq`, `Sq=${out.Sq} exceeds Skv=${out.Skv}`, 'Sq <= Skv for causal attention');
  }
  return out as unknown as Shape;
}

/** `M=1,N=4096,K=4096`: dimensions in the op's order, whatever order the object holds them in. */
export function formatShape(shape: Shape): string {
  const kind = 'M' in shape ? 'matmul' : 'attention';
  return dimsOf(kind).map((d) => `${d}=${(shape as unknown as Record<string, number>)[d]}`).join(',');
}
