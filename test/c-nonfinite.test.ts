import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { cannotRunReason, cRunner } from '../src/backends/c/runner.js';
import type { MatmulOp } from '../src/ir/types.js';
import { f32ToF16Bits } from '../src/numeric/half.js';
import { codecOf, dequantizeMatrix, quantizeMatrix } from '../src/quant/index.js';
import { cToolsSkipReason } from './helpers.js';

/**
 * Int8 activations on inputs a block cannot hold (docs/ARCHITECTURE.md, "Non-finite and tiny
 * activations"): a NaN or an infinity in row m of X makes every output of row m NaN and leaves the
 * other rows as they are; a block below the int8 range adds nothing. Before, a NaN was quantized to
 * an undefined code (-128 on x86, with INT_MIN in the block's code sum), so the row came out finite
 * (up to 1e8 off) and nothing downstream could tell.
 */
const VARIANTS = [
  { isa: 'scalar', device: 'epyc-7763' },
  { isa: 'avx2', device: 'epyc-7763' },
  { isa: 'avxvnni', device: 'xeon-8592' },
  { isa: 'avx512', device: 'epyc-9654' },
  { isa: 'neon', device: 'apple-m2' },
] as const;
const FORMATS = ['q35', 'q4', 'q8', 'q4_0', 'q8_0'] as const;
const M = 4;
const N = 37; // ragged: no row tile divides it
const K = 192; // 3 groups of 64, 6 ggml blocks

/** Row 0 plain; row 1 a NaN at k = 5; row 2 +inf at k = 100; row 3 a first block of subnormals. */
function activations(): Float32Array {
  const x = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37) * 2 + Math.cos(i * 1.3));
  x[1 * K + 5] = NaN;
  x[2 * K + 100] = Infinity;
  for (let k = 0; k < 32; k++) x[3 * K + k] = (k % 3 - 1) * 1e-40;
  return x;
}

function weights(): Float32Array {
  return Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 0.71 + 0.3) * 1.5);
}

/** Builds and runs an emitted C matmul on X (f32) and the packed weights; its Y. */
async function runMatmul(isa: string, e: ReturnType<typeof emit>, x: Float32Array, wBytes: Uint8Array): Promise<Float32Array> {
  const runner = cRunner(isa);
  const build = await runner.build(e.plan, e.rendered);
  if (build.status !== 'ok') throw new Error(build.detail);
  const run = await runner.execute(build, { 'x.bin': new Uint8Array(x.buffer, x.byteOffset, x.byteLength), 'w.bin': wBytes });
  build.dispose();
  if (run.status !== 'ok') throw new Error(run.detail);
  return new Float32Array(run.output.slice().buffer);
}

/**
 * Rows `rows` of y (M x N) against the f64 sums of x (M x K) times the dequantized w (N x K): with
 * int8 activations an output's error follows its products' energy (docs/ARCHITECTURE.md, "Tolerances").
 */
function expectRowsNearReference(y: Float32Array, x: Float32Array, w: Float32Array, rows: readonly number[]): void {
  for (const m of rows)
    for (let n = 0; n < N; n++) {
      let ref = 0;
      let terms = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k]! * w[n * K + k]!;
        ref += p;
        terms += p * p;
      }
      expect(Math.abs(y[m * N + n]! - ref), `y[${m},${n}] = ${y[m * N + n]} vs ${ref}`).toBeLessThan(0.05 * Math.sqrt(terms));
    }
}

for (const { isa, device } of VARIANTS) {
  const skip = cToolsSkipReason(isa) ?? cannotRunReason(isa);
  describe.skipIf(skip !== undefined)(`C ${isa}: int8 activations with NaN, infinity and subnormals`, { concurrent: true }, () => {
    for (const format of FORMATS) {
      it(`${format}: a non-finite value makes its row NaN and no other; subnormal blocks add nothing`, async () => {
        const op: MatmulOp = { kind: 'matmul', name: 'nf', x: 'f32', y: 'f32', weight: { format }, epilogue: { bias: false, activation: 'none', residual: false } };
        const e = emit({ target: 'c', ir: op, shape: { M, N, K }, isa, device });
        expect(e.plan.config.actQuant).toBe('q8');
        const codec = codecOf(e.plan.op.kind === 'matmul' ? e.plan.op.weight : op.weight);
        const wBytes = quantizeMatrix(codec, weights(), N, K);
        const w = dequantizeMatrix(codec, wBytes, N, K);
        const x = activations();
        const y = await runMatmul(isa, e, x, wBytes);
        for (const m of [1, 2]) expect(Array.from(y.subarray(m * N, (m + 1) * N)).filter((v) => !Number.isNaN(v)), `row ${m}`).toEqual([]);
        expectRowsNearReference(y, x, w, [0, 3]);
      });
    }
  });
}

/**
 * Activations near the top of f32 (|x| up to 3e36) with small weights (|w| <= 1.5e-3): the products
 * and every output are finite, so the kernel's must be too. A block's i32 dot product times its
 * activation scale alone is ~1e39 there: a kernel that forms it before the weight scale (the block
 * step's f32 offset term did) returns infinities.
 */
for (const { isa, device } of VARIANTS) {
  const skip = cToolsSkipReason(isa) ?? cannotRunReason(isa);
  describe.skipIf(skip !== undefined)(`C ${isa}: int8 activations near the f32 limit`, { concurrent: true }, () => {
    for (const format of FORMATS) {
      it(`${format}: |x| up to 3e36 gives finite outputs within the tolerance`, async () => {
        const rows = 2;
        const op: MatmulOp = { kind: 'matmul', name: 'big', x: 'f32', y: 'f32', weight: { format }, epilogue: { bias: false, activation: 'none', residual: false } };
        const e = emit({ target: 'c', ir: op, shape: { M: rows, N, K }, isa, device });
        const codec = codecOf(e.plan.op.kind === 'matmul' ? e.plan.op.weight : op.weight);
        const wBytes = quantizeMatrix(codec, weights().map((v) => v * 1e-3), N, K);
        const w = dequantizeMatrix(codec, wBytes, N, K);
        const x = activations().subarray(0, rows * K).map((v, i) => (i < K ? v : Math.cos(i * 0.53)) * 1e36);
        const y = await runMatmul(isa, e, x, wBytes);
        expectRowsNearReference(y, x, w, [0, 1]);
      });
    }
  });
}

for (const { isa, device } of VARIANTS.filter((v) => v.isa !== 'neon')) {
  const skip = cToolsSkipReason(isa) ?? cannotRunReason(isa);
  it.skipIf(skip !== undefined)(`C ${isa} attention with int8 Q: a NaN in a query row makes that row of O NaN and no other`, async () => {
    const shape = { B: 1, Hq: 4, Hkv: 2, Sq: 1, Skv: 77, D: 64 };
    const e = emit({ target: 'c', op: 'attention_q8_0kv', shape, isa, device, config: { qInt8: 1 } });
    const { Hq, Hkv, Skv, D } = shape;
    const q = Uint16Array.from({ length: Hq * D }, (_, i) => f32ToF16Bits(Math.sin(i * 0.3)));
    q[1 * D + 3] = 0x7e00; // NaN in query head 1
    const kv = () => quantizeMatrix(codecOf({ format: 'q8_0', groupSize: 32 }), Float32Array.from({ length: Hkv * Skv * D }, (_, i) => Math.cos(i * 0.13)), Hkv * Skv, D);
    const runner = cRunner(isa);
    const build = await runner.build(e.plan, e.rendered);
    if (build.status !== 'ok') throw new Error(build.detail);
    const run = await runner.execute(build, { 'q.bin': new Uint8Array(q.buffer), 'k.bin': kv(), 'v.bin': kv() });
    build.dispose();
    if (run.status !== 'ok') throw new Error(run.detail);
    const bad = Array.from(new Uint16Array(run.output.slice().buffer), (h) => (h & 0x7c00) === 0x7c00); // f16 O: true where non-finite
    for (let h = 0; h < Hq; h++) expect(bad.slice(h * D, (h + 1) * D).every((b) => b === (h === 1)), `head ${h}`).toBe(true);
  });
}
