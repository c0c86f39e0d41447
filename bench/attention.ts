/**
 * The attention rows of the throughput bench (`npm run bench -- --cases attention`): decode at
 * Skv = 4096 and 32768 and causal prefill at Sq = Skv = 2048, B=1, Hq=32, Hkv=8, D=128, for
 * llama.cpp's CPU flash attention (f16, q8_0, q4_0 caches), onnxruntime's GroupQueryAttention
 * (f32 and f16 caches), a naive attention that materialises the score matrix (prefill) and kgen's
 * C (and WebAssembly) attention kernel in every KV format (kgenAttentionRows). Every peer is checked against the f64 reference
 * on a small shape before it is timed. See bench/README.md.
 */
import { join } from 'node:path';
import { log, type BenchRow } from './common.js';
import { benchKgenAttention, kgenAttentionLabel, sharedTestData, type KgenAttentionCase, type KgenKvFormat } from './attention-rows.js';
import type { LlamaLibs } from './llama-peer.js';
import { benchLlamaAttention } from './llama-attention.js';
import { benchOrtAttention, type OrtCacheType } from './ort-attention.js';
import { benchNaiveAttention, buildNaiveAttention } from './naive-attention.js';
import {
  ATTENTION_WORKLOADS,
  attentionInputs,
  checkWorkload,
  shapeLabel,
  writeAttentionInputs,
  type AttentionWorkload,
  type KvFormat,
} from './attention-common.js';

export { ATTENTION_WORKLOADS, KV_FORMATS } from './attention-common.js';
export { KGEN_KV_FORMATS } from './attention-rows.js';
export const ORT_CACHE_TYPES: readonly OrtCacheType[] = ['f32', 'f16'];

export interface KgenAttentionContext {
  threads: readonly number[];
  isas: readonly string[];
  /** Whether to time the WebAssembly kernel too (SIMD128, in a child Node). */
  wasm: boolean;
  /** kgen's KV formats to time. */
  formats: readonly KgenKvFormat[];
  /**
   * The C kernels' `qInt8` values to time side by side (int8 Q on and off in one run) for the
   * caches with int8 codes; empty: each plan's default only.
   */
  qInt8: readonly number[];
  /** Decode: each C row again with the cache copies on 2 MiB pages (`--huge-pages`), side by side. */
  hugePages?: boolean;
}

/**
 * kgen's own attention rows for one workload: the C attention kernel for each KV format and ISA
 * (bench/attention-rows.ts), checked against the f64 reference, then timed. A format or ISA that
 * fails gets a FAILED row with the reason; the others still run. Each kernel's rows run as one
 * `stage` (run.ts brackets each with bandwidth probes).
 */
export async function kgenAttentionRows(
  w: AttentionWorkload,
  ctx: KgenAttentionContext,
  stage: (f: () => BenchRow[] | Promise<BenchRow[]>, o?: { bracket?: boolean }) => Promise<BenchRow[]> = async (f) => f(),
): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const data = sharedTestData(7);
  for (const format of ctx.formats) {
    const configs = format === 'f16' || !ctx.qInt8.length ? [undefined] : ctx.qInt8.map((qInt8) => ({ qInt8 }));
    const cases: KgenAttentionCase[] = [
      ...ctx.isas.flatMap((isa) =>
        configs.flatMap((config) => (ctx.hugePages && w.phase === 'decode' ? [false, true] : [false]).map((hugePages) => ({ workload: w, format, target: { name: 'c', isa } as const, threads: ctx.threads, config, data, hugePages }))),
      ),
      ...(ctx.wasm ? [{ workload: w, format, target: { name: 'wasm' } as const, threads: ctx.threads, data }] : []),
    ];
    for (const c of cases) {
      try {
        rows.push(...(await stage(() => benchKgenAttention(c), { bracket: w.phase === 'decode' })));
      } catch (e) {
        rows.push(...failedRows(w, kgenAttentionLabel(c), ctx.threads, (e as Error).message));
      }
    }
  }
  return rows;
}

export interface AttentionBenchOptions {
  workloads: readonly AttentionWorkload[];
  threads: readonly number[];
  /** llama.cpp's cache formats; empty: no llama.cpp rows. */
  kvFormats: readonly KvFormat[];
  /** onnxruntime's cache types; empty: no onnxruntime rows. */
  ortTypes: readonly OrtCacheType[];
  naive: boolean;
  /** The loaded llama.cpp libraries; null: no llama.cpp rows (the caller has said why). */
  llama: LlamaLibs | null;
  kgen: KgenAttentionContext | null;
  workDir: string;
  benchSrc: string;
  /** Runs one group of rows and stamps them with the background load (run.ts's stage). */
  stage: (f: () => BenchRow[] | Promise<BenchRow[]>, o?: { bracket?: boolean }) => Promise<BenchRow[]>;
}

/** A row that says why a peer has no numbers (FAILED: it threw). */
function failedRows(w: AttentionWorkload, label: string, threads: readonly number[], message: string): BenchRow[] {
  log(`${label}: FAILED: ${message}`);
  return threads.map((t) => ({ kind: 'peer', case: `${label} (FAILED)`, shape: shapeLabel(w.shape), threads: t, ms: NaN, minMs: NaN, bytes: 0, gbps: NaN, runs: 0, note: message.split('\n')[0] }));
}

/** Every attention row of `o.workloads`, in order: kgen (when it renders), llama.cpp, onnxruntime, naive. */
export async function attentionRows(o: AttentionBenchOptions): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const guarded = async (w: AttentionWorkload, label: string, f: () => BenchRow[] | Promise<BenchRow[]>) => {
    try {
      rows.push(...(await o.stage(f, { bracket: w.phase === 'decode' })));
    } catch (e) {
      rows.push(...failedRows(w, label, o.threads, (e as Error).message));
    }
  };

  // ggml's loader picks the best-scoring CPU variant; llama.cpp's attention runs on that one.
  let variant: string | undefined;
  if (o.llama && o.kvFormats.length) {
    const best = [...o.llama.variants].filter((v) => v.score > 0).sort((a, b) => b.score - a.score)[0];
    if (!best) log(`llama.cpp attention rows skipped: no ggml-cpu variant in ${o.llama.dir} runs on this CPU`);
    else variant = best.name;
  }
  let naiveExe: string | undefined;
  if (o.naive && o.workloads.some((w) => w.phase === 'prefill')) {
    const b = buildNaiveAttention(o.benchSrc, o.workDir);
    if (typeof b === 'string') log(`naive attention rows skipped: ${b}`);
    else naiveExe = b.exe;
  }

  for (const [i, w] of o.workloads.entries()) {
    log(`${w.name}: ${shapeLabel(w.shape)}${w.causal ? ', causal' : ''}; generating Q, K, V ~ N(0,1)`);
    const inputs = attentionInputs(w.shape, 20250101 + i);
    const cw = checkWorkload(w);
    const checkInputs = attentionInputs(cw.shape, 7 + i);
    const check = { workload: cw, inputs: checkInputs, dir: join(o.workDir, `attn-check-${w.name}`) };

    if (o.kgen) {
      const kgen = o.kgen;
      rows.push(...(await kgenAttentionRows(w, kgen, o.stage)));
    }

    if (variant && o.llama) {
      const libs = o.llama;
      const inputDir = join(o.workDir, `attn-in-${w.name}`);
      writeAttentionInputs(inputDir, inputs);
      writeAttentionInputs(check.dir, checkInputs);
      for (const format of o.kvFormats) {
        const v = variant;
        await guarded(w, `${w.phase} llama.cpp FA ${format} cache`, () =>
          benchLlamaAttention({ libs, variant: v, format, workload: w, inputDir, inputs, threads: o.threads, workDir: o.workDir }, check),
        );
      }
    }

    for (const type of o.ortTypes) {
      await guarded(w, `${w.phase} ort GroupQueryAttention ${type} cache`, () => benchOrtAttention(w, inputs, type, o.threads, check));
    }

    if (naiveExe && w.phase === 'prefill') {
      const exe = naiveExe;
      await guarded(w, `${w.phase} naive attention`, () => benchNaiveAttention(exe, w, inputs, o.threads, check, o.workDir));
    }
  }
  return rows;
}
