import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { emit } from '../src/api/emit.js';
import { buildPackage } from '../src/api/package.js';
import { verify } from '../src/api/verify.js';
import { attentionHarnessLayout, loaderWorkers, WASM_ATTENTION_SLOTS, wasmAttentionWorkspace } from '../src/backends/wasm/attention.js';
import { wasmRunner } from '../src/backends/wasm/runner.js';
import { kvLayoutOf, kvRowStrides } from '../src/ir/attention.js';
import { f16BitsToF32 } from '../src/numeric/half.js';
import { attentionJudge, checkedKvLengths } from '../src/ops/attention.js';
import { opKit } from '../src/ops/index.js';
import { fromDtype } from '../src/ops/tensors.js';
import type { AttentionOp, AttentionShape } from '../src/ir/types.js';
import type { PlanOf } from '../src/plan/types.js';
import { expectMatchesReference } from './helpers.js';

/**
 * WebAssembly attention with a run-time KV length (op.kvLength 'runtime'): Skv is the cache's
 * capacity and each call passes kv_len. verify checks each kernel at the capacity, a ragged middle
 * and the shortest length (kv_len.bin, checkedKvLengths); then a cache whose positions past the
 * length are all 0xFF bytes (NaN values and scales), the loader's refusals, and the package.
 */

const FORMATS = ['f16', 'q8', 'q8_0', 'q4_0'] as const;

const ir = (format: string, causal: boolean, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ kind: 'attention', name: `rt_${format}_${causal ? 'c' : 'n'}`, q: 'f16', o: 'f32', kvCache: format, causal, kvLength: 'runtime', ...extra });

/** Q's values as the reference reads them (f16 bits widened). */
function qValues(bytes: Uint8Array): Float32Array {
  return Float32Array.from(new Uint16Array(bytes.slice().buffer), (b) => f16BitsToF32(b));
}

/**
 * K, V (and a kgen q8 cache's scales) with every row of a position >= kvLen set to 0xFF bytes: f16
 * NaN values, NaN scales of q8 and of the ggml blocks, codes of -1. Only positions the kernel must
 * not read are changed.
 */
function poisoned(op: AttentionOp, shape: AttentionShape, inputs: Record<string, Uint8Array>, kvLen: number): Record<string, Uint8Array> {
  const { headStride, positionStride } = kvRowStrides(kvLayoutOf(op), shape);
  const out = { ...inputs };
  const rows = shape.B * shape.Hkv * shape.Skv;
  for (const name of ['k.bin', 'v.bin', 'k_scales.bin', 'v_scales.bin']) {
    if (!inputs[name]) continue;
    const bytes = inputs[name]!.slice();
    const rowBytes = bytes.length / rows;
    for (let b = 0; b < shape.B; b++) {
      for (let head = 0; head < shape.Hkv; head++) {
        for (let j = kvLen; j < shape.Skv; j++) {
          const row = b * shape.Hkv * shape.Skv + head * headStride + j * positionStride;
          bytes.fill(0xff, row * rowBytes, (row + 1) * rowBytes);
        }
      }
    }
    out[name] = bytes;
  }
  return out;
}

describe.concurrent('WebAssembly attention with a run-time KV length against the f64 reference', () => {
  for (const format of FORMATS) {
    it(`${format} KV: causal and not, Sq 1 and 5, GQA 4 and 5, ragged capacities, KV splits, both row orders, every head in a task`, async () => {
      const cases: [string, boolean, Record<string, unknown>, Record<string, unknown>][] = [
        ['B=1,Hq=8,Hkv=2,Sq=1,Skv=1000,D=64', true, {}, { splits: 4 }],
        ['B=1,Hq=8,Hkv=2,Sq=1,Skv=1000,D=64', false, { kvLayout: 'heads_positions' }, { splits: 8, allHeads: 1 }],
        ['B=2,Hq=5,Hkv=1,Sq=5,Skv=300,D=64', true, {}, { splits: 4 }],
        ['B=2,Hq=5,Hkv=1,Sq=5,Skv=300,D=64', false, {}, { splits: 2, rowGroup: 2 }],
        ['B=1,Hq=10,Hkv=2,Sq=5,Skv=333,D=128', true, { kvLayout: 'heads_positions' }, { splits: 4, allHeads: 1, kvBlock: 32 }],
      ];
      for (const [shape, causal, extra, config] of cases) {
        const label = `${format} ${causal ? 'causal' : 'not causal'} ${shape} ${JSON.stringify(config)}`;
        const r = await verify({ target: 'wasm', ir: ir(format, causal, extra), shape, config });
        expectMatchesReference(r, label);
        const p = r.plan.params as { runtimeKvLength: boolean; kvLenMin: number; splits: number };
        expect(p, label).toMatchObject({ runtimeKvLength: true, kvLenMin: causal ? Number(/Sq=(\d+)/.exec(shape)![1]) : 1 });
        expect(p.splits, label).toBeGreaterThan(1);
      }
    });
  }

  it('on 2 threads (workers, a scratch slot each), every length of kv_len.bin', async () => {
    const runner = wasmRunner('auto', { kind: 'tasks', checkThreads: 2, maxThreads: WASM_ATTENTION_SLOTS });
    const cases = [
      { format: 'q4_0', shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=1000,D=64', causal: true, config: { splits: 8 } },
      { format: 'f16', shape: 'B=1,Hq=5,Hkv=1,Sq=5,Skv=300,D=64', causal: true, config: { splits: 4 } },
      { format: 'q8', shape: 'B=2,Hq=4,Hkv=1,Sq=5,Skv=77,D=64', causal: false, config: { splits: 2 } },
    ];
    for (const c of cases) {
      const e = emit({ target: 'wasm', ir: { ...ir(c.format, c.causal), o: 'f16' }, shape: c.shape, config: c.config });
      const data = opKit('attention').testData(e.plan.op, e.plan.shape, 7);
      expect(checkedKvLengths(e.plan.op as AttentionOp, e.plan.shape as AttentionShape)).toHaveLength(3);
      const build = await runner.build(e.plan, e.rendered);
      if (build.status !== 'ok') throw new Error(build.detail);
      try {
        const run = await runner.execute(build, data.inputs);
        if (run.status !== 'ok') throw new Error(`${c.format} ${c.shape}: ${run.status} ${'detail' in run ? run.detail : ''}`);
        const { ok, comparison } = data.check(run.output, e.plan.tolerance);
        expect(ok, `${c.format} ${c.shape}: nmse ${comparison.nmse}`).toBe(true);
      } finally {
        build.dispose();
      }
    }
  });
});

describe.concurrent('WebAssembly attention with a run-time KV length: what lies past kv_len never reaches the output', () => {
  // Every position >= L is 0xFF bytes: an f16 NaN, a NaN scale (q8, q8_0, q4_0). A kernel that loads
  // such a row and multiplies it by a zero probability (NaN * 0 = NaN), or reads a tile past L,
  // gives NaN outputs; the reference at L reads only the first L positions.
  for (const [format, causal] of FORMATS.flatMap((f) => [[f, true], [f, false]] as const)) {
    it(`${format} KV, ${causal ? 'causal' : 'not causal'}, 5 queries, lengths ending inside a tile and a split, 1 and 2 threads`, async () => {
      const shape = 'B=1,Hq=8,Hkv=2,Sq=5,Skv=300,D=64';
      const e = emit({ target: 'wasm', ir: ir(format, causal), shape, config: { splits: 4, kvBlock: 32 } });
      const op = e.plan.op as AttentionOp;
      const s = e.plan.shape as AttentionShape;
      const data = opKit('attention').testData(op, s, 13);
      const build = await wasmRunner('auto', { kind: 'tasks', checkThreads: 1, maxThreads: WASM_ATTENTION_SLOTS }).build(e.plan, e.rendered);
      if (build.status !== 'ok') throw new Error(build.detail);
      try {
        for (const [kvLen, threads] of [[77, 1], [5, 1], [150, 2], [299, 2]] as const) {
          const inputs: Record<string, Uint8Array> = { ...poisoned(op, s, data.inputs, kvLen), 'kv_len.bin': new Uint8Array(Int32Array.of(kvLen).buffer) };
          const stored = (name: string) => ({ data: inputs[`${name}.bin`]!, scales: inputs[`${name}_scales.bin`] });
          const judge = attentionJudge(op, s, { q: qValues(inputs['q.bin']!), k: stored('k'), v: stored('v') }, [kvLen]);
          const runner = wasmRunner('auto', { kind: 'tasks', checkThreads: threads, maxThreads: WASM_ATTENTION_SLOTS });
          const run = await runner.execute(build, inputs);
          if (run.status !== 'ok') throw new Error(`kv_len ${kvLen}: ${run.status} ${'detail' in run ? run.detail : ''}`);
          const { ok, comparison } = judge.check(fromDtype(run.output, op.o), e.plan.tolerance);
          expect(comparison.nonFinite, `kv_len ${kvLen}, ${threads} threads`).toBe(0);
          expect(ok, `kv_len ${kvLen}, ${threads} threads: nmse ${comparison.nmse}`).toBe(true);
        }
      } finally {
        build.dispose();
      }
    });
  }
});

/** Writes an emitted kernel's files and a host script into a temporary folder, runs the host in Node and returns its stdout. */
async function runHost(files: Readonly<Record<string, string | Uint8Array>>, host: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-kvlen-'));
  try {
    for (const [name, content] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      writeFileSync(join(dir, name), content);
    }
    writeFileSync(join(dir, 'host.mjs'), host);
    const r = await execa(process.execPath, [join(dir, 'host.mjs')], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    return r.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('WebAssembly attention with a run-time KV length: the output', () => {
  it('the loader refuses kvLen 0, Skv + 1 and non-integers with a RangeError naming the range (one thread and threaded), computing nothing; the exports return -1', async () => {
    const shape = 'B=1,Hq=8,Hkv=2,Sq=5,Skv=300,D=64';
    const e = emit({ target: 'wasm', ir: ir('q8_0', true), shape, config: { splits: 2 } });
    const built = await e.rendered.binaries!();
    if ('error' in built) throw new Error(built.error);
    // The raw exports: -1 outside [Sq, Skv], O untouched.
    const memory = new WebAssembly.Memory({ initial: 64 });
    const instance = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(built.files['kernel.wasm']!)), { env: { memory } });
    const x = instance.exports as Record<string, (...args: number[]) => number>;
    const oAt = 1 << 20;
    const bytes = new Uint8Array(memory.buffer);
    bytes.fill(0xab, oAt, oAt + 4096);
    for (const kvLen of [0, 4, 301, -1]) {
      expect(x.kgen_rt_q8_0_c!(16, 64, 0, 64, 0, oAt, 2 << 20, kvLen), `run at ${kvLen}`).toBe(-1);
      expect(x.kgen_rt_q8_0_c_tasks!(2 << 20, 64, 0, 64, 0, oAt, 0, 1 << 20, 0, kvLen), `tasks at ${kvLen}`).toBe(-1);
    }
    expect(bytes.subarray(oAt, oAt + 4096).every((b) => b === 0xab)).toBe(true);
    expect(e.manifest.abi.find((a) => a.symbol === 'kgen_rt_q8_0_c')).toMatchObject({ signature: '(q, k, k_scales, v, v_scales, o, workspace, kv_len: i32) -> i32' });
    expect(e.manifest.abi.find((a) => a.symbol === 'kgen_rt_q8_0_c_tasks')!.doc).toMatch(/kv_len: the positions read \(the first kv_len of each head's 300\), 5\.\.300, .*-1 with nothing written/);
    expect(e.files['kernel.d.mts']).toMatch(/kvLenRange: \{\s*readonly min: 5;\s*readonly max: 300;?\s*\}/);
    const out = await runHost(
      { ...e.files, ...built.files },
      `import { loadKernel, loadThreaded, kvLenRange, tasks } from './kernel.mjs';
      const said = [];
      const tryIt = async (what, f) => { try { await f(); said.push(what + ': ok'); } catch (e) { said.push(what + ': ' + e.constructor.name + ': ' + e.message); } };
      const one = await loadKernel({ memory: new WebAssembly.Memory({ initial: 64 }) });
      for (const kvLen of [0, kvLenRange.max + 1, 7.5, 2 ** 32 + 7, undefined, '64', 64n]) await tryIt('run ' + kvLen, () => one.run(16, 64, 0, 64, 0, 1 << 20, 2 << 20, kvLen));
      await tryIt('tasks 0', () => one.tasks(2 << 20, 64, 0, 64, 0, 1 << 20, 0, tasks, 0, 0));
      const threaded = await loadThreaded({ memory: new WebAssembly.Memory({ initial: 256, maximum: 256, shared: true }), threads: 2 });
      await tryIt('threaded run 0', () => threaded.run(16, 64, 0, 64, 0, 1 << 20, 2 << 20, 0));
      await tryIt('threaded tasks 301', () => threaded.tasks(2 << 20, 64, 0, 64, 0, 1 << 20, 0, tasks, 301));
      await tryIt('threaded run 300', () => threaded.run(16, 64, 0, 64, 0, 1 << 20, 2 << 20, 300));
      threaded.close();
      console.log(JSON.stringify(said));
`,
    );
    const said = JSON.parse(out) as string[];
    const refusal = (n: string) => new RegExp(`RangeError: kgen_rt_q8_0_c: kvLen must be an integer in \\[5, 300\\] \\(the positions of the KV cache a call reads, at least Sq = 5 .*\\), not ${n}: pass the number of positions filled so far; a longer sequence needs a kernel emitted with a larger Skv`);
    expect(said[0]).toMatch(refusal('0'));
    expect(said[1]).toMatch(refusal('301'));
    expect(said[2]).toMatch(refusal('7.5'));
    expect(said[3]).toMatch(refusal(String(2 ** 32 + 7)));
    expect(said[4]).toMatch(refusal('undefined'));
    // A string or a BigInt holding a valid length is named as such, not shown as the number it holds.
    expect(said[5]).toMatch(refusal('"64" \\(a string\\)'));
    expect(said[6]).toMatch(refusal('64n \\(a BigInt\\)'));
    expect(said[7]).toMatch(refusal('0'));
    expect(said[8]).toMatch(refusal('0'));
    expect(said[9]).toMatch(refusal('301'));
    expect(said[10]).toBe('threaded run 300: ok');
  });

  it('each split takes whole tiles of the call\'s keys (splitKeysUnit), the later splits none and the merge leaves them out: exact at kv_len 1, inside the first tile, at and past its end, at and past splits x kvBlock', async () => {
    const e = emit({ target: 'wasm', ir: ir('q8', true), shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=300,D=64', config: { splits: 8, kvBlock: 32 } });
    const plan = e.plan as PlanOf<'cpu-attention'>;
    const p = plan.params;
    expect(p.splitKeysUnit).toBe(32);
    expect(e.plan.loops.join('\n')).toContain('split of ceil(kv_len / 8) rounded up to a multiple of 32 keys');
    // With splits outermost (positions x heads rows) every split keeps its share.
    expect(emit({ target: 'wasm', ir: ir('q8', true, { kvLayout: 'positions_heads' }), shape: 'B=1,Hq=4,Hkv=2,Sq=1,Skv=300,D=64', config: { splits: 8, kvBlock: 32, allHeads: 1 } }).plan.params).toMatchObject({ splitKeysUnit: 1 });
    const op = e.plan.op as AttentionOp;
    const s = e.plan.shape as AttentionShape;
    const built = await e.rendered.binaries!();
    if ('error' in built) throw new Error(built.error);
    const { sizes, at, end } = attentionHarnessLayout(plan);
    const memory = new WebAssembly.Memory({ initial: Math.ceil(end / 65536) });
    const x = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(built.files['kernel.wasm']!)), { env: { memory } }).exports as Record<string, (...args: number[]) => number>;
    const data = opKit('attention').testData(op, s, 3).inputs;
    for (const name of ['q', 'k', 'v', 'k_scales', 'v_scales'] as const) new Uint8Array(memory.buffer).set(data[`${name}.bin`] ?? new Uint8Array(), at[name]);
    const stored = (name: string) => ({ data: data[`${name}.bin`]!, scales: data[`${name}_scales.bin`] });
    // Row 0's partial max in each split (the task of split sp is sp: one KV head, one query tile).
    const partialMax = (sp: number) => new Float32Array(memory.buffer, at.workspace + wasmAttentionWorkspace(plan).partialsOffset + sp * p.taskRowsPadded * (p.D + 2) * 4, 1)[0]!;
    for (const kvLen of [1, 20, 32, 33, 100, 256, 257, 300]) {
      expect(x.kgen_rt_q8_c!(at.q, at.k, at.k_scales, at.v, at.v_scales, at.o, at.workspace, kvLen), `kv_len ${kvLen}`).toBe(0);
      const withKeys = Array.from({ length: p.splits }, (_, sp) => partialMax(sp)).filter((m) => m !== -Infinity).length;
      expect(withKeys, `splits with keys at kv_len ${kvLen}`).toBe(Math.ceil(kvLen / (Math.ceil(Math.ceil(kvLen / p.splits) / 32) * 32)));
      const judge = attentionJudge(op, s, { q: qValues(data['q.bin']!), k: stored('k'), v: stored('v') }, [kvLen]);
      const { ok, comparison } = judge.check(fromDtype(new Uint8Array(memory.buffer, at.o, sizes.o), op.o), e.plan.tolerance);
      expect(ok, `kv_len ${kvLen}: nmse ${comparison.nmse}`).toBe(true);
    }
  });

  it('kernel.d.mts types kvLen on tasks and run; a fixed-length kernel takes none', async () => {
    const e = emit({ target: 'wasm', ir: ir('f16', false), shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=100,D=64', config: { splits: 2 } });
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-kvlen-types-'));
    try {
      for (const [name, text] of Object.entries(e.files)) writeFileSync(join(dir, name), text);
      writeFileSync(join(dir, 'use.mts'), `import { loadKernel, loadThreaded, kvLenRange, sizes, tasks, type Kernel, type ThreadedKernel } from './kernel.mjs';
        const one: Kernel = await loadKernel({ memory: new WebAssembly.Memory({ initial: 1 }) });
        one.tasks(0, 16, sizes.k_scales, 32, 0, 48, 0, tasks, 0, kvLenRange.max);
        one.run(0, 16, 0, 32, 0, 48, 64, kvLenRange.min);
        const k: ThreadedKernel = await loadThreaded({ memory: new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true }), threads: 2, spread: 'always' });
        // @ts-expect-error: spread is 'auto' or 'always'
        await loadThreaded({ memory: new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true }), threads: 2, spread: 'never' });
        await k.tasks(0, 16, sizes.k_scales, 32, 0, 48, 0, tasks, 42);
        await k.run(0, 16, 0, 32, 0, 48, 64, 42);
        // @ts-expect-error: the length is required
        await k.run(0, 16, 0, 32, 0, 48, 64);\n`);
      const tsc = await execa(process.execPath, [join(process.cwd(), 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', join(process.cwd(), 'node_modules/@types'), join(dir, 'use.mts')], { reject: false });
      expect(tsc.exitCode, tsc.stdout).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const fixed = emit({ target: 'wasm', ir: { ...ir('f16', false), kvLength: 'fixed' }, shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=100,D=64', config: { splits: 2 } });
    expect(fixed.files['kernel.d.mts']).not.toMatch(/kvLen/);
    expect(fixed.files['kernel.mjs']).not.toMatch(/kvLen/);
    expect(fixed.files['kernel.wat']).not.toMatch(/kvlen/);
  });

  it('a package: the usage snippet passes kvLen; loadAll on 2 threads computes the reference at a length over a poisoned cache', async () => {
    const shape = 'B=1,Hq=8,Hkv=2,Sq=5,Skv=300,D=64';
    const pkg = await buildPackage({ command: 'test', kernels: [{ target: 'wasm', ir: ir('q8', true), shape, name: 'attn', config: { splits: 4 } }] });
    const readme = pkg.files['README.md'] as string;
    expect(/```js\n([\s\S]*?)```/.exec(readme)![1]).toMatch(/kernels\.attn\.run\(at\.q, at\.k, at\.k_scales, at\.v, at\.v_scales, at\.o, at\.workspace, kvLen\)/);
    const e = emit({ target: 'wasm', ir: ir('q8', true), shape, config: { splits: 4 } });
    const op = e.plan.op as AttentionOp;
    const s = e.plan.shape as AttentionShape;
    const kvLen = 123;
    const inputs = poisoned(op, s, opKit('attention').testData(op, s, 5).inputs, kvLen);
    const out = await runHost(
      pkg.files,
      `import { kernels as modules, layout, loadAll } from './index.mjs';
      const inputs = ${JSON.stringify(Object.fromEntries(Object.entries(inputs).map(([n, b]) => [n.replace('.bin', ''), Buffer.from(b).toString('base64')])))};
      const { memory, kernels, close } = await loadAll({ threads: 2 });
      const at = layout.kernels.attn;
      for (const [b, text] of Object.entries(inputs)) new Uint8Array(memory.buffer, at[b], modules.attn.sizes[b]).set(Buffer.from(text, 'base64'));
      await kernels.attn.run(at.q, at.k, at.k_scales, at.v, at.v_scales, at.o, at.workspace, ${kvLen});
      console.log(Buffer.from(new Uint8Array(memory.buffer, at.o, modules.attn.sizes.o)).toString('base64'));
      close();
`,
    );
    const stored = (name: string) => ({ data: inputs[`${name}.bin`]!, scales: inputs[`${name}_scales.bin`] });
    const judge = attentionJudge(op, s, { q: qValues(inputs['q.bin']!), k: stored('k'), v: stored('v') }, [kvLen]);
    const { ok, comparison } = judge.check(fromDtype(new Uint8Array(Buffer.from(out.trim(), 'base64')), op.o), e.plan.tolerance);
    expect(comparison.nonFinite).toBe(0);
    expect(ok, `nmse ${comparison.nmse}`).toBe(true);
  });

  it('loadThreaded runs a call too short to pay for a worker round on this thread alone (launch.workers), matching the reference either side of the threshold; spread always posts every range', async () => {
    const shape = 'B=1,Hq=32,Hkv=8,Sq=1,Skv=1000,D=128';
    const e = emit({ target: 'wasm', ir: ir('q4_0', false), shape, config: { splits: 8 } });
    const workers = e.manifest.launch.workers!;
    const from = workers.tasksFromKvLen[2]!;
    // The threshold lies inside the kernel's range, so both sides are checked; the merge stays here on 2 threads.
    expect(from).toBeGreaterThan(2);
    expect(from).toBeLessThan(1000);
    expect(workers.mergeFromThreads ?? Infinity).toBeGreaterThan(2);
    expect(e.manifest.launch.workers).toEqual(loaderWorkers(e.plan.params as Parameters<typeof loaderWorkers>[0]));
    const built = await e.rendered.binaries!();
    if ('error' in built) throw new Error(built.error);
    const op = e.plan.op as AttentionOp;
    const s = e.plan.shape as AttentionShape;
    const inputs = opKit('attention').testData(op, s, 21).inputs;
    const lengths = [1, from - 1, from, 1000];
    const out = await runHost(
      { ...e.files, ...built.files },
      `import { loadThreaded, sizes } from './kernel.mjs';
      const inputs = ${JSON.stringify(Object.fromEntries(Object.entries(inputs).map(([n, b]) => [n.replace('.bin', ''), Buffer.from(b).toString('base64')])))};
      const at = {};
      let end = 64;
      for (const [name, size] of Object.entries(sizes)) { at[name] = end; end += Math.ceil(size / 64) * 64 + 64; }
      const pages = Math.ceil(end / 65536);
      const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
      for (const [b, text] of Object.entries(inputs)) new Uint8Array(memory.buffer, at[b], sizes[b]).set(Buffer.from(text, 'base64'));
      // Every share posted to a worker wakes it with Atomics.notify: counted per call.
      const notify = Atomics.notify;
      let posts = 0;
      Atomics.notify = (...args) => (posts++, notify(...args));
      const said = [];
      for (const spread of ['auto', 'always']) {
        const k = await loadThreaded({ memory, threads: 2, spread });
        for (const kvLen of ${JSON.stringify(lengths)}) {
          new Uint8Array(memory.buffer, at.o, sizes.o).fill(0xff);
          posts = 0;
          await k.run(at.q, at.k, at.k_scales, at.v, at.v_scales, at.o, at.workspace, kvLen);
          said.push({ spread, kvLen, posts, o: Buffer.from(new Uint8Array(memory.buffer, at.o, sizes.o)).toString('base64') });
        }
        k.close();
      }
      try { await loadThreaded({ memory, threads: 2, spread: 'never' }); } catch (e) { said.push(e.constructor.name + ': ' + e.message); }
      console.log(JSON.stringify(said));
`,
    );
    const said = JSON.parse(out) as [...{ spread: string; kvLen: number; posts: number; o: string }[], string];
    const stored = (name: string) => ({ data: inputs[`${name}.bin`]!, scales: inputs[`${name}_scales.bin`] });
    for (const r of said.slice(0, -1) as { spread: string; kvLen: number; posts: number; o: string }[]) {
      const label = `spread ${r.spread}, kv_len ${r.kvLen}`;
      // auto: the tasks' round only from the threshold on; always: the tasks' and the merge's rounds.
      expect(r.posts, label).toBe(r.spread === 'always' ? 2 : r.kvLen >= from ? 1 : 0);
      const judge = attentionJudge(op, s, { q: qValues(inputs['q.bin']!), k: stored('k'), v: stored('v') }, [r.kvLen]);
      const { ok, comparison } = judge.check(fromDtype(new Uint8Array(Buffer.from(r.o, 'base64')), op.o), e.plan.tolerance);
      expect(comparison.nonFinite, label).toBe(0);
      expect(ok, `${label}: nmse ${comparison.nmse}`).toBe(true);
    }
    expect(said.at(-1)).toBe("TypeError: kgen_rt_q4_0_n: spread must be 'auto' or 'always', not never");
  });

  it('checkSupport: every target takes a run-time KV length', () => {
    const shape = 'B=1,Hq=8,Hkv=2,Sq=5,Skv=300,D=64';
    // A named device for C (its default, host, follows the machine: scripts/test-hosts.sh runs this file once).
    for (const target of ['wasm', 'c', 'cuda', 'wgsl']) expect(emit({ target, ir: ir('f16', true), shape, ...(target === 'c' ? { device: 'epyc-9654' } : {}) }).plan.op).toMatchObject({ kvLength: 'runtime' });
  });
});
