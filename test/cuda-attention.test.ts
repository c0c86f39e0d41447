import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { buildPackage } from '../src/api/package.js';
import { verify } from '../src/api/verify.js';
import { cudaRunnerFor } from '../src/backends/cuda/gpu-runner.js';
import { cudaShimRunner } from '../src/backends/cuda/runner.js';
import { opKit } from '../src/ops/index.js';
import { TestDataCache } from '../src/ops/test-data-cache.js';
import type { PlanOf } from '../src/plan/types.js';
import { ATTENTION_MATRIX, attentionMatrixCase, buildRunKitOnShim, cudaAttentionPtxasFailures, expectMatchesReference, expectMatrixPlan, hasTool, skipReason } from './helpers.js';

/**
 * CUDA attention kernels (split-KV decode with its merge, flash prefill) through the CPU shim
 * against the f64 reference: issue 16's verification matrix (ATTENTION_MATRIX in helpers.ts) at the
 * default plans, then chosen configs on ragged shapes: Skv = 77 is a multiple of no tile (16..128) and
 * splits unevenly; Sq in {1, 5, 64}; Hq/Hkv in {1, 4, 5, 8}; causal and not; D in {64, 128} (and
 * 80, 96, 256 once each); f16, kgen q8 and ggml q8_0 / q4_0 KV caches (the ggml ones also on
 * Skv = 200 and 333, in both row orders, with their rows staged in 2-, 4-, 8- and 16-byte chunks at
 * D = 96, 64, 128 and 256). Each case compiles its own kernel, so the list is a covering subset.
 */
const noGpp = skipReason(['g++']);
const noNvcc = skipReason(['nvcc']);
const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
// The shim, pinned: on a machine with a GPU `verify` would otherwise run there.
const shim = cudaShimRunner();

const attention = (kvCache: 'f16' | 'q8' | 'q8_0' | 'q4_0', causal: boolean, extra: Record<string, unknown> = {}) => ({
  kind: 'attention', name: `att_${kvCache}_${causal ? 'causal' : 'full'}`, kvCache, causal, ...extra,
});

interface Case {
  ir: ReturnType<typeof attention>;
  shape: string;
  variant: 'splitk_decode' | 'flash_prefill' | 'flash_prefill_mma';
  config?: Record<string, number | string>;
  device?: string;
}

const CASES: Case[] = [
  // Decode: Sq 1 and 5, several splits over 77 keys (the last split short), GQA groups of 4, 5, 8 and 1.
  { ir: attention('f16', true), shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=64', variant: 'splitk_decode' },
  { ir: attention('q8', true), shape: 'B=1,Hq=5,Hkv=1,Sq=5,Skv=77,D=128', variant: 'splitk_decode', config: { kvSplit: 4, kvBlock: 16 } },
  { ir: attention('f16', false), shape: 'B=1,Hq=8,Hkv=1,Sq=5,Skv=77,D=128', variant: 'splitk_decode', config: { kvSplit: 1, kvBlock: 32, warps: 8 } },
  { ir: attention('q8', false), shape: 'B=2,Hq=2,Hkv=2,Sq=1,Skv=77,D=64', variant: 'splitk_decode', config: { kvSplit: 4, kvBlock: 16, warps: 2, stages: 3 } },
  // A group of 16 heads x 5 queries = 80 rows: two row groups per KV head.
  { ir: attention('f16', true), shape: 'B=1,Hq=16,Hkv=1,Sq=5,Skv=77,D=64', variant: 'splitk_decode' },
  // Prefill: Sq = 64 over Skv = 77 (causal: 13 keys before the first query's diagonal), several
  // query tiles; tensor cores (the default on sm_89; one warp of 16 rows with br = 16, 16 keys a
  // tile: with 32 its registers are over budget, as ptxas's spills agree) and SIMT.
  { ir: attention('f16', true), shape: 'B=1,Hq=8,Hkv=1,Sq=64,Skv=77,D=64', variant: 'flash_prefill_mma' },
  { ir: attention('q8', true), shape: 'B=1,Hq=5,Hkv=1,Sq=64,Skv=77,D=128', variant: 'flash_prefill_mma', config: { br: 16, bc: 16 } },
  { ir: attention('f16', false), shape: 'B=1,Hq=4,Hkv=1,Sq=64,Skv=77,D=128', variant: 'flash_prefill', config: { math: 'simt', br: 32, bc: 16, stages: 3, warps: 2 } },
  { ir: attention('q8', false), shape: 'B=2,Hq=2,Hkv=2,Sq=64,Skv=77,D=64', variant: 'flash_prefill_mma', config: { bc: 32, stages: 3 } },
  // Sq = Skv, causal: the first row sees one key; tiles past each query tile's diagonal are skipped.
  { ir: attention('q8', true), shape: 'B=1,Hq=4,Hkv=1,Sq=40,Skv=40,D=64', variant: 'flash_prefill', config: { math: 'simt', br: 16, bc: 16 } },
  { ir: attention('f16', true), shape: 'B=1,Hq=4,Hkv=1,Sq=40,Skv=40,D=128', variant: 'flash_prefill_mma', config: { br: 32, bc: 16 } },
  // f32 Q and O, an explicit scale, a q8 group of 16.
  { ir: attention('q8', true, { q: 'f32', o: 'f32', scale: 0.2, kvGroupSize: 16 }), shape: 'B=1,Hq=4,Hkv=1,Sq=5,Skv=77,D=64', variant: 'splitk_decode' },
  { ir: attention('f16', true, { q: 'f32', o: 'f32' }), shape: 'B=1,Hq=4,Hkv=1,Sq=64,Skv=77,D=64', variant: 'flash_prefill_mma' },
  // Head dims 80, 96 and 256 (mma is ruled out at 256: too many fragment registers, so SIMT).
  { ir: attention('q8', true, { kvGroupSize: 16 }), shape: 'B=1,Hq=6,Hkv=2,Sq=3,Skv=150,D=80', variant: 'splitk_decode' },
  { ir: attention('f16', false), shape: 'B=1,Hq=3,Hkv=1,Sq=20,Skv=50,D=96', variant: 'flash_prefill_mma' },
  { ir: attention('q8', true), shape: 'B=1,Hq=2,Hkv=1,Sq=20,Skv=30,D=256', variant: 'flash_prefill' },
  // sm_75: cp.async becomes a plain copy, and prefill is SIMT (no mma.sync m16n8k16 in the profile).
  { ir: attention('q8', true), shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=128', variant: 'splitk_decode', device: 't4' },
  { ir: attention('f16', false), shape: 'B=1,Hq=5,Hkv=1,Sq=64,Skv=77,D=64', variant: 'flash_prefill', device: 't4' },
  // llama.cpp's row order (positions x heads): the strides come from the plan.
  { ir: attention('f16', true, { kvLayout: 'positions_heads' }), shape: 'B=2,Hq=8,Hkv=2,Sq=1,Skv=77,D=64', variant: 'splitk_decode', config: { kvSplit: 4, kvBlock: 16 } },
  { ir: attention('q8', true, { kvLayout: 'positions_heads' }), shape: 'B=2,Hq=8,Hkv=2,Sq=37,Skv=77,D=64', variant: 'flash_prefill_mma' },
  // ggml q8_0 and q4_0 caches, positions x heads by default (llama.cpp's order) and heads x
  // positions; decode with one split (no merge) and several, prefill on tensor cores and SIMT.
  { ir: attention('q8_0', true), shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=64', variant: 'splitk_decode', config: { kvSplit: 4, kvBlock: 16 } },
  { ir: attention('q8_0', false), shape: 'B=1,Hq=10,Hkv=2,Sq=5,Skv=200,D=128', variant: 'splitk_decode', config: { kvSplit: 1 } },
  { ir: attention('q8_0', true), shape: 'B=1,Hq=8,Hkv=1,Sq=64,Skv=333,D=128', variant: 'flash_prefill_mma' },
  { ir: attention('q8_0', false, { kvLayout: 'heads_positions' }), shape: 'B=2,Hq=4,Hkv=4,Sq=64,Skv=200,D=64', variant: 'flash_prefill', config: { math: 'simt', br: 32, bc: 32 } },
  { ir: attention('q8_0', true), shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=333,D=96', variant: 'splitk_decode', config: { kvSplit: 4 } },
  { ir: attention('q8_0', true, { q: 'f32', o: 'f32' }), shape: 'B=1,Hq=5,Hkv=1,Sq=64,Skv=77,D=128', variant: 'flash_prefill', device: 't4' },
  { ir: attention('q4_0', true), shape: 'B=1,Hq=8,Hkv=1,Sq=1,Skv=333,D=128', variant: 'splitk_decode', config: { kvSplit: 8 } },
  { ir: attention('q4_0', false, { kvLayout: 'heads_positions' }), shape: 'B=2,Hq=4,Hkv=1,Sq=5,Skv=77,D=64', variant: 'splitk_decode', config: { kvSplit: 1, kvBlock: 16 } },
  { ir: attention('q4_0', false), shape: 'B=1,Hq=5,Hkv=1,Sq=64,Skv=77,D=64', variant: 'flash_prefill_mma', config: { bc: 32 } },
  { ir: attention('q4_0', true), shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=200,D=128', variant: 'flash_prefill', config: { math: 'simt', br: 32, bc: 16 } },
  { ir: attention('q4_0', true), shape: 'B=1,Hq=4,Hkv=1,Sq=5,Skv=200,D=256', variant: 'splitk_decode', config: { kvSplit: 1 } },
  { ir: attention('q4_0', true, { kvLayout: 'heads_positions' }), shape: 'B=1,Hq=4,Hkv=1,Sq=40,Skv=40,D=128', variant: 'flash_prefill_mma', config: { br: 32, bc: 16 } },
  { ir: attention('q4_0', false), shape: 'B=1,Hq=4,Hkv=4,Sq=64,Skv=333,D=96', variant: 'flash_prefill_mma' },
  { ir: attention('q8_0', true), shape: 'B=1,Hq=8,Hkv=1,Sq=5,Skv=333,D=256', variant: 'splitk_decode', config: { kvSplit: 4 } },
];
/** Indices into CASES of the ggml cases the sanitizers also run: 2-byte chunks, 8-byte chunks on tensor cores. */
const GGML_SANITIZED = [CASES.findIndex((c) => c.shape.endsWith('Skv=333,D=96') && c.ir.kvCache === 'q8_0'), CASES.findIndex((c) => c.ir.kvCache === 'q4_0' && c.variant === 'flash_prefill_mma' && c.shape.includes('Sq=40'))];

/** Verifies through the shim; the plan, for the caller's checks of what it picked. */
// The sanitized runs verify cases the plain ones did: their inputs and f64 references are drawn once.
const DATA = new TestDataCache();

async function expectVerified(ir: object, shape: string, label: string, opts: { device?: string; config?: Case['config']; sanitize?: boolean } = {}) {
  const r = await verify({ target: 'cuda', ir, shape, device: opts.device ?? 'rtx4090', config: opts.config, runner: shim, werror: true, sanitize: opts.sanitize, testData: DATA });
  expectMatchesReference(r, label);
  return r.plan;
}

async function expectOk(c: Case, extra: { sanitize?: boolean } = {}): Promise<void> {
  const label = `${c.ir.name} ${c.shape} ${JSON.stringify(c.config ?? {})}${c.device ? ` ${c.device}` : ''}`;
  const plan = await expectVerified(c.ir, c.shape, label, { device: c.device, config: c.config, ...extra });
  expect(plan.variant, label).toBe(c.variant);
  // One split writes O itself; several go through the workspace and the merge.
  if (c.config?.kvSplit === 1) expect(plan.launch.secondPass, label).toBeUndefined();
  if (typeof c.config?.kvSplit === 'number' && c.config.kvSplit > 1) expect(plan.launch.secondPass, label).toBeDefined();
}

describe.skipIf(noGpp !== undefined)('CUDA attention through the CPU shim: the verification matrix (helpers.ts), default plans', { concurrent: true }, () => {
  for (let i = 0; i < ATTENTION_MATRIX.length; i += 2) {
    const pair = ATTENTION_MATRIX.slice(i, i + 2);
    it(pair.map((row) => attentionMatrixCase(row).label).join('; '), async () => {
      for (const row of pair) {
        const c = attentionMatrixCase(row);
        expectMatrixPlan(row, await expectVerified(c.ir, c.shape, c.label), c.label);
      }
    }, 120_000);
  }
});

describe.skipIf(noGpp !== undefined)('CUDA attention through the CPU shim', { concurrent: true }, () => {
  // Two cases per test, so a loaded machine stays inside the timeout.
  for (let i = 0; i < CASES.length; i += 2) {
    const pair = CASES.slice(i, i + 2);
    it(pair.map((c) => `${c.ir.name} ${c.shape}`).join('; '), async () => {
      for (const c of pair) await expectOk(c);
    }, 120_000);
  }

  it('passes AddressSanitizer and UBSan (decode with its merge, prefill on tensor cores and SIMT)', async () => {
    for (const i of [1, 6, 7]) await expectOk(CASES[i]!, { sanitize: true });
  }, 180_000);

  // UBSan checks the alignment of every typed load: ggml blocks are 2-byte aligned in shared memory.
  it('passes AddressSanitizer and UBSan on ggml caches (plain 2-byte staging in decode, q4_0 fragments)', async () => {
    expect(GGML_SANITIZED).not.toContain(-1);
    for (const i of GGML_SANITIZED) await expectOk(CASES[i]!, { sanitize: true });
  }, 180_000);

  it('a plan over the static shared-memory limit launches with dynamic shared memory', async () => {
    const c: Case = { ir: attention('f16', false), shape: 'B=1,Hq=4,Hkv=1,Sq=64,Skv=77,D=128', variant: 'flash_prefill', config: { math: 'simt', br: 64, bc: 32 } };
    const e = emit({ target: 'cuda', ir: c.ir, shape: c.shape, device: 'rtx4090', config: c.config });
    expect(e.plan.launch.dynamicShared).toBe(true);
    await expectOk(c);
  }, 120_000);
});

/**
 * The tensor-core prefill on quantized caches multiplies Q by K's codes (exact in f16) and applies
 * K's scales to the f32 partial scores of each scale group. The test data's outlier channels make
 * the scores large and peaked: K dequantized to f16 before the mma (the kernel before 2026-12-05)
 * measured NMSE 1.6e-6 to 1.1e-5 on these cases over seeds 1-3 (the f16 tolerance is 2e-6); exact
 * codes measure 2.3e-8 to 6.2e-8, so a tenth of the tolerance tells the two apart. The matrix rows
 * q8 Hq=8 D=64 and q8_0 Hq=8 D=64 (helpers.ts) run the same kernels at their default plans.
 */
describe.skipIf(noGpp !== undefined)('tensor-core prefill on quantized caches: K as exact codes, scaled in f32', { concurrent: true }, () => {
  const cases: [ReturnType<typeof attention>, string][] = [
    [attention('q8', true, { o: 'f32' }), 'B=1,Hq=8,Hkv=1,Sq=64,Skv=77,D=64'],
    // One k16 slice per scale group.
    [attention('q8', false, { o: 'f32', kvGroupSize: 16 }), 'B=1,Hq=4,Hkv=2,Sq=64,Skv=77,D=64'],
    [attention('q8_0', true, { o: 'f32' }), 'B=1,Hq=8,Hkv=2,Sq=64,Skv=333,D=64'],
    [attention('q4_0', false, { o: 'f32' }), 'B=1,Hq=8,Hkv=2,Sq=64,Skv=333,D=64'],
  ];
  for (const [ir, shape] of cases) {
    const label = `${ir.name}${'kvGroupSize' in ir ? ` group ${String(ir.kvGroupSize)}` : ''} ${shape}`;
    it(label, async () => {
      const r = await verify({ target: 'cuda', ir, shape, device: 'rtx4090', config: { math: 'mma' }, runner: shim, werror: true });
      expectMatchesReference(r, label);
      expect((r.plan as PlanOf<'cuda-attention'>).params).toMatchObject({ kernel: 'flash_prefill_mma', kScaled: true });
      expect(r.comparison!.nmse, label).toBeLessThan(r.tolerance.nmse / 10);
    }, 120_000);
  }

  it('a q8 cache with scale groups of 8 values prefills with SIMT by default, verified', async () => {
    const ir = attention('q8', true, { kvGroupSize: 8 });
    const plan = await expectVerified(ir, 'B=1,Hq=4,Hkv=2,Sq=64,Skv=77,D=64', 'q8 group 8');
    expect(plan.variant).toBe('flash_prefill');
  }, 120_000);
});

describe.skipIf(noGpp !== undefined)('the attention checks catch broken kernels', () => {
  // Without the rescale of what was accumulated before a new maximum, the online softmax is wrong
  // as soon as a later tile holds a larger score: the reference must see it.
  it('a tile loop that forgets to rescale is wrong_result', async () => {
    const e = emit({ target: 'cuda', op: 'attention_f16', shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=64', device: 'rtx4090', config: { kvSplit: 1, kvBlock: 16 } });
    const source = e.rendered.files['kernel.cu']!;
    expect(source).toContain('st.rescale[r] = a;');
    const kernel = { ...e.rendered, files: { ...e.rendered.files, 'kernel.cu': source.replace('st.rescale[r] = a;', 'st.rescale[r] = 1.0f;') } };
    const build = await shim.build(e.plan, kernel, {});
    if (build.status !== 'ok') throw new Error(build.detail);
    try {
      const data = opKit('attention').testData(e.plan.op, e.plan.shape, 1);
      const run = await shim.execute(build, data.inputs);
      expect(run.status).toBe('ok');
      if (run.status === 'ok') expect(data.check(run.output, e.plan.tolerance).ok).toBe(false);
    } finally {
      build.dispose();
    }
  }, 60_000);
});

describe('attention plans state what the kernels need', () => {
  it('decode: the split grid, the workspace and the merge launch; prefill: no workspace', () => {
    const d = emit({ target: 'cuda', op: 'attention_q8kv', shape: 'B=2,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128', device: 'rtx4090', config: { kvSplit: 16, kvBlock: 32 } });
    expect(d.plan.variant).toBe('splitk_decode');
    // 16 splits of 256 keys; per (batch, KV head, split) 4 query rows of D floats plus (max, sum).
    expect(d.manifest.launch).toMatchObject({ grid: [16, 8, 2], workspaceBytes: 4 * 2 * 8 * 16 * 4 * (128 + 2), secondPass: { grid: [16, 1, 1], block: [128, 1, 1] } });
    expect(d.files['kernel.h']).toContain(`#define KGEN_ATTENTION_Q8KV_WORKSPACE_BYTES ${4 * 2 * 8 * 16 * 4 * 130}`);
    expect(d.manifest.abi[0]!.signature).toBe('cudaError_t kgen_attention_q8kv(const uint16_t *q, const uint8_t *k, const uint16_t *k_scales, const uint8_t *v, const uint16_t *v_scales, uint16_t *o, void *workspace, cudaStream_t stream)');
    const p = emit({ target: 'cuda', op: 'attention_f16', shape: 'B=1,Hq=32,Hkv=8,Sq=512,Skv=512,D=128', device: 'rtx4090' });
    expect(p.plan.variant).toBe('flash_prefill_mma');
    expect(p.manifest.launch.workspaceBytes).toBe(0);
    expect(p.manifest.launch.secondPass).toBeUndefined();
  });

  it('offsets of batch and head products are 64-bit arithmetic: the first factor is cast, never an int product after the fact', () => {
    const shape = (sq: number) => `B=2,Hq=32,Hkv=8,Sq=${sq},Skv=4096,D=128`;
    const kernels = [emit({ target: 'cuda', op: 'attention_f16', shape: shape(1), device: 'rtx4090', config: { kvSplit: 16 } }), emit({ target: 'cuda', op: 'attention_f16', shape: shape(512), device: 'rtx4090' }), emit({ target: 'cuda', op: 'attention_f16', shape: shape(512), device: 'rtx4090', config: { math: 'simt' } })];
    expect(kernels.map((e) => (e.plan as PlanOf<'cuda-attention'>).params.kernel)).toEqual(['splitk_decode', 'flash_prefill_mma', 'flash_prefill']);
    for (const e of kernels) {
      const cu = e.files['kernel.cu']!;
      // `(long long)(b * KG_HQ + head)` multiplies in int and widens the wrapped result.
      expect(cu).not.toMatch(/\(long long\)\([^()]*\*/);
      expect(cu).toContain('((long long)b * KG_HQ + ');
    }
    expect(kernels[0]!.files['kernel.cu']).toContain('((long long)b * KG_HKV + kvHead) * KG_SPLITS');
    // The merge's rows (B x Hq x Sq) may pass 2^31 within the grid's 2^31 - 1 blocks of several rows.
    expect(kernels[0]!.files['kernel.cu']).toContain('if (row >= (long long)KG_B * KG_HQ * KG_SQ) return;');
  });

  it('refuses a head dim its rows cannot be staged with, naming the rule', () => {
    expect(() => emit({ target: 'cuda', op: 'attention_f16', shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=72', device: 'rtx4090' })).toThrow(/D is not a multiple of 16/);
  });

  it('tensor-core prefill: quantized K enters the mma as codes per scale group; a q8 group that is not whole k16 slices rules mma out', () => {
    const shape = 'B=1,Hq=8,Hkv=2,Sq=64,Skv=77,D=64';
    const params = (ir: object) => (emit({ target: 'cuda', ir, shape, device: 'rtx4090' }).plan as PlanOf<'cuda-attention'>).params;
    expect(params(attention('f16', true))).toMatchObject({ kernel: 'flash_prefill_mma', kScaled: false, kGroups: 1, kGroupSlices: 4 });
    expect(params(attention('q8', true))).toMatchObject({ kernel: 'flash_prefill_mma', kScaled: true, kGroups: 2, kGroupSlices: 2 });
    expect(params(attention('q8', true, { kvGroupSize: 16 }))).toMatchObject({ kernel: 'flash_prefill_mma', kScaled: true, kGroups: 4, kGroupSlices: 1 });
    expect(params(attention('q4_0', true))).toMatchObject({ kernel: 'flash_prefill_mma', kScaled: true, kGroups: 2, kGroupSlices: 2 });
    for (const kvGroupSize of [4, 8]) {
      const ir = attention('q8', true, { kvGroupSize });
      expect(() => emit({ target: 'cuda', ir, shape, device: 'rtx4090', config: { math: 'mma' } })).toThrow(new RegExp(`mma: the q8 KV scale group \\(${kvGroupSize} values\\) is not a multiple of 16, an mma k-slice`));
      // The default falls back to SIMT prefill.
      expect(params(ir).kernel).toBe('flash_prefill');
    }
    expect(() => emit({ target: 'cuda', ir: attention('q8', true, { kvGroupSize: 24 }), shape: shape.replace('D=64', 'D=96'), device: 'rtx4090', config: { math: 'mma' } })).toThrow(/scale group \(24 values\) is not a multiple of 16/);
  });

  it('decode with one split: no workspace, no merge kernel, the block writes O', () => {
    const e = emit({ target: 'cuda', op: 'attention_q4_0kv', shape: 'B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128', device: 'rtx4090', config: { kvSplit: 1 } });
    const params = (e.plan as PlanOf<'cuda-attention'>).params;
    expect(params).toMatchObject({ kernel: 'splitk_decode', splits: 1, merge: false, workspaceBytes: 0 });
    expect(e.manifest.launch.workspaceBytes).toBe(0);
    expect(e.manifest.launch.secondPass).toBeUndefined();
    expect(e.files['kernel.h']).toContain('#define KGEN_ATTENTION_Q4_0KV_WORKSPACE_BYTES 0');
    expect(e.files['kernel.cu']).not.toContain('_merge');
    expect(e.files['kgen_run.cu']).toContain('KG_WORKSPACE_BYTES = 0;');
    expect(e.manifest.abi[0]!.doc).toContain('workspace unused');
    // A split count the sequence cannot use collapses to one split the same way.
    const short = emit({ target: 'cuda', op: 'attention_f16', shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=20,D=64', device: 'rtx4090', config: { kvSplit: 1, kvBlock: 32 } });
    expect(short.manifest.launch.secondPass).toBeUndefined();
  });

  it('ggml q8_0 and q4_0 caches: rows staged as stored, in chunks their alignment allows; budgets and traffic count their bytes', () => {
    const shape = 'B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128';
    const q8_0 = emit({ target: 'cuda', op: 'attention_q8_0kv', shape, device: 'rtx4090', config: { kvSplit: 16, kvBlock: 32, stages: 2 } });
    const p8 = (q8_0.plan as PlanOf<'cuda-attention'>).params;
    // 4 blocks of 34 bytes a row, 8-byte aligned; a slot is the row rounded to 16 plus 16 of padding.
    expect(p8).toMatchObject({ kvRowBytes: 136, kvScaleRowBytes: 0, kvBlockBytes: 34, kvGroup: 32, kvChunkBytes: 8, kvChunkAsync: true, kvChunks: 17, kvPieces: 17, slotBytes: 160 });
    expect(q8_0.plan.buffers.find((b) => b.name === 'K/V tiles')!.size).toBe(2 * 2 * 32 * 160);
    expect(q8_0.plan.traffic!.bytes).toBe(2 * 8 * 4096 * 136 + 32 * 128 * 4);
    expect(q8_0.manifest.tensors.k!.layout).toMatch(/^positions x heads/);
    expect(q8_0.files['kernel.cu']).toContain('kg_cp_async<KG_KV_CHUNK_BYTES>');
    const q4_0 = emit({ target: 'cuda', op: 'attention_q4_0kv', shape: shape.replace('D=128', 'D=96'), device: 'rtx4090' });
    const p4 = (q4_0.plan as PlanOf<'cuda-attention'>).params;
    // 3 blocks of 18 bytes: rows 2-byte aligned, below cp.async's 4, so plain 2-byte copies.
    expect(p4).toMatchObject({ kvRowBytes: 54, kvBlockBytes: 18, kvChunkBytes: 2, kvChunkAsync: false, kvChunks: 27, slotBytes: 80 });
    expect(q4_0.files['kernel.cu']).not.toContain('kg_cp_async<KG_KV_CHUNK_BYTES>');
    expect(q4_0.manifest.abi[0]!.doc).toContain('k_scales, v_scales: unused, may be NULL (each ggml q4_0 block holds its own scale)');
  });

  it('a package\'s usage comment gives the KV cache in the plan\'s row order', async () => {
    const usage = async (ir: Record<string, unknown>) => {
      const pkg = await buildPackage({ command: 'test', kernels: [{ target: 'cuda', ir, shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=77,D=64', device: 'rtx4090' }] });
      return /```cuda\n([\s\S]*?)```/.exec(pkg.files['README.md'] as string)![1]!;
    };
    // ggml caches default to llama.cpp's positions x heads; f16 to heads x positions; either may be named.
    expect(await usage(attention('q4_0', true))).toContain('positions x heads [1,77,2,64]');
    expect(await usage(attention('f16', true))).toContain('heads x positions [1,2,77,64]');
    expect(await usage(attention('f16', true, { kvLayout: 'positions_heads' }))).toContain('positions x heads [1,77,2,64]');
    expect(await usage(attention('q8_0', true, { kvLayout: 'heads_positions' }))).toContain('heads x positions [1,2,77,64]');
  });

  it('reads every KV format (capabilities as data)', () => {
    for (const op of ['attention_f16', 'attention_q8kv', 'attention_q8_0kv', 'attention_q4_0kv']) {
      expect(emit({ target: 'cuda', op, shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=64', device: 'rtx4090' }).plan.variant).toBe('splitk_decode');
    }
  });
});

describe.skipIf(noNvcc !== undefined)('nvcc -cubin: attention kernels for sm_80 and sm_89', () => {
  const shapes: [string, Record<string, string | number>][] = [
    ['B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128', {}],
    // D = 256: 32 rows a block (two row groups of the 64 here), SIMT prefill (mma is ruled out).
    ['B=1,Hq=64,Hkv=8,Sq=8,Skv=1000,D=256', {}],
    ['B=1,Hq=32,Hkv=8,Sq=512,Skv=512,D=128', {}],
    ['B=1,Hq=8,Hkv=8,Sq=100,Skv=300,D=64', {}],
    ['B=1,Hq=32,Hkv=8,Sq=512,Skv=512,D=256', {}],
  ];
  // ggml caches: the same shapes (8-, 4- and 16-byte staging), D = 96 (2-byte plain copies, decode
  // and tensor-core prefill) and decode with one split (no merge kernel).
  const ggmlShapes: [string, Record<string, string | number>][] = [
    ...shapes,
    ['B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=96', {}],
    ['B=1,Hq=32,Hkv=8,Sq=512,Skv=512,D=96', {}],
    ['B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128', { kvSplit: 1 }],
  ];
  const cases = ['a100-80gb', 'rtx4090'].flatMap((device) => [
    ...['attention_f16', 'attention_q8kv'].flatMap((op) => shapes.map(([shape, config]) => ({ device, op, shape, config }))),
    ...['attention_q8_0kv', 'attention_q4_0kv'].flatMap((op) => ggmlShapes.map(([shape, config]) => ({ device, op, shape, config }))),
  ]);

  it(`the default configs compile warning-free, use the shared memory planned and do not spill (${cases.length} kernels)`, async () => {
    const kernels = cases.map((c) => ({ label: `${c.device} ${c.op} ${c.shape} ${JSON.stringify(c.config)}`, emit: () => emit({ target: 'cuda', op: c.op, shape: c.shape, device: c.device, config: c.config }) }));
    expect(await cudaAttentionPtxasFailures(kernels)).toEqual([]);
  }, 300_000);
});

describe.skipIf(noNvcc !== undefined)('on a GPU, attention runs through its run kit built by nvcc', () => {
  // A GPU as nvidia-smi would list it; nothing here runs on it, the build needs only nvcc.
  const gpu = { index: 0, name: 'NVIDIA GeForce RTX 4090', computeCapability: '8.9', arch: 'sm_89', driverVersion: '550.00' };

  it('the runner a GPU machine picks builds kernel.cu and kgen_run.cu with nvcc, warnings as errors', async () => {
    const e = emit({ target: 'cuda', op: 'attention_q8kv', shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=77,D=64', device: 'rtx4090' });
    const runner = cudaRunnerFor(e.plan, { detection: { status: 'found', gpus: [gpu], how: 'test' } });
    expect(runner.name).toMatch(/^gpu NVIDIA GeForce RTX 4090 \(sm_89, nvcc \+ the kernel's run kit\)/);
    expect(runner.timesAreReal).toBe(true);
    const build = await runner.build(e.plan, e.rendered, { werror: true });
    expect(build.status, build.status === 'compile_error' ? build.detail : '').toBe('ok');
    if (build.status === 'ok') build.dispose();
    // Matmul keeps the driver-API harness.
    const m = emit({ target: 'cuda', op: 'matmul_q4', shape: 'M=1,N=64,K=64', device: 'rtx4090' });
    expect(cudaRunnerFor(m.plan, { detection: { status: 'found', gpus: [gpu], how: 'test' } }).name).toMatch(/driver API/);
  }, 180_000);
});

describe.skipIf(noGpp !== undefined)('kgen emit and verify --target cuda --op attention_* on the command line', () => {
  it('emit -o writes the kernels, launcher, run kit and manifest; --data the inputs and reference', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'kgen-cuda-att-')), 'att');
    const r = await execa(KGEN, ['emit', '--target', 'cuda', '--op', 'attention_q8kv', '--shape', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=77,D=64', '--device', 'rtx4090', '-o', out, '--data', '3', '--no-ptxas'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    for (const f of ['kernel.cu', 'kernel.h', 'kgen_run.cu', 'run.sh', 'manifest.json', 'q.bin', 'k.bin', 'v.bin', 'k_scales.bin', 'v_scales.bin', 'ref.bin']) expect(existsSync(join(out, f)), f).toBe(true);
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(m).toMatchObject({ target: 'cuda', arch: 'sm_89', variant: 'splitk_decode', launch: { workspaceBytes: expect.any(Number), secondPass: { what: expect.stringMatching(/log-sum-exp/) } } });
    expect(m.tensors.k.layout).toMatch(/heads x positions/);
    expect(readFileSync(join(out, 'kernel.h'), 'utf8')).toContain('scale = 0.125 (1/sqrt(D)); causal: query row i sees keys 0 .. i + 76');
    // The manifest lists every data file written, each with what it holds, and the seed.
    expect(m.data.seed).toBe(3);
    expect(Object.keys(m.data.files).sort()).toEqual(['k.bin', 'k_scales.bin', 'q.bin', 'ref.bin', 'v.bin', 'v_scales.bin']);
    expect(m.data.files['k.bin']).toMatch(new RegExp(`tensors\\.k: ${m.tensors.k.bytes} bytes`));
    expect(m.data.files['ref.bin']).toMatch(/f64 reference of o/);
    expect((await execa('sh', ['-n', join(out, 'run.sh')], { reject: false })).exitCode).toBe(0);
    // The run kit as emitted, built by g++ against the shim, checks the output against ref.bin itself.
    const bin = buildRunKitOnShim(out);
    const run = await execa(bin, [out, '--json', join(out, 'result.json')], { reject: false, all: true });
    expect(run.exitCode, run.all).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'))).toMatchObject({ status: 'ok', checked: true, kernel: { variant: 'splitk_decode' } });
  }, 120_000);

  it('the launcher refuses a null K, V or (kgen q8 cache) scale pointer with cudaErrorInvalidValue before launching, and takes NULL scales where the cache has none', async () => {
    // Each launcher called (in the order q, k, k_scales, v, v_scales, o, ...) with: no k_scales, no K, no scales at all, everything.
    const calls = async (op: string) => {
      const out = join(mkdtempSync(join(tmpdir(), 'kgen-cuda-att-null-')), 'att');
      const r = await execa(KGEN, ['emit', '--target', 'cuda', '--op', op, '--shape', 'B=1,Hq=4,Hkv=1,Sq=1,Skv=40,D=64', '--device', 'rtx4090', '-o', out, '--no-ptxas', '--no-records'], { reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
      const fn = m.abi[0].symbol as string;
      const scaleBytes = (m.tensors.k_scales?.bytes as number | undefined) ?? 2;
      const call = (k: string, s: string, s2: string) => `(int)${fn}((const uint16_t *)q, ${k}, ${s}, V, ${s2}, (uint16_t *)o, ws, 0)`;
      writeFileSync(join(out, 'null.cu'), [
        '#include <cstdio>',
        '#include "kernel.h"',
        'int main() {',
        '  void *k, *v, *s, *q, *o, *ws;',
        `  cudaMalloc(&k, ${m.tensors.k.bytes}); cudaMalloc(&v, ${m.tensors.v.bytes}); cudaMalloc(&s, ${scaleBytes}); cudaMalloc(&q, ${m.tensors.q.bytes}); cudaMalloc(&o, ${m.tensors.o.bytes}); cudaMalloc(&ws, ${m.launch.workspaceBytes} + 16);`,
        `  cudaMemset(k, 0, ${m.tensors.k.bytes}); cudaMemset(v, 0, ${m.tensors.v.bytes}); cudaMemset(s, 0, ${scaleBytes}); cudaMemset(q, 0, ${m.tensors.q.bytes});`,
        // f16 scales are typed as such: a byte pointer here would not compile.
        '  const uint8_t *K = (const uint8_t *)k, *V = (const uint8_t *)v;',
        '  const uint16_t *S = (const uint16_t *)s;',
        `  printf("%d %d %d %d %d\\n", ${call('K', 'NULL', 'S')}, ${call('NULL', 'S', 'S')}, ${call('K', 'NULL', 'NULL')}, ${call('K', 'S', 'S')}, (int)cudaErrorInvalidValue);`,
        '  return 0;',
        '}',
      ].join('\n'));
      const shimDir = join(import.meta.dirname, '..', 'templates', 'cuda', 'shim');
      const bin = join(out, 'null');
      const cc = await execa('g++', ['-std=c++17', '-O1', '-I', shimDir, '-x', 'c++', join(out, 'kernel.cu'), join(out, 'null.cu'), '-x', 'none', join(shimDir, 'kgen_cuda_shim.cpp'), '-o', bin, '-lm'], { reject: false, all: true });
      expect(cc.exitCode, cc.all).toBe(0);
      return (await execa(bin)).stdout.trim().split(' ').map(Number);
    };
    const [q8, f16, q4_0] = await Promise.all(['attention_q8kv', 'attention_f16', 'attention_q4_0kv'].map(calls));
    const invalid = q8![4]!;
    expect(q8!.slice(0, 4)).toEqual([invalid, invalid, invalid, 0]);
    // No separate scales: NULL ones launch as well as any pointer; a NULL K is still refused.
    for (const c of [f16!, q4_0!]) expect(c.slice(0, 4)).toEqual([0, invalid, 0, 0]);
  }, 180_000);

  it('emit --package: attention kernels beside a matmul, the README calling the first; make builds it where nvcc is', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-cuda-att-pkg-'));
    const kernels = [
      { op: 'attention_q8kv', shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=77,D=64' },
      { op: 'attention_f16', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=77,D=64' },
      { op: 'matmul_q4', shape: 'M=1,N=64,K=64' },
      // A llama.cpp cache, decode in one split: no workspace.
      { op: 'attention_q4_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=77,D=64', config: { kvSplit: 1 } },
    ];
    writeFileSync(join(dir, 'layer.json'), JSON.stringify(kernels));
    const pkg = join(dir, 'pkg');
    const r = await execa(KGEN, ['emit', '--target', 'cuda', '--device', 'rtx4090', '--kernels', join(dir, 'layer.json'), '--package', pkg, '--no-records'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const readme = readFileSync(join(pkg, 'README.md'), 'utf8');
    expect(readme).toMatch(/cudaError_t run_kgen_attention_q8kv\w*\(const uint16_t \*q, const uint8_t \*k, const uint16_t \*k_scales, const uint8_t \*v, const uint16_t \*v_scales, uint16_t \*o, void \*workspace, cudaStream_t stream\)/);
    const q4 = readdirSync(pkg).find((d) => d.startsWith('attention_q4_0kv'));
    expect(q4).toBeDefined();
    expect(readFileSync(join(pkg, q4!, 'kernel.h'), 'utf8')).toMatch(/_WORKSPACE_BYTES 0\n/);
    expect(JSON.parse(readFileSync(join(pkg, q4!, 'manifest.json'), 'utf8')).launch.secondPass).toBeUndefined();
    if (noNvcc === undefined) {
      const make = await execa('make', [], { cwd: pkg, reject: false, all: true });
      expect(make.exitCode, make.all).toBe(0);
    }
  }, 180_000);

  // A llama.cpp q4_0 cache in decode, and a kgen q8 cache in tensor-core prefill.
  for (const [op, shape, variant] of [
    ['attention_q4_0kv', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=200,D=128', 'splitk_decode'],
    ['attention_q8kv', 'B=1,Hq=8,Hkv=2,Sq=64,Skv=77,D=64', 'flash_prefill_mma'],
  ] as const) {
    it(`verify --target cuda --op ${op} runs through the CPU shim when there is no GPU`, async () => {
      const r = await execa(KGEN, ['verify', '--target', 'cuda', '--op', op, '--shape', shape, '--device', 'rtx4090'], { reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout.startsWith(`ok: ${op} cuda/${variant} ${shape}`), r.stdout).toBe(true);
      if (!hasTool('nvidia-smi')) expect(r.stdout).toContain('cuda-cpu-shim');
    }, 120_000);
  }
});
