/**
 * Baseline rows: naive attention that materialises the whole score matrix (bench/naive-attention.c,
 * -O3 -march=native, OpenMP threads), on f32 K and V holding the f16 cache's values.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { log, type BenchRow } from './common.js';
import {
  attentionRow,
  checkAttention,
  f16Values,
  kvBytes,
  peerTolerance,
  writeAttentionInputs,
  type AttentionInputs,
  type AttentionTiming,
  type AttentionWorkload,
} from './attention-common.js';

/** Compiles the baseline; returns the reason instead when gcc or OpenMP is missing. */
export function buildNaiveAttention(benchSrc: string, workDir: string): string | { exe: string } {
  const exe = join(workDir, 'naive-attention');
  const cc = spawnSync('gcc', ['-O3', '-march=native', '-fopenmp', '-Wall', join(benchSrc, 'naive-attention.c'), '-o', exe, '-lm'], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return `cannot compile bench/naive-attention.c with -fopenmp: ${(cc.error?.message ?? cc.stderr).trim().split('\n')[0]}`;
  return { exe };
}

function runNaive(exe: string, w: AttentionWorkload, inDir: string, outDir: string, threads: readonly number[]): { timings: AttentionTiming[]; o: Float32Array } {
  const { Hq, Hkv, D, Sq, Skv } = w.shape;
  mkdirSync(outDir, { recursive: true });
  const args = [inDir, outDir, ...[Hq, Hkv, D, Sq, Skv, w.causal ? 1 : 0, w.warmup, w.runs].map(String), ...threads.map(String)];
  const r = spawnSync(exe, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`naive-attention: ${(r.error?.message ?? r.stderr).trim().split('\n').pop()}`);
  const timings = r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { threads: number; median_ms: number; min_ms: number; runs: number })
    .map((l) => ({ threads: l.threads, medianMs: l.median_ms, minMs: l.min_ms, runs: l.runs, copies: 1 }));
  const o = readFileSync(join(outDir, 'o.bin'));
  return { timings, o: new Float32Array(o.buffer, o.byteOffset, o.byteLength / 4) };
}

/** Checks the baseline on the check shape, then times the workload (its K and V: the f16 values in f32). */
export function benchNaiveAttention(
  exe: string,
  w: AttentionWorkload,
  inputs: AttentionInputs,
  threads: readonly number[],
  check: { workload: AttentionWorkload; inputs: AttentionInputs },
  workDir: string,
): BenchRow[] {
  const label = `${w.phase} naive attention (full score matrix, f32)`;
  const asF16 = (x: AttentionInputs): AttentionInputs => ({ ...x, k: f16Values(x.k), v: f16Values(x.v) });
  const checkIn = join(workDir, `naive-in-${check.workload.name.replace(/\s+/g, '-')}`);
  writeAttentionInputs(checkIn, asF16(check.inputs));
  const probe = runNaive(exe, check.workload, checkIn, join(workDir, 'naive-check-out'), [threads[0]!]);
  const verdict = checkAttention(check.workload, asF16(check.inputs), probe.o, peerTolerance({ quantizedQ: false }));
  log(`${label}: ${verdict.ok ? 'matches the reference' : 'OUTPUT WRONG, no time reported'} on ${check.workload.name} (${verdict.detail})`);
  const bytes = kvBytes(w.shape, 'f32');
  let timings = threads.map((t): AttentionTiming => ({ threads: t, medianMs: NaN, minMs: NaN, runs: 0, copies: 1 }));
  if (verdict.ok) {
    const inDir = join(workDir, `naive-in-${w.name}`);
    writeAttentionInputs(inDir, asF16(inputs));
    log(`${label}: ${threads.join(',')} thread(s), ${w.warmup} + ${w.runs} calls`);
    timings = runNaive(exe, w, inDir, join(workDir, `naive-out-${w.name}`), threads).timings;
  }
  return timings.map((t) => attentionRow(w, label, bytes, t, verdict.ok, `gcc -O3 -march=native -fopenmp; check: ${verdict.detail}`));
}
