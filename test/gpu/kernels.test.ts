import { describe, expect, it } from 'vitest';
import { emit } from '../../src/api/emit.js';
import { opKit } from '../../src/ops/index.js';
import { verify } from '../../src/api/verify.js';
import { cudaRunnerFor } from '../../src/backends/cuda/gpu-runner.js';
import type { RenderedKernel } from '../../src/backends/types.js';
import { KgenError } from '../../src/errors.js';
import type { MatmulOp, MatmulShape } from '../../src/ir/types.js';
import { GPU, PROFILE } from './gpu-helpers.js';

const FORMATS = ['q35', 'q4', 'q8', 'q4_0', 'q8_0', 'f16'] as const;
const VARIANTS = [{ kernel: 'gemv' }, { kernel: 'tiled', math: 'mma' }, { kernel: 'tiled', math: 'simt' }] as const;
// Ragged: N is no multiple of any row tile; K is whole scale groups (64 | 320, 4160) but no multiple of the K tiles.
const SHAPES = ['N=77,K=320', 'N=1031,K=4160'];
const device = PROFILE.device.name;

/** Why kgen plans no kernel for this case (gemv above its M limit, mma below sm_80), or undefined. */
function refusal(op: string, shape: string, config: object): string | undefined {
  try {
    emit({ target: 'cuda', op, shape, device, config: { ...config } });
    return undefined;
  } catch (e) {
    if (e instanceof KgenError) return e.message;
    throw e;
  }
}

describe.concurrent(`every format x variant x M on ${GPU.name}, ragged shapes, against the f64 reference`, () => {
  for (const f of FORMATS) {
    for (const config of VARIANTS) {
      for (const M of [1, 3, 64]) {
        for (const nk of SHAPES) {
          const op = `matmul_${f}`;
          const shape = `M=${M},${nk}`;
          const name = `${op} ${JSON.stringify(config)} ${shape}`;
          const why = refusal(op, shape, config);
          if (why) {
            it.skip(`${name} (no such plan: ${why.split(';')[0]})`, () => {});
            continue;
          }
          it(name, async () => {
            const r = await verify({ target: 'cuda', op, shape, device, config: { ...config }, werror: true });
            expect(r.runner, 'ran on the GPU, not the shim').toMatch(/^gpu /);
            expect(r.status, r.detail).toBe('ok');
            expect(r.ran).toBe(true);
            expect(r.comparison!.nmse).toBeLessThanOrEqual(r.tolerance.nmse);
          });
        }
      }
    }
  }
});

describe(`the GPU runner's statuses on ${GPU.name}`, () => {
  const e = emit({ target: 'cuda', op: 'matmul_q4', shape: 'M=1,N=4096,K=14336', device });
  const inputs = opKit(e.plan.op.kind).testData(e.plan.op, e.plan.shape, 1).inputs;
  const runner = cudaRunnerFor(e.plan);
  /** A kernel with the emitted entry's parameters and a body of our choosing. */
  const custom = (body: string): RenderedKernel => ({
    ...e.rendered,
    files: { 'kernel.h': '', 'kernel.cu': `#include <stdint.h>\n__global__ void k(const float *x, const uint8_t *w, const float *b, const float *r, float *y) {\n${body}\n}\n` },
  });

  it('times the default GEMV with CUDA events, the L2 flushed between runs', async () => {
    const build = await runner.build(e.plan, e.rendered);
    expect(build.status, build.status === 'compile_error' ? build.detail : '').toBe('ok');
    if (build.status !== 'ok') return;
    const run = await runner.execute(build, inputs, { timing: { warmup: 5, runs: 21, flushBytes: 3 * (PROFILE.device.gpu!.l2Bytes ?? 0) } });
    build.dispose();
    expect(run.status, run.status !== 'ok' ? run.detail : '').toBe('ok');
    if (run.status !== 'ok') return;
    expect(run.timing!.runs).toBe(21);
    // 29 MB of q4 weights: well under 10 ms on any GPU kgen has a profile for.
    expect(run.timing!.medianMs).toBeGreaterThan(0);
    expect(run.timing!.medianMs).toBeLessThan(10);
  });

  it('an out-of-bounds write is a crash naming the CUDA error', async () => {
    const build = await runner.build(e.plan, custom('  y[(size_t)1 << 40] = x[0] + w[0];'));
    expect(build.status).toBe('ok');
    if (build.status !== 'ok') return;
    const run = await runner.execute(build, inputs);
    build.dispose();
    expect(run.status).toBe('crash');
    if (run.status === 'crash') expect(run.detail).toMatch(/CUDA_ERROR_ILLEGAL_ADDRESS|CUDA_ERROR_LAUNCH_FAILED/);
  });

  it('a kernel that never finishes is a timeout, and the GPU still works after it', async () => {
    const build = await runner.build(e.plan, custom('  volatile int spin = 1;\n  while (spin) {}\n  y[0] = 0;'));
    expect(build.status).toBe('ok');
    if (build.status !== 'ok') return;
    const run = await runner.execute(build, inputs, { timeoutMs: 5000 });
    build.dispose();
    expect(run.status).toBe('timeout');
    const after = await verify({ target: 'cuda', op: 'matmul_q4', shape: 'M=1,N=77,K=320', device });
    expect(after.status, after.detail).toBe('ok');
  });
});
