import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { buildPackage } from '../src/api/package.js';
import { verify } from '../src/api/verify.js';
import { wgslRunnerFor } from '../src/backends/wgsl/runner.js';
import { BudgetError } from '../src/errors.js';
import { opKit } from '../src/ops/index.js';
import { ATTENTION_MATRIX, attentionMatrixCase, dawnSkipReason, expectMatchesReference, expectMatrixPlan } from './helpers.js';

/**
 * WGSL attention kernels (split-KV decode with its merge dispatch, flash prefill) on Dawn +
 * SwiftShader (subgroups of 4) against the f64 reference, which decodes the KV bytes itself.
 * Ragged shapes: Skv in {77, 200, 333} is a multiple of no key tile (4..64) and splits unevenly;
 * Sq in {1, 5, 64} (and Sq = Skv = 40, causal); Hq/Hkv in {1, 4, 5, 8}; causal and not; D in
 * {64, 128} (96 and 80 once: rows of an odd number of ggml blocks start at half-words); every KV
 * format in both row orders; f16 and f32 Q and O. A covering subset of the product: SwiftShader
 * compiles each kernel for seconds.
 */
const noDawn = dawnSkipReason('WGSL attention kernels');
const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');

type Format = 'f16' | 'q8' | 'q8_0' | 'q4_0';
const HP = 'heads_positions';
const PH = 'positions_heads';

const ir = (kvCache: Format, kvLayout: string, causal: boolean, extra: Record<string, unknown> = {}) => ({
  kind: 'attention', name: `att_${kvCache}_${kvLayout === HP ? 'hp' : 'ph'}_${causal ? 'c' : 'n'}`, q: 'f16', o: 'f16', kvCache, kvLayout, causal, ...extra,
});

interface Case {
  ir: ReturnType<typeof ir>;
  shape: string;
  variant: 'splitk_decode' | 'flash_prefill';
  config?: Record<string, number>;
}

const CASES: Case[] = [
  // Decode: Sq 1 and 5, several splits (the last short), GQA groups of 4, 5, 8 and 1.
  { ir: ir('f16', HP, true), shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=64', variant: 'splitk_decode' },
  { ir: ir('q8', HP, false), shape: 'B=1,Hq=5,Hkv=1,Sq=5,Skv=200,D=128', variant: 'splitk_decode', config: { kvSplit: 4, kvBlock: 16 } },
  { ir: ir('q8_0', PH, true), shape: 'B=2,Hq=8,Hkv=1,Sq=1,Skv=333,D=128', variant: 'splitk_decode', config: { kvSplit: 8 } },
  { ir: ir('q4_0', PH, false), shape: 'B=1,Hq=8,Hkv=2,Sq=5,Skv=77,D=64', variant: 'splitk_decode', config: { kvSplit: 1, invocations: 64 } },
  { ir: ir('q8_0', HP, true), shape: 'B=1,Hq=3,Hkv=3,Sq=5,Skv=77,D=64', variant: 'splitk_decode', config: { kvSplit: 4, kvBlock: 16, invocations: 32 } },
  { ir: ir('q4_0', HP, true), shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=200,D=128', variant: 'splitk_decode' },
  // 8 heads x Sq 5 = 40 rows of D = 128 at 8 rows a workgroup: 5 row groups per KV head.
  { ir: ir('f16', PH, true), shape: 'B=1,Hq=16,Hkv=2,Sq=5,Skv=77,D=128', variant: 'splitk_decode', config: { kvSplit: 4, kvBlock: 16 } },
  // f32 Q and O, an explicit scale, a q8 group of 16.
  { ir: ir('q8', PH, true, { q: 'f32', o: 'f32', scale: 0.2, kvGroupSize: 16 }), shape: 'B=1,Hq=2,Hkv=2,Sq=1,Skv=77,D=64', variant: 'splitk_decode', config: { kvSplit: 4, kvBlock: 16 } },
  // D = 96: three q8_0 blocks (102-byte rows, every other one at a half-word).
  { ir: ir('q8_0', HP, false), shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=96', variant: 'splitk_decode', config: { kvSplit: 4, kvBlock: 16 } },
  // Prefill: Sq = 64 over Skv 77, 200, 333 (causal: keys before the first query's diagonal), several query tiles.
  { ir: ir('f16', HP, true), shape: 'B=1,Hq=4,Hkv=1,Sq=64,Skv=77,D=64', variant: 'flash_prefill', config: { br: 16, bc: 16 } },
  { ir: ir('q8', HP, false), shape: 'B=1,Hq=5,Hkv=1,Sq=64,Skv=200,D=128', variant: 'flash_prefill', config: { br: 16, bc: 8 } },
  { ir: ir('q8_0', PH, true), shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=77,D=128', variant: 'flash_prefill', config: { br: 32, bc: 16, invocations: 64 } },
  { ir: ir('q4_0', PH, false), shape: 'B=2,Hq=2,Hkv=2,Sq=64,Skv=333,D=64', variant: 'flash_prefill', config: { br: 32, bc: 32 } },
  // Sq = Skv, causal: the first row sees one key; tiles past each query tile's diagonal are skipped.
  { ir: ir('q4_0', HP, true), shape: 'B=1,Hq=4,Hkv=1,Sq=40,Skv=40,D=64', variant: 'flash_prefill', config: { br: 8, bc: 8 } },
  { ir: ir('f16', PH, true, { q: 'f32', o: 'f32' }), shape: 'B=1,Hq=8,Hkv=1,Sq=64,Skv=200,D=128', variant: 'flash_prefill' },
  { ir: ir('q8', HP, true, { kvGroupSize: 16 }), shape: 'B=1,Hq=2,Hkv=1,Sq=20,Skv=50,D=80', variant: 'flash_prefill' },
];

/** Verifies on Dawn + SwiftShader, planned for `device`; the plan, for the caller's checks of what it picked. */
async function expectVerified(ir: object, shape: string, label: string, device: string, config?: Case['config']) {
  const r = await verify({ target: 'wgsl', ir, shape, device, config });
  expectMatchesReference(r, label);
  return r.plan;
}

async function expectOk(c: Case): Promise<void> {
  const label = `${c.ir.name} ${c.shape} ${JSON.stringify(c.config ?? {})}`;
  expect((await expectVerified(c.ir, c.shape, label, 'swiftshader', c.config)).variant, label).toBe(c.variant);
}

// Planned for the `webgpu` profile (`kgen verify`'s default: WebGPU's default limits, 16 KiB of
// workgroup storage, so D = 256 takes its smallest tiles), run on SwiftShader, whose limits are larger.
describe.skipIf(noDawn !== undefined)('WGSL attention on Dawn + SwiftShader: the verification matrix (helpers.ts), default plans', () => {
  for (let i = 0; i < ATTENTION_MATRIX.length; i += 2) {
    const pair = ATTENTION_MATRIX.slice(i, i + 2);
    it(pair.map((row) => attentionMatrixCase(row).label).join('; '), async () => {
      for (const row of pair) {
        const c = attentionMatrixCase(row);
        expectMatrixPlan(row, await expectVerified(c.ir, c.shape, c.label, 'webgpu'), c.label);
      }
    }, 180_000);
  }
});

describe.skipIf(noDawn !== undefined)('WGSL attention on Dawn + SwiftShader', () => {
  // Two cases per test, so a loaded machine stays inside the timeout.
  for (let i = 0; i < CASES.length; i += 2) {
    const pair = CASES.slice(i, i + 2);
    it(pair.map((c) => `${c.ir.name} ${c.shape}`).join('; '), async () => {
      for (const c of pair) await expectOk(c);
    }, 180_000);
  }

  // Without the rescale of what was accumulated before a new maximum the online softmax is wrong
  // as soon as a later tile holds a larger score: the check must see it.
  it('a tile loop that forgets to rescale is wrong_result', async () => {
    const e = emit({ target: 'wgsl', op: 'attention_f16', shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=64', device: 'swiftshader', config: { kvSplit: 1, kvBlock: 16 } });
    const line = 'kg_st[2u * KG_ROWS + r] = a;';
    const source = e.rendered.files['kernel.wgsl']!;
    expect(source).toContain(line);
    const broken = source.replace(line, 'kg_st[2u * KG_ROWS + r] = 1.0;');
    const kernel = {
      ...e.rendered,
      files: { ...e.rendered.files, 'kernel.wgsl': broken, 'kernel.js': e.rendered.files['kernel.js']!.replace(JSON.stringify(source), JSON.stringify(broken)) },
    };
    const runner = wgslRunnerFor(e.plan);
    const build = await runner.build(e.plan, kernel, {});
    if (build.status !== 'ok') throw new Error(build.detail);
    try {
      const data = opKit('attention').testData(e.plan.op, e.plan.shape, 1);
      const run = await runner.execute(build, data.inputs);
      expect(run.status).toBe('ok');
      if (run.status === 'ok') expect(data.check(run.output, e.plan.tolerance).ok).toBe(false);
    } finally {
      build.dispose();
    }
  }, 120_000);

  it('kgen emit writes the kernel, its loader and manifest; kgen verify passes a q8 cache (bin/kgen: npm test builds dist first)', async () => {
    const out = mkdtempSync(join(tmpdir(), 'kgen-wgsl-att-'));
    try {
      const e = await execa(KGEN, ['emit', '--target', 'wgsl', '--op', 'attention_f16', '--shape', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=77,D=64', '-o', out], { reject: false, all: true });
      expect(e.exitCode, e.all).toBe(0);
      for (const f of ['kernel.wgsl', 'kernel.js', 'kernel.d.ts', 'manifest.json']) expect(existsSync(join(out, f)), f).toBe(true);
      expect(readFileSync(join(out, 'kernel.wgsl'), 'utf8')).toContain('fn kgen_attention_f16_merge(');
      const v = await execa(KGEN, ['verify', '--target', 'wgsl', '--op', 'attention_q8kv', '--shape', 'B=1,Hq=4,Hkv=1,Sq=5,Skv=77,D=64', '--device', 'swiftshader'], { reject: false, all: true });
      expect(v.exitCode, v.all).toBe(0);
      expect(v.stdout).toMatch(/^ok: attention_q8kv wgsl\/splitk_decode B=1,Hq=4,Hkv=1,Sq=5,Skv=77,D=64: .*ran dawn/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 180_000);
});

describe('WGSL attention plans and manifests', () => {
  it('decode: two passes (the splits, then the merge) sharing a workspace the manifest sizes; prefill: one pass, no workspace', () => {
    const d = emit({ target: 'wgsl', op: 'attention_q8kv', shape: 'B=2,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128', device: 'webgpu', config: { kvSplit: 16, kvBlock: 16 } });
    expect(d.plan.variant).toBe('splitk_decode');
    // 16 splits of 256 keys; per (batch, KV head, split) 4 query rows of (max, sum, D accumulators).
    const workspaceBytes = 4 * 2 * 8 * 16 * 4 * (128 + 2);
    expect(d.manifest.launch).toMatchObject({ grid: [16, 8, 2], workspaceBytes, secondPass: { grid: [32, 2, 1], block: [64, 1, 1] } });
    const bi = d.manifest.bindingInterface!;
    expect(bi.workspaceBytes).toBe(workspaceBytes);
    expect(bi.bindings.map((b) => b.tensor)).toEqual(['q', 'k', 'k_scales', 'v', 'v_scales', 'o', 'workspace']);
    expect(bi.passes.map((p) => [p.entry, p.dispatch.grid, p.bindings])).toEqual([
      ['kgen_attention_q8kv', [16, 8, 2], [0, 1, 2, 3, 4, 6]],
      ['kgen_attention_q8kv_merge', [32, 2, 1], [5, 6]],
    ]);
    expect(d.files['kernel.d.ts']).toMatch(/encode\(pass: GPUComputePassEncoder, groups: GPUBindGroup\[\]\): void;/);
    const p = emit({ target: 'wgsl', op: 'attention_q4_0kv', shape: 'B=1,Hq=32,Hkv=8,Sq=512,Skv=512,D=128', device: 'webgpu' });
    expect(p.plan.variant).toBe('flash_prefill');
    expect(p.manifest.launch.workspaceBytes).toBe(0);
    expect(p.manifest.launch.secondPass).toBeUndefined();
    expect(p.manifest.bindingInterface!.passes).toHaveLength(1);
  });

  it('a package led by a decode kernel shows its buffers (workspace included) and its two passes in the usage', async () => {
    const pkg = await buildPackage({
      command: 'test',
      kernels: [
        { target: 'wgsl', op: 'attention_q4_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=77,D=64', device: 'webgpu', name: 'decode' },
        { target: 'wgsl', op: 'matmul_q4_0', shape: 'M=1,N=64,K=64', device: 'webgpu' },
      ],
    });
    const readme = pkg.files['README.md'] as string;
    expect(readme).toContain('created.decode.run({ q: qBuffer, k: kBuffer, v: vBuffer, o: oBuffer, workspace: workspaceBuffer });');
    const { launch } = emit({ target: 'wgsl', op: 'attention_q4_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=77,D=64', device: 'webgpu' }).manifest;
    expect(launch.workspaceBytes).toBeGreaterThan(0);
    expect(readme).toContain(`run() dispatches 2 passes; workspace is scratch of ${launch.workspaceBytes} bytes they share.`);
  });

  it('tiles fit 16 KiB of workgroup storage at the WebGPU defaults; larger ones are refused naming the budget', () => {
    for (const op of ['attention_f16', 'attention_q8kv', 'attention_q8_0kv', 'attention_q4_0kv']) {
      for (const shape of ['B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=256', 'B=1,Hq=32,Hkv=8,Sq=256,Skv=256,D=256', 'B=1,Hq=32,Hkv=8,Sq=8,Skv=4096,D=128']) {
        const e = emit({ target: 'wgsl', op, shape, device: 'webgpu' });
        expect(e.manifest.bindingInterface!.limits.maxComputeWorkgroupStorageSize, `${op} ${shape}`).toBeLessThanOrEqual(16384);
      }
    }
    expect(() => emit({ target: 'wgsl', op: 'attention_f16', shape: 'B=1,Hq=8,Hkv=2,Sq=64,Skv=77,D=128', device: 'webgpu', config: { br: 32, bc: 32 } })).toThrow(BudgetError);
  });
});
