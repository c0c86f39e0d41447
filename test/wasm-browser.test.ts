import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import type { AttentionOp, AttentionShape } from '../src/ir/types.js';
import { f16BitsToF32 } from '../src/numeric/half.js';
import { attentionJudge } from '../src/ops/attention.js';
import { opKit } from '../src/ops/index.js';
import { fromDtype } from '../src/ops/tensors.js';
import type { TestData } from '../src/ops/types.js';
import { writeEmittedWasm } from './helpers.js';

/**
 * Emitted WebAssembly kernels in a real browser: headless Chromium (Debian's, driven by
 * playwright-core) opens a cross-origin isolated page (COOP/COEP headers from a local server, as
 * the loader's README asks of a page that wants shared memory), imports each format's unchanged
 * kernel.mjs, runs it on 3 threads (this thread and 2 module Web Workers over one shared
 * WebAssembly.Memory) at the level the probe picks, and on one thread at SIMD128; each output is
 * checked here against the f64 TypeScript reference on a ragged shape. An attention kernel with a
 * run-time KV length runs one call on 3 threads with every range on the workers, and one as its
 * plan decides.
 */

const CHROMIUM = '/usr/bin/chromium';
const OPS = ['matmul_q35', 'matmul_q4', 'matmul_q8', 'matmul_q4_0', 'matmul_q8_0', 'matmul_f16'];
// Ragged: N=77 rows split 26/26/25 across 3 threads; K=320 is 5 groups of 64 (10 ggml blocks).
const SHAPE = 'M=3,N=77,K=320';
const THREADS = 3;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.bin': 'application/octet-stream',
};

/** Serves `root` on 127.0.0.1 with the headers that make a page cross-origin isolated. */
async function isolatedServer(root: string): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(root, path);
    if (!file.startsWith(root) || !existsSync(file) || !CONTENT_TYPES[extname(file)]) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPES[extname(file)]!,
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
    });
    res.end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/**
 * Serves `root` (with its index.html and `host`, written here as host.mjs) cross-origin isolated,
 * opens it in headless Chromium and runs `body` on the page; the page must raise no error. The
 * browser, the server and `root` are gone afterwards.
 */
async function inChromium(root: string, host: string, body: (page: import('playwright-core').Page, origin: string, version: string) => Promise<void>): Promise<void> {
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>kgen wasm</title>');
  writeFileSync(join(root, 'host.mjs'), host);
  const { server, origin } = await isolatedServer(root);
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${origin}/index.html`);
    await body(page, origin, browser.version());
    expect(errors).toEqual([]);
  } finally {
    await browser.close();
    server.close();
    rmSync(root, { recursive: true, force: true });
  }
}

/** What the page computes for one kernel: the output bytes of each run and the level it used. */
interface BrowserRun {
  isolated: boolean;
  /** The probe's verdict: relaxed SIMD computes what the kernels need in this browser. */
  probe: boolean;
  preferred: string;
  threaded: { level: string; y: number[] };
  single: { level: string; y: number[] };
}

/**
 * The page's host, as a user writes one (plain JavaScript, served beside the kernels): places the
 * buffers once in a shared memory, runs the kernel on `threads` threads at the level the probe
 * picks, then on one thread at SIMD128, and returns each output's bytes and level.
 */
const HOST = `
export async function run(base, threads) {
  const m = await import(base + '/kernel.mjs');
  const sizes = m.sizes;
  const at = {};
  let end = 64;
  for (const [name, size] of Object.entries(sizes)) { at[name] = end; end += Math.ceil(size / 64) * 64 + 64; }
  const pages = Math.ceil(end / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const bytes = new Uint8Array(memory.buffer);
  for (const name of ['x', 'w', 'bias', 'residual']) {
    if (!sizes[name]) continue;
    const response = await fetch(base + '/' + name + '.bin');
    bytes.set(new Uint8Array(await response.arrayBuffer()), at[name]);
  }
  const y = () => Array.from(bytes.slice(at.y, at.y + sizes.y));
  const k = await m.loadThreaded({ memory, threads });
  let threaded;
  try {
    await k.run(at.x, at.w, at.bias, at.residual, at.y, at.workspace);
    threaded = { level: k.level, y: y() };
  } finally {
    k.close();
  }
  bytes.fill(0, at.y, at.y + sizes.y);
  const one = await m.loadKernel({ memory, level: 'simd128' });
  one.run(at.x, at.w, at.bias, at.residual, at.y, at.workspace);
  return { isolated: crossOriginIsolated, probe: await m.relaxedSimdWorks(), preferred: m.preferred, threaded, single: { level: one.level, y: y() } };
}
`;

/**
 * The page's host of an attention kernel with a run-time KV length: the inputs in a shared memory,
 * then one call at `kvLen` on `threads` threads with every range on the workers (spread 'always'),
 * and one as the plan decides ('auto'); each output's bytes.
 */
const ATTENTION_HOST = `
export async function run(base, threads, kvLen) {
  const m = await import(base + '/kernel.mjs');
  const sizes = m.sizes;
  const at = {};
  let end = 64;
  for (const [name, size] of Object.entries(sizes)) { at[name] = end; end += Math.ceil(size / 64) * 64 + 64; }
  const pages = Math.ceil(end / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const bytes = new Uint8Array(memory.buffer);
  for (const name of ['q', 'k', 'v', 'k_scales', 'v_scales']) {
    if (!sizes[name]) continue;
    const response = await fetch(base + '/' + name + '.bin');
    bytes.set(new Uint8Array(await response.arrayBuffer()), at[name]);
  }
  const outputs = {};
  for (const spread of ['always', 'auto']) {
    bytes.fill(0xff, at.o, at.o + sizes.o);
    const k = await m.loadThreaded({ memory, threads, spread });
    try {
      await k.run(at.q, at.k, at.k_scales, at.v, at.v_scales, at.o, at.workspace, kvLen);
    } finally {
      k.close();
    }
    outputs[spread] = Array.from(bytes.slice(at.o, at.o + sizes.o));
  }
  return { isolated: crossOriginIsolated, outputs };
}
`;

describe('emitted WebAssembly kernels in headless Chromium', () => {
  const noBrowser = !existsSync(CHROMIUM) ? `${CHROMIUM} is not installed (scripts/install-tools.sh installs Debian's chromium)` : undefined;
  if (noBrowser) console.warn(`NOTE: skipping the WebAssembly browser test: ${noBrowser}`);
  it.skipIf(noBrowser !== undefined)(`every weight format, ${THREADS} threads over a shared memory (Web Workers) and 1 thread at SIMD128, against the reference`, async () => {
    const root = mkdtempSync(join(tmpdir(), 'kgen-wasm-browser-'));
    const checks = new Map<string, TestData['check']>();
    const plans = new Map<string, ReturnType<typeof emit>['plan']>();
    for (const op of OPS) {
      const e = emit({ target: 'wasm', op, shape: SHAPE });
      const dir = join(root, op);
      mkdirSync(dir);
      // Exactly what `kgen emit -o` writes, unchanged, beside the inputs.
      await writeEmittedWasm(e, dir, op);
      const data = opKit('matmul').testData(e.plan.op, e.plan.shape, 7);
      for (const [name, bytes] of Object.entries(data.inputs)) writeFileSync(join(dir, name), bytes);
      checks.set(op, data.check);
      plans.set(op, e.plan);
    }
    await inChromium(root, HOST, async (page, origin, version) => {
      const chosen: string[] = [];
      for (const op of OPS) {
        // A string, so that nothing rewrites the page's code on the way.
        const run = (await page.evaluate(`import('${origin}/host.mjs').then((h) => h.run('${origin}/${op}', ${THREADS}))`)) as BrowserRun;
        expect(run.isolated, 'the page is cross-origin isolated').toBe(true);
        const plan = plans.get(op)!;
        const check = checks.get(op)!;
        for (const [what, r] of [['threaded', run.threaded], ['single', run.single]] as const) {
          const result = check(new Uint8Array(r.y), plan.tolerance);
          expect(result.ok, `${op} ${what} (${r.level}): ${JSON.stringify(result)}`).toBe(true);
        }
        expect(run.single.level).toBe('simd128');
        // The preferred level where the probe allows it (f16 weights have only SIMD128).
        expect(run.threaded.level, op).toBe(run.preferred === 'relaxed' && run.probe ? 'relaxed' : 'simd128');
        chosen.push(`${op}: probe ${run.probe ? 'passes' : 'fails'}, preferred ${run.preferred}, ran ${run.threaded.level}`);
      }
      console.log(`Chromium ${version}:\n  ${chosen.join('\n  ')}`);
    });
  }, 180_000);

  it.skipIf(noBrowser !== undefined)(`an attention kernel with a run-time KV length, ${THREADS} threads (every range on the workers, and as the plan decides), against the reference`, async () => {
    const root = mkdtempSync(join(tmpdir(), 'kgen-wasm-browser-attn-'));
    // q4_0, decode in 8 splits on a capacity of 1000; kv_len ragged in a split.
    const e = emit({ target: 'wasm', ir: { kind: 'attention', name: 'rt_q4_0', q: 'f16', o: 'f32', kvCache: 'q4_0', causal: true, kvLength: 'runtime' }, shape: 'B=1,Hq=32,Hkv=8,Sq=1,Skv=1000,D=128', config: { splits: 8 } });
    const op = e.plan.op as AttentionOp;
    const shape = e.plan.shape as AttentionShape;
    const kvLen = 437;
    const inputs = opKit('attention').testData(op, shape, 9).inputs;
    await writeEmittedWasm(e, root, 'attn');
    for (const [name, bytes] of Object.entries(inputs)) writeFileSync(join(root, name), bytes);
    await inChromium(root, ATTENTION_HOST, async (page, origin) => {
      const run = (await page.evaluate(`import('${origin}/host.mjs').then((h) => h.run('${origin}', ${THREADS}, ${kvLen}))`)) as { isolated: boolean; outputs: Record<string, number[]> };
      expect(run.isolated, 'the page is cross-origin isolated').toBe(true);
      const stored = (name: string) => ({ data: inputs[`${name}.bin`]!, scales: inputs[`${name}_scales.bin`] });
      const q = Float32Array.from(new Uint16Array(inputs['q.bin']!.slice().buffer), (b) => f16BitsToF32(b));
      const judge = attentionJudge(op, shape, { q, k: stored('k'), v: stored('v') }, [kvLen]);
      expect(Object.keys(run.outputs)).toEqual(['always', 'auto']);
      for (const [spread, o] of Object.entries(run.outputs)) {
        const { ok, comparison } = judge.check(fromDtype(new Uint8Array(o), op.o), e.plan.tolerance);
        expect(comparison.nonFinite, spread).toBe(0);
        expect(ok, `spread ${spread}: nmse ${comparison.nmse}`).toBe(true);
      }
    });
  }, 180_000);
});
