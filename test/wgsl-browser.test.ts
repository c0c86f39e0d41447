import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { opKit } from '../src/ops/index.js';

/**
 * One emitted kernel per weight format, run inside a page in headless Chromium (WebGPU on
 * SwiftShader) through the emitted loader kernel.js, unchanged; the page is a plain host that
 * requests a device with the loader's own features and limits, fills one buffer per tensor, calls
 * `run`, and reads Y back. The output is checked against the TypeScript f64 reference.
 */

const CHROMIUM = '/usr/bin/chromium';
/**
 * WebGPU in headless Chromium on Linux: unsafe-webgpu enables it off the allowlist, and the
 * swiftshader adapter is Chromium's own (no GPU or system Vulkan needed). The page must be a
 * secure context: it is served from 127.0.0.1 (file:// pages may not import ES modules).
 */
const CHROMIUM_WEBGPU_ARGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'];

const noBrowser = !existsSync(CHROMIUM) ? `${CHROMIUM} is not installed (scripts/install-tools.sh installs Debian's chromium)` : undefined;
if (noBrowser) console.warn(`SKIP: WGSL kernels in Chromium: ${noBrowser}`);

// Ragged shapes (N fills no tile, K not a multiple of the staged chunk), both kernel variants,
// with and without subgroups, an epilogue on one.
const CASES = [
  { op: 'matmul_q35', shape: 'M=3,N=77,K=320', config: { kernel: 'gemv', subgroups: 1 } },
  { op: 'matmul_q4', shape: 'M=5,N=77,K=320', config: { kernel: 'tiled', bm: 16, bn: 32, bk: 64, buffers: 2, invocations: 64 } },
  { op: 'matmul_q8', shape: 'M=1,N=77,K=384', config: { kernel: 'gemv', subgroups: 0 } },
  { op: 'matmul_q4_0', shape: 'M=2,N=45,K=96', config: { kernel: 'gemv', subgroups: 1, rowsPerWorkgroup: 4 } },
  { op: 'matmul_q8_0', shape: 'M=9,N=33,K=160', config: { kernel: 'tiled' } },
  { op: 'matmul_f16', shape: 'M=4,N=19,K=96', config: { kernel: 'gemv', subgroups: 1, rowsPerWorkgroup: 16 } },
  // SwiftShader's default for a q4 GEMV: the rows kernel's pair walk, activations shared by subgroupBroadcast.
  { op: 'matmul_q4', shape: 'M=1,N=77,K=384', config: { kernel: 'rows', xBroadcast: 1 } },
] as const;

/**
 * The page's host (plain JavaScript, as a web app would write it): imports a loader, asks for a
 * device with what `kernel` says it needs, binds one buffer per tensor, runs, reads Y back.
 */
const HOST_PAGE = `<!doctype html><title>kgen wgsl</title>
<script type="module">
window.kgenRun = async (url, inputs) => {
  try {
    const mod = await import(url);
    const k = mod.kernel;
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { error: 'no WebGPU adapter in the page' };
    const device = await adapter.requestDevice({ requiredFeatures: k.features, requiredLimits: k.limits });
    const errors = [];
    device.addEventListener('uncapturederror', (ev) => errors.push(ev.error.message));
    const kernel = await mod.createKernel(device);
    const buffers = {};
    for (const tensor of new Set(k.bindings.map((b) => b.tensor))) {
      const size = Math.max(...k.bindings.filter((b) => b.tensor === tensor).map((b) => b.offset + b.bytes));
      buffers[tensor] = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
      if (inputs[tensor]) {
        const padded = new Uint8Array(size);
        padded.set(inputs[tensor].slice(0, size));
        device.queue.writeBuffer(buffers[tensor], 0, padded);
      }
    }
    kernel.run(buffers);
    const readback = device.createBuffer({ size: buffers.y.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(buffers.y, 0, readback, 0, buffers.y.size);
    device.queue.submit([enc.finish()]);
    await readback.mapAsync(GPUMapMode.READ);
    const y = Array.from(new Uint8Array(readback.getMappedRange().slice(0)));
    readback.unmap();
    device.destroy();
    if (errors.length) return { error: errors.join('\\n') };
    return { y, adapter: adapter.info.vendor + '/' + adapter.info.architecture };
  } catch (e) {
    return { error: String(e) };
  }
};
</script>`;

/** What the page returns: Y's bytes, or the error it met; the adapter it ran on. */
interface PageResult {
  y?: number[];
  error?: string;
  adapter?: string;
}

describe.skipIf(noBrowser !== undefined)('WGSL kernels in headless Chromium (WebGPU on SwiftShader)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kgen-wgsl-browser-'));
  let server: Server;
  let origin = '';

  beforeAll(async () => {
    // Serves the test's directory: the page and each case's kernel.js, nothing else.
    server = createServer((req, res) => {
      const name = (req.url ?? '/').slice(1);
      if (!/^[\w.-]+$/.test(name) || !existsSync(join(dir, name))) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': name.endsWith('.js') ? 'text/javascript' : 'text/html' }).end(readFileSync(join(dir, name)));
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    writeFileSync(join(dir, 'index.html'), HOST_PAGE);
  });
  afterAll(async () => {
    await new Promise((done) => server.close(done));
    rmSync(dir, { recursive: true, force: true });
  });

  it('one kernel per format (q3.5, q4, q8, q4_0, q8_0, f16) through kernel.js matches the reference', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_WEBGPU_ARGS });
    try {
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(String(e)));
      await page.goto(`${origin}/index.html`);
      await page.waitForFunction(() => 'kgenRun' in window);
      for (const [i, c] of CASES.entries()) {
        const r = emit({ target: 'wgsl', op: c.op, shape: c.shape, device: 'swiftshader', config: c.config });
        // One URL per case: the page caches modules by URL, and q4 has two.
        const loader = `${c.op}-${i}.js`;
        writeFileSync(join(dir, loader), r.files['kernel.js']!);
        const data = opKit('matmul').testData(r.plan.op, r.plan.shape, 7);
        const inputs = Object.fromEntries(Object.entries(data.inputs).map(([file, bytes]) => [file.replace(/\.bin$/, ''), Array.from(bytes)]));
        const got = await page.evaluate(({ url, inputs }) => (window as unknown as { kgenRun(u: string, i: Record<string, number[]>): Promise<PageResult> }).kgenRun(url, inputs), { url: `${origin}/${loader}`, inputs });
        expect(got.error, `${c.op} ${c.shape}`).toBeUndefined();
        expect(got.adapter, c.op).toMatch(/swiftshader/);
        const { ok, comparison } = data.check(Uint8Array.from(got.y!), r.plan.tolerance);
        expect(ok, `${c.op} ${c.shape} ${JSON.stringify(c.config)}: ${JSON.stringify(comparison)}`).toBe(true);
        expect(comparison.nonFinite, c.op).toBe(0);
      }
      expect(pageErrors).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 240_000);
});
