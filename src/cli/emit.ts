import { lstatSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { earlierOutputFiles, emit, outputFiles } from '../api/emit.js';
import { withDataFiles } from '../api/kit.js';
import { withResources } from '../api/resources.js';
import { InternalError, KgenError } from '../errors.js';
import { configInUse } from '../plan/index.js';
import type { KernelFlags } from './common.js';
import { pathText, quoted, valueText } from '../io/message-text.js';
import { fsError, writeOutputDirectory, writeOutputTree } from '../io/output.js';
import { parseJsonInput, SMALL_JSON } from '../io/json-input.js';
import { buildPackage, npmPackageName, type PackageKernel } from '../api/package.js';
import { addDbFlag, addKernelFlags, cliHost, openDbForReading, printJson, readUserFile, toRequest, withRecords } from './common.js';
import { optionalPath, parseSeed } from './flags.js';

export function registerEmit(program: Command): void {
  const cmd = program
    .command('emit')
    .description('generate a kernel: kernel source, header and manifest.json')
    .option('-o, --out <dir>', "write the kernel's files and manifest.json here (C: kernel.c, kernel.h; the other targets' lists are below; default: the main source to stdout); an existing directory keeps its other files (but an earlier emit's, with --force)")
    .option('--force', "replace files of the same names that -o DIR already holds; where DIR holds an earlier emit's manifest.json, also remove the files that emit wrote (its manifest lists them) and this one does not, each only while unchanged since, so DIR holds one kernel (never anything else: a changed file refuses the emit)")
    .option('--no-records', 'ignore the tuning database: use --config or the default config')
    .option('--symbol <name>', 'the base name of the kernel\'s symbols (default kgen_OPNAME): two kernels of one op (two shapes) linked into one program need different names')
    .option('--data [seed]', 'also write seeded inputs as the kernel reads them (x.bin, w.bin, ...: the manifest\'s tensors and weights) ref.bin, the f64 reference output (little-endian), and for a matmul ref_terms.bin, each output\'s energy of summed products (f64: the check weighs an output by the larger of its square and this), for a kernel that rounds an input to int8 itself (a matmul\'s int8 activations X, attention\'s int8 Q) ref_rounded.bin, the reference from that input so rounded (the manifest\'s tolerance.inputRounding: the bounds widen by its factor times that rounding\'s own error), next to the kernel: CUDA\'s run.sh checks against them, other targets\' users with their own harness within the manifest\'s tolerance (needs -o)')
    .option('--no-ptxas', 'skip the backend\'s resource check (cuda: compiling with nvcc for the manifest\'s registers, spills and shared memory)')
    .option('--package <dir>', 'write a self-contained package instead: each kernel in its own folder, build files (C, CUDA: Makefile, CMakeLists.txt, one header; wasm, wgsl: package.json and one loader of every kernel), kgen-package.json and a README; DIR must be new')
    .option('--package-name <name>', 'with --package: the package\'s name (default: the directory\'s name): in package.json (wasm, wgsl; made npm-safe), or the library, CMake target and header kgen_NAME (c, cuda)')
    .option('--kernels <file>', 'with --package: a JSON list of kernels, each {"op" or "ir", "shape", optional "isa", "config", "device", "name"}; --target and --device apply to all');
  addDbFlag(cmd);
  addKernelFlags(cmd).addHelpText(
    'after',
    `
Examples:
  kgen emit --target c --op matmul_q35 --shape M=1,N=4096,K=4096 -o out/
  kgen emit --target c --op matmul_q4_0 --shape M=1,N=4096,K=14336 --isa avx2 --device host -o q4_0/
  kgen emit --target c --op matmul_q4 --shape M=16,N=4096,K=4096 --config '{"nTile":16,"mTile":4}'
  kgen emit --target c --ir my_op.json --shape M=1,N=1024,K=4096 --json
  kgen emit --target c --op attention_q8_0kv --shape B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128 -o attn/
  kgen emit --target wasm --op matmul_q4 --shape M=1,N=4096,K=14336 -o q4-wasm/
  kgen emit --target cuda --op matmul_q35 --shape M=1,N=4096,K=14336 --device rtx4090 -o q35/ --data
  kgen emit --target c --kernels layer.json --package layer-kernels/
  kgen emit --target c --op matmul_q4_0 --shape M=1,N=4096,K=4096 --package q4_0-pkg/
  kgen emit --target wasm --kernels layer.json --package layer-wasm/   (npm pack / npm install it)

WebAssembly (--target wasm) writes kernel.wat and kernel.wasm (SIMD128), kernel.relaxed.wat and
kernel.relaxed.wasm (relaxed SIMD; integer-format matmul), probe.wat and probe.wasm (load
kernel.relaxed.wasm only where probe.wasm's probe() returns 1), the *.shared.wat/.wasm variants
that import a shared memory (for threads), kernel.mjs and kernel.d.mts (a loader for Node and
browsers that probes and picks the module; loadThreaded splits the work across workers running
kernel-worker.mjs) and manifest.json. Attention writes no relaxed module and no probe.

WGSL writes kernel.wgsl, kernel.js and kernel.d.ts (a loader that creates the pipeline and checks
the buffers) and manifest.json.

CUDA writes kernel.cu, kernel.h (the launcher), manifest.json, kgen_run.cu and run.sh (builds with
nvcc, runs, checks against ref.bin, times; no Node needed); with nvcc here, the manifest gets
ptxas's registers, spills and shared memory.

Without --config, emit takes the best config \`kgen tune\` recorded for this device, op and shape,
else the nearest recorded shape of the op (said on stderr), else the default; with --isa, the
fastest record of that ISA, else its default. The manifest's configSource and record fields say which.`,
  );
  cmd.action(async (flags: EmitFlags) => {
    if (flags.package !== undefined || flags.kernels !== undefined) return emitPackage(flags);
    // Every flag is checked before anything is planned, rendered or written.
    if (flags.packageName !== undefined) throw new KgenError({ field: '--package-name', problem: 'given without --package', expected: '--package DIR as well' });
    const out = optionalPath(flags.out, '--out', 'a directory path');
    if (flags.data !== undefined && out === undefined) throw new KgenError({ field: '--data', problem: 'data files need a directory', expected: '-o DIR as well' });
    const seed = typeof flags.data === 'string' ? parseSeed(flags.data, '--data') : 1;
    const request = toRequest(flags);
    let result = await withRecords(flags, (records) => emit({ ...request, records, ...(flags.symbol !== undefined ? { symbol: flags.symbol } : {}) }));
    const checked = flags.ptxas ? await withResources(result) : { result, notes: [] };
    result = flags.data !== undefined ? withDataFiles(checked.result, seed) : checked.result;
    for (const note of [...result.notes, ...checked.notes]) process.stderr.write(`kgen: ${note}\n`);
    if (out !== undefined) {
      const built = result.rendered.binaries ? await result.rendered.binaries() : { files: {} };
      // A rendered module that does not assemble is kgen's bug, not the user's.
      if ('error' in built) throw new InternalError(`the rendered kernel does not build: ${built.error}`);
      const output = outputFiles(result, built.files);
      result = output.result;
      const files = output.files;
      const earlier = flags.force ? earlierEmitFiles(out) : undefined;
      const written = writeOutputDirectory(out, files, { field: '--out', force: flags.force, earlier });
      if (flags.json) printJson({ out, files: Object.keys(files), replaced: written.replaced, removed: written.removed, manifest: result.manifest });
      else {
        const replaced = written.replaced.length ? `; replaced ${written.replaced.join(', ')}` : '';
        const removed = written.removed.length ? `; removed the earlier kernel's ${written.removed.join(', ')}` : '';
        process.stderr.write(`kgen: wrote ${Object.keys(files).join(', ')} to ${pathText(out)}${replaced}${removed} (${result.plan.variant}, config ${JSON.stringify(configInUse(result.plan))})\n`);
      }
    } else if (flags.json) {
      printJson({ files: result.files, manifest: result.manifest });
    } else {
      process.stdout.write(result.files[result.rendered.mainFile ?? 'kernel.c']!);
    }
  });
}

/**
 * `emit -o DIR --force`: the files the emit that wrote DIR/manifest.json wrote (its `files`, each
 * with its sha256), which writeOutputDirectory removes where this emit writes no file of that name,
 * while unchanged. Nothing when DIR holds no kgen manifest (none at all, another program's, or one
 * that is no regular file, which the write then refuses). A kgen manifest that does not list its
 * files (an older kgen's) is refused: that emit's other files cannot be told from the user's.
 */
function earlierEmitFiles(out: string): Record<string, string> | undefined {
  const path = join(out, 'manifest.json');
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw fsError('--out', 'read', path, e, 'check its permissions, or choose another -o');
  }
  // A kgen manifest is a few KiB: a larger file is another program's, replaced like any file of the name.
  if (!st.isFile() || st.size > SMALL_JSON.maxChars) return undefined;
  const earlier = earlierOutputFiles(readUserFile(path, '--out', SMALL_JSON.maxChars));
  if (earlier.kind === 'unlisted') {
    throw new KgenError({
      field: '--out',
      problem: `${pathText(path)} is an earlier kgen emit's manifest that does not list the files that emit wrote`,
      expected: "a directory without an earlier kernel, or one whose manifest.json lists the files its emit wrote (its \"files\", as kgen emit writes them now)",
      hint: "--force cannot tell that kernel's other files from yours: remove them and its manifest.json yourself and run again, or choose another -o",
    });
  }
  return earlier.kind === 'listed' ? earlier.files : undefined;
}

type EmitFlags = KernelFlags & { symbol?: string; out?: string; force?: boolean; db?: string; records: boolean; data?: string | boolean; ptxas: boolean; package?: string; packageName?: string; kernels?: string };

/** Keys a `--kernels` entry may have. */
const KERNEL_KEYS = ['op', 'ir', 'shape', 'isa', 'config', 'device', 'name'];

/** `emit --package DIR`: the kernels of --kernels (or the one of --op/--ir and --shape) as a package. */
async function emitPackage(flags: EmitFlags): Promise<void> {
  const dir = optionalPath(flags.package, '--package', 'a new directory path');
  if (dir === undefined) throw new KgenError({ field: '--package', problem: 'missing', expected: 'a new directory for the package' });
  for (const [flag, given] of [['--out', flags.out !== undefined], ['--data', flags.data !== undefined], ['--force', flags.force]] as const) {
    if (given) throw new KgenError({ field: flag, problem: 'given with --package', expected: 'one of them', hint: flag === '--force' ? 'a package is always written to a new directory' : `--package writes its own files; drop ${flag}` });
  }
  let kernels: PackageKernel[];
  if (flags.kernels !== undefined) {
    for (const [flag, v] of [['--op', flags.op], ['--ir', flags.ir], ['--shape', flags.shape], ['--config', flags.config]] as const) {
      if (v !== undefined) throw new KgenError({ field: flag, problem: 'given with --kernels', expected: 'the kernels in the --kernels file', hint: `put "${flag.slice(2)}" into each entry of the file` });
    }
    const list = parseJsonInput(readUserFile(flags.kernels, '--kernels', SMALL_JSON.maxChars), { field: '--kernels', source: pathText(flags.kernels), expected: 'a JSON list of {op, shape, ...}' });
    if (!Array.isArray(list)) throw new KgenError({ field: '--kernels', problem: `${pathText(flags.kernels)} holds ${valueText(list)}`, expected: 'a JSON list of {op, shape, ...}' });
    const host = cliHost();
    kernels = list.map((entry, i) => {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new KgenError({ field: `--kernels[${i}]`, problem: `got ${valueText(entry)}`, expected: 'an object {op, shape, ...}' });
      const unknown = Object.keys(entry).find((key) => !KERNEL_KEYS.includes(key));
      if (unknown !== undefined) throw new KgenError({ field: `--kernels[${i}].${unknown}`, problem: 'unknown key', expected: `one of ${KERNEL_KEYS.join(', ')}` });
      const e = entry as Record<string, unknown>;
      return { ...e, ...host, target: flags.target, device: (e.device as string | undefined) ?? flags.device, isa: (e.isa as string | undefined) ?? flags.isa, shape: e.shape as string } as PackageKernel;
    });
  } else {
    kernels = [toRequest(flags)];
  }
  const records = flags.records ? openDbForReading(flags) : undefined;
  let result;
  try {
    result = await buildPackage({ kernels, records, name: flags.packageName ?? basename(resolve(dir)), command: ['kgen', ...process.argv.slice(2)].join(' ') });
  } finally {
    records?.close();
  }
  for (const note of result.notes) process.stderr.write(`kgen: ${note}\n`);
  // A name npm would refuse is made valid (as the directory's name is), and the user is told where
  // the package has a package.json to name (a C or CUDA package takes its library name from it instead).
  if (flags.packageName !== undefined && npmPackageName(flags.packageName) !== flags.packageName && 'package.json' in result.files) {
    process.stderr.write(`kgen: --package-name ${quoted(flags.packageName)} is not a valid npm name, so package.json names the package ${quoted(npmPackageName(flags.packageName))} (lower case, - for other characters; pass a valid name to choose it)\n`);
  }
  writeOutputTree(dir, result.files, { field: '--package' });
  if (flags.json) printJson({ package: dir, files: Object.keys(result.files), index: result.index });
  else process.stderr.write(`kgen: wrote a package of ${result.index.kernels.length} ${result.index.target} kernel(s) to ${pathText(dir)}: ${result.index.kernels.map((k) => k.name).join(', ')}\n`);
}
