// kgen's WebGPU run program (Node, the `webgpu` package: Dawn). Spawned by src/backends/wgsl/runner.ts
// in its own process, so a hung or crashing driver costs one child, never kgen.
//
//   node dawn-run.mjs probe                 one JSON line: the adapter (or {"adapter":null})
//   node dawn-run.mjs compile DIR           compiles DIR/kernel.wgsl (shader module) on a device with the
//                                           features and limits DIR/kgen_run.json asks for, and checks
//                                           the device with DIR/kernel.js's checkDevice; one JSON line
//   node dawn-run.mjs run DIR DATA [--warmup N --runs N --times]
//                                           creates the kernel with DIR/kernel.js (the emitted loader),
//                                           fills its buffers (createBuffers: one per weight chunk) from
//                                           DATA/<file> (zeros for a workspace),
//                                           dispatches every pass, writes
//                                           the output to DATA/<file>; with --times prints {"times_ms":[...]}
//                                           A run-time-length kernel (kgen_run.json's kvLengths) runs once per
//                                           int32 length in DATA/<kvLengths> (set through the loader's
//                                           setKvLen; timed at the first), the outputs end to end.
//
// Every mode takes the exit statuses first: `node dawn-run.mjs --exits=JSON MODE ...`, the JSON
// being DAWN_RUN_EXIT of src/backends/wgsl/runner.ts ({"ok":0,"runtime":1,"noAdapter":3}).
// A compile error is {"compileError": "kernel.wgsl:LINE:COL: message\n<the line>"} (exit ok: it is a
// verdict, not a failure of this program); a kernel this adapter cannot run (a feature it lacks,
// subgroups narrower than planned, a limit past the adapter's) is {"unsupported": "<one line>"},
// exit ok, nothing compiled. Exit runtime: a runtime failure (pipeline creation, device
// lost, validation error at dispatch), with the message on stderr. Exit noAdapter: no adapter, or the
// webgpu package is missing.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [exitsArg, ...argv] = process.argv.slice(2);
if (!exitsArg?.startsWith('--exits=')) {
  // Without the table there is no status to name: exit as a usage error of any program would.
  process.stderr.write('kgen dawn-run: usage: node dawn-run.mjs --exits=JSON probe|compile|run ...\n');
  process.exit(2);
}
const EXIT = JSON.parse(exitsArg.slice('--exits='.length));

const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

let webgpu;
try {
  webgpu = await import('webgpu');
} catch (e) {
  process.stderr.write(`kgen dawn-run: the webgpu package does not load: ${e.message}\n`);
  process.exit(EXIT.noAdapter);
}
Object.assign(globalThis, webgpu.globals);
// Dawn crashes if the GPU object is collected while its devices live: keep it for the process.
const gpu = webgpu.create(['backend=vulkan']);
globalThis.kgenGpu = gpu;

/** The webgpu package's version, from its package.json beside its entry module. */
function webgpuVersion() {
  try {
    const entry = fileURLToPath(import.meta.resolve('webgpu'));
    return JSON.parse(readFileSync(join(dirname(entry), 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

const [mode, dir, dataDir, ...rest] = argv;
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (mode === 'probe') {
  if (!adapter) {
    out({ adapter: null });
    process.exit(EXIT.ok);
  }
  const info = adapter.info;
  out({
    adapter: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description, subgroupMinSize: info.subgroupMinSize, subgroupMaxSize: info.subgroupMaxSize },
    features: [...adapter.features].sort(),
    limits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize, maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup, maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize },
    webgpu: webgpuVersion(),
  });
  process.exit(EXIT.ok);
}
if (!adapter) {
  process.stderr.write('kgen dawn-run: no WebGPU adapter\n');
  process.exit(EXIT.noAdapter);
}

const spec = JSON.parse(readFileSync(join(dir, 'kgen_run.json'), 'utf8'));
const source = readFileSync(join(dir, 'kernel.wgsl'), 'utf8');
const missing = spec.features.filter((f) => !adapter.features.has(f));
if (missing.length) {
  out({ unsupported: `the adapter lacks ${missing.join(', ')}` });
  process.exit(EXIT.ok);
}
// A kernel planned for wider subgroups than this adapter's would run, and be wrong: refuse it.
if (spec.subgroupMinSize !== undefined && adapter.info.subgroupMinSize < spec.subgroupMinSize) {
  out({ unsupported: `the adapter's subgroups may be ${adapter.info.subgroupMinSize} lanes, narrower than the ${spec.subgroupMinSize} the kernel was planned for` });
  process.exit(EXIT.ok);
}
// Limits past the spec defaults are granted only when requested, and only up to the adapter's: a
// kernel planned for more than this adapter has (a profile stating larger limits) cannot run here.
const short = Object.entries(spec.limits).filter(([k, v]) => !(adapter.limits[k] >= v));
if (short.length) {
  out({ unsupported: `the adapter's ${short.map(([k, v]) => `${k} is ${adapter.limits[k]}, below the ${v} the kernel needs`).join('; ')} (plan for a profile that states this adapter's limits)` });
  process.exit(EXIT.ok);
}
const requiredLimits = spec.limits;
const wantTimestamps = mode === 'run' && adapter.features.has('timestamp-query');
const device = await adapter.requestDevice({ requiredFeatures: [...spec.features, ...(wantTimestamps ? ['timestamp-query'] : [])], requiredLimits });
let destroyed = false;
device.lost.then((info) => {
  if (!destroyed) {
    process.stderr.write(`kgen dawn-run: device lost: ${info.message}\n`);
    process.exit(EXIT.runtime);
  }
});
device.onuncapturederror = (ev) => {
  process.stderr.write(`kgen dawn-run: ${ev.error.message}\n`);
  process.exit(EXIT.runtime);
};

/** The compiler's first error as "kernel.wgsl:LINE:COL: message" and the source line it points at. */
function compileErrorText(messages) {
  const lines = source.split('\n');
  return messages
    .filter((m) => m.type === 'error')
    .map((m) => `kernel.wgsl:${m.lineNum}:${m.linePos}: ${m.message}${m.lineNum > 0 ? `\n  ${lines[m.lineNum - 1]?.trim() ?? ''}` : ''}`)
    .join('\n');
}

device.pushErrorScope('validation');
const module = device.createShaderModule({ code: source });
const info = await module.getCompilationInfo();
const moduleError = await device.popErrorScope();
const text = compileErrorText(info.messages);
if (text || moduleError) {
  out({ compileError: text || moduleError.message });
  destroyed = true;
  device.destroy();
  process.exit(EXIT.ok);
}
// The pipeline and its bindings come from the emitted loader (kernel.js), so every run tests it.
const loader = await import(pathToFileURL(join(dir, 'kernel.js')).href);
// `compile` stops at the shader module (the WGSL front end: every language and validation error)
// and the loader's device check (the features and limits requested above are the ones it needs);
// the pipeline, where the driver compiles (seconds on SwiftShader), is made once, by the run.
if (mode === 'compile') {
  try {
    loader.checkDevice(device);
  } catch (e) {
    process.stderr.write(`kgen dawn-run: ${e.message}\n`);
    process.exit(EXIT.runtime);
  }
  out({ ok: true });
  destroyed = true;
  device.destroy();
  process.exit(EXIT.ok);
}
let kernel;
try {
  kernel = await loader.createKernel(device);
} catch (e) {
  process.stderr.write(`kgen dawn-run: pipeline creation failed: ${e.message}\n`);
  process.exit(EXIT.runtime);
}

// run
const opt = (name, dflt) => {
  const i = rest.indexOf(name);
  return i >= 0 ? Number(rest[i + 1]) : dflt;
};
const timed = rest.includes('--times');
const warmup = opt('--warmup', 0);
const runs = timed ? Math.max(1, opt('--runs', 1)) : 1;
// The buffers as the loader lays them out (one per weight chunk the plan made), filled from the
// input files (zeros past a file's end, and for a workspace). The uniform kv_len is the loader's own.
let buffers;
try {
  buffers = kernel.createBuffers(Object.fromEntries(Object.entries(spec.inputs).map(([tensor, file]) => [tensor, readFileSync(join(dataDir, file))])));
} catch (e) {
  process.stderr.write(`kgen dawn-run: ${e.message}\n`);
  process.exit(EXIT.runtime);
}
const bindGroups = kernel.bindGroup(buffers);
const querySet = wantTimestamps ? device.createQuerySet({ type: 'timestamp', count: 2 }) : undefined;
const resolve = querySet ? device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }) : undefined;
const stamps = querySet ? device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }) : undefined;

/** One call (every pass of the kernel, in one compute pass); its time in ms from the timestamp queries when they give one, else from queue completion. */
async function dispatch() {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass(querySet ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
  kernel.encode(pass, bindGroups);
  pass.end();
  if (querySet) {
    enc.resolveQuerySet(querySet, 0, 2, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, stamps, 0, 16);
  }
  const t0 = performance.now();
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
  const wall = performance.now() - t0;
  if (!querySet) return { ms: wall, how: 'queue' };
  await stamps.mapAsync(GPUMapMode.READ);
  const [begin, end] = new BigUint64Array(stamps.getMappedRange().slice(0));
  stamps.unmap();
  const ns = Number(end - begin);
  // Some adapters (SwiftShader among them, at times) write zeros: fall back to queue completion.
  return ns > 0 ? { ms: ns / 1e6, how: 'timestamp-query' } : { ms: wall, how: 'queue' };
}

const lengths = spec.kvLengths === undefined ? [undefined] : [...new Int32Array(new Uint8Array(readFileSync(join(dataDir, spec.kvLengths))).buffer)];
/** Sets the length of the calls that follow (a run-time-length kernel); exit 1 with the loader's RangeError for one out of range. */
function setLength(length) {
  if (length === undefined) return;
  try {
    kernel.setKvLen(length);
  } catch (e) {
    process.stderr.write(`kgen dawn-run: ${e.message}\n`);
    process.exit(EXIT.runtime);
  }
}
setLength(lengths[0]);
for (let i = 0; i < warmup; i++) await dispatch();
const times = [];
const how = new Set();
for (let i = 0; i < runs; i++) {
  const r = await dispatch();
  times.push(r.ms);
  how.add(r.how);
}
const output = buffers[spec.output.tensor];
const readback = device.createBuffer({ size: output.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
/** The output buffer's bytes. */
async function readOutput() {
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(output, 0, readback, 0, output.size);
  device.queue.submit([enc.finish()]);
  await readback.mapAsync(GPUMapMode.READ);
  const bytes = new Uint8Array(readback.getMappedRange().slice(0));
  readback.unmap();
  return bytes;
}
// The first length's output is the timed runs'; every other length is one more call.
const outputs = [await readOutput()];
for (const length of lengths.slice(1)) {
  setLength(length);
  await dispatch();
  outputs.push(await readOutput());
}
const all = new Uint8Array(outputs.reduce((n, o) => n + o.length, 0));
outputs.reduce((at, o) => (all.set(o, at), at + o.length), 0);
writeFileSync(join(dataDir, spec.output.file), all);
if (timed) {
  process.stderr.write(`kgen dawn-run: timed by ${[...how].join(' and ')}\n`);
  out({ times_ms: times.sort((a, b) => a - b) });
}
destroyed = true;
device.destroy();
process.exit(EXIT.ok);
