import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { buildPackage } from '../src/api/package.js';
import { verify } from '../src/api/verify.js';
import { cudaShimRunner } from '../src/backends/cuda/runner.js';
import { kvLayoutOf, kvRowStrides } from '../src/ir/attention.js';
import type { AttentionOp, AttentionShape } from '../src/ir/types.js';
import { opKit } from '../src/ops/index.js';
import { fromDtype } from '../src/ops/tensors.js';
import type { Plan, PlanOf } from '../src/plan/types.js';
import type { RenderedKernel } from '../src/backends/types.js';
import { referenceAttention } from '../src/reference/attention.js';
import { compareOutputs, withinTolerance } from '../src/reference/compare.js';
import { buildRunKitOnShim, cudaAttentionPtxasFailures, expectMatchesReference, skipReason } from './helpers.js';

/**
 * CUDA attention with a run-time KV length (op.kvLength 'runtime'): Skv is the cache's capacity and
 * each launch reads the first kv_len positions of each head's. Through the CPU shim, verify runs a
 * kernel at three lengths (checkedKvLengths: the capacity, a ragged one, the shortest) against the
 * f64 reference at each; the poison test fills every position past the length with 0xff bytes (NaN
 * f16 values and scales), which a kernel that loads them, even to weigh them 0, carries into O.
 */
const noGpp = skipReason(['g++']);
const noNvcc = skipReason(['nvcc']);
const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
// The shim, pinned: on a machine with a GPU `verify` would otherwise run there.
const shim = cudaShimRunner();
const FORMATS = ['f16', 'q8', 'q8_0', 'q4_0'] as const;

const ir = (kvCache: string, causal: boolean, extra: object = {}) => ({ kind: 'attention', name: `rt_${kvCache}_${causal ? 'c' : 'n'}`, q: 'f16', o: 'f32', kvCache, causal, kvLength: 'runtime', ...extra });

type Variant = 'splitk_decode' | 'flash_prefill' | 'flash_prefill_mma';

describe('CUDA attention with a run-time KV length: the launcher and what the plan says', () => {
  it('kernel.h and the ABI: the launcher takes int64_t kv_len before the stream; the range is stated; a fixed kernel has none of it', () => {
    const shape = 'B=1,Hq=8,Hkv=2,Sq=5,Skv=300,D=64';
    const { rendered, manifest, plan } = emit({ target: 'cuda', ir: ir('q8_0', true), shape, device: 'rtx4090', config: { kvSplit: 4 } });
    const h = rendered.files['kernel.h']!;
    expect(h).toMatch(/#define KGEN_RT_Q8_0_C_KV_LEN_MIN 5\n/);
    expect(h).toMatch(/cudaError_t kgen_rt_q8_0_c\([^)]*void \*workspace, int64_t kv_len, cudaStream_t stream\);/);
    expect(h).toContain('causal: query row i sees keys 0 .. i + kv_len - 5');
    expect(manifest.abi[0]!.signature).toMatch(/void \*workspace, int64_t kv_len, cudaStream_t stream\)$/);
    expect(manifest.abi[0]!.doc).toMatch(/5\.\.300/);
    expect(manifest.kvLength).toEqual({ min: 5, max: 300 });
    expect((plan as PlanOf<'cuda-attention'>).params).toMatchObject({ runtimeKvLength: true, kvLenMin: 5 });
    // The grid stays sized for the capacity.
    expect(manifest.launch.grid?.[0]).toBe(4);
    expect(rendered.files['kgen_run.cu']).toContain('kv_len.bin');
    const fixed = emit({ target: 'cuda', ir: { ...ir('q8_0', true), kvLength: 'fixed' }, shape, device: 'rtx4090', config: { kvSplit: 4 } });
    for (const f of ['kernel.cu', 'kernel.h']) expect(fixed.rendered.files[f], f).not.toMatch(/kv_len|kvLen|KV_LEN_MIN/);
    expect(fixed.rendered.files['kgen_run.cu']).not.toContain('readLengths');
    expect(fixed.manifest.kvLength).toBeUndefined();
  });

  it('a package\'s usage snippet passes kv_len on', async () => {
    const pkg = await buildPackage({ command: 'test', kernels: [{ target: 'cuda', ir: ir('q8', true), shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=77,D=64', device: 'rtx4090' }] });
    const usage = /```cuda\n([\s\S]*?)```/.exec(pkg.files['README.md'] as string)![1]!;
    expect(usage).toMatch(/int64_t kv_len, cudaStream_t stream\)/);
    expect(usage).toMatch(/workspace, kv_len, stream\);/);
    expect(usage).toMatch(/outside 1\.\.77 returns cudaErrorInvalidValue/);
  });
});

describe.skipIf(noGpp !== undefined)('CUDA attention with a run-time KV length through the CPU shim: three lengths each against the reference', { concurrent: true }, () => {
  // Decode in several splits (the shortest length leaves all but the first empty) and in one,
  // causal decode of 5 queries; prefill of 64 queries on tensor cores and SIMT; ragged capacities.
  const cases: [string, boolean, object, Record<string, number | string>, Variant][] = [
    ['B=1,Hq=8,Hkv=2,Sq=1,Skv=1000,D=64', true, {}, { kvSplit: 8, kvBlock: 32 }, 'splitk_decode'],
    ['B=2,Hq=10,Hkv=2,Sq=5,Skv=333,D=128', false, { kvLayout: 'positions_heads' }, { kvSplit: 4, kvBlock: 16 }, 'splitk_decode'],
    ['B=1,Hq=4,Hkv=1,Sq=5,Skv=77,D=64', true, {}, { kvSplit: 1, kvBlock: 16 }, 'splitk_decode'],
    ['B=1,Hq=4,Hkv=2,Sq=64,Skv=201,D=64', true, {}, { math: 'mma', bc: 32 }, 'flash_prefill_mma'],
    ['B=1,Hq=2,Hkv=1,Sq=64,Skv=130,D=64', false, { kvLayout: 'heads_positions' }, { math: 'simt', br: 32, bc: 16 }, 'flash_prefill'],
  ];
  for (const format of FORMATS) {
    it(`${format} KV: decode in splits and in one, causal decode of 5 queries, prefill on tensor cores and SIMT; causal and not; both row orders`, async () => {
      for (const [shape, causal, extra, config, variant] of cases) {
        const label = `${format} ${shape} causal ${causal} ${JSON.stringify(extra)} ${JSON.stringify(config)}`;
        const r = await verify({ target: 'cuda', ir: ir(format, causal, extra), shape, device: 'rtx4090', config, runner: shim, werror: true });
        expectMatchesReference(r, label);
        expect(r.plan.variant, label).toBe(variant);
        expect((r.plan.params as { runtimeKvLength: boolean }).runtimeKvLength, label).toBe(true);
      }
    }, 300_000);
  }

  it('passes AddressSanitizer and UBSan (decode with its merge, tensor-core prefill)', async () => {
    for (const [format, shape, config] of [
      ['q4_0', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=333,D=64', { kvSplit: 4, kvBlock: 16 }],
      ['q8', 'B=1,Hq=4,Hkv=1,Sq=40,Skv=100,D=64', { math: 'mma', br: 32, bc: 16 }],
    ] as const) {
      const r = await verify({ target: 'cuda', ir: ir(format, true), shape, device: 'rtx4090', config, runner: shim, werror: true, sanitize: true });
      expectMatchesReference(r, `${format} ${shape} sanitized`);
    }
  }, 300_000);
});

/** `bytes` (K, V or their scales: Skv rows a head) with every row at a position >= length set to 0xff bytes. */
function poisonPast(op: AttentionOp, shape: AttentionShape, bytes: Uint8Array, length: number): Uint8Array {
  const { headStride, positionStride } = kvRowStrides(kvLayoutOf(op), shape);
  const rowBytes = bytes.length / (shape.B * shape.Hkv * shape.Skv);
  const out = bytes.slice();
  for (let b = 0; b < shape.B; b++) {
    for (let h = 0; h < shape.Hkv; h++) {
      for (let j = length; j < shape.Skv; j++) {
        const row = b * shape.Hkv * shape.Skv + h * headStride + j * positionStride;
        out.fill(0xff, row * rowBytes, (row + 1) * rowBytes);
      }
    }
  }
  return out;
}

/**
 * Runs a run-time-length kernel through the shim at kv_len = `length` on seeded inputs whose
 * positions past it are 0xff bytes, and compares O with the reference at that length (clean inputs).
 */
async function runPoisoned(plan: Plan, rendered: RenderedKernel, length: number, label: string) {
  const op = plan.op as AttentionOp;
  const shape = plan.shape as AttentionShape;
  const data = opKit('attention').testData(op, shape, 3);
  const inputs: Record<string, Uint8Array> = { ...data.inputs, 'kv_len.bin': new Uint8Array(Int32Array.from([length]).buffer) };
  for (const name of ['k.bin', 'v.bin', 'k_scales.bin', 'v_scales.bin']) {
    if (data.inputs[name]) inputs[name] = poisonPast(op, shape, data.inputs[name]!, length);
  }
  const reference = referenceAttention(op, shape, {
    q: fromDtype(data.inputs['q.bin']!, op.q) as unknown as Float32Array,
    k: { data: data.inputs['k.bin']!, scales: data.inputs['k_scales.bin'] },
    v: { data: data.inputs['v.bin']!, scales: data.inputs['v_scales.bin'] },
  }, length);
  const build = await shim.build(plan, rendered, { werror: true });
  if (build.status !== 'ok') throw new Error(build.detail);
  try {
    const run = await shim.execute(build, inputs);
    if (run.status !== 'ok') throw new Error(`${label}: ${run.detail}`);
    return compareOutputs(fromDtype(run.output, op.o), reference);
  } finally {
    build.dispose();
  }
}

describe.skipIf(noGpp !== undefined)('CUDA attention with a run-time KV length: what lies past kv_len', () => {
  it('positions past kv_len full of NaN bytes (values and scales) never reach the output; every format, decode and prefill', async () => {
    const cases: [string, string, object, Record<string, number | string>, number][] = [
      ['f16', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=600,D=64', {}, { kvSplit: 4, kvBlock: 32 }, 77],
      ['q8', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=600,D=128', {}, { kvSplit: 8, kvBlock: 16 }, 301],
      ['q8_0', 'B=1,Hq=8,Hkv=2,Sq=5,Skv=400,D=64', { kvLayout: 'positions_heads' }, { kvSplit: 4, kvBlock: 16 }, 13],
      ['q4_0', 'B=2,Hq=4,Hkv=2,Sq=1,Skv=500,D=64', {}, { kvSplit: 1 }, 129],
      ['q8', 'B=1,Hq=4,Hkv=1,Sq=64,Skv=300,D=64', {}, { math: 'mma', bc: 32 }, 100],
      ['q4_0', 'B=1,Hq=2,Hkv=2,Sq=64,Skv=200,D=64', { kvLayout: 'heads_positions' }, { math: 'simt', br: 32, bc: 32 }, 70],
    ];
    for (const [format, shapeText, extra, config, length] of cases) {
      const label = `${format} ${shapeText} ${JSON.stringify(extra)} ${JSON.stringify(config)} kv_len ${length}`;
      const { plan, rendered } = emit({ target: 'cuda', ir: ir(format, true, extra), shape: shapeText, device: 'rtx4090', config });
      const comparison = await runPoisoned(plan, rendered, length, label);
      expect(comparison.nonFinite, label).toBe(0);
      expect(withinTolerance(comparison, plan.tolerance), `${label}: NMSE ${comparison.nmse}`).toBe(true);
    }
  }, 300_000);

  // Staging keys up to the capacity while masking their scores to -inf, with a P.V over whole tiles,
  // still multiplies NaN values by a zero probability: the poison test must see it. (The P.V as
  // emitted stops at each row's last key, so the staging bound alone no longer shows.)
  it('a decode kernel that stages keys past kv_len (scores masked) is caught: NaN in O', async () => {
    const { plan, rendered } = emit({ target: 'cuda', ir: ir('f16', true), shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=200,D=64', device: 'rtx4090', config: { kvSplit: 1, kvBlock: 16 } });
    const source = rendered.files['kernel.cu']!;
    const bound = 'keyEnd = kg_min(kvLen, keyBegin + splitKeys)';
    const rowBound = 'acc[i] = kg_pv(o, pr, vt, d, st.seen[r])';
    expect(source).toContain(bound);
    expect(source).toContain(rowBound);
    const brokenSource = source.replace(bound, 'keyEnd = kg_min(KG_SKV, keyBegin + splitKeys)').replace(rowBound, 'acc[i] = kg_pv(o, pr, vt, d, KG_KEYS)');
    const broken = { ...rendered, files: { ...rendered.files, 'kernel.cu': brokenSource } };
    expect((await runPoisoned(plan, rendered, 50, 'as emitted')).nonFinite).toBe(0);
    expect((await runPoisoned(plan, broken, 50, 'broken')).nonFinite).toBeGreaterThan(0);
  }, 120_000);

  it('the launcher returns cudaErrorInvalidValue for a kv_len outside [min, Skv] and launches nothing; the run kit checks each length of kv_len.bin', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'kgen-cuda-kvlen-')), 'att');
    try {
      const shape = 'B=1,Hq=8,Hkv=2,Sq=3,Skv=64,D=64';
      const irFile = `${out}.json`;
      writeFileSync(irFile, JSON.stringify(ir('q8', true, { o: 'f16' })));
      const r = await execa(KGEN, ['emit', '--target', 'cuda', '--ir', irFile, '--shape', shape, '--device', 'rtx4090', '--config', '{"kvSplit":4,"kvBlock":16}', '-o', out, '--data', '5', '--no-ptxas', '--no-records'], { reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
      expect(m.kvLength).toEqual({ min: 3, max: 64 });
      expect(Object.keys(m.data.files)).toContain('kv_len.bin');
      expect(existsSync(join(out, 'kv_len.bin'))).toBe(true);
      // The run kit as emitted reads kv_len.bin (64, 41, 3), writes O at each and checks them against ref.bin.
      const bin = buildRunKitOnShim(out);
      const run = await execa(bin, [out, '--json', join(out, 'result.json')], { reject: false, all: true });
      expect(run.exitCode, run.all).toBe(0);
      expect(JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'))).toMatchObject({ status: 'ok', checked: true });
      expect(readFileSync(join(out, 'y.bin')).length).toBe(3 * m.tensors.o.bytes);
      // A length out of range in kv_len.bin is the launcher's error, which the kit reports.
      writeFileSync(join(out, 'kv_len.bin'), new Uint8Array(Int32Array.from([64, 65, 3]).buffer));
      const bad = await execa(bin, [out], { reject: false, all: true });
      expect(bad.exitCode).toBe(3);
      expect(bad.all).toMatch(/kgen_rt_q8_c: .*invalid argument/i);

      // The launcher itself: out-of-range lengths return cudaErrorInvalidValue with O untouched.
      const fn = m.abi[0].symbol as string;
      const oBytes = m.tensors.o.bytes as number;
      writeFileSync(join(out, 'lengths.cu'), `#include <cstdio>
#include <cstring>
#include <vector>
#include "kernel.h"
int main() {
  void *k, *v, *s, *q, *o, *ws;
  cudaMalloc(&k, ${m.tensors.k.bytes}); cudaMalloc(&v, ${m.tensors.v.bytes}); cudaMalloc(&s, ${m.tensors.k_scales.bytes});
  cudaMalloc(&q, ${m.tensors.q.bytes}); cudaMalloc(&o, ${oBytes}); cudaMalloc(&ws, ${m.launch.workspaceBytes});
  cudaMemset(k, 0, ${m.tensors.k.bytes}); cudaMemset(v, 0, ${m.tensors.v.bytes}); cudaMemset(s, 0, ${m.tensors.k_scales.bytes}); cudaMemset(q, 0, ${m.tensors.q.bytes});
  const long long lengths[] = {0, 2, 65, -1, 3, 64, 40};
  std::vector<unsigned char> host(${oBytes});
  for (long long len : lengths) {
    cudaMemset(o, 0x77, ${oBytes});
    const cudaError_t e = ${fn}((const uint16_t *)q, (const uint8_t *)k, (const uint16_t *)s, (const uint8_t *)v, (const uint16_t *)s, (uint16_t *)o, ws, len, 0);
    cudaDeviceSynchronize();
    cudaMemcpy(host.data(), o, ${oBytes}, cudaMemcpyDeviceToHost);
    bool untouched = true;
    for (unsigned char c : host) untouched = untouched && c == 0x77;
    printf("%lld %d %d\\n", len, e == cudaErrorInvalidValue ? -1 : (int)e, untouched ? 1 : 0);
  }
  return 0;
}
`);
      const shimDir = join(import.meta.dirname, '..', 'templates', 'cuda', 'shim');
      const lengthsBin = join(out, 'lengths');
      const cc = await execa('g++', ['-std=c++17', '-O1', '-Wall', '-Wextra', '-Werror', '-I', shimDir, '-I', out, '-x', 'c++', join(out, 'kernel.cu'), join(out, 'lengths.cu'), '-x', 'none', join(shimDir, 'kgen_cuda_shim.cpp'), '-o', lengthsBin, '-lm'], { reject: false, all: true });
      expect(cc.exitCode, cc.all).toBe(0);
      const lines = (await execa(lengthsBin)).stdout.trim().split('\n');
      expect(lines).toEqual(['0 -1 1', '2 -1 1', '65 -1 1', '-1 -1 1', '3 0 0', '64 0 0', '40 0 0']);
    } finally {
      rmSync(join(out, '..'), { recursive: true, force: true });
    }
  }, 180_000);
});

describe.skipIf(noNvcc !== undefined)('nvcc -cubin: run-time KV length kernels for sm_80 and sm_89', () => {
  it('decode with its merge and in one split, prefill on tensor cores and SIMT compile warning-free, use the shared memory planned and do not spill', async () => {
    const cases: [string, string, Record<string, number | string>][] = [
      ['q8', 'B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128', {}],
      ['q4_0', 'B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128', { kvSplit: 1 }],
      ['f16', 'B=1,Hq=32,Hkv=8,Sq=512,Skv=4096,D=128', {}],
      ['q8_0', 'B=1,Hq=32,Hkv=8,Sq=512,Skv=4096,D=128', { math: 'simt' }],
      ['q8_0', 'B=1,Hq=64,Hkv=8,Sq=8,Skv=4096,D=256', {}],
    ];
    const kernels = ['a100-80gb', 'rtx4090'].flatMap((device) => cases.map(([format, shape, config]) => ({
      label: `${device} ${format} ${shape} ${JSON.stringify(config)}`,
      emit: () => emit({ target: 'cuda', ir: ir(format, true), shape, device, config }),
    })));
    expect(await cudaAttentionPtxasFailures(kernels)).toEqual([]);
  }, 300_000);
});
