/**
 * GPU bench: kgen's CUDA kernels on this machine's NVIDIA GPU, for docs/PERFORMANCE.md.
 *
 *   npm run bench:gpu                 table on stdout, progress on stderr
 *   npm run bench:gpu -- --json       the same rows as JSON lines
 *
 * Rows, all measured in one run on one GPU:
 *   - copy probe: device-to-device copy of 1 GiB (cuMemcpyDtoD); GB/s = 2 x bytes / time (read + write);
 *   - GEMV M=1, N=4096, K=14336 for each format: the default config and the best of a short tune
 *     (`--tune-trials`), GB/s = the kernel's bytes / time, and % of the copy probe (goal >= 85%);
 *   - M = 1, 16, 64, 256 at N=4096, K=14336 for q4 and q3.5, next to torch's f16 matmul (cuBLAS) on
 *     the same shapes when `python3 -c 'import torch'` works (else the row says torch was not found);
 *     goal: M=16 within 1.3x of M=1.
 * Every kgen row is checked against the f64 reference before its time is kept. Times are CUDA-event
 * medians with the L2 flushed (3x its size written) before every run.
 * Options: --formats q35,q4,q8,q4_0,q8_0,f16   --tune-trials 8 (0: no tune)   --runs 51
 *          --no-torch   --record (the short tunes write to the tuning database: --db PATH, else
 *          $KGEN_DB, else the default; only when the GPU is its profile's device)   --db PATH
 * Records nothing unless --record is given.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { emit } from '../src/api/emit.js';
import { cudaHarness, cudaRunnerFor, nvccVersion } from '../src/backends/cuda/gpu-runner.js';
import { defaultDbPath } from '../src/db/location.js';
import { openTuningDb } from '../src/db/sqlite.js';
import { describeGpu, detectGpus, nvidiaProfileForGpu } from '../src/device/gpu.js';
import type { DeviceProfile } from '../src/device/index.js';
import { loadProfiles } from '../src/device/index.js';
import { parseTimesLine } from '../src/backends/harness.js';
import type { Timing } from '../src/backends/types.js';
import { CATALOG } from '../src/ir/catalog.js';
import type { MatmulShape } from '../src/ir/types.js';
import { opKit } from '../src/ops/index.js';
import { tune } from '../src/tune/tuner.js';
import { benchArgs, log } from './common.js';

const USAGE = `  npm run bench:gpu                 table on stdout, progress on stderr
  npm run bench:gpu -- --json       the same rows as JSON lines
Options: --formats q35,q4,q8,q4_0,q8_0,f16   --tune-trials 8 (0: no tune)   --runs 51   --no-torch
         --record (the short tunes write to the tuning database)   --db PATH`;
const { flag, opt } = benchArgs(process.argv.slice(2), {
  flags: ['--json', '--no-torch', '--record'],
  options: ['--formats', '--tune-trials', '--runs', '--db'],
  usage: USAGE,
});

const json = flag('--json');
const formats = opt('--formats', 'q35,q4,q8,q4_0,q8_0,f16').split(',');
const tuneTrials = Number(opt('--tune-trials', '8'));
const runs = Number(opt('--runs', '51'));
const GEMV: MatmulShape = { M: 1, N: 4096, K: 14336 };
const SWEEP_M = [1, 16, 64, 256];
const SWEEP_FORMATS = ['q4', 'q35'];
const COPY_BYTES = 2 ** 30;
const LABEL: Record<string, string> = { q35: 'q3.5' };

/** One line of the table (and of --json). */
export interface GpuBenchRow {
  kind: 'device' | 'probe' | 'kgen' | 'kgen-tuned' | 'torch';
  case: string;
  shape: string;
  ms?: number;
  gbps?: number;
  /** gbps / copy-probe gbps, in % (GEMV rows). */
  pctProbe?: number;
  runs?: number;
  config?: Record<string, unknown>;
  note?: string;
}

const fmtShape = (s: MatmulShape) => `M=${s.M},N=${s.N},K=${s.K}`;

/** Emits the default (or given) config, checks it against the reference, and times it on the GPU. */
async function timeKgen(device: DeviceProfile, format: string, shape: MatmulShape, flushBytes: number, cacheDir: string): Promise<{ timing: Timing; bytes: number; config: Record<string, unknown> }> {
  const { plan, rendered } = emit({ target: 'cuda', op: `matmul_${format}`, shape, device: device.name });
  const runner = cudaRunnerFor(plan);
  if (!runner.name.startsWith('gpu ')) throw new Error(`would run through ${runner.name}`);
  const build = await runner.build(plan, rendered, { cacheDir });
  if (build.status !== 'ok') throw new Error(`${build.status}: ${build.detail.split('\n')[0]}`);
  try {
    const data = opKit(plan.op.kind).workloadData(plan.op, plan.shape, 1);
    const warmup = shape.M >= 64 ? 5 : 10;
    const run = await runner.execute(build, data.inputs, { timing: { warmup, runs: shape.M >= 64 ? Math.min(runs, 21) : runs, flushBytes } });
    if (run.status !== 'ok') throw new Error(`${run.status}: ${run.detail.split('\n')[0]}`);
    const { ok, comparison } = data.check(run.output, plan.tolerance);
    if (!ok) throw new Error(`wrong_result: NMSE ${comparison.nmse.toExponential(2)}`);
    return { timing: run.timing!, bytes: plan.traffic.bytes, config: plan.config };
  } finally {
    build.dispose();
  }
}

/** torch f16 `x @ w.t()` (cuBLAS) at each M, timed like kgen's rows; one JSON line per M. */
const TORCH_SCRIPT = `
import json, sys
try:
    import torch
except Exception as e:
    print(json.dumps({"error": "torch not found (%s)" % e})); sys.exit(0)
if not torch.cuda.is_available():
    print(json.dumps({"error": "torch %s sees no CUDA device" % torch.__version__})); sys.exit(0)
a = json.loads(sys.argv[1])
dev = torch.device("cuda")
torch.manual_seed(1)
w = torch.randn(a["N"], a["K"], device=dev, dtype=torch.float16) * 0.02
flush = torch.empty(max(a["flushBytes"], 1), dtype=torch.uint8, device=dev)
for M in a["Ms"]:
    x = torch.randn(M, a["K"], device=dev, dtype=torch.float16)
    times = []
    for r in range(a["warmup"] + a["runs"]):
        flush.fill_(r & 255)
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        y = x @ w.t()
        e.record()
        e.synchronize()
        if r >= a["warmup"]:
            times.append(s.elapsed_time(e))
    times.sort()
    print(json.dumps({"M": M, "times_ms": times, "torch": torch.__version__, "device": torch.cuda.get_device_name(0)}))
`;

function torchRows(flushBytes: number): GpuBenchRow[] {
  const shape = (M: number) => fmtShape({ M, N: GEMV.N, K: GEMV.K });
  if (flag('--no-torch')) return [];
  const r = spawnSync('python3', ['-c', TORCH_SCRIPT, JSON.stringify({ N: GEMV.N, K: GEMV.K, Ms: SWEEP_M, warmup: 5, runs: 21, flushBytes })], { encoding: 'utf8', timeout: 600_000 });
  if (r.error || r.status !== 0) return [{ kind: 'torch', case: 'torch f16 matmul (cuBLAS)', shape: '-', note: `python3 failed: ${r.error?.message ?? r.stderr.trim().split('\n').pop()}` }];
  const lines = r.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as { error?: string; M?: number; times_ms?: number[]; torch?: string; device?: string });
  if (lines[0]?.error) return SWEEP_M.map((M) => ({ kind: 'torch' as const, case: 'torch f16 matmul (cuBLAS)', shape: shape(M), note: lines[0]!.error }));
  return lines.map((l) => {
    const t = parseTimesLine(JSON.stringify({ times_ms: l.times_ms }))!;
    const bytes = 2 * (GEMV.N * GEMV.K + l.M! * GEMV.K + l.M! * GEMV.N);
    return { kind: 'torch' as const, case: 'torch f16 matmul (cuBLAS)', shape: shape(l.M!), ms: t.medianMs, gbps: bytes / (t.medianMs * 1e6), runs: t.runs, note: `torch ${l.torch} on ${l.device}` };
  });
}

function table(rows: readonly GpuBenchRow[]): string {
  const header = ['case', 'shape', 'time ms', 'GB/s', '% of probe', 'note'];
  const fmt = (n: number | undefined, d: number) => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(d));
  const body = rows.filter((r) => r.kind !== 'device').map((r) => [r.case, r.shape, fmt(r.ms, r.ms !== undefined && r.ms < 1 ? 4 : 3), fmt(r.gbps, 0), r.pctProbe === undefined ? '' : `${r.pctProbe.toFixed(0)}%`, r.note ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const numeric = [false, false, true, true, true, false];
  const line = (cells: readonly string[]) => cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const detection = detectGpus();
  if (detection.status !== 'found') {
    process.stderr.write(`bench:gpu: ${detection.how}; this bench times kernels on an NVIDIA GPU (npm run bench measures the C kernels)\n`);
    process.exit(1);
  }
  const gpu = detection.gpus[0]!;
  const { device, exact } = nvidiaProfileForGpu(loadProfiles(), gpu);
  const harness = await cudaHarness();
  const info = JSON.parse(run(harness, ['info', '--device-name', gpu.name])) as { l2Bytes: number; multiprocessors: number; computeCapability: string };
  const flushBytes = 3 * (info.l2Bytes || device.gpu!.l2Bytes || 0);
  const cacheDir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kgen', 'builds');
  const date = new Date().toISOString().slice(0, 10);
  const rows: GpuBenchRow[] = [
    {
      kind: 'device',
      case: `${describeGpu(gpu)}, ${info.multiprocessors} SMs, ${info.l2Bytes >> 20} MiB L2; nvcc ${await nvccVersion()}; kgen profile ${device.name}${exact ? '' : ' (not this GPU: configs are that profile\'s)'}; ${date}`,
      shape: '-',
    },
  ];
  log(rows[0]!.case);
  /** Keeps a row and logs it at once, so a run cut short by a timeout still leaves its figures. */
  const add = (r: GpuBenchRow): void => {
    rows.push(r);
    const fig = r.ms === undefined ? '' : ` ${r.ms.toFixed(4)} ms, ${r.gbps?.toFixed(0) ?? '-'} GB/s${r.pctProbe === undefined ? '' : `, ${r.pctProbe.toFixed(0)}% of probe`}`;
    log(`row: ${r.case} ${r.shape}${fig}${r.note ? ` (${r.note})` : ''}${r.config ? ` ${JSON.stringify(r.config)}` : ''}`);
  };

  log('probe: device-to-device copy of 1 GiB');
  const copy = parseTimesLine(run(harness, ['copy', '--bytes', String(COPY_BYTES), '--warmup', '3', '--runs', '15', '--device-name', gpu.name]))!;
  const probeGbps = (2 * COPY_BYTES) / (copy.medianMs * 1e6);
  add({ kind: 'probe', case: 'probe: D2D copy (2 x bytes / time)', shape: '1 GiB', ms: copy.medianMs, gbps: probeGbps, runs: copy.runs, note: `cuMemcpyDtoD, min ${copy.minMs.toFixed(3)} ms` });

  const db = flag('--record') && exact ? openTuningDb(opt('--db', defaultDbPath(process.env))) : openTuningDb(':memory:');
  if (flag('--record') && !exact) log(`--record ignored: ${gpu.name} is not ${device.name}, so its times do not belong to that profile`);
  try {
    for (const f of formats) {
      const label = LABEL[f] ?? f;
      try {
        log(`gemv ${label}: default config`);
        const d = await timeKgen(device, f, GEMV, flushBytes, cacheDir);
        const gbps = d.bytes / (d.timing.medianMs * 1e6);
        add({ kind: 'kgen', case: `gemv kgen ${label} default`, shape: fmtShape(GEMV), ms: d.timing.medianMs, gbps, pctProbe: (100 * gbps) / probeGbps, runs: d.timing.runs, config: d.config });
        if (tuneTrials > 0) {
          log(`gemv ${label}: short tune, ${tuneTrials} trials`);
          const summary = await tune({
            db,
            device,
            target: 'cuda',
            workloads: [{ op: CATALOG[`matmul_${f}`]!, shape: GEMV }],
            strategy: 'evolutionary',
            trials: tuneTrials,
            cacheDir,
            parallelBuilds: Math.max(1, Math.min(8, availableParallelism())),
          });
          const best = summary.results[0]?.best;
          if (best?.timing) {
            const tg = summary.results[0]!.workload.bytes / (best.timing.medianMs * 1e6);
            add({ kind: 'kgen-tuned', case: `gemv kgen ${label} tuned (${tuneTrials} trials)`, shape: fmtShape(GEMV), ms: best.timing.medianMs, gbps: tg, pctProbe: (100 * tg) / probeGbps, runs: best.timing.runs, config: best.config });
          }
        }
      } catch (e) {
        add({ kind: 'kgen', case: `gemv kgen ${label} (FAILED)`, shape: fmtShape(GEMV), note: (e as Error).message.split('\n')[0] });
      }
    }
  } finally {
    db.close();
  }

  for (const f of SWEEP_FORMATS) {
    for (const M of SWEEP_M) {
      const shape = { ...GEMV, M };
      const label = `kgen ${LABEL[f] ?? f} default`;
      try {
        log(`${label} ${fmtShape(shape)}`);
        const d = await timeKgen(device, f, shape, flushBytes, cacheDir);
        add({ kind: 'kgen', case: label, shape: fmtShape(shape), ms: d.timing.medianMs, gbps: d.bytes / (d.timing.medianMs * 1e6), runs: d.timing.runs, config: d.config });
      } catch (e) {
        add({ kind: 'kgen', case: `${label} (FAILED)`, shape: fmtShape(shape), note: (e as Error).message.split('\n')[0] });
      }
    }
  }
  log('torch f16 matmul');
  for (const r of torchRows(flushBytes)) add(r);

  if (json) for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
  else process.stdout.write(`# ${rows[0]!.case}\n${table(rows)}\n`);
  for (const goal of goals(rows)) process.stderr.write(`[bench] goal: ${goal}\n`);
}

/** The issue's goals, said against this run's rows. */
function goals(rows: readonly GpuBenchRow[]): string[] {
  const out: string[] = [];
  for (const r of rows.filter((x) => x.case.startsWith('gemv kgen') && x.pctProbe !== undefined)) {
    out.push(`${r.case}: ${r.pctProbe!.toFixed(0)}% of the copy probe (goal >= 85%): ${r.pctProbe! >= 85 ? 'met' : 'MISSED'}`);
  }
  for (const f of SWEEP_FORMATS) {
    const label = `kgen ${LABEL[f] ?? f} default`;
    const at = (M: number) => rows.find((r) => r.case === label && r.shape === fmtShape({ ...GEMV, M }))?.ms;
    const m1 = at(1);
    const m16 = at(16);
    if (m1 && m16) out.push(`${label}: M=16 takes ${(m16 / m1).toFixed(2)}x the M=1 time (goal <= 1.3x): ${m16 / m1 <= 1.3 ? 'met' : 'MISSED'}`);
  }
  return out;
}

function run(cmd: string, argv: string[]): string {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 600_000 });
  if (r.error || r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`);
  return r.stdout;
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:gpu failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
