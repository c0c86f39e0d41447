// kgen itself as an npm package (not the packages it emits: package.test.ts): what `npm pack`
// ships, and a consumer importing and running the packed tarball from a directory of its own.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { verify } from '../src/api/verify.js';
import { KgenError } from '../src/errors.js';
import { RUNTIME_FOLDERS } from '../src/package-files.js';
import { snapshot } from './helpers.js';

const ROOT = join(import.meta.dirname, '..');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string; bin: Record<string, string>; main: string; types: string; exports: Record<string, string | Record<string, string>>; dependencies: Record<string, string>;
};

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f)).filter((p) => statSync(p).isFile());
}

/** Every `docs/NAME.md` the source names (messages and TSDoc send readers there). */
function docsNamedBySource(): string[] {
  const named = filesUnder(join(ROOT, 'src')).flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/docs\/[A-Za-z]+\.md/g)].map((m) => m[0]));
  return [...new Set(named)].sort();
}

let work: string;
let shipped: Set<string>;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'kgen-npm-'));
  // --ignore-scripts: prepack/prepare would clean and rebuild dist (the suite runs on a built tree).
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const [info] = JSON.parse(out) as [{ filename: string; files: { path: string }[] }];
  shipped = new Set(info.files.map((f) => f.path));
  const app = join(work, 'app');
  mkdirSync(join(app, 'node_modules', 'kgen'), { recursive: true });
  execFileSync('tar', ['xzf', join(work, info.filename), '-C', join(app, 'node_modules', 'kgen'), '--strip-components=1']);
  // kgen's dependencies as npm would place them beside it; their own resolve from the checkout.
  for (const dep of Object.keys(PKG.dependencies)) {
    mkdirSync(join(app, 'node_modules', dep, '..'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', dep), join(app, 'node_modules', dep));
  }
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
}, 60_000);

describe('npm pack of kgen', () => {
  it('ships every file kgen reads at run time, its entry points and the docs its messages name', () => {
    const needed = [
      'package.json',
      ...RUNTIME_FOLDERS.flatMap((d) => filesUnder(join(ROOT, d)).map((f) => relative(ROOT, f))),
      ...Object.values(PKG.bin), PKG.main, PKG.types, ...Object.values(PKG.exports).flatMap((e) => (typeof e === 'string' ? [e] : Object.values(e))),
      ...docsNamedBySource(),
    ].map((p) => p.replace(/^\.\//, ''));
    expect(needed.filter((p) => !shipped.has(p))).toEqual([]);
  });

  it('ships no tests, bench, sources or source maps whose sources it leaves out', () => {
    const stray = [...shipped].filter((p) => /^(test|bench|src|scripts|\.ci|dist\/bench)\//.test(p) || p.endsWith('.map'));
    expect(stray).toEqual([]);
  });
});

describe('kgen installed from its tarball', () => {
  it('runs the CLI and the library from another directory, writing nothing inside the package', () => {
    const app = join(work, 'app');
    const before = snapshot(join(app, 'node_modules', 'kgen'));
    const kgen = join(app, 'node_modules', 'kgen', PKG.bin.kgen!);
    execFileSync(process.execPath, [kgen, 'emit', '--target', 'c', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=128', '--device', 'epyc-9654', '--no-records', '-o', 'out'], { cwd: app, stdio: 'ignore' });
    expect(readdirSync(join(app, 'out')).sort()).toEqual(['kernel.c', 'kernel.h', 'manifest.json']);
    writeFileSync(join(app, 'use.mjs'), `
      import { createRequire } from 'node:module';
      import { emit, pack, openTuningDb, KgenError } from 'kgen';
      // ts-morph (the TypeScript compiler) loads with the first declaration file, not with kgen.
      const morphLoaded = () => Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes('/ts-morph/'));
      const morphAtImport = morphLoaded();
      const db = openTuningDb('records/tuning.db');
      const { manifest } = emit({ target: 'wasm', op: 'matmul_q8_0', shape: 'M=1,N=32,K=64', records: db });
      db.close();
      const errors = [() => pack(null), () => emit(), () => pack({ format: 'q4_0', N: 1, K: 32, weights: [0] })].map((f) => {
        try { f(); return 'no error'; } catch (e) { return e instanceof KgenError ? e.field : String(e); }
      });
      // Tools find a package's folder and version through its package.json.
      const version = createRequire(import.meta.url)('kgen/package.json').version;
      console.log(JSON.stringify({ source: manifest.configSource, errors, morphAtImport, morphAfterEmit: morphLoaded(), version }));`);
    const out = JSON.parse(execFileSync(process.execPath, ['use.mjs'], { cwd: app, encoding: 'utf8' })) as unknown;
    expect(out).toEqual({ source: 'default', errors: ['pack options', 'kgen options', 'weights'], morphAtImport: false, morphAfterEmit: true, version: PKG.version });
    expect(snapshot(join(app, 'node_modules', 'kgen'))).toEqual(before);
  }, 60_000);

  it.each(['node16', 'bundler'])('type-checks in a strict consumer project (moduleResolution %s, no @types)', (resolution) => {
    const dir = join(work, 'app', `ts-${resolution}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'use.ts'), `
      import { emit, verify, openTuningDb, KgenError } from 'kgen';
      import type { ConfigSource, KernelRunner, RenderedKernel, TuningDb, OpenTuningDbOptions, TrialRow, TensorInfo, VerifyOptions } from 'kgen';
      const opts: OpenTuningDbOptions = { access: 'read' };
      const db: TuningDb = openTuningDb('t.db', opts);
      const e = emit({ target: 'c', op: 'matmul_q4', shape: 'M=1,N=64,K=128', records: db });
      const source: ConfigSource = e.manifest.configSource;
      const kernel: RenderedKernel = e.rendered;
      const tensors: TensorInfo[] = Object.values(e.manifest.tensors);
      const best: TrialRow | undefined = db.best(1);
      const runner: KernelRunner | undefined = undefined;
      const v: VerifyOptions = { target: 'c', op: 'matmul_q4', shape: { M: 1, N: 64, K: 128 }, ...(runner ? { runner } : {}) };
      export const used: unknown[] = [source, kernel, tensors, best, verify(v)];
      try { emit(v); } catch (err) { if (err instanceof KgenError) used.push(err.field, err.hint); }`);
    const module = resolution === 'node16' ? 'node16' : 'esnext';
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, module, moduleResolution: resolution, target: 'ES2022', noEmit: true, types: [], lib: ['ES2022'] }, files: ['use.ts'] }));
    // Exit status and output together: a type error names the file and what is missing.
    let errors = '';
    try {
      execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { cwd: dir, encoding: 'utf8' });
    } catch (err) {
      errors = String((err as { stdout?: string }).stdout);
    }
    expect(errors).toBe('');
  }, 60_000);
});

describe('library options from a JavaScript caller', () => {
  // No type checker stands between these and kgen: each is a KgenError naming the option, not a TypeError.
  const kernel = { target: 'wasm', op: 'matmul_q8_0', shape: 'M=1,N=32,K=64' };
  const fieldOf = async (call: () => unknown): Promise<string> => {
    try {
      await call();
      return 'no error';
    } catch (err) {
      return err instanceof KgenError ? err.field : String(err);
    }
  };

  it.each([
    ['seed', () => verify({ ...kernel, seed: '7' as never })],
    ['seed', () => verify({ ...kernel, seed: -1 })],
    ['timeoutMs', () => verify({ ...kernel, timeoutMs: -5 })],
    ['kgen options', () => verify(null as never)],
    ['command', () => verify({ ...kernel, command: 5 as never })],
    ['records', () => verify({ ...kernel, records: {} as never })],
    ['records', () => emit({ ...kernel, records: 'tuning.db' as never })],
    ['runner', () => verify({ ...kernel, runner: {} as never })],
    ['runner', () => verify({ ...kernel, runner: { name: 'mine', build: () => undefined } as never })],
    ['testData', () => verify({ ...kernel, testData: new Map() as never })],
  ])('%s', async (field, call) => {
    expect(await fieldOf(call)).toBe(field);
  });

  it('says what a records or runner object lacks and what to pass', () => {
    const err = (() => { try { emit({ ...kernel, records: { location: 'x.db' } as never }); } catch (e) { return e; } })();
    expect(err).toMatchObject({ field: 'records', problem: 'got an object without workloads(), trials()', expected: expect.stringContaining('openTuningDb') as unknown });
    expect((err as KgenError).hint).toMatch(/leave records out/);
  });
});
