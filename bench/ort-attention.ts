/**
 * Peer rows: onnxruntime-node's `com.microsoft.GroupQueryAttention` on the CPU execution provider,
 * run through the public JS API as a user would. Its CPU kernel takes Q, K, V and the caches in
 * float32 or float16 (both checked here; the caches must have Q's type), in BNSH layout.
 *
 * Decode is one new token over a cache that already holds Skv - 1: past_key/past_value are
 * buffers of Skv positions that are also bound as present_key/present_value, which ORT's kernel
 * detects (same data pointer) and then appends the new token in place instead of copying the past
 * into a new present (as onnxruntime-genai runs it on CPU). Prefill has no past: key and value are
 * the whole prompt.
 */
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { f16BitsToF32, f32ToF16Bits } from '../src/numeric/half.js';
import { groupQueryAttentionModel, ONNX_FLOAT, ONNX_FLOAT16 } from './onnx-model.js';
import { log, median, type BenchRow } from './common.js';
import { ortCpuOptions } from './ort-peer.js';
import {
  attentionRow,
  cacheCopies,
  checkAttention,
  checkTimedDecode,
  f16Values,
  kvBytes,
  peerTolerance,
  swapOuter,
  type AttentionInputs,
  type AttentionTiming,
  type AttentionWorkload,
} from './attention-common.js';

export type OrtCacheType = 'f32' | 'f16';

interface Prepared {
  session: ort.InferenceSession;
  feeds: Record<string, ort.Tensor>;
  fetches: Record<string, ort.Tensor | null>;
  nodes: number;
}

/** A tensor with its own copy of `values` (ORT reads a Float32Array in place: no two nodes may share one). */
function tensor(type: OrtCacheType, values: Float32Array, dims: number[]): ort.Tensor {
  if (type === 'f32') return new ort.Tensor('float32', values.slice(), dims);
  const bits = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) bits[i] = f32ToF16Bits(values[i]!);
  return new ort.Tensor('float16', bits, dims);
}

function toF32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  const bits = t.data as Uint16Array;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16BitsToF32(bits[i]!);
  return out;
}

/**
 * A session of `nodes` GroupQueryAttention nodes, node i with its own copy of the cache (so a run
 * streams `nodes` caches from memory), and the feeds and fetches of one call.
 */
async function prepare(w: AttentionWorkload, x: AttentionInputs, type: OrtCacheType, threads: number, nodes: number): Promise<Prepared> {
  const { Hq, Hkv, D, Sq, Skv } = w.shape;
  const past = Skv - Sq;
  const decode = past > 0;
  const model = groupQueryAttentionModel({ Hq, Hkv, D, Sq, pastLength: decode ? Skv : 0, presentLength: Skv, elemType: type === 'f32' ? ONNX_FLOAT : ONNX_FLOAT16, nodes });
  const session = await ort.InferenceSession.create(model, ortCpuOptions(threads));
  // What an f16 cache holds, fed to both cache types: the f32 rows read the same values.
  const k = f16Values(x.k);
  const v = f16Values(x.v);
  const newRows = (c: Float32Array) => c.subarray(past * Hkv * D);
  const feeds: Record<string, ort.Tensor> = {
    query: tensor(type, x.q, [1, Sq, Hq * D]),
    seqlens_k: new ort.Tensor('int32', Int32Array.of(Skv - 1), [1]),
    total_sequence_length: new ort.Tensor('int32', Int32Array.of(Skv), []),
  };
  const fetches: Record<string, ort.Tensor | null> = {};
  // BNSH caches of Skv positions; the last Sq are written by the op from key/value.
  const bnsh = decode ? [swapOuter(k, Skv, Hkv, D), swapOuter(v, Skv, Hkv, D)] : [];
  for (let i = 0; i < nodes; i++) {
    feeds[`key${i}`] = tensor(type, newRows(k), [1, Sq, Hkv * D]);
    feeds[`value${i}`] = tensor(type, newRows(v), [1, Sq, Hkv * D]);
    fetches[`O${i}`] = null;
    if (decode) {
      for (const [j, name] of (['key', 'value'] as const).entries()) {
        const cache = tensor(type, bnsh[j]!, [1, Hkv, Skv, D]);
        feeds[`past_${name}${i}`] = cache;
        fetches[`present_${name}${i}`] = cache;
      }
    } else {
      fetches[`present_key${i}`] = null;
      fetches[`present_value${i}`] = null;
    }
  }
  return { session, feeds, fetches, nodes };
}

/** Output O0 of one call, [Sq][Hq][D] in f32. */
async function runOnce(p: Prepared): Promise<Float32Array> {
  const out = await p.session.run(p.feeds, p.fetches);
  return toF32(out['O0']!);
}

/**
 * Checks GroupQueryAttention with `type` caches on the check shape against the f64 reference, then
 * times `await session.run` on the workload (one session per thread count; a call's time is the
 * run's time over the nodes). A failed check gives `(WRONG OUTPUT)` rows without numbers.
 */
export async function benchOrtAttention(
  w: AttentionWorkload,
  inputs: AttentionInputs,
  type: OrtCacheType,
  threads: readonly number[],
  check: { workload: AttentionWorkload; inputs: AttentionInputs },
): Promise<BenchRow[]> {
  const label = `${w.phase} ort GroupQueryAttention ${type} cache`;
  const c = await prepare(check.workload, check.inputs, type, 1, 1);
  let verdict: { ok: boolean; detail: string };
  try {
    const o = await runOnce(c);
    verdict = checkAttention(check.workload, { q: check.inputs.q, k: f16Values(check.inputs.k), v: f16Values(check.inputs.v) }, o, peerTolerance({ quantizedQ: false }));
  } finally {
    await c.session.release();
  }
  log(`${label}: ${verdict.ok ? 'matches the reference' : 'OUTPUT WRONG, no time reported'} on ${check.workload.name} (${verdict.detail})`);
  const bytes = kvBytes(w.shape, type);
  const nodes = cacheCopies(w, bytes);
  const note = `onnxruntime-node ${ort.env.versions.common}, ${w.phase === 'decode' ? 'past/present sharing one buffer' : 'no past'}; check: ${verdict.detail}`;
  // A decode's timed output is checked too, on the values its cache holds (f16's, widened for f32).
  const held = w.phase === 'decode' ? { q: inputs.q, k: f16Values(inputs.k), v: f16Values(inputs.v) } : undefined;
  const rows: BenchRow[] = [];
  for (const t of threads) {
    let timing: AttentionTiming = { threads: t, medianMs: NaN, minMs: NaN, runs: 0, copies: nodes };
    let timedVerdict: { ok: boolean; detail: string } | undefined;
    if (verdict.ok) {
      log(`${label}: session with ${nodes} node(s), each with its own ${(bytes / 2 ** 20).toFixed(1)} MiB cache, ${t} thread(s)`);
      const p = await prepare(w, inputs, type, t, nodes);
      try {
        const times: number[] = [];
        let o0: Float32Array | undefined;
        for (let r = 0; r < w.warmup + w.runs; r++) {
          const t0 = performance.now();
          const out = await p.session.run(p.feeds, p.fetches);
          if (r >= w.warmup) times.push((performance.now() - t0) / nodes);
          if (r === 0) o0 = toF32(out['O0']!);
        }
        timedVerdict = held && o0 ? checkTimedDecode(w, held, o0, peerTolerance({ quantizedQ: false })) : undefined;
        if (timedVerdict) log(`${label} ${t}T: ${timedVerdict.ok ? 'matches the reference' : 'OUTPUT WRONG, no time reported'} on ${w.name} (${timedVerdict.detail})`);
        timing = { threads: t, medianMs: median(times), minMs: Math.min(...times), runs: times.length, copies: nodes };
        log(`${label} ${t}T: ${timing.medianMs.toFixed(3)} ms per call`);
      } finally {
        await p.session.release();
      }
    }
    rows.push(attentionRow(w, label, bytes, timing, verdict.ok && timedVerdict?.ok !== false, timedVerdict ? `${note}; timed shape: ${timedVerdict.detail}` : note));
  }
  return rows;
}
