import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { emit } from '../src/api/emit.js';
import { buildPackage } from '../src/api/package.js';
import { verify } from '../src/api/verify.js';
import { renderWasmAttention, WASM_ATTENTION_SLOTS } from '../src/backends/wasm/attention.js';
import { InternalError, KgenError } from '../src/errors.js';
import { commentText } from '../src/render/comment-text.js';
import { TASK_STACK_BUFFER } from '../src/plan/cpu-attention.js';
import { wasmRunner } from '../src/backends/wasm/runner.js';
import { f16BitsToF32 } from '../src/numeric/half.js';
import { opKit } from '../src/ops/index.js';
import { referenceAttention } from '../src/reference/attention.js';
import type { AttentionOp, AttentionShape } from '../src/ir/types.js';
import { ATTENTION_MATRIX, attentionMatrixCase, expectMatchesReference, expectMatrixPlan, threadedLoaderLifetime, writeEmittedWasm } from './helpers.js';

/**
 * WebAssembly attention kernels in Node against the f64 reference, which decodes the KV bytes
 * itself. Tolerance: the plan's (f32 arithmetic; f16 Q or O add f16 rounding); the kernels land
 * near 1e-13 NMSE, so a wrong mask, merge, decode or stride fails by orders of magnitude. The
 * cases: issue 16's verification matrix (ATTENTION_MATRIX in helpers.ts), then what it leaves out.
 */

const FORMATS = ['f16', 'q8', 'q8_0', 'q4_0'] as const;

const ir = (format: string, causal: boolean, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ kind: 'attention', name: `att_${format}_${causal ? 'c' : 'n'}`, q: 'f16', o: 'f32', kvCache: format, causal, ...extra });

async function expectVerified(ir: Record<string, unknown>, shape: string, config: Record<string, unknown>) {
  const r = await verify({ target: 'wasm', ir, shape, config });
  expectMatchesReference(r, `${JSON.stringify(ir)} ${shape}`);
  return r.plan;
}

describe.concurrent('WebAssembly attention against the f64 reference', () => {
  // Issue 16's matrix (helpers.ts), the four rows of each format a test.
  for (const format of FORMATS) {
    it(`${format} KV: the verification matrix (Sq 1/5/64, GQA 1/4/5/8, causal and not, D 64 to 256, both row orders; one thread)`, async () => {
      for (const row of ATTENTION_MATRIX.filter((r) => r.kvCache === format)) {
        const c = attentionMatrixCase(row);
        const plan = await expectVerified(c.ir, c.shape, row.cpu ?? {});
        expectMatrixPlan(row, plan, c.label);
      }
    });
  }

  it('f16 cache at D = 36 (not a multiple of 8: the scores and P.V take 4 values a step)', async () => {
    await expectVerified(ir('f16', true), 'B=1,Hq=4,Hkv=2,Sq=3,Skv=145,D=36', { splits: 2 });
  });

  it('f32 Q and O, an explicit scale, q8 in groups of 16 at D = 80', async () => {
    await expectVerified({ ...ir('q8', true, { kvGroupSize: 16, scale: 0.2 }), q: 'f32' }, 'B=1,Hq=4,Hkv=2,Sq=5,Skv=150,D=80', { splits: 4 });
  });

  it('int8 Q scores (qInt8) and integer P.V (pvInt), each on (the default with int8 codes) and off, on every int8 cache; an odd key count; q8 groups of 8 (half an integer step) and 16', async () => {
    for (const format of ['q8', 'q8_0', 'q4_0']) {
      for (const [qInt8, pvInt] of [[1, 1], [0, 0], [1, 0], [0, 1]]) {
        // Skv = 151: odd tiles, so integer P.V's last key pair has one key.
        const plan = await expectVerified(ir(format, true), 'B=1,Hq=6,Hkv=2,Sq=5,Skv=151,D=96', { qInt8, pvInt, splits: 2 });
        expect(plan.params as object, format).toMatchObject({ qInt8: qInt8 === 1, pvInt: pvInt === 1 });
      }
    }
    expect(emit({ target: 'wasm', op: 'attention_q4_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=64,D=64' }).plan.config).toMatchObject({ qInt8: 1, pvInt: 1 });
    for (const kvGroupSize of [8, 16]) await expectVerified({ ...ir('q8', false, { kvGroupSize }), q: 'f32' }, 'B=2,Hq=4,Hkv=1,Sq=1,Skv=99,D=80', { rowGroup: 2 });
  });

  it('touch loads on and off (the touch knob; off by default only for q8_0 in positions x heads rows)', async () => {
    for (const [format, extra, dflt] of [['q8_0', {}, 0], ['q8_0', { kvLayout: 'heads_positions' }, 1], ['q8', { kvLayout: 'positions_heads' }, 1], ['f16', {}, 1]] as const) {
      const shape = 'B=1,Hq=8,Hkv=2,Sq=1,Skv=333,D=64';
      expect(emit({ target: 'wasm', ir: ir(format, true, extra), shape }).plan.config, `${format} ${JSON.stringify(extra)}`).toMatchObject({ touch: dflt });
      for (const touch of [0, 1]) await expectVerified(ir(format, true, extra), shape, { touch, splits: 2 });
    }
  });

  it('every KV head in a task (allHeads) on ragged shapes: on and off, both row orders, splits, padding rows, causal decode of 5 queries', async () => {
    const cases: [string, string, Record<string, unknown>, Record<string, unknown>][] = [
      ['q4_0', 'B=2,Hq=10,Hkv=2,Sq=5,Skv=333,D=64', {}, { allHeads: 1, splits: 2 }],
      ['q4_0', 'B=2,Hq=10,Hkv=2,Sq=5,Skv=333,D=64', {}, { allHeads: 0, splits: 2 }],
      ['q8_0', 'B=1,Hq=6,Hkv=3,Sq=1,Skv=500,D=64', {}, { allHeads: 1, splits: 4 }],
      ['f16', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=131,D=64', { kvLayout: 'heads_positions' }, { allHeads: 1 }],
      ['q8', 'B=1,Hq=8,Hkv=4,Sq=64,Skv=77,D=64', { kvLayout: 'positions_heads' }, { allHeads: 1, qBlock: 16 }],
    ];
    for (const [format, shape, extra, config] of cases) {
      const plan = await expectVerified(ir(format, true, extra), shape, config);
      expect((plan.params as { taskHeads: number }).taskHeads, `${format} ${shape}`).toBe(config.allHeads ? Number(/Hkv=(\d+)/.exec(shape)![1]) : 1);
    }
  });

  it('on 2 threads (workers on a shared memory, a scratch slot each): tasks and merge split across them', async () => {
    const runner = wasmRunner('auto', { kind: 'tasks', checkThreads: 2, maxThreads: WASM_ATTENTION_SLOTS });
    const cases = [
      { format: 'q4_0', shape: 'B=1,Hq=8,Hkv=1,Sq=1,Skv=1000,D=128', causal: true, config: { splits: 8 } },
      { format: 'q8', shape: 'B=1,Hq=5,Hkv=1,Sq=64,Skv=333,D=64', causal: true, config: { qBlock: 16, rowGroup: 4 } },
      { format: 'f16', shape: 'B=2,Hq=8,Hkv=2,Sq=5,Skv=77,D=128', causal: false, config: { splits: 2 } },
      { format: 'q8_0', shape: 'B=1,Hq=4,Hkv=4,Sq=1,Skv=200,D=64', causal: true, config: { splits: 4 } },
    ];
    for (const c of cases) {
      const e = emit({ target: 'wasm', ir: { ...ir(c.format, c.causal), o: 'f16' }, shape: c.shape, config: c.config });
      const data = opKit('attention').testData(e.plan.op, e.plan.shape, 7);
      const build = await runner.build(e.plan, e.rendered);
      if (build.status !== 'ok') throw new Error(build.detail);
      try {
        const run = await runner.execute(build, data.inputs);
        expect(run.status, `${c.format} ${c.shape}: ${'detail' in run ? run.detail : ''}`).toBe('ok');
        if (run.status !== 'ok') continue;
        const { ok, comparison } = data.check(run.output, e.plan.tolerance);
        expect(ok, `${c.format} ${c.shape}: nmse ${comparison.nmse}`).toBe(true);
      } finally {
        build.dispose();
      }
    }
  });
});

describe('WebAssembly attention on an f16 cache holding inf and NaN', () => {
  // The f16 kernels widen 8 values at a time for finite values only and redo a key's scores (or a
  // step of P.V) exactly where an all-ones exponent appeared: a cache's inf and NaN must come out as
  // the reference's. V = +inf at one key and value of head 0 makes that value +inf in the head's
  // rows; K = NaN at one key of head 1 makes the head's rows NaN. Without the redo both would be
  // finite (the fast widening reads an all-ones exponent as 2^16).
  it('inf in V and NaN in K come out as the reference has them, every other output as the reference', async () => {
    const shape = 'B=1,Hq=4,Hkv=2,Sq=1,Skv=70,D=64';
    const e = emit({ target: 'wasm', ir: { ...ir('f16', false, { kvLayout: 'heads_positions' }), o: 'f32' }, shape, config: { splits: 2 } });
    const { Skv, D } = e.plan.shape as { Skv: number; D: number };
    const data = opKit('attention').testData(e.plan.op, e.plan.shape, 11);
    const k = new Uint8Array(data.inputs['k.bin']!), v = new Uint8Array(data.inputs['v.bin']!);
    const setF16 = (bytes: Uint8Array, head: number, key: number, d: number, bits: number) => new DataView(bytes.buffer).setUint16(((head * Skv + key) * D + d) * 2, bits, true);
    setF16(v, 0, 10, 5, 0x7c00);
    setF16(k, 1, 20, 3, 0x7e00);
    const qBits = new Uint16Array(data.inputs['q.bin']!.slice().buffer);
    const q = Float32Array.from(qBits, (b) => f16BitsToF32(b));
    const ref = referenceAttention(e.plan.op as AttentionOp, e.plan.shape as AttentionShape, { q, k: { data: k }, v: { data: v } });
    expect(ref.some((x) => x === Infinity) && ref.some((x) => Number.isNaN(x)) && ref.some((x) => Number.isFinite(x))).toBe(true);
    const runner = wasmRunner('auto', { kind: 'tasks', checkThreads: 1, maxThreads: WASM_ATTENTION_SLOTS });
    const build = await runner.build(e.plan, e.rendered);
    if (build.status !== 'ok') throw new Error(build.detail);
    try {
      const run = await runner.execute(build, { ...data.inputs, 'k.bin': k, 'v.bin': v });
      if (run.status !== 'ok') throw new Error(`${run.status}: ${'detail' in run ? run.detail : ''}`);
      const out = new Float32Array(run.output.slice().buffer);
      expect(out.length).toBe(ref.length);
      for (let i = 0; i < ref.length; i++) {
        if (Number.isFinite(ref[i]!)) expect(Math.abs(out[i]! - ref[i]!), `output ${i}`).toBeLessThan(1e-4 * (1 + Math.abs(ref[i]!)));
        else expect(out[i], `output ${i}`).toBe(ref[i]);
      }
    } finally {
      build.dispose();
    }
  });
});

describe('WebAssembly attention output', () => {
  it('emit: the modules assemble, the manifest states the exports, workspace and KV layout, kernel.d.mts types a host', async () => {
    const e = emit({ target: 'wasm', op: 'attention_q8_0kv', shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=500,D=64', config: { splits: 2 } });
    expect(Object.keys(e.files)).toEqual(expect.arrayContaining(['kernel.wat', 'kernel.shared.wat', 'kernel.mjs', 'kernel-worker.mjs', 'kernel.d.mts', 'manifest.json']));
    const built = await e.rendered.binaries!();
    if ('error' in built) throw new Error(built.error);
    expect(Object.keys(built.files).sort()).toEqual(['kernel.shared.wasm', 'kernel.wasm']);
    // A scratch slot past the workspace's traps before the kernel writes anything.
    const instance = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(built.files['kernel.wasm']!)), { env: { memory: new WebAssembly.Memory({ initial: 1 }) } });
    const tasksCall = instance.exports.kgen_attention_q8_0kv_tasks as (...args: number[]) => void;
    for (const slot of [WASM_ATTENTION_SLOTS, -1]) expect(() => tasksCall(0, 0, 0, 0, 0, 0, 0, 0, slot), `slot ${slot}`).toThrow(/unreachable/);
    const manifest = e.manifest;
    expect(manifest.abi.map((a) => a.symbol)).toEqual(['kgen_attention_q8_0kv_workspace_size', 'kgen_attention_q8_0kv_prepare', 'kgen_attention_q8_0kv_tasks', 'kgen_attention_q8_0kv_merge', 'kgen_attention_q8_0kv']);
    expect(manifest.abi[0]!.doc).toMatch(/16 scratch slots/);
    expect(manifest.tensors.k!.layout).toMatch(/positions x heads: rows \[1,500,2\] of 68 bytes/);
    // Every buffer's bytes as numbers, the same the loader's `sizes` holds; the softmax scale 1/sqrt(D).
    const sizes = JSON.parse(/export const sizes = Object\.freeze\((\{.*\})\);/.exec(e.files['kernel.mjs']!)![1]!) as Record<string, number>;
    expect(Object.fromEntries(Object.entries(manifest.tensors).map(([name, t]) => [name, t.bytes]))).toEqual({ q: 8 * 64 * 2, k: 500 * 2 * 68, v: 500 * 2 * 68, o: 8 * 64 * 2 });
    for (const name of ['q', 'k', 'v', 'o']) expect(manifest.tensors[name]!.bytes, name).toBe(sizes[name]);
    expect(manifest.workspaceBytes).toBe(sizes.workspace);
    expect(manifest.softmaxScale).toBe(0.125);
    // The template prints the shared polynomial's digits, not literals of its own.
    expect(e.files['kernel.wat']).toContain('0.693147181');
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-attn-'));
    try {
      for (const [name, text] of Object.entries(e.files)) writeFileSync(join(dir, name), text);
      writeFileSync(join(dir, 'use.mts'), `import { loadThreaded, sizes, slots, tasks, type ThreadedKernel } from './kernel.mjs';
        const k: ThreadedKernel = await loadThreaded({ memory: new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true }), threads: slots });
        await k.tasks(0, 16, sizes.k_scales, 32, 0, 48, 0, tasks);
        await k.merge(0, 48, 0, 1);\n`);
      const tsc = await execa(process.execPath, [join(process.cwd(), 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', join(process.cwd(), 'node_modules/@types'), join(dir, 'use.mts')], { reject: false });
      expect(tsc.exitCode, tsc.stdout).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the plan\'s L2 figure is the scratch slot the kernel uses, P.V coefficients included', () => {
    // f32 P.V on a q8 cache keeps every row's coefficients (rowGroup x kvBlock x scale groups f32)
    // in the slot beside the scores and accumulators; the C stack the shared planner counts has none.
    const shape = 'B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128';
    const plan = emit({ target: 'wasm', op: 'attention_q8kv', shape, config: { pvInt: 0, qInt8: 0 } }).plan;
    if (plan.family !== 'cpu-attention') throw new Error(`a ${plan.family} plan`);
    const p = plan.params;
    const groups = Math.ceil(p.D / p.valuesPerScale / 4) * 4;
    const atLeast = 4 * p.taskRowsAllPadded * (p.kvBlock + p.D) + 4 * p.rowGroup * p.kvBlock * groups;
    const slot = plan.buffers.find((b) => b.name === 'scratch slot');
    expect(slot?.space).toBe('l2');
    expect(slot!.size).toBeGreaterThanOrEqual(atLeast);
    expect(plan.budgets.find((b) => b.unit === 'bytes')!.needed).toBe(plan.buffers.filter((b) => b.space === 'l2').reduce((s, b) => s + b.size, 0));
    expect(plan.buffers.map((b) => b.name)).not.toContain(TASK_STACK_BUFFER);
  });

  it('a plan its planner could not have made (no launch.workers, 8 lanes) is an InternalError (a kgen bug, exit 70), not a usage error', () => {
    const plan = emit({ target: 'wasm', op: 'attention_q8kv', shape: 'B=1,Hq=4,Hkv=2,Sq=1,Skv=64,D=64' }).plan;
    if (plan.family !== 'cpu-attention') throw new Error(`a ${plan.family} plan`);
    const ctx = { version: 'test', irHash: 'test', command: commentText('kgen emit') };
    for (const bad of [{ ...plan, launch: { ...plan.launch, workers: undefined } }, { ...plan, params: { ...plan.params, lanes: 8 } }]) {
      const thrown = (() => { try { renderWasmAttention(bad, ctx); } catch (e) { return e; } })();
      expect(thrown).toBeInstanceOf(InternalError);
      expect(thrown).not.toBeInstanceOf(KgenError);
    }
  });

  it('loadThreaded takes 1..slots threads (a RangeError else), and its workers let Node exit without close() once the calls resolve', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-attn-lifetime-'));
    try {
      const e = emit({ target: 'wasm', op: 'attention_q8kv', shape: 'B=1,Hq=4,Hkv=2,Sq=1,Skv=300,D=64', config: { splits: 2 } });
      await writeEmittedWasm(e, dir);
      const r = await threadedLoaderLifetime(dir, 'k.run(at.q, at.k, at.k_scales, at.v, at.v_scales, at.o, at.workspace)');
      expect(r.maxThreads).toBe(WASM_ATTENTION_SLOTS);
      const range = (v: string) => `RangeError: kgen_attention_q8kv: threads must be an integer in [1, 16] (one of the workspace's 16 scratch slots per thread), not ${v}`;
      expect(r.refused).toEqual([...['0', '-1', '2.5', 'NaN', 'Infinity', '17', '1000'].map(range), 'TypeError: kgen_attention_q8kv: threads must be a number, not string', 'TypeError: kgen_attention_q8kv: threads must be a number, not undefined']);
      expect(r.done).toBe(true);
      expect(e.files['kernel.d.mts']).toContain('export declare const maxThreads: 16;');
      expect(e.files['kernel.d.mts']).toMatch(/a script that never calls close\(\) still exits/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('loadKernel\'s tasks takes slots 0..slots - 1 and refuses any other with a RangeError before the module runs (it would trap: unreachable)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-attn-slot-'));
    try {
      const shape = 'B=1,Hq=2,Hkv=1,Sq=1,Skv=40,D=64';
      for (const [name, op, kvLen] of [['fixed', ir('f16', true), []], ['runtime', ir('q8', true, { kvLength: 'runtime' }), [40]]] as const) {
        const e = emit({ target: 'wasm', ir: op, shape });
        mkdirSync(join(dir, name));
        await writeEmittedWasm(e, join(dir, name));
        const K = await import(pathToFileURL(join(dir, name, 'kernel.mjs')).href);
        const k = await K.loadKernel({ memory: new WebAssembly.Memory({ initial: 16 }) });
        k.prepare(0, 1 << 16);
        const tasks = (slot: unknown) => () => k.tasks(1 << 16, 1024, 2048, 4096, 8192, 512, 0, K.tasks, slot, ...kvLen);
        expect(tasks(WASM_ATTENTION_SLOTS - 1)).not.toThrow();
        for (const [slot, shown] of [[WASM_ATTENTION_SLOTS, '16'], [-1, '-1'], [1.5, '1.5'], ['2', '"2" (a string)'], [undefined, 'undefined']] as const) {
          expect(tasks(slot), name).toThrow(new RangeError(`kgen_${String(op.name)}: slot must be an integer in [0, 15] (one of the workspace's 16 scratch slots, one per thread running tasks at once), not ${shown}`));
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the harness refuses more threads than the workspace has scratch slots', async () => {
    const e = emit({ target: 'wasm', op: 'attention_f16', shape: 'B=1,Hq=2,Hkv=1,Sq=1,Skv=40,D=64' });
    const runner = wasmRunner('auto', { kind: 'tasks', checkThreads: 1, maxThreads: WASM_ATTENTION_SLOTS });
    const build = await runner.build(e.plan, e.rendered);
    if (build.status !== 'ok') throw new Error(build.detail);
    try {
      await expect(runner.execute(build, {}, { timing: { warmup: 0, runs: 1, flushBytes: 0, threads: WASM_ATTENTION_SLOTS + 1 } })).rejects.toThrow(/1 to 16 threads/);
    } finally {
      build.dispose();
    }
  });

  it('a package of an attention and a matmul kernel: one memory, the attention kernel right on 2 threads, its usage snippet first', async () => {
    const shape = 'B=1,Hq=8,Hkv=2,Sq=3,Skv=150,D=64';
    const pkg = await buildPackage({
      command: 'test',
      kernels: [
        { target: 'wasm', op: 'attention_q4_0kv', shape, name: 'attn' },
        { target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=64,K=64' },
      ],
    });
    const readme = pkg.files['README.md'] as string;
    expect(/```js\n([\s\S]*?)```/.exec(readme)![1]).toMatch(/kernels\.attn\.run\(at\.q, at\.k, at\.k_scales, at\.v, at\.v_scales, at\.o, at\.workspace\)/);
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-attn-pkg-'));
    try {
      for (const [name, content] of Object.entries(pkg.files)) {
        mkdirSync(dirname(join(dir, name)), { recursive: true });
        writeFileSync(join(dir, name), content);
      }
      const e = emit({ target: 'wasm', op: 'attention_q4_0kv', shape });
      const data = opKit('attention').testData(e.plan.op, e.plan.shape, 5);
      for (const [name, bytes] of Object.entries(data.inputs)) writeFileSync(join(dir, name), bytes);
      writeFileSync(join(dir, 'host.mjs'), `import { readFileSync, writeFileSync } from 'node:fs';
        import { kernels as modules, layout, loadAll, maxThreads } from './index.mjs';
        // The attention kernel's 16 scratch slots bound the package's threads; past them loadAll refuses.
        const refused = await loadAll({ threads: maxThreads + 1 }).then(() => 'loaded', (e) => e.constructor.name + ': ' + e.message);
        writeFileSync(new URL('refused.txt', import.meta.url), maxThreads + ' ' + refused);
        const { memory, kernels, close } = await loadAll({ threads: 2 });
        const at = layout.kernels.attn;
        for (const b of ['q', 'k', 'v']) new Uint8Array(memory.buffer, at[b], modules.attn.sizes[b]).set(readFileSync(new URL(b + '.bin', import.meta.url)));
        await kernels.attn.run(at.q, at.k, at.k_scales, at.v, at.v_scales, at.o, at.workspace);
        writeFileSync(new URL('y.bin', import.meta.url), new Uint8Array(memory.buffer, at.o, modules.attn.sizes.o));
        close();
`);
      const r = await execa(process.execPath, [join(dir, 'host.mjs')], { reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(data.check(new Uint8Array(readFileSync(join(dir, 'y.bin'))), e.plan.tolerance).ok).toBe(true);
      expect(readFileSync(join(dir, 'refused.txt'), 'utf8')).toMatch(/^16 RangeError: .*threads must be an integer in \[1, 16\] \(the fewest threads a kernel here takes\), not 17$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
