import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { verify } from '../src/api/verify.js';
import { assembleWat } from '../src/backends/wasm/assemble.js';
import { placeBuffers } from '../src/backends/wasm/memory.js';
import { RELAXED_DOT_CASE } from '../src/backends/wasm/probe.js';
import { wasmRunner, type WasmRunLevel } from '../src/backends/wasm/runner.js';
import type { Shape } from '../src/ir/types.js';
import { f16BitsToF32 } from '../src/numeric/half.js';
import { opKit } from '../src/ops/index.js';
import type { CpuMatmulParams } from '../src/plan/cpu-matmul.js';
import { codecOf, dequantizeMatrix, quantizeMatrix } from '../src/quant/index.js';
import { Q35_MAX_MAGNITUDE } from '../src/quant/q35.js';
import { roundedInput } from '../src/reference/compare.js';
import { EPILOGUE_IRS, threadedLoaderLifetime, writeEmittedWasm } from './helpers.js';

/**
 * The WebAssembly backend: kernels of every weight format at both instruction levels against the
 * f64 reference (the C tests' shapes and tolerances), the relaxed-SIMD probe against what the
 * instruction really computes in this Node under each compiler configuration, and the runner's
 * statuses. Nothing here depends on the x86 CPU: WebAssembly SIMD128 and the relaxed dot product
 * (with its second operand in [0, 127]) are defined the same on every CPU.
 */

const OPS = ['matmul_q35', 'matmul_q4', 'matmul_q8', 'matmul_q4_0', 'matmul_q8_0', 'matmul_f16'];
// Ragged: N=77 is not a multiple of any row tile; K=320 is 5 groups of 64 (10 ggml blocks).
const SHAPES = ['M=1,N=77,K=320', 'M=3,N=77,K=320', 'M=64,N=77,K=320'];
const LEVELS = ['simd128', 'relaxed'] as const;

/** An emitted kernel's SIMD128 module on a fresh one-page memory, its exports by name suffix. */
async function instantiateSimd128(e: ReturnType<typeof emit>) {
  const bins = await e.rendered.binaries!();
  if ('error' in bins) throw new Error(bins.error);
  const memory = new WebAssembly.Memory({ initial: 1 });
  const { instance } = await WebAssembly.instantiate(bins.files['kernel.wasm']! as Uint8Array<ArrayBuffer>, { env: { memory } });
  const fn = (suffix: string) => Object.entries(instance.exports).find(([name]) => name.endsWith(suffix))![1] as (...a: number[]) => number;
  return { memory, fn };
}

async function expectVerified(opts: Parameters<typeof verify>[0], what: string): Promise<void> {
  const r = await verify(opts);
  expect(r.status, `${what}: ${r.detail ?? ''}`).toBe('ok');
  expect(r.ran, what).toBe(true);
  expect(r.comparison!.nonFinite, what).toBe(0);
  expect(r.comparison!.nmse, what).toBeLessThanOrEqual(r.tolerance.nmse);
}

describe.concurrent('WebAssembly kernels match the reference', () => {
  for (const level of LEVELS) {
    for (const op of OPS) {
      it(`${op} ${level}: M in {1,3,64}, ragged N and K`, async () => {
        for (const shape of SHAPES) await expectVerified({ target: 'wasm', op, shape, runner: wasmRunner(level) }, `${op} ${level} ${shape}`);
      });
    }
    it(`${level}: group sizes 32, 96 and 128 (q3.5's 32-weight unit, activation blocks of 32 and 64)`, async () => {
      for (const format of ['q4', 'q35', 'q8']) {
        for (const groupSize of [32, 96, 128]) {
          const ir = { kind: 'matmul', name: `g${groupSize}_${format}`, x: 'f32', y: 'f32', weight: { format, groupSize }, epilogue: {} };
          const shapes = groupSize === 128 ? ['M=1,N=37,K=384', 'M=3,N=37,K=384'] : ['M=1,N=37,K=384', 'M=3,N=37,K=288'];
          for (const shape of shapes) await expectVerified({ target: 'wasm', ir, shape, runner: wasmRunner(level) }, `${format} g${groupSize} ${level} ${shape}`);
        }
      }
    });
    it(`${level}: q3.5 GEMV through the fixed-stride kernel (whole chunks of streams; B planes decoded ahead of their rows)`, async () => {
      await expectVerified({ target: 'wasm', op: 'matmul_q35', shape: 'M=1,N=512,K=128', runner: wasmRunner(level) }, `q35 ${level} fixed stride`);
    });
    it(`${level}: epilogues (bias, silu, gelu, residual) and f16 activations and outputs`, async () => {
      for (const ir of EPILOGUE_IRS) await expectVerified({ target: 'wasm', ir, shape: 'M=3,N=77,K=384', runner: wasmRunner(level) }, `${ir.name} ${level}`);
    });
  }
  it('other tilings give the same results (edge tiles in N and M, unrolls with and without a tail of blocks)', async () => {
    for (const config of [
      { rowsPerIter: 1, mTile: 4, nTile: 8, unroll: 2 },
      { rowsPerIter: 2, mTile: 2, nTile: 2 },
      { rowsPerIter: 4, mTile: 1, nTile: 4, unroll: 2 },
      { rowsPerIter: 8, mTile: 1, nTile: 16 },
    ]) {
      // K = 7 groups of 64: unroll 2 leaves a tail of 1 block; q4_0's 14 blocks of 32 leave none.
      for (const op of ['matmul_q35', 'matmul_q4_0', 'matmul_f16']) {
        for (const level of LEVELS) await expectVerified({ target: 'wasm', op, shape: 'M=5,N=33,K=448', config, runner: wasmRunner(level) }, `${op} ${level} ${JSON.stringify(config)}`);
      }
    }
  });
});

describe('GEMV rows in streams (streamChunk)', () => {
  it('every split of the rows into ranges computes the same right output, for every stream length and partial chunk', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-streams-'));
    try {
      // N = 77: a range takes chunks of rowsPerIter streams of S rows, S cut to its rows / rowsPerIter
      // at the end, then fewer than rowsPerIter rows one at a time.
      // Whole chunks (S rows a stream) take the fixed-stride kernel: S = 8, 16 and 32 below.
      for (const config of [{ streamChunk: 256, rowsPerIter: 8 }, { streamChunk: 64, rowsPerIter: 8 }, { streamChunk: 64, rowsPerIter: 4 }, { streamChunk: 64, rowsPerIter: 2 }]) {
        const e = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=77,K=320', config: { isa: 'simd128', ...config } });
        const params = e.plan.params as { streamRows: number; rowsPerIter: number };
        expect(params.streamRows, JSON.stringify(config)).toBe(config.streamChunk / config.rowsPerIter);
        const sub = join(dir, `s${params.streamRows}r${params.rowsPerIter}`);
        mkdirSync(sub);
        await writeEmittedWasm(e, sub);
        const loader = (await import(pathToFileURL(join(sub, 'kernel.mjs')).href)) as {
          sizes: Record<string, number>;
          loadKernel(o: { memory: WebAssembly.Memory; level: string }): Promise<{ prepare(x: number, ws: number): void; rows(...a: number[]): void }>;
        };
        const data = opKit('matmul').testData(e.plan.op, e.plan.shape, 3);
        const { at, end } = placeBuffers(loader.sizes);
        const memory = new WebAssembly.Memory({ initial: Math.ceil(end / 65536) });
        const bytes = new Uint8Array(memory.buffer);
        for (const name of ['x', 'w']) bytes.set(data.inputs[`${name}.bin`]!, at[name]);
        const k = await loader.loadKernel({ memory, level: 'simd128' });
        k.prepare(at.x!, at.workspace!);
        for (const cuts of [[0, 77], [0, 13, 40, 77], [0, 1, 9, 70, 76, 77], [0, 38, 39, 77]]) {
          new Float32Array(memory.buffer, at.y!, 77).fill(NaN);
          for (let i = 0; i + 1 < cuts.length; i++) k.rows(at.workspace!, at.w!, 0, 0, at.y!, cuts[i]!, cuts[i + 1]!);
          const y = bytes.slice(at.y!, at.y! + loader.sizes.y!);
          expect(data.check(y, e.plan.tolerance).ok, `${JSON.stringify(config)} ranges ${cuts.join(',')}`).toBe(true);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('apply to one activation row alone, with the stream length as plan text, and the space holds the contiguous order', () => {
    const gemv = emit({ target: 'wasm', op: 'matmul_q35', shape: 'M=1,N=4096,K=14336' });
    expect(gemv.plan.params).toMatchObject({ rowsPerIter: 8, streamRows: 32 });
    expect(gemv.plan.loops.join('\n')).toMatch(/8 streams of S consecutive rows, S = 32/);
    // Each row is read once: no weight tile is kept, so no L2 budget holds it to few rows.
    expect(gemv.plan.buffers.map((b) => b.name)).not.toContain('weight tile');
    expect(gemv.files['kernel.wat']).toContain('(param $stride i32)');
    const contiguous = emit({ target: 'wasm', op: 'matmul_q35', shape: 'M=1,N=4096,K=14336', config: { streamChunk: 0 } });
    expect(contiguous.plan.params).toMatchObject({ streamRows: 0 });
    // One activation row reads each row once in contiguous groups too; M=3 in tiles of 2 keeps a tile.
    expect(contiguous.plan.buffers.map((b) => b.name)).not.toContain('weight tile');
    expect(emit({ target: 'wasm', op: 'matmul_q35', shape: 'M=3,N=77,K=320', config: { mTile: 2 } }).plan.buffers.map((b) => b.name)).toContain('weight tile');
    expect(contiguous.files['kernel.wat']).not.toContain('$stride');
    const gemm = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=3,N=77,K=320' });
    expect(gemm.plan.params).toMatchObject({ streamRows: 0 });
    expect(gemm.plan.knobsInUse).not.toContain('streamChunk');
    // q4_0 defaults to 4 streams of 64 rows (fewer streams, measured faster for it), q4 to 8 of 32.
    expect(emit({ target: 'wasm', op: 'matmul_q4_0', shape: 'M=1,N=4096,K=14336' }).plan.params).toMatchObject({ rowsPerIter: 4, streamRows: 64 });
    expect(emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=4096,K=14336' }).plan.params).toMatchObject({ rowsPerIter: 8, streamRows: 32 });
  });
});

describe('the relaxed module is what a relaxed run executes', () => {
  it('a wrong correction term in kernel.relaxed.wat fails a relaxed run and leaves a simd128 run ok', async () => {
    const e = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=3,N=77,K=320' });
    const relaxed = e.files['kernel.relaxed.wat']!;
    expect(relaxed).toContain('i16x8.relaxed_dot_i8x16_i7x16_s');
    expect(e.files['kernel.wat']).not.toContain('i32x4.relaxed');
    // The nibble offset times the activation block's sum: 8 -> 7 breaks only the relaxed module.
    const broken = relaxed.replace(/\(i32\.const 8\)\)\)/g, '(i32.const 7)))');
    expect(broken).not.toBe(relaxed);
    const data = opKit('matmul').testData(e.plan.op, e.plan.shape, 1);
    const kernel = { ...e.rendered, files: { ...e.rendered.files, 'kernel.relaxed.wat': broken } };
    for (const [level, ok] of [['relaxed', false], ['simd128', true]] as const) {
      const runner = wasmRunner(level);
      const build = await runner.build(e.plan, kernel);
      expect(build.status).toBe('ok');
      if (build.status !== 'ok') continue;
      const run = await runner.execute(build, data.inputs);
      build.dispose();
      expect(run.status).toBe('ok');
      if (run.status === 'ok') expect(data.check(run.output, e.plan.tolerance).ok, level).toBe(ok);
    }
  });
});

/** Runs `script` in a fresh Node with `flags`; its last stdout line as JSON. */
async function nodeJson(flags: string[], script: string, args: string[] = []): Promise<Record<string, unknown>> {
  const r = await execa(process.execPath, [...flags, script, ...args], { reject: false });
  expect(r.exitCode, `${flags.join(' ')}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

describe('the relaxed-SIMD probe', () => {
  // Under plain node 20 relaxed SIMD does not compile; with the flag, Liftoff (the baseline
  // compiler) computes it wrongly; with Liftoff off, TurboFan computes it right.
  const ENGINES = [[], ['--experimental-wasm-relaxed-simd'], ['--experimental-wasm-relaxed-simd', '--no-liftoff']];

  it('its verdict in each engine configuration is whether the instruction computes right there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-probe-'));
    try {
      const e = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=8,K=64' });
      const probe = await assembleWat('probe.wat', e.files['probe.wat']!);
      // An independent check: the instruction on many random inputs of the kernels' kind, against JS.
      const direct = await assembleWat('direct.wat', `(module (memory (export "mem") 1)
        (func (export "dot") (param $a i32) (param $b i32) (param $c i32) (param $o i32)
          (v128.store (local.get $o) (i32x4.relaxed_dot_i8x16_i7x16_add_s (v128.load (local.get $a)) (v128.load (local.get $b)) (v128.load (local.get $c)))))
        (func (export "dot16") (param $a i32) (param $b i32) (param $o i32)
          (v128.store (local.get $o) (i16x8.relaxed_dot_i8x16_i7x16_s (v128.load (local.get $a)) (v128.load (local.get $b))))))`);
      if (!('bytes' in probe) || !('bytes' in direct)) throw new Error('probe or check did not assemble');
      writeFileSync(join(dir, 'probe.wasm'), probe.bytes);
      writeFileSync(join(dir, 'direct.wasm'), direct.bytes);
      writeFileSync(join(dir, 'check.mjs'), `
        import { readFileSync } from 'node:fs';
        const load = (f, imports) => new WebAssembly.Instance(new WebAssembly.Module(readFileSync(new URL(f, import.meta.url))), imports).exports;
        let verdict;
        try { verdict = load('probe.wasm').probe() === 1; } catch { verdict = false; }
        let correct = true, why = 'computes right';
        try {
          const m = load('direct.wasm');
          const view = new DataView(m.mem.buffer);
          let seed = 12345;
          const rnd = (n) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
          for (let t = 0; t < 200; t++) {
            const a = [], b = [], c = [];
            for (let j = 0; j < 16; j++) { a.push(rnd(255) - 127); b.push(rnd(128)); view.setInt8(j, a[j]); view.setInt8(16 + j, b[j]); }
            for (let l = 0; l < 4; l++) { c.push(rnd(2000001) - 1000000); view.setInt32(32 + 4 * l, c[l], true); }
            m.dot(0, 16, 32, 48);
            for (let l = 0; l < 4; l++) {
              let want = c[l];
              for (let j = 0; j < 4; j++) want += a[4 * l + j] * b[4 * l + j];
              const got = view.getInt32(48 + 4 * l, true);
              if (got !== want && correct) { correct = false; why = 'lane ' + l + ': got ' + got + ', want ' + want; }
            }
            m.dot16(0, 16, 64);
            for (let l = 0; l < 8; l++) {
              const want = a[2 * l] * b[2 * l] + a[2 * l + 1] * b[2 * l + 1];
              const got = view.getInt16(64 + 2 * l, true);
              if (got !== want && correct) { correct = false; why = 'i16 lane ' + l + ': got ' + got + ', want ' + want; }
            }
          }
        } catch (e) { correct = false; why = String(e.message).slice(0, 120); }
        console.log(JSON.stringify({ verdict, correct, why }));
      `);
      const seen: string[] = [];
      for (const flags of ENGINES) {
        const r = await nodeJson(flags, join(dir, 'check.mjs'));
        seen.push(`${flags.join(' ') || 'node'}: probe ${r.verdict}, ${r.why}`);
        expect(r.verdict, seen.at(-1)).toBe(r.correct);
      }
      console.log(`relaxed SIMD in ${process.version}:\n  ${seen.join('\n  ')}`);
      // TurboFan computes the instruction right in every Node that has it.
      expect(seen.at(-1)).toMatch(/probe true/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('its expected lanes are the exact sums, accumulator included', () => {
    const { a, b, c, expected, expected16 } = RELAXED_DOT_CASE;
    for (let l = 0; l < 4; l++) expect(expected[l]).toBe(c[l]! + a[4 * l]! * b[4 * l]! + a[4 * l + 1]! * b[4 * l + 1]! + a[4 * l + 2]! * b[4 * l + 2]! + a[4 * l + 3]! * b[4 * l + 3]!);
    for (let l = 0; l < 8; l++) expect(expected16[l]).toBe(a[2 * l]! * b[2 * l]! + a[2 * l + 1]! * b[2 * l + 1]!);
    expect(b.every((v) => v >= 0 && v <= 127)).toBe(true);
  });

  it('the harness in every engine configuration takes the preferred level only where the probe allows it, and computes right', async () => {
    // q3.5 prefers relaxed by default, which falls back where the probe fails; a plan preferring
    // SIMD128 (as a tune record may) takes it everywhere.
    for (const config of [undefined, { isa: 'simd128' }]) {
      const e = emit({ target: 'wasm', op: 'matmul_q35', shape: 'M=3,N=77,K=320', config });
      expect(e.plan.config.isa).toBe(config?.isa ?? 'relaxed');
      expect(e.files['kernel.mjs']).toContain(`export const preferred = "${e.plan.config.isa}";`);
      const data = opKit('matmul').testData(e.plan.op, e.plan.shape, 1);
      const build = await wasmRunner('auto').build(e.plan, e.rendered);
      if (build.status !== 'ok') throw new Error(build.status);
      const dataDir = mkdtempSync(join(tmpdir(), 'kgen-wasm-data-'));
      try {
        for (const [name, bytes] of Object.entries(data.inputs)) writeFileSync(join(dataDir, name), bytes);
        for (const flags of ENGINES) {
          const what = `preferred ${e.plan.config.isa}, ${flags.join(' ') || 'node'}`;
          const run = await execa(process.execPath, [...flags, join(build.dir, 'harness.mjs'), dataDir, 'auto', '3'], { reject: false });
          expect(run.exitCode, run.stderr).toBe(0);
          const { level } = JSON.parse(run.stdout.split('\n')[0]!) as { level: WasmRunLevel };
          expect(data.check(new Uint8Array(readFileSync(join(dataDir, 'y.bin'))), e.plan.tolerance).ok, `${what}: ${level}`).toBe(true);
          const forced = await execa(process.execPath, [...flags, join(build.dir, 'harness.mjs'), dataDir, 'relaxed', '3'], { reject: false });
          // auto takes relaxed exactly where it is preferred and a forced relaxed run succeeds (the probe passes).
          expect(level === 'relaxed', `${what}: ${forced.stderr}`).toBe(e.plan.config.isa === 'relaxed' && forced.exitCode === 0);
          if (flags.includes('--no-liftoff')) expect(forced.exitCode, what).toBe(0);
        }
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
        build.dispose();
      }
    }
  });

  it('the preferred level per format is the first value of the isa knob, and the tuner space holds both', async () => {
    const { spaceFor } = await import('../src/plan/index.js');
    const { resolveRequest } = await import('../src/api/request.js');
    const want: Record<string, string[]> = { q4: ['relaxed', 'simd128'], q4_0: ['relaxed', 'simd128'], q8: ['simd128', 'relaxed'], q8_0: ['simd128', 'relaxed'], q35: ['relaxed', 'simd128'], f16: ['simd128'] };
    for (const [format, levels] of Object.entries(want)) {
      const e = emit({ target: 'wasm', op: `matmul_${format}`, shape: 'M=1,N=64,K=256' });
      expect(e.plan.config.isa, format).toBe(levels[0]);
      const space = spaceFor(resolveRequest({ target: 'wasm', op: `matmul_${format}`, shape: 'M=1,N=64,K=256' }));
      expect(space.knobs.find((k) => k.name === 'isa')!.values, format).toEqual(levels);
    }
  });
});

describe('the emitted loader (kernel.mjs)', () => {
  it('in a plain node and with relaxed SIMD on, on 1 and 3 threads: places buffers once, probes, picks the module and computes row ranges', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-loader-'));
    try {
      const e = emit({ target: 'wasm', ir: EPILOGUE_IRS[0]!, shape: 'M=3,N=77,K=320' });
      await writeEmittedWasm(e, dir);
      const data = opKit('matmul').testData(e.plan.op, e.plan.shape, 1);
      for (const [name, bytes] of Object.entries(data.inputs)) writeFileSync(join(dir, name), bytes);
      // A host as a user writes one: its own layout, rows computed in two ranges.
      writeFileSync(join(dir, 'host.mjs'), `
        import { readFileSync, writeFileSync } from 'node:fs';
        import { loadKernel, sizes } from './kernel.mjs';
        const at = {}; let end = 64;
        for (const [name, size] of Object.entries(sizes)) { at[name] = end; end += Math.ceil(size / 64) * 64 + 64; }
        const memory = new WebAssembly.Memory({ initial: Math.ceil(end / 65536) });
        const bytes = new Uint8Array(memory.buffer);
        for (const name of ['x', 'w', 'bias', 'residual']) if (sizes[name]) bytes.set(readFileSync(new URL(name + '.bin', import.meta.url)), at[name]);
        const k = await loadKernel({ memory });
        k.prepare(at.x, at.workspace);
        k.rows(at.workspace, at.w, at.bias, at.residual, at.y, 0, 40);
        k.rows(at.workspace, at.w, at.bias, at.residual, at.y, 40, 77);
        writeFileSync(new URL('y.bin', import.meta.url), bytes.subarray(at.y, at.y + sizes.y));
        console.log(JSON.stringify({ level: k.level, workspace: k.workspaceSize === sizes.workspace }));
      `);
      // The same host on 3 threads: a shared memory, rows split across this thread and 2 workers.
      writeFileSync(join(dir, 'threads.mjs'), readFileSync(join(dir, 'host.mjs'), 'utf8')
        .replace("import { loadKernel, sizes }", "import { loadThreaded, sizes }")
        .replace("{ initial: Math.ceil(end / 65536) }", "{ initial: Math.ceil(end / 65536), maximum: 1024, shared: true }")
        .replace("await loadKernel({ memory })", "await loadThreaded({ memory, threads: 3 })")
        // A call that traps (W past the memory's end) rejects with the trap's text and leaves the
        // workers ready; then two calls issued together run one after the other.
        .replace("k.rows(at.workspace, at.w, at.bias, at.residual, at.y, 0, 40);",
          "const failed = await k.rows(at.workspace, memory.buffer.byteLength - 16, at.bias, at.residual, at.y, 0, 77).then(() => 'resolved', (e) => e.message);"
          + " const both = Promise.all([k.rows(at.workspace, at.w, at.bias, at.residual, at.y, 0, 40),")
        // A prepare of zeros issued before those calls end waits for them (else they would read its X),
        // and a call after close() rejects without computing (else Y would be the zero X's).
        .replace("k.rows(at.workspace, at.w, at.bias, at.residual, at.y, 40, 77);", "k.rows(at.workspace, at.w, at.bias, at.residual, at.y, 40, 77)]);"
          + " const zeroX = memory.buffer.byteLength; memory.grow(Math.ceil(sizes.x / 65536)); k.prepare(zeroX, at.workspace); await both; k.close();"
          + " const closed = await k.rows(at.workspace, at.w, at.bias, at.residual, at.y, 0, 77).then(() => 'resolved', (e) => e.message);")
        .replace("workspace: k.workspaceSize === sizes.workspace }", "workspace: k.workspaceSize === sizes.workspace, failed, closed }"));
      expect(readFileSync(join(dir, 'threads.mjs'), 'utf8')).toContain('k.close()');
      const levels: string[] = [];
      for (const [flags, script] of [[[], 'host.mjs'], [['--experimental-wasm-relaxed-simd', '--no-liftoff'], 'host.mjs'], [[], 'threads.mjs'], [['--experimental-wasm-relaxed-simd', '--no-liftoff'], 'threads.mjs']] as const) {
        rmSync(join(dir, 'y.bin'), { force: true });
        const r = await nodeJson([...flags], join(dir, script));
        levels.push(r.level as string);
        expect(r.workspace).toBe(true);
        if (script === 'threads.mjs') expect([r.failed, r.closed]).toEqual([expect.stringMatching(/out of bounds/), expect.stringMatching(/closed/)]);
        expect(data.check(new Uint8Array(readFileSync(join(dir, 'y.bin'))), e.plan.tolerance).ok, `${script} ${flags.join(' ')} ${r.level}`).toBe(true);
      }
      // With relaxed SIMD computing right the loader takes it.
      expect([levels[1], levels[3]]).toEqual(['relaxed', 'relaxed']);
      // Workers that get to their loop only after the first call was posted (a busy machine) still
      // run it: the worker's loop starts from the control block's initial seq, not from what it
      // finds there when it gets to run.
      const worker = readFileSync(join(dir, 'kernel-worker.mjs'), 'utf8');
      expect(worker).toContain('serve(new Int32Array(m.control), functions);');
      writeFileSync(join(dir, 'kernel-worker.mjs'), worker.replace('serve(new Int32Array(m.control), functions);',
        '{ const until = Date.now() + 200; while (Date.now() < until); } serve(new Int32Array(m.control), functions);'));
      rmSync(join(dir, 'y.bin'), { force: true });
      const late = await nodeJson([], join(dir, 'threads.mjs'));
      expect(data.check(new Uint8Array(readFileSync(join(dir, 'y.bin'))), e.plan.tolerance).ok, 'late workers').toBe(true);
      expect(late.failed).toMatch(/out of bounds/);
      // kernel.d.mts types a TypeScript host's use of the loader.
      writeFileSync(join(dir, 'use.mts'), `import { loadKernel, sizes, type Kernel } from './kernel.mjs';
        const k: Kernel = await loadKernel({ memory: new WebAssembly.Memory({ initial: 1 }), level: 'simd128' });
        k.rows(0, 16, 0, 0, sizes.w, 0, 1);\n`);
      const tsc = await execa(process.execPath, [join(process.cwd(), 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', join(process.cwd(), 'node_modules/@types'), join(dir, 'use.mts')], { reject: false });
      expect(tsc.exitCode, tsc.stdout).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the emitted loader bundled for a browser', () => {
  it('moved away from its files (as a bundler moves it), finds them at `base` on 1 and 2 threads; it imports no node: module a browser bundler would resolve', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-base-'));
    try {
      const kernels = { matmul: emit({ target: 'wasm', op: 'matmul_q4_0', shape: 'M=1,N=16,K=64' }), attention: emit({ target: 'wasm', op: 'attention_f16', shape: 'B=1,Hq=2,Hkv=1,Sq=1,Skv=16,D=32' }) };
      for (const [what, e] of Object.entries(kernels)) {
        // esbuild and webpack resolve a literal import('node:...') for the browser and fail the build.
        for (const file of ['kernel.mjs', 'kernel-worker.mjs']) expect(e.files[file], `${what} ${file}`).not.toMatch(/import\(\s*['"`]node:/);
        const files = join(dir, what);
        mkdirSync(files);
        await writeEmittedWasm(e, files);
        // The bundle: kernel.mjs alone in another folder, its .wasm and worker files where they were.
        const bundle = join(dir, `${what}-bundle`);
        mkdirSync(bundle);
        writeFileSync(join(bundle, 'kernel.mjs'), e.files['kernel.mjs']!);
        writeFileSync(join(bundle, 'host.mjs'), `
          import { loadKernel, loadThreaded } from './kernel.mjs';
          const base = ${JSON.stringify(pathToFileURL(files).href)};
          const one = await loadKernel({ memory: new WebAssembly.Memory({ initial: 1 }), base });
          const two = await loadThreaded({ memory: new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }), threads: 2, base: new URL(base + '/') });
          two.close();
          const beside = await loadKernel({ memory: new WebAssembly.Memory({ initial: 1 }) }).then(() => 'loaded', (e) => e.code);
          const bad = await loadKernel({ memory: new WebAssembly.Memory({ initial: 1 }), base: 7 }).then(() => 'loaded', (e) => e.name);
          console.log(JSON.stringify({ one: one.workspaceSize, two: [two.threads, two.workspaceSize], beside, bad }));
        `);
        const workspace = e.manifest.workspaceBytes;
        expect(await nodeJson([], join(bundle, 'host.mjs')), what).toEqual({ one: workspace, two: [2, workspace], beside: 'ENOENT', bad: 'TypeError' });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the emitted loader\'s threads', () => {
  it('loadThreaded takes 1..maxThreads threads (a RangeError else), and its workers let Node exit without close() once the calls resolve', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-lifetime-'));
    try {
      const e = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=2,N=64,K=128' });
      await writeEmittedWasm(e, dir);
      const r = await threadedLoaderLifetime(dir, 'k.run(at.x, at.w, at.bias, at.residual, at.y, at.workspace)');
      // One thread per output row at most: N = 64 here.
      expect(r.maxThreads).toBe(64);
      const range = (v: string) => `RangeError: kgen_matmul_q4: threads must be an integer in [1, 64] (each thread computes at least one of the 64 output rows), not ${v}`;
      expect(r.refused).toEqual([...['0', '-1', '2.5', 'NaN', 'Infinity', '65', '1000'].map(range), 'TypeError: kgen_matmul_q4: threads must be a number, not string', 'TypeError: kgen_matmul_q4: threads must be a number, not undefined']);
      // The calls were queued, not awaited, when the script's body ended: the workers held the process until they resolved.
      expect(r.done).toBe(true);
      expect(e.files['kernel.d.mts']).toMatch(/The most threads loadThreaded takes: each thread computes at least one of the 64 output rows\. \*\/\nexport declare const maxThreads: 64;/);
      expect(e.files['kernel.d.mts']).toMatch(/any other number rejects with a RangeError/);
      expect(e.files['kernel.d.mts']).toMatch(/a script that never calls close\(\) still exits/);
      // A wide kernel: at most 256 threads, whatever N.
      const wide = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=4096,K=128' });
      expect(wide.files['kernel.mjs']).toContain('export const maxThreads = 256;');
      expect(wide.files['kernel.d.mts']).toContain('export declare const maxThreads: 256;');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('close() during a call rejects it, and the calls queued behind it, where terminate() fires no event (a browser\'s Worker)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-close-'));
    try {
      // spread 'always': attention's short calls go to the workers too.
      for (const [op, shape, options, call] of [
        ['matmul_q4', 'M=1,N=16,K=64', '', 'k.run(0, 0, 0, 0, 0, 0)'],
        ['attention_f16', 'B=1,Hq=4,Hkv=2,Sq=1,Skv=64,D=32', ", spread: 'always'", 'k.run(0, 0, 0, 0, 0, 0, 0)'],
      ] as const) {
        const e = emit({ target: 'wasm', op, shape });
        const files = join(dir, op);
        mkdirSync(files);
        await writeEmittedWasm(e, files);
        // The page: no \`process\` (so the loader takes the browser's Worker) and module Workers that
        // answer init, never finish a share, and fire nothing when terminate() ends them.
        writeFileSync(join(files, 'host.mjs'), `
          const { stdout } = process;
          globalThis.Worker = class {
            listeners = [];
            addEventListener(type, fn) { if (type === 'message') this.listeners.push(fn); }
            postMessage(m) { if (m.type === 'init') setTimeout(() => this.listeners.forEach((fn) => fn({ data: { type: 'ready' } }))); }
            terminate() {}
          };
          Object.defineProperty(globalThis, 'process', { value: undefined, configurable: true });
          const { loadThreaded } = await import('./kernel.mjs');
          const k = await loadThreaded({ memory: new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }), threads: 2${options} });
          const outcome = (p) => Promise.race([p.then(() => 'resolved', (e) => e.message), new Promise((r) => setTimeout(() => r('pending'), 2000))]);
          const inFlight = outcome(${call});
          const queued = outcome(${call});
          setTimeout(() => k.close(), 50);
          stdout.write(JSON.stringify({ inFlight: await inFlight, queued: await queued }) + '\\n');
        `);
        expect(await nodeJson([], join(files, 'host.mjs')), op).toEqual({ inFlight: expect.stringMatching(/worker: closed$/), queued: expect.stringMatching(/the kernel is closed/) });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the WebAssembly runner and emit', () => {
  it('the tuner\'s fingerprint names the engine, its flags, the CPU and the level the harness runs at', async () => {
    const { wasmFingerprint } = await import('../src/backends/wasm/fingerprint.js');
    const { getDevice } = await import('../src/device/index.js');
    const fp = await wasmFingerprint(getDevice('wasm-simd128'));
    expect(fp).toMatchObject({ profile: 'wasm-simd128', target: 'wasm', engine: `node ${process.version}`, v8: process.versions.v8 });
    // The level is the one a harness run takes on its own (auto), read from its first line.
    const e = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=8,K=64' });
    const build = await wasmRunner('auto').build(e.plan, e.rendered);
    if (build.status !== 'ok') throw new Error(build.status);
    const dataDir = mkdtempSync(join(tmpdir(), 'kgen-wasm-fp-'));
    try {
      for (const [name, bytes] of Object.entries(opKit('matmul').testData(e.plan.op, e.plan.shape, 1).inputs)) writeFileSync(join(dataDir, name), bytes);
      const { HARNESS_NODE_FLAGS } = await import('../src/backends/wasm/runner.js');
      const run = await execa(process.execPath, [...HARNESS_NODE_FLAGS, join(build.dir, 'harness.mjs'), dataDir, 'auto', '1'], { reject: false });
      expect(run.exitCode, run.stderr).toBe(0);
      expect(fp.level).toBe((JSON.parse(run.stdout.split('\n')[0]!) as { level: string }).level);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      build.dispose();
    }
  });

  it('a module that does not assemble is compile_error; a failing run is crash; a hang is timeout', async () => {
    const e = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=8,K=64' });
    const data = opKit('matmul').testData(e.plan.op, e.plan.shape, 1);
    const runner = wasmRunner('simd128');
    const bad = await runner.build(e.plan, { ...e.rendered, files: { ...e.rendered.files, 'kernel.wat': e.files['kernel.wat']!.replace('(func $rows', '(func $rows (i32.bogus)') } });
    expect(bad.status).toBe('compile_error');
    const rows = '(local $n0 i32) (local $n i32) (local $e i32) (local $s i32)';
    expect(e.files['kernel.wat']).toContain(rows);
    const variants = { crash: `${rows}\n    unreachable`, timeout: `${rows}\n    (loop $spin (br $spin))` };
    for (const [status, text] of Object.entries(variants)) {
      const build = await runner.build(e.plan, { ...e.rendered, files: { ...e.rendered.files, 'kernel.wat': e.files['kernel.wat']!.replace(rows, text) } });
      if (build.status !== 'ok') throw new Error(`${status}: ${build.status}`);
      // Only the hang gets a short limit: a crash must be told apart from a slow start on a busy machine.
      const run = await runner.execute(build, data.inputs, { timeoutMs: status === 'timeout' ? 3000 : 60_000 });
      build.dispose();
      expect(run.status, status).toBe(status);
    }
    const build = await runner.build(e.plan, e.rendered);
    if (build.status !== 'ok') throw new Error(build.status);
    const { 'w.bin': _w, ...noWeights } = data.inputs;
    const run = await runner.execute(build, noWeights);
    build.dispose();
    expect(run.status).toBe('crash');
  });

  it('a tune run on wasm-simd128 records trials under the wasm fingerprint, and emit then takes the best record', async () => {
    const { openTuningDb } = await import('../src/db/sqlite.js');
    const { getDevice } = await import('../src/device/index.js');
    const { CATALOG } = await import('../src/ir/catalog.js');
    const { tune } = await import('../src/tune/tuner.js');
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-tune-'));
    const db = openTuningDb(join(dir, 't.db'));
    try {
      const shape = { M: 1, N: 64, K: 256 };
      const summary = await tune({ db, device: getDevice('wasm-simd128'), target: 'wasm', workloads: [{ op: CATALOG.matmul_q4!, shape }], strategy: 'exhaustive', trials: 3, timeoutMs: 30_000, cacheDir: join(dir, 'cache') });
      const result = summary.results[0]!;
      expect(result.best?.status).toBe('ok');
      expect(result.workload.fingerprint).toMatchObject({ target: 'wasm', engine: `node ${process.version}` });
      expect(['simd128', 'relaxed']).toContain(result.workload.fingerprint.level);
      const e = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=64,K=256', records: db });
      expect(e.manifest.configSource).toBe('record');
      expect(e.plan.config).toMatchObject(result.best!.config);
    } finally {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('verify refuses --sanitize and --werror, which the WebAssembly runner would ignore, before building', async () => {
    const request = { target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=32,K=64' } as const;
    await expect(verify({ ...request, sanitize: true })).rejects.toMatchObject({ field: '--sanitize', message: expect.stringContaining('which has no sanitizer build') });
    await expect(verify({ ...request, werror: true })).rejects.toMatchObject({ field: '--werror', message: expect.stringContaining('no compiler warnings to fail on') });
    // A runner that states the switch is given it.
    const runner = { ...wasmRunner('auto'), buildFlags: ['werror'] as const };
    expect((await verify({ ...request, werror: true, runner })).status).toBe('ok');
  });

  it('tune refuses a --threads the WebAssembly harness cannot run before it registers the workload', async () => {
    const { openTuningDb } = await import('../src/db/sqlite.js');
    const { getDevice } = await import('../src/device/index.js');
    const { CATALOG } = await import('../src/ir/catalog.js');
    const { tune } = await import('../src/tune/tuner.js');
    const db = openTuningDb(':memory:');
    try {
      const session = (op: 'matmul_q4' | 'attention_f16', shape: Shape, threads: number) =>
        tune({ db, device: getDevice('wasm-simd128'), target: 'wasm', workloads: [{ op: CATALOG[op]!, shape }], strategy: 'random', trials: 1, threads, cacheDir: '/nonexistent-kgen-test-cache' });
      await expect(session('matmul_q4', { M: 1, N: 32, K: 64 }, 2)).rejects.toMatchObject({ field: '--threads', message: expect.stringContaining('runs one thread, not 2') });
      await expect(session('attention_f16', { B: 1, Hq: 2, Hkv: 1, Sq: 1, Skv: 30, D: 64 }, 17)).rejects.toMatchObject({ field: '--threads', message: expect.stringContaining('1 to 16 threads, not 17') });
      // Nothing half-done: no workload row without trials.
      expect(db.workloads()).toEqual([]);
    } finally {
      db.close();
    }
  });

  it('a timed run reports times and the level the probe picked runs', async () => {
    const e = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=64,K=256' });
    const data = opKit('matmul').testData(e.plan.op, e.plan.shape, 1);
    const runner = wasmRunner('auto');
    const build = await runner.build(e.plan, e.rendered);
    if (build.status !== 'ok') throw new Error(build.status);
    const run = await runner.execute(build, data.inputs, { timing: { warmup: 1, runs: 5, flushBytes: 0 } });
    build.dispose();
    expect(run.status).toBe('ok');
    if (run.status === 'ok') expect(run.timing!.runs).toBe(5);
  });

  it.each([{ N: 8, streamChunk: 256 }, { N: 64, streamChunk: 64 }])('block scales of every f16 class (negative, subnormal, infinite, NaN) are widened exactly by the 8-row kernels (%o)', async ({ N, streamChunk }) => {
    // One 64-weight q4 block per row, every code 9 (level +1), x all ones: y[n] = 64 x scale[n].
    // The 8-row kernels widen finite-only and redo a call's rows exactly where a scale is inf or NaN.
    // N = 8: one call of the per-row-pointer kernel. N = 64 in 8 streams of 8 rows: 8 calls of the
    // fixed-stride kernel on rows n, n + 8, .., n + 56, each seeing every class but the last
    // (rows 7, 15, .., 63), whose scales are all finite: no redo.
    const classes = [0x3c00, 0xbc00, 0x0001, 0x83ff, 0x7c00, 0xfc00, 0x7e00, 0xc500];
    const scales = Array.from({ length: N }, (_, n) => (N > 8 && n % 8 === 7 ? 0x3c00 + (n >> 3) : classes[(n + (n >> 3)) % 8]!));
    const f16 = (h: number) => (h & 0x8000 ? -1 : 1) * ((h & 0x7c00) === 0x7c00 ? (h & 0x3ff ? NaN : Infinity) : (h & 0x7c00 ? 1 + (h & 0x3ff) / 1024 : (h & 0x3ff) / 1024) * 2 ** Math.max(((h >> 10) & 31) - 15, -14));
    const K = 64;
    const e = emit({ target: 'wasm', op: 'matmul_q4', shape: `M=1,N=${N},K=${K}`, config: { isa: 'simd128', rowsPerIter: 8, nTile: 8, streamChunk } });
    const { memory, fn } = await instantiateSimd128(e);
    const at = { x: 64, w: 1024, y: 8192, ws: 12288 };
    const rowBytes = e.manifest.weights!.rowBytes;
    const view = new DataView(memory.buffer);
    for (let k = 0; k < K; k++) view.setFloat32(at.x + 4 * k, 1, true);
    for (let n = 0; n < N; n++) {
      view.setUint16(at.w + n * rowBytes, scales[n]!, true);
      for (let b = 2; b < rowBytes; b++) view.setUint8(at.w + n * rowBytes + b, 0x99);
    }
    fn('_prepare')(at.x, at.ws);
    fn('_rows')(at.ws, at.w, 0, 0, at.y, 0, N);
    const y = Array.from({ length: N }, (_, n) => view.getFloat32(at.y + 4 * n, true));
    for (let n = 0; n < N; n++) {
      const want = 64 * f16(scales[n]!);
      if (Number.isFinite(want)) expect(Math.abs(y[n]! - want), `row ${n}: ${y[n]} vs ${want}`).toBeLessThanOrEqual(1e-6 * Math.abs(want));
      else expect(y[n], `row ${n}`).toBe(want);
    }
  });

  it('f16 weights of every class (subnormal, largest, signed zero, inf, NaN) are exact: rows with an inf or NaN are done again with the exact widening', async () => {
    // x all ones. Rows 0-7 hold one finite f16 in every column: y = K x value, and no redo runs in
    // their 8-row call. Rows 8-15 hold 1 except one column: y = K - 1 + value, inf or NaN where it is.
    const finite = [0x3c00, 0xbc00, 0x0001, 0x83ff, 0x7bff, 0x0400, 0x8000, 0xc500];
    const odd = [0x7c00, 0xfc00, 0x7e00, 0xfe00, 0x3c00, 0x7c01, 0x0001, 0xfbff];
    const K = 64, N = finite.length + odd.length, column = 5;
    for (const M of [1, 3]) {
      const e = emit({ target: 'wasm', op: 'matmul_f16', shape: `M=${M},N=${N},K=${K}`, config: { rowsPerIter: 8, nTile: 8 } });
      const { memory, fn } = await instantiateSimd128(e);
      const at = { x: 64, w: 4096, y: 12288, ws: 16384 };
      const view = new DataView(memory.buffer);
      for (let i = 0; i < M * K; i++) view.setFloat32(at.x + 4 * i, 1, true);
      const bits = (n: number, k: number) => (n < finite.length ? finite[n]! : k === column ? odd[n - finite.length]! : 0x3c00);
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) view.setUint16(at.w + 2 * (n * K + k), bits(n, k), true);
      fn('_prepare')(at.x, at.ws);
      fn('_rows')(at.ws, at.w, 0, 0, at.y, 0, N);
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let want = 0;
          for (let k = 0; k < K; k++) want += f16BitsToF32(bits(n, k));
          const got = view.getFloat32(at.y + 4 * (m * N + n), true);
          if (Number.isFinite(want)) expect(Math.abs(got - want), `M=${M} row ${n}: ${got} vs ${want}`).toBeLessThanOrEqual(1e-6 * Math.abs(want) + 1e-12);
          else expect(got, `M=${M} row ${n}`).toBe(want);
        }
      }
    }
  });

  it('nibble sums at their bounds (codes 0 and 15 against activations of one sign) are exact at both levels, GEMV and tiles', async () => {
    // Every code 0 (level -8) or 15 (level +7), scales 1, x all +1, all -1 or alternating: y = level x sum(x).
    // The relaxed module sums four rows in wrapping i16 lanes: 32 products of 15 x 127 per lane wrap
    // there, and the corrected lanes reach -32512 (codes 0 against +127), the plan's bound.
    for (const format of ['q4', 'q4_0'] as const) {
      for (const M of [1, 3]) {
        const N = 12, K = 128;
        const e = emit({ target: 'wasm', op: `matmul_${format}`, shape: `M=${M},N=${N},K=${K}` });
        const { rowBytes, groupSize } = e.manifest.weights!;
        const blockBytes = rowBytes / (K / groupSize!);
        const w = new Uint8Array(N * rowBytes);
        for (let n = 0; n < N; n++) {
          for (let b = 0; b < rowBytes; b += blockBytes) {
            w.set([0x00, 0x3c], n * rowBytes + b);
            w.fill(n % 2 ? 0xff : 0x00, n * rowBytes + b + 2, n * rowBytes + b + blockBytes);
          }
        }
        const xRow = (m: number, k: number) => (m === 0 ? 1 : m === 1 ? -1 : k % 2 ? -1 : 1);
        const x = Float32Array.from({ length: M * K }, (_, i) => xRow(Math.floor(i / K), i % K));
        const inputs = { 'x.bin': new Uint8Array(x.buffer), 'w.bin': w };
        for (const level of ['relaxed', 'simd128'] as const) {
          const runner = wasmRunner(level);
          const build = await runner.build(e.plan, e.rendered);
          if (build.status !== 'ok') throw new Error(`${format} ${level}: ${build.status}`);
          const run = await runner.execute(build, inputs);
          build.dispose();
          if (run.status !== 'ok') throw new Error(`${format} ${level}: ${run.status}`);
          const y = new Float32Array(run.output.buffer, run.output.byteOffset, M * N);
          for (let m = 0; m < M; m++) {
            let sum = 0;
            for (let k = 0; k < K; k++) sum += xRow(m, k);
            for (let n = 0; n < N; n++) expect(y[m * N + n], `${format} ${level} M=${M} y[${m}, ${n}]`).toBeCloseTo((n % 2 ? 7 : -8) * sum, 3);
          }
        }
      }
    }
  });

  it('q3.5 relaxed: activation codes within the plan\'s range, and exact at the i16 pair sums\' bound against X rounded the same way', async () => {
    // The relaxed q3.5 dot adds a vector's two halves' i16 dots in i16: four products of a table
    // value (|w| <= 125) and a code a lane. A row's weights all at one table end (a pair's two
    // weights share a parity, so one sign a row) and a row of x of one sign, every |x| equal in its
    // block (every code +-actCodeMax), reach +-4 x 125 x actCodeMax in every lane: exact only
    // because the plan caps the codes (127 would wrap there).
    const N = 16, K = 128;
    const codec = codecOf({ format: 'q35' });
    for (const M of [1, 3]) {
      const e = emit({ target: 'wasm', op: 'matmul_q35', shape: `M=${M},N=${N},K=${K}` });
      const params = e.plan.params as CpuMatmulParams;
      const rounding = e.plan.tolerance.inputRounding!;
      expect(params.isa).toBe('relaxed');
      expect(params.i16PairSums).toBe(true);
      expect(params.actCodeMax).toBe(Math.floor(32767 / (4 * Q35_MAX_MAGNITUDE)));
      expect(rounding.codeMax).toBe(params.actCodeMax);
      const x = Float32Array.from({ length: M * K }, (_, i) => (1 + Math.floor(i / params.actBlock)) * (Math.floor(i / K) % 2 ? -0.5 : 1));
      const w = Float32Array.from({ length: N * K }, (_, i) => (1 + Math.floor(i / K) / 8) * (Math.floor(i / K) % 2 ? -1 : 1));
      const wBytes = quantizeMatrix(codec, w, N, K);
      const wq = dequantizeMatrix(codec, wBytes, N, K);
      // The bound is reached: every weight of a row decodes to the same magnitude (a table end).
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) expect(Math.abs(wq[n * K + k]!), `w[${n}, ${k}]`).toBe(Math.abs(wq[n * K]!));
      const xq = roundedInput(x, K, rounding);
      const runner = wasmRunner('relaxed');
      const build = await runner.build(e.plan, e.rendered);
      if (build.status !== 'ok') throw new Error(`M=${M}: ${build.status}`);
      const run = await runner.execute(build, { 'x.bin': new Uint8Array(x.buffer), 'w.bin': wBytes });
      build.dispose();
      if (run.status !== 'ok') throw new Error(`M=${M}: ${run.status}`);
      const y = new Float32Array(run.output.buffer, run.output.byteOffset, M * N);
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let want = 0;
          for (let k = 0; k < K; k++) want += wq[n * K + k]! * xq[m * K + k]!;
          expect(Math.abs(y[m * N + n]! - want), `M=${M} y[${m}, ${n}] = ${y[m * N + n]} vs ${want}`).toBeLessThanOrEqual(1e-5 * Math.abs(want));
        }
      }
    }
    // The codes prepare writes (the SIMD128 module's, the same quantizer; no sign record there):
    // within [-actCodeMax, actCodeMax], the block's largest |x| at actCodeMax itself.
    const M = 2;
    const e = emit({ target: 'wasm', op: 'matmul_q35', shape: `M=${M},N=${N},K=${K}` });
    const { actBlock, actCodeMax, xBlocks, workspaceBytes } = e.plan.params as CpuMatmulParams;
    const { memory, fn } = await instantiateSimd128(e);
    const at = { x: 64, ws: 4096 };
    const view = new DataView(memory.buffer);
    for (let i = 0; i < M * K; i++) view.setFloat32(at.x + 4 * i, Math.sin(1.3 * i) * (1 + (i % 7)), true);
    fn('_prepare')(at.x, at.ws);
    const stride = workspaceBytes / (M * xBlocks);
    for (let b = 0; b < M * xBlocks; b++) {
      const codes = Array.from({ length: actBlock }, (_, j) => Math.abs(view.getInt8(at.ws + b * stride + j)));
      expect(Math.max(...codes), `block ${b}`).toBe(actCodeMax);
    }
  });

  it('emit: kernel.wat, kernel.relaxed.wat and probe.wat, and the binaries emit -o writes beside them; f16 weights have one module', async () => {
    const q4 = emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=77,K=320' });
    expect(Object.keys(q4.files).sort()).toEqual(['kernel-worker.mjs', 'kernel.d.mts', 'kernel.mjs', 'kernel.relaxed.shared.wat', 'kernel.relaxed.wat', 'kernel.shared.wat', 'kernel.wat', 'manifest.json', 'probe.wat']);
    // The shared modules differ from the plain ones only in their memory import.
    const importLine = /\(import "env" "memory" \(memory [^)]*\)\)/;
    expect(q4.files['kernel.shared.wat']!.replace(importLine, '').replace(/;; Memory is imported \([^)]*\)/, '')).toBe(q4.files['kernel.wat']!.replace(importLine, '').replace(/;; Memory is imported \([^)]*\)/, ''));
    expect(q4.manifest.target).toBe('wasm');
    const bins = await q4.rendered.binaries!();
    if ('error' in bins) throw new Error(bins.error);
    expect(Object.keys(bins.files).sort()).toEqual(['kernel.relaxed.shared.wasm', 'kernel.relaxed.wasm', 'kernel.shared.wasm', 'kernel.wasm', 'probe.wasm']);
    // This process runs without relaxed SIMD in Node 20: only the SIMD128 module need validate here.
    expect(WebAssembly.validate(bins.files['kernel.wasm']! as Uint8Array<ArrayBuffer>)).toBe(true);
    const f16 = emit({ target: 'wasm', op: 'matmul_f16', shape: 'M=1,N=77,K=320' });
    expect(Object.keys(f16.files).filter((f) => f.includes('relaxed'))).toEqual([]);
    // Every number in the module comes from the plan: another shape changes the text.
    expect(emit({ target: 'wasm', op: 'matmul_q4', shape: 'M=1,N=78,K=320' }).files['kernel.wat']).not.toBe(q4.files['kernel.wat']);
  });
});

describe('buffers past 2 GiB of one 32-bit memory', () => {
  it('a shape whose tensors fit 4 GiB but whose workspace does not is a budget of the plan, naming the bytes', () => {
    // x 3 GiB of f32, y 0.5 GiB and the int8 activations' 1.5 GiB of workspace: 5.05 GiB placed.
    expect(() => emit({ target: 'wasm', op: 'matmul_q4_0', shape: 'M=32768,N=4096,K=24576' })).toThrow(
      /--shape: over budget: bytes of one 32-bit WebAssembly memory \(tensors, weights and workspace as placed\) needs \d+ bytes but 4294967296 are available; no config of matmul_q4_0 fits wasm-simd128 at this shape: split the op across calls .* or use the C target/,
    );
    // Q and O 1 GiB each, K and V 256 MiB each: 2.5 GiB of tensors, and Q as f32 in the workspace 2 GiB more.
    expect(() => emit({ target: 'wasm', op: 'attention_f16', shape: 'B=1,Hq=32,Hkv=8,Sq=131072,Skv=131072,D=128' })).toThrow(/over budget: bytes of one 32-bit WebAssembly memory/);
    const fits = emit({ target: 'wasm', op: 'matmul_q4_0', shape: 'M=1,N=4096,K=4096' }).plan.budgets.at(-1)!;
    expect(fits).toMatchObject({ available: 2 ** 32, unit: 'bytes' });
    expect(fits.needed).toBeGreaterThan(4096 * 4096 / 2);
  });

  it('the loader reads a workspace of 2 GiB as its byte count, not as a negative i32', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-wasm-2gib-'));
    try {
      // f16 X (1 GiB) prepared as f32: a workspace of exactly 2^31 bytes, within one memory.
      const ir = { kind: 'matmul', name: 'x16', x: 'f16', weight: { format: 'f16' }, y: 'f16', epilogue: { activation: 'none', bias: false, residual: false } };
      const e = emit({ target: 'wasm', ir, shape: 'M=32768,N=256,K=16384', config: { isa: 'simd128', actQuant: 'f32' } });
      expect((e.plan.params as { workspaceBytes: number }).workspaceBytes).toBe(2 ** 31);
      await writeEmittedWasm(e, dir);
      const loader = (await import(pathToFileURL(join(dir, 'kernel.mjs')).href)) as { loadKernel(o: { memory: WebAssembly.Memory }): Promise<{ workspaceSize: number }> };
      const k = await loader.loadKernel({ memory: new WebAssembly.Memory({ initial: 1 }) });
      expect(k.workspaceSize).toBe(2 ** 31);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
