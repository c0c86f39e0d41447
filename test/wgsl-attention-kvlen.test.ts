import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { buildPackage } from '../src/api/package.js';
import { verify } from '../src/api/verify.js';
import type { AttentionOp, AttentionShape } from '../src/ir/types.js';
import { checkedKvLengths } from '../src/ops/attention.js';
import { dawnSkipReason, expectMatchesReference } from './helpers.js';
import { expectPoisonNeverRead } from './kvlen-helpers.js';

/**
 * WGSL attention with a run-time KV length (op.kvLength 'runtime'): Skv is the cache's capacity,
 * each call reads the first kv_len positions of each head's, the length reaching the shader in a
 * uniform buffer the loader (kernel.js) owns and writes. verify runs each kernel on Dawn +
 * SwiftShader at three lengths (`checkedKvLengths`: the capacity, a ragged one, the shortest), each
 * against the f64 reference at that length. The poison test fills every position past the length
 * with 0xff bytes (NaN f16 values and scales): a kernel that loads them into the output fails it.
 */
const noDawn = dawnSkipReason('WGSL attention with a run-time KV length');
const FORMATS = ['f16', 'q8', 'q8_0', 'q4_0'] as const;
const HP = 'heads_positions';
const PH = 'positions_heads';

const ir = (kvCache: string, causal: boolean, extra: Record<string, unknown> = {}) => ({
  kind: 'attention', name: `rt_${kvCache}_${causal ? 'c' : 'n'}`, q: 'f16', o: 'f16', kvCache, causal, kvLength: 'runtime', ...extra,
});

/** A recording stand-in for a GPUDevice: enough for the loader's createKernel and run. */
function fakeDevice() {
  const calls: { op: string; args: unknown[] }[] = [];
  const record = (op: string) => (...args: unknown[]) => {
    calls.push({ op, args });
    return { op };
  };
  const device = {
    features: new Set<string>(),
    limits: new Proxy({}, { get: () => 1 << 30 }),
    createShaderModule: record('createShaderModule'),
    createComputePipelineAsync: async () => ({ getBindGroupLayout: () => ({}) }),
    createBuffer: (d: { size: number; usage: number }) => (calls.push({ op: 'createBuffer', args: [d] }), { ...d }),
    createBindGroup: record('createBindGroup'),
    createCommandEncoder: () => {
      calls.push({ op: 'createCommandEncoder', args: [] });
      return {
        beginComputePass: () => ({ setPipeline: record('setPipeline'), setBindGroup: record('setBindGroup'), dispatchWorkgroups: record('dispatchWorkgroups'), end: () => undefined }),
        finish: () => ({}),
      };
    },
    queue: { writeBuffer: record('writeBuffer'), submit: record('submit') },
  };
  return { device, calls };
}

describe('WGSL attention with a run-time KV length: plans, manifests and the loader', () => {
  it('WGSL takes the op: a uniform kv_len binding after the storage ones, read by the first pass only; the range in the manifest and the loader types', () => {
    const { plan, rendered, manifest } = emit({ target: 'wgsl', ir: ir('q8', true), shape: 'B=1,Hq=8,Hkv=2,Sq=5,Skv=300,D=64', device: 'webgpu', config: { kvSplit: 4, kvBlock: 16 } });
    expect(plan.variant).toBe('splitk_decode');
    expect(plan.params).toMatchObject({ runtimeKvLength: true, kvLenMin: 5 });
    const bi = manifest.bindingInterface!;
    expect(bi.bindings.map((b) => b.tensor)).toEqual(['q', 'k', 'k_scales', 'v', 'v_scales', 'o', 'workspace', 'kv_len']);
    expect(bi.bindings.at(-1)).toEqual({ binding: 7, name: 'kg_len', tensor: 'kv_len', access: 'uniform', offset: 0, bytes: 4 });
    expect(bi.kvLength).toEqual({ min: 5, max: 300, binding: 7 });
    expect(manifest.kvLength).toEqual({ min: 5, max: 300 });
    expect(bi.passes.map((p) => p.bindings)).toEqual([[0, 1, 2, 3, 4, 6, 7], [5, 6]]);
    // The uniform is no storage buffer: the limits count the seven storage bindings.
    expect(bi.limits.maxStorageBuffersPerShaderStage).toBe(7);
    const wgsl = rendered.files['kernel.wgsl']!;
    expect(wgsl).toMatch(/@group\(0\) @binding\(7\) var<uniform> kg_len: KgLen;/);
    expect(wgsl).toContain('(i32(kg_kv_len()) - i32(KG_SQ))');
    expect(wgsl).not.toContain('KG_CAUSAL_OFFSET');
    const dts = rendered.files['kernel.d.ts']!;
    expect(dts).toMatch(/run\(buffers: KernelBuffers, options: \{ kvLen: number \}\): void;/);
    expect(dts).toMatch(/kvLength: \{ "min": 5, "max": 300, "binding": 7 \};/);
    expect(dts).toMatch(/export declare function checkKvLen\(kvLen: number\): void;/);
    expect(dts).toMatch(/kv_len\?: GPUBuffer;/);
    const create = (manifest.abi as { symbol: string; doc: string }[]).find((a) => a.symbol === 'createKernel')!;
    expect(create.doc).toMatch(/\{ kvLen \}\).*5\.\.300.*RangeError/);
    // The same op with a fixed length: no uniform, the causal offset a constant.
    const fixed = emit({ target: 'wgsl', ir: { ...ir('q8', true), kvLength: 'fixed' }, shape: 'B=1,Hq=8,Hkv=2,Sq=5,Skv=300,D=64', device: 'webgpu', config: { kvSplit: 4, kvBlock: 16 } });
    expect(fixed.rendered.files['kernel.wgsl']).not.toMatch(/kv_len|uniform/);
    expect(fixed.rendered.files['kernel.wgsl']).toContain('const KG_CAUSAL_OFFSET: i32 = 295i;');
    expect(fixed.rendered.files['kernel.js']).not.toMatch(/kvLen/);
    expect(fixed.manifest.bindingInterface!.kvLength).toBeUndefined();
  });

  it('prefill: the causal end of each query tile and the last key follow kv_len', () => {
    const { plan, rendered } = emit({ target: 'wgsl', ir: ir('q4_0', true), shape: 'B=1,Hq=4,Hkv=1,Sq=64,Skv=130,D=64', device: 'webgpu', config: { br: 16, bc: 16 } });
    expect(plan.variant).toBe('flash_prefill');
    const wgsl = rendered.files['kernel.wgsl']!;
    expect(wgsl).toContain('let k_end = u32(min(i32(kg_kv_len()), kg_last_key(');
    expect(rendered.bindingInterface!.passes[0]!.bindings).toContain(rendered.bindingInterface!.kvLength!.binding);
  });

  it('the loader: run throws a RangeError naming kvLen and the range for a length outside [min, Skv] and dispatches nothing; a length inside is written, then both passes dispatched', async () => {
    const { rendered } = emit({ target: 'wgsl', ir: ir('q8_0', true), shape: 'B=1,Hq=8,Hkv=2,Sq=3,Skv=64,D=64', device: 'webgpu' });
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wgsl-kvlen-'));
    try {
      writeFileSync(join(dir, 'kernel.js'), rendered.files['kernel.js']!);
      const loader = (await import(pathToFileURL(join(dir, 'kernel.js')).href)) as {
        kernel: { bindings: { tensor: string; bytes: number; access: string }[] };
        checkKvLen(n: unknown): void;
        createKernel(d: unknown): Promise<{ run(b: object, o?: object): void; setKvLen(n: unknown): void; kvLenBuffer(n: unknown): { size: number } }>;
      };
      const { device, calls } = fakeDevice();
      const kernel = await loader.createKernel(device);
      const buffers = Object.fromEntries(loader.kernel.bindings.filter((b) => b.access !== 'uniform').map((b) => [b.tensor, { size: b.bytes, usage: 0x80 }]));
      const before = calls.length;
      const shown = (kvLen: unknown) => (kvLen === '40' ? '"40" \\(a string\\)' : kvLen === 40n ? '40n \\(a BigInt\\)' : String(kvLen));
      for (const kvLen of [0, 2, 65, -1, 2.5, Number.NaN, undefined, '40', 40n]) {
        let err: unknown;
        try {
          kernel.run(buffers, { kvLen });
        } catch (e) {
          err = e;
        }
        expect(err, String(kvLen)).toBeInstanceOf(RangeError);
        expect((err as Error).message).toMatch(new RegExp(`kvLen ${shown(kvLen)} is not an integer in \\[3, 64\\].*an integer from 3 to 64`));
        expect(() => kernel.setKvLen(kvLen)).toThrow(RangeError);
        expect(() => kernel.kvLenBuffer(kvLen)).toThrow(RangeError);
        expect(() => loader.checkKvLen(kvLen)).toThrow(RangeError);
      }
      // The length given bare instead of as an option: a TypeError saying how to pass it.
      expect(() => kernel.run(buffers, 40 as unknown as object)).toThrow(/run\(buffers, \{ kvLen: 40 \}\)/);
      expect(calls.slice(before), 'nothing written, bound or dispatched').toEqual([]);
      kernel.run(buffers, { kvLen: 40 });
      const after = calls.slice(before);
      expect(after[0]!.op).toBe('writeBuffer');
      expect([...(after[0]!.args[2] as Uint32Array)]).toEqual([40]);
      expect(after.filter((c) => c.op === 'dispatchWorkgroups')).toHaveLength(2);
      expect(after.at(-1)!.op).toBe('submit');
      expect(kernel.kvLenBuffer(3).size).toBe(4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a package led by a run-time-length kernel shows run(buffers, { kvLen }) in its usage, no kv_len buffer', async () => {
    const pkg = await buildPackage({ command: 'test', kernels: [{ target: 'wgsl', ir: ir('q4_0', false), shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=77,D=64', device: 'webgpu', name: 'decode' }] });
    const readme = pkg.files['README.md'] as string;
    expect(readme).toContain('created.decode.run({ q: qBuffer, k: kBuffer, v: vBuffer, o: oBuffer, workspace: workspaceBuffer }, { kvLen });');
    expect(readme).toMatch(/kvLen: the cached positions to read \(1\.\.77/);
  });
});

describe.skipIf(noDawn !== undefined)('WGSL attention with a run-time KV length on Dawn + SwiftShader: three lengths each against the reference', () => {
  // Decode (Sq 1 and 5) in several splits, and prefill (Sq 64): causal and not, both row orders
  // (swapped between formats), Skv a multiple of no tile.
  for (const [i, format] of FORMATS.entries()) {
    const [a, b] = i % 2 === 0 ? [HP, PH] : [PH, HP];
    it(`${format} KV: decode in splits (Sq 1 and 5), prefill (Sq 64); causal and not; ${a} and ${b}`, async () => {
      const cases: [ReturnType<typeof ir>, string, string, Record<string, number>][] = [
        [ir(format, true, { kvLayout: a }), 'B=1,Hq=4,Hkv=1,Sq=1,Skv=333,D=64', 'splitk_decode', { kvSplit: 4, kvBlock: 16 }],
        [ir(format, false, { kvLayout: b, o: 'f32' }), 'B=2,Hq=8,Hkv=2,Sq=5,Skv=200,D=64', 'splitk_decode', { kvSplit: 8, kvBlock: 16 }],
        [ir(format, true, { kvLayout: b }), 'B=1,Hq=4,Hkv=2,Sq=64,Skv=130,D=64', 'flash_prefill', { br: 16, bc: 16 }],
        [ir(format, false, { kvLayout: a }), 'B=1,Hq=2,Hkv=1,Sq=64,Skv=101,D=64', 'flash_prefill', { br: 32, bc: 8 }],
      ];
      for (const [op, shape, variant, config] of cases) {
        const r = await verify({ target: 'wgsl', ir: op, shape, device: 'swiftshader', config });
        const label = `${op.name} ${(op as { kvLayout?: string }).kvLayout} ${shape} ${JSON.stringify(config)} at kv_len ${checkedKvLengths(r.plan.op as AttentionOp, r.plan.shape as AttentionShape).join(', ')}`;
        expectMatchesReference(r, label);
        expect(r.plan.variant, label).toBe(variant);
      }
    }, 240_000);
  }

  it('positions past kv_len full of NaN bytes (values and scales) never reach the output; every format, empty splits, both row orders, prefill', async () => {
    const cases: [string, string, Record<string, unknown>, Record<string, number>, number][] = [
      // 13 of 600 keys: three of the four splits are empty.
      ['f16', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=600,D=64', { kvLayout: HP }, { kvSplit: 4, kvBlock: 16 }, 13],
      // 5 splits of 64 at the capacity; 256 keys take 4 splits of 64 (a split count from kvSplit alone would be 8).
      ['q8', 'B=1,Hq=4,Hkv=1,Sq=1,Skv=257,D=64', { kvLayout: PH }, { kvSplit: 8, kvBlock: 32 }, 256],
      ['q8_0', 'B=1,Hq=8,Hkv=2,Sq=5,Skv=400,D=64', { kvLayout: PH }, { kvSplit: 4, kvBlock: 16 }, 77],
      ['q4_0', 'B=2,Hq=4,Hkv=2,Sq=1,Skv=300,D=64', { kvLayout: HP }, { kvSplit: 4, kvBlock: 16 }, 129],
      ['q4_0', 'B=1,Hq=4,Hkv=1,Sq=64,Skv=200,D=64', { kvLayout: PH }, { br: 16, bc: 16 }, 70],
    ];
    for (const [format, shapeText, extra, config, length] of cases) {
      const label = `${format} ${shapeText} ${JSON.stringify(extra)} ${JSON.stringify(config)} kv_len ${length}`;
      const { plan, rendered } = emit({ target: 'wgsl', ir: ir(format, true, extra), shape: shapeText, device: 'swiftshader', config });
      await expectPoisonNeverRead(plan, rendered, length, label, { seed: 5 });
    }
  }, 300_000);
});
