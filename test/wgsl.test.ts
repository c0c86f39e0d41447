import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { verify } from '../src/api/verify.js';
import { planRequest, renderPlan } from '../src/backends/registry.js';
import { cachedBuild } from '../src/backends/runner-core.js';
import { wgslFingerprint } from '../src/backends/wgsl/fingerprint.js';
import { adapterCannotRun, DAWN_RUN_EXIT, dawnAdapterFor, dawnRunScript, WEBGPU_NOT_LOADED, wgslRunnerFor, type ProbeResult } from '../src/backends/wgsl/runner.js';
import { getDevice } from '../src/device/index.js';
import type { DeviceProfile } from '../src/device/profile.js';
import { BudgetError, KgenError } from '../src/errors.js';
import { CATALOG } from '../src/ir/catalog.js';
import type { MatmulOp, MatmulShape, WeightFormatName } from '../src/ir/types.js';
import { parseShape } from '../src/ir/validate.js';
import { opKit } from '../src/ops/index.js';
import { makePlan, overBudget } from '../src/plan/index.js';
import { pruneSpace } from '../src/tune/space.js';
import type { Plan } from '../src/plan/types.js';
import { commentText } from '../src/render/comment-text.js';
import { KGEN_VERSION } from '../src/version.js';
import { dawnSkipReason } from './helpers.js';

const noDawn = dawnSkipReason('WGSL kernels');

const OPS = ['matmul_q35', 'matmul_q4', 'matmul_q8', 'matmul_q4_0', 'matmul_q8_0', 'matmul_f16'];
// Ragged: N=77 fills no row tile; K=320 is 5 groups of 64 (10 ggml blocks, an odd count of
// 18-byte q4_0 blocks per row, so rows start at half-words), not a multiple of bk 64 x 2 or of an
// activation chunk.
const SHAPES = ['M=1,N=77,K=320', 'M=3,N=77,K=320', 'M=64,N=77,K=320'];
const VARIANTS = [
  { name: 'gemv, workgroup-storage reduction', config: { kernel: 'gemv', subgroups: 0 }, maxM: 8 },
  // SwiftShader has subgroups (of 4); the kernel takes its size at run time.
  { name: 'gemv, subgroup reduction', config: { kernel: 'gemv', subgroups: 1 }, maxM: 8 },
  { name: 'rows (one invocation walks K per row)', config: { kernel: 'rows', rowsPerInvocation: 2, invocations: 32 }, maxM: 8 },
  { name: 'tiled', config: { kernel: 'tiled' }, maxM: Infinity },
] as const;

async function expectOk(opts: Parameters<typeof verify>[0], label: string): Promise<void> {
  const r = await verify(opts);
  expect(r.status, `${label}: ${r.detail ?? ''}`).toBe('ok');
  expect(r.ran, label).toBe(true);
  expect(r.comparison!.nonFinite, label).toBe(0);
  expect(r.comparison!.nmse, label).toBeLessThanOrEqual(r.tolerance.nmse);
}

const matmul = (format: WeightFormatName, groupSize: number | undefined, epilogue: MatmulOp['epilogue'], name = `mm_${format}`): MatmulOp => ({
  kind: 'matmul', name, x: 'f32', y: 'f32', weight: groupSize ? { format, groupSize } : { format }, epilogue,
});

/** Builds and runs a plan made outside `verify` (a profile of the test's own), and checks it against the reference. */
async function runPlan(plan: Plan, seed = 3): Promise<void> {
  const kernel = renderPlan(plan, { version: KGEN_VERSION, irHash: 'test', command: commentText('test') });
  const runner = wgslRunnerFor(plan);
  const build = await runner.build(plan, kernel);
  expect(build.status, build.status === 'compile_error' ? build.detail : '').toBe('ok');
  if (build.status !== 'ok') return;
  try {
    const data = opKit(plan.op.kind).testData(plan.op, plan.shape, seed);
    const run = await runner.execute(build, data.inputs);
    expect(run.status, run.status === 'ok' ? '' : run.detail).toBe('ok');
    if (run.status !== 'ok') return;
    const { ok, comparison } = data.check(run.output, plan.tolerance);
    expect(ok, JSON.stringify(comparison)).toBe(true);
  } finally {
    build.dispose();
  }
}


/**
 * A phone GPU's profile in a file of its own (`--device FILE.json`): WebGPU's default limits with
 * subgroups of exactly 128 lanes, wider than SwiftShader's 4.
 */
function phoneProfileFile(): string {
  const webgpu = getDevice('webgpu');
  const dir = mkdtempSync(join(tmpdir(), 'kgen-wgsl-phone-'));
  const path = join(dir, 'phone.json');
  writeFileSync(path, JSON.stringify({ ...webgpu, name: 'wgsl-test-phone', match: undefined, gpu: { ...webgpu.gpu!, features: { ...webgpu.gpu!.features, subgroups: true, subgroupSizes: [128, 128] } } }));
  return path;
}

describe.skipIf(noDawn !== undefined)('WGSL kernels on Dawn + SwiftShader', { concurrent: true }, () => {
  for (const op of OPS) {
    for (const v of VARIANTS) {
      it(`${op} ${v.name}: M in {1,3,64} (gemv: M <= 8), ragged N and K, match the reference`, async () => {
        for (const shape of SHAPES) {
          if (Number(/M=(\d+)/.exec(shape)![1]) > v.maxM) continue;
          await expectOk({ target: 'wgsl', op, shape, device: 'swiftshader', config: v.config }, `${op} ${v.name} ${shape}`);
        }
      });
    }
  }

  it('fused epilogues, q3.5 blocks with a 32-weight unit (G = 32, 96), other tilings', async () => {
    const cases: [MatmulOp, string, Record<string, unknown>][] = [
      [matmul('q4_0', 32, { bias: true, activation: 'silu', residual: true }), 'M=3,N=45,K=96', { kernel: 'gemv', subgroups: 1 }],
      [matmul('q4_0', 32, { bias: true, activation: 'silu', residual: true }), 'M=20,N=45,K=96', { kernel: 'tiled', bm: 16, bn: 32, bk: 32, buffers: 1, invocations: 64 }],
      [matmul('q35', 32, { bias: true, activation: 'gelu', residual: false }), 'M=2,N=33,K=160', { kernel: 'gemv', subgroups: 0, rowsPerWorkgroup: 1, invocations: 32 }],
      [matmul('q35', 96, { bias: false, activation: 'none', residual: true }), 'M=9,N=21,K=288', { kernel: 'tiled' }],
      [matmul('q35', 96, { bias: false, activation: 'gelu', residual: false }), 'M=1,N=21,K=288', { kernel: 'gemv', xChunk: 512 }],
      [matmul('f16', undefined, { bias: true, activation: 'none', residual: false }), 'M=5,N=19,K=96', { kernel: 'gemv', subgroups: 1, rowsPerWorkgroup: 16 }],
      [matmul('f16', undefined, { bias: false, activation: 'silu', residual: true }), 'M=17,N=19,K=96', { kernel: 'tiled', bm: 16, bn: 64, bk: 32, buffers: 2 }],
      [matmul('q8', 128, { bias: true, activation: 'none', residual: true }), 'M=8,N=70,K=640', { kernel: 'gemv', xChunk: 512, invocations: 256 }],
      [matmul('q35', 96, { bias: true, activation: 'silu', residual: true }), 'M=5,N=21,K=288', { kernel: 'rows', rowsPerInvocation: 4, invocations: 64 }],
      [matmul('f16', undefined, { bias: true, activation: 'gelu', residual: true }), 'M=2,N=19,K=96', { kernel: 'rows' }],
      [matmul('q8_0', 32, { bias: false, activation: 'gelu', residual: false }), 'M=40,N=130,K=1344', { kernel: 'tiled', bm: 64, bn: 32, bk: 64, buffers: 1 }],
    ];
    for (const [op, shape, config] of cases) {
      await expectOk({ target: 'wgsl', ir: op, shape, device: 'swiftshader', config }, `${op.name} ${JSON.stringify(op.epilogue)} ${shape} ${JSON.stringify(config)}`);
    }
  });

  it('f16 activations (two to a word, widened by unpack2x16float) in every kernel, without shader-f16', async () => {
    const f16x = (format: WeightFormatName, group: number | undefined, epilogue: MatmulOp['epilogue']): MatmulOp => ({ ...matmul(format, group, epilogue, `mm_${format}_xf16`), x: 'f16' });
    const cases: [MatmulOp, string, Record<string, unknown>][] = [
      [f16x('q4', 64, { bias: true, activation: 'none', residual: false }), 'M=3,N=77,K=320', { kernel: 'rows' }],
      [f16x('q35', 96, { bias: false, activation: 'silu', residual: true }), 'M=2,N=21,K=288', { kernel: 'gemv', subgroups: 1 }],
      [f16x('q8_0', 32, { bias: false, activation: 'none', residual: false }), 'M=17,N=45,K=96', { kernel: 'tiled', bm: 16, bn: 32, bk: 32 }],
    ];
    for (const [op, shape, config] of cases) {
      const { plan } = makePlan(planRequest({ op, shape: parseShape(shape, op), device: getDevice('swiftshader'), target: 'wgsl' }), config);
      expect(plan.budgets.find((b) => b.budget.startsWith('storage binding size'))!.needed).toBeGreaterThanOrEqual((plan.shape as MatmulShape).M * (plan.shape as MatmulShape).K * 2);
      await expectOk({ target: 'wgsl', ir: op, shape, device: 'swiftshader', config }, `${op.name} ${shape} ${JSON.stringify(config)}`);
    }
  });

  it('dot4I8Packed (dot8: 1) on q8 and q8_0: activations quantized per block in the kernel, judged against that rounding', async () => {
    for (const [op, shape, config] of [
      ['matmul_q8_0', 'M=3,N=77,K=320', { kernel: 'rows', dot8: 1 }],
      ['matmul_q8', 'M=1,N=77,K=384', { kernel: 'rows', dot8: 1, rowsPerInvocation: 2 }],
    ] as const) {
      const { plan } = makePlan(planRequest({ op: CATALOG[op]!, shape: parseShape(shape, CATALOG[op]!), device: getDevice('swiftshader'), target: 'wgsl' }), config);
      expect(plan.tolerance.inputRounding).toEqual({ input: 'x', bits: 8, group: (plan.params as { scaleRun: number }).scaleRun, factor: 1.25 });
      expect(renderPlan(plan, { version: KGEN_VERSION, irHash: 'test', command: commentText('test') }).files['kernel.wgsl']).toContain('isum_0_0 += dot4I8Packed(c0, xq0);');
      await expectOk({ target: 'wgsl', op, shape, device: 'swiftshader', config }, `${op} ${shape} dot8`);
    }
    await expectOk({ target: 'wgsl', ir: matmul('q8_0', 32, { bias: true, activation: 'gelu', residual: true }), shape: 'M=2,N=45,K=96', device: 'swiftshader', config: { kernel: 'rows', dot8: 1 } }, 'q8_0 dot8 with an epilogue');
  });

  it('q4 and q4_0 rows walk pairs of blocks (shift-free decode) where a row has an even number of blocks, and match', async () => {
    const cases: [MatmulOp, string, Record<string, unknown>][] = [
      [matmul('q4', 64, { bias: false, activation: 'none', residual: false }), 'M=1,N=77,K=384', { kernel: 'rows' }],
      // Activations loaded by every invocation instead of shared through subgroups (the GPU default).
      [matmul('q4', 64, { bias: true, activation: 'none', residual: false }), 'M=3,N=77,K=384', { kernel: 'rows', xBroadcast: 0 }],
      [matmul('q4', 32, { bias: true, activation: 'silu', residual: true }), 'M=3,N=45,K=64', { kernel: 'rows', rowsPerInvocation: 4, invocations: 32 }],
      [matmul('q4', 128, { bias: true, activation: 'gelu', residual: false }), 'M=2,N=33,K=512', { kernel: 'rows', rowsPerInvocation: 1 }],
      [matmul('q4_0', 32, { bias: false, activation: 'none', residual: true }), 'M=8,N=45,K=320', { kernel: 'rows', rowsPerInvocation: 4 }],
      [{ ...matmul('q4', 64, { bias: false, activation: 'none', residual: false }, 'mm_q4_xf16'), x: 'f16' }, 'M=3,N=77,K=256', { kernel: 'rows' }],
    ];
    for (const [op, shape, config] of cases) {
      const { plan } = makePlan(planRequest({ op, shape: parseShape(shape, op), device: getDevice('swiftshader'), target: 'wgsl' }), config);
      expect(plan.params, `${op.name} ${shape}`).toMatchObject({ kernel: 'rows', nibblePairs: true, xBroadcast: config.xBroadcast !== 0 });
      await expectOk({ target: 'wgsl', ir: op, shape, device: 'swiftshader', config }, `${op.name} ${JSON.stringify(op.epilogue)} ${shape} ${JSON.stringify(config)}`);
    }
  });

  it('weights over the profile\'s storage binding size are split across bindings and still match', async () => {
    // A profile whose bindings hold 4608 bytes: 120 q4 rows of 68 bytes (8164 bound) span 2 weight
    // bindings; the boundary falls inside row 67's second block (4608 = 67 x 68 + 52).
    const small: DeviceProfile = { ...getDevice('swiftshader'), gpu: { ...getDevice('swiftshader').gpu!, maxStorageBufferBindingBytes: 4608 } };
    // rows: each row is one pair of blocks (the pair walk), read word by word across the boundary.
    for (const config of [{ kernel: 'gemv' }, { kernel: 'rows', rowsPerInvocation: 4, invocations: 32 }, { kernel: 'tiled', bm: 16, bn: 32, bk: 64 }]) {
      const op = CATALOG.matmul_q4!;
      const shape = parseShape(config.kernel === 'tiled' ? 'M=9,N=120,K=128' : 'M=2,N=120,K=128', op);
      const { plan } = makePlan(planRequest({ op, shape, device: small, target: 'wgsl' }), config);
      expect(plan.params).toMatchObject({ weightChunkBytes: 4608, weightChunks: 2 });
      await runPlan(plan);
    }
  });

  it('weights past a 1 MiB maxBufferSize run as one buffer per chunk (the run kit allocates through the loader\'s createBuffers) and match', async () => {
    // 1001 q8_0 rows of 65 blocks (2210 bytes): 2.2 MB in 3 chunks, each a buffer of its own.
    const sw = getDevice('swiftshader');
    const small: DeviceProfile = { ...sw, name: 'qa-1mib-buffers', match: undefined, gpu: { ...sw.gpu!, maxStorageBufferBindingBytes: 2 ** 20, maxBufferBytes: 2 ** 20 } };
    const op = CATALOG.matmul_q8_0!;
    const { plan } = makePlan(planRequest({ op, shape: parseShape('M=3,N=1001,K=2080', op), device: small, target: 'wgsl' }), { kernel: 'rows', rowsPerInvocation: 2, invocations: 64 });
    expect(plan.params).toMatchObject({ weightChunkBytes: 2 ** 20, weightChunks: 3 });
    await runPlan(plan);
  });

  it('limits past the spec defaults are requested from the adapter (a 164 MB binding builds on SwiftShader\'s profile); past the adapter\'s, the kernel is unsupported by name', async () => {
    // SwiftShader's profile states what its adapter reports: a 1 GiB storage binding.
    const sw = getDevice('swiftshader');
    const { probe } = await dawnAdapterFor(sw);
    expect(sw.gpu!.maxStorageBufferBindingBytes).toBe(probe.limits!.maxStorageBufferBindingSize);
    // The compile checks the device with the loader's checkDevice: it passes only if the 164 MB
    // binding (over WebGPU's 128 MiB default) was requested. Nothing is allocated.
    const f16 = CATALOG.matmul_f16!;
    const big = (device: DeviceProfile, shape: string) => {
      const { plan } = makePlan(planRequest({ op: f16, shape: parseShape(shape, f16), device, target: 'wgsl' }), { kernel: 'gemv' });
      return { plan, kernel: renderPlan(plan, { version: KGEN_VERSION, irHash: 'test', command: commentText('test') }) };
    };
    const fits = big(sw, 'M=1,N=40000,K=2048');
    expect(fits.plan.params).toMatchObject({ weightChunks: 1 });
    expect(fits.kernel.bindingInterface!.limits.maxStorageBufferBindingSize).toBeGreaterThan(2 ** 27);
    const built = await wgslRunnerFor(fits.plan).build(fits.plan, fits.kernel);
    expect(built.status, built.status === 'ok' ? '' : built.detail).toBe('ok');
    if (built.status === 'ok') built.dispose();
    // A profile claiming 2 GiB: its 1.2 GB binding is more than this adapter grants.
    const claims: DeviceProfile = { ...sw, name: 'qa-2gib-bindings', match: undefined, gpu: { ...sw.gpu!, maxStorageBufferBindingBytes: 2 ** 31, maxBufferBytes: 2 ** 31 } };
    const over = big(claims, 'M=1,N=300000,K=2048');
    const refused = await wgslRunnerFor(over.plan).build(over.plan, over.kernel);
    expect(refused.status).toBe('unsupported');
    expect(refused.status === 'unsupported' && refused.detail).toMatch(/^the adapter's maxStorageBufferBindingSize is 1073741824, below the 1228800004 the kernel needs; maxBufferSize is 1073741824, below the 1228800004 .*\(plan for a profile that states this adapter's limits\)/);
  });

  it('the shader-f16 path matches the reference on an adapter that has shader-f16 (skipped, with the reason, where none does)', async (ctx) => {
    const { probe } = await dawnAdapterFor(getDevice('webgpu'));
    if (!probe.features?.includes('shader-f16')) {
      console.warn(`SKIP: the shader-f16 path: the adapter here (${probe.adapter?.architecture ?? 'none'}) lacks shader-f16`);
      ctx.skip();
      return;
    }
    const base = getDevice('webgpu');
    const adapterF16: DeviceProfile = { ...base, name: 'adapter-f16', gpu: { ...base.gpu!, features: { ...base.gpu!.features, f16: true } } };
    for (const [name, shape] of [['matmul_q4', 'M=3,N=77,K=320'], ['matmul_q8_0', 'M=1,N=45,K=96'], ['matmul_q35', 'M=2,N=33,K=192'], ['matmul_f16', 'M=4,N=19,K=96']] as const) {
      const o = CATALOG[name]!;
      const { plan } = makePlan(planRequest({ op: o, shape: parseShape(shape, o), device: adapterF16, target: 'wgsl' }), { kernel: 'rows', f16Math: 1 });
      await runPlan(plan);
    }
  });

  it('tuning records key on the adapter Dawn reports: SwiftShader, its subgroup sizes, features, limits, the webgpu build', async () => {
    const fp = await wgslFingerprint(getDevice('swiftshader'));
    expect(fp).toMatchObject({ profile: 'swiftshader', target: 'wgsl', subgroupSizes: '4..4' });
    expect(String(fp.adapter)).toMatch(/\/swiftshader\//);
    expect(String(fp.features)).toContain('subgroups');
    expect(String(fp.limits)).toContain('maxComputeWorkgroupStorageSize=32768');
    expect(fp.webgpu).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('a gemv planned for wider subgroups than the adapter\'s is unsupported here, naming both sizes: neither compiled nor run to a wrong result', async () => {
    const r = await verify({ target: 'wgsl', op: 'matmul_q4_0', shape: 'M=1,N=16,K=64', device: phoneProfileFile(), config: { kernel: 'gemv', subgroups: 1 } });
    expect(r).toMatchObject({ status: 'unsupported', ran: false, compileMs: 0 });
    expect(r.detail).toMatch(/^the adapter's subgroups may be 4 lanes, narrower than the 128 the kernel was planned for \(SwiftShader\)$/);
  });

  it('a kernel needing shader-f16 is unsupported on SwiftShader (which lacks it), with the reason in one line, never a compile error', async () => {
    // SwiftShader's profile, claiming shader-f16: planned for it, run on SwiftShader.
    const base = getDevice('swiftshader');
    const path = join(mkdtempSync(join(tmpdir(), 'kgen-wgsl-f16-')), 'swiftshader-f16.json');
    writeFileSync(path, JSON.stringify({ ...base, name: 'wgsl-test-swiftshader-f16', match: undefined, gpu: { ...base.gpu!, features: { ...base.gpu!.features, f16: true } } }));
    const r = await verify({ target: 'wgsl', op: 'matmul_q4', shape: 'M=1,N=16,K=64', device: path, config: { kernel: 'rows', f16Math: 1 } });
    expect(r).toMatchObject({ status: 'unsupported', ran: false, compileMs: 0, detail: 'the adapter lacks shader-f16 (SwiftShader)' });
    // The Dawn program refuses it the same way, as data, where its own adapter lacks the feature.
    const e = emit({ target: 'wgsl', op: 'matmul_q4', shape: 'M=1,N=16,K=64', device: path, config: { kernel: 'rows', f16Math: 1 } });
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wgsl-f16-build-'));
    for (const [name, text] of Object.entries({ ...e.rendered.files, ...e.rendered.harnessFiles })) writeFileSync(join(dir, name), text);
    const { env } = await dawnAdapterFor(base);
    const child = await execa(process.execPath, [dawnRunScript(), `--exits=${JSON.stringify(DAWN_RUN_EXIT)}`, 'compile', dir], { env, reject: false });
    expect(child.exitCode, child.stderr).toBe(DAWN_RUN_EXIT.ok);
    expect(JSON.parse(child.stdout.trim())).toEqual({ unsupported: 'the adapter lacks shader-f16' });
  });

  it('a WGSL error is a compile_error naming the line, not an exception', async () => {
    const op = CATALOG.matmul_q4!;
    const { plan } = makePlan(planRequest({ op, shape: parseShape('M=1,N=8,K=64', op), device: getDevice('swiftshader'), target: 'wgsl' }));
    const kernel = renderPlan(plan, { version: KGEN_VERSION, irHash: 'test', command: commentText('test') });
    const source = kernel.files['kernel.wgsl']!;
    const lineNo = source.split('\n').findIndex((l) => l.includes('fn kg_scale')) + 2;
    const broken = source.replace('return unpack2x16float(kg_ld16(o)).x;', 'return unpack2x16float(kg_ld16(o));');
    const build = await wgslRunnerFor(plan).build(plan, { ...kernel, files: { ...kernel.files, 'kernel.wgsl': broken } });
    expect(build.status).toBe('compile_error');
    if (build.status === 'compile_error') {
      expect(build.detail).toMatch(new RegExp(`^kernel\\.wgsl:${lineNo}:\\d+: `));
      expect(build.detail).toContain('unpack2x16float(kg_ld16(o))');
    }
  });

  it('times runs by timestamp queries or queue completion: several runs, median within min..max', async () => {
    const op = CATALOG.matmul_q4!;
    const { plan } = makePlan(planRequest({ op, shape: parseShape('M=1,N=256,K=512', op), device: getDevice('swiftshader'), target: 'wgsl' }));
    const kernel = renderPlan(plan, { version: KGEN_VERSION, irHash: 'test', command: commentText('test') });
    const runner = wgslRunnerFor(plan);
    expect(runner.timesAreReal).toBe(true);
    const build = await runner.build(plan, kernel);
    if (build.status !== 'ok') throw new Error(build.detail);
    try {
      const data = opKit('matmul').testData(op, plan.shape, 1);
      const run = await runner.execute(build, data.inputs, { timing: { warmup: 1, runs: 5, flushBytes: 0 } });
      expect(run.status).toBe('ok');
      if (run.status !== 'ok') return;
      expect(data.check(run.output, plan.tolerance).ok).toBe(true);
      expect(run.timing!.runs).toBe(5);
      expect(run.timing!.minMs).toBeGreaterThan(0);
      expect(run.timing!.medianMs).toBeGreaterThanOrEqual(run.timing!.minMs);
      expect(run.timing!.medianMs).toBeLessThanOrEqual(run.timing!.maxMs);
    } finally {
      build.dispose();
    }
  });
});

describe('what an adapter cannot run (decided from its probe, before anything compiles)', () => {
  const probe = (features: string[], subgroupMinSize?: number): ProbeResult => ({ adapter: { vendor: 'v', architecture: 'a', device: 'd', description: '', subgroupMinSize }, features });
  it('a feature the adapter lacks, or subgroups narrower than the plan\'s; nothing when it has both or does not state its size', () => {
    expect(adapterCannotRun(probe(['subgroups'], 4), { features: ['subgroups', 'shader-f16'] })).toBe('the adapter lacks shader-f16');
    expect(adapterCannotRun(probe([], 32), { features: ['subgroups', 'shader-f16'] })).toBe('the adapter lacks subgroups, shader-f16');
    expect(adapterCannotRun(probe(['subgroups'], 4), { features: ['subgroups'], subgroupMinSize: 128 })).toBe('the adapter\'s subgroups may be 4 lanes, narrower than the 128 the kernel was planned for');
    expect(adapterCannotRun(probe(['subgroups'], 32), { features: ['subgroups'], subgroupMinSize: 32 })).toBeUndefined();
    expect(adapterCannotRun(probe(['subgroups']), { features: ['subgroups'], subgroupMinSize: 32 })).toBeUndefined();
    expect(adapterCannotRun(probe([]), { features: [] })).toBeUndefined();
  });

  it('a build whose compiler refuses it as data (the Dawn program\'s `unsupported`) is unsupported, and no product is cached', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'kgen-wgsl-cache-'));
    let compiles = 0;
    const refuse = () => cachedBuild({ cacheDir, id: 'refused', tempPrefix: 'kgen-test-', sources: { 'a.txt': 'a' }, products: ['out'], compile: async () => (compiles++, { unsupported: 'the adapter lacks shader-f16' }) });
    expect(await refuse()).toMatchObject({ status: 'unsupported', detail: 'the adapter lacks shader-f16' });
    expect(existsSync(join(cacheDir, 'refused', 'out'))).toBe(false);
    // Asked again (another adapter may answer), it compiles again.
    expect(await refuse()).toMatchObject({ status: 'unsupported' });
    expect(compiles).toBe(2);
  });
});

describe('WGSL plans against WebGPU limits', () => {
  const webgpu = getDevice('webgpu');
  const op = CATALOG.matmul_q4! as MatmulOp;
  const shape = parseShape('M=64,N=4096,K=4096', op);
  // 2 x 32x64 f32 activation tiles (16384 bytes) + 2 x 64 rows of 36 weight words (4608 bytes).
  const big = { kernel: 'tiled', bm: 32, bn: 64, bk: 64, buffers: 2, invocations: 128 };

  it('a config over the 16 KiB default workgroup storage is refused for webgpu, accepted where the adapter reports 32 KiB', () => {
    let err: unknown;
    try {
      makePlan(planRequest({ op, shape, device: webgpu, target: 'wgsl' }), big);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BudgetError);
    expect((err as BudgetError).budget).toBe('workgroup storage (webgpu)');
    expect((err as BudgetError).needed).toBe(20992);
    expect((err as BudgetError).available).toBe(16384);
    const adapter32: DeviceProfile = { ...webgpu, name: 'adapter-32k', gpu: { ...webgpu.gpu!, sharedPerBlockBytes: 32768, sharedPerBlockOptinBytes: 32768 } };
    const { plan } = makePlan(planRequest({ op, shape, device: adapter32, target: 'wgsl' }), big);
    expect(overBudget(plan)).toBeUndefined();
    expect(plan.buffers.filter((b) => b.space === 'shared').reduce((a, b) => a + b.size, 0)).toBe(20992);
  });

  it('every format and group size plans a legal kernel at the WebGPU defaults, large shapes included', () => {
    const formats: [WeightFormatName, number | undefined][] = [['q35', 64], ['q35', 32], ['q35', 96], ['q4', 64], ['q4', 128], ['q8', 64], ['q4_0', 32], ['q8_0', 32], ['f16', undefined]];
    for (const [format, group] of formats) {
      const m = matmul(format, group, { bias: true, activation: 'silu', residual: true });
      for (const text of ['M=1,N=4096,K=4608', 'M=3,N=77,K=384', 'M=8,N=14336,K=4608', 'M=64,N=77,K=384', 'M=512,N=4096,K=13824', 'M=16,N=28672,K=8064']) {
        const { plan } = makePlan(planRequest({ op: m, shape: parseShape(text, m), device: webgpu, target: 'wgsl' }));
        expect(overBudget(plan), `${format}/${group} ${text}`).toBeUndefined();
        expect(plan.budgets.map((b) => b.budget)).toEqual(expect.arrayContaining(['workgroup storage (webgpu)', 'invocations per workgroup (webgpu)', 'storage binding size (webgpu)', 'storage buffers per shader stage (webgpu)']));
        expect(plan.variant).toBe((plan.shape as MatmulShape).M <= 8 ? 'gemv' : 'tiled');
        // SwiftShader's subgroups are 4 wide (CPU SIMD lanes): the barrier-free rows kernel is its default.
        const { plan: ss } = makePlan(planRequest({ op: m, shape: parseShape(text, m), device: getDevice('swiftshader'), target: 'wgsl' }));
        expect(ss.variant, `${format}/${group} ${text} on swiftshader`).toBe((ss.shape as MatmulShape).M <= 8 ? 'rows' : 'tiled');
      }
    }
  });

  it('subgroups only where the profile has them; the reduction scratch is sized for the smallest subgroup', () => {
    const gemvShape = parseShape('M=4,N=64,K=256', op);
    expect(() => makePlan(planRequest({ op, shape: gemvShape, device: webgpu, target: 'wgsl' }), { subgroups: 1 })).toThrow(KgenError);
    const { plan: plain } = makePlan(planRequest({ op, shape: gemvShape, device: webgpu, target: 'wgsl' }), { invocations: 128 });
    expect(plain.params).toMatchObject({ subgroups: false, reductionSlots: 128 });
    // An adapter with subgroups of 4 to 128: 128 invocations may form 32 subgroups.
    const withSubgroups: DeviceProfile = { ...webgpu, gpu: { ...webgpu.gpu!, features: { ...webgpu.gpu!.features, subgroups: true } } };
    const { plan } = makePlan(planRequest({ op, shape: gemvShape, device: withSubgroups, target: 'wgsl' }), { invocations: 128 });
    expect(plan.params).toMatchObject({ subgroups: true, reductionSlots: 32, reductionFloats: 128 });
    const kernel = renderPlan(plan, { version: KGEN_VERSION, irHash: 'test', command: commentText('test') });
    expect(kernel.files['kernel.wgsl']).toContain('enable subgroups;');
    expect(kernel.files['kernel.wgsl']).toContain('const KG_SLOTS: u32 = 32u;');
    // The rows kernel's broadcast reads lanes 0..3: refused where subgroups may be narrower.
    const pairs = parseShape('M=1,N=64,K=256', op);
    const narrow: DeviceProfile = { ...withSubgroups, name: 'narrow', gpu: { ...withSubgroups.gpu!, features: { ...withSubgroups.gpu!.features, subgroupSizes: [2, 4] } } };
    expect(() => makePlan(planRequest({ op, shape: pairs, device: narrow, target: 'wgsl' }), { kernel: 'rows', xBroadcast: 1 })).toThrow(/xBroadcast \(1\) reads lanes 0\.\.3 of every subgroup, and narrow's may be 2 wide/);
    expect(makePlan(planRequest({ op, shape: pairs, device: withSubgroups, target: 'wgsl' }), { kernel: 'rows', xBroadcast: 1 }).plan.params).toMatchObject({ xBroadcast: true });
  });

  it('f16 arithmetic only where the profile has shader-f16: refused for swiftshader with the reason, planned with the feature and the f16 tolerance where it is', () => {
    const shape = parseShape('M=2,N=64,K=256', op);
    const swiftshader = getDevice('swiftshader');
    expect(swiftshader.gpu!.features.f16).toBe(false);
    expect(() => makePlan(planRequest({ op, shape, device: swiftshader, target: 'wgsl' }), { kernel: 'rows', f16Math: 1 })).toThrow(/f16 arithmetic \(f16Math: 1\) needs the WebGPU feature shader-f16, which swiftshader lacks/);
    // The default never asks for it, on any profile.
    expect(makePlan(planRequest({ op, shape, device: swiftshader, target: 'wgsl' })).plan.params).toMatchObject({ kernel: 'rows', f16Math: false });
    const withF16: DeviceProfile = { ...swiftshader, name: 'adapter-f16', gpu: { ...swiftshader.gpu!, features: { ...swiftshader.gpu!.features, f16: true } } };
    const { plan } = makePlan(planRequest({ op, shape, device: withF16, target: 'wgsl' }), { kernel: 'rows', f16Math: 1 });
    // xBroadcast 0: no subgroups either, so the f32 kernel needs no feature at all.
    const { plan: f32 } = makePlan(planRequest({ op, shape, device: withF16, target: 'wgsl' }), { kernel: 'rows', f16Math: 0, xBroadcast: 0 });
    expect(plan.tolerance.nmse).toBeGreaterThan(f32.tolerance.nmse);
    const kernel = renderPlan(plan, { version: KGEN_VERSION, irHash: 'test', command: commentText('test') });
    expect(kernel.files['kernel.wgsl']).toContain('enable f16;');
    expect(kernel.files['kernel.wgsl']).toContain('var part_0_1 = 0.0h;');
    expect(kernel.bindingInterface!.features).toEqual(['shader-f16']);
    const plain = renderPlan(f32, { version: KGEN_VERSION, irHash: 'test', command: commentText('test') });
    expect(plain.files['kernel.wgsl']).not.toContain('f16;');
    expect(plain.bindingInterface!.features).toEqual([]);
  });

  it('the rows kernel walks pairs of blocks for q4 and q4_0 with an even number of blocks per row in f32, and steps otherwise', () => {
    const swiftshader = getDevice('swiftshader');
    const q4 = CATALOG.matmul_q4! as MatmulOp;
    const q4_0 = CATALOG.matmul_q4_0! as MatmulOp;
    const params = (o: MatmulOp, shape: string, config: Record<string, unknown> = { kernel: 'rows' }, device = swiftshader) => makePlan(planRequest({ op: o, shape: parseShape(shape, o), device, target: 'wgsl' }), config).plan.params;
    // 64 blocks of 34 bytes: 32 pairs of 17 words, 8 steps of 8 weights per block.
    expect(params(q4, 'M=1,N=4096,K=4096')).toMatchObject({ nibblePairs: true, pairs: 32, pairWords: 17, pairWeights: 128, rowWords: 544, pairSteps: 8 });
    expect(params(q4_0, 'M=3,N=45,K=320')).toMatchObject({ nibblePairs: true, pairs: 5, pairWords: 9, rowWords: 45, pairSteps: 4 });
    // 5 blocks per row (rows start at half-words), other formats, groups over 128: the stepwise kernel.
    expect(params(q4, 'M=1,N=77,K=320')).toMatchObject({ nibblePairs: false, pairs: 0 });
    expect(params(CATALOG.matmul_q8! as MatmulOp, 'M=1,N=77,K=384')).toMatchObject({ nibblePairs: false });
    expect(params(matmul('q4', 256, { bias: false, activation: 'none', residual: false }), 'M=1,N=77,K=512')).toMatchObject({ nibblePairs: false });
    const withF16: DeviceProfile = { ...swiftshader, name: 'adapter-f16', gpu: { ...swiftshader.gpu!, features: { ...swiftshader.gpu!.features, f16: true } } };
    expect(params(q4, 'M=1,N=64,K=256', { kernel: 'rows', f16Math: 1 }, withF16)).toMatchObject({ nibblePairs: false });
    const { plan } = makePlan(planRequest({ op: q4, shape: parseShape('M=2,N=64,K=256', q4), device: swiftshader, target: 'wgsl' }), { kernel: 'rows' });
    const wgsl = renderPlan(plan, { version: KGEN_VERSION, irHash: 'test', command: commentText('test') }).files['kernel.wgsl']!;
    expect(wgsl).toContain('let lo0 = kg_nib_lo2(c0, n0);');
    expect(wgsl).not.toContain('kg_dec8u(row0');
    // Activations shared through subgroups: the default where subgroups are at most 4 wide (loads are
    // per-lane gathers), never where the profile has no subgroups, refused with the reason off the pair walk.
    expect(plan.params).toMatchObject({ xBroadcast: true });
    expect(wgsl).toContain('enable subgroups;');
    expect(wgsl).toContain('let xa0 = subgroupBroadcast(la0_0, 1u);');
    expect(params(q4, 'M=1,N=77,K=320')).toMatchObject({ xBroadcast: false });
    expect(params(q4, 'M=1,N=4096,K=4096', { kernel: 'rows' }, getDevice('webgpu'))).toMatchObject({ xBroadcast: false });
    const gpuSubgroups: DeviceProfile = { ...getDevice('webgpu'), gpu: { ...getDevice('webgpu').gpu!, features: { ...getDevice('webgpu').gpu!.features, subgroups: true } } };
    expect(params(q4, 'M=1,N=4096,K=4096', { kernel: 'rows' }, gpuSubgroups)).toMatchObject({ xBroadcast: false });
    expect(() => params(CATALOG.matmul_q8! as MatmulOp, 'M=1,N=77,K=384', { kernel: 'rows', xBroadcast: 1 })).toThrow(/xBroadcast \(1\) shares the activations of the pair walk/);
  });

  it('dot8 is a knob the tuner measures where it fits: q8 and q8_0 on a device with dot4I8Packed; ruled out with the reason elsewhere; never the default', () => {
    const q8 = CATALOG.matmul_q8_0! as MatmulOp;
    const shape = parseShape('M=1,N=256,K=512', q8);
    const swiftshader = getDevice('swiftshader');
    const legal = (o: MatmulOp, device: DeviceProfile) => pruneSpace(planRequest({ op: o, shape: parseShape('M=1,N=256,K=512', o), device, target: 'wgsl' })).legal.map((c) => c.config.dot8);
    expect(new Set(legal(q8, swiftshader))).toEqual(new Set([0, 1]));
    expect(makePlan(planRequest({ op: q8, shape, device: swiftshader, target: 'wgsl' })).plan.params).toMatchObject({ dot8: false });
    // Not by vendor: by the profile's list of 8-bit dot instructions.
    const without: DeviceProfile = { ...swiftshader, name: 'no-dot8', gpu: { ...swiftshader.gpu!, features: { ...swiftshader.gpu!.features, dot8: [] } } };
    expect(new Set(legal(q8, without))).toEqual(new Set([0]));
    expect(() => makePlan(planRequest({ op: q8, shape, device: without, target: 'wgsl' }), { kernel: 'rows', dot8: 1 })).toThrow(/needs the WGSL language feature packed_4x8_integer_dot_product, which no-dot8 lacks/);
    expect(new Set(legal(op, swiftshader))).toEqual(new Set([0]));
    expect(() => makePlan(planRequest({ op, shape: parseShape('M=1,N=256,K=512', op), device: swiftshader, target: 'wgsl' }), { kernel: 'rows', dot8: 1 })).toThrow(/takes int8 weight codes: q8 and q8_0 only, not q4/);
  });

  it('f16 outputs are refused with the reason', () => {
    const f16y: MatmulOp = { ...matmul('q4', 64, { bias: false, activation: 'none', residual: false }), y: 'f16' };
    expect(() => makePlan(planRequest({ op: f16y, shape: parseShape('M=1,N=64,K=64', f16y), device: webgpu, target: 'wgsl' }))).toThrow(/write f32 outputs/);
  });
});

describe('WGSL emit: kernel.wgsl, manifest.json and a loader module', () => {
  it('the manifest states bindings, sizes, workgroup size, dispatch and required features and limits; the loader checks a device against them', async () => {
    const r = emit({ target: 'wgsl', op: 'matmul_q4_0', shape: 'M=2,N=50,K=96', device: 'swiftshader', config: { kernel: 'gemv', subgroups: 1, rowsPerWorkgroup: 4 } });
    expect(Object.keys(r.files).sort()).toEqual(['kernel.d.ts', 'kernel.js', 'kernel.wgsl', 'manifest.json']);
    const m = JSON.parse(r.files['manifest.json']!) as { bindingInterface: { workgroupSize: number[]; dispatch: { expr: string[]; grid: number[] }; bindings: { tensor: string; bytes: number }[]; features: string[]; limits: Record<string, number> } };
    const bi = m.bindingInterface;
    expect(bi.workgroupSize).toEqual([r.plan.config.invocations, 1, 1]);
    expect(bi.dispatch).toEqual({ expr: ['ceil(N / 4)', '1', '1'], grid: [13, 1, 1] });
    // 50 rows of 3 q4_0 blocks (54 bytes) = 2700 bytes, padded to words plus one word.
    expect(bi.bindings.map((b) => [b.tensor, b.bytes])).toEqual([['x', 2 * 96 * 4], ['w', 2704], ['y', 2 * 50 * 4]]);
    expect(bi.features).toEqual(['subgroups']);
    expect(bi.limits.maxComputeWorkgroupStorageSize).toBe(r.plan.buffers.reduce((a, b) => a + b.size, 0));
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wgsl-emit-'));
    try {
      writeFileSync(join(dir, 'kernel.js'), r.files['kernel.js']!);
      const loader = (await import(pathToFileURL(join(dir, 'kernel.js')).href)) as {
        source: string;
        checkDevice(d: unknown): void;
        kernel: unknown;
        createKernel(d: unknown): Promise<{ bindGroup(buffers: Record<string, unknown>): unknown[] }>;
      };
      expect(loader.source).toBe(r.files['kernel.wgsl']);
      expect(loader.kernel).toEqual(bi);
      const limits = { ...bi.limits };
      expect(() => loader.checkDevice({ features: new Set(['subgroups']), limits })).not.toThrow();
      expect(() => loader.checkDevice({ features: new Set(), limits: { ...limits, maxComputeWorkgroupStorageSize: 16 } })).toThrow(/needs feature subgroups, maxComputeWorkgroupStorageSize >= \d+ \(the device has 16\)/);
      // Buffers are checked before WebGPU sees them (it would only log a failed bind group): a W of
      // exactly the packed bytes (2700, not the binding's 2704) and a buffer without STORAGE throw.
      const bound: unknown[] = [];
      const fakeDevice = {
        features: new Set(['subgroups']),
        limits,
        createShaderModule: () => ({}),
        createComputePipelineAsync: async () => ({ getBindGroupLayout: () => ({}) }),
        createBindGroup: (d: unknown) => bound.push(d),
      };
      const k = await loader.createKernel(fakeDevice);
      const STORAGE = 0x80;
      const buffers = { x: { size: 768, usage: STORAGE }, w: { size: 2704, usage: STORAGE | 0x8 }, y: { size: 400, usage: STORAGE } };
      expect(() => k.bindGroup(buffers)).not.toThrow();
      expect(bound).toHaveLength(1);
      expect(() => k.bindGroup({ ...buffers, w: { size: 2700, usage: STORAGE } })).toThrow(/the w buffer has 2700 bytes, binding \d+ needs 2704 \(kernel.bindings; pad the packed weights with zeros/);
      expect(() => k.bindGroup({ ...buffers, y: { size: 200, usage: STORAGE } })).toThrow(/the y buffer has 200 bytes, binding \d+ needs 400 \(kernel.bindings; make the y buffer that large\)/);
      expect(() => k.bindGroup({ ...buffers, y: { size: 400, usage: 0x1 } })).toThrow(/the y buffer needs GPUBufferUsage.STORAGE/);
      expect(() => k.bindGroup({ x: buffers.x, y: buffers.y })).toThrow(/no buffer for w/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(r.files['kernel.d.ts']).toMatch(/export interface KernelBuffers \{\n  \/\*\* X\[2,96\] f32, row-major: 768 bytes\. \*\/\n  x: GPUBuffer;/);
  });

  it('a kernel whose scratch is sized for the profile\'s narrowest subgroup ships that size, and the loader refuses a device with narrower ones', async () => {
    const r = emit({ target: 'wgsl', op: 'matmul_q4_0', shape: 'M=1,N=16,K=64', device: phoneProfileFile(), config: { kernel: 'gemv', subgroups: 1, invocations: 128 } });
    expect(r.plan.params).toMatchObject({ reductionSlots: 1, subgroupMinSize: 128 });
    expect(r.rendered.bindingInterface!.subgroupMinSize).toBe(128);
    expect(r.files['kernel.d.ts']).toContain('subgroupMinSize: 128;');
    // Without subgroups no size is assumed, and none is shipped.
    expect(emit({ target: 'wgsl', op: 'matmul_q4_0', shape: 'M=1,N=16,K=64', device: 'webgpu', config: { kernel: 'gemv' } }).rendered.bindingInterface!.subgroupMinSize).toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wgsl-emit-'));
    try {
      writeFileSync(join(dir, 'kernel.js'), r.files['kernel.js']!);
      const loader = (await import(pathToFileURL(join(dir, 'kernel.js')).href)) as { checkDevice(d: unknown): void };
      const device = (subgroupMinSize?: number) => ({ features: new Set(['subgroups']), limits: r.rendered.bindingInterface!.limits, ...(subgroupMinSize ? { adapterInfo: { subgroupMinSize } } : {}) });
      expect(() => loader.checkDevice(device(4))).toThrow(/needs subgroups of at least 128 lanes \(the device's may be 4: emit for a profile with gpu\.features\.subgroupSizes \[4, \.\.\.\]\)/);
      expect(() => loader.checkDevice(device(128))).not.toThrow();
      expect(() => loader.checkDevice(device())).not.toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('kernel.d.ts (generated with ts-morph) types a TypeScript host: the dispatch grid and workgroup size are literal types', async () => {
    const r = emit({ target: 'wgsl', op: 'matmul_q4_0', shape: 'M=2,N=50,K=96', device: 'swiftshader', config: { kernel: 'gemv', subgroups: 1, rowsPerWorkgroup: 4 } });
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wgsl-types-'));
    const tsc = (files: string[]) => execa(process.execPath, [join(process.cwd(), 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', `${join(process.cwd(), 'node_modules/@types')},${join(process.cwd(), 'node_modules')}`, ...files.map((f) => join(dir, f))], { reject: false });
    try {
      writeFileSync(join(dir, 'kernel.d.ts'), r.files['kernel.d.ts']!);
      writeFileSync(join(dir, 'kernel.js'), r.files['kernel.js']!);
      const host = (grid: number) => `import { createKernel, kernel, type KernelBuffers } from './kernel.js';
export async function call(device: GPUDevice, buffers: KernelBuffers): Promise<number> {
  const k = await createKernel(device);
  k.run(buffers);
  const groups: ${grid} = kernel.dispatch.grid[0];
  return groups * kernel.workgroupSize[0];
}
`;
      writeFileSync(join(dir, 'good.ts'), host(13));
      writeFileSync(join(dir, 'bad.ts'), host(14));
      // One compiler run for both hosts (each run costs ~10-20 s): only bad.ts may have errors.
      const checked = await tsc(['good.ts', 'bad.ts']);
      expect(checked.stdout).toMatch(/bad\.ts\(\d+,\d+\): error TS2322: Type '13' is not assignable to type '14'/);
      expect(checked.stdout.split('\n').filter((line) => /error TS/.test(line) && !line.includes('bad.ts('))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});


describe('WebGPU maxBufferSize (a profile\'s gpu.maxBufferBytes)', () => {
  it('holds every buffer at plan time: weight chunks are sized to fit one each, a tensor bound whole is refused past it', () => {
    // A profile that states a 1 GiB binding limit and no maxBufferBytes: the spec's 256 MiB applies.
    const sw = getDevice('swiftshader');
    const { maxBufferBytes: _, ...gpu } = sw.gpu!;
    const wide: DeviceProfile = { ...sw, name: 'qa-wide-bindings', match: undefined, gpu: { ...gpu, maxStorageBufferBindingBytes: 2 ** 30 } };
    expect(getDevice('webgpu').gpu!.maxBufferBytes).toBe(2 ** 28);
    // 462 MB of f16 weights: two chunks of at most 256 MiB, each a buffer the device can hold.
    const mm = CATALOG.matmul_f16!;
    const { plan } = makePlan(planRequest({ op: mm, shape: parseShape('M=1,N=28672,K=8064', mm), device: wide, target: 'wgsl' }));
    expect(plan.params).toMatchObject({ weightChunkBytes: 2 ** 28, weightChunks: 2 });
    expect(plan.budgets.find((b) => b.budget.startsWith('buffer size'))).toMatchObject({ budget: 'buffer size, maxBufferSize (qa-wide-bindings)', needed: 2 ** 28, available: 2 ** 28 });
    // A 512 MiB K cache is bound whole: over the buffer limit though within the binding limit.
    const at = CATALOG.attention_f16!;
    const cache = () => makePlan(planRequest({ op: at, shape: parseShape('B=1,Hq=8,Hkv=8,Sq=1,Skv=262144,D=128', at), device: wide, target: 'wgsl' }));
    expect(cache).toThrow(BudgetError);
    expect(cache).toThrow(/^--shape: over budget: buffer size, maxBufferSize \(qa-wide-bindings\) needs 536870912 bytes but 268435456 are available; .*positions for a KV cache.*gpu\.maxBufferBytes/);
    // A 192 MiB cache at the spec defaults is over the 128 MiB binding limit: the remedy names the profile field.
    const binding = () => makePlan(planRequest({ op: at, shape: parseShape('B=1,Hq=8,Hkv=8,Sq=1,Skv=98304,D=128', at), device: getDevice('webgpu'), target: 'wgsl' }));
    expect(binding).toThrow(/^--shape: over budget: storage binding size \(webgpu\) needs 201326592 bytes but 134217728 are available; .*positions for a KV cache.*gpu\.maxStorageBufferBindingBytes/);
    // The loader asks the device for its largest binding's buffer.
    const e = emit({ target: 'wgsl', op: 'matmul_q4', shape: 'M=2,N=120,K=128', device: { ...wide, gpu: { ...wide.gpu!, maxStorageBufferBindingBytes: 4608 } } });
    expect(e.manifest.bindingInterface!.limits).toMatchObject({ maxStorageBufferBindingSize: 4608, maxBufferSize: 4608 });
  });

  it('a profile whose maxBufferBytes is below its storage binding size, or either below 256 bytes, is refused by name', () => {
    const sw = getDevice('swiftshader');
    expect(() => emit({ target: 'wgsl', op: 'matmul_q4', shape: 'M=1,N=16,K=64', device: { ...sw, name: 'qa-bad-buffers', match: undefined, gpu: { ...sw.gpu!, maxBufferBytes: 4096 } } })).toThrow(/gpu\.maxBufferBytes: invalid device profile; expected >= gpu\.maxStorageBufferBindingBytes/);
    // Weight chunks start on 256 bytes (minStorageBufferOffsetAlignment): smaller would be no chunk at all.
    const tiny = () => emit({ target: 'wgsl', op: 'matmul_q4', shape: 'M=1,N=16,K=64', device: { ...sw, name: 'qa-tiny-bindings', match: undefined, gpu: { ...sw.gpu!, maxStorageBufferBindingBytes: 100, maxBufferBytes: 100 } } });
    expect(tiny).toThrow(KgenError);
    expect(tiny).toThrow(/gpu\.maxStorageBufferBindingBytes: invalid device profile; expected >= 256 \(minStorageBufferOffsetAlignment/);
  });

  it('the loader\'s createBuffers makes one buffer per weight chunk, none larger than the limits it requests, each holding its bytes of W', async () => {
    // 301 q4_0 rows of 3 blocks (54 bytes): 16254 bytes, bound as 16260 in chunks of 4096.
    const sw = getDevice('swiftshader');
    const small: DeviceProfile = { ...sw, name: 'qa-4k-buffers', match: undefined, gpu: { ...sw.gpu!, maxStorageBufferBindingBytes: 4096, maxBufferBytes: 4096 } };
    const r = emit({ target: 'wgsl', op: 'matmul_q4_0', shape: 'M=2,N=301,K=96', device: small, config: { kernel: 'rows' } });
    const bi = r.rendered.bindingInterface!;
    expect(bi.bindings.filter((b) => b.tensor === 'w').map((b) => [b.offset, b.bytes])).toEqual([[0, 4096], [4096, 4096], [8192, 4096], [12288, 3972]]);
    expect(bi.limits).toMatchObject({ maxBufferSize: 4096, maxStorageBufferBindingSize: 4096 });
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wgsl-chunks-'));
    try {
      writeFileSync(join(dir, 'kernel.js'), r.files['kernel.js']!);
      const loader = (await import(pathToFileURL(join(dir, 'kernel.js')).href)) as {
        createKernel(d: unknown): Promise<{ createBuffers(data: Record<string, ArrayBufferView>): Record<string, { size: number } | { size: number }[]>; bindGroup(b: object): unknown }>;
      };
      const made: { size: number; usage: number; bytes?: Uint8Array }[] = [];
      const entries: { binding: number; resource: { offset: number; size: number } }[][] = [];
      const device = {
        features: new Set(bi.features),
        limits: bi.limits,
        createShaderModule: () => ({}),
        createComputePipelineAsync: async () => ({ getBindGroupLayout: () => ({}) }),
        createBuffer: (d: { size: number; usage: number }) => (made.push({ ...d }), made.at(-1)!),
        createBindGroup: (d: { entries: (typeof entries)[number] }) => entries.push(d.entries),
        queue: { writeBuffer: (b: (typeof made)[number], at: number, bytes: Uint8Array) => ((b.bytes = bytes.slice()), expect(at).toBe(0)) },
      };
      const k = await loader.createKernel(device);
      const w = Uint8Array.from({ length: 16254 }, (_, i) => (i * 7 + 3) & 255);
      const buffers = k.createBuffers({ x: new Float32Array(2 * 96), w });
      expect((buffers.w as { size: number }[]).map((b) => b.size)).toEqual([4096, 4096, 4096, 3972]);
      expect(Math.max(...made.map((b) => b.size))).toBeLessThanOrEqual(bi.limits.maxBufferSize!);
      // Each chunk holds its range of W; the last is padded to whole words (16254 -> 16256).
      const written = (buffers.w as typeof made).map((b) => b.bytes!);
      expect(written.map((b) => b.length)).toEqual([4096, 4096, 4096, 3968]);
      expect(Buffer.concat(written).subarray(0, 16254).equals(Buffer.from(w))).toBe(true);
      expect(buffers.y).toMatchObject({ size: 2 * 301 * 4 });
      // Each chunk is bound whole at offset 0 of its own buffer.
      k.bindGroup(buffers);
      expect(entries[0]!.filter((e) => e.binding >= 1 && e.binding <= 4).map((e) => [e.resource.offset, e.resource.size])).toEqual([[0, 4096], [0, 4096], [0, 4096], [0, 3972]]);
      expect(() => k.createBuffers({ w: new Uint8Array(16261) })).toThrow(/data\.w has 16261 bytes, more than the 16260 its bindings hold/);
      expect(r.files['kernel.d.ts']).toContain('createBuffers(data?: { x?: ArrayBuffer | ArrayBufferView; w?: ArrayBuffer | ArrayBufferView; y?: ArrayBuffer | ArrayBufferView }): KernelBuffers;');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('without the webgpu package (an optional dependency)', () => {
  it('the run program exits "no adapter" naming the package, as the runner reads it to say what to install', async (ctx) => {
    // A copy outside the checkout resolves no node_modules, as after `npm install --omit=optional`
    // (unless a folder above the temp folder holds the package: then there is nothing to test).
    const dir = mkdtempSync(join(tmpdir(), 'kgen-no-webgpu-'));
    const above = (d: string): string[] => (dirname(d) === d ? [d] : [d, ...above(dirname(d))]);
    const found = above(dir).find((d) => existsSync(join(d, 'node_modules', 'webgpu')));
    if (found) ctx.skip(`${found}/node_modules holds webgpu, which the copy would load`);
    const script = join(dir, 'dawn-run.mjs');
    writeFileSync(script, readFileSync(dawnRunScript()));
    const child = await execa(process.execPath, [script, `--exits=${JSON.stringify(DAWN_RUN_EXIT)}`, 'probe'], { reject: false });
    expect(child.exitCode).toBe(DAWN_RUN_EXIT.noAdapter);
    expect(child.stderr).toContain(`${WEBGPU_NOT_LOADED}Cannot find package 'webgpu'`);
  });
});
