/**
 * Same-process A/B of two C attention kernels (`npm run bench:ab`): two configs of one op and shape
 * (`--a`, `--b`), or one config emitted by two builds (`--baseline`: A from another build's
 * `dist/src/index.js`), compiled into one binary (bench/ab-attention.c) that alternates their calls
 * with plain reads of the same cache copies, call by call. Each kernel's output is first checked
 * against the f64 reference with its plan's tolerance. Several processes, alternating two binaries
 * (A's code linked first, then B's). Prints per round the median of each and B / A, then the median
 * of the rounds' ratios, how many rounds B was faster, the median per process, and each kernel's time
 * as a share of the plain read.
 *
 * Why: on the 2-vCPU VMs a process keeps a fast or a slow memory mode for its whole life, so the
 * bench's per-process rows differ by 10-30% for the same kernel; alternated in one process, A and B
 * see the same mode. What one process still carries is where its code and buffers landed (3-5%),
 * hence the processes: A against itself read 0.992, 0.995 and 1.015, per process 0.966-1.034, and
 * 0.953 once on a loaded machine (bench/README.md, docs/PERFORMANCE.md "Twenty-first session"). */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { emit as thisEmit, type EmitResult } from '../src/api/emit.js';
import { readProbeSource } from '../src/backends/c/bandwidth.js';
import { cannotRunNativelyReason, harnessIoSource } from '../src/backends/c/runner.js';
import { C_TOOLCHAINS, C_WARNINGS } from '../src/backends/c/toolchain.js';
import { HARNESS_EXIT, weightCopies } from '../src/backends/harness.js';
import { KgenError } from '../src/errors.js';
import { CATALOG } from '../src/ir/catalog.js';
import type { AttentionOp, AttentionShape } from '../src/ir/types.js';
import { opKit } from '../src/ops/index.js';
import { ATTENTION_OPS, type KgenKvFormat } from './attention-rows.js';
import { type BenchArgs, benchArgs, benchHost, COLD_BYTES, log, median, run } from './common.js';

const USAGE = `  node dist/bench/ab.js --b '{"rowGroup":8}'            two configs of this build (A: --a, default the plan's)
  node dist/bench/ab.js --baseline /path/to/dist/src/index.js   the same config from another build (A) and this one (B)
Options: --format f16|q8|q8_0|q4_0 (default q8)   --isa avx512 (default: the planner's, the first C variant this CPU has)
         --shape B=1,Hq=32,Hkv=8,Sq=1,Skv=32768,D=128   --a JSON   --b JSON   --threads 2
         --processes 4 (each its own binary, A's and B's code linked in turn first and second)
         --rounds 5 (per process)   --calls 20 (calls of each kernel per round)   --warmup 5   --keep (keep the temp dir)
         --b-kv-length runtime (B's op takes the KV length at run time, called at Skv; A's reads Skv fixed)
         --json (one JSON object on stdout instead of the table)
         --undisturbed 0.04 (keep only calls whose wall time exceeds the busiest thread's CPU time by at most
           this share: drops calls that waited for a vCPU; each round runs until it has --calls of each)`;

const args = benchArgs(process.argv.slice(2), {
  flags: ['--keep', '--json'],
  options: ['--format', '--isa', '--shape', '--a', '--b', '--baseline', '--threads', '--processes', '--rounds', '--calls', '--warmup', '--b-kv-length', '--undisturbed'],
  usage: USAGE,
});
const { flag, opt, count, knobs: config } = args;
// Annotated, so the compiler knows a call never returns.
const refuse: BenchArgs['refuse'] = args.refuse;

const format = opt('--format', 'q8') as KgenKvFormat;
if (!(format in ATTENTION_OPS)) refuse(`--format must be one of ${Object.keys(ATTENTION_OPS).join(', ')}, got '${format}'`);
const isaAsked = opt('--isa', '');
if (isaAsked) {
  const asked = C_TOOLCHAINS[isaAsked];
  if (!asked || asked.runner) refuse(`--isa must be a C variant this machine runs natively (${Object.keys(C_TOOLCHAINS).join(', ')}), got '${isaAsked}'`);
  const whyNot = cannotRunNativelyReason(isaAsked);
  if (whyNot) refuse(`--isa ${isaAsked}: ${whyNot}`);
}
const shape = opt('--shape', 'B=1,Hq=32,Hkv=8,Sq=1,Skv=32768,D=128');
const threads = count('--threads', '2', 1);
const processes = count('--processes', '4', 1);
const rounds = count('--rounds', '5', 1);
const calls = count('--calls', '20', 1);
const warmup = count('--warmup', '5', 0);
const baseline = opt('--baseline', '');
const configA = config('--a');
const configB = config('--b');
/** --undisturbed: the slack of ab-attention.c's undisturbed-call filter (0: every call counts). */
const slack = Number(opt('--undisturbed', '0'));
if (!(slack >= 0 && slack < 1)) refuse(`--undisturbed needs a share in [0, 1), e.g. 0.04, got '${opt('--undisturbed', '0')}'`);
const bKvLength = opt('--b-kv-length', 'fixed');
if (bKvLength !== 'fixed' && bKvLength !== 'runtime') refuse(`--b-kv-length: got ${JSON.stringify(bKvLength)}; expected fixed or runtime`);

type EmitFn = typeof thisEmit;

async function baselineEmit(entry: string): Promise<EmitFn> {
  try {
    const mod = (await import(pathToFileURL(entry).href)) as { emit?: unknown };
    if (typeof mod.emit === 'function') return mod.emit as EmitFn;
  } catch (e) {
    refuse(`--baseline: cannot load ${entry}: ${(e as Error).message.split('\n')[0]}`);
  }
  refuse(`--baseline: ${entry} does not export emit`);
}

function emitKernel(emit: EmitFn, which: 'a' | 'b', isa: string | undefined, cfg: Record<string, number> | undefined, runtimeLength = false): EmitResult {
  // A run-time KV length: the catalog op as an IR with kvLength "runtime" (ab-attention.c calls it at Skv).
  const op = runtimeLength ? { ir: { ...CATALOG[ATTENTION_OPS[format]], kvLength: 'runtime' } } : { op: ATTENTION_OPS[format] };
  try {
    return emit({ target: 'c', device: 'host', ...benchHost(), ...(isa ? { isa } : {}), ...op, shape, config: cfg, symbol: `kgen_ab_${which}` });
  } catch (e) {
    // The planner's hint names kgen's --config; here the knobs come from --a and --b.
    if (e instanceof KgenError) refuse(`kernel ${which.toUpperCase()} (--${which}): ${e.message.replaceAll('--config', `--${which}`)}`);
    throw e;
  }
}

interface Round {
  round: number;
  /** Calls left out as disturbed (--undisturbed). */
  dropped?: number;
  a_ms: number[];
  b_ms: number[];
  read_ms: number[];
}

// Without --isa, B's plan picks the variant (the first this host has, as `kgen emit` would) and A takes the same.
const b = emitKernel(thisEmit, 'b', isaAsked || undefined, configB, bKvLength === 'runtime');
const isa = String(b.plan.config.isa);
const tc = C_TOOLCHAINS[isa]!;
const a = emitKernel(baseline ? await baselineEmit(resolve(baseline)) : thisEmit, 'a', isa, configA);
// A build whose emit ignores `symbol` names its kernel kgen_<op>, which would not link beside B's.
if (!a.files['kernel.h']?.includes('kgen_ab_a_tasks')) refuse(`--baseline: ${baseline}'s emit does not take the symbol option, so its kernel cannot be linked beside this one's`);
// The fixed-length op: test data for one call at Skv (a run-time B is called at Skv).
const { kvLength: _bKvLength, ...op } = b.plan.op as AttentionOp;
const kvShape = b.plan.shape as AttentionShape;
if (JSON.stringify(a.manifest.tensors) !== JSON.stringify(b.manifest.tensors)) {
  refuse('A and B do not read the same tensors (their manifests differ in a layout or a size): only kernels of one op, shape and KV layout compare');
}
const data = opKit('attention').testData(op, kvShape, 7);
const cacheBytes = ['k.bin', 'v.bin', 'k_scales.bin', 'v_scales.bin'].reduce((s, n) => s + (data.inputs[n]?.length ?? 0), 0);
/**
 * Copies of the cache: enough to exceed COLD_BYTES (3x the L3, as the bench's rows), at least 5 and prime to 6. The driver hands
 * consecutive calls consecutive copies and turns the order of A, B and the read every triple (period
 * 6); with a copy count prime to 6 each of them reads every copy equally often. (With 2 copies, B
 * read one copy twice as often as the other, and which copy sat on slower memory moved the ratio by
 * 5% from process to process.)
 */
function abCopies(): number {
  let c = Math.max(5, weightCopies({ warmup, runs: calls, flushBytes: COLD_BYTES }, cacheBytes));
  while (c % 2 === 0 || c % 3 === 0) c++;
  return c;
}
const copies = abCopies();

const dir = mkdtempSync(join(tmpdir(), 'kgen-ab-'));
try {
  for (const [which, result] of [['a', a], ['b', b]] as const) {
    mkdirSync(join(dir, which));
    for (const name of ['kernel.c', 'kernel.h']) writeFileSync(join(dir, which, name), result.files[name]!);
  }
  writeFileSync(join(dir, 'read_probe.h'), readProbeSource());
  writeFileSync(join(dir, 'harness_io.h'), harnessIoSource());
  for (const [name, bytes] of Object.entries(data.inputs)) writeFileSync(join(dir, name), bytes);
  const flags = [...tc.flags.filter((f) => f !== '-static'), ...C_WARNINGS, '-pthread'];
  // Each kernel with its own flags and its own kernel.h (both include "kernel.h"); the driver with B's.
  for (const which of ['a', 'b']) run(tc.compiler, [...flags, '-c', `-I${join(dir, which)}`, join(dir, which, 'kernel.c'), '-o', join(dir, `${which}.o`)]);
  const benchSrc = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');
  const elemBytes = (t: string) => (t === 'f16' ? 2 : 4);
  // Where each kernel's code lands moves its time by a few percent (loop alignment), and it lands
  // elsewhere with the link order: two binaries, A's code first in one and B's in the other, run in
  // alternate processes, so a layout's luck does not pass for a kernel's merit.
  const exits = [`-DKG_EXIT_USAGE=${HARNESS_EXIT.usage}`, `-DKG_EXIT_OUTPUT=${HARNESS_EXIT.output}`, `-DKG_EXIT_OUT_OF_MEMORY=${HARNESS_EXIT.outOfMemory}`];
  const driver = [...flags, `-I${dir}`, `-DKG_Q_BYTES=${elemBytes(op.q)}`, `-DKG_O_BYTES=${elemBytes(op.o)}`, ...exits, join(benchSrc, 'ab-attention.c')];
  const exes = [['a', 'b'], ['b', 'a']].map((order) => {
    const exe = join(dir, `ab-${order.join('')}`);
    run(tc.compiler, [...driver, ...order.map((w) => join(dir, `${w}.o`)), '-o', exe, '-lm']);
    return exe;
  });

  log(`A: ${baseline || 'this build'}, config ${JSON.stringify(a.plan.config)}`);
  log(`B: this build, config ${JSON.stringify(b.plan.config)}`);
  const same = a.files['kernel.c']!.replaceAll('kgen_ab_a', 'kgen_ab_b').replaceAll('KGEN_AB_A', 'KGEN_AB_B') === b.files['kernel.c'];
  if (same) log('A and B are the same kernel: a control run, whose spread is the noise band of this machine now');
  log(`${format} ${isa} ${shape}: ${(cacheBytes / 2 ** 20).toFixed(1)} MiB of KV a call, ${copies} copies, ${threads} thread(s), ${processes} process(es) of ${rounds} rounds of ${calls} calls each`);
  // Both outputs first (ROUNDS 0: one call of each, no copies): times of a wrong kernel are worth
  // nothing, so then no timing at all and a failing exit.
  run(exes[0]!, [dir, '0', '0', '1', '1', '1']);
  const wrong: string[] = [];
  for (const [which, result] of [['a', a], ['b', b]] as const) {
    // The limit the check applied: the manifest's, widened by int8 Q's own rounding where it has one.
    const { ok, comparison, tolerance } = data.check(new Uint8Array(readFileSync(join(dir, `y_${which}.bin`))), result.manifest.tolerance);
    const nmse = `nmse ${comparison.nmse.toExponential(2)} (limit ${tolerance.nmse.toExponential(2)})`;
    if (ok) log(`${which.toUpperCase()} matches the reference: ${nmse}`);
    else wrong.push(`kernel ${which.toUpperCase()} computes a wrong result: ${nmse}`);
  }
  if (wrong.length) {
    log(wrong.join('\n'));
    process.exitCode = 1;
  } else {
    const outs: string[] = [];
    for (let i = 0; i < processes; i++) {
      outs.push(run(exes[i % 2]!, [dir, String(warmup), String(rounds), String(calls), String(copies), String(threads), ...(slack ? [String(slack)] : [])]));
      log(`process ${i + 1} of ${processes} done`);
    }
    report(outs, same);
  }
} finally {
  if (flag('--keep')) log(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}

/**
 * The table (or with --json the summary) of the processes' output: per round the medians and B / A,
 * then the median of every round's ratio, per process and over all.
 */
function report(outs: readonly string[], same: boolean): void {
  const table = [['process', 'round', 'A ms', 'B ms', 'B / A', 'read ms']];
  const ms = (x: number) => x.toPrecision(4);
  const ratios: number[] = [];
  const perProcess: number[] = [];
  const times = { a: [] as number[], b: [] as number[], read: [] as number[] };
  const share = { a: [] as number[], b: [] as number[] };
  let readBytes = cacheBytes;
  let dropped = 0, emptyRounds = 0;
  outs.forEach((out, i) => {
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Round & { read_bytes?: number });
    readBytes = lines.find((l) => l.read_bytes !== undefined)?.read_bytes ?? readBytes;
    const mine: number[] = [];
    for (const r of lines.filter((l): l is Round => l.round !== undefined)) {
      dropped += r.dropped ?? 0;
      // --undisturbed: a round with no undisturbed call of one kind says nothing.
      if (!r.a_ms.length || !r.b_ms.length || !r.read_ms.length) {
        emptyRounds++;
        continue;
      }
      const am = median(r.a_ms), bm = median(r.b_ms), rm = median(r.read_ms);
      mine.push(bm / am);
      times.a.push(am);
      times.b.push(bm);
      times.read.push(rm);
      share.a.push(rm / am);
      share.b.push(rm / bm);
      table.push([`${i + 1} (${i % 2 ? 'B' : 'A'} first)`, String(r.round), ms(am), ms(bm), (bm / am).toFixed(3), ms(rm)]);
    }
    ratios.push(...mine);
    perProcess.push(median(mine));
  });
  const faster = ratios.filter((x) => x < 1).length;
  const summary = {
    format, isa, shape, threads, copies, calls, processes, rounds,
    a: { build: baseline || 'this', config: a.plan.config, medianMs: median(times.a), readShare: median(share.a) },
    b: { build: 'this', config: b.plan.config, medianMs: median(times.b), readShare: median(share.b) },
    sameKernel: same,
    ratio: { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios), rounds: ratios, perProcess, bFaster: faster },
    readMs: median(times.read),
    readBytes,
    ...(slack ? { undisturbed: { slack, droppedCalls: dropped, emptyRounds } } : {}),
  };
  if (flag('--json')) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return;
  }
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  for (const row of table) process.stdout.write(`${row.map((cell, c) => cell.padStart(widths[c]!)).join('  ')}\n`);
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  process.stdout.write(
    `\nB / A: median ${median(ratios).toFixed(3)} over ${ratios.length} rounds (range ${Math.min(...ratios).toFixed(3)}-${Math.max(...ratios).toFixed(3)}); B faster in ${faster} of ${ratios.length}\n` +
      `per process: ${perProcess.map((x) => x.toFixed(3)).join(', ')}\n` +
      `share of the plain read of the same copies (${(readBytes / 2 ** 20).toFixed(1)} MiB, median of rounds): A ${pct(median(share.a))}, B ${pct(median(share.b))}\n` +
      (slack ? `undisturbed calls only (slack ${slack}): ${dropped} calls dropped, ${emptyRounds} rounds without one of each kind\n` : ''),
  );
}
