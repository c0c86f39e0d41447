/**
 * Same-process A/B of a WebAssembly attention kernel: one op, shape and config emitted by another
 * build (A: `--baseline`, its dist/src/index.js) and by this one (B), each through its own loader
 * (kernel.mjs's loadThreaded) on its own shared memory, called in turn: every round times `calls`
 * calls of each, each call of A next to one of B (B first in odd rounds), so both see the same
 * machine state (a 2-vCPU VM's fast and slow spells).
 *
 *   node dist/bench/wasm-ab.js --baseline /other/dist/src/index.js [--format q8] [--shape B=1,Hq=32,Hkv=8,Sq=512,Skv=512,D=128]
 *     [--causal 1] [--config '{"pvInt":0}'] [--threads 1] [--rounds 10] [--calls 3]
 *
 * Prints each kernel's median of the rounds' minima (ms), the median of the rounds' B / A and in how
 * many rounds B was faster. Nothing is checked here (test/wasm-attention.test.ts checks the kernels).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import * as kgen from '../src/index.js';
import { benchArgs, median } from './common.js';
import { memoryFor, wasmAttentionKernel } from './wasm-attention-kernel.js';

const USAGE = 'node dist/bench/wasm-ab.js --baseline /other/dist/src/index.js [--format q8] [--shape B=1,Hq=32,Hkv=8,Sq=512,Skv=512,D=128] [--causal 1] [--config {\"pvInt\":0}] [--threads 1] [--rounds 10] [--calls 3]';

async function main(): Promise<void> {
  const args = benchArgs(process.argv.slice(2), { options: ['--baseline', '--format', '--shape', '--causal', '--config', '--threads', '--rounds', '--calls'], flags: [], usage: USAGE });
  const baseline = args.opt('--baseline', '');
  if (!baseline) throw new Error(`--baseline is needed (another build's dist/src/index.js)\n${USAGE}`);
  const format = args.opt('--format', 'q8');
  const shape = args.opt('--shape', 'B=1,Hq=32,Hkv=8,Sq=512,Skv=512,D=128');
  const threads = Number(args.opt('--threads', '1'));
  const rounds = Number(args.opt('--rounds', '10'));
  const calls = Number(args.opt('--calls', '3'));
  const config = args.opt('--config', '') ? (JSON.parse(args.opt('--config', '')) as Record<string, number>) : undefined;
  const ir = { kind: 'attention', name: 'ab', q: 'f16', o: 'f32', kvCache: format, causal: args.opt('--causal', '1') === '1' };
  const other = (await import(pathToFileURL(baseline).href)) as typeof kgen;
  const root = mkdtempSync(join(tmpdir(), 'kgen-wasm-ab-'));
  try {
    const kernels = [];
    for (const [name, emit] of [['A (baseline)', other.emit], ['B (this build)', kgen.emit]] as const) {
      const loader = await wasmAttentionKernel(emit, join(root, name[0]!), ir, shape, config);
      const { memory, at } = memoryFor(loader.sizes);
      const t = await loader.loadThreaded({ memory, threads });
      kernels.push({ name, t, call: () => t.run(at.q, at.k, at.k_scales, at.v, at.v_scales, at.o, at.workspace), minima: [] as number[] });
    }
    const [a, b] = kernels as [(typeof kernels)[0], (typeof kernels)[0]];
    await a.call();
    await b.call();
    const ratios = [];
    for (let r = 0; r < rounds; r++) {
      const best = [Infinity, Infinity];
      for (let i = 0; i < calls; i++)
        // Odd rounds call B first: neither kernel always runs right after the other.
        for (const n of r % 2 ? [1, 0] : [0, 1]) {
          const k = kernels[n]!;
          const t0 = performance.now();
          await k.call();
          best[n] = Math.min(best[n]!, performance.now() - t0);
        }
      a.minima.push(best[0]!);
      b.minima.push(best[1]!);
      ratios.push(best[1]! / best[0]!);
    }
    for (const k of kernels) process.stdout.write(`${k.name}: median of round minima ${median(k.minima).toFixed(2)} ms (min ${Math.min(...k.minima).toFixed(2)})\n`);
    process.stdout.write(`B / A: median ${median(ratios).toFixed(3)}, B faster in ${ratios.filter((x) => x < 1).length} of ${rounds} rounds (${ratios.map((x) => x.toFixed(3)).join(' ')})\n`);
    kernels.forEach((k) => k.t.close());
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
