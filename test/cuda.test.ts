import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { verify } from '../src/api/verify.js';
import { ptxasCheck } from '../src/backends/cuda/ptxas.js';
import { skipReason } from './helpers.js';

const noGpp = skipReason(['g++']);
const noNvcc = skipReason(['nvcc']);

// Ragged: N=77 is not a multiple of any row tile; K=320 is 5 groups of 64 (10 ggml blocks).
describe.concurrent.skipIf(noGpp !== undefined)('CUDA kernels through the CPU shim', () => {
  for (const op of ['matmul_q35', 'matmul_q4_0']) {
    for (const config of [{ kernel: 'gemv' }, { kernel: 'tiled', math: 'mma' }, { kernel: 'tiled', math: 'simt' }]) {
      it(`${op} ${JSON.stringify(config)}: ragged N and K match the reference`, async () => {
        const r = await verify({ target: 'cuda', op, shape: 'M=3,N=77,K=320', device: 'rtx4090', config: JSON.stringify(config) });
        expect(r.status, r.detail).toBe('ok');
        expect(r.comparison!.nmse).toBeLessThanOrEqual(r.tolerance.nmse);
      });
    }
  }
});

describe.skipIf(noNvcc !== undefined)('ptxas cross-check', () => {
  it('the default q3.5 GEMV for rtx4090: shared memory as planned, no spills', async () => {
    const e = emit({ target: 'cuda', op: 'matmul_q35', shape: 'M=1,N=4096,K=14336', device: 'rtx4090' });
    const r = await ptxasCheck(e.rendered, { arch: 'sm_89', werror: true });
    expect(r.status, r.status === 'compile_error' ? r.detail : '').toBe('ok');
    if (r.status !== 'ok') return;
    expect(r.report.sharedBytes).toBe(e.plan.params.smemStatic);
    expect(r.report.spillStores + r.report.spillLoads).toBe(0);
  });
});
