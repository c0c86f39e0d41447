/**
 * Seeded fuzz of the config space: random legal configs (the tuner's space, pruned by the plan's
 * restrictions and budgets) of random ops on random ragged shapes, on every target, each verified
 * against the f64 reference. The other tests pin one knob at a time on fixed shapes; this one
 * covers the combinations a tune or a user's `--config` can reach, so a knob that breaks another's
 * assumption (a tile edge, a split, a step count) fails here with the config and shape in its name.
 *
 * Cases are drawn at collection time from KGEN_CONFIG_FUZZ_SEED (one fixed seed by default, so a run
 * is reproducible on any machine); KGEN_CONFIG_FUZZ_CASES sets the cases per target (default 8).
 * C variants this CPU cannot run are compiled with -Werror only; CUDA runs through the CPU shim,
 * WGSL on SwiftShader, NEON under qemu-aarch64, each skipped with the reason where its tool is missing.
 */
import { describe, expect, it } from 'vitest';
import { resolveRequest } from '../src/api/request.js';
import { verify, type VerifyOptions } from '../src/api/verify.js';
import { cannotRunReason } from '../src/backends/c/runner.js';
import { C_TOOLCHAINS } from '../src/backends/c/toolchain.js';
import { cudaShimRunner } from '../src/backends/cuda/runner.js';
import type { KernelRunner } from '../src/backends/types.js';
import { CATALOG } from '../src/ir/catalog.js';
import { Rng } from '../src/numeric/random.js';
import { pruneSpace } from '../src/tune/space.js';
import { dawnSkipReason, EPILOGUE_IRS, expectMatchesReference, skipReason } from './helpers.js';

const SEED = Number(process.env.KGEN_CONFIG_FUZZ_SEED ?? 20261204);
const CASES = Number(process.env.KGEN_CONFIG_FUZZ_CASES ?? 8);

interface FuzzTarget {
  name: string;
  target: string;
  device: string;
  isa?: string;
  /** Why it cannot build or run here at all (a missing tool); undefined when it can. */
  skip: string | undefined;
  /** False where kernels are compiled only (a C variant this CPU lacks). */
  runs: boolean;
  runner?: KernelRunner;
  /** Sequence lengths the attention cases draw from (SwiftShader is slow: shorter there). */
  maxSkv: number;
}

const cTarget = (isa: string, device: string): FuzzTarget => {
  const tc = C_TOOLCHAINS[isa]!;
  const skip = skipReason([tc.compiler, ...(tc.runner && process.arch !== 'arm64' ? [tc.runner[0]!] : [])]);
  return { name: `c ${isa}`, target: 'c', device, isa, skip, runs: cannotRunReason(isa) === undefined, maxSkv: 900 };
};

const TARGETS: FuzzTarget[] = [
  cTarget('scalar', 'epyc-7763'),
  cTarget('avx2', 'epyc-7763'),
  cTarget('avx512', 'epyc-9654'),
  cTarget('neon', 'apple-m2'),
  { name: 'wasm', target: 'wasm', device: 'wasm-simd128', skip: undefined, runs: true, maxSkv: 900 },
  { name: 'cuda (CPU shim)', target: 'cuda', device: 'rtx4090', skip: skipReason(['g++']), runs: true, runner: cudaShimRunner(), maxSkv: 600 },
  { name: 'wgsl (SwiftShader)', target: 'wgsl', device: 'webgpu', skip: dawnSkipReason('WGSL config fuzz'), runs: true, maxSkv: 300 },
];

const MATMUL_OPS = Object.values(CATALOG).filter((op) => op.kind === 'matmul').map((op) => op.name);
const ATTENTION_OPS = Object.values(CATALOG).filter((op) => op.kind === 'attention').map((op) => op.name);

interface FuzzCase {
  label: string;
  request: VerifyOptions;
}

/**
 * The target's cases: an op (a catalog op, or a user IR with f16 activations and fused epilogues),
 * a shape whose dims are rarely multiples of any tile, and one of its legal configs, all from `rng`.
 * A draw with no legal config (a shape the target refuses) is drawn again.
 */
function drawCases(t: FuzzTarget, rng: Rng, count: number): FuzzCase[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.next() * xs.length)]!;
  const cases: FuzzCase[] = [];
  for (let attempt = 0; cases.length < count && attempt < 20 * count; attempt++) {
    const attention = rng.next() < 0.4;
    let opPart: { op: string } | { ir: unknown };
    let shape: string;
    if (attention) {
      opPart = { op: pick(ATTENTION_OPS) };
      const Hkv = pick([1, 2, 3]);
      const Skv = 1 + Math.floor(rng.next() * t.maxSkv);
      // Sq <= Skv (causal attention requires it); decode, short prefill and a few tiles.
      const Sq = Math.min(Skv, pick([1, 1, 2, 5, 17, 33]));
      shape = `B=${pick([1, 1, 2])},Hq=${Hkv * pick([1, 2, 3, 4, 5, 8])},Hkv=${Hkv},Sq=${Sq},Skv=${Skv},D=${pick([64, 128])}`;
    } else {
      opPart = rng.next() < 0.25 ? { ir: pick(EPILOGUE_IRS) } : { op: pick(MATMUL_OPS) };
      // K: whole groups of 64 and 128 (every format's group divides them), rarely a multiple of a step.
      shape = `M=${pick([1, 1, 2, 3, 5, 17, 64, 70])},N=${1 + Math.floor(rng.next() * 300)},K=${pick([128, 384, 640, 1152, 1408])}`;
    }
    const base = { target: t.target, device: t.device, shape, ...opPart, ...(t.isa ? { isa: t.isa } : {}) };
    const space = pruneSpace(resolveRequest(base), t.isa ? { isa: t.isa } : {});
    if (space.legal.length === 0) continue;
    const { config } = pick(space.legal);
    const name = 'op' in opPart ? opPart.op : (opPart.ir as { name: string }).name;
    cases.push({ label: `${name} ${shape} ${JSON.stringify(config)}`, request: { ...base, config, seed: cases.length + 1 } });
  }
  return cases;
}

describe('config fuzz: random legal configs on ragged shapes match the reference', () => {
  const rng = new Rng(SEED);
  for (const t of TARGETS) {
    // Drawn for every target even when it is skipped, so each target's cases are the same everywhere.
    const cases = drawCases(t, rng, CASES);
    describe.skipIf(t.skip !== undefined)(`${t.name}${t.runs ? '' : ' (compile only: ' + cannotRunReason(t.isa!) + ')'}`, { concurrent: true }, () => {
      it('draws its cases', () => expect(cases.length).toBe(CASES));
      for (const c of cases) {
        it(c.label, async () => {
          const r = await verify({ ...c.request, werror: t.target === 'c' || t.target === 'cuda', runner: t.runner, timeoutMs: 240_000 });
          expectMatchesReference(r, c.label, t.runs);
        });
      }
    });
  }
});
