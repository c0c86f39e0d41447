import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import type { PlanOf } from '../../src/plan/types.js';
import { emit } from '../../src/api/emit.js';
import { kernelDataFiles } from '../../src/api/kit.js';
import { cudaTool, GPU, PROFILE } from './gpu-helpers.js';

const sanitizer = cudaTool('compute-sanitizer');
const nvcc = cudaTool('nvcc');
if (!sanitizer || !nvcc) console.warn(`SKIP: compute-sanitizer checks need ${[!sanitizer && 'compute-sanitizer', !nvcc && 'nvcc'].filter(Boolean).join(' and ')} (CUDA toolkit)`);

// A few cases that between them take each variant, the q3.5 tables, f16 and ggml weights, M at 1, 3
// and 64, and ragged N and K.
const CASES: Array<{ op: string; shape: string; config: Record<string, string> }> = [
  { op: 'matmul_q35', shape: 'M=1,N=77,K=320', config: { kernel: 'gemv' } },
  { op: 'matmul_f16', shape: 'M=3,N=77,K=320', config: { kernel: 'gemv' } },
  { op: 'matmul_q4_0', shape: 'M=64,N=77,K=320', config: { kernel: 'tiled', math: 'mma' } },
  { op: 'matmul_q8', shape: 'M=3,N=1031,K=4160', config: { kernel: 'tiled', math: 'simt' } },
];

// Concurrent: each case is its own nvcc build and sanitizer processes, and one after another they
// would take minutes of a lent machine's fifteen (estimated); a case's three tools stay in order.
describe.skipIf(!sanitizer || !nvcc).concurrent(`compute-sanitizer on the emitted run program (kgen_run.cu built by nvcc) on ${GPU.name}`, () => {
  for (const c of CASES) {
    it(`${c.op} ${JSON.stringify(c.config)} ${c.shape}: memcheck, racecheck and synccheck are clean`, async (ctx) => {
      let e;
      try {
        e = emit({ target: 'cuda', op: c.op, shape: c.shape, device: PROFILE.device.name, config: c.config });
      } catch (err) {
        console.warn(`SKIP ${c.op} ${JSON.stringify(c.config)}: ${(err as Error).message}`);
        return;
      }
      const dir = mkdtempSync(join(tmpdir(), 'kgen-sanitize-'));
      for (const [name, text] of Object.entries({ ...e.files, ...kernelDataFiles(e.plan, 1) })) writeFileSync(join(dir, name), text);
      const cc = await execa(nvcc!, ['-O3', '-std=c++17', `-arch=${(e.plan as PlanOf<'cuda-matmul'>).params.arch}`, '-lineinfo', '-o', join(dir, 'kgen_run'), join(dir, 'kernel.cu'), join(dir, 'kgen_run.cu')], { reject: false, all: true });
      expect(cc.exitCode, cc.all).toBe(0);
      for (const tool of ['memcheck', 'racecheck', 'synccheck']) {
        const r = await execa(sanitizer!, ['--tool', tool, '--error-exitcode', '9', join(dir, 'kgen_run'), dir], { reject: false, all: true });
        // Some sandboxed GPU machines (gVisor) run CUDA but the sanitizer refuses the device there
        // ("Device not supported", then error 999 at the first allocation): a skip with its words,
        // not a failure of the kernel.
        const refused = /Device not supported/.exec(r.all ?? '');
        if (tool === 'memcheck' && refused && !/=========\s+(Invalid|Race|Barrier)/.test(r.all ?? '')) {
          console.warn(`SKIP compute-sanitizer on ${GPU.name}: it refused the device (${refused[0]})`);
          ctx.skip();
        }
        expect(r.exitCode, `${tool}:\n${r.all}`).toBe(0);
        expect(r.all).toMatch(/ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards/);
      }
    });
  }
});
