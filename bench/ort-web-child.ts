/**
 * onnxruntime-web's WebGPU execution provider in Node, on the adapter kgen's WGSL runner uses: a
 * child process (spawned by bench/wgsl-rows.ts with the runner's environment, so Dawn finds the same
 * SwiftShader or GPU) that gives onnxruntime-web `navigator.gpu` from the `webgpu` package (Dawn),
 * builds a one-node MatMulNBits model, and times `await session.run(...)` as a page would.
 *
 *   node dist/bench/ort-web-child.js DIR
 *     reads DIR/job.json ({ M, N, K, blockSize, warmup, runs }), DIR/b.bin, DIR/scales.bin, DIR/x.bin;
 *     writes DIR/y.bin and prints one JSON line: { times_ms, firstRunMs, sessionMs, adapter, ort }.
 * Exit 3 (reason on stderr): onnxruntime-web or webgpu does not load, or there is no adapter.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { matMulNBitsModel } from './onnx-model.js';

interface Job {
  M: number;
  N: number;
  K: number;
  blockSize: number;
  warmup: number;
  runs: number;
}

function fail(reason: string): never {
  process.stderr.write(`ort-web: ${reason}\n`);
  process.exit(3);
}

const dir = process.argv[2];
if (!dir) fail('usage: ort-web-child.js DIR');
const job = JSON.parse(readFileSync(join(dir, 'job.json'), 'utf8')) as Job;

let webgpu: typeof import('webgpu');
try {
  webgpu = await import('webgpu');
} catch (e) {
  fail(`the webgpu package does not load: ${(e as Error).message}`);
}
Object.assign(globalThis, webgpu.globals);
const gpu = webgpu.create(['backend=vulkan']);
// onnxruntime-web writes from views of its (shared) wasm memory; Dawn's Node binding rejects a
// SharedArrayBuffer view in writeBuffer ("Invalid argument"), so such a write goes through a copy.
const writeBuffer = GPUQueue.prototype.writeBuffer;
GPUQueue.prototype.writeBuffer = function (this: GPUQueue, buffer: GPUBuffer, offset: number, data: BufferSource | SharedArrayBuffer, dataOffset = 0, size?: number) {
  if (ArrayBuffer.isView(data) && data.buffer instanceof SharedArrayBuffer) {
    const element = (data as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1;
    const count = size ?? data.byteLength / element - dataOffset;
    const copy = new Uint8Array(data.buffer, data.byteOffset + dataOffset * element, count * element).slice();
    return writeBuffer.call(this, buffer, offset, copy, 0, count * element);
  }
  return writeBuffer.call(this, buffer, offset, data as BufferSource, dataOffset, size);
} as typeof GPUQueue.prototype.writeBuffer;
Object.defineProperty(globalThis, 'navigator', { value: { gpu, userAgent: 'node', hardwareConcurrency: 1 }, configurable: true });

/**
 * The WebGPU build (the package's Node entry has the CPU provider only). Named through a constant:
 * the subpath has only `import` conditions, which the layer check's resolver does not follow.
 */
const ORT_WEBGPU = 'onnxruntime-web/webgpu';
let ort: typeof import('onnxruntime-web');
let ortVersion = 'unknown';
try {
  ort = (await import(ORT_WEBGPU)) as typeof import('onnxruntime-web');
  const entry = fileURLToPath(import.meta.resolve(ORT_WEBGPU));
  ortVersion = (JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as { version: string }).version;
} catch (e) {
  fail(`onnxruntime-web does not load: ${(e as Error).message}`);
}
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) fail('no WebGPU adapter');
ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';
// The adapter kgen's runner uses (same environment, same request), handed to onnxruntime-web.
ort.env.webgpu.adapter = adapter;

const { M, N, K, blockSize } = job;
const b = new Uint8Array(readFileSync(join(dir, 'b.bin')));
const scales = new Float32Array(new Uint8Array(readFileSync(join(dir, 'scales.bin'))).buffer);
const x = new Float32Array(new Uint8Array(readFileSync(join(dir, 'x.bin'))).buffer);
const model = matMulNBitsModel({ M, N, K, weights: [{ b, scales }], accuracyLevel: 0, blockSize });
let t0 = performance.now();
const session = await ort.InferenceSession.create(model, { executionProviders: ['webgpu'], logSeverityLevel: 3 });
const sessionMs = performance.now() - t0;
const feeds = { A: new ort.Tensor('float32', x, [M, K]) };
const times: number[] = [];
let firstRunMs = 0;
let y: Float32Array | undefined;
for (let r = 0; r < 1 + job.warmup + job.runs; r++) {
  t0 = performance.now();
  const out = await session.run(feeds);
  const ms = performance.now() - t0;
  y = out['Y0']!.data as Float32Array;
  if (r === 0) firstRunMs = ms;
  else if (r > job.warmup) times.push(ms);
}
writeFileSync(join(dir, 'y.bin'), new Uint8Array(y!.buffer, y!.byteOffset, y!.byteLength));
const info = adapter.info;
process.stdout.write(`${JSON.stringify({ times_ms: times, firstRunMs, sessionMs, adapter: `${info.vendor}/${info.architecture}/${info.device}`, ort: ortVersion })}\n`);
await session.release();
process.exit(0);
