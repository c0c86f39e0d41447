/**
 * Peer rows: onnxruntime-node's `com.microsoft.MatMulNBits` (bits=4, block_size=32, no zero points,
 * so value = (code - 8) * scale: ggml q4_0 with an f32 scale), run through the public JS API the way
 * a user would (`await session.run(...)`), on the CPU execution provider.
 */
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import type { MatmulShape } from '../src/ir/types.js';
import { Rng } from '../src/numeric/random.js';
import { dequantizeMatrix, FORMATS, quantizeMatrix } from '../src/quant/index.js';
import { compareOutputs, type Tolerance } from '../src/reference/compare.js';
import { referenceMatmul } from '../src/reference/matmul.js';
import { matMulNBitsModel } from './onnx-model.js';
import { q4_0ToOrt, type OrtWeights } from './ort-weights.js';
import { coldCopies, log, median, type BenchRow } from './common.js';
import { checkOutput } from './kgen-rows.js';

export { q4_0ToOrt, type OrtWeights } from './ort-weights.js';

/** MatMulNBits at accuracy_level 0 computes in f32: held to f32 rounding (its rows' check on the timed shape). */
export const ORT_F32_TOLERANCE: Tolerance = { nmse: 1e-6, maxRelToPeak: 1e-3 };
/**
 * accuracy_level 4 quantizes A to int8 blocks its own way, not as a kgen plan states it: a fixed
 * bound, the one the llama.cpp rows (q8_0 activations) get, 8x the int8 rounding's NMSE on N(0,1) data.
 */
export const ORT_INT8_TOLERANCE: Tolerance = { nmse: 2e-4, maxRelToPeak: 2e-2 };

async function createSession(
  shape: MatmulShape,
  weights: readonly OrtWeights[],
  threads: number,
  accuracyLevel: number,
  spin = true,
): Promise<ort.InferenceSession> {
  const model = matMulNBitsModel({ ...shape, weights, accuracyLevel });
  return ort.InferenceSession.create(model, ortCpuOptions(threads, spin));
}

/**
 * The session options of every onnxruntime peer: the CPU execution provider, T intra-op threads,
 * sequential execution, all graph optimizations, ORT's spinning thread pool unless `spin` is false.
 */
export function ortCpuOptions(threads: number, spin = true): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: spin ? '1' : '0' } } },
  };
}

/**
 * Runs MatMulNBits once on a small shape and compares it with the f64 reference matmul of the
 * dequantized weights; throws if it is off, so a peer row is only printed for a peer that computes
 * the right product.
 */
export async function verifyPeer(accuracyLevel: number): Promise<{ nmse: number }> {
  const shape: MatmulShape = { M: 3, N: 96, K: 512 };
  const rng = new Rng(7);
  const wf = rng.fillNormal(new Float32Array(shape.N * shape.K));
  const x = rng.fillNormal(new Float32Array(shape.M * shape.K));
  const codec = FORMATS.q4_0.codec(32);
  const q = quantizeMatrix(codec, wf, shape.N, shape.K);
  const wd = dequantizeMatrix(codec, q, shape.N, shape.K);
  const ref = referenceMatmul(shape, { bias: false, activation: 'none', residual: false }, { x, w: wd });
  const session = await createSession(shape, [q4_0ToOrt(q, shape.N, shape.K)], 1, accuracyLevel);
  try {
    const out = await session.run({ A: new ort.Tensor('float32', x, [shape.M, shape.K]) });
    const y = out['Y0']!.data as Float32Array;
    const c = compareOutputs(y, ref);
    // accuracy_level 4 quantizes A to int8 per block, so it is allowed a looser bound than f32.
    const limit = accuracyLevel >= 4 ? 1e-3 : 1e-9;
    if (!(c.nonFinite === 0 && c.nmse <= limit)) {
      throw new Error(`ORT MatMulNBits (accuracy_level ${accuracyLevel}) disagrees with the reference: nmse ${c.nmse}`);
    }
    return { nmse: c.nmse };
  } finally {
    await session.release();
  }
}

export interface PeerOptions {
  shape: MatmulShape;
  /** ggml q4_0 bytes of W[N,K]; re-packed for MatMulNBits. */
  q40: Uint8Array;
  x: Float32Array;
  threads: readonly number[];
  accuracyLevel: number;
  warmup: number;
  runs: number;
  /** session.intra_op.allow_spinning (ORT default true). */
  spin?: boolean;
  /** Weight copies (graph nodes); absent: coldCopies (a test's small shape would need thousands). */
  copies?: number;
}

/**
 * Times `await session.run({A})` on one session whose graph holds `copies` MatMulNBits nodes with
 * distinct weights (together > 3x the L3 cache), all fed the same A; one call's time is the run's
 * time / copies. Node 0 holds W itself: its Y of the first (warm-up) run is checked against the f64
 * reference (kgen-rows' checkOutput, ORT_F32_TOLERANCE or ORT_INT8_TOLERANCE), and a row whose
 * output is off gets `(WRONG OUTPUT)` and no time. So every matmul streams its weights from DRAM as in a real model, while only one
 * ORT thread pool exists. (One session per weight copy was tried first: at 2 threads the idle
 * sessions' spinning workers steal the second core and the timings become bimodal.)
 */
export async function benchPeer(o: PeerOptions, label: string): Promise<BenchRow[]> {
  const { M, N, K } = o.shape;
  const base = q4_0ToOrt(o.q40, N, K);
  const weightBytes = base.b.byteLength + base.scales.byteLength;
  const copies = o.copies ?? coldCopies(weightBytes);
  // Copy 0 is W itself (its output is checked); the others differ in one byte and one scale, so
  // no graph optimisation can fold them into one initializer.
  const weights: OrtWeights[] = [base];
  for (let c = 1; c < copies; c++) {
    const b = base.b.slice();
    const scales = base.scales.slice();
    b[c] = b[c]! ^ 0x11;
    scales[c] = scales[c]! * (1 + 1e-3 * c);
    weights.push({ b, scales });
  }
  const tolerance = o.accuracyLevel >= 4 ? ORT_INT8_TOLERANCE : ORT_F32_TOLERANCE;
  const rows: BenchRow[] = [];
  const feeds = { A: new ort.Tensor('float32', o.x, [M, K]) };
  for (const threads of o.threads) {
    log(`peer ${label}: session with ${copies} x ${(weightBytes / 2 ** 20).toFixed(1)} MiB weights, ${threads} thread(s)`);
    const session = await createSession(o.shape, weights, threads, o.accuracyLevel, o.spin ?? true);
    try {
      const times: number[] = [];
      let sink = 0;
      let y0 = new Float32Array(0);
      for (let r = 0; r < o.warmup + o.runs; r++) {
        const t0 = performance.now();
        const out = await session.run(feeds);
        const dt = (performance.now() - t0) / copies;
        for (let c = 0; c < copies; c++) sink += (out[`Y${c}`]!.data as Float32Array)[0]!;
        if (r === 0) y0 = (out['Y0']!.data as Float32Array).slice();
        if (r >= o.warmup) times.push(dt);
      }
      if (!Number.isFinite(sink)) throw new Error('ORT produced a non-finite output');
      const check = checkOutput({ shape: o.shape, codec: FORMATS.q4_0.codec(32), w: o.q40, x: o.x }, y0, tolerance);
      if (!check.ok) log(`peer ${label} ${threads}T: OUTPUT WRONG, no time reported: ${check.detail}`);
      const ms = check.ok ? median(times) : NaN;
      const bytes = weightBytes + M * K * 4 + M * N * 4;
      rows.push({
        kind: 'peer',
        case: check.ok ? label : `${label} (WRONG OUTPUT)`,
        shape: `M=${M},N=${N},K=${K}`,
        threads,
        ms,
        minMs: check.ok ? Math.min(...times) : NaN,
        gbps: bytes / (ms * 1e-3) / 1e9,
        gflops: (2 * M * N * K) / (ms * 1e-3) / 1e9,
        bytes,
        runs: times.length,
        copies,
        note: `onnxruntime-node ${ort.env.versions.common}; ${check.detail}`,
      });
      log(`peer ${label} ${threads}T: ${ms.toFixed(3)} ms per matmul (${check.detail})`);
    } finally {
      await session.release();
    }
  }
  return rows;
}
