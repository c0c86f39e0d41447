/**
 * Seeded fuzz of the config space: random legal configs (the tuner's space, pruned by the plan's
 * restrictions and budgets) of random ops (catalog ops and random user IRs) on random ragged shapes,
 * on every target, each verified against the f64 reference. The other tests pin one knob at a time on fixed shapes; this one
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
import { cudaShimRunner } from '../src/backends/cuda/runner.js';
import type { KernelRunner } from '../src/backends/types.js';
import { KgenError } from '../src/errors.js';
import { CATALOG } from '../src/ir/catalog.js';
import { Rng } from '../src/numeric/random.js';
import { pruneSpace } from '../src/tune/space.js';
import { cToolsSkipReason, dawnSkipReason, expectMatchesReference, skipReason } from './helpers.js';

const SEED = Number(process.env.KGEN_CONFIG_FUZZ_SEED ?? 20261204);
const CASES = Number(process.env.KGEN_CONFIG_FUZZ_CASES ?? 8);

interface FuzzTarget {
  name: string;
  target: string;
  device: string;
  isa?: string;
  /** Why it cannot build or run here at all (a missing tool); undefined when it can. */
  skip: string | undefined;
  /** Why its kernels are compiled only (a C variant this CPU lacks); undefined where they run. */
  compileOnly: string | undefined;
  runner?: KernelRunner;
  /** Sequence lengths the attention cases draw from (SwiftShader is slow: shorter there). */
  maxSkv: number;
}

const cTarget = (isa: string, device: string): FuzzTarget =>
  ({ name: `c ${isa}`, target: 'c', device, isa, skip: cToolsSkipReason(isa), compileOnly: cannotRunReason(isa), maxSkv: 900 });

const TARGETS: FuzzTarget[] = [
  cTarget('scalar', 'epyc-7763'),
  cTarget('avx2', 'epyc-7763'),
  cTarget('avx512', 'epyc-9654'),
  cTarget('neon', 'apple-m2'),
  { name: 'wasm', target: 'wasm', device: 'wasm-simd128', skip: undefined, compileOnly: undefined, maxSkv: 900 },
  { name: 'cuda (CPU shim)', target: 'cuda', device: 'rtx4090', skip: skipReason(['g++']), compileOnly: undefined, runner: cudaShimRunner(), maxSkv: 600 },
  { name: 'wgsl (SwiftShader)', target: 'wgsl', device: 'webgpu', skip: dawnSkipReason('WGSL config fuzz'), compileOnly: undefined, maxSkv: 300 },
];

const MATMUL_OPS = Object.values(CATALOG).filter((op) => op.kind === 'matmul').map((op) => op.name);
const ATTENTION_OPS = Object.values(CATALOG).filter((op) => op.kind === 'attention').map((op) => op.name);

interface FuzzCase {
  label: string;
  request: VerifyOptions;
}

type Pick = <T>(xs: readonly T[]) => T;

/** A user's matmul IR: activation and output types, weight format and group, epilogue; and a K of whole groups. */
function randomMatmulIr(pick: Pick, index: number): { ir: Record<string, unknown>; K: number } {
  const format = pick(['q35', 'q4', 'q8', 'q4_0', 'q8_0', 'f16'] as const);
  const groupSize = format === 'q4_0' || format === 'q8_0' ? 32 : format === 'f16' ? undefined : pick([32, 64, 128, 256]);
  // K: whole groups and whole 64s (q3.5 units), at most 1536.
  const unit = Math.max(64, groupSize ?? 64);
  const K = unit * (1 + Math.floor(pick([0, 0.2, 0.45, 0.7, 0.95]) * Math.floor(1536 / unit)));
  const weight = groupSize === undefined ? { format } : { format, groupSize };
  const epilogue = { bias: pick([false, true]), activation: pick(['none', 'silu', 'gelu'] as const), residual: pick([false, true]) };
  return { ir: { kind: 'matmul', name: `fz_mm${index}`, x: pick(['f32', 'f16'] as const), y: pick(['f32', 'f16'] as const), weight, epilogue }, K };
}

/** A user's attention IR: Q and O types, KV format, row order, causal or not, head dim (and a q8 group dividing it). */
function randomAttentionIr(pick: Pick, index: number): { ir: Record<string, unknown>; D: number } {
  const kvCache = pick(['f16', 'q8', 'q8_0', 'q4_0'] as const);
  // ggml blocks are 32 values: D a multiple of 32; kgen q8 takes a group that divides D.
  const D = pick(kvCache === 'q8_0' || kvCache === 'q4_0' ? [64, 96, 128, 256] : [64, 80, 96, 128, 256]);
  const ir: Record<string, unknown> = { kind: 'attention', name: `fz_att${index}`, q: pick(['f16', 'f32'] as const), o: pick(['f16', 'f32'] as const), kvCache, causal: pick([true, false]) };
  if (kvCache === 'q8') ir.kvGroupSize = D % 32 === 0 ? pick([16, 32]) : 16;
  const layout = pick([undefined, 'heads_positions', 'positions_heads'] as const);
  if (layout) ir.kvLayout = layout;
  return { ir, D };
}

/**
 * The target's cases: an op (a catalog op, or a random user IR: activation, output and cache types,
 * weight groups, epilogues, head dims, KV row order, causal or not), a shape whose dims are rarely
 * multiples of any tile, and one of its legal configs, all from `rng`. A draw the target refuses
 * (a KgenError: no such op on this target, no legal config) is drawn again.
 */
function drawCases(t: FuzzTarget, rng: Rng, count: number): FuzzCase[] {
  const pick: Pick = (xs) => xs[Math.floor(rng.next() * xs.length)]!;
  const cases: FuzzCase[] = [];
  for (let attempt = 0; cases.length < count && attempt < 20 * count; attempt++) {
    const attention = rng.next() < 0.4;
    const userIr = rng.next() < 0.5;
    let opPart: { op: string } | { ir: Record<string, unknown> };
    let shape: string;
    if (attention) {
      const random = userIr ? randomAttentionIr(pick, attempt) : undefined;
      opPart = random ? { ir: random.ir } : { op: pick(ATTENTION_OPS) };
      const causal = random ? random.ir.causal === true : true;
      const Hkv = pick([1, 2, 3]);
      const Skv = 1 + Math.floor(rng.next() * t.maxSkv);
      // Decode, short prefill and a few tiles; causal attention needs Sq <= Skv.
      const Sq = causal ? Math.min(Skv, pick([1, 1, 2, 5, 17, 33])) : pick([1, 1, 2, 5, 17, 33]);
      shape = `B=${pick([1, 1, 2])},Hq=${Hkv * pick([1, 2, 3, 4, 5, 8])},Hkv=${Hkv},Sq=${Sq},Skv=${Skv},D=${random?.D ?? pick([64, 128])}`;
    } else {
      const random = userIr ? randomMatmulIr(pick, attempt) : undefined;
      opPart = random ? { ir: random.ir } : { op: pick(MATMUL_OPS) };
      // K: whole groups of every catalog format, rarely a multiple of a step.
      shape = `M=${pick([1, 1, 2, 3, 5, 17, 64, 70])},N=${1 + Math.floor(rng.next() * 300)},K=${random?.K ?? pick([128, 384, 640, 1152, 1408])}`;
    }
    const base = { target: t.target, device: t.device, shape, ...opPart, ...(t.isa ? { isa: t.isa } : {}) };
    let legal;
    try {
      legal = pruneSpace(resolveRequest(base), t.isa ? { isa: t.isa } : {}).legal;
    } catch (e) {
      if (e instanceof KgenError) continue;
      throw e;
    }
    if (legal.length === 0) continue;
    const { config } = pick(legal);
    const what = 'op' in opPart ? opPart.op : JSON.stringify(opPart.ir);
    cases.push({ label: `${what} ${shape} ${JSON.stringify(config)}`, request: { ...base, config, seed: cases.length + 1 } });
  }
  return cases;
}

describe('config fuzz: random legal configs on ragged shapes match the reference', () => {
  const rng = new Rng(SEED);
  for (const t of TARGETS) {
    // Drawn for every target even when it is skipped, so each target's cases are the same everywhere.
    const cases = drawCases(t, rng, CASES);
    describe.skipIf(t.skip !== undefined)(`${t.name}${t.compileOnly === undefined ? '' : ` (compile only: ${t.compileOnly})`}`, { concurrent: true }, () => {
      it('draws its cases', () => expect(cases.length).toBe(CASES));
      for (const c of cases) {
        it(c.label, async () => {
          const r = await verify({ ...c.request, werror: t.target === 'c' || t.target === 'cuda', runner: t.runner, timeoutMs: 240_000 });
          expectMatchesReference(r, c.label, t.compileOnly === undefined);
        });
      }
    });
  }
});
