/**
 * Same-process A/B of WebAssembly GEMV kernels (matmul, M=1, one thread): the kernel of one format,
 * shape and config as this build emits it, as another build emits it (`--baseline`, first), and
 * hand-edited copies of its module text (`--wat a.wat,b.wat`: the emitted `kernel.wat` or
 * `kernel.relaxed.wat`, written out by `--keep DIR`, changed by hand or script). Each variant is
 * assembled and instantiated on its own memory holding the same weights and activations; its
 * outputs are compared bit for bit with the first variant's, then the variants' `rows` exports are
 * timed in turn (odd rounds in reverse order), each round taking each one's best of 3 passes of
 * `calls` calls over all N rows, so all of them see the same machine state.
 *
 *   node dist/bench/wasm-gemv-ab.js [--format q35] [--shape N=256,K=3584] [--level simd128|relaxed]
 *     [--config '{"unroll":2}'] [--baseline /other/dist/src/index.js] [--wat a.wat,b.wat] [--keep DIR]
 *     [--rounds 15] [--calls 100]
 *
 * Prints, per variant, the outputs that differ from the first variant's, the median of its round
 * times (ms and ns per 64 weights) and the median of its per-round ratio to the first variant, with
 * the rounds it was faster in. N=256, K=3584 keeps the weights in L2 (the decode's cost);
 * N=4096, K=14336 is the bench's GEMV row. Re-runs itself under the runner's Node flags.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { assembleWat } from '../src/backends/wasm/assemble.js';
import { HARNESS_NODE_FLAGS } from '../src/backends/wasm/runner.js';
import * as kgen from '../src/index.js';
import type { WeightFormatName } from '../src/ir/types.js';
import { FORMATS } from '../src/quant/index.js';
import { benchArgs, median } from './common.js';
import { GEMV_ALIGN, gemvLayout, gemvWeightBytes } from './wasm-gemv-memory.js';

const USAGE = `  node dist/bench/wasm-gemv-ab.js [--format q35] [--shape N=256,K=3584] [--level simd128|relaxed]
    [--config '{"unroll":2}'] [--baseline /other/dist/src/index.js] [--wat a.wat,b.wat] [--keep DIR] [--rounds 15] [--calls 100]`;
const PAGE = 65536;
/** f16 bits of the block scales written over the random weight bytes (1, 0.5, 2^-4, 2: finite, normal sums). */
const F16_SCALES = [0x3c00, 0x3800, 0x2c00, 0x4000];
const PASSES = 3;

interface Variant { name: string; wat: string; call?: () => void; y?: Float32Array; times: number[] }

if (!HARNESS_NODE_FLAGS.every((f) => process.execArgv.includes(f))) {
  const r = spawnSync(process.execPath, [...HARNESS_NODE_FLAGS, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const args = benchArgs(process.argv.slice(2), { flags: [], options: ['--format', '--shape', '--level', '--config', '--baseline', '--wat', '--keep', '--rounds', '--calls'], usage: USAGE });
const format = args.opt('--format', 'q35');
if (!Object.hasOwn(FORMATS, format)) args.refuse(`--format must be one of ${Object.keys(FORMATS).join(', ')}, got '${format}'`);
const shapeText = args.opt('--shape', 'N=256,K=3584');
const shape = Object.fromEntries(shapeText.split(',').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]));
const N = shape['N']!;
const K = shape['K']!;
if (!(Number.isInteger(N) && N > 0 && Number.isInteger(K) && K > 0)) args.refuse(`--shape needs N and K as whole numbers > 0, e.g. N=256,K=3584, got '${shapeText}'`);
const level = args.opt('--level', 'simd128');
if (level !== 'simd128' && level !== 'relaxed') args.refuse(`--level must be simd128 or relaxed, got '${level}'`);
const moduleText = level === 'relaxed' ? 'kernel.relaxed.wat' : 'kernel.wat';
const config = args.knobs('--config');
const rounds = args.count('--rounds', '15', 1);
const calls = args.count('--calls', '100', 1);
const op = `matmul_${format}`;

/** The module text of the GEMV kernel `emit` writes for this op, shape and config, and its byte sizes. */
async function emitted(emit: typeof kgen.emit, label: string) {
  const e = await emit({ target: 'wasm', op, shape: `M=1,N=${N},K=${K}`, ...(config ? { config } : {}) });
  const keep = args.opt('--keep', '');
  if (keep) {
    mkdirSync(join(keep, label), { recursive: true });
    for (const [name, text] of Object.entries(e.files)) writeFileSync(join(keep, label, name), text);
  }
  const weights = e.manifest.weights;
  if (!weights) throw new Error(`${op}: the manifest has no weights`);
  const blockBytes = FORMATS[format as WeightFormatName].codec(weights.groupSize).bytesPerBlock;
  return { wat: e.files[moduleText]!, rowBytes: weights.rowBytes, blockBytes };
}

const mine = await emitted(kgen.emit, 'current');
const variants: Variant[] = [];
const baseline = args.opt('--baseline', '');
if (baseline) {
  const other = (await import(pathToFileURL(baseline).href)) as typeof kgen;
  variants.push({ name: 'baseline', wat: (await emitted(other.emit, 'baseline')).wat, times: [] });
}
variants.push({ name: 'current', wat: mine.wat, times: [] });
for (const file of args.opt('--wat', '').split(',').filter(Boolean)) variants.push({ name: file, wat: readFileSync(file, 'utf8'), times: [] });

const wBytes = N * mine.rowBytes;
// The workspace's size is the kernel's own export; a page past the activations holds any of them.
const at = gemvLayout(4 * K, 4 * N, PAGE - GEMV_ALIGN, wBytes);
const weights = gemvWeightBytes(wBytes, mine.blockBytes, F16_SCALES);

for (const v of variants) {
  const bin = await assembleWat(v.name, v.wat);
  if ('error' in bin) throw new Error(`${v.name}: ${bin.error}`);
  const memory = new WebAssembly.Memory({ initial: Math.ceil(at.end / PAGE) });
  const exports = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(bin.bytes)), { env: { memory } }).exports as Record<string, (...a: number[]) => void>;
  new Uint8Array(memory.buffer).set(weights, at.w);
  const x = new Float32Array(memory.buffer, at.x, K);
  for (let i = 0; i < K; i++) x[i] = Math.sin(1.3 * i) * (1 + (i % 7));
  exports[`kgen_${op}_prepare`]!(at.x, at.workspace);
  const rows = exports[`kgen_${op}_rows`]!;
  v.call = () => rows(at.workspace, at.w, 0, 0, at.y, 0, N);
  v.call();
  v.y = new Float32Array(memory.buffer, at.y, N).slice();
}
const first = variants[0]!;
for (const v of variants.slice(1)) {
  const differ = v.y!.filter((y, i) => !Object.is(y, first.y![i])).length;
  process.stdout.write(`${v.name}: ${differ} of ${N} outputs differ from ${first.name}'s\n`);
}
for (let r = 0; r < rounds; r++) {
  // Odd rounds run the variants in reverse order: none always runs right after another.
  for (const v of r % 2 ? [...variants].reverse() : variants) {
    let best = Infinity;
    for (let p = 0; p < PASSES; p++) {
      const t0 = performance.now();
      for (let c = 0; c < calls; c++) v.call!();
      best = Math.min(best, (performance.now() - t0) / calls);
    }
    v.times.push(best);
  }
}
const units = (N * K) / 64;
for (const v of variants) {
  const ratios = v.times.map((t, i) => t / first.times[i]!);
  process.stdout.write(`${v.name}: median ${median(v.times).toFixed(4)} ms (${((median(v.times) * 1e6) / units).toFixed(3)} ns per 64 weights), `
    + `/ ${first.name} ${median(ratios).toFixed(3)}, faster in ${ratios.filter((q) => q < 1).length} of ${rounds} rounds\n`);
}
