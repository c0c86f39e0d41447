/**
 * Decode attention rows: kgen's C attention kernel at B=1, Hq=32, Hkv=8, Sq=1, D=128 over a KV
 * cache of Skv positions, built and timed by kgen's own runner (the harness rotates copies of K
 * and V so the cache comes from DRAM), checked against the f64 reference before a time is
 * reported. GB/s counts the KV cache bytes read (codes and scales), the figure to set beside the
 * read-bandwidth probe.
 */
import { emit } from '../src/api/emit.js';
import { runnerFor } from '../src/backends/registry.js';
import { kvBytes } from '../src/ops/attention.js';
import { opKit } from '../src/ops/index.js';
import type { AttentionOp, AttentionShape } from '../src/ir/types.js';
import { L3_BYTES, log, type BenchRow } from './common.js';

/** The KV formats of the decode rows, by catalog op. */
export const ATTENTION_OPS: Record<string, string> = { f16: 'attention_f16', q8: 'attention_q8kv', q8_0: 'attention_q8_0kv', q4_0: 'attention_q4_0kv' };

export interface AttentionCase {
  format: string;
  Skv: number;
  isa: string;
  threads: readonly number[];
  warmup: number;
  runs: number;
}

export async function benchAttention(c: AttentionCase): Promise<BenchRow[]> {
  const shapeText = `B=1,Hq=32,Hkv=8,Sq=1,Skv=${c.Skv},D=128`;
  const label = `decode attention kgen ${c.format} KV ${c.isa}`;
  const { plan, rendered } = emit({ target: 'c', op: ATTENTION_OPS[c.format]!, shape: shapeText, device: 'host', isa: c.isa });
  const op = plan.op as AttentionOp;
  const shape = plan.shape as AttentionShape;
  const kv = kvBytes(op, shape);
  const cacheBytes = 2 * (kv.rows + kv.scales);
  log(`${label} Skv=${c.Skv}: ${(cacheBytes / 2 ** 20).toFixed(0)} MiB of KV, config ${JSON.stringify(plan.config)}`);
  const data = opKit('attention').testData(op, shape, 7);
  const runner = runnerFor(plan);
  const build = await runner.build(plan, rendered);
  if (build.status !== 'ok') throw new Error(`compile error: ${build.detail.split('\n')[0]}`);
  const rows: BenchRow[] = [];
  try {
    for (const threads of c.threads) {
      const run = await runner.execute(build, data.inputs, { timing: { warmup: c.warmup, runs: c.runs, flushBytes: 2 * L3_BYTES, threads }, timeoutMs: 600_000 });
      if (run.status !== 'ok') throw new Error(`${run.status}: ${run.detail.split('\n')[0]}`);
      const { ok, comparison } = data.check(run.output, plan.tolerance);
      if (!ok) throw new Error(`wrong result: nmse ${comparison.nmse.toExponential(2)}`);
      const t = run.timing!;
      rows.push({
        kind: 'kgen',
        case: label,
        shape: shapeText,
        threads,
        ms: t.medianMs,
        minMs: t.minMs,
        bytes: cacheBytes,
        gbps: cacheBytes / (t.medianMs * 1e6),
        gflops: plan.traffic.flops / (t.medianMs * 1e6),
        runs: t.runs,
        note: `KV read; config ${JSON.stringify(plan.config)}; nmse ${comparison.nmse.toExponential(2)}`,
      });
    }
  } finally {
    build.dispose();
  }
  return rows;
}
