import { cpSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

/**
 * The "add a target" recipe of docs/ARCHITECTURE.md, followed literally on a copy of the tree: the
 * files of test/fixtures/dummy-target (a planner file, a backend folder, a template folder, a
 * profile) plus one registry line, and nothing else. The copy must build, pass the layer check,
 * and take a trivial kernel of the new target through the whole pipeline: plan, emit, verify.
 */
const ROOT = join(import.meta.dirname, '..');
const FIXTURE = join(import.meta.dirname, 'fixtures', 'dummy-target');
const COPIED = ['src', 'templates', 'targets', 'tuning-db', 'bin', 'package.json', 'tsconfig.json', '.dependency-cruiser.cjs'];

function files(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p, base) : [relative(base, p)];
  });
}

describe('the "add a target" recipe', () => {
  it('a dummy target added by its files and one registry line plans, emits and verifies', async () => {
    const work = mkdtempSync(join(tmpdir(), 'kgen-recipe-'));
    for (const entry of COPIED) cpSync(join(ROOT, entry), join(work, entry), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(work, 'node_modules'), 'dir');
    const added = files(FIXTURE);
    cpSync(FIXTURE, work, { recursive: true });
    const registry = join(work, 'src', 'backends', 'registry.ts');
    const before = readFileSync(registry, 'utf8');
    const after = before
      .replace("import { cudaTarget } from './cuda/index.js';", "import { cudaTarget } from './cuda/index.js';\nimport { dummyTarget } from './dummy/index.js';")
      .replace('  wasm: wasmTarget,\n', '  wasm: wasmTarget,\n  dummy: dummyTarget,\n');
    expect(after.split('\n').length - before.split('\n').length, 'an import and one registry line').toBe(2);
    writeFileSync(registry, after);

    // Nothing but the new files and the registry changed: every other file is the repository's own.
    const changed = files(join(work, 'src')).map((f) => join('src', f)).concat(files(join(work, 'templates')).map((f) => join('templates', f)), files(join(work, 'targets')).map((f) => join('targets', f)))
      .filter((f) => !added.includes(f) && readFileSync(join(work, f), 'utf8') !== readFileSync(join(ROOT, f), 'utf8'));
    expect(changed).toEqual([join('src', 'backends', 'registry.ts')]);

    const run = (cmd: string, args: string[]) => execa(cmd, args, { cwd: work, reject: false, all: true, env: { ...process.env, KGEN_DB: join(work, 'none.db') } });
    const tsc = await run(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json']);
    expect(tsc.exitCode, tsc.all).toBe(0);
    const layers = await run(join(ROOT, 'node_modules', '.bin', 'depcruise'), ['src', '--config', '.dependency-cruiser.cjs']);
    expect(layers.exitCode, layers.all).toBe(0);

    const kgen = (args: string[]) => run(process.execPath, [join(work, 'bin', 'kgen'), ...args]);
    const request = ['--target', 'dummy', '--op', 'matmul_q8_0', '--shape', 'M=3,N=77,K=320'];
    const plan = await kgen(['plan', ...request]);
    expect(plan.exitCode, plan.all).toBe(0);
    expect(plan.all).toMatch(/matmul_q8_0 on dummy-cpu \(dummy\), variant loop/);
    const emitted = await kgen(['emit', ...request]);
    expect(emitted.exitCode, emitted.all).toBe(0);
    expect(emitted.all).toMatch(/export function matmul\(x, w\)/);
    const verified = await kgen(['verify', ...request, '--json']);
    expect(verified.exitCode, verified.all).toBe(0);
    expect(JSON.parse(verified.all!)).toMatchObject({ status: 'ok', ran: true, runner: 'node' });
    const ops = JSON.parse((await kgen(['ops', '--json'])).all!) as { name: string; renders: string[] }[];
    expect(ops.find((o) => o.name === 'matmul_q8_0')!.renders).toContain('dummy');
    // A format the dummy backend does not decode is refused by the one support check, naming it.
    const q4 = await kgen(['emit', '--target', 'dummy', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64']);
    expect(q4.exitCode).toBe(2);
    expect(q4.all).toMatch(/--op: the Dummy backend does not decode q4 weights/);
  }, 300_000);
});
