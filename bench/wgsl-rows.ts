/**
 * WGSL rows of the throughput bench: kgen's q4 GEMV (M=1, N=K=4096) on the adapter the WGSL runner
 * picks for the `swiftshader` profile, default config against the best of a short `kgen tune` (both
 * timed by the tuner in this run), next to onnxruntime-web's WebGPU MatMulNBits on the same adapter
 * and shape (a child Node process with the runner's environment: bench/ort-web-child.ts).
 * Each is checked against the f64 reference before its time is kept.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { dawnAdapterFor } from '../src/backends/wgsl/runner.js';
import { openTuningDb } from '../src/db/sqlite.js';
import { getDevice } from '../src/device/index.js';
import { CATALOG } from '../src/ir/catalog.js';
import type { MatmulShape } from '../src/ir/types.js';
import { Rng } from '../src/numeric/random.js';
import { dequantizeMatrix, FORMATS, quantizeMatrix } from '../src/quant/index.js';
import { compareOutputs } from '../src/reference/compare.js';
import { referenceMatmul } from '../src/reference/matmul.js';
import { tune, type TuneEvent } from '../src/tune/tuner.js';
import { log, median, type BenchRow } from './common.js';
import { f32Bytes } from './onnx-model.js';
import { nibbleBlocksToOrt } from './ort-weights.js';

export const WGSL_BENCH_SHAPE: MatmulShape = { M: 1, N: 4096, K: 4096 };
/** kgen's q4 group size, and the MatMulNBits block_size that computes the same product from the same bytes. */
const GROUP = 64;
/** The peer's output must match the reference as closely as kgen's must (f32 activations: NMSE 1e-8). */
const PEER_NMSE = 1e-8;

export interface WgslBenchOptions {
  workDir: string;
  cacheDir: string;
  /** Tuner trials (0: the default config only). */
  trials: number;
  /** Timed session.run calls of the peer (after its first, compiling, call and one warm-up). */
  peerRuns: number;
  peer: boolean;
}

const fmtShape = (s: MatmulShape) => `M=${s.M},N=${s.N},K=${s.K}`;

function row(kind: BenchRow['kind'], label: string, shape: MatmulShape, weightBytes: number, medianMs: number, minMs: number, runs: number, note: string): BenchRow {
  const { M, N, K } = shape;
  const bytes = weightBytes + M * K * 4 + M * N * 4;
  return { kind, case: label, shape: fmtShape(shape), threads: 0, ms: medianMs, minMs, bytes, gbps: bytes / (medianMs * 1e-3) / 1e9, gflops: (2 * M * N * K) / (medianMs * 1e-3) / 1e9, runs, note };
}

/** The WGSL rows; none (with the reason logged) where no WebGPU adapter runs here. */
export async function wgslRows(o: WgslBenchOptions): Promise<BenchRow[]> {
  const device = getDevice('swiftshader');
  let adapter: Awaited<ReturnType<typeof dawnAdapterFor>>;
  try {
    adapter = await dawnAdapterFor(device);
  } catch (e) {
    log(`WGSL rows skipped: ${(e as Error).message}`);
    return [];
  }
  const shape = WGSL_BENCH_SHAPE;
  const { N, K } = shape;
  const where = adapter.swiftShader ? 'SwiftShader' : adapter.name;
  const weightBytes = (N * K * (2 + GROUP / 2)) / GROUP;
  const rows: BenchRow[] = [];

  // kgen: the tuner times the default config first, then `trials - 1` others, then re-times the finalists.
  const db = openTuningDb(join(o.workDir, 'wgsl-tune.db'));
  try {
    const label = `wgsl m1 kgen q4 ${where}`;
    const onEvent = (e: TuneEvent) => {
      if (e.kind === 'trial') log(`${label}: trial ${e.done}/${e.planned}: ${e.trial.status}${e.trial.timing ? ` ${e.trial.timing.medianMs.toFixed(1)} ms` : ''} ${JSON.stringify(e.trial.config)}`);
    };
    const summary = await tune({
      db, device, target: 'wgsl', workloads: [{ op: CATALOG.matmul_q4!, shape }], strategy: 'evolutionary', trials: Math.max(1, o.trials), cacheDir: o.cacheDir,
      // The roofline's first guess is far below what SwiftShader takes: no timeout from it.
      timeoutMs: 600_000,
      timing: { remeasure: 0, finalists: 2, finalRounds: 1 },
      onEvent,
    });
    const r = summary.results[0]!;
    const d = r.default;
    if (d?.timing) rows.push(row('kgen', `${label} default`, shape, weightBytes, d.timing.medianMs, d.timing.minMs, d.timing.runs, JSON.stringify(d.config)));
    else log(`${label}: the default config did not run: ${d?.status ?? 'no trial'} ${d?.error ?? ''}`);
    const b = r.best;
    if (o.trials > 1 && b?.timing) rows.push(row('kgen', `${label} tuned (${r.added} trials)`, shape, weightBytes, b.timing.medianMs, b.timing.minMs, b.timing.runs, JSON.stringify(b.config)));
    else if (o.trials > 1) log(`${label}: no tuned row: none of the ${r.added} trials ran with a time`);
  } finally {
    db.close();
  }

  if (o.peer) rows.push(...(await peerRows(o, shape, adapter.env, where)));
  return rows;
}

/** onnxruntime-web's MatMulNBits (block_size 64 on kgen q4's own bytes) on the same adapter; none where it cannot run. */
async function peerRows(o: WgslBenchOptions, shape: MatmulShape, env: Record<string, string>, where: string): Promise<BenchRow[]> {
  const { M, N, K } = shape;
  const codec = FORMATS.q4.codec(GROUP);
  const q = quantizeMatrix(codec, new Rng(20240611).fillNormal(new Float32Array(N * K), 0.02), N, K);
  const x = new Rng(20240612).fillNormal(new Float32Array(M * K));
  const ortW = nibbleBlocksToOrt(q, N, K, GROUP);
  // Its own initializers' bytes (f32 scales: 4.5 bits/weight), as the CPU onnxruntime rows count theirs.
  const weightBytes = ortW.b.byteLength + ortW.scales.byteLength;
  const dir = join(o.workDir, 'ort-web');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'job.json'), JSON.stringify({ M, N, K, blockSize: GROUP, warmup: 1, runs: o.peerRuns }));
  writeFileSync(join(dir, 'b.bin'), ortW.b);
  writeFileSync(join(dir, 'scales.bin'), f32Bytes(ortW.scales));
  writeFileSync(join(dir, 'x.bin'), f32Bytes(x));
  const child = fileURLToPath(new URL('./ort-web-child.js', import.meta.url));
  log(`ort-web: MatMulNBits q4/${GROUP} on ${where} (its first run compiles its shaders: a minute or more on SwiftShader)`);
  const r = await execa(process.execPath, [child, dir], { reject: false, timeout: 900_000, env: { ...process.env, ...env } });
  if (r.exitCode !== 0) {
    log(`ort-web rows skipped: ${r.exitCode === 3 ? r.stderr.trim() : `the child failed (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`}`);
    return [];
  }
  const out = JSON.parse(/^\{.*\}$/m.exec(r.stdout)![0]) as { times_ms: number[]; firstRunMs: number; sessionMs: number; adapter: string; ort: string };
  const y = new Float32Array(new Uint8Array(readFileSync(join(dir, 'y.bin'))).buffer);
  const reference = referenceMatmul(shape, { bias: false, activation: 'none', residual: false }, { x, w: dequantizeMatrix(codec, q, N, K) });
  const c = compareOutputs(y, reference);
  if (!(c.nonFinite === 0 && c.nmse <= PEER_NMSE)) {
    log(`ort-web rows skipped: its output disagrees with the reference (nmse ${c.nmse}, ${c.nonFinite} non-finite)`);
    return [];
  }
  log(`ort-web ${out.ort} on ${out.adapter}: session ${out.sessionMs.toFixed(0)} ms, first run ${out.firstRunMs.toFixed(0)} ms, nmse ${c.nmse.toExponential(2)}`);
  return [row('peer', `wgsl m1 ort-web ${out.ort} MatMulNBits q4/${GROUP} ${where}`, shape, weightBytes, median(out.times_ms), Math.min(...out.times_ms), out.times_ms.length, `session.run wall time; first run ${out.firstRunMs.toFixed(0)} ms; nmse ${c.nmse.toExponential(2)}`)];
}
