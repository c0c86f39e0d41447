/**
 * kgen's own attention rows: the C (or WebAssembly) attention kernel on an attention workload (decode or prefill,
 * bench/attention-common.ts), built and timed by kgen's own runner (for decode the harness rotates
 * copies of K and V so the cache comes from DRAM), checked against the f64 reference before a time
 * is reported. GB/s counts the KV cache bytes read (codes and scales): the figure to set beside the
 * read-bandwidth probe for decode.
 */
import { emit } from '../src/api/emit.js';
import { streamedBytes, weightCopies } from '../src/backends/harness.js';
import { runnerFor } from '../src/backends/registry.js';
import { kvBytes } from '../src/ops/attention.js';
import { opKit } from '../src/ops/index.js';
import type { AttentionOp, AttentionShape } from '../src/ir/types.js';
import type { TestData } from '../src/ops/types.js';
import { benchHost, COLD_BYTES, log, type BenchRow } from './common.js';
import { attentionFlops, type AttentionWorkload } from './attention-common.js';

/** kgen's KV cache formats, by catalog op. */
export const ATTENTION_OPS = { f16: 'attention_f16', q8: 'attention_q8kv', q8_0: 'attention_q8_0kv', q4_0: 'attention_q4_0kv' } as const;
export type KgenKvFormat = keyof typeof ATTENTION_OPS;
export const KGEN_KV_FORMATS = Object.keys(ATTENTION_OPS) as KgenKvFormat[];

export interface KgenAttentionCase {
  workload: AttentionWorkload;
  format: KgenKvFormat;
  /** The C kernel of an ISA, or the WebAssembly kernel (SIMD128, run in a child Node, threads as workers). */
  target: { name: 'c'; isa: string } | { name: 'wasm' };
  threads: readonly number[];
  /** Knobs fixed over the plan's default (e.g. `{ qInt8: 0 }`), named in the row's label; none: the default. */
  config?: Readonly<Record<string, number>>;
  /** C decode: the harness puts every copy of the cache on 2 MiB pages (`TimingOptions.hugePages`), named in the label. */
  hugePages?: boolean;
  /** The workload's inputs and reference for this format (shared by the ISAs: the f64 reference of a prefill takes a while). */
  data: (op: AttentionOp, shape: AttentionShape) => TestData;
}

/** A case's row label, e.g. "decode attention kgen q8 KV avx512 qInt8 0". */
export function kgenAttentionLabel(c: Pick<KgenAttentionCase, 'workload' | 'format' | 'target' | 'config' | 'hugePages'>): string {
  const fixed = Object.entries(c.config ?? {}).map(([k, v]) => ` ${k} ${v}`).join('');
  return `${c.workload.phase} attention kgen ${c.format} KV ${c.target.name === 'c' ? c.target.isa : 'wasm simd128'}${fixed}${c.hugePages ? ' 2MiB pages' : ''}`;
}

/** Rows of one format and ISA on one workload, one per thread count; throws what went wrong. */
export async function benchKgenAttention(c: KgenAttentionCase): Promise<BenchRow[]> {
  const { B, Hq, Hkv, Sq, Skv, D } = c.workload.shape;
  const shapeText = `B=${B},Hq=${Hq},Hkv=${Hkv},Sq=${Sq},Skv=${Skv},D=${D}`;
  const label = kgenAttentionLabel(c);
  const request = c.target.name === 'c' ? { target: 'c', device: 'host', isa: c.target.isa, ...benchHost() } : { target: 'wasm', device: 'wasm-simd128' };
  const { plan, rendered } = emit({ ...request, op: ATTENTION_OPS[c.format], shape: shapeText, config: c.config });
  const op = plan.op as AttentionOp;
  const shape = plan.shape as AttentionShape;
  const kv = kvBytes(op, shape);
  const cacheBytes = 2 * (kv.rows + kv.scales);
  log(`${label} ${shapeText}: ${(cacheBytes / 2 ** 20).toFixed(0)} MiB of KV, config ${JSON.stringify(plan.config)}`);
  const data = c.data(op, shape);
  const runner = runnerFor(plan);
  // GFLOPS as the peers count them (attentionFlops): the pairs the causal mask lets through, as the plan's traffic does.
  const flops = attentionFlops(shape, op.causal);
  const build = await runner.build(plan, rendered);
  if (build.status !== 'ok') throw new Error(`${build.status}: ${build.detail.split('\n')[0]}`);
  const rows: BenchRow[] = [];
  try {
    for (const threads of c.threads) {
      // Decode streams the cache once a call: copies of it exceed 3x the L3 (a prefill, compute-bound,
      // reads one, as the peers' do), and the C harness also reads the same copies plainly, in between.
      const decode = c.workload.phase === 'decode';
      const readProbe = c.target.name === 'c' && decode;
      const timing = { warmup: c.workload.warmup, runs: c.workload.runs, flushBytes: decode ? COLD_BYTES : 0, threads, readProbe, hugePages: c.hugePages === true };
      // The runner caps its copies (64, 2 GiB): on a large L3 a small cache may then stay in it.
      const copies = weightCopies(timing, streamedBytes(data.inputs));
      const short = decode && copies * cacheBytes < COLD_BYTES;
      if (short) log(`${label} ${threads}T: only ${copies} cache copies (${((copies * cacheBytes) / 2 ** 20).toFixed(0)} MiB, the runner's limit) for ${(COLD_BYTES / 2 ** 20).toFixed(0)} MiB: part of the cache may be read from the L3`);
      const run = await runner.execute(build, data.inputs, { timing, timeoutMs: 600_000 });
      if (run.status !== 'ok') throw new Error(`${run.status}: ${run.detail.split('\n')[0]}`);
      const { ok, comparison } = data.check(run.output, plan.tolerance);
      if (!ok) throw new Error(`wrong result: nmse ${comparison.nmse.toExponential(2)}`);
      const t = run.timing!;
      const own = run.readProbe;
      const ownReadGbps = own ? own.bytes / (own.timing.medianMs * 1e6) : undefined;
      rows.push({
        kind: 'kgen',
        case: label,
        shape: shapeText,
        threads,
        ms: t.medianMs,
        minMs: t.minMs,
        bytes: cacheBytes,
        // GB/s of KV read means something where a call reads its cache once (attentionRow: the peers').
        gbps: decode ? cacheBytes / (t.medianMs * 1e6) : NaN,
        gflops: flops / (t.medianMs * 1e6),
        runs: t.runs,
        copies,
        ownReadGbps,
        // The plain read covers the same bytes (K, V and their scales) as the row's GB/s.
        pctOwnRead: own ? (100 * own.timing.medianMs) / t.medianMs : undefined,
        note: [
          `KV read; config ${JSON.stringify(plan.config)}; nmse ${comparison.nmse.toExponential(2)}`,
          ...(short ? [`only ${copies} cache copies (the runner's limit), under ${(COLD_BYTES / 2 ** 20).toFixed(0)} MiB`] : []),
          ...(own ? [`plain read of the same copies ${own.timing.medianMs.toFixed(3)} ms (${ownReadGbps!.toFixed(1)} GB/s)`] : []),
          ...(c.hugePages && own ? [`huge pages: ${own.hugePageBytes === undefined ? 'not reported by the OS' : `${(own.hugePageBytes / 2 ** 20).toFixed(0)} MiB of the process on them, ${((copies * cacheBytes) / 2 ** 20).toFixed(0)} MiB of cache copies`}`] : []),
        ].join('; '),
      });
    }
  } finally {
    build.dispose();
  }
  return rows;
}

/** Test data per (op, shape), made once: every ISA of a format reads the same inputs. */
export function sharedTestData(seed: number): (op: AttentionOp, shape: AttentionShape) => TestData {
  const made = new Map<string, TestData>();
  return (op, shape) => {
    const key = JSON.stringify([op, shape]);
    let d = made.get(key);
    if (!d) made.set(key, (d = opKit('attention').testData(op, shape, seed)));
    return d;
  };
}
