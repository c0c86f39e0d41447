import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { pack } from '../src/api/pack.js';
import { runnerFor } from '../src/backends/registry.js';
import { f32ToF16Bits, f16BitsToF32 } from '../src/numeric/half.js';
import { Rng } from '../src/numeric/random.js';
import { codecOf, dequantizeMatrix } from '../src/quant/index.js';
import { compareOutputs, roundedInput, roundingJudge, withinTolerance } from '../src/reference/compare.js';
import { referenceMatmul } from '../src/reference/matmul.js';
import { skipReason } from './helpers.js';

const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
const run = (args: string[]) => execa(KGEN, args, { reject: false });

/** ggml type numbers (ggml.h `enum ggml_type`), written independently of the reader under test. */
const GGML = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, Q6_K: 14, BF16: 30 } as const;

interface TensorSpec {
  name: string;
  type: number;
  /** ggml `ne`: fastest-varying first. */
  dims: number[];
  bytes: Uint8Array;
}

/**
 * A minimal GGUF v3 writer (little-endian, or big-endian as gguf-py writes for s390x): header, string metadata, tensor infos, then each
 * tensor's bytes at offsets aligned to 32 (the default `general.alignment`).
 */
function writeGguf(tensors: TensorSpec[], metadata: Record<string, string>, bigEndian = false): Uint8Array {
  const parts: number[] = [];
  const le = (v: number) => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255];
  const u32 = (v: number) => parts.push(...(bigEndian ? le(v).reverse() : le(v)));
  const u64 = (v: number) => { const halves = [v % 2 ** 32, Math.floor(v / 2 ** 32)]; for (const h of bigEndian ? halves.reverse() : halves) u32(h); };
  const str = (s: string) => { const b = new TextEncoder().encode(s); u64(b.length); parts.push(...b); };
  parts.push(...new TextEncoder().encode('GGUF'));
  u32(3);
  u64(tensors.length);
  u64(Object.keys(metadata).length);
  for (const [k, v] of Object.entries(metadata)) { str(k); u32(8); str(v); } // 8: GGUF string
  const align = (n: number) => Math.ceil(n / 32) * 32;
  let offset = 0;
  const offsets = tensors.map((t) => { const o = offset; offset = align(o + t.bytes.length); return o; });
  tensors.forEach((t, i) => { str(t.name); u32(t.dims.length); for (const d of t.dims) u64(d); u32(t.type); u64(offsets[i]!); });
  while (parts.length % 32) parts.push(0);
  const header = parts.length;
  const out = new Uint8Array(header + offset);
  out.set(parts);
  tensors.forEach((t, i) => out.set(t.bytes, header + offsets[i]!));
  return out;
}

const rng = new Rng(21);
const floats = (n: number) => rng.fillNormal(new Float32Array(n));
const f16Bytes = (v: Float32Array) => new Uint8Array(Uint16Array.from(v, (x) => f32ToF16Bits(x)).buffer);
const bf16Bytes = (v: Float32Array) => new Uint8Array(Uint16Array.from(new Uint32Array(v.buffer), (b) => b >>> 16).buffer);

// Ragged for kernels: N=40 rows and K=96 columns (3 ggml blocks) are not multiples of the row tile.
const Q4_0_W = floats(40 * 96);
const Q8_0_W = floats(24 * 64);
const F16_W = floats(16 * 128);
const BF16_W = floats(8 * 128);
const F32_W = floats(8 * 64);
const TENSORS: TensorSpec[] = [
  { name: 'blk.0.ffn_down.weight', type: GGML.Q4_0, dims: [96, 40], bytes: pack({ format: 'q4_0', N: 40, K: 96, weights: Q4_0_W }).bytes },
  { name: 'blk.0.attn_q.weight', type: GGML.Q8_0, dims: [64, 24], bytes: pack({ format: 'q8_0', N: 24, K: 64, weights: Q8_0_W }).bytes },
  { name: 'blk.0.ffn_up.weight', type: GGML.F16, dims: [128, 16], bytes: f16Bytes(F16_W) },
  { name: 'blk.0.attn_k.weight', type: GGML.BF16, dims: [128, 8], bytes: bf16Bytes(BF16_W) },
  { name: 'blk.0.attn_v.weight', type: GGML.F32, dims: [64, 8], bytes: new Uint8Array(F32_W.buffer) },
  { name: 'output_norm.weight', type: GGML.F32, dims: [64], bytes: new Uint8Array(floats(64).buffer) },
  { name: 'blk.0.ffn_gate.weight', type: GGML.Q6_K, dims: [256, 2], bytes: new Uint8Array(2 * 210) },
];

function scratch(): { dir: string; file: string; at(name: string): string } {
  const dir = mkdtempSync(join(tmpdir(), 'kgen-gguf-'));
  const file = join(dir, 'model.gguf');
  writeFileSync(file, writeGguf(TENSORS, { 'general.architecture': 'llama', 'general.name': 'tiny test model' }));
  return { dir, file, at: (name) => join(dir, name) };
}

function expectUsageError(r: { exitCode?: number; stderr: string }, pattern: RegExp): void {
  expect(r.exitCode, r.stderr).toBe(2);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
}

describe.concurrent('GGUF in', () => {
  it('kgen gguf lists every tensor, what kgen can do with it, and one emit command per matmul shape', async () => {
    const { file } = scratch();
    const r = await run(['gguf', file, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const listing = JSON.parse(r.stdout);
    expect(listing).toMatchObject({ version: 3, architecture: 'llama', modelName: 'tiny test model' });
    expect(listing.tensors.map((t: { name: string; type: string; dims: number[] }) => [t.name, t.type, t.dims])).toEqual(TENSORS.map((t) => [t.name, Object.entries(GGML).find(([, v]) => v === t.type)![0], t.dims]));
    const byName = Object.fromEntries(listing.tensors.map((t: { name: string }) => [t.name, t]));
    expect(byName['blk.0.ffn_down.weight']).toMatchObject({ matrix: { N: 40, K: 96 }, use: { kind: 'passthrough', format: 'q4_0' }, byteLength: 40 * 3 * 18 });
    expect(byName['blk.0.ffn_up.weight'].use).toEqual({ kind: 'quantize' });
    expect(byName['output_norm.weight'].unusable).toMatch(/1-D/);
    expect(byName['blk.0.ffn_gate.weight'].unusable).toMatch(/type Q6_K/);
    expect(listing.matmuls.map((m: { op: string; N: number; K: number }) => `${m.op} ${m.N}x${m.K}`)).toEqual(['matmul_q4_0 40x96', 'matmul_q8_0 24x64', 'matmul_q35 16x128', 'matmul_q35 8x128', 'matmul_q35 8x64']);
    expect(listing.matmuls[0].emit).toBe('kgen emit --target c --op matmul_q4_0 --shape M=1,N=40,K=96 -o matmul_q4_0_40x96/');
    const kernels = await run(['gguf', file, '--kernels', '16']);
    expect(kernels.exitCode, kernels.stderr).toBe(0);
    expect(JSON.parse(kernels.stdout)).toEqual(listing.matmuls.map((m: { op: string; N: number; K: number }) => ({ op: m.op, shape: `M=16,N=${m.N},K=${m.K}` })));
    const text = await run(['gguf', file]);
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/tiny test model, architecture llama, GGUF v3, 7 tensors/);
    expect(text.stdout).toMatch(/blk\.0\.ffn_down\.weight\s+Q4_0\s+N=40,K=96\s+q4_0 as is/);
    expect(text.stdout).toContain('kgen pack --from-gguf');
  });

  it('suggests for a float tensor the first format whose block divides its K (and a kernel takes it), and says when none does', async () => {
    const { dir } = scratch();
    const file = join(dir, 'odd.gguf');
    writeFileSync(file, writeGguf([
      { name: 'k96', type: GGML.F16, dims: [96, 4], bytes: f16Bytes(floats(4 * 96)) },
      { name: 'k6', type: GGML.F16, dims: [6, 4], bytes: f16Bytes(floats(4 * 6)) },
      { name: 'k3', type: GGML.F16, dims: [3, 4], bytes: f16Bytes(floats(4 * 3)) },
      { name: 'empty', type: GGML.F32, dims: [64, 0], bytes: new Uint8Array(0) },
    ], {}));
    const listing = JSON.parse((await run(['gguf', file, '--json'])).stdout);
    // K=6 fits f16's 2-weight block, but no kernel takes it (f16 kernels need K in multiples of 32):
    // an f16 suggestion here was an emit command that refused its shape.
    expect(listing.matmuls.map((m: { op: string; N: number; K: number; pack: string }) => [m.op, m.N, m.K, m.pack.includes('--format')])).toEqual([['matmul_q4_0', 4, 96, true]]);
    for (const m of listing.matmuls as { emit: string }[]) {
      const emitted = await run(m.emit.replace(/^kgen /, '').replace(/ -o \S+$/, '').split(' '));
      expect(emitted.exitCode, `${m.emit}: ${emitted.stderr}`).toBe(0);
    }
    const byName = Object.fromEntries(listing.tensors.map((t: { name: string }) => [t.name, t]));
    expect(byName.k6.unusable).toMatch(/K=6 is not a multiple of 32: no kernel takes it \(pad each row with zeros to 32\)/);
    expect(byName.k3.unusable).toMatch(/K=3 is not a multiple of 32/);
    expect(byName.empty.unusable).toMatch(/empty \(N=0, K=64\)/);
  });

  it('pack --from-gguf passes q4_0 and q8_0 blocks through byte for byte, and unpack reads them back', async () => {
    const { file, at } = scratch();
    for (const t of TENSORS.slice(0, 2)) {
      const out = at(`${t.name}.packed`);
      const r = await run(['pack', '--from-gguf', file, '--tensor', t.name, '-o', out]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/blocks passed through byte for byte/);
      expect(new Uint8Array(readFileSync(out))).toEqual(t.bytes);
      const format = t.type === GGML.Q4_0 ? 'q4_0' : 'q8_0';
      expect(JSON.parse(readFileSync(`${out}.json`, 'utf8'))).toMatchObject({ format, N: t.dims[1], K: t.dims[0], bytes: t.bytes.length });
      expect((await run(['unpack', '--in', out, '-o', at(`${t.name}.f32`)])).exitCode).toBe(0);
    }
  });

  it('pack --from-gguf quantizes F16, BF16 and F32 tensors into the format asked for, as pack does from f32', async () => {
    const { file, at } = scratch();
    const cases = [
      { tensor: 'blk.0.ffn_up.weight', format: 'q4', N: 16, K: 128, values: Float32Array.from(F16_W, (x) => f16BitsToF32(f32ToF16Bits(x))) },
      { tensor: 'blk.0.attn_k.weight', format: 'q35', N: 8, K: 128, values: new Float32Array(Uint32Array.from(new Uint32Array(BF16_W.buffer), (b) => (b >>> 16) << 16).buffer) },
      { tensor: 'blk.0.attn_v.weight', format: 'q8_0', N: 8, K: 64, values: F32_W },
    ];
    for (const c of cases) {
      const out = at(`${c.tensor}.${c.format}`);
      const r = await run(['pack', '--from-gguf', file, '--tensor', c.tensor, '--format', c.format, '-o', out]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(new Uint8Array(readFileSync(out)), c.tensor).toEqual(pack({ format: c.format, N: c.N, K: c.K, weights: c.values }).bytes);
    }
  });

  it('refuses what it cannot take, naming the flag and what to do', async () => {
    const { file, at } = scratch();
    const base = ['pack', '--from-gguf', file, '-o', at('x')];
    expectUsageError(await run([...base, '--tensor', 'nope']), /--tensor: "nope" is not a tensor of the file; expected one of blk\.0\.ffn_down\.weight/);
    expectUsageError(await run([...base, '--tensor', 'output_norm.weight']), /--tensor: .*is 1-D/);
    expectUsageError(await run([...base, '--tensor', 'blk.0.ffn_gate.weight']), /--tensor: .*type Q6_K/);
    expectUsageError(await run([...base, '--tensor', 'blk.0.ffn_down.weight', '--format', 'q35']), /--format: .*Q4_0 tensor; kgen passes its blocks through as q4_0/);
    expectUsageError(await run([...base, '--tensor', 'blk.0.ffn_up.weight']), /--format: missing: .*F16 tensor/);
    expectUsageError(await run([...base, '--tensor', 'blk.0.attn_v.weight', '--format', 'q35', '--group', '128']), /--group|K=64/);
    expectUsageError(await run([...base, '--tensor', 'blk.0.ffn_up.weight', '--format', 'q4', '--in', file]), /--in: given with --from-gguf/);
    expectUsageError(await run(['pack', '--tensor', 'x', '-o', at('x')]), /--from-gguf: missing/);
    writeFileSync(at('not.gguf'), 'not a model at all');
    expectUsageError(await run(['gguf', at('not.gguf')]), /FILE: .*not\.gguf is not a readable GGUF file/);
    const whole = writeGguf(TENSORS.slice(0, 1), {});
    writeFileSync(at('cut.gguf'), whole.subarray(0, whole.length - 100));
    expectUsageError(await run(['pack', '--from-gguf', at('cut.gguf'), '--tensor', 'blk.0.ffn_down.weight', '-o', at('x')]), /--from-gguf: tensor "[^"]+" ends at byte \d+ of .*cut\.gguf, which has \d+/);
    // Cut inside the header (the parser reads zeros past the end), or a tensor off the alignment.
    for (const cut of [6, 40]) {
      writeFileSync(at('short.gguf'), whole.subarray(0, cut));
      expectUsageError(await run(['gguf', at('short.gguf')]), new RegExp(`FILE: .*short\\.gguf is cut short: its header runs to byte \\d+ of ${cut}`));
    }
    const shifted = writeGguf(TENSORS.slice(0, 1), {});
    // Its data offset (0) follows the header (24 bytes, no metadata), name, n_dims, dims and type.
    const t0 = TENSORS[0]!;
    shifted[24 + 8 + t0.name.length + 4 + 8 * t0.dims.length + 4] = 3;
    writeFileSync(at('unaligned.gguf'), shifted);
    expectUsageError(await run(['gguf', at('unaligned.gguf')]), /FILE: tensor "blk\.0\.ffn_down\.weight" of .*unaligned\.gguf starts at data offset 3, not a multiple of the file's alignment 32/);
    // Big-endian (GGUF v3 files for s390x exist): said as such, with what to do, not as a parser's
    // complaint about a tensor count read in the wrong byte order (a file whose version reads
    // little-endian but whose counts are big-endian included).
    const be = writeGguf(TENSORS.slice(0, 1), { 'general.architecture': 'llama' }, true);
    writeFileSync(at('be.gguf'), be);
    be.set([3, 0, 0, 0], 4);
    writeFileSync(at('be-counts.gguf'), be);
    for (const name of ['be.gguf', 'be-counts.gguf']) {
      const bigEndian = /is a big-endian GGUF file .*; expected a little-endian GGUF file: kgen reads only those.*gguf-convert-endian COPY little/;
      const listed = await run(['gguf', at(name)]);
      expectUsageError(listed, new RegExp(`FILE: .*${name.replace('.', '\\.')} ${bigEndian.source}`));
      expect(listed.stderr).not.toMatch(/tensor count/i);
      expectUsageError(await run(['pack', '--from-gguf', at(name), '--tensor', 'blk.0.ffn_down.weight', '-o', at('x')]), bigEndian);
    }
    // A q4_0 block whose scale is Inf (0x7c00) would poison every output it touches.
    const bad = TENSORS.map((t) => ({ ...t, bytes: t.bytes.slice() }));
    bad[0]!.bytes.set([0x00, 0x7c], 18 * 4);
    writeFileSync(at('inf.gguf'), writeGguf(bad, {}));
    expectUsageError(await run(['pack', '--from-gguf', at('inf.gguf'), '--tensor', 'blk.0.ffn_down.weight', '-o', at('x')]), /row 1, block 1 has a scale of Inf/);
    expect(() => readFileSync(at('x'))).toThrow();
  });

  const missing = skipReason(['cc']);
  it.skipIf(missing !== undefined)('emitted C kernels compute on q4_0 and q8_0 tensors read from a GGUF file', async () => {
    const { file, at } = scratch();
    for (const [tensor, format, N, K] of [['blk.0.ffn_down.weight', 'q4_0', 40, 96], ['blk.0.attn_q.weight', 'q8_0', 24, 64]] as const) {
      const out = at(`${tensor}.${format}`);
      expect((await run(['pack', '--from-gguf', file, '--tensor', tensor, '-o', out])).exitCode).toBe(0);
      const w = new Uint8Array(readFileSync(out));
      const M = 3;
      const { plan, rendered } = emit({ target: 'c', op: `matmul_${format}`, shape: `M=${M},N=${N},K=${K}`, isa: 'scalar', device: 'epyc-7763' });
      const runner = runnerFor(plan);
      const build = await runner.build(plan, rendered, {});
      expect(build.status, build.status === 'compile_error' ? build.detail : '').toBe('ok');
      if (build.status !== 'ok') return;
      try {
        const x = floats(M * K);
        const r = await runner.execute(build, { 'x.bin': new Uint8Array(x.buffer), 'w.bin': w });
        expect(r.status, r.status !== 'ok' ? r.detail : '').toBe('ok');
        if (r.status !== 'ok') return;
        const y = new Float32Array(r.output.buffer, r.output.byteOffset, M * N);
        const epilogue = { bias: false, activation: 'none', residual: false } as const;
        const weights = dequantizeMatrix(codecOf({ format }), w, N, K);
        const reference = referenceMatmul({ M, N, K }, epilogue, { x, w: weights });
        // The kernel rounds X to int8 as its plan states (inputRounding): judged against that rounding too.
        const judge = roundingJudge('x', reference, (rounding) => referenceMatmul({ M, N, K }, epilogue, { x: roundedInput(x, K, rounding), w: weights }));
        const c = compareOutputs(y, reference);
        expect(plan.tolerance.inputRounding).toMatchObject({ input: 'x', bits: 8 });
        expect(withinTolerance(c, judge.tolerance(plan.tolerance)), `${format}: ${JSON.stringify(c)}`).toBe(true);
      } finally {
        build.dispose();
      }
    }
  });
});
