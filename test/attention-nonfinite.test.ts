import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { cannotRunReason } from '../src/backends/c/runner.js';
import { cudaShimRunner } from '../src/backends/cuda/runner.js';
import { runnerFor } from '../src/backends/registry.js';
import type { KernelRunner } from '../src/backends/types.js';
import { kvLayoutOf, kvRowFormat, kvRowStrides } from '../src/ir/attention.js';
import type { AttentionOp, AttentionShape } from '../src/ir/types.js';
import { f16BitsToF32, f32ToF16Bits } from '../src/numeric/half.js';
import { attentionJudge } from '../src/ops/attention.js';
import { opKit } from '../src/ops/index.js';
import { fromDtype } from '../src/ops/tensors.js';
import type { Plan } from '../src/plan/types.js';
import { cToolsSkipReason, dawnSkipReason, skipReason } from './helpers.js';

/**
 * Attention's non-finite contract (docs/ARCHITECTURE.md, "Non-finite values in attention"), on
 * every target that runs here. One decode kernel (run-time KV length, causal, 5 queries, split in 4)
 * and one prefill kernel (causal, Sq = Skv) per target and KV format, each built once and run on several
 * variants of one set of inputs, each variant's O compared row by row with the clean run's:
 * - what a kernel must not read (cache positions at or past kv_len, in NaN or in infinity bytes) leaves
 *   every O row bit for bit as it was;
 * - a NaN in Q row (i, h) makes O row (i, h) non-finite and no other;
 * - a NaN key or an infinite value makes every row that attends to it non-finite and leaves the
 *   rows that do not (the other KV head's, causally earlier queries) bit for bit as they were.
 * The clean run itself is judged against the f64 reference, as is a run with scores of +-1e4.
 */

type Format = 'f16' | 'q8' | 'q8_0' | 'q4_0';
type Inputs = Record<string, Uint8Array>;
const F16_NAN = 0x7e00;
const F16_INF = 0x7c00;

interface Kernel {
  plan: Plan;
  op: AttentionOp;
  shape: AttentionShape;
  run(inputs: Inputs): Promise<Float32Array>;
  dispose(): void;
}

type Config = Record<string, number | string>;

async function built(target: string, ir: Record<string, unknown>, shape: string, config: Config, extra: object, runner?: KernelRunner): Promise<Kernel> {
  const { plan, rendered } = emit({ target, ir, shape, config, ...extra });
  const r = runner ?? runnerFor(plan);
  const build = await r.build(plan, rendered, {});
  if (build.status !== 'ok') throw new Error(build.detail);
  const op = plan.op as AttentionOp;
  return {
    plan,
    op,
    shape: plan.shape as AttentionShape,
    async run(inputs) {
      const out = await r.execute(build, inputs);
      if (out.status !== 'ok') throw new Error(`${out.status}: ${'detail' in out ? out.detail : ''}`);
      return fromDtype(out.output, op.o);
    },
    dispose: () => build.dispose(),
  };
}

/** The index of KV row (b, KV head, position) in K's and V's files (in rows, either layout). */
function rowIndex(op: AttentionOp, s: AttentionShape, b: number, head: number, pos: number): number {
  const { headStride, positionStride } = kvRowStrides(kvLayoutOf(op), s);
  return b * s.Hkv * s.Skv + head * headStride + pos * positionStride;
}

/**
 * Writes `value` (f16 bits) into KV row `row` of `name` ('k' or 'v'): for an f16 cache as every
 * value of the row (or only channel `channel`), for a kgen q8 cache as the row's scales, for a ggml
 * cache as each block's scale d. Codes become the largest positive, so an infinite scale makes an
 * infinite value.
 */
function poisonRow(op: AttentionOp, s: AttentionShape, inputs: Inputs, name: 'k' | 'v', row: number, value: number, channel?: number): void {
  const { rowBytes, scalesPerRow } = kvRowFormat(op, s.D);
  const data = (inputs[`${name}.bin`] = inputs[`${name}.bin`]!.slice());
  const at = row * rowBytes;
  const u16 = (bytes: Uint8Array, offset: number) => new DataView(bytes.buffer, bytes.byteOffset).setUint16(offset, value, true);
  switch (op.kvCache) {
    case 'f16':
      for (let c = 0; c < s.D; c++) if (channel === undefined || c === channel) u16(data, at + 2 * c);
      return;
    case 'q8': {
      data.fill(0x7f, at, at + rowBytes);
      const scales = (inputs[`${name}_scales.bin`] = inputs[`${name}_scales.bin`]!.slice());
      for (let g = 0; g < scalesPerRow; g++) u16(scales, 2 * (row * scalesPerRow + g));
      return;
    }
    case 'q8_0':
    case 'q4_0': {
      const blockBytes = op.kvCache === 'q8_0' ? 34 : 18;
      data.fill(op.kvCache === 'q8_0' ? 0x7f : 0xff, at, at + rowBytes);
      for (let blk = 0; blk < rowBytes / blockBytes; blk++) u16(data, at + blk * blockBytes);
    }
  }
}

/** O rows (b, head, query) of D values, in O's [B, Hq, Sq, D] order. */
function oRows(s: AttentionShape, o: Float32Array): { b: number; h: number; i: number; values: Float32Array }[] {
  const rows = [];
  for (let b = 0; b < s.B; b++)
    for (let h = 0; h < s.Hq; h++)
      for (let i = 0; i < s.Sq; i++) {
        const at = ((b * s.Hq + h) * s.Sq + i) * s.D;
        rows.push({ b, h, i, values: o.subarray(at, at + s.D) });
      }
  return rows;
}

/** Expects each row of `got` bit for bit as in `clean` where `same` says so, else holding a non-finite value. */
function expectRows(k: Kernel, clean: Float32Array, got: Float32Array, same: (r: { b: number; h: number; i: number }) => boolean, label: string): void {
  const cleanRows = oRows(k.shape, clean);
  oRows(k.shape, got).forEach((row, n) => {
    const where = `${label}: O row b ${row.b} head ${row.h} query ${row.i}`;
    if (same(row)) expect(Array.from(row.values), where).toEqual(Array.from(cleanRows[n]!.values));
    else expect(row.values.some((v) => !Number.isFinite(v)), `${where} non-finite`).toBe(true);
  });
}

function judged(k: Kernel, inputs: Inputs, lengths: number[], out: Float32Array, label: string): void {
  const stored = (name: string) => ({ data: inputs[`${name}.bin`]!, scales: inputs[`${name}_scales.bin`] });
  const q = Float32Array.from(new Uint16Array(inputs['q.bin']!.slice().buffer), (h) => f16BitsToF32(h));
  const { ok, comparison } = attentionJudge(k.op, k.shape, { q, k: stored('k'), v: stored('v') }, lengths).check(out, k.plan.tolerance);
  expect(comparison.nonFinite, label).toBe(0);
  expect(ok, `${label}: nmse ${comparison.nmse}`).toBe(true);
}

const KV_LEN = 40; // of 256, in splits of 64: the last three splits hold no position to read
const POISON_AT = 9; // a position every decode row reads; in prefill, the queries before it do not

/** The decode kernel: every rule above but causality (5 queries, the last at kv_len - 1). */
async function decodeChecks(k: Kernel, label: string): Promise<void> {
  const s = k.shape;
  const data = opKit('attention').testData(k.op, s, 7);
  const base: Inputs = { ...data.inputs, 'kv_len.bin': new Uint8Array(Int32Array.of(KV_LEN).buffer) };
  const clean = await k.run(base);
  judged(k, base, [KV_LEN], clean, `${label} clean`);
  for (const [what, value] of [['NaN', F16_NAN], ['inf', F16_INF]] as const) {
    const past = { ...base };
    for (let b = 0; b < s.B; b++)
      for (let h = 0; h < s.Hkv; h++)
        for (let j = KV_LEN; j < s.Skv; j++) for (const name of ['k', 'v'] as const) poisonRow(k.op, s, past, name, rowIndex(k.op, s, b, h, j), value);
    expectRows(k, clean, await k.run(past), () => true, `${label} ${what} past kv_len`);
  }
  const qNaN = { ...base, 'q.bin': base['q.bin']!.slice() };
  new DataView(qNaN['q.bin']!.buffer).setUint16(2 * ((1 * s.Sq + 2) * s.D + 3), F16_NAN, true); // head 1, query 2
  expectRows(k, clean, await k.run(qNaN), (r) => !(r.h === 1 && r.i === 2), `${label} NaN in Q`);
  const group = s.Hq / s.Hkv;
  // A NaN value at POISON_AT lies in a tile every query sees whole where kvBlock is under kv_len - Sq
  // (integer P.V's one V scale a tile: its absmax must keep the NaN).
  for (const [what, name, value, channel] of [['NaN key', 'k', F16_NAN, 0], ['inf value', 'v', F16_INF, 3], ['NaN value', 'v', F16_NAN, 3]] as const) {
    const bad = { ...base };
    poisonRow(k.op, s, bad, name, rowIndex(k.op, s, 0, 1, POISON_AT), value, channel);
    expectRows(k, clean, await k.run(bad), (r) => Math.floor(r.h / group) !== 1, `${label} ${what} in KV head 1`);
  }
  // Causality: query i sees positions up to kv_len - Sq + i, so a NaN value at kv_len - 2 reaches
  // only the last two queries (the earlier ones share its tile).
  const late = { ...base };
  poisonRow(k.op, s, late, 'v', rowIndex(k.op, s, 0, 1, KV_LEN - 2), F16_NAN, 3);
  expectRows(k, clean, await k.run(late), (r) => Math.floor(r.h / group) !== 1 || r.i < s.Sq - 2, `${label} NaN value at kv_len - 2 in KV head 1`);
}

/** The prefill kernel: causality, and scores of +-1e4. */
async function prefillChecks(k: Kernel, label: string): Promise<void> {
  const s = k.shape;
  const data = opKit('attention').testData(k.op, s, 11);
  const clean = await k.run(data.inputs);
  judged(k, data.inputs, [s.Skv], clean, `${label} clean`);
  for (const [what, name, value, channel] of [['NaN key', 'k', F16_NAN, 0], ['NaN value', 'v', F16_NAN, 3], ['inf value', 'v', F16_INF, 3]] as const) {
    const bad = { ...data.inputs };
    for (let h = 0; h < s.Hkv; h++) poisonRow(k.op, s, bad, name, rowIndex(k.op, s, 0, h, POISON_AT), value, channel);
    expectRows(k, clean, await k.run(bad), (r) => r.i < POISON_AT, `${label} ${what} at position ${POISON_AT}`);
  }
  // Scores of +-1e4: Q's channel 0 is 100, an f16 K's channel 0 spans +-800 (x 1/sqrt(D) = 1/8); the
  // int8 caches keep their K (scores of about 1e2); the rest as drawn.
  const big: Inputs = { ...data.inputs, 'q.bin': data.inputs['q.bin']!.slice() };
  const q = new Uint16Array(big['q.bin']!.buffer);
  for (let r = 0; r < q.length / s.D; r++) q[r * s.D] = f32ToF16Bits(100);
  if (k.op.kvCache === 'f16') {
    big['k.bin'] = big['k.bin']!.slice();
    const kv = new Uint16Array(big['k.bin']!.buffer);
    for (let r = 0; r < kv.length / s.D; r++) kv[r * s.D] = f32ToF16Bits(800 * Math.sin(r * 0.77));
  }
  judged(k, big, [s.Skv], await k.run(big), `${label} scores of 1e4`);
}

const FORMATS: Format[] = ['f16', 'q8', 'q8_0', 'q4_0'];
const decodeIr = (kvCache: Format) => ({ kind: 'attention', name: `nf_${kvCache}`, q: 'f16', o: 'f32', kvCache, causal: true, kvLength: 'runtime' });
const prefillIr = (kvCache: Format) => ({ kind: 'attention', name: `nfp_${kvCache}`, q: 'f16', o: 'f32', kvCache, causal: true });
const DECODE = 'B=1,Hq=4,Hkv=2,Sq=5,Skv=256,D=64';
const PREFILL = 'B=1,Hq=2,Hkv=1,Sq=48,Skv=48,D=64';

interface Variant {
  name: string;
  target: string;
  skip: string | undefined;
  extra: object;
  /** The runner to pin (default: the plan's runner on this machine). */
  runner?: KernelRunner;
  decodeConfig: Config;
  /** The prefill kernels to check, each its config (one or more per format). */
  prefillConfigs: (format: Format) => Config[];
  formats: Format[];
}

const native = ['avx512', 'avx2'].find((isa) => cannotRunReason(isa) === undefined);
// The widest ISA and scalar for every format; AVX2 beside AVX-512, and NEON under qemu, for one
// (each has its own exp2, the rest shared). AVX2's integer P.V (its own absmax, quantization and
// dot products) on one ggml cache wherever AVX2 runs, whatever the default.
const C_ISAS: { isa: string; formats: Format[]; config?: Config }[] = [
  ...(native ? [{ isa: native, formats: FORMATS }] : []),
  ...(native === 'avx512' ? [{ isa: 'avx2', formats: ['f16'] as Format[] }] : []),
  ...(native ? [{ isa: 'avx2', formats: ['q8_0'] as Format[], config: { pvInt: 1 } }] : []),
  { isa: 'neon', formats: ['f16'] },
  { isa: 'scalar', formats: FORMATS },
];
const C_DEVICES: Record<string, string> = { avx512: 'epyc-9654', neon: 'apple-m2' };
const VARIANTS: Variant[] = [
  ...C_ISAS.map(({ isa, formats, config = {} }) => ({
    name: `C ${isa}${Object.keys(config).length ? ` ${JSON.stringify(config)}` : ''}`,
    target: 'c',
    skip: cToolsSkipReason(isa),
    extra: { isa, device: C_DEVICES[isa] ?? 'epyc-7763' },
    // Tiles of 32 keys: the first whole for every query (integer P.V where it is the default), the second on the diagonal.
    decodeConfig: { splits: 4, kvBlock: 32, ...config },
    prefillConfigs: () => [config],
    formats,
  })),
  // Attention ships one module, SIMD128 (no relaxed-SIMD one: the harness refuses the level).
  // The planner's defaults (integer P.V, pvInt 1, for the int8 caches: a causal diagonal tile takes
  // each row's own V scale), and f32 P.V (pvInt 0) for one of them.
  { name: 'WebAssembly', target: 'wasm', skip: undefined, extra: {}, decodeConfig: { splits: 4, kvBlock: 32 }, prefillConfigs: () => [{}], formats: FORMATS },
  { name: 'WebAssembly f32 P.V', target: 'wasm', skip: undefined, extra: {}, decodeConfig: { splits: 4, kvBlock: 32, pvInt: 0 }, prefillConfigs: () => [{ pvInt: 0 }], formats: ['q8_0'] },
  // SwiftShader takes minutes for the four formats: f16 and one integer cache.
  { name: 'WGSL', target: 'wgsl', skip: dawnSkipReason('WGSL attention non-finite'), extra: {}, decodeConfig: { kvSplit: 4 }, prefillConfigs: () => [{}], formats: ['f16', 'q8_0'] },
  // CUDA through the CPU shim (g++, each GPU thread a fiber, mma.sync emulated): the arithmetic the
  // source states, not a GPU's. Prefill on tensor cores and with SIMT; f16 and one ggml cache (the
  // four formats cost 30 s of g++, and V reaches P.V through one kg_kv_half per format).
  { name: 'CUDA (CPU shim)', target: 'cuda', skip: skipReason(['g++']), extra: { device: 'rtx4090' }, runner: cudaShimRunner(), decodeConfig: { kvSplit: 4 }, prefillConfigs: () => [{ math: 'mma' }, { math: 'simt' }], formats: ['f16', 'q8_0'] },
];

for (const v of VARIANTS) {
  describe.skipIf(v.skip !== undefined)(`${v.name} attention: non-finite values`, { concurrent: true }, () => {
    for (const format of v.formats) {
      it(`${format} KV: decode in splits at kv_len ${KV_LEN} of 256, causal prefill`, async () => {
        const decode = await built(v.target, decodeIr(format), DECODE, v.decodeConfig, v.extra, v.runner);
        try {
          await decodeChecks(decode, `${v.name} ${format} decode`);
        } finally {
          decode.dispose();
        }
        for (const config of v.prefillConfigs(format)) {
          const prefill = await built(v.target, prefillIr(format), PREFILL, config, v.extra, v.runner);
          try {
            await prefillChecks(prefill, `${v.name} ${format} prefill ${JSON.stringify(config)}`);
          } finally {
            prefill.dispose();
          }
        }
      });
    }
  });
}
