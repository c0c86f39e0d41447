import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it, vi } from 'vitest';
import type { PlanOf } from '../src/plan/types.js';
import { emit, outputFiles } from '../src/api/emit.js';
import { withDataFiles } from '../src/api/kit.js';
import { opKit } from '../src/ops/index.js';
import { TestDataCache } from '../src/ops/test-data-cache.js';
import { verify } from '../src/api/verify.js';
import { ptxasCheck } from '../src/backends/cuda/ptxas.js';
import { ptxasResources } from '../src/backends/cuda/resources.js';
import { cudaShimRunner } from '../src/backends/cuda/runner.js';
import type { MatmulOp, MatmulShape } from '../src/ir/types.js';
import { allDevices } from '../src/device/index.js';
import { buildRunKitOnShim, EPILOGUE_IRS, hasTool, ptxasFailures, skipReason } from './helpers.js';

const noGpp = skipReason(['g++']);
const noNvcc = skipReason(['nvcc']);
const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
// The shim, pinned: on a machine with a GPU `verify` would otherwise run there (test:gpu does that).
const shim = cudaShimRunner();

const OPS = ['matmul_q35', 'matmul_q4', 'matmul_q8', 'matmul_q4_0', 'matmul_q8_0', 'matmul_f16'];
// Ragged: N=77 is not a multiple of any row tile; K=320 is 5 groups of 64 (10 ggml blocks), not a
// multiple of a GEMV step (512 weights) nor of bk=128.
const SHAPES = ['M=1,N=77,K=320', 'M=3,N=77,K=320', 'M=64,N=77,K=320'];
const VARIANTS = [
  { name: 'gemv', config: { kernel: 'gemv' }, maxM: 8 },
  { name: 'tiled mma', config: { kernel: 'tiled', math: 'mma' }, maxM: Infinity },
  { name: 'tiled simt', config: { kernel: 'tiled', math: 'simt' }, maxM: Infinity },
] as const;

// The variants verify the same ops at the same shapes: their inputs and f64 references are drawn once.
const DATA = new TestDataCache();

async function expectOk(opts: Parameters<typeof verify>[0], label: string): Promise<void> {
  const r = await verify({ runner: shim, werror: true, testData: DATA, ...opts });
  expect(r.status, `${label}: ${r.detail ?? ''}`).toBe('ok');
  expect(r.ran).toBe(true);
  expect(r.comparison!.nonFinite, label).toBe(0);
  expect(r.comparison!.nmse, label).toBeLessThanOrEqual(r.tolerance.nmse);
}

describe.skipIf(noGpp !== undefined)('CUDA kernels through the CPU shim', { concurrent: true }, () => {
  for (const op of OPS) {
    for (const v of VARIANTS) {
      it(`${op} ${v.name}: M in {1,3,64} (gemv: M <= 8), ragged N and K, match the reference`, async () => {
        for (const shape of SHAPES) {
          if (Number(/M=(\d+)/.exec(shape)![1]) > v.maxM) continue;
          await expectOk({ target: 'cuda', op, shape, device: 'rtx4090', config: v.config }, `${op} ${v.name} ${shape}`);
        }
      });
    }
  }

  it('other tilings: K tiles past K, K-split GEMV, 8 warps, 2 and 4 stages, 4 rows per warp', async () => {
    for (const [shape, config] of [
      ['M=40,N=45,K=1344', { kernel: 'tiled', math: 'mma', bm: 32, bn: 64, bk: 128, stages: 2 }],
      ['M=40,N=45,K=1344', { kernel: 'tiled', math: 'simt', bm: 16, bn: 32, bk: 128, warpsM: 1, warpsN: 4, stages: 4 }],
      ['M=5,N=45,K=1344', { kernel: 'gemv', warps: 8, kSplit: 4, rowsPerWarp: 1, stages: 2 }],
      ['M=5,N=45,K=1344', { kernel: 'gemv', warps: 2, kSplit: 2, rowsPerWarp: 4, xChunk: 512 }],
    ] as const) {
      for (const op of ['matmul_q35', 'matmul_q4_0']) {
        await expectOk({ target: 'cuda', op, shape, device: 'rtx4090', config }, `${op} ${shape} ${JSON.stringify(config)}`);
      }
    }
  });

  // One test per format: each compiles nine kernels, so a loaded machine stays inside the timeout.
  for (const format of ['q4', 'q35', 'q8']) {
    it(`group sizes 32, 96 and 128 (${format})`, async () => {
      for (const groupSize of [32, 96, 128]) {
        const ir = { kind: 'matmul', name: `g${groupSize}_${format}`, x: 'f32', y: 'f32', weight: { format, groupSize }, epilogue: {} };
        for (const [shape, config] of [['M=1,N=37,K=384', { kernel: 'gemv' }], ['M=3,N=37,K=384', { kernel: 'tiled', math: 'mma' }], ['M=17,N=37,K=384', { kernel: 'tiled', math: 'simt' }]] as const) {
          await expectOk({ target: 'cuda', ir, shape, device: 'rtx4090', config }, `${format} g${groupSize} ${shape}`);
        }
      }
    });
  }

  it('f16 activations and outputs, fused bias, SiLU, GELU and residual', async () => {
    for (const ir of EPILOGUE_IRS) {
      for (const v of VARIANTS) {
        const shape = v.name === 'gemv' ? 'M=3,N=77,K=384' : 'M=19,N=77,K=384';
        await expectOk({ target: 'cuda', ir, shape, device: 'rtx4090', config: v.config }, `${ir.name} ${v.name}`);
      }
    }
  });

  it('the t4 profile (sm_75: SIMT tiles, cp.async as plain copies) and h100-sxm (dynamic shared memory)', async () => {
    for (const shape of ['M=1,N=77,K=320', 'M=64,N=77,K=320']) await expectOk({ target: 'cuda', op: 'matmul_q35', shape, device: 't4' }, `t4 ${shape}`);
    const big = { kernel: 'tiled', math: 'mma', bm: 128, bn: 128, bk: 64, stages: 4 };
    const e = emit({ target: 'cuda', op: 'matmul_q4', shape: 'M=130,N=77,K=320', device: 'h100-sxm', config: big });
    expect(e.plan.launch.dynamicShared).toBe(true);
    await expectOk({ target: 'cuda', op: 'matmul_q4', shape: 'M=130,N=77,K=320', device: 'h100-sxm', config: big }, 'h100 dynamic shared');
  });

  it('a launcher over the static shared-memory limit opts in again after cudaDeviceReset', async () => {
    // The shim refuses a launch over 48 KiB of dynamic shared memory without an opt-in, and
    // cudaDeviceReset forgets every opt-in and allocation, as a GPU's context reset does.
    const big = { kernel: 'tiled', math: 'mma', bm: 128, bn: 128, bk: 64, stages: 4 };
    const e = emit({ target: 'cuda', op: 'matmul_q4', shape: 'M=130,N=77,K=320', device: 'h100-sxm', config: big });
    expect(e.plan.launch.sharedBytes).toBeGreaterThan(48 * 1024);
    const dir = mkdtempSync(join(tmpdir(), 'kgen-cuda-reset-'));
    try {
      for (const [name, text] of Object.entries(e.rendered.files)) writeFileSync(join(dir, name), text);
      const { x, y } = e.manifest.tensors as Record<string, { bytes: number }>;
      writeFileSync(join(dir, 'reset.cu'), `#include "kernel.h"
#include <stdio.h>
/* One call on fresh allocations (zero weights: zero scales), its status and the launcher's. */
static int call(void) {
  void *x, *w, *y;
  if (cudaMalloc(&x, ${x!.bytes}) || cudaMalloc(&w, ${e.manifest.weights!.totalBytes}) || cudaMalloc(&y, ${y!.bytes})) return 90;
  cudaMemset(x, 0, ${x!.bytes});
  cudaMemset(w, 0, ${e.manifest.weights!.totalBytes});
  const cudaError_t launched = kgen_matmul_q4((const float *)x, (const uint8_t *)w, NULL, NULL, (float *)y, 0);
  if (launched != cudaSuccess) return 10 + (int)launched;
  if (cudaGetLastError() != cudaSuccess) return 80;
  return 0;
}
int main(void) {
  int first = call();
  if (first) return first;
  cudaDeviceReset();
  int second = call();
  return second ? 40 + second : 0;
}
`);
      const shimDir = join(import.meta.dirname, '..', 'templates', 'cuda', 'shim');
      const bin = join(dir, 'reset');
      await execa('g++', ['-std=c++17', '-O1', '-I', shimDir, '-I', dir, '-x', 'c++', join(dir, 'kernel.cu'), join(dir, 'reset.cu'), '-x', 'none', join(shimDir, 'kgen_cuda_shim.cpp'), '-o', bin, '-lm']);
      // 51 would be the second call's launch refused as an invalid value (40 + 10 + 1).
      expect((await execa(bin, [], { reject: false })).exitCode).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('passes AddressSanitizer and UBSan on ragged shapes', async () => {
    for (const v of VARIANTS) {
      const shape = v.name === 'gemv' ? 'M=3,N=77,K=320' : 'M=19,N=77,K=320';
      await expectOk({ target: 'cuda', op: 'matmul_q35', shape, device: 'rtx4090', config: v.config, sanitize: true }, `asan ${v.name}`);
    }
  });
});

describe.skipIf(noGpp !== undefined)('the shim catches broken kernels as statuses', () => {
  const shape = 'M=1,N=77,K=320';
  async function runBroken(mutate: (source: string) => string, timeoutMs = 60_000) {
    const e = emit({ target: 'cuda', op: 'matmul_q4', shape, device: 'rtx4090', config: { kernel: 'gemv' } });
    const kernel = { ...e.rendered, files: { ...e.rendered.files, 'kernel.cu': mutate(e.rendered.files['kernel.cu']!) } };
    const build = await shim.build(e.plan, kernel, {});
    expect(build.status, build.status === 'compile_error' ? build.detail : '').toBe('ok');
    if (build.status !== 'ok') throw new Error('unreachable');
    try {
      const data = opKit(e.plan.op.kind).testData(e.plan.op, e.plan.shape, 1);
      return await shim.execute(build, data.inputs, { timeoutMs });
    } finally {
      build.dispose();
    }
  }
  // The kernel's first statement: the shared-memory declaration.
  const FIRST = /(KG_SHARED\(kg_smem, KG_SMEM_BYTES\);)/;

  it('a barrier only some threads reach is a crash naming the deadlock, not a hang', async () => {
    const r = await runBroken((s) => s.replace(FIRST, '$1\n  if (threadIdx.x == 0) __syncthreads();'));
    expect(r).toMatchObject({ status: 'crash', detail: expect.stringMatching(/wait at __syncthreads|deadlock/) });
  });

  it('an endless loop is a timeout', async () => {
    const r = await runBroken((s) => s.replace(FIRST, '$1\n  for (volatile int spin = 1; spin;) {}'), 3000);
    expect(r.status).toBe('timeout');
  });

  it('a cp.async from outside every device allocation is a crash naming it', async () => {
    const r = await runBroken((s) => s.replace(FIRST, '$1\n  if (threadIdx.x == 0 && blockIdx.x == 0) kg_cp_async<16>(kg_smem, w + (1 << 30), 16);'));
    expect(r).toMatchObject({ status: 'crash', detail: expect.stringMatching(/cp\.async reads outside every cudaMalloc allocation/) });
  });

  it('a g++ that cannot build the shim itself is a usage error naming the compiler, not a kgen bug', async () => {
    // A g++ that answers `command -v` but compiles nothing, and a fresh cache and module state, so the shim is built (and fails) here.
    const dir = mkdtempSync(join(tmpdir(), 'kgen-broken-gpp-'));
    mkdirSync(join(dir, 'bin'));
    writeFileSync(join(dir, 'bin', 'g++'), '#!/bin/sh\necho "cc1plus: error: unrecognized command-line option" >&2\nexit 1\n');
    chmodSync(join(dir, 'bin', 'g++'), 0o755);
    const saved = { PATH: process.env.PATH, TMPDIR: process.env.TMPDIR };
    process.env.PATH = `${join(dir, 'bin')}:${saved.PATH ?? ''}`;
    process.env.TMPDIR = dir;
    try {
      vi.resetModules();
      const fresh = await import('../src/backends/cuda/runner.js');
      const { KgenError: FreshKgenError } = await import('../src/errors.js');
      const e = emit({ target: 'cuda', op: 'matmul_q4', shape, device: 'rtx4090', config: { kernel: 'gemv' } });
      const thrown = await fresh.cudaShimRunner().build(e.plan, e.rendered, {}).then(() => undefined, (err: unknown) => err);
      expect(thrown).toBeInstanceOf(FreshKgenError);
      expect((thrown as Error).message).toMatch(/^g\+\+: does not compile kgen's CUDA CPU shim \(-std=c\+\+17 .*\): cc1plus: error: unrecognized command-line option; expected a C\+\+17 compiler/);
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.TMPDIR === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved.TMPDIR;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(noNvcc !== undefined)('ptxas cross-check: every format x variant x CUDA profile', () => {
  const gpus = allDevices().filter((d) => d.gpu && d.targets.includes('cuda'));
  const cases = gpus.flatMap((device) =>
    OPS.flatMap((op) => [
      { device, op, shape: 'M=1,N=4096,K=14336', config: { kernel: 'gemv' } },
      { device, op, shape: 'M=16,N=4096,K=4096', config: {} },
      { device, op, shape: 'M=256,N=4096,K=4096', config: {} },
      ...(Number(device.gpu!.arch.slice(3)) >= 80 ? [{ device, op, shape: 'M=256,N=4096,K=4096', config: { kernel: 'tiled', math: 'simt' } }] : []),
    ]),
  );

  it(`the default configs compile warning-free for each arch, use the shared memory planned and do not spill (${cases.length} kernels)`, async () => {
    expect(gpus.map((d) => d.name).sort()).toEqual(['a100-80gb', 'h100-sxm', 'h200', 'l40s', 'rtx4090', 't4']);
    const kernels = cases.map((c) => ({ label: `${c.device.name} ${c.op} ${c.shape} ${JSON.stringify(c.config)}`, emit: () => emit({ target: 'cuda', op: c.op, shape: c.shape, device: c.device.name, config: c.config }) }));
    const failures = await ptxasFailures(kernels, (e, [report]) => {
      const smemStatic = (e.plan as PlanOf<'cuda-matmul'>).params.smemStatic;
      return [
        ...(report!.sharedBytes !== smemStatic ? [`: ptxas ${report!.sharedBytes} bytes of shared memory, plan ${smemStatic}`] : []),
        ...(report!.spillStores + report!.spillLoads > 0 ? [`: spills ${report!.spillStores}+${report!.spillLoads} bytes (${report!.registers} registers)`] : []),
      ];
    });
    expect(failures).toEqual([]);
  }, 600_000);
});

/**
 * The plans' register estimates (tiledRegisters, the attention kernels' in src/plan/cuda-attention.ts)
 * rule out what spills: configs ptxas 13.0 spilled (2026-12-05) are refused by the plan, and legal
 * configs at the estimate's limit compile without spilling. docs/cuda.md has the calibration.
 */
const SPILLED = [
  { device: 't4', op: 'matmul_q35', shape: 'M=1,N=4096,K=4096', config: { kernel: 'tiled', math: 'simt', bm: 16, bn: 128, bk: 64, warpsM: 1, warpsN: 1, stages: 2 } }, // 2520 bytes
  { device: 't4', op: 'matmul_q4', shape: 'M=1,N=4096,K=4096', config: { kernel: 'tiled', math: 'simt', bm: 16, bn: 128, bk: 64, warpsM: 1, warpsN: 1, stages: 2 } }, // 1700
  { device: 't4', op: 'matmul_q4_0', shape: 'M=1,N=4096,K=4096', config: { kernel: 'tiled', math: 'simt', bm: 16, bn: 128, bk: 64, warpsM: 1, warpsN: 1, stages: 2 } },
  { device: 't4', op: 'matmul_q4', shape: 'M=64,N=77,K=320', config: { kernel: 'tiled', math: 'simt', bm: 64, bn: 64, bk: 64, warpsM: 1, warpsN: 1 } }, // 768
  { device: 'h100-sxm', op: 'matmul_q35', shape: 'M=256,N=4096,K=4096', config: { kernel: 'tiled', math: 'mma', bm: 128, bn: 32, warpsM: 1, warpsN: 1, stages: 2 } }, // 344
  { device: 'a100-80gb', op: 'matmul_q35', shape: 'M=256,N=4096,K=4096', config: { kernel: 'tiled', math: 'mma', bm: 128, bn: 64, warpsM: 1, warpsN: 2 } }, // 64
  { device: 'a100-80gb', op: 'attention_f16', shape: 'B=1,Hq=8,Hkv=2,Sq=512,Skv=512,D=128', config: { math: 'mma', br: 32, bc: 128, warps: 2 } }, // 32
  { device: 'a100-80gb', op: 'attention_f16', shape: 'B=1,Hq=8,Hkv=2,Sq=512,Skv=512,D=128', config: { math: 'mma', br: 128, bc: 128, warps: 8 } }, // 16
  { device: 'a100-80gb', op: 'attention_q8kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=64,D=96', config: { math: 'mma', br: 64, bc: 64, warps: 4 } }, // 32, the default before
  { device: 'h100-sxm', op: 'attention_q8_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=64,D=96', config: { math: 'mma', br: 64, bc: 64, warps: 4 } }, // 16, the default before
  // 2 stages, fewer than 4 warps (TWO_STAGES_FEW_WARPS; ptxas 13.0, 2026-12-05); the first at an estimate of 194 before it.
  { device: 'a100-80gb', op: 'attention_q8kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=64', config: { math: 'mma', br: 32, bc: 64, stages: 2, warps: 2 } }, // 16
  { device: 'a100-80gb', op: 'attention_f16', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=64', config: { math: 'mma', br: 16, bc: 64, stages: 2, warps: 1 } }, // 312
  { device: 'h100-sxm', op: 'attention_q8_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=96', config: { math: 'mma', br: 32, bc: 16, stages: 2, warps: 2 } }, // 200
  { device: 'rtx4090', op: 'attention_q4_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=96', config: { math: 'mma', br: 16, bc: 16, stages: 2, warps: 1 } }, // 264
  // SIMT with 2-byte staging pieces (SIMT_BASE_REGISTERS; sm_90, ptxas 13.0, 2026-12-05): estimates of 240 and 248 before it.
  { device: 'h100-sxm', op: 'attention_q8_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=128', config: { math: 'simt', br: 32, bc: 128, stages: 2, warps: 2 } }, // 144
  { device: 'h100-sxm', op: 'attention_q4_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=128', config: { math: 'simt', br: 16, bc: 128, stages: 3, warps: 1 } }, // 176
  // SIMT at an estimate of 248 with a base of 56 (ptxas 13.0, 2026-12-06): q8 KV at D = 96 (the first also before the tile loop bounded P.V per row).
  { device: 'a100-80gb', op: 'attention_q8kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=96', config: { math: 'simt', br: 16, bc: 128, stages: 2, warps: 1 } }, // 12+12
  { device: 'h100-sxm', op: 'attention_q8kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=96', config: { math: 'simt', br: 16, bc: 128, stages: 3, warps: 1 } }, // 4+4
];

// Legal, not defaults, with estimates at 195-255 of 255 (ptxas: 158-255 registers, no spills).
const NEAR_LIMIT = [
  { device: 't4', op: 'matmul_q35', shape: 'M=256,N=4096,K=4096', config: { kernel: 'tiled', math: 'simt', bm: 32, bn: 32, bk: 64, warpsM: 1, warpsN: 1, stages: 2 } },
  { device: 't4', op: 'matmul_q4', shape: 'M=256,N=4096,K=4096', config: { kernel: 'tiled', math: 'simt', bm: 64, bn: 64, bk: 64, warpsM: 1, warpsN: 2, stages: 2 } },
  { device: 'a100-80gb', op: 'matmul_q35', shape: 'M=256,N=4096,K=4096', config: { kernel: 'tiled', math: 'mma', bm: 64, bn: 128, bk: 64, warpsM: 1, warpsN: 2, stages: 2 } },
  { device: 'a100-80gb', op: 'matmul_q35', shape: 'M=256,N=4096,K=4096', config: { kernel: 'tiled', math: 'simt', bm: 128, bn: 32, bk: 64, warpsM: 1, warpsN: 2, stages: 2 } },
  { device: 'a100-80gb', op: 'matmul_q4', shape: 'M=256,N=4096,K=4096', config: { kernel: 'tiled', math: 'mma', bm: 128, bn: 128, bk: 128, warpsM: 1, warpsN: 4, stages: 2 } },
  { device: 'rtx4090', op: 'matmul_f16', shape: 'M=256,N=4096,K=4096', config: { kernel: 'tiled', math: 'mma', bm: 128, bn: 64, bk: 32, warpsM: 1, warpsN: 2, stages: 3 } },
  { device: 'h100-sxm', op: 'matmul_q4_0', shape: 'M=256,N=4096,K=4096', config: { kernel: 'tiled', math: 'mma', bm: 128, bn: 128, bk: 128, warpsM: 1, warpsN: 4, stages: 2 } },
  { device: 'a100-80gb', op: 'attention_q8kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=64,D=96', config: { math: 'mma', br: 16, bc: 16, stages: 3, warps: 1 } },
  // SIMT at the base's edge (64): estimate 240 of 255, ptxas 254-255 registers and no spill.
  { device: 'a100-80gb', op: 'attention_q4_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=64', config: { math: 'simt', br: 16, bc: 128, stages: 2, warps: 1 } },
  { device: 'h100-sxm', op: 'attention_q4_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=64', config: { math: 'simt', br: 16, bc: 128, stages: 2, warps: 1 } },
  // The 3-stage twins of tiles that spill on 2 stages stay legal (251 and 244 registers).
  { device: 'a100-80gb', op: 'attention_q8kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=64', config: { math: 'mma', br: 32, bc: 128, stages: 3, warps: 2 } },
  { device: 'a100-80gb', op: 'attention_q4_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=512,D=128', config: { math: 'mma', br: 32, bc: 64, stages: 3, warps: 2 } },
];

describe('an arch this nvcc does not list is ruled out before compiling', () => {
  /** A fake nvcc: `--list-gpu-code` prints `codes` (or fails, as before CUDA 11.0, when empty); any compile is logged and fails. */
  function fakeNvcc(codes: string[]): { nvcc: string; log: string } {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-fake-nvcc-'));
    const log = join(dir, 'compiles.log');
    const list = codes.length ? `printf '%s\\n' ${codes.join(' ')}` : "echo \"nvcc fatal   : Unknown option '--list-gpu-code'\" >&2; exit 1";
    const nvcc = join(dir, 'nvcc');
    writeFileSync(nvcc, `#!/bin/sh
case "$1" in
  --version) echo 'Cuda compilation tools, release 10.2, V10.2.89' ;;
  --list-gpu-code) ${list} ;;
  *) echo "$@" >> '${log}'; echo 'nvcc fatal   : some failure' >&2; exit 1 ;;
esac
`, { mode: 0o755 });
    return { nvcc, log };
  }
  const e = emit({ target: 'cuda', op: 'matmul_q4', shape: 'M=1,N=77,K=320', device: 'rtx4090' });

  it('says this nvcc cannot build for sm_89, naming what it lists, and runs no compile', async () => {
    const fake = fakeNvcc(['sm_75', 'sm_80']);
    const check = await ptxasCheck(e.rendered, { arch: 'sm_89', nvcc: fake.nvcc });
    expect(check).toMatchObject({ status: 'arch_unsupported', supported: ['sm_75', 'sm_80'] });
    const r = await ptxasResources(e.plan, e.rendered, { nvcc: fake.nvcc });
    expect(r.resources).toBeUndefined();
    expect(r.notes).toEqual([expect.stringMatching(/^this nvcc cannot build for sm_89 \(nvcc 10\.2\.89 builds for sm_75, sm_80; not sm_89\): manifest\.json has no ptxas figures/)]);
    expect(existsSync(fake.log)).toBe(false);
  });

  it('an nvcc without --list-gpu-code compiles, and a refusal says the arch may be missing rather than blaming the kernel', async () => {
    const fake = fakeNvcc([]);
    const r = await ptxasResources(e.plan, e.rendered, { nvcc: fake.nvcc });
    expect(r.notes).toEqual([expect.stringMatching(/does not list the architectures it supports .* so it may lack sm_89/)]);
    expect(readFileSync(fake.log, 'utf8')).toMatch(/-arch=sm_89/);
  });
});

describe('the register estimates rule out configs that spill', () => {
  it.each(SPILLED)('$device $op $shape $config is refused by the plan', ({ device, op, shape, config }) => {
    expect(() => emit({ target: 'cuda', op, shape, device, config })).toThrow(/registers per thread, estimated|mma: q8 KV rows whose D is not a power of two/);
  });

  it('the D = 96 q8 attention prefills default to 32 keys per tile, no longer 64', () => {
    for (const op of ['attention_q8kv', 'attention_q8_0kv']) {
      expect(emit({ target: 'cuda', op, shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=64,D=96', device: 'h100-sxm' }).plan.config).toMatchObject({ math: 'mma', br: 64, bc: 32, warps: 4 });
    }
  });

  it.skipIf(noNvcc !== undefined)(`legal configs near the estimate's limit do not spill under ptxas (${NEAR_LIMIT.length} kernels)`, async () => {
    const failures: string[] = [];
    let next = 0;
    const worker = async () => {
      while (next < NEAR_LIMIT.length) {
        const c = NEAR_LIMIT[next++]!;
        const e = emit({ target: 'cuda', op: c.op, shape: c.shape, device: c.device, config: c.config });
        const r = await ptxasCheck(e.rendered, { arch: allDevices().find((d) => d.name === c.device)!.gpu!.arch });
        if (r.status !== 'ok') failures.push(`${c.device} ${c.op}: ${r.detail.slice(0, 300)}`);
        else for (const x of r.entries) if (x.spillStores + x.spillLoads > 0) failures.push(`${c.device} ${c.op} ${JSON.stringify(c.config)}: ${x.registers} registers, spills ${x.spillStores}+${x.spillLoads} bytes`);
      }
    };
    await Promise.all([worker(), worker()]);
    expect(failures).toEqual([]);
    // 114 s once at load ~17 (stop 53): the timeout leaves room for a busy CI host.
  }, 300_000);
});

describe('emit --data as a library', () => {
  it('keeps the binary data files apart from the text files, listed in the one manifest.json', () => {
    const e = withDataFiles(emit({ target: 'cuda', op: 'matmul_q4', shape: 'M=1,N=77,K=320', device: 'rtx4090' }), 7);
    // `files` holds text only, as its type says; the data's bytes are in `dataFiles`.
    expect(Object.entries(e.files).filter(([, content]) => typeof content !== 'string').map(([name]) => name)).toEqual([]);
    const data = e.dataFiles ?? {};
    expect(Object.keys(data).sort()).toEqual(['ref.bin', 'ref_terms.bin', 'w.bin', 'x.bin']);
    for (const bytes of Object.values(data)) expect(bytes).toBeInstanceOf(Uint8Array);
    expect(JSON.parse(e.files['manifest.json']!)).toEqual(e.manifest);
    expect(Object.keys(e.manifest.data!.files).sort()).toEqual(Object.keys(data).sort());
    // What emit -o writes: both, side by side.
    expect(Object.keys(outputFiles(e).files).sort()).toEqual([...Object.keys(e.files), ...Object.keys(data)].sort());
  });
});

describe.skipIf(noGpp !== undefined)('kgen emit and verify --target cuda on the command line', () => {
  it('emit -o writes the kernel, launcher, run kit and manifest; --data the inputs and reference', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'kgen-cuda-')), 'q35');
    const r = await execa(KGEN, ['emit', '--target', 'cuda', '--op', 'matmul_q35', '--shape', 'M=1,N=77,K=320', '--device', 'rtx4090', '-o', out, '--data', '7'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    for (const f of ['kernel.cu', 'kernel.h', 'kgen_run.cu', 'run.sh', 'manifest.json', 'x.bin', 'w.bin', 'ref.bin', 'ref_terms.bin']) expect(existsSync(join(out, f)), f).toBe(true);
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(m).toMatchObject({ target: 'cuda', arch: 'sm_89', configSource: 'default', launch: { gridExpr: expect.any(Array), sharedBytes: expect.any(Number) } });
    if (noNvcc === undefined) expect(m.resources).toMatchObject({ source: 'ptxas', arch: 'sm_89', spillStores: 0, spillLoads: 0, sharedBytes: m.launch.sharedBytes });
    expect(readFileSync(join(out, 'ref.bin')).byteLength).toBe(77 * 8);
    // Each output's energy of summed products, which the check weighs it by where they cancel.
    const terms = new Float64Array(new Uint8Array(readFileSync(join(out, 'ref_terms.bin'))).buffer);
    expect(terms.length).toBe(77);
    expect(terms.every((t) => t > 0)).toBe(true);
    expect((await execa('sh', ['-n', join(out, 'run.sh')], { reject: false })).exitCode).toBe(0);
    const h = readFileSync(join(out, 'kernel.h'), 'utf8');
    expect(h).toMatch(/cudaError_t kgen_matmul_q35\(const float \*x, const uint8_t \*w, const float \*bias, const float \*residual, float \*y, cudaStream_t stream\)/);
    // The run kit as emitted, built by g++ against the shim, checks the output against ref.bin and
    // ref_terms.bin itself; a wrong ref_terms.bin size is refused as a crash with the reason.
    const bin = buildRunKitOnShim(out);
    const run = await execa(bin, [out, '--json', join(out, 'result.json')], { reject: false, all: true });
    expect(run.exitCode, run.all).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'))).toMatchObject({ status: 'ok', checked: true });
    writeFileSync(join(out, 'ref_terms.bin'), new Uint8Array(8));
    const bad = await execa(bin, [out, '--json', join(out, 'result.json')], { reject: false, all: true });
    expect(bad.exitCode).not.toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'))).toMatchObject({ status: 'crash', error: expect.stringMatching(/ref_terms\.bin is not 616 bytes/) });
  }, 120_000);

  it.skipIf(noNvcc !== undefined)('the run kit builds with nvcc warning-free, and run.sh reports a missing GPU as a result', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'kgen-cuda-')), 'q4');
    const e = await execa(KGEN, ['emit', '--target', 'cuda', '--op', 'matmul_q4', '--shape', 'M=3,N=77,K=320', '--device', 'h100-sxm', '-o', out, '--data', '5', '--no-ptxas'], { reject: false });
    expect(e.exitCode, e.stderr).toBe(0);
    // What run.sh builds, held to the warnings a kernel engineer's build would show.
    const strict = await execa('nvcc', ['-O3', '-std=c++17', '-arch=sm_90', '-Xcompiler', '-Wall,-Wextra', '-Werror', 'all-warnings', '-o', join(out, 'strict'), join(out, 'kernel.cu'), join(out, 'kgen_run.cu')], { reject: false, all: true });
    expect(strict.exitCode, strict.all).toBe(0);
    expect(strict.all).toBe('');
    const run = await execa('sh', [join(out, 'run.sh')], { reject: false, all: true });
    const result = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
    expect(result).toMatchObject({ format: 'kgen-cuda-run', version: 1, kernel: { target: 'cuda', arch: 'sm_90', shape: { M: 3, N: 77, K: 320 } } });
    if (hasTool('nvidia-smi')) {
      expect(run.exitCode, run.all).toBe(0);
      expect(result).toMatchObject({ status: 'ok', checked: true });
    } else {
      // No driver here: the kit still builds, and the run says why it could not start, as data.
      expect(run.exitCode).not.toBe(0);
      expect(result).toMatchObject({ status: 'crash', gpu: null, checked: false, error: expect.stringMatching(/^cuda\w+: /) });
    }
  }, 120_000);

  it('verify says the kernel ran through the CPU shim when there is no GPU', async () => {
    const r = await execa(KGEN, ['verify', '--target', 'cuda', '--op', 'matmul_q4_0', '--shape', 'M=3,N=77,K=320', '--device', 'rtx4090'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok: matmul_q4_0 cuda\/gemv M=3,N=77,K=320/);
    if (!hasTool('nvidia-smi')) expect(r.stdout).toContain('cuda-cpu-shim');
  });
});
