import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { pack } from '../src/api/pack.js';
import { codecOf, dequantizeMatrix } from '../src/quant/index.js';
import { Rng } from '../src/numeric/random.js';
import { durationText } from '../src/cli/tune.js';
import { openTuningDb } from '../src/db/sqlite.js';
import { getDevice } from '../src/device/index.js';
import { profileHash } from '../src/device/profile.js';
import { canonicalHash } from '../src/hash.js';
import { CATALOG } from '../src/ir/catalog.js';
import { opHash } from '../src/ir/validate.js';
import { KGEN_VERSION } from '../src/version.js';

const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
// A database path that does not exist: emit uses no records unless a test gives some.
const run = (args: string[]) => execa(KGEN, args, { reject: false, env: { ...process.env, KGEN_DB: join(tmpdir(), `kgen-cli-no-db-${process.pid}.db`) } });

function expectUsageError(r: { exitCode?: number; stderr: string; stdout: string }, pattern: RegExp): void {
  expect(r.exitCode).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
}

describe.concurrent('kgen CLI', () => {
  it('emit --symbol names a kernel\'s symbols, so two shapes of one op link into one program', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-symbol-'));
    for (const [name, shape] of [['q4_small', 'M=1,N=64,K=64'], ['q4_big', 'M=1,N=96,K=128']]) {
      const r = await run(['emit', '--op', 'matmul_q4', '--shape', shape, '--isa', 'scalar', '--symbol', name, '-o', join(dir, name)]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(readFileSync(join(dir, name, 'kernel.c'), 'utf8')).toContain(`--symbol ${name}`);
    }
    writeFileSync(join(dir, 'main.c'), '#include <stdio.h>\n#include "q4_small/kernel.h"\n#include "q4_big/kernel.h"\nint main(void) { printf("%zu %zu\\n", q4_small_workspace_size(), q4_big_workspace_size()); return 0; }\n');
    const gcc = await execa('gcc', ['-O2', '-o', join(dir, 'both'), join(dir, 'main.c'), join(dir, 'q4_small', 'kernel.c'), join(dir, 'q4_big', 'kernel.c'), '-lm'], { reject: false, all: true });
    if (gcc.exitCode === undefined || (gcc as { code?: string }).code === 'ENOENT') return; // no gcc here: the names are checked above
    expect(gcc.exitCode, gcc.all).toBe(0);
    expect((await execa(join(dir, 'both'))).stdout).toMatch(/^\d+ \d+$/);
    expectUsageError(await run(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64', '--symbol', '9x']), /--symbol: "9x" is not a C identifier/);
  });

  it('lists its commands and each has examples', async () => {
    const r = await run(['--help']);
    expect(r.exitCode).toBe(0);
    for (const c of ['emit', 'verify', 'pack', 'unpack', 'gguf', 'report', 'plan', 'ops', 'devices', 'tune', 'db']) {
      expect(r.stdout).toContain(c);
      const h = await run([c, '--help']);
      expect(h.exitCode).toBe(0);
      expect(h.stdout).toContain('Examples:');
    }
  });

  it('a flag that takes a value is refused when given twice (commander would keep the last)', async () => {
    const base = ['plan', '--shape', 'M=1,N=64,K=64'];
    expectUsageError(await run([...base, '--op', 'matmul_q4_0', '--op', 'matmul_q8_0']), /--op: given twice; .*drop the other/);
    expectUsageError(await run([...base, '--op', 'matmul_q4', '--config', '{"nTile":16}', '--config={"mTile":1}']), /--config: given twice/);
    expectUsageError(await run(['emit', ...base.slice(1), '--op', 'matmul_q4', '--data', '--data', '3', '-o', join(tmpdir(), 'kgen-twice')]), /--data: given twice/);
    // Given once, as always, it plans.
    expect((await run([...base, '--op', 'matmul_q4', '--config', '{}'])).exitCode).toBe(0);
  });

  it('emit -o writes kernel.c, kernel.h and manifest.json', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'kgen-cli-')), 'out');
    const r = await run(['emit', '--target', 'c', '--op', 'matmul_q35', '--shape', 'M=1,N=4096,K=4096', '--isa', 'avx2', '--device', 'epyc-7763', '-o', dir]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['kernel.c', 'kernel.h', 'manifest.json']);
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    expect(m).toMatchObject({ target: 'c', shape: { M: 1, N: 4096, K: 4096 }, config: { isa: 'avx2' }, configSource: 'given' });
    expect(m.weights).toMatchObject({ format: 'q35', groupSize: 64, bitsPerWeight: 3.75, rowBytes: 64 * 30 });
    expect(m.irHash).toMatch(/^[0-9a-f]{16}$/);
    expect(m.kgen).toMatch(/^\d+\.\d+\.\d+/);
    expect(m.footprint.length).toBeGreaterThan(0);
    expect(m.abi.map((a: { symbol: string }) => a.symbol)).toContain('kgen_matmul_q35_rows');
    expect(readFileSync(join(dir, 'kernel.h'), 'utf8')).toContain('void kgen_matmul_q35_rows(');
  });

  it('a failed emit leaves an existing output directory as it was', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'kgen-cli-'));
    const dir = join(parent, 'out');
    expect((await run(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64', '-o', dir])).exitCode).toBe(0);
    const before = readFileSync(join(dir, 'kernel.c'), 'utf8');
    const r = await run(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=100', '-o', dir]);
    expectUsageError(r, /--shape K: K=100 is not a multiple of the q4 group size 64/);
    expect(readFileSync(join(dir, 'kernel.c'), 'utf8')).toBe(before);
    expect(readdirSync(parent)).toEqual(['out']);
  });

  it('emit without -o prints the source', async () => {
    const r = await run(['emit', '--op', 'matmul_q8_0', '--shape', 'M=1,N=8,K=64', '--isa', 'scalar']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('void kgen_matmul_q8_0_rows(');
  });

  it('a default that falls back from the device\'s best ISA says why; a pinned ISA or a legal best says nothing', async () => {
    const shape = ['--op', 'attention_f16', '--shape', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=100,D=70', '--device', 'epyc-9654'];
    const r = await run(['emit', ...shape]);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(/^kgen: scalar kernel, not avx512: D is not a multiple of the ISA's f32 lanes/m);
    expect((await run(['emit', ...shape, '--isa', 'scalar'])).stderr).not.toMatch(/not avx512/);
    expect((await run(['emit', '--op', 'attention_f16', '--shape', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=100,D=64', '--device', 'epyc-9654'])).stderr).toBe('');
  });

  it('the tune progress bar\'s time left: seconds, minutes, hours', () => {
    expect([0, 44_600, 65_000, 3_599_000, 3_725_000].map(durationText)).toEqual(['0s', '45s', '1m 05s', '59m 59s', '1h 02m']);
  });

  it('user mistakes get one line and exit 2', async () => {
    expectUsageError(await run(['emit', '--op', 'matmul_q5', '--shape', 'M=1,N=8,K=64']), /--op: unknown op "matmul_q5"; expected one of matmul_q35/);
    expectUsageError(await run(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=8']), /--shape: dimension K is missing/);
    expectUsageError(await run(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64', '--target', 'metal']), /--target: unknown target "metal"/);
    expectUsageError(await run(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64', '--config', '{nTile:4}']), /--config: not valid JSON/);
    expectUsageError(await run(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64', '--device', 'tpu']), /--device: unknown device "tpu"/);
    expectUsageError(await run(['emitt']), /unknown command/);
    // Not the top-level help, as if the command existed; bench is an npm script.
    expectUsageError(await run(['emitt', '--help']), /^kgen: unknown command 'emitt' \(did you mean emit\?\); run `kgen --help`/);
    expectUsageError(await run(['bench', '--help']), /unknown command 'bench' \(benchmarks run from a checkout of kgen: `npm run bench`/);
  });

  it('an extra argument is named, with what the command takes (commander says only how many)', async () => {
    expectUsageError(await run(['emit', 'foo', '--target', 'c', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64']), /^kgen: unexpected argument "foo": emit takes flags only; if it is a flag's value, put its flag before it; run `kgen emit --help`/);
    expectUsageError(await run(['db', 'list', 'a', 'b']), /^kgen: unexpected argument "a" \(and 1 more\): db list takes flags only;.*run `kgen db list --help`/);
    expectUsageError(await run(['gguf', 'model.gguf', 'extra']), /^kgen: unexpected argument "extra": gguf takes <file> only;/);
  });

  it('a missing --shape is shown as the op needs it: attention B,Hq,Hkv,Sq,Skv,D, matmul M,N,K', async () => {
    const attention = /--shape: missing; expected dimensions like B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128$/m;
    expectUsageError(await run(['verify', '--target', 'c', '--op', 'attention_q8kv']), attention);
    expectUsageError(await run(['emit', '--target', 'cuda', '--op', 'attention_q4_0kv']), attention);
    const dir = mkdtempSync(join(tmpdir(), 'kgen-cli-'));
    writeFileSync(join(dir, 'att.json'), JSON.stringify({ kind: 'attention', name: 'att', kvCache: 'q8_0', causal: true }));
    expectUsageError(await run(['emit', '--ir', join(dir, 'att.json')]), attention);
    expectUsageError(await run(['emit', '--op', 'matmul_q4']), /--shape: missing; expected dimensions like M=1,N=4096,K=4096$/m);
    expectUsageError(await run(['tune', '--op', 'attention_f16', '--device', 'host']), attention);
  });

  it('verify and emit take attention on the C target (scalar: runs on any CPU)', async () => {
    const v = await run(['verify', '--target', 'c', '--op', 'attention_q4_0kv', '--shape', 'B=1,Hq=8,Hkv=2,Sq=3,Skv=70,D=64', '--isa', 'scalar', '--device', 'epyc-7763']);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/^ok: attention_q4_0kv c\/scalar B=1,Hq=8,Hkv=2,Sq=3,Skv=70,D=64/);
    const e = await run(['emit', '--target', 'c', '--op', 'attention_q4_0kv', '--shape', 'B=1,Hq=8,Hkv=2,Sq=3,Skv=70,D=64', '--isa', 'scalar', '--device', 'epyc-7763']);
    expect(e.exitCode, e.stderr).toBe(0);
    expect(e.stdout).toMatch(/KV cache ggml q4_0 in positions x heads rows \[1,70,2\]/);
  });

  // Kernels that round an input to int8 themselves: a matmul's activations X, attention's Q.
  const roundingCases = [
    { what: "int8 activations: a matmul's bound is widened by X's rounding", args: ['--op', 'matmul_q4', '--shape', 'M=3,N=37,K=320', '--config', '{"actQuant":"q8"}'], plan: '1\\.0e-8', rounding: { input: 'x', bits: 8, group: 64, factor: 1.25 } },
    { what: "int8 Q: the bound is widened by Q's rounding", args: ['--op', 'attention_q8_0kv', '--shape', 'B=1,Hq=8,Hkv=2,Sq=3,Skv=70,D=64', '--config', '{"qInt8":1}'], plan: '2\\.0e-6', rounding: { input: 'q', bits: 8, group: 32, factor: 1.25 } },
  ];
  for (const c of roundingCases) {
    it(`${c.what}, as verify says; emit --data writes that rounding's reference`, async () => {
      const args = ['--target', 'c', ...c.args, '--isa', 'scalar', '--device', 'epyc-7763'];
      const { input, group } = c.rounding;
      const v = await run(['verify', ...args]);
      expect(v.exitCode, v.stderr).toBe(0);
      expect(v.stdout).toMatch(new RegExp(`tolerance NMSE [\\d.e-]+: the plan's ${c.plan} plus 1\\.25x the error of rounding ${input} to int8 per ${group} values alone on these inputs`));
      const out = join(tmpdir(), `kgen-cli-rounded-${input}-${process.pid}`);
      rmSync(out, { recursive: true, force: true });
      try {
        const e = await run(['emit', ...args, '--data', '-o', out]);
        expect(e.exitCode, e.stderr).toBe(0);
        const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
        expect(m.tolerance.inputRounding).toEqual(c.rounding);
        expect(m.data.files['ref_rounded.bin']).toMatch(new RegExp(`from ${input} rounded to int8 per ${group} values as the kernel does`));
        // Copied out: a small file is read into Node's shared buffer pool.
        const f64 = (file: string) => new Float64Array(Uint8Array.from(readFileSync(join(out, file))).buffer);
        const ref = f64('ref.bin');
        const rounded = f64('ref_rounded.bin');
        expect(rounded.length).toBe(ref.length);
        // Close to the reference, not equal to it: the rounding's own error.
        const nmse = rounded.reduce((a, x, i) => a + (x - ref[i]!) ** 2, 0) / ref.reduce((a, x) => a + x * x, 0);
        expect(nmse).toBeGreaterThan(1e-6);
        expect(nmse).toBeLessThan(1e-3);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    });
  }

  it('plan marks the knobs a config does not use (a GEMV has no weight tile)', async () => {
    // A named profile, not host: test:hosts forces host to NEON and AVX2-only CPUs too.
    const r = await run(['plan', '--device', 'epyc-7763', '--op', 'matmul_q4', '--shape', 'M=1,N=4096,K=14336']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ {2}nTile: 32 \| .*; not in use for this config$/m);
    expect(r.stdout).toMatch(/^ {2}rowsPerIter: [^\n]*\)$/m);
    expect(r.stdout).toContain('the one activation row: each weight row read once');
    const gemm = await run(['plan', '--device', 'epyc-7763', '--op', 'matmul_q4', '--shape', 'M=16,N=4096,K=4096']);
    expect(gemm.stdout).toMatch(/^ {2}nTile: [^\n]*\)$/m);
  });

  it('an over-budget --config is refused with the budget and its bytes', async () => {
    const r = await run(['plan', '--target', 'cuda', '--device', 'rtx4090', '--op', 'matmul_q4', '--shape', 'M=256,N=4096,K=4096', '--config', '{"kernel":"tiled","bm":128,"bn":128,"bk":64,"stages":4}']);
    expectUsageError(r, /over budget: shared memory per block \(opt-in maximum\) \(rtx4090\) needs 180224 bytes but 101376 are available/);
  });

  it('--device FILE.json plans on the file\'s figures, its plan naming the device, and refuses a shipped profile\'s name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-cli-device-'));
    const webgpu = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'targets', 'webgpu.json'), 'utf8')) as { gpu: object };
    const phone = join(dir, 'phone.json');
    writeFileSync(phone, JSON.stringify({ ...webgpu, name: 'qa-cli-phone', gpu: { ...webgpu.gpu, maxWorkgroupSize: [64, 64, 64] } }));
    const request = ['--target', 'wgsl', '--device', phone, '--op', 'matmul_q4_0', '--shape', 'M=1,N=4096,K=4096'];
    const r = await run(['plan', ...request, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout) as Record<string, unknown> & { launch: { block: number[] } };
    expect(plan.device).toBe('qa-cli-phone');
    expect(plan).not.toHaveProperty('profile');
    expect(plan.launch.block[0]).toBeLessThanOrEqual(64);
    // db best reads the file once and plans on it: no records, so the default config.
    const db = join(dir, 'empty.db');
    openTuningDb(db).close();
    const best = await run(['db', 'best', ...request, '--db', db, '--json']);
    expect(best.exitCode, best.stderr).toBe(0);
    expect(JSON.parse(best.stdout)).toEqual({ source: 'default' });
    const t4 = join(dir, 't4.json');
    writeFileSync(t4, JSON.stringify({ ...webgpu, name: 't4' }));
    expectUsageError(await run(['plan', ...request.slice(0, 2), '--device', t4, ...request.slice(4)]), /t4\.json: name: invalid device profile; expected a name of its own \("t4" is a shipped profile\)/);
  });

  it('db best: records of other shapes whose best configs this shape rules out are named as such, not as no record', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-cli-nearest-'));
    try {
      const db = join(dir, 'tuning.db');
      const t = openTuningDb(db);
      const op = CATALOG.attention_f16!;
      const device = getDevice('wasm-simd128');
      const w = t.ensureWorkload({ device: device.name, fingerprint: { profile: device.name, target: 'wasm', profileHash: profileHash(device)! }, target: 'wasm', op, irHash: opHash(op), shape: { B: 1, Hq: 5, Hkv: 1, Sq: 5, Skv: 77, D: 64 }, templateHash: '0123456789abcdef', kgenVersion: KGEN_VERSION, bytes: 1e6, flops: 2e6, rooflineMs: 0.01 });
      // A query tile of 5: legal at Sq = 5, ruled out at Sq = 4 (qBlock exceeds Sq).
      const config = { isa: 'simd128', qBlock: 5, splits: 1, kvBlock: 128, pvInt: 0, rowGroup: 4, qInt8: 0, touch: 0 };
      t.addTrial(w.id, { uid: '00000000-0000-4000-8000-0000000b35f1', config, configHash: canonicalHash(config), status: 'ok', timing: { medianMs: 0.04, minMs: 0.039, maxMs: 0.05, spread: 0.05, runs: 21 }, origin: 'lab', createdAt: new Date().toISOString() });
      t.close();
      const best = (shape: string) => run(['db', 'best', '--device', 'wasm-simd128', '--op', 'attention_f16', '--shape', shape, '--db', db]);
      expect((await best('B=1,Hq=5,Hkv=1,Sq=5,Skv=78,D=64')).stdout).toMatch(/the nearest recorded shape/);
      const r = await best('B=1,Hq=5,Hkv=1,Sq=4,Skv=77,D=64');
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toBe('no record for attention_f16 on wasm-simd128 (wasm) whose config this shape takes (the best configs of its 1 recorded shape are not legal here); emit uses the default config');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('records of a profile file stop counting once a figure of the file changes: emit, db best, db list and report say so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-cli-figures-'));
    const { match: _match, ...epyc } = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'targets', 'epyc-7763.json'), 'utf8')) as { match: unknown; cpu: { l2Bytes: number } };
    const lab = join(dir, 'lab.json');
    writeFileSync(lab, JSON.stringify({ ...epyc, name: 'qa-cli-lab' }));
    // A record as another machine's `kgen db export` writes it: its fingerprint holds the profile's hash.
    const source = openTuningDb(':memory:');
    const op = CATALOG.matmul_q4!;
    const config = { isa: 'avx2', actQuant: 'q8', rowsPerIter: 2, mTile: 1, nTile: 8, unroll: 4, prefetch: 0 };
    const w = source.ensureWorkload({ device: 'qa-cli-lab', fingerprint: { profile: 'qa-cli-lab', target: 'c', profileHash: profileHash(getDevice(lab))! }, target: 'c', op, irHash: opHash(op), shape: { M: 1, N: 4096, K: 4096 }, weightFormat: 'q4', templateHash: '0123456789abcdef', kgenVersion: KGEN_VERSION, bytes: 1e6, flops: 2e6, rooflineMs: 0.01 });
    source.addTrial(w.id, { uid: '00000000-0000-4000-8000-00000000f19e', config, configHash: canonicalHash(config), status: 'ok', timing: { medianMs: 0.3, minMs: 0.29, maxMs: 0.4, spread: 0.05, runs: 21 }, origin: 'lab', createdAt: new Date().toISOString() });
    // And one of a shipped profile under another kgen's figures of it.
    const shipped = source.ensureWorkload({ ...w, device: 'epyc-7763', fingerprint: { profile: 'epyc-7763', target: 'c', profileHash: '0123456789abcdef' } });
    source.addTrial(shipped.id, { uid: '00000000-0000-4000-8000-00000000f19f', config, configHash: canonicalHash(config), status: 'ok', timing: { medianMs: 0.3, minMs: 0.29, maxMs: 0.4, spread: 0.05, runs: 21 }, origin: 'lab', createdAt: new Date().toISOString() });
    writeFileSync(join(dir, 'lab-records.json'), JSON.stringify(source.exportAll()));
    source.close();
    const db = join(dir, 'tuning.db');
    const imported = await run(['db', 'import', join(dir, 'lab-records.json'), '--db', db]);
    expect(imported.exitCode, imported.stderr).toBe(0);
    const request = ['--target', 'c', '--device', lab, '--op', 'matmul_q4', '--shape', 'M=1,N=4096,K=4096', '--db', db];
    const emitted = async (out: string) => {
      const r = await run(['emit', ...request, '-o', join(dir, out)]);
      expect(r.exitCode, r.stderr).toBe(0);
      return { stderr: r.stderr, manifest: JSON.parse(readFileSync(join(dir, out, 'manifest.json'), 'utf8')) as { configSource: string } };
    };
    expect((await emitted('before')).manifest.configSource).toBe('record');

    writeFileSync(lab, JSON.stringify({ ...epyc, name: 'qa-cli-lab', cpu: { ...epyc.cpu, l2Bytes: epyc.cpu.l2Bytes * 2 } }));
    const after = await emitted('after');
    expect(after.manifest.configSource).toBe('default');
    expect(after.stderr).toMatch(/^kgen: passed over 1 tuning record of qa-cli-lab \(c, matmul_q4\): tuned under other figures of its profile .*so the default config is taken instead; run `kgen tune` to measure under these figures$/m);
    const best = await run(['db', 'best', ...request]);
    expect(best.stdout).toMatch(/^no record for matmul_q4 on qa-cli-lab \(c\) under its current figures; emit uses the default config$/m);
    expect(best.stderr).toMatch(/passed over 1 tuning record/);
    const list = await run(['db', 'list', '--db', db, '--device', lab]);
    expect(list.stdout).toMatch(/^\d+ +qa-cli-lab \(other figures\) +c +matmul_q4 /m);
    // Without the file kgen knows no qa-cli-lab: the record is listed as it is; a shipped profile's figures kgen knows.
    const all = (await run(['db', 'list', '--db', db])).stdout;
    expect(all).toMatch(/^\d+ +qa-cli-lab +c +matmul_q4 /m);
    expect(all).toMatch(/^2 +epyc-7763 \(other figures\) +c +matmul_q4 /m);
    expect((await run(['db', 'show', '2', '--db', db])).stdout).toMatch(/^tuned under other figures of its profile \(profile hash 0123456789abcdef; the profile now hashes to [0-9a-f]{16}\): emit passes these records over$/m);
    const report = await run(['report', '--db', db, '--json', '--device', lab]);
    expect(report.exitCode, report.stderr).toBe(0);
    // The file's roofline is not the one the record was tuned under: none is drawn for it.
    expect((JSON.parse(report.stdout) as { devices: object[] }).devices).toEqual([expect.objectContaining({ device: 'qa-cli-lab', figures: 'other' })]);
    expect((JSON.parse(report.stdout) as { devices: Array<{ roof?: object }> }).devices[0]!.roof).toBeUndefined();
  });

  it('refuses a user IR that tries to smuggle C into the source', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-cli-'));
    const ir = join(dir, 'op.json');
    writeFileSync(ir, JSON.stringify({ kind: 'matmul', name: 'x(void){system("id");}\nvoid y', weight: { format: 'q4' } }));
    expectUsageError(await run(['emit', '--ir', ir, '--shape', 'M=1,N=8,K=64']), /ir\.name: got .*; expected a lower-case identifier/);
    writeFileSync(ir, JSON.stringify({ kind: 'matmul', name: 'ok_name', weight: { format: 'q4' }, epilogue: { activation: 'relu);//' } }));
    expectUsageError(await run(['emit', '--ir', ir, '--shape', 'M=1,N=8,K=64']), /ir\.epilogue\.activation/);
    writeFileSync(ir, '{not json');
    expectUsageError(await run(['emit', '--ir', ir, '--shape', 'M=1,N=8,K=64']), /--ir: .* is not valid JSON/);
  });

  it('verify prints the errors and exits 0', async () => {
    const r = await run(['verify', '--op', 'matmul_q4_0', '--shape', 'M=3,N=77,K=320', '--isa', 'avx2', '--device', 'epyc-7763']);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok: matmul_q4_0 c\/avx2 M=3,N=77,K=320: max abs error \S+, NMSE \S+/);
    const j = await run(['verify', '--op', 'matmul_q8', '--shape', 'M=1,N=77,K=320', '--isa', 'scalar', '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ status: 'ok', ran: true, runner: 'native' });
  });

  it('pack writes the same bytes as the library', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-cli-'));
    const w = new Rng(5).fillNormal(new Float32Array(8 * 64));
    writeFileSync(join(dir, 'w.f32'), new Uint8Array(w.buffer));
    const r = await run(['pack', '--format', 'q4_0', '--shape', 'N=8,K=64', '--in', join(dir, 'w.f32'), '-o', join(dir, 'w.q4_0')]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(new Uint8Array(readFileSync(join(dir, 'w.q4_0')))).toEqual(pack({ format: 'q4_0', N: 8, K: 64, weights: w }).bytes);
    // The shape given to emit works too: M does not change the weights.
    const withM = await run(['pack', '--format', 'q4_0', '--shape', 'M=3,K=64,N=8', '--in', join(dir, 'w.f32'), '-o', join(dir, 'w2.q4_0')]);
    expect(withM.exitCode, withM.stderr).toBe(0);
    expect(readFileSync(join(dir, 'w2.q4_0'))).toEqual(readFileSync(join(dir, 'w.q4_0')));
    expectUsageError(await run(['pack', '--format', 'q4_0', '--shape', 'N=8', '--in', join(dir, 'w.f32'), '-o', join(dir, 'bad')]), /--shape: dimension K is missing/);
    expectUsageError(await run(['pack', '--format', 'q4_0', '--shape', 'N=8,K=64,D=2', '--in', join(dir, 'w.f32'), '-o', join(dir, 'bad')]), /--shape: unknown dimension "D"/);
    expectUsageError(await run(['pack', '--format', 'q4_0', '--shape', 'N=9,K=64', '--in', join(dir, 'w.f32'), '-o', join(dir, 'bad')]), /--in: holds 512 values but N\*K = 576/);
    // f16's block is 2 weights, but its kernels take K in multiples of 32: pack refuses what no kernel
    // takes (the even K=16 passed the block check), before reading the input.
    expectUsageError(await run(['pack', '--format', 'f16', '--shape', 'N=32,K=16', '--in', join(dir, 'w.f32'), '-o', join(dir, 'bad')]), /--shape K: K=16 is not a multiple of 32; expected K divisible by 32 for f16 weights .*pad K to 32 with zero weights/);
    expect((await run(['pack', '--format', 'f16', '--shape', 'N=8,K=64', '--in', join(dir, 'w.f32'), '-o', join(dir, 'w.f16')])).exitCode).toBe(0);
    expect(existsSync(join(dir, 'bad'))).toBe(false);
  });

  it('pack writes a sidecar; unpack checks it, returns the values kernels compute with, and refuses bytes of another layout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-cli-'));
    const w = new Rng(9).fillNormal(new Float32Array(6 * 128));
    writeFileSync(join(dir, 'w.f32'), new Uint8Array(w.buffer));
    const at = (name: string) => join(dir, name);
    const decoded = (name: string) => new Float32Array(new Uint8Array(readFileSync(at(name))).buffer);
    for (const format of ['q35', 'q4_0'] as const) {
      const packed = await run(['pack', '--format', format, '--shape', 'N=6,K=128', '--in', at('w.f32'), '-o', at(`w.${format}`)]);
      expect(packed.exitCode, packed.stderr).toBe(0);
      const sidecar = JSON.parse(readFileSync(at(`w.${format}.json`), 'utf8'));
      const lib = pack({ format, N: 6, K: 128, weights: w });
      expect(sidecar).toMatchObject({ kind: 'kgen-packed-weights', format, formatVersion: format === 'q35' ? 2 : 1, N: 6, K: 128, bytes: lib.bytes.length, sha256: createHash('sha256').update(lib.bytes).digest('hex') });
      const r = await run(['unpack', '--in', at(`w.${format}`), '-o', at(`d.${format}.f32`)]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(decoded(`d.${format}.f32`)).toEqual(dequantizeMatrix(codecOf(lib.spec), lib.bytes, 6, 128));
    }
    // Raw bytes without a sidecar: described by flags where the format never changed layout...
    writeFileSync(at('raw.q4_0'), readFileSync(at('w.q4_0')));
    const raw = await run(['unpack', '--in', at('raw.q4_0'), '--format', 'q4_0', '--shape', 'N=6,K=128', '-o', at('raw.f32')]);
    expect(raw.exitCode, raw.stderr).toBe(0);
    expect(decoded('raw.f32')).toEqual(decoded('d.q4_0.f32'));
    expectUsageError(await run(['unpack', '--in', at('raw.q4_0'), '-o', at('x.f32')]), /--in: .*raw\.q4_0 has no sidecar/);
    expectUsageError(await run(['unpack', '--in', at('raw.q4_0'), '--format', 'q4_0', '--shape', 'N=7,K=128', '-o', at('x.f32')]), /has 432 bytes but q4_0 N=7,K=128 takes 504/);
    // ...but never for q35, whose layout-1 bytes look the same as layout 2's.
    writeFileSync(at('raw.q35'), readFileSync(at('w.q35')));
    expectUsageError(await run(['unpack', '--in', at('raw.q35'), '--format', 'q35', '--shape', 'N=6,K=128', '-o', at('x.f32')]), /cannot be told apart from q35 layout 1.*pack the f32 weights again/);
    // A sidecar of layout 1 (what a kgen before layout 2 would say) is refused, not misread.
    const v1 = { ...JSON.parse(readFileSync(at('w.q35.json'), 'utf8')), formatVersion: 1 };
    writeFileSync(at('old.q35'), readFileSync(at('w.q35')));
    writeFileSync(at('old.q35.json'), JSON.stringify(v1));
    expectUsageError(await run(['unpack', '--in', at('old.q35'), '-o', at('x.f32')]), /--in: .*old\.q35 holds q35 bytes of layout 1 .*this kgen reads q35 layout 2/);
    // A sidecar edited by hand: its N against its byte count, its rowBytes against the format.
    const good = JSON.parse(readFileSync(at('w.q35.json'), 'utf8'));
    writeFileSync(at('old.q35.json'), JSON.stringify({ ...good, N: 7 }));
    expectUsageError(await run(['unpack', '--in', at('old.q35'), '-o', at('x.f32')]), new RegExp(`sidecar: names q35 \\(group 64\\) at N=7,K=128, which takes ${good.rowBytes} bytes a row \\(${7 * good.rowBytes} in all\\), but it also says ${good.rowBytes} a row \\(${good.bytes} in all\\), as .*old\\.q35's size does`));
    writeFileSync(at('old.q35.json'), JSON.stringify({ ...good, rowBytes: good.rowBytes + 1 }));
    expectUsageError(await run(['unpack', '--in', at('old.q35'), '-o', at('x.f32')]), new RegExp(`sidecar: names q35 \\(group 64\\) at N=6,K=128, which takes ${good.rowBytes} bytes a row .*but it also says ${good.rowBytes + 1} a row`));
    // A sidecar edited to name another format says what mismatches, never that the bytes are old
    // (q35 is at layout 2 and the q4_0 sidecar says layout 1), and the bytes cut short are the file's fault.
    writeFileSync(at('other.q4_0'), readFileSync(at('w.q4_0')));
    const q4_0 = JSON.parse(readFileSync(at('w.q4_0.json'), 'utf8'));
    for (const [format, pattern] of [
      ['q35', /--in sidecar: names q35 \(group 32\) at N=6,K=128, which takes 64 bytes a row \(384 in all\), but it also says 72 a row \(432 in all\), as .*other\.q4_0's size does; .*the sidecar was edited or belongs to other bytes/],
      ['q8_0', /--in sidecar: names q8_0 \(group 32\) at N=6,K=128, which takes 136 bytes a row/],
      ['f16', /--in sidecar: names f16 \(group 32\) at N=6,K=128, but f16 weights have no scale groups; .*the sidecar was edited/],
    ] as const) {
      writeFileSync(at('other.q4_0.json'), JSON.stringify({ ...q4_0, format }));
      const r = await run(['unpack', '--in', at('other.q4_0'), '-o', at('x.f32')]);
      expectUsageError(r, pattern);
      expect(r.stderr).not.toMatch(/layout 1|old/);
    }
    writeFileSync(at('other.q4_0.json'), JSON.stringify(q4_0));
    writeFileSync(at('other.q4_0'), readFileSync(at('w.q4_0')).subarray(0, 400));
    expectUsageError(await run(['unpack', '--in', at('other.q4_0'), '-o', at('x.f32')]), /--in: .*other\.q4_0 has 400 bytes but its sidecar says 432; .*cut short or replaced/);
    // Bytes changed after packing, and sidecars kgen did not write.
    const bytes = new Uint8Array(readFileSync(at('w.q4_0')));
    bytes[5] ^= 1;
    writeFileSync(at('w.q4_0'), bytes);
    expectUsageError(await run(['unpack', '--in', at('w.q4_0'), '-o', at('x.f32')]), /does not match its sidecar's sha256/);
    writeFileSync(at('w.q4_0.json'), '{"kind": "kgen-packed-weights", "format": "q9"}');
    expectUsageError(await run(['unpack', '--in', at('w.q4_0'), '-o', at('x.f32')]), /--in sidecar\.format: missing or malformed/);
    writeFileSync(at('w.q4_0.json'), '{');
    expectUsageError(await run(['unpack', '--in', at('w.q4_0'), '-o', at('x.f32')]), /--in sidecar: .*not valid JSON/);
    expect(existsSync(at('x.f32'))).toBe(false);
    // pack refuses to replace either file without --force, and writes neither then.
    writeFileSync(at('only.q4.json'), 'mine');
    expectUsageError(await run(['pack', '--format', 'q4', '--shape', 'N=6,K=128', '--in', at('w.f32'), '-o', at('only.q4')]), /only\.q4\.json already exists/);
    expect(existsSync(at('only.q4'))).toBe(false);
    expect(readFileSync(at('only.q4.json'), 'utf8')).toBe('mine');
  });

  it('ops and devices print tables and JSON', async () => {
    const ops = JSON.parse((await run(['ops', '--json'])).stdout);
    expect(ops.map((o: { name: string }) => o.name)).toEqual(['matmul_q35', 'matmul_q4', 'matmul_q8', 'matmul_q4_0', 'matmul_q8_0', 'matmul_f16', 'attention_f16', 'attention_q8kv', 'attention_q8_0kv', 'attention_q4_0kv']);
    const devices = JSON.parse((await run(['devices', '--json'])).stdout);
    const names = devices.map((d: { name: string }) => d.name);
    for (const n of ['host', 'rtx4090', 'a100-80gb', 'h100-sxm', 'l40s', 'epyc-7763', 'epyc-9654', 'xeon-8592', 'apple-m2', 'webgpu', 'swiftshader', 'wasm-simd128']) expect(names).toContain(n);
    expect(devices.find((d: { name: string }) => d.name === 'host').present).toBe(true);
    expect((await run(['devices'])).stdout).toMatch(/^\*\s+host/m);
  });

  it('devices says, in its table and its --help, that --device also takes a profile file', async () => {
    const line = /^Another device: write its profile \(like targets\/webgpu\.json\) and pass --device FILE\.json to emit, verify, plan or tune/m;
    expect((await run(['devices'])).stdout).toMatch(line);
    expect((await run(['devices', '--help'])).stdout).toMatch(line);
  });
});
