import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { KgenError } from '../src/errors.js';
import { CATALOG } from '../src/ir/catalog.js';
import type { AttentionOp } from '../src/ir/types.js';
import { opHash, parseShape, validateOp } from '../src/ir/validate.js';
import { opKit } from '../src/ops/index.js';
import { TestDataCache } from '../src/ops/test-data-cache.js';

function errorOf(fn: () => unknown): KgenError {
  try {
    fn();
  } catch (e) {
    if (e instanceof KgenError) return e;
    throw e;
  }
  throw new Error('expected a KgenError');
}

describe('IR validation', () => {
  it('accepts every catalog op unchanged', () => {
    for (const op of Object.values(CATALOG)) expect(validateOp(JSON.parse(JSON.stringify(op)))).toEqual(op);
  });

  it('fills defaults for a minimal user matmul', () => {
    expect(validateOp({ kind: 'matmul', name: 'ffn_up', weight: { format: 'q4' } })).toEqual({
      kind: 'matmul', name: 'ffn_up', x: 'f32', y: 'f32', weight: { format: 'q4', groupSize: 64 },
      epilogue: { bias: false, activation: 'none', residual: false },
    });
  });

  it.each([
    ['x); system("rm -rf /"); //', 'ir.name'],
    ['evil\nname', 'ir.name'],
    ['Upper', 'ir.name'],
    ['a'.repeat(49), 'ir.name'],
    ['__attribute__', 'ir.name'],
  ])('refuses a name that could smuggle text into source: %j', (name, field) => {
    const e = errorOf(() => validateOp({ kind: 'matmul', name, weight: { format: 'q4' } }));
    expect(e.field).toBe(field);
    expect(e.message).toMatch(/identifier/);
  });

  it('names the field of every mistake', () => {
    expect(errorOf(() => validateOp({ kind: 'matmul', name: 'a', weight: { format: 'q5' } })).field).toBe('ir.weight.format');
    expect(errorOf(() => validateOp({ kind: 'matmul', name: 'a', weight: { format: 'q4', groupSize: 48 } })).field).toBe('ir.weight.groupSize');
    expect(errorOf(() => validateOp({ kind: 'matmul', name: 'a', weight: { format: 'q4_0', groupSize: 64 } })).field).toBe('ir.weight.groupSize');
    expect(errorOf(() => validateOp({ kind: 'matmul', name: 'a', weight: { format: 'q4' }, epilogue: { activation: 'relu' } })).field).toBe('ir.epilogue.activation');
    expect(errorOf(() => validateOp({ kind: 'matmul', name: 'a', weight: { format: 'q4' }, extra: 1 })).field).toBe('ir.extra');
    expect(errorOf(() => validateOp({ kind: 'conv', name: 'a' })).field).toBe('ir.kind');
    expect(errorOf(() => validateOp({ kind: 'attention', name: 'a', scale: -1 })).field).toBe('ir.scale');
    expect(errorOf(() => validateOp([1, 2])).field).toBe('ir');
  });

  it('hashes equal ops equally whatever the key order', () => {
    const a = validateOp({ kind: 'matmul', name: 'm', weight: { format: 'q8', groupSize: 32 }, epilogue: { bias: true } });
    const b = validateOp({ epilogue: { bias: true }, weight: { groupSize: 32, format: 'q8' }, name: 'm', kind: 'matmul' });
    expect(opHash(a)).toBe(opHash(b));
    expect(opHash(a)).not.toBe(opHash({ ...a, name: 'n' }));
  });
});

describe('shapes', () => {
  it('refuses attention tensors past 2^40 values (each dimension alone is in range), and shapes WebAssembly memory cannot hold', () => {
    const f16 = CATALOG.attention_f16! as AttentionOp;
    expect(() => parseShape('B=1048576,Hq=1048576,Hkv=1048576,Sq=1,Skv=1048576,D=1024', f16)).toThrow(/K and V would hold 1180591620717411303424 values each; expected at most 2\^40/);
    expect(() => parseShape('B=1,Hq=1048576,Hkv=1,Sq=1048576,Skv=1048576,D=64', { ...f16, causal: false })).toThrow(/Q and O would hold/);
    expect((parseShape('B=1,Hq=32,Hkv=8,Sq=1,Skv=1048576,D=128', f16) as { Skv: number }).Skv).toBe(1048576);
    // 64 x 8 x 2^20 x 128 f16 values: 128 GiB of K, over the 4 GiB a WebAssembly memory addresses; C takes it.
    const huge = { op: 'attention_f16', shape: 'B=64,Hq=32,Hkv=8,Sq=1,Skv=1048576,D=128' };
    expect(() => emit({ target: 'wasm', ...huge })).toThrow(/--shape: its tensors take 274878955520 bytes, more than the 4294967296 one WebAssembly memory addresses/);
    expect(() => emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=1048576,K=65536' })).toThrow(/more than the 4294967296 one WebAssembly memory addresses/);
    expect(() => emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=4096,K=14336' })).not.toThrow();
  });

  it('states a KV tensor\'s shape in its storage order', () => {
    const shape = 'B=1,Hq=4,Hkv=2,Sq=1,Skv=77,D=64';
    expect(emit({ target: 'c', op: 'attention_q8_0kv', shape }).manifest.tensors.k!.shape).toBe('[1,77,2,64]'); // positions x heads
    expect(emit({ target: 'c', op: 'attention_f16', shape }).manifest.tensors.k!.shape).toBe('[1,2,77,64]'); // heads x positions
  });

  const q4 = CATALOG.matmul_q4!;
  it('parses dimension lists in any order', () => {
    expect(parseShape('K=320,M=3,N=77', q4)).toEqual({ M: 3, N: 77, K: 320 });
  });

  it('refuses a K that is not a multiple of the group, saying how to pad', () => {
    const e = errorOf(() => parseShape('M=1,N=77,K=100', q4));
    expect(e.field).toBe('--shape K');
    expect(e.message).toContain('not a multiple of the q4 group size 64');
    expect(e.message).toContain('pad K to 128');
    // K = 100 holds no whole groups of 32 either: padding is the only remedy offered.
    expect(e.message).not.toContain('groupSize');
  });

  it('names the group size an IR file could take where one divides K, and none for ggml\'s fixed blocks', () => {
    expect(errorOf(() => parseShape('M=3,N=77,K=96', CATALOG.matmul_q35!)).hint).toBe(
      'pad K to 128 with zero weights, or write the op as an IR file with "weight": {"format": "q35", "groupSize": 32} (it divides K=96) and pass it with --ir (docs/ir.md)',
    );
    expect(errorOf(() => parseShape('M=3,N=77,K=80', CATALOG.matmul_q4_0!)).hint).toBe('pad K to 96 with zero weights');
  });

  it('refuses missing, unknown, repeated and non-integer dimensions', () => {
    expect(errorOf(() => parseShape('M=1,N=77', q4)).message).toContain('K is missing');
    expect(errorOf(() => parseShape('M=1,N=77,K=64,Q=2', q4)).message).toContain('unknown dimension "Q"');
    expect(errorOf(() => parseShape('M=1,M=2,N=77,K=64', q4)).message).toContain('given twice');
    expect(errorOf(() => parseShape('M=1.5,N=77,K=64', q4)).field).toBe('--shape');
    expect(errorOf(() => parseShape('M=0,N=77,K=64', q4)).field).toBe('--shape M');
  });

  it('checks attention constraints', () => {
    const att = CATALOG.attention_f16!;
    expect(parseShape('B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128', att)).toMatchObject({ Hq: 32, D: 128 });
    expect(errorOf(() => parseShape('B=1,Hq=30,Hkv=8,Sq=1,Skv=64,D=128', att)).field).toBe('--shape Hq');
    expect(errorOf(() => parseShape('B=1,Hq=8,Hkv=8,Sq=65,Skv=64,D=128', att)).field).toBe('--shape Sq');
    expect(errorOf(() => parseShape('B=1,Hq=8,Hkv=8,Sq=1,Skv=64,D=100', CATALOG.attention_q8kv!)).field).toBe('--shape D');
  });

  it('says how to reach a head dim the q8 cache groups do not divide: a group size by IR file', () => {
    const q8 = CATALOG.attention_q8kv!;
    // D=80 (a head dim issue 16 names): the catalog's groups of 32 do not divide it, 16 does.
    expect(errorOf(() => parseShape('B=1,Hq=8,Hkv=8,Sq=1,Skv=64,D=80', q8)).message).toMatch(/"kvGroupSize": 16 \(it divides D=80\) and pass it with --ir/);
    expect(parseShape('B=1,Hq=8,Hkv=8,Sq=1,Skv=64,D=80', { ...(q8 as AttentionOp), kvGroupSize: 16 })).toMatchObject({ D: 80 });
    expect(errorOf(() => parseShape('B=1,Hq=8,Hkv=8,Sq=1,Skv=64,D=90', q8)).message).toMatch(/use an f16 cache/);
    expect(errorOf(() => parseShape('B=1,Hq=8,Hkv=8,Sq=1,Skv=64,D=80', CATALOG.attention_q8_0kv!)).message).toMatch(/ggml q8_0 blocks are always 32 values/);
  });
});

describe('test data kept by op, shape and seed (TestDataCache)', () => {
  it('hands the same data back for the same op, shape and seed, equal to a fresh draw; another shape, seed or op draws anew', () => {
    const cache = new TestDataCache();
    const op = CATALOG.matmul_q4_0!;
    const shape = parseShape('M=3,N=7,K=64', op);
    const kept = cache.testData(op, shape, 1);
    expect(cache.testData({ ...op }, { ...shape }, 1)).toBe(kept);
    const fresh = opKit('matmul').testData(op, shape, 1);
    expect(Object.keys(kept.inputs)).toEqual(Object.keys(fresh.inputs));
    for (const [name, bytes] of Object.entries(fresh.inputs)) expect(kept.inputs[name], name).toEqual(bytes);
    expect(kept.reference).toEqual(fresh.reference);
    expect(cache.testData(op, shape, 2)).not.toBe(kept);
    expect(cache.testData(op, parseShape('M=3,N=8,K=64', op), 1)).not.toBe(kept);
    expect(cache.testData(CATALOG.matmul_q4!, shape, 1)).not.toBe(kept);
  });
});
