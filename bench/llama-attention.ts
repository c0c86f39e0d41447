/**
 * Peer rows: llama.cpp's CPU flash attention (ggml_flash_attn_ext on ggml's CPU backend) over a KV
 * cache in f16, q8_0 or q4_0 laid out as llama.cpp keeps it, through the same prebuilt libraries
 * and harness as the llama.cpp matmul rows (bench/llama-peer.ts, `llama-peer attn`).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { log, type BenchRow } from './common.js';
import type { LlamaLibs } from './llama-peer.js';
import {
  attentionRow,
  cacheCopies,
  checkAttention,
  checkTimedDecode,
  dequantizeCache,
  kvBytes,
  peerTolerance,
  type AttentionInputs,
  type AttentionTiming,
  type AttentionWorkload,
  type KvFormat,
} from './attention-common.js';

export interface LlamaAttentionCase {
  libs: LlamaLibs;
  /** The ggml CPU variant (the one ggml's loader picks on this CPU). */
  variant: string;
  format: KvFormat;
  workload: AttentionWorkload;
  /** Directory with q.f32, k.f32, v.f32 of the workload's inputs (writeAttentionInputs). */
  inputDir: string;
  /** Those inputs (Q for the check of a decode's timed output). */
  inputs: AttentionInputs;
  threads: readonly number[];
  workDir: string;
}

interface HarnessOut {
  timings: AttentionTiming[];
  /** The cache bytes ggml stored (token-major rows), and O of the first call ([Sq][Hq][D]). */
  k: Uint8Array;
  v: Uint8Array;
  o: Float32Array;
  version: string;
  commit: string;
}

function runHarness(c: LlamaAttentionCase, w: AttentionWorkload, copies: number, threads: readonly number[]): HarnessOut {
  const { Hq, Hkv, D, Sq, Skv } = w.shape;
  const out = join(c.workDir, `llama-attn-${c.format}-${w.name.replace(/\s+/g, '-')}`);
  mkdirSync(out, { recursive: true });
  const args = ['attn', c.libs.dir, c.variant, c.inputDir, out, c.format, ...[Hq, Hkv, D, Sq, Skv, w.causal ? 1 : 0, copies, w.warmup, w.runs].map(String), ...threads.map(String)];
  const r = spawnSync(c.libs.exe, args, { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (r.error) throw new Error(`llama-peer: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`llama-peer attn exited ${r.status}: ${r.stderr.trim().split('\n').pop()}`);
  const lines = r.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
  const setup = lines.find((l) => l['setup']) as { version: string; commit: string; kv_bytes: number } | undefined;
  if (!setup || setup.kv_bytes !== Math.round(kvBytes(w.shape, c.format))) throw new Error(`llama-peer attn: unexpected output ${r.stdout.slice(0, 200)}`);
  const timings = lines
    .filter((l) => 'median_ms' in l)
    .map((l) => {
      if (l['same_as_first'] === false) log(`llama.cpp FA ${c.format} ${l['threads']}T: O differs in some bits from the first thread count's O`);
      return { threads: l['threads'] as number, medianMs: l['median_ms'] as number, minMs: l['min_ms'] as number, runs: l['runs'] as number, copies };
    });
  const o = readFileSync(join(out, 'o.bin'));
  return {
    timings,
    k: new Uint8Array(readFileSync(join(out, 'k.bin'))),
    v: new Uint8Array(readFileSync(join(out, 'v.bin'))),
    o: new Float32Array(o.buffer, o.byteOffset, o.byteLength / 4),
    version: setup.version,
    commit: setup.commit,
  };
}

/**
 * Checks llama.cpp's flash attention on the small check shape (`check`, whose inputs are in
 * `checkDir`) against the f64 reference on the values ggml's cache holds (its own quantizer's
 * bytes, dequantized with kgen's codecs), then times the workload. A failed check gives
 * `(WRONG OUTPUT)` rows without numbers.
 */
export function benchLlamaAttention(c: LlamaAttentionCase, check: { workload: AttentionWorkload; inputs: AttentionInputs; dir: string }): BenchRow[] {
  const cw = check.workload;
  const n = cw.shape.Skv * cw.shape.Hkv * cw.shape.D;
  const probe = runHarness({ ...c, inputDir: check.dir }, cw, 1, [c.threads[0]!]);
  const tol = peerTolerance({ quantizedQ: c.format !== 'f16', f16Accumulation: c.format === 'f16' });
  const verdict = checkAttention(cw, { q: check.inputs.q, k: dequantizeCache(probe.k, c.format, n), v: dequantizeCache(probe.v, c.format, n) }, probe.o, tol);
  const label = `${c.workload.phase} llama.cpp FA ${c.format} cache`;
  log(`${label}: ${verdict.ok ? 'matches the reference' : 'OUTPUT WRONG, no time reported'} on ${cw.name} (${verdict.detail})`);

  const w = c.workload;
  const bytes = kvBytes(w.shape, c.format);
  const copies = cacheCopies(w, bytes);
  log(`${label}: ggml-cpu-${c.variant}, ${copies} cache cop${copies === 1 ? 'y' : 'ies'} of ${(bytes / 2 ** 20).toFixed(1)} MiB, ${c.threads.join(',')} thread(s)`);
  const timed = verdict.ok ? runHarness(c, w, copies, c.threads) : undefined;
  // O of the timed run's first call, on the cache ggml stored for it.
  const nw = w.shape.Skv * w.shape.Hkv * w.shape.D;
  const timedVerdict = timed ? checkTimedDecode(w, { q: c.inputs.q, k: dequantizeCache(timed.k, c.format, nw), v: dequantizeCache(timed.v, c.format, nw) }, timed.o, tol) : undefined;
  if (timedVerdict) log(`${label}: ${timedVerdict.ok ? 'matches the reference' : 'OUTPUT WRONG, no time reported'} on ${w.name} (${timedVerdict.detail})`);
  const ok = verdict.ok && timedVerdict?.ok !== false;
  const note = `ggml ${probe.version} ${probe.commit} ggml-cpu-${c.variant}; check: ${verdict.detail}${timedVerdict ? `; timed shape: ${timedVerdict.detail}` : ''}`;
  const timings = timed?.timings ?? c.threads.map((t) => ({ threads: t, medianMs: NaN, minMs: NaN, runs: 0, copies }));
  return timings.map((t) => attentionRow(w, `${label} (${c.variant})`, bytes, t, ok, note));
}
