import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { npmPackageName } from '../src/api/package.js';
import { packageLibraryName } from '../src/backends/c-family.js';
import { cannotRunReason } from '../src/backends/c/runner.js';
import { SHIM_COMPILER, SHIM_FLAGS, shimDir } from '../src/backends/cuda/runner.js';
import { openTuningDb } from '../src/db/sqlite.js';
import { swiftShaderIcd } from '../src/device/index.js';
import { canonicalHash } from '../src/hash.js';
import { CATALOG } from '../src/ir/catalog.js';
import type { MatmulOp } from '../src/ir/types.js';
import { opHash, parseShape, validateOp } from '../src/ir/validate.js';
import { opKit } from '../src/ops/index.js';
import { KGEN_VERSION } from '../src/version.js';
import { EPILOGUE_IRS, skipReason } from './helpers.js';

const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
const run = (args: string[], cwd?: string) => execa(KGEN, args, { reject: false, cwd });

// The best x86 variant this CPU runs, so the package's kernels run here (scalar elsewhere).
const ISA = cannotRunReason('avx2') === undefined ? 'avx2' : 'scalar';
const DEVICE = 'epyc-7763';

/** The kernels of the package: ragged shapes, three formats, one with bias and an activation. */
const KERNELS = [
  { op: 'matmul_q4_0', shape: 'M=1,N=77,K=320', isa: ISA },
  { op: 'matmul_q8', shape: 'M=3,N=40,K=128', isa: 'scalar' },
  { ir: EPILOGUE_IRS[0], shape: 'M=5,N=21,K=384', isa: ISA, name: 'ffn_gate' },
];

/**
 * A C program written as a user would: it includes the package's one header, calls every kernel's
 * all-rows entry point on inputs read from files, and writes each output.
 */
function driver(kernels: { symbol: string; hasBias: boolean; hasResidual: boolean; xBytes: number; yBytes: number; M: number; K: number; N: number }[]): string {
  const calls = kernels.map((k, i) => `
  {
    void *x = load("x${i}.bin", ${k.M * k.K * k.xBytes}), *y = malloc(${k.M * k.N * k.yBytes});
    uint8_t *w = load("w${i}.bin", 0);
    ${k.hasBias ? `float *bias = load("bias${i}.bin", ${k.N * 4});` : 'float *bias = NULL;'}
    ${k.hasResidual ? `void *residual = load("residual${i}.bin", ${k.M * k.N * k.yBytes});` : 'void *residual = NULL;'}
    void *ws = malloc(${k.symbol}_workspace_size());
    ${k.symbol}(x, w, bias, residual, y, ws);
    save("y${i}.bin", y, ${k.M * k.N * k.yBytes});
  }`).join('');
  return `#include <stdio.h>
#include <stdlib.h>
#include "kgen_kernels.h"
static void *load(const char *path, long expect) {
  FILE *f = fopen(path, "rb"); if (!f) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
  if (expect && n != expect) { fprintf(stderr, "%s: %ld bytes, expected %ld\\n", path, n, expect); exit(2); }
  void *p = malloc(n); if (fread(p, 1, n, f) != (size_t)n) exit(2); fclose(f); return p;
}
static void save(const char *path, const void *p, long n) { FILE *f = fopen(path, "wb"); fwrite(p, 1, n, f); fclose(f); }
int main(void) {${calls}
  return 0;
}
`;
}


/** What emitJsPackage made: the package folder, its kernels' names and a scratch project with it installed. */
interface JsPackage {
  dir: string;
  scratch: string;
  names: string[];
}

/**
 * `kgen emit --package` of `kernels`, then as a user would: `npm pack` of the folder and `npm
 * install` of the .tgz into a new scratch project (offline: the package has no dependencies).
 */
async function emitJsPackage(dir: string, target: string, device: string, kernels: object[], packageName: string): Promise<JsPackage> {
  writeFileSync(join(dir, 'layer.json'), JSON.stringify(kernels));
  const pkgDir = join(dir, 'pkg');
  const r = await run(['emit', '--target', target, '--device', device, '--kernels', join(dir, 'layer.json'), '--package', pkgDir, '--package-name', packageName, '--no-records']);
  expect(r.exitCode, r.stderr).toBe(0);
  // A name npm would refuse ("Layer0 WASM") is made valid, and said; a valid one is used as is.
  if (packageName !== packageName.toLowerCase() || packageName.includes(' ')) expect(r.stderr).toMatch(/--package-name "[^"]+" is not a valid npm name, so package\.json names the package "layer0-/);
  else expect(r.stderr).not.toMatch(/--package-name/);
  const index = JSON.parse(readFileSync(join(pkgDir, 'kgen-package.json'), 'utf8')) as { kernels: { name: string }[] };
  const npmEnv = { npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  const packed = await execa('npm', ['pack', '--silent', '--pack-destination', dir], { cwd: pkgDir, reject: false, env: npmEnv });
  expect(packed.exitCode, packed.stderr).toBe(0);
  const tgz = packed.stdout.trim().split('\n').pop()!;
  const scratch = join(dir, 'scratch');
  mkdirSync(scratch);
  writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', private: true, type: 'module' }));
  const installed = await execa('npm', ['install', '--offline', join(dir, tgz)], { cwd: scratch, reject: false, env: npmEnv });
  expect(installed.exitCode, installed.stderr).toBe(0);
  return { dir: pkgDir, scratch, names: index.kernels.map((k) => k.name) };
}

/** Each kernel's seeded inputs as NAME.x.bin, NAME.w.bin, ... in `dir`; returns each kernel's test data. */
function writeKernelInputs(dir: string, kernels: { op?: string; ir?: unknown; shape: string }[], names: string[]) {
  return kernels.map((k, i) => {
    const op = (k.op ? CATALOG[k.op]! : validateOp(k.ir)) as MatmulOp;
    const shape = parseShape(k.shape, op) as { M: number; N: number; K: number };
    const d = opKit('matmul').testData(op, shape, 21 + i);
    for (const [file, bytes] of Object.entries(d.inputs)) writeFileSync(join(dir, `${names[i]}.${file}`), bytes);
    return { ...d, outputBytes: opKit('matmul').outputBytes(op, shape) };
  });
}

/** Every kernel's NAME.y.bin in the scratch project against the reference, under its manifest's tolerance. */
function checkOutputs(pkg: JsPackage, data: ReturnType<typeof writeKernelInputs>): void {
  data.forEach((d, i) => {
    const name = pkg.names[i]!;
    const manifest = JSON.parse(readFileSync(join(pkg.dir, name, 'manifest.json'), 'utf8'));
    const { ok, comparison } = d.check(new Uint8Array(readFileSync(join(pkg.scratch, `${name}.y.bin`))), manifest.tolerance);
    expect(ok, `${name}: ${JSON.stringify(comparison)}`).toBe(true);
  });
}

/** tsc --strict on a host file, as a user's project would check it (Node's types for WebAssembly; more type roots for @webgpu/types). */
function tsc(file: string, ...typeRoots: string[]) {
  const root = join(import.meta.dirname, '..');
  const roots = [join(root, 'node_modules/@types'), ...typeRoots].join(',');
  return execa(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', roots, file], { reject: false });
}

/** The environment Dawn needs for SwiftShader here (Debian's chromium ships the ICD and Vulkan loader). */
function swiftShaderEnvFor(): Record<string, string> {
  const icd = swiftShaderIcd()!;
  return { VK_ICD_FILENAMES: icd, LD_LIBRARY_PATH: dirname(icd) };
}
const noDawn = swiftShaderIcd() ? undefined : 'no SwiftShader Vulkan ICD (scripts/install-tools.sh installs chromium)';

describe('kgen emit --package', () => {
  const missing = skipReason(['cc', 'make']);
  it.skipIf(missing !== undefined)('a C package builds with make outside the repo, and a program linking it computes every kernel right', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    // A tuning record for the q4_0 kernel: the package says where its config came from.
    const dbPath = join(dir, 'tuning.db');
    const db = openTuningDb(dbPath);
    const op = CATALOG.matmul_q4_0! as MatmulOp;
    const w = db.ensureWorkload({ device: DEVICE, fingerprint: { profile: DEVICE, cpu: 'AMD EPYC 7763 64-Core Processor', 'compiler:gcc': '12.2.0' }, target: 'c', op, irHash: opHash(op), shape: parseShape('M=1,N=77,K=320', op), weightFormat: 'q4_0', templateHash: '0123456789abcdef', kgenVersion: KGEN_VERSION, bytes: 1e5, flops: 5e4, rooflineMs: 0.001 });
    const tuned = { isa: ISA, actQuant: 'q8', rowsPerIter: 2, mTile: 1, nTile: 16, unroll: 1, prefetch: 0 };
    db.addTrial(w.id, { uid: '00000000-0000-4000-8000-000000000001', config: tuned, configHash: canonicalHash(tuned), status: 'ok', timing: { medianMs: 0.0123, minMs: 0.012, maxMs: 0.013, spread: 0.02, runs: 20 }, origin: 'test', createdAt: '2026-11-30T12:00:00.000Z' });
    db.close();
    writeFileSync(join(dir, 'layer.json'), JSON.stringify(KERNELS.map(({ isa, ...k }) => (k.op === 'matmul_q4_0' ? k : { ...k, isa }))));
    const pkg = join(dir, 'pkg');
    const r = await run(['emit', '--target', 'c', '--device', DEVICE, '--kernels', join(dir, 'layer.json'), '--package', pkg, '--db', dbPath]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/matmul_q4_0_m1_n77_k320: config from the tuning database/);

    const index = JSON.parse(readFileSync(join(pkg, 'kgen-package.json'), 'utf8'));
    expect(index.kernels.map((k: { name: string }) => k.name)).toEqual(['matmul_q4_0_m1_n77_k320', 'matmul_q8_m3_n40_k128', 'ffn_gate']);
    expect(index.kernels[0]).toMatchObject({ configSource: 'record', config: tuned, record: { medianMs: 0.0123, fingerprint: { cpu: 'AMD EPYC 7763 64-Core Processor' } } });
    const readme = readFileSync(join(pkg, 'README.md'), 'utf8');
    expect(readme).toContain('config tuned on `epyc-7763` (fingerprint compiler:gcc=12.2.0, cpu=AMD EPYC 7763 64-Core Processor, profile=epyc-7763) at 2026-11-30T12:00:00.000Z');
    expect(readme).toMatch(/\| `kgen_ffn_gate` \(`ffn_gate\/`\) \| ffn_gate \| M=5,N=21,K=384 \|/);
    // The snippet calls the first kernel; the README gives the others' calls too.
    expect(readme).toMatch(/^- `ffn_gate\/` \(ffn_gate M=5,N=21,K=384\): `void kgen_ffn_gate\(const \w+ \*x, const uint8_t \*w, /m);
    expect(readme).toMatch(/^- `matmul_q8_m3_n40_k128\/` \(matmul_q8 M=3,N=40,K=128\): `void kgen_matmul_q8_m3_n40_k128\(/m);

    // Build it with its own Makefile, then a program that includes its header and links the library.
    const make = await execa('make', [], { cwd: pkg, reject: false });
    expect(make.exitCode, make.stderr).toBe(0);
    expect(existsSync(join(pkg, 'libkgen_pkg.a'))).toBe(true);
    const ops = KERNELS.map((k) => (k.op ? CATALOG[k.op]! : validateOp(k.ir)) as MatmulOp);
    const shapes = KERNELS.map((k, i) => parseShape(k.shape, ops[i]!) as { M: number; N: number; K: number });
    const data = ops.map((o, i) => opKit('matmul').testData(o, shapes[i]!, 7 + i));
    data.forEach((d, i) => {
      for (const [file, bytes] of Object.entries(d.inputs)) writeFileSync(join(pkg, file.replace('.bin', `${i}.bin`)), bytes);
    });
    writeFileSync(join(pkg, 'main.c'), driver(index.kernels.map((k: { symbol: string }, i: number) => ({ symbol: k.symbol, hasBias: ops[i]!.epilogue.bias, hasResidual: ops[i]!.epilogue.residual, xBytes: ops[i]!.x === 'f16' ? 2 : 4, yBytes: ops[i]!.y === 'f16' ? 2 : 4, ...shapes[i]! }))));
    const cc = await execa('cc', ['-O2', '-std=c11', 'main.c', 'libkgen_pkg.a', '-lm', '-o', 'main'], { cwd: pkg, reject: false });
    expect(cc.exitCode, cc.stderr).toBe(0);
    const prog = await execa('./main', [], { cwd: pkg, reject: false });
    expect(prog.exitCode, prog.stderr).toBe(0);
    data.forEach((d, i) => {
      const manifest = JSON.parse(readFileSync(join(pkg, index.kernels[i].dir, 'manifest.json'), 'utf8'));
      const { ok, comparison } = d.check(new Uint8Array(readFileSync(join(pkg, `y${i}.bin`))), manifest.tolerance);
      expect(ok, `${index.kernels[i].name}: ${JSON.stringify(comparison)}`).toBe(true);
    });
  }, 120_000);

  // Every C variant's kernel.c holds all of its ISA's helpers and calls only some; clang (unlike gcc)
  // flags unused static inline functions in -Wall, which failed a downstream -Werror build.
  const noClang = skipReason(['clang', 'gcc', 'make']);
  it.skipIf(noClang !== undefined)('a C package of matmul and attention kernels builds with clang and gcc -O2 -Wall -Wextra -Werror -pedantic', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    const kernels = [
      { op: 'matmul_q4_0', shape: 'M=1,N=64,K=128', isa: 'avx2' },
      { op: 'matmul_q35', shape: 'M=4,N=64,K=128', isa: 'scalar' },
      { op: 'attention_q8kv', shape: 'B=1,Hq=4,Hkv=2,Sq=1,Skv=64,D=32', isa: 'avx2' },
      { op: 'attention_f16', shape: 'B=1,Hq=4,Hkv=2,Sq=4,Skv=64,D=32', isa: 'scalar' },
      // KV splits: the tasks entry leaves o to the merge (-Wunused-parameter in -Wextra).
      { op: 'attention_q4_0kv', shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=1024,D=32', isa: 'avx2' },
      // Row groups of 8 on AVX-512: gcc -O2 saw undefined behaviour in the score tail loop.
      { op: 'attention_q4_0kv', shape: 'B=1,Hq=4,Hkv=2,Sq=4,Skv=64,D=32', isa: 'avx512' },
    ];
    writeFileSync(join(dir, 'layer.json'), JSON.stringify(kernels));
    const pkg = join(dir, 'pkg');
    // Built, not run: a device with AVX-512 (epyc-9654) whatever this CPU has.
    const r = await run(['emit', '--target', 'c', '--device', 'epyc-9654', '--kernels', join(dir, 'layer.json'), '--package', pkg, '--no-records']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(join(pkg, 'attention_q4_0kv_b1_hq4_hkv1_sq1_skv1024_d32', 'kernel.c'), 'utf8')).toMatch(/KG_SPLITS = [2-9]/);
    expect(readFileSync(join(pkg, 'attention_q4_0kv_b1_hq4_hkv2_sq4_skv64_d32', 'kernel.c'), 'utf8')).toContain('KG_RG = 8,');
    for (const cc of ['clang', 'gcc']) {
      const make = await execa('make', ['-B', `CC=${cc}`, 'CFLAGS=-O2 -Wall -Wextra -Werror -pedantic'], { cwd: pkg, reject: false });
      expect(make.exitCode, `${cc}: ${make.stderr}`).toBe(0);
    }
  }, 120_000);

  // Two packages in one program: their CMake targets, libraries and header guards all used to be
  // kgen_kernels / KGEN_KERNELS_H (CMake refused the second add_subdirectory; the second header was
  // skipped). Each now takes its package's name.
  const noCmake = skipReason(['cc', 'make', 'cmake']);
  it.skipIf(noCmake !== undefined)('two C packages link into one program, with make and with CMake add_subdirectory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    const layers = { 'layer-a': [{ op: 'matmul_q4_0', shape: 'M=1,N=64,K=128', name: 'proj' }], 'layer-b': [{ op: 'matmul_q8', shape: 'M=2,N=32,K=128', name: 'down' }] };
    for (const [name, kernels] of Object.entries(layers)) {
      writeFileSync(join(dir, `${name}.json`), JSON.stringify(kernels));
      const r = await run(['emit', '--target', 'c', '--device', DEVICE, '--isa', 'scalar', '--kernels', join(dir, `${name}.json`), '--package', join(dir, name), '--no-records']);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    expect(readFileSync(join(dir, 'layer-a', 'kgen_kernels.h'), 'utf8')).toContain('#include "kgen_layer_a.h"');
    expect(readFileSync(join(dir, 'layer-a', 'README.md'), 'utf8')).toContain('make                    # libkgen_layer_a.a');
    writeFileSync(join(dir, 'main.c'), `#include <stdio.h>
#include "kgen_layer_a.h"
#include "kgen_layer_b.h"
int main(void) {
  /* Both packages' declarations are visible, and both libraries link. */
  printf("%zu %zu\\n", (size_t)kgen_proj_workspace_size(), (size_t)kgen_down_workspace_size());
  return 0;
}
`);
    for (const name of Object.keys(layers)) {
      const make = await execa('make', [], { cwd: join(dir, name), reject: false });
      expect(make.exitCode, make.stderr).toBe(0);
    }
    const cc = await execa('cc', ['-std=c11', '-Wall', '-Werror', '-Ilayer-a', '-Ilayer-b', 'main.c', 'layer-a/libkgen_layer_a.a', 'layer-b/libkgen_layer_b.a', '-lm', '-o', 'main-make'], { cwd: dir, reject: false });
    expect(cc.exitCode, cc.stderr).toBe(0);
    expect((await execa('./main-make', [], { cwd: dir })).exitCode).toBe(0);

    writeFileSync(join(dir, 'CMakeLists.txt'), `cmake_minimum_required(VERSION 3.16)
project(two_packages C)
add_subdirectory(layer-a)
add_subdirectory(layer-b)
add_executable(main main.c)
target_link_libraries(main kgen_layer_a kgen_layer_b)
`);
    const configure = await execa('cmake', ['-S', '.', '-B', 'build'], { cwd: dir, reject: false });
    expect(configure.exitCode, configure.stdout + configure.stderr).toBe(0);
    const build = await execa('cmake', ['--build', 'build'], { cwd: dir, reject: false });
    expect(build.exitCode, build.stdout + build.stderr).toBe(0);
    expect((await execa('./build/main', [], { cwd: dir })).exitCode).toBe(0);
  }, 180_000);

  // A package named `kernels` (or `kgen-kernels`, what a name with no usable character becomes) used to take the name
  // every package shares: its target kgen_kernels failed CMake after another package had taken that
  // alias, and its own kgen_kernels.h lost to the other's forwarding header on the include path.
  const noCmakeOnly = skipReason(['cmake']);
  it.skipIf(noCmakeOnly !== undefined)('a package named `kernels` keeps out of the shared kgen_kernels name: CMake configures it after another package', async () => {
    expect(['kernels', 'kgen-kernels', 'KGEN_Kernels', 'layer-a', 'kgen'].map(packageLibraryName)).toEqual(['kgen_kernels_pkg', 'kgen_kernels_pkg', 'kgen_kernels_pkg', 'kgen_layer_a', 'kgen']);
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    for (const name of ['layer-a', 'kernels']) {
      const r = await run(['emit', '--target', 'c', '--device', DEVICE, '--isa', 'scalar', '--op', 'matmul_q8', '--shape', 'M=1,N=16,K=64', '--package', join(dir, name), '--no-records']);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    expect(readFileSync(join(dir, 'kernels', 'kgen_kernels.h'), 'utf8')).toContain('#include "kgen_kernels_pkg.h"');
    writeFileSync(join(dir, 'CMakeLists.txt'), 'cmake_minimum_required(VERSION 3.16)\nproject(two_packages C)\nadd_subdirectory(layer-a)\nadd_subdirectory(kernels)\n');
    const configure = await execa('cmake', ['-S', '.', '-B', 'build'], { cwd: dir, reject: false });
    expect(configure.exitCode, configure.stdout + configure.stderr).toBe(0);
  }, 60_000);

  it('a WebAssembly package\'s loadAll, moved away from its files as a bundler moves it, finds every kernel\'s files at `base` and computes right on 2 threads', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    const kernels = [{ op: 'matmul_q4_0', shape: 'M=1,N=32,K=64', name: 'proj' }, { op: 'matmul_q8', shape: 'M=2,N=16,K=64', name: 'down' }];
    writeFileSync(join(dir, 'layer.json'), JSON.stringify(kernels));
    const pkg = join(dir, 'pkg');
    const r = await run(['emit', '--target', 'wasm', '--kernels', join(dir, 'layer.json'), '--package', pkg, '--no-records']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(join(pkg, 'README.md'), 'utf8')).toContain('serve this folder unchanged and pass its URL as `loadAll({ base })`');
    // The bundle: the loaders alone (the kernels' folders hold files of the same names, so a bundle's
    // one folder cannot hold them side by side); the package's folder stays where it is, unchanged.
    const bundle = join(dir, 'bundle');
    for (const file of ['index.mjs', 'proj/kernel.mjs', 'down/kernel.mjs']) {
      mkdirSync(dirname(join(bundle, file)), { recursive: true });
      writeFileSync(join(bundle, file), readFileSync(join(pkg, file)));
    }
    const data = kernels.map((k, i) => opKit('matmul').testData(CATALOG[k.op]! as MatmulOp, parseShape(k.shape, CATALOG[k.op]!), 3 + i));
    data.forEach((d, i) => {
      for (const [file, bytes] of Object.entries(d.inputs)) writeFileSync(join(bundle, `${kernels[i]!.name}-${file}`), bytes);
    });
    writeFileSync(join(bundle, 'host.mjs'), `
      import { readFileSync, writeFileSync } from 'node:fs';
      import { loadAll, layout, kernels as modules } from './index.mjs';
      const { memory, kernels, close } = await loadAll({ threads: 2, base: process.argv[2] });
      for (const [name, at] of Object.entries(layout.kernels)) {
        const bytes = new Uint8Array(memory.buffer);
        for (const t of ['x', 'w']) bytes.set(readFileSync(new URL(name + '-' + t + '.bin', import.meta.url)), at[t]);
        await kernels[name].run(at.x, at.w, at.bias, at.residual, at.y, at.workspace);
        writeFileSync(new URL(name + '-y.bin', import.meta.url), bytes.slice(at.y, at.y + modules[name].sizes.y));
      }
      close();
    `);
    const host = await execa(process.execPath, [join(bundle, 'host.mjs'), pathToFileURL(pkg).href], { reject: false });
    expect(host.exitCode, host.stderr).toBe(0);
    data.forEach((d, i) => {
      const { name } = kernels[i]!;
      const manifest = JSON.parse(readFileSync(join(pkg, name, 'manifest.json'), 'utf8'));
      const { ok, comparison } = d.check(new Uint8Array(readFileSync(join(bundle, `${name}-y.bin`))), manifest.tolerance);
      expect(ok, `${name}: ${JSON.stringify(comparison)}`).toBe(true);
    });
  }, 120_000);

  const noShim = skipReason([SHIM_COMPILER]);
  it.skipIf(noShim !== undefined)('a CUDA package\'s sources build through the CPU shim, and a program calling its launchers computes every kernel right', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    const kernels = [{ op: 'matmul_q4_0', shape: 'M=1,N=77,K=320' }, { op: 'matmul_q35', shape: 'M=3,N=40,K=128' }, { ir: EPILOGUE_IRS[0], shape: 'M=5,N=21,K=384' }];
    writeFileSync(join(dir, 'layer.json'), JSON.stringify(kernels));
    const pkg = join(dir, 'pkg');
    const r = await run(['emit', '--target', 'cuda', '--device', 'rtx4090', '--kernels', join(dir, 'layer.json'), '--package', pkg, '--no-records']);
    expect(r.exitCode, r.stderr).toBe(0);
    const index = JSON.parse(readFileSync(join(pkg, 'kgen-package.json'), 'utf8'));
    expect(readFileSync(join(pkg, 'Makefile'), 'utf8')).toMatch(/\$\(NVCC\) -O3 -std=c\+\+17 -arch=sm_89 \$\(NVCCFLAGS\) -c matmul_q4_0_m1_n77_k320\/kernel\.cu/);
    const ops = kernels.map((k) => (k.op ? CATALOG[k.op]! : validateOp(k.ir)) as MatmulOp);
    const shapes = kernels.map((k, i) => parseShape(k.shape, ops[i]!) as { M: number; N: number; K: number });
    const data = ops.map((o, i) => opKit('matmul').testData(o, shapes[i]!, 11 + i));
    data.forEach((d, i) => {
      for (const [file, bytes] of Object.entries(d.inputs)) writeFileSync(join(pkg, file.replace('.bin', `${i}.bin`)), bytes);
    });
    // The user's program, as CUDA C++: device buffers, one launcher call per kernel, copy back.
    const calls = index.kernels.map((k: { symbol: string }, i: number) => {
      const o = ops[i]!, { M, N, K } = shapes[i]!;
      const xb = o.x === 'f16' ? 2 : 4, yb = o.y === 'f16' ? 2 : 4;
      return `
  {
    void *x = upload("x${i}.bin", ${M * K * xb}), *w = upload("w${i}.bin", 0), *y = nullptr;
    void *bias = ${o.epilogue.bias ? `upload("bias${i}.bin", ${N * 4})` : 'nullptr'}, *res = ${o.epilogue.residual ? `upload("residual${i}.bin", ${M * N * yb})` : 'nullptr'};
    cudaMalloc(&y, ${M * N * yb});
    cudaError_t e = ${k.symbol}((${o.x === 'f16' ? 'const uint16_t' : 'const float'} *)x, (const uint8_t *)w, (const float *)bias, (${o.y === 'f16' ? 'const uint16_t' : 'const float'} *)res, (${o.y === 'f16' ? 'uint16_t' : 'float'} *)y, 0);
    if (e != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) { fprintf(stderr, "${k.symbol}: %s\\n", cudaGetErrorString(e)); return 1; }
    download("y${i}.bin", y, ${M * N * yb});
  }`;
    }).join('');
    writeFileSync(join(pkg, 'main.cu'), `#include <cstdio>
#include <cstdlib>
#include <vector>
#include "kgen_kernels.h"
static void *upload(const char *path, long expect) {
  FILE *f = fopen(path, "rb"); if (!f) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
  if (expect && n != expect) { fprintf(stderr, "%s: %ld bytes, expected %ld\\n", path, n, expect); exit(2); }
  std::vector<char> h(n); if (fread(h.data(), 1, n, f) != (size_t)n) exit(2); fclose(f);
  void *d = nullptr; cudaMalloc(&d, n); cudaMemcpy(d, h.data(), n, cudaMemcpyHostToDevice); return d;
}
static void download(const char *path, const void *d, long n) {
  std::vector<char> h(n); cudaMemcpy(h.data(), d, n, cudaMemcpyDeviceToHost);
  FILE *f = fopen(path, "wb"); fwrite(h.data(), 1, n, f); fclose(f);
}
int main() {${calls}
  return 0;
}
`);
    // Every kernel.cu of the package and the program, compiled by g++ against kgen's CUDA shim.
    const sources = index.kernels.map((k: { dir: string }) => join(k.dir, 'kernel.cu'));
    const shim = shimDir();
    const cc = await execa(SHIM_COMPILER, [...SHIM_FLAGS, '-I', shim, '-I', '.', '-x', 'c++', ...sources, 'main.cu', '-x', 'none', join(shim, 'kgen_cuda_shim.cpp'), '-o', 'main', '-lm'], { cwd: pkg, reject: false });
    expect(cc.exitCode, cc.stderr).toBe(0);
    const prog = await execa('./main', [], { cwd: pkg, reject: false, timeout: 120_000 });
    expect(prog.exitCode, prog.stderr).toBe(0);
    data.forEach((d, i) => {
      const manifest = JSON.parse(readFileSync(join(pkg, index.kernels[i].dir, 'manifest.json'), 'utf8'));
      const { ok, comparison } = d.check(new Uint8Array(readFileSync(join(pkg, `y${i}.bin`))), manifest.tolerance);
      expect(ok, `${index.kernels[i].name}: ${JSON.stringify(comparison)}`).toBe(true);
    });
  }, 180_000);

  const noNpm = skipReason(['npm']);
  // The launchers are C functions, so a C99 program includes the package header. The CUDA toolkit's
  // own driver_types.h holds an unnamed union that -pedantic refuses in C99 when its directory is
  // given with -I; without a toolkit, a two-line stand-in checks kgen's own lines.
  const noGcc = skipReason(['gcc']);
  it.skipIf(noGcc !== undefined)('a CUDA package\'s header passes gcc -std=c99 -pedantic -Wall -Wextra -Werror -fsyntax-only from a C file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    writeFileSync(join(dir, 'layer.json'), JSON.stringify([{ op: 'matmul_q4_0', shape: 'M=1,N=64,K=128' }, { op: 'attention_q8_0kv', shape: 'B=1,Hq=4,Hkv=2,Sq=1,Skv=64,D=64' }]));
    const pkg = join(dir, 'pkg');
    const r = await run(['emit', '--target', 'cuda', '--device', 'rtx4090', '--kernels', join(dir, 'layer.json'), '--package', pkg, '--no-records']);
    expect(r.exitCode, r.stderr).toBe(0);
    const toolkit = [process.env.CUDA_HOME, '/usr/local/cuda'].filter((d) => d !== undefined).map((d) => join(d, 'include')).find((d) => existsSync(join(d, 'cuda_runtime_api.h')));
    const include = toolkit ?? join(dir, 'stand-in');
    if (!toolkit) {
      mkdirSync(include);
      writeFileSync(join(include, 'cuda_runtime_api.h'), 'typedef enum cudaError { cudaSuccess = 0 } cudaError_t;\ntypedef struct CUstream_st *cudaStream_t;\n');
    }
    writeFileSync(join(dir, 'main.c'), '#include "kgen_kernels.h"\nint main(void) { return KGEN_MATMUL_Q4_0_M1_N64_K128_N == 64 ? 0 : 1; }\n');
    const gcc = await execa('gcc', ['-std=c99', '-pedantic', '-Wall', '-Wextra', '-Werror', '-fsyntax-only', '-I', include, '-I', pkg, join(dir, 'main.c')], { reject: false, all: true });
    expect(gcc.exitCode, `${toolkit ?? 'stand-in'}: ${gcc.all}`).toBe(0);
  });

  it.skipIf(noNpm !== undefined)('a WebAssembly package packs with npm, installs into a scratch project, type-checks, and its one loader computes every kernel right on 1 and 2 threads', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    const kernels = [{ op: 'matmul_q4', shape: 'M=1,N=77,K=320', name: 'gate' }, { op: 'matmul_q35', shape: 'M=3,N=40,K=128' }, { ir: EPILOGUE_IRS[0], shape: 'M=5,N=21,K=384', name: 'ffn_up' }];
    const pkg = await emitJsPackage(dir, 'wasm', 'wasm-simd128', kernels, 'Layer0 WASM');
    expect(JSON.parse(readFileSync(join(pkg.dir, 'package.json'), 'utf8'))).toMatchObject({ name: 'layer0-wasm', type: 'module', exports: { '.': { default: './index.mjs', types: './index.d.mts' }, './gate': { default: './gate/kernel.mjs' }, './package.json': './package.json' } });
    const data = writeKernelInputs(pkg.scratch, kernels, pkg.names);
    writeFileSync(join(pkg.scratch, 'run.mjs'), `import { readFileSync, writeFileSync } from 'node:fs';
import { info, kernels as modules, layout, loadAll } from 'layer0-wasm';
// Exported, so tools can read the installed package's own description.
import.meta.resolve('layer0-wasm/package.json');
const { memory, kernels, close } = await loadAll({ threads: Number(process.argv[2]) });
const levels = {};
for (const name of Object.keys(info)) {
  const at = layout.kernels[name];
  for (const buffer of ['x', 'w', 'bias', 'residual']) {
    if (at[buffer] === 0) continue;
    const bytes = readFileSync(name + '.' + buffer + '.bin');
    new Uint8Array(memory.buffer, at[buffer], bytes.length).set(bytes);
  }
  await kernels[name].run(at.x, at.w, at.bias, at.residual, at.y, at.workspace);
  writeFileSync(name + '.y.bin', new Uint8Array(memory.buffer, at.y, modules[name].sizes.y));
  levels[name] = [kernels[name].level, modules[name].preferred];
}
close();
console.log(JSON.stringify(levels));
`);
    // Plain Node (SIMD128), then with relaxed SIMD usable (the probe picks the relaxed modules).
    for (const [threads, flags] of [[1, []], [2, ['--experimental-wasm-relaxed-simd', '--no-liftoff']]] as const) {
      const r = await execa(process.execPath, [...flags, 'run.mjs', String(threads)], { cwd: pkg.scratch, reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      // Each kernel runs its preferred level where relaxed SIMD works (q4, q4_0 and q3.5 prefer relaxed), else SIMD128.
      const levels = JSON.parse(r.stdout) as Record<string, [string, string]>;
      expect(Object.values(levels).map(([, preferred]) => preferred)).toEqual(['relaxed', 'relaxed', 'relaxed']);
      for (const [used, preferred] of Object.values(levels)) expect(used).toBe(flags.length ? preferred : 'simd128');
      checkOutputs(pkg, data);
    }
    // A TypeScript host against the package's generated declarations: offsets are literal types.
    const at = ((await import(pathToFileURL(join(pkg.scratch, 'node_modules', 'layer0-wasm', 'index.mjs')).href)) as { layout: { kernels: Record<string, { x: number }> } }).layout.kernels.gate!;
    // Kernels are typed by the thread count: synchronous at 1, promises at a literal 2 (.then compiles).
    const host = (x: number) => `import { layout, loadAll } from 'layer0-wasm';
const { kernels } = await loadAll();
const x: ${x} = layout.kernels.gate.x;
const single: void = kernels.gate.run(x, layout.kernels.gate.w, 0, 0, layout.kernels.gate.y, layout.kernels.gate.workspace);
const two = await loadAll({ threads: 2, memory: new WebAssembly.Memory({ initial: 1, maximum: 64, shared: true }) });
two.kernels.gate.run(x, layout.kernels.gate.w, 0, 0, layout.kernels.gate.y, layout.kernels.gate.workspace).then(() => two.close());
const some = await loadAll({ threads: Number(process.argv[2]) });
await some.kernels.gate.run(x, layout.kernels.gate.w, 0, 0, layout.kernels.gate.y, layout.kernels.gate.workspace);
console.log(single);
`;
    writeFileSync(join(pkg.scratch, 'good.mts'), host(at.x));
    writeFileSync(join(pkg.scratch, 'bad.mts'), host(at.x + 16));
    const good = await tsc(join(pkg.scratch, 'good.mts'));
    expect(good.exitCode, good.stdout).toBe(0);
    const bad = await tsc(join(pkg.scratch, 'bad.mts'));
    expect(bad.stdout).toContain(`Type '${at.x}' is not assignable to type '${at.x + 16}'`);
  }, 180_000);

  it.skipIf(noNpm !== undefined || noDawn !== undefined)('a WGSL package packs with npm, installs into a scratch project, and its one loader computes every kernel right on SwiftShader', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    // The WGSL kernels take f32 activations: the epilogue kernel is the f32 one (bias + GELU).
    const kernels = [{ op: 'matmul_q4_0', shape: 'M=1,N=77,K=320', name: 'gate' }, { op: 'matmul_q8', shape: 'M=3,N=40,K=128' }, { ir: EPILOGUE_IRS[1], shape: 'M=5,N=21,K=384', name: 'proj' }];
    const pkg = await emitJsPackage(dir, 'wgsl', 'swiftshader', kernels, 'layer0-wgsl');
    const data = writeKernelInputs(pkg.scratch, kernels, pkg.names);
    writeFileSync(join(pkg.scratch, 'run.mjs'), `import { readFileSync, writeFileSync } from 'node:fs';
import { createAll, info, kernels as modules, requirements } from 'layer0-wgsl';
const webgpu = await import(process.env.KGEN_WEBGPU);
Object.assign(globalThis, webgpu.globals);
const gpu = webgpu.create(['backend=vulkan']);
globalThis.keepGpu = gpu;
const adapter = await gpu.requestAdapter();
const device = await adapter.requestDevice(requirements);
const created = await createAll(device);
const S = GPUBufferUsage;
for (const name of Object.keys(info)) {
  const buffers = {};
  for (const b of modules[name].kernel.bindings) {
    const bytes = Math.max(buffers[b.tensor]?.size ?? 0, b.offset + b.bytes);
    buffers[b.tensor]?.destroy();
    buffers[b.tensor] = device.createBuffer({ size: bytes, usage: S.STORAGE | S.COPY_DST | S.COPY_SRC });
  }
  for (const [tensor, buffer] of Object.entries(buffers)) {
    if (tensor === 'y') continue;
    const file = readFileSync(name + '.' + tensor + '.bin');
    const padded = new Uint8Array(Math.ceil(file.length / 4) * 4);
    padded.set(file);
    device.queue.writeBuffer(buffer, 0, padded);
  }
  created[name].run(buffers);
  const yBytes = Number(process.env['Y_' + name]);
  const read = device.createBuffer({ size: Math.ceil(yBytes / 4) * 4, usage: S.MAP_READ | S.COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffers.y, 0, read, 0, read.size);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  writeFileSync(name + '.y.bin', new Uint8Array(read.getMappedRange()).slice(0, yBytes));
  read.unmap();
}
device.destroy();
console.log('done');
`);
    const env = { ...swiftShaderEnvFor(), KGEN_WEBGPU: import.meta.resolve('webgpu'), ...Object.fromEntries(pkg.names.map((n, i) => [`Y_${n}`, String(data[i]!.outputBytes)])) };
    const r = await execa(process.execPath, ['run.mjs'], { cwd: pkg.scratch, reject: false, env });
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    checkOutputs(pkg, data);
    // A TypeScript host against the generated index.d.ts (GPU types from @webgpu/types).
    const host = (op: string) => `import { createAll, info, requirements } from 'layer0-wgsl';
export async function call(adapter: GPUAdapter, x: GPUBuffer, w: GPUBuffer, y: GPUBuffer): Promise<void> {
  const device = await adapter.requestDevice(requirements);
  const created = await createAll(device);
  const op: '${op}' = info.gate.op;
  created.gate.run({ x, w, y });
}
`;
    writeFileSync(join(pkg.scratch, 'good.ts'), host('matmul_q4_0'));
    writeFileSync(join(pkg.scratch, 'bad.ts'), host('matmul_q8'));
    const withGpuTypes = join(import.meta.dirname, '..', 'node_modules');
    const good = await tsc(join(pkg.scratch, 'good.ts'), withGpuTypes);
    expect(good.exitCode, good.stdout).toBe(0);
    const bad = await tsc(join(pkg.scratch, 'bad.ts'), withGpuTypes);
    expect(bad.stdout).toContain(`Type '"matmul_q4_0"' is not assignable to type '"matmul_q8"'`);
  }, 180_000);

  it('npm names: valid ones (scoped too) are kept, others made valid', () => {
    expect(['@me/layer-kernels', 'layer0-wasm', 'a.b~c'].map(npmPackageName)).toEqual(['@me/layer-kernels', 'layer0-wasm', 'a.b~c']);
    expect(['@Me/Layer Kernels', 'My Kernels', '_x', '', '@/x', 'a'.repeat(300)].map(npmPackageName)).toEqual(['@me/layer-kernels', 'my-kernels', 'x', 'kgen-kernels', 'x', 'a'.repeat(214)]);
  });

  // A C package has no package.json: the note that one names the package otherwise was wrong there.
  it('a C package named with --package-name "My Layer" takes kgen_my_layer, and no note about package.json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    const r = await run(['emit', '--target', 'c', '--device', DEVICE, '--isa', 'scalar', '--op', 'matmul_q8', '--shape', 'M=1,N=16,K=64', '--package', join(dir, 'p'), '--package-name', 'My Layer', '--no-records']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/package\.json/);
    expect(existsSync(join(dir, 'p', 'kgen_my_layer.h'))).toBe(true);
  });

  // Each kernel's plan keeps its own buffers within 4 GiB; loadAll places all of them in one memory,
  // and a package of two 2.6 GB kernels was written with layout.pages 80738 (over 65536), so its
  // loadAll could only throw a RangeError from WebAssembly.Memory.
  it('refuses a WebAssembly package whose kernels together do not fit one memory, writing nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    const big = { op: 'matmul_q8_0', shape: 'M=1,N=151936,K=16384' };
    writeFileSync(join(dir, 'k.json'), JSON.stringify([{ ...big, name: 'a' }, { ...big, name: 'b' }]));
    const r = await run(['emit', '--target', 'wasm', '--kernels', join(dir, 'k.json'), '--package', join(dir, 'p')]);
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^kgen: --kernels: the kernels' buffers take 5291216016 bytes .* more than the 4294967296 a WebAssembly memory addresses/);
    expect(existsSync(join(dir, 'p'))).toBe(false);
  });

  it('refuses an existing directory, mixed flags and bad kernel lists, writing nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-package-'));
    const base = ['emit', '--target', 'c', '--device', DEVICE];
    const one = [...base, '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=64'];
    const expectError = (r: { exitCode?: number; stderr: string }, re: RegExp) => {
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toMatch(re);
    };
    expectError(await run([...one, '--package', dir]), /--package: .* already exists \(a directory\)/);
    expectError(await run([...one, '--package', join(dir, 'p'), '-o', join(dir, 'o')]), /--out: given with --package/);
    writeFileSync(join(dir, 'k.json'), '[{"op": "matmul_q4", "shape": "M=1,N=64,K=64", "colour": "red"}]');
    expectError(await run([...base, '--kernels', join(dir, 'k.json'), '--package', join(dir, 'p')]), /--kernels\[0\]\.colour: unknown key/);
    writeFileSync(join(dir, 'k.json'), '[{"op": "matmul_q4"}]');
    expectError(await run([...base, '--kernels', join(dir, 'k.json'), '--package', join(dir, 'p')]), /--kernels\[0\]\.shape: missing; expected dimensions like M=1,N=4096,K=4096/);
    writeFileSync(join(dir, 'k.json'), '[{"op": "matmul_q4", "shape": "M=1,N=64,K=64"}, {"op": "matmul_q4", "shape": "M=1,N=64,K=64"}]');
    expectError(await run([...base, '--kernels', join(dir, 'k.json'), '--package', join(dir, 'p')]), /"matmul_q4_m1_n64_k64" names two kernels/);
    // Names that clash in folders and macros (case), or in symbols (one is the other plus _rows).
    writeFileSync(join(dir, 'k.json'), '[{"op": "matmul_q4", "shape": "M=1,N=64,K=64", "name": "A"}, {"op": "matmul_q4", "shape": "M=1,N=64,K=128", "name": "a"}]');
    expectError(await run([...base, '--kernels', join(dir, 'k.json'), '--package', join(dir, 'p')]), /--kernels\[1\]\.name: "a" names two kernels \(names are compared ignoring case/);
    writeFileSync(join(dir, 'k.json'), '[{"op": "matmul_q4", "shape": "M=1,N=64,K=64", "name": "x"}, {"op": "matmul_q4", "shape": "M=1,N=64,K=128", "name": "x_rows"}]');
    expectError(await run([...base, '--kernels', join(dir, 'k.json'), '--package', join(dir, 'p')]), /--kernels\[1\]\.name: "x_rows" and "x" would both define kgen_x_rows/);
    writeFileSync(join(dir, 'k.json'), '[{"op": "matmul_q4", "shape": "M=1,N=64,K=64"}, {"op": "matmul_q4", "shape": "M=1,N=64,K=65"}]');
    expectError(await run([...base, '--kernels', join(dir, 'k.json'), '--package', join(dir, 'p')]), /--kernels\[1\]\.shape K: K=65 is not a multiple/);
    writeFileSync(join(dir, 'k.json'), '[{"op": "matmul_q4", "shape": "M=1,N=64,K=64", "config": {"nTile": 3}}]');
    expectError(await run([...base, '--kernels', join(dir, 'k.json'), '--package', join(dir, 'p')]), /--kernels\[0\]\.config\.nTile: got 3/);
    // An inline op's mistake names its entry, and the hint the list, not an IR file.
    writeFileSync(join(dir, 'k.json'), JSON.stringify([{ op: 'matmul_q4', shape: 'M=1,N=64,K=64' }, { ir: { kind: 'matmul', name: 'm', x: 'f32', weight: { format: 'q5' }, y: 'f32' }, shape: 'M=1,N=64,K=64' }]));
    expectError(await run([...base, '--kernels', join(dir, 'k.json'), '--package', join(dir, 'p')]), /^kgen: --kernels\[1\]\.ir\.weight\.format: got "q5"; expected one of .*; fix that entry's "ir" in the kernel list/);
    writeFileSync(join(dir, 'k.json'), '[{"op": "matmul_q4", "shape": "M=1,N=64,K=64", "name": "9lives"}]');
    expectError(await run([...base, '--kernels', join(dir, 'k.json'), '--package', join(dir, 'p')]), /--kernels\[0\]\.name: .*not a usable name/);
    expectError(await run([...base, '--kernels', join(dir, 'k.json'), '--op', 'matmul_q4', '--package', join(dir, 'p')]), /--op: given with --kernels/);
    expectError(await run([...one, '--package-name', 'x', '-o', join(dir, 'p')]), /--package-name: given without --package/);
    expect(existsSync(join(dir, 'p'))).toBe(false);
  });
});
