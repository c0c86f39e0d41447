import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attentionOnValues } from '../src/reference/attention.js';
import {
  attentionInputs,
  checkAttention,
  checkWorkload,
  peerTolerance,
  swapOuter,
  writeAttentionInputs,
  type AttentionWorkload,
} from '../bench/attention-common.js';
import { benchOrtAttention } from '../bench/ort-attention.js';
import { benchNaiveAttention, buildNaiveAttention } from '../bench/naive-attention.js';
import { benchLlamaAttention } from '../bench/llama-attention.js';
import { loadLlama } from '../bench/llama-peer.js';
import { benchKgenAttention, sharedTestData } from '../bench/attention-rows.js';
import { COLD_BYTES } from '../bench/common.js';
import { attentionFlops } from '../bench/attention-common.js';
import { attentionTraffic, visiblePairs } from '../src/plan/attention-common.js';
import { CATALOG } from '../src/ir/catalog.js';
import type { AttentionOp } from '../src/ir/types.js';
import { cannotRunReason } from '../src/backends/c/runner.js';
import { skipReason } from './helpers.js';

/** The attention bench's peers on tiny workloads: each must pass its reference check and give a time. */
const benchSrc = join(import.meta.dirname, '..', 'bench');
const workDir = mkdtempSync(join(tmpdir(), 'kgen-attn-bench-test-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

// Ragged: Skv = 130 and 40 are multiples of no tile; GQA group 4; D = 64 (the timed rows use 128).
const DECODE: AttentionWorkload = { name: 'decode-tiny', phase: 'decode', shape: { B: 1, Hq: 8, Hkv: 2, D: 64, Sq: 1, Skv: 130 }, causal: true, warmup: 0, runs: 1, copies: 2 };
const PREFILL: AttentionWorkload = { name: 'prefill-tiny', phase: 'prefill', shape: { B: 1, Hq: 8, Hkv: 2, D: 64, Sq: 40, Skv: 40 }, causal: true, warmup: 0, runs: 1 };

function checkOf(w: AttentionWorkload) {
  const workload = checkWorkload(w);
  return { workload, inputs: attentionInputs(workload.shape, 3), dir: join(workDir, `check-${w.name}`) };
}

function expectTimed(rows: { case: string; ms: number }[], n: number): void {
  expect(rows).toHaveLength(n);
  for (const r of rows) {
    expect(r.case).not.toMatch(/WRONG|FAILED/);
    expect(r.ms).toBeGreaterThan(0);
  }
}

describe('attention bench: shared pieces', () => {
  it('counts the pairs a causal mask lets through', () => {
    for (const [Sq, Skv] of [[1, 130], [5, 37], [40, 40]] as const) {
      let n = 0;
      for (let i = 0; i < Sq; i++) for (let j = 0; j < Skv; j++) if (j <= i + Skv - Sq) n++;
      expect(visiblePairs({ Sq, Skv }, true)).toBe(n);
    }
    // The plan's flops (rooflines, records) count the same pairs as the bench's rows.
    const causal = { ...(CATALOG.attention_f16 as AttentionOp), causal: true };
    const shape = { B: 2, Hq: 4, Hkv: 1, Sq: 40, Skv: 40, D: 64 };
    expect(attentionTraffic(causal, shape).flops).toBe(attentionFlops(shape, true));
    expect(attentionTraffic({ ...causal, causal: false }, shape).flops).toBe(4 * 2 * 4 * 40 * 40 * 64);
  });

  it('accepts the reference output and rejects a wrong head mapping or a missing mask', () => {
    const w = PREFILL;
    const { Hq, Hkv, Sq, Skv, D } = w.shape;
    const x = attentionInputs(w.shape, 11);
    const heads = { q: swapOuter(x.q, Sq, Hq, D), k: swapOuter(x.k, Skv, Hkv, D), v: swapOuter(x.v, Skv, Hkv, D) };
    const asOutput = (o: Float64Array) => swapOuter(Float32Array.from(o), Hq, Sq, D);
    const onValues = (causal: boolean, kv: { q: Float32Array; k: Float32Array; v: Float32Array }) =>
      attentionOnValues(w.shape, { causal, scale: 1 / Math.sqrt(D) }, kv.q, (_b, h) => ({ k: kv.k.subarray(h * Skv * D, (h + 1) * Skv * D), v: kv.v.subarray(h * Skv * D, (h + 1) * Skv * D) }));
    const right = onValues(true, heads);
    expect(checkAttention(w, x, asOutput(right), peerTolerance({ quantizedQ: false })).ok).toBe(true);
    // Query heads reading the other of the two KV heads (a wrong group mapping).
    const swapHalves = (a: Float32Array) => Float32Array.from([...a.subarray(a.length / 2), ...a.subarray(0, a.length / 2)]);
    const swappedKv = { ...heads, k: swapHalves(heads.k), v: swapHalves(heads.v) };
    const wrong = onValues(true, swappedKv);
    expect(checkAttention(w, x, asOutput(wrong), peerTolerance({ quantizedQ: true })).ok).toBe(false);
    const unmasked = onValues(false, heads);
    expect(checkAttention(w, x, asOutput(unmasked), peerTolerance({ quantizedQ: true })).ok).toBe(false);
  });
});

describe('attention bench: onnxruntime GroupQueryAttention', () => {
  for (const type of ['f32', 'f16'] as const) {
    for (const w of [DECODE, PREFILL]) {
      it(`${w.phase} with a ${type} cache matches the reference and is timed`, async () => {
        const rows = await benchOrtAttention(w, attentionInputs(w.shape, 5), type, [1], checkOf(w));
        expectTimed(rows, 1);
        // A decode's timed output is checked too, not only the small check shape's.
        if (w.phase === 'decode') expect(rows[0]!.note).toMatch(/timed shape: nmse/);
      });
    }
  }
});

const gcc = skipReason(['gcc']);
describe.skipIf(gcc !== undefined)('attention bench: naive baseline', () => {
  it('materialising the score matrix matches the reference on 1 and 2 threads', () => {
    const b = buildNaiveAttention(benchSrc, workDir);
    if (typeof b === 'string') throw new Error(b);
    const rows = benchNaiveAttention(b.exe, PREFILL, attentionInputs(PREFILL.shape, 5), [1, 2], checkOf(PREFILL), workDir);
    expectTimed(rows, 2);
  });
});

describe('attention bench: llama.cpp flash attention', async () => {
  const libs = gcc === undefined ? await loadLlama({ workDir, benchSrc }) : gcc;
  const best = typeof libs === 'string' ? undefined : libs.variants.filter((v) => v.score > 0).sort((a, b) => b.score - a.score)[0];
  if (typeof libs === 'string') console.warn(`NOTE: llama.cpp attention tests skipped: ${libs}`);
  for (const format of ['f16', 'q8_0', 'q4_0'] as const) {
    for (const w of [DECODE, PREFILL]) {
      it.skipIf(typeof libs === 'string' || !best)(`${w.phase} with a ${format} cache matches the reference and is timed`, () => {
        if (typeof libs === 'string' || !best) return;
        const inputDir = join(workDir, `llama-in-${w.name}`);
        const inputs = attentionInputs(w.shape, 5);
        writeAttentionInputs(inputDir, inputs);
        const check = checkOf(w);
        writeAttentionInputs(check.dir, check.inputs);
        const rows = benchLlamaAttention({ libs, variant: best.name, format, workload: w, inputDir, inputs, threads: [1, 2], workDir }, check);
        expectTimed(rows, 2);
        if (w.phase === 'decode') expect(rows[0]!.note).toMatch(/timed shape: nmse/);
      });
    }
  }
});

// kgen's rows are counted as the peers' are: a causal prefill's GFLOPS over the visible pairs only
// (the plan's traffic counts all Sq·Skv, twice as many), a decode's copies against 3x the L3.
const avx2 = cannotRunReason('avx2');
if (avx2) console.warn(`SKIP: kgen attention rows: ${avx2}`);
describe.skipIf(avx2 !== undefined)('attention bench: kgen rows', () => {
  const data = sharedTestData(7);
  it('counts a causal prefill\'s useful flops, as the peers do', async () => {
    const [row] = await benchKgenAttention({ workload: PREFILL, format: 'f16', target: { name: 'c', isa: 'avx2' }, threads: [1], data });
    expect(row!.case).not.toMatch(/WRONG|FAILED/);
    expect(row!.gflops! * row!.ms * 1e6).toBeCloseTo(attentionFlops(PREFILL.shape, true), -1);
    expect(row!.copies).toBe(1);
    // A prefill re-reads its K/V tiles: no GB/s, as the peers' prefill rows have none.
    expect(row!.gbps).toBeNaN();
  });
  it('rotates a decode\'s cache copies over 3x the L3, or says in the note that the runner\'s limit left them short', async () => {
    const [row] = await benchKgenAttention({ workload: DECODE, format: 'q8_0', target: { name: 'c', isa: 'avx2' }, threads: [1], data });
    expect(row!.case).not.toMatch(/WRONG|FAILED/);
    // Its own read covers the same bytes as its GB/s: the share of times is the share of speeds.
    expect(row!.pctOwnRead).toBeCloseTo((100 * row!.gbps) / row!.ownReadGbps!, 6);
    if (row!.copies! * row!.bytes >= COLD_BYTES) expect(row!.note).not.toMatch(/only \d+ cache copies/);
    else expect(row!.note).toMatch(/only \d+ cache copies/);
  });
});
