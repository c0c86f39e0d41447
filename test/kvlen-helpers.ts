import { expect } from 'vitest';
import { runnerFor } from '../src/backends/registry.js';
import type { BuildOptions, RenderedKernel } from '../src/backends/types.js';
import { kvLayoutOf, kvRowStrides } from '../src/ir/attention.js';
import type { AttentionOp, AttentionShape } from '../src/ir/types.js';
import { attentionJudge } from '../src/ops/attention.js';
import { opKit } from '../src/ops/index.js';
import { fromDtype } from '../src/ops/tensors.js';
import type { Plan } from '../src/plan/types.js';

/**
 * Runs a run-time-length attention kernel (op.kvLength 'runtime') once at kv_len `length` with every
 * K and V row of a position >= length, and its scales, set to 0xff bytes (NaN f16 values and NaN
 * scales), and expects an output with no non-finite value within the plan's tolerance of the f64
 * reference at that length: a kernel that loads those rows, even to multiply by a zero weight, fails.
 */
export async function expectPoisonNeverRead(plan: Plan, rendered: RenderedKernel, length: number, label: string, opts: { seed: number; build?: BuildOptions }): Promise<void> {
  const op = plan.op as AttentionOp;
  const shape = plan.shape as AttentionShape;
  const data = opKit('attention').testData(op, shape, opts.seed);
  const { headStride, positionStride } = kvRowStrides(kvLayoutOf(op), shape);
  const { B, Hkv, Skv } = shape;
  const poison = (bytes: Uint8Array) => {
    const copy = bytes.slice();
    const rowBytes = bytes.length / (B * Hkv * Skv);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < Hkv; h++)
        for (let j = length; j < Skv; j++) {
          const row = b * Hkv * Skv + h * headStride + j * positionStride;
          copy.fill(0xff, row * rowBytes, (row + 1) * rowBytes);
        }
    return copy;
  };
  const inputs: Record<string, Uint8Array> = { ...data.inputs, 'kv_len.bin': new Uint8Array(Int32Array.from([length]).buffer) };
  for (const name of ['k.bin', 'v.bin', 'k_scales.bin', 'v_scales.bin']) if (data.inputs[name]) inputs[name] = poison(data.inputs[name]!);
  const judge = attentionJudge(op, shape, {
    q: fromDtype(data.inputs['q.bin']!, op.q),
    k: { data: data.inputs['k.bin']!, scales: data.inputs['k_scales.bin'] },
    v: { data: data.inputs['v.bin']!, scales: data.inputs['v_scales.bin'] },
  }, [length]);
  const runner = runnerFor(plan);
  const build = await runner.build(plan, rendered, opts.build ?? {});
  if (build.status !== 'ok') throw new Error(`${label}: ${build.detail}`);
  try {
    const run = await runner.execute(build, inputs);
    if (run.status !== 'ok') throw new Error(`${label}: ${run.detail}`);
    const { ok, comparison } = judge.check(fromDtype(run.output, op.o), plan.tolerance);
    expect(comparison.nonFinite, label).toBe(0);
    expect(ok, `${label}: NMSE ${comparison.nmse}`).toBe(true);
  } finally {
    build.dispose();
  }
}
