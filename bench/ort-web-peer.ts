/**
 * Peer rows: onnxruntime-web's `com.microsoft.MatMulNBits` on its WebAssembly execution provider,
 * in Node (the same 4-bit block-32 model as the onnxruntime-node rows, bench/ort-peer.ts), timed
 * in a child process per thread count (bench/ort-web-driver.ts). Its output is checked against the
 * f64 reference before a time is reported.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MatmulShape } from '../src/ir/types.js';
import { FORMATS } from '../src/quant/index.js';
import { coldCopies, log, run, type BenchRow } from './common.js';
import { checkOutput } from './kgen-rows.js';
import { f32Bytes, matMulNBitsModel } from './onnx-model.js';
import { ORT_F32_TOLERANCE, q4_0ToOrt, type OrtWeights } from './ort-peer.js';

const DRIVER = join(dirname(fileURLToPath(import.meta.url)), 'ort-web-driver.js');

/** Why onnxruntime-web cannot be loaded here, or undefined when it can. */
export function ortWebMissing(): string | undefined {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-web');
    return undefined;
  } catch (e) {
    return `onnxruntime-web is not installed (a devDependency: npm ci): ${(e as Error).message.split('\n')[0]}`;
  }
}

export interface OrtWebOptions {
  shape: MatmulShape;
  /** ggml q4_0 bytes of W[N,K]; re-packed for MatMulNBits. */
  q40: Uint8Array;
  x: Float32Array;
  threads: readonly number[];
  warmup: number;
  runs: number;
  workDir: string;
}

export function benchOrtWeb(o: OrtWebOptions, label: string): BenchRow[] {
  const { M, N, K } = o.shape;
  const dir = join(o.workDir, `ort-web-${M}x${N}x${K}`);
  mkdirSync(dir, { recursive: true });
  const base = q4_0ToOrt(o.q40, N, K);
  const weightBytes = base.b.byteLength + base.scales.byteLength;
  const copies = coldCopies(weightBytes);
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
  writeFileSync(join(dir, 'model.onnx'), matMulNBitsModel({ M, N, K, weights, accuracyLevel: 0 }));
  writeFileSync(join(dir, 'x.bin'), f32Bytes(o.x));
  const bytes = weightBytes + M * K * 4 + M * N * 4;
  const rows: BenchRow[] = [];
  for (const threads of o.threads) {
    log(`peer ${label}: ${copies} x ${(weightBytes / 2 ** 20).toFixed(1)} MiB weights, ${threads} thread(s)`);
    const line = JSON.parse(run(process.execPath, [DRIVER, dir, String(M), String(K), String(threads), String(o.warmup), String(o.runs), String(copies)]).trim()) as {
      median_ms: number;
      min_ms: number;
      runs: number;
      threads_used: number;
      version: string;
    };
    // A row runs on the threads onnxruntime-web really started, which it says after init.
    if (line.threads_used !== threads) log(`peer ${label}: asked for ${threads} thread(s), onnxruntime-web runs ${line.threads_used} (no threading here): the row says ${line.threads_used}`);
    const yb = readFileSync(join(dir, 'y0.bin'));
    const check = checkOutput({ shape: o.shape, codec: FORMATS.q4_0.codec(32), w: o.q40, x: o.x }, new Float32Array(yb.buffer, yb.byteOffset, yb.byteLength / 4), ORT_F32_TOLERANCE);
    if (!check.ok) log(`peer ${label} ${threads}T: OUTPUT WRONG, no time reported: ${check.detail}`);
    const ms = check.ok ? line.median_ms : NaN;
    rows.push({
      kind: 'peer',
      case: check.ok ? label : `${label} (WRONG OUTPUT)`,
      shape: `M=${M},N=${N},K=${K}`,
      threads: line.threads_used,
      ms,
      minMs: check.ok ? line.min_ms : NaN,
      gbps: bytes / (ms * 1e-3) / 1e9,
      gflops: (2 * M * N * K) / (ms * 1e-3) / 1e9,
      bytes,
      runs: line.runs,
      copies,
      note: `onnxruntime-web ${line.version}; ${check.detail}`,
    });
    log(`peer ${label} ${threads}T: ${ms.toFixed(3)} ms per matmul (${check.detail})`);
  }
  return rows;
}
