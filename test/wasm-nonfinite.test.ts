import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { runnerFor } from '../src/backends/registry.js';
import { f32ToF16Bits } from '../src/numeric/half.js';
import { codecOf, quantizeMatrix } from '../src/quant/index.js';

/**
 * WebAssembly kernels given a NaN or an infinity (docs/ARCHITECTURE.md, "Non-finite and tiny
 * activations"): the outputs that read it come out NaN and the call completes. Before, two
 * truncations to integer trapped on NaN ("float unrepresentable in integer range"), so the whole call
 * threw: the epilogue's exp (SiLU, GELU) and attention's int8 Q codes.
 */
async function run(e: ReturnType<typeof emit>, inputs: Record<string, Uint8Array>): Promise<Uint8Array> {
  const runner = runnerFor(e.plan);
  const build = await runner.build(e.plan, e.rendered);
  if (build.status !== 'ok') throw new Error(build.detail);
  const r = await runner.execute(build, inputs);
  build.dispose();
  if (r.status !== 'ok') throw new Error(r.detail);
  return r.output.slice();
}

describe('WebAssembly: NaN and infinity in the inputs', () => {
  it('a matmul with an exp epilogue makes the rows holding them NaN, the others finite', async () => {
    const [M, N, K] = [3, 37, 192];
    for (const activation of ['gelu', 'silu'] as const) {
      const e = emit({ target: 'wasm', ir: { kind: 'matmul', name: 'nf', weight: { format: 'q4_0' }, epilogue: { activation } }, shape: { M, N, K } });
      const x = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i * 0.37));
      x[1 * K + 5] = NaN;
      x[2 * K + 100] = -Infinity;
      const w = quantizeMatrix(codecOf({ format: 'q4_0', groupSize: 32 }), Float32Array.from({ length: N * K }, (_, i) => Math.cos(i * 0.71)), N, K);
      const y = new Float32Array((await run(e, { 'x.bin': new Uint8Array(x.buffer), 'w.bin': w })).buffer);
      expect(y.subarray(0, N).every(Number.isFinite), `${activation} row 0`).toBe(true);
      expect(Array.from(y.subarray(N)).filter((v) => !Number.isNaN(v)), `${activation} rows 1, 2`).toEqual([]);
    }
  });

  it('attention with int8 Q makes the query row holding a NaN NaN, the others finite', async () => {
    const shape = { B: 1, Hq: 4, Hkv: 2, Sq: 1, Skv: 77, D: 64 };
    const e = emit({ target: 'wasm', op: 'attention_q8_0kv', shape, config: { qInt8: 1 } });
    expect(e.plan.config.qInt8).toBe(1);
    const { Hq, Hkv, Skv, D } = shape;
    const q = Uint16Array.from({ length: Hq * D }, (_, i) => f32ToF16Bits(Math.sin(i * 0.3)));
    q[1 * D + 3] = 0x7e00; // NaN in query head 1
    const kv = () => quantizeMatrix(codecOf({ format: 'q8_0', groupSize: 32 }), Float32Array.from({ length: Hkv * Skv * D }, (_, i) => Math.cos(i * 0.13)), Hkv * Skv, D);
    const out = await run(e, { 'q.bin': new Uint8Array(q.buffer), 'k.bin': kv(), 'v.bin': kv() });
    const o = Array.from(new Uint16Array(out.buffer), (h) => (h & 0x7c00) === 0x7c00); // f16 O: true where non-finite
    for (let h = 0; h < Hq; h++) expect(o.slice(h * D, (h + 1) * D).every((bad) => bad === (h === 1)), `head ${h}`).toBe(true);
  });
});
