import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { verify } from '../src/api/verify.js';
import { cannotRunReason, cRunner } from '../src/backends/c/runner.js';
import { C_TOOLCHAINS, C_VARIANTS } from '../src/backends/c/toolchain.js';
import { planRequest } from '../src/backends/registry.js';
import { hostIsa } from '../src/device/host.js';
import { getDevice } from '../src/device/index.js';
import { catalogOp } from '../src/ir/catalog.js';
import { parseShape } from '../src/ir/validate.js';
import { TestDataCache } from '../src/ops/test-data-cache.js';
import { spaceFor } from '../src/plan/index.js';
import { cToolsSkipReason, EPILOGUE_IRS, skipReason } from './helpers.js';

/**
 * Every C variant and a fixed device whose profile offers it (never `host`, whose figures, and so
 * the default configs, follow the machine). Whether a kernel runs is this CPU's call (cannotRunReason).
 */
const AVX2_CPU = 'epyc-7763';
const VARIANTS = [
  { isa: 'scalar', device: AVX2_CPU },
  { isa: 'avx2', device: AVX2_CPU },
  { isa: 'avxvnni', device: 'xeon-8592' },
  { isa: 'avx512', device: 'epyc-9654' },
  { isa: 'neon', device: 'apple-m2' },
] as const;

// Every ISA verifies the same ops at the same shapes: their inputs and f64 references are drawn once.
const DATA = new TestDataCache();

const OPS = ['matmul_q35', 'matmul_q4', 'matmul_q8', 'matmul_q4_0', 'matmul_q8_0', 'matmul_f16'];
// Ragged: N=77 is not a multiple of any row tile; K=320 is 5 groups of 64 (10 ggml blocks).
const SHAPES = ['M=1,N=77,K=320', 'M=3,N=77,K=320', 'M=64,N=77,K=320'];

for (const { isa, device } of VARIANTS) {
  const missing = cToolsSkipReason(isa);
  const runnable = cannotRunReason(isa) === undefined;
  if (!runnable) console.warn(`NOTE: ${isa} kernels are compiled with -Werror but not run here: ${cannotRunReason(isa)}`);
  describe.skipIf(missing !== undefined)(`C ${isa}`, { concurrent: true }, () => {
    for (const op of OPS) {
      it(`${op}: M in {1,3,64}, ragged N and K, matches the reference${runnable ? '' : ' (compile only)'}`, async () => {
        for (const shape of SHAPES) {
          const r = await verify({ target: 'c', op, shape, isa, device, werror: true, testData: DATA });
          expect(r.detail ?? '', `${op} ${shape}`).not.toMatch(/error/);
          expect(r.status, `${op} ${isa} ${shape}: ${r.detail ?? ''}`).toBe('ok');
          expect(r.ran).toBe(runnable);
          if (runnable) {
            expect(r.comparison!.nonFinite).toBe(0);
            expect(r.comparison!.nmse).toBeLessThanOrEqual(r.tolerance.nmse);
          }
        }
      });
    }
    // One test per format (8 compiles each): under describe.concurrent on a 2-core CI machine one
    // test of all 24 compiles waited past 120 s for a core.
    for (const format of ['q4', 'q35', 'q8']) {
      it(`${format} group sizes 32, 96 and 128: activation blocks of 32 (in pairs across groups, an odd count leaves one alone) and 64`, async () => {
        // K=384 is an even number of 32-blocks for every group size; K=352 (G=32) and K=288 (G=96) are
        // odd, so the last block goes through the tail path alone (for q3.5 at G=96: a 32-weight unit).
        const odd: Record<number, string> = { 32: 'M=1,N=37,K=352', 96: 'M=3,N=37,K=288' };
        for (const groupSize of [32, 96, 128]) {
          const ir = { kind: 'matmul', name: `g${groupSize}_${format}`, x: 'f32', y: 'f32', weight: { format, groupSize }, epilogue: {} };
          for (const shape of ['M=1,N=37,K=384', 'M=3,N=37,K=384', ...(odd[groupSize] ? [odd[groupSize]] : [])]) {
            const r = await verify({ target: 'c', ir, shape, isa, device, werror: true, testData: DATA });
            expect(r.status, `${format} g${groupSize} ${shape}: ${r.detail ?? ''}`).toBe('ok');
          }
        }
      }, 300_000);
    }
    it.skipIf(!C_VARIANTS.blockStep?.[isa])('block steps of 4 and 8 and pairs: 32-weight blocks, steps then leftover pairs and an odd block', async () => {
      // K=352 is 11 blocks: 2 steps of 4 (or 1 of 8), then a pair and the lone last block; K=256 has no leftover.
      const g32 = (format: string) => ({ kind: 'matmul', name: `g32_${format}`, x: 'f32', y: 'f32', weight: { format, groupSize: 32 }, epilogue: {} });
      const cases = [
        ...[{ op: 'matmul_q4_0' }, { op: 'matmul_q8_0' }].flatMap((which) => [4, 8, 2].map((stepBlocks) => ({ which, stepBlocks, shapes: ['M=1,N=37,K=352', 'M=3,N=19,K=256'] }))),
        ...[{ ir: g32('q4') }, { ir: g32('q8') }].map((which) => ({ which, stepBlocks: 4, shapes: ['M=3,N=19,K=352'] })),
      ];
      for (const { which, stepBlocks, shapes } of cases) {
        for (const shape of shapes) {
          // M=1: 8 rows of one activation row; M=3: 4 rows x 2 activation rows (edge tile of 1), within 16 registers.
          const config = { stepBlocks, ...(shape.startsWith('M=1,') ? { rowsPerIter: 8, mTile: 1 } : { rowsPerIter: 4, mTile: 2 }), nTile: 16 };
          const r = await verify({ target: 'c', ...(which as { op: string }), shape, isa, device, config, werror: true, testData: DATA });
          expect(r.plan.params, `${JSON.stringify(which)} ${shape}`).toMatchObject({ stepBlocks: stepBlocks === 2 ? 0 : stepBlocks });
          expect(r.status, `${JSON.stringify(which)} ${shape} ${JSON.stringify(config)}: ${r.detail ?? ''}`).toBe('ok');
        }
      }
    });
    // AVX-512 runs the row-sums kernel as AVX2 code with 256-bit VNNI dot products (q4 with AVX2's
    // nibble decoder and activation order, q3.5 with its own decoder's codes + 128); AVX-VNNI with
    // AVX2's decoders and vpdpbusd for q4 and q3.5.
    const rowSumsFormats = C_VARIANTS.rowSums?.[isa];
    it.skipIf(!rowSumsFormats)('row sums (8 rows in one vector) on and off: groups of 64 (M=1) and 128 (M=3), ragged N, steps of 2 blocks and a lone last block', async () => {
      // N=37: four whole 8-row tiles through the row-sums path, then 5 rows through the per-row path.
      // q3.5 at G=64 (30-byte blocks) steps 2 blocks at a time: K=384 is 3 steps, K=320 2 steps and a lone block.
      for (const format of rowSumsFormats!) {
        // Groups of 128 hold two activation blocks each; M=3 runs the path once per activation row.
        for (const [groupSize, shape] of [[64, 'M=1,N=37,K=384'], [64, 'M=1,N=37,K=320'], [128, 'M=3,N=37,K=256']] as const) {
          const ir = { kind: 'matmul', name: `rs${groupSize}_${format}`, x: 'f32', y: 'f32', weight: { format, groupSize }, epilogue: {} };
          // AVX-512 q3.5 also decodes each 64-weight unit into one zmm (rowSumsBits 512).
          const widths = isa === 'avx512' && format === 'q35' ? [256, 512] : [undefined];
          for (const [rowSums, rowSumsBits] of [...widths.map((bits) => [1, bits] as const), [0, undefined] as const]) {
            const config = { rowsPerIter: 8, mTile: 1, rowSums, unroll: 2, ...(rowSumsBits ? { rowSumsBits } : {}) };
            const r = await verify({ target: 'c', ir, shape, isa, device, config, werror: true, testData: DATA });
            const rowSumsStep = rowSums === 0 ? 0 : format === 'q35' && groupSize === 64 ? 2 : 1;
            expect(r.plan.params, `${format} g${groupSize} ${shape}`).toMatchObject({ rowSums: rowSums === 1, rowSumsStep, rowSumsWide: rowSumsBits === 512 });
            expect(r.status, `${format} g${groupSize} ${shape} ${JSON.stringify(config)}: ${r.detail ?? ''}`).toBe('ok');
          }
        }
      }
    }, 300_000);
    it('other tilings give the same results (edge tiles in N and M, prefetch distances)', async () => {
      for (const config of [
        { rowsPerIter: 1, mTile: 4, nTile: 8, prefetch: 0 },
        { rowsPerIter: 2, mTile: 2, nTile: 2, prefetch: 2 },
        { rowsPerIter: 4, mTile: 1, nTile: 4, prefetch: 1 },
        { rowsPerIter: 8, mTile: 1, nTile: 16, prefetch: 1 },
      ]) {
        const r = await verify({ target: 'c', op: 'matmul_q35', shape: 'M=5,N=33,K=4096', isa, device, config: isa === 'scalar' ? config : { ...config, unroll: 4 }, testData: DATA });
        expect(r.status, JSON.stringify(config)).toBe('ok');
      }
    });
  });
}

/** The weight format of a catalog op ({ op }) or of an inline matmul IR ({ ir }). */
function formatOf(which: { op: string } | { ir: { weight: { format: string } } }): string {
  if ('ir' in which) return which.ir.weight.format;
  const op = catalogOp(which.op);
  return op?.kind === 'matmul' ? op.weight.format : '';
}

const q35Panels = Object.keys(C_VARIANTS.panel ?? {}).filter((isa) => C_VARIANTS.panel![isa]!.includes('q35'));

describe.concurrent('C panel GEMM path (q4, q4_0 and q3.5 on AVX2, AVX-VNNI and AVX-512)', () => {
  // Ragged: M not a multiple of the activation tile, N not a multiple of the 8-row panel nor of the
  // weight tile, K an odd number of groups (K=320: 5 groups of 64, 10 of 32; K=384 for groups of 128).
  const irs = [
    { op: 'matmul_q4', shapes: ['M=17,N=77,K=320', 'M=30,N=13,K=320'] },
    { op: 'matmul_q4_0', shapes: ['M=17,N=77,K=320', 'M=30,N=13,K=352'] },
    ...[32, 128].map((groupSize) => ({
      ir: { kind: 'matmul', name: `panel_g${groupSize}`, x: 'f32', y: 'f32', weight: { format: 'q4', groupSize }, epilogue: {} },
      shapes: ['M=19,N=37,K=384'],
    })),
    { ir: EPILOGUE_IRS[0]!, shapes: ['M=18,N=21,K=384'] },
    // q3.5 (signed table values on AVX2, + 128 on the VNNI variants): groups of 64 (units of 64), 96
    // (a 32-weight unit after each 64; K=288 an odd number of 32-chunks) and 128.
    { op: 'matmul_q35', shapes: ['M=17,N=77,K=320', 'M=30,N=13,K=320'], isas: q35Panels },
    ...[96, 128].map((groupSize) => ({
      ir: { kind: 'matmul', name: `panel_q35_g${groupSize}`, x: 'f32', y: 'f32', weight: { format: 'q35', groupSize }, epilogue: {} },
      shapes: groupSize === 96 ? ['M=19,N=37,K=384', 'M=16,N=9,K=288'] : ['M=19,N=37,K=384'],
      isas: q35Panels,
    })),
  ];
  for (const { isa, device } of VARIANTS.filter((v) => C_VARIANTS.panel?.[v.isa])) {
    const runnable = cannotRunReason(isa) === undefined;
    for (const { shapes, isas, ...which } of irs as (typeof irs[number] & { isas?: string[] })[]) {
      if (isas && !isas.includes(isa)) continue;
      const name = 'op' in which ? which.op : which.ir.name;
      it(`${name} ${isa}: panel tilings on ragged shapes${runnable ? '' : ' (compile only)'}`, async () => {
        for (const shape of shapes) {
          // Where the panel can be 16 rows (AVX-512 in one zmm, AVX-VNNI in two ymm): the default
          // (16-row panels; mTile 8 on AVX-512, 4 on AVX-VNNI), mTile 2 with 16-row panels, and the
          // 8-row panel (nTile 8 is too small for 16 rows; and asked for).
          const configs = [{ panel: 1 }, { panel: 1, mTile: 1, nTile: 8, unroll: 1 }, { panel: 1, mTile: 2, nTile: 16, unroll: 4 }];
          const wide = Boolean(C_VARIANTS.panelWide?.[isa]?.includes(formatOf(which as { op: string })));
          if (wide) configs.push({ panel: 1, panelBits: 256 } as (typeof configs)[number]);
          for (const config of configs) {
            const r = await verify({ target: 'c', ...(which as { op: string }), shape, isa, device, config, werror: true, testData: DATA });
            const slices = wide && (config as { panelBits?: number }).panelBits !== 256 && config.nTile !== 8 ? 2 : 1;
            expect(r.plan.params, `${name} ${shape} ${JSON.stringify(config)}`).toMatchObject({ panel: true, panelSlices: slices, panelRows: 8 * slices });
            expect(r.status, `${name} ${isa} ${shape} ${JSON.stringify(config)}: ${r.detail ?? ''}`).toBe('ok');
            expect(r.ran).toBe(runnable);
          }
        }
      });
    }
  }
  it('the default for M >= 16 is the panel path; M < 16, other formats and scalar keep the row path', async () => {
    const plan = (op: string, shape: string, isa: string) => emit({ target: 'c', op, shape, isa, device: 'epyc-9654' }).plan.params as { panel: boolean; panelSignedCodes: boolean; panelCodeOffset: number };
    expect(plan('matmul_q4', 'M=256,N=4096,K=4096', 'avx2').panel).toBe(true);
    expect(plan('matmul_q4_0', 'M=16,N=4096,K=4096', 'avx512').panel).toBe(true);
    expect(plan('matmul_q4', 'M=15,N=4096,K=4096', 'avx2').panel).toBe(false);
    // q3.5 on AVX2: signed codes, the sign trick, i32 every step (maddubs on codes + 128 would overflow i16).
    expect(plan('matmul_q35', 'M=256,N=4096,K=4096', 'avx2')).toMatchObject({ panel: true, panelSignedCodes: true, panelCodeOffset: 0 });
    expect(plan('matmul_q35', 'M=256,N=4096,K=4096', 'avx512')).toMatchObject({ panel: true, panelSignedCodes: false, panelCodeOffset: 128 });
    // AVX-VNNI's step is vpdpbusd too (xeon-8592 has it; the AMD profiles do not).
    expect((emit({ target: 'c', op: 'matmul_q35', shape: 'M=256,N=4096,K=4096', isa: 'avxvnni', device: 'xeon-8592' }).plan.params as { panel: boolean }).panel).toBe(true);
    expect(plan('matmul_q4', 'M=256,N=4096,K=4096', 'scalar').panel).toBe(false);
  });
  it.skipIf(cannotRunReason('avx512') !== undefined)('q3.5 panels under AddressSanitizer and UndefinedBehaviorSanitizer (avx512, where this CPU runs it)', async () => {
    for (const shape of ['M=17,N=13,K=320', 'M=16,N=9,K=128']) {
      const r = await verify({ target: 'c', op: 'matmul_q35', shape, isa: 'avx512', device: 'epyc-9654', config: { panel: 1 }, sanitize: true, testData: DATA });
      expect(r.plan.params).toMatchObject({ panel: true });
      expect(r.status, `${shape}: ${r.detail ?? ''}`).toBe('ok');
    }
  });
  it('q4, q4_0 and q3.5 panels under AddressSanitizer and UndefinedBehaviorSanitizer (avx2)', async () => {
    for (const op of ['matmul_q4', 'matmul_q4_0', 'matmul_q35']) {
      const r = await verify({ target: 'c', op, shape: 'M=17,N=13,K=320', isa: 'avx2', device: AVX2_CPU, config: { panel: 1 }, sanitize: true, testData: DATA });
      expect(r.plan.params).toMatchObject({ panel: true });
      expect(r.status, `${op}: ${r.detail ?? ''}`).toBe('ok');
    }
  });
  it.skipIf(cannotRunReason('avx512') !== undefined)('q4 and q4_0 512-bit panels under AddressSanitizer and UndefinedBehaviorSanitizer (avx512, where this CPU runs it)', async () => {
    for (const op of ['matmul_q4', 'matmul_q4_0']) {
      const r = await verify({ target: 'c', op, shape: 'M=17,N=21,K=320', isa: 'avx512', device: 'epyc-9654', config: { panel: 1 }, sanitize: true, testData: DATA });
      expect(r.plan.params).toMatchObject({ panel: true, panelSlices: 2, panelVectors: 1, mTile: 8 });
      expect(r.status, `${op}: ${r.detail ?? ''}`).toBe('ok');
    }
  });
  it.skipIf(cannotRunReason('avxvnni') !== undefined)('16-row panels as two 256-bit vectors under AddressSanitizer and UndefinedBehaviorSanitizer (avxvnni, where this CPU runs it)', async () => {
    for (const op of ['matmul_q4', 'matmul_q4_0', 'matmul_q35']) {
      const r = await verify({ target: 'c', op, shape: 'M=19,N=21,K=320', isa: 'avxvnni', device: 'xeon-8592', config: { panel: 1 }, sanitize: true, testData: DATA });
      expect(r.plan.params).toMatchObject({ panel: true, panelSlices: 2, panelVectors: 2, mTile: 4 });
      expect(r.status, `${op}: ${r.detail ?? ''}`).toBe('ok');
    }
  });
  it('mTile 8 is for the panel on 512-bit vectors: AVX-VNNI\'s 16-row panel (two ymm a row) refuses it', () => {
    const request = (isa: string) => ({ target: 'c' as const, op: 'matmul_q4', shape: 'M=256,N=4096,K=4096', isa, device: 'xeon-8592' });
    expect(emit({ ...request('avx512'), config: { mTile: 8 } }).plan.params).toMatchObject({ panelRows: 16, panelVectors: 1, mTile: 8 });
    expect(emit(request('avxvnni')).plan.params).toMatchObject({ panelRows: 16, panelVectors: 2, mTile: 4 });
    expect(() => emit({ ...request('avxvnni'), config: { mTile: 8 } })).toThrow(/mTile 8 is for the panel micro-kernel on 512-bit vectors alone/);
  });
});

describe('AVX-VNNI as a variant', () => {
  const isaValues = (name: string, shape: string) => {
    const op = catalogOp(name)!;
    return spaceFor(planRequest({ op, shape: parseShape(shape, op), device: getDevice('xeon-8592'), target: 'c' })).knobs.find((k) => k.name === 'isa')!.values;
  };
  it('matmul and attention offer it after AVX-512 and before AVX2 where the profile has it', () => {
    expect(isaValues('matmul_q4', 'M=1,N=64,K=256')).toEqual(['avx512', 'avxvnni', 'avx2', 'scalar']);
    expect(isaValues('attention_f16', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=100,D=64')).toEqual(['avx512', 'avxvnni', 'avx2', 'scalar']);
  });
  // Where the CPU has AVX-512 VNNI but not AVX-VNNI (Zen 4): its code runs with the EVEX forms of the
  // same instructions, after compiling with its own flags; those times are not the variant's.
  const host = hostIsa().isa;
  const standIn = !host.includes('avxvnni') && C_TOOLCHAINS.avxvnni!.standIn!.needs.every((f) => host.includes(f));
  it.skipIf(!standIn || cToolsSkipReason('avxvnni') !== undefined)('runs through its AVX-512 VNNI stand-in where the CPU lacks it, with times the tuner does not take', async () => {
    expect(cannotRunReason('avxvnni')).toBeUndefined();
    const runner = cRunner('avxvnni');
    expect(runner.timesAreReal).toBe(false);
    expect(runner.name).toMatch(/AVX-512 VNNI stand-in/);
    const r = await verify({ target: 'c', op: 'matmul_q8_0', shape: 'M=3,N=77,K=320', isa: 'avxvnni', device: 'xeon-8592', werror: true, testData: DATA });
    expect(r.status, r.detail).toBe('ok');
    expect(r.runner).toMatch(/stand-in/);
  });
});

describe.concurrent('C epilogues and dtypes', () => {
  for (const ir of EPILOGUE_IRS) {
    for (const isa of ['scalar', 'avx2']) {
      it(`${ir.name} (${isa})`, async () => {
        const r = await verify({ target: 'c', ir, shape: 'M=3,N=77,K=384', isa, device: AVX2_CPU, werror: true, testData: DATA });
        expect(r.status, r.detail).toBe('ok');
      });
    }
  }
  it('scalar with f32 activations is exact to f32 rounding', async () => {
    const r = await verify({ target: 'c', op: 'matmul_q35', shape: 'M=3,N=77,K=320', isa: 'scalar', device: AVX2_CPU, config: { actQuant: 'f32' }, testData: DATA });
    expect(r.status).toBe('ok');
    expect(r.comparison!.nmse).toBeLessThan(1e-10);
  });
});

describe.concurrent('C under AddressSanitizer and UndefinedBehaviorSanitizer', () => {
  for (const isa of ['scalar', 'avx2']) {
    for (const op of OPS) {
      it(`${op} ${isa} on ragged shapes`, async () => {
        for (const shape of ['M=3,N=77,K=320', 'M=1,N=5,K=64']) {
          const r = await verify({ target: 'c', op, shape: op === 'matmul_f16' && shape.endsWith('K=64') ? 'M=1,N=5,K=96' : shape, isa, device: AVX2_CPU, sanitize: true, testData: DATA });
          expect(r.status, `${shape}: ${r.detail ?? ''}`).toBe('ok');
        }
      });
    }
  }
});

describe('a broken kernel is caught', () => {
  it('a decode off by one level is wrong_result, not ok', async () => {
    const { cRunner } = await import('../src/backends/c/runner.js');
    const { opKit } = await import('../src/ops/index.js');
    const e = emit({ target: 'c', op: 'matmul_q4', shape: 'M=3,N=77,K=320', isa: 'scalar', device: AVX2_CPU });
    const good = e.files['kernel.c']!;
    const broken = good.replace('(q[j] & 0x0f) - 8', '(q[j] & 0x0f) - 7');
    expect(broken).not.toBe(good);
    const data = opKit(e.plan.op.kind).testData(e.plan.op, e.plan.shape, 1);
    const runner = cRunner('scalar');
    for (const [src, expected] of [[good, true], [broken, false]] as const) {
      const build = await runner.build(e.plan, { ...e.rendered, files: { ...e.rendered.files, 'kernel.c': src } });
      expect(build.status).toBe('ok');
      if (build.status !== 'ok') continue;
      const run = await runner.execute(build, data.inputs);
      build.dispose();
      expect(run.status).toBe('ok');
      if (run.status === 'ok') expect(data.check(run.output, e.plan.tolerance).ok).toBe(expected);
    }
  });

  it('outputs whose products cancel do not fail a correct kernel; a wrong decode still fails on three', async () => {
    // With int8 activations an output's error scales with its products' energy, not with the output:
    // a dot product near zero by chance, or SiLU of a negative sum, once made a correct kernel's NMSE
    // over a handful of outputs exceed the tolerance on most seeds (q8_g128 at M=N=1: 118 of 200).
    const { cRunner } = await import('../src/backends/c/runner.js');
    const { opKit } = await import('../src/ops/index.js');
    const runner = cRunner('scalar');
    const runAll = async (e: ReturnType<typeof emit>, src: string, seeds: number) => {
      const build = await runner.build(e.plan, { ...e.rendered, files: { ...e.rendered.files, 'kernel.c': src } });
      expect(build.status).toBe('ok');
      const verdicts: boolean[] = [];
      if (build.status !== 'ok') return verdicts;
      for (let seed = 1; seed <= seeds; seed++) {
        const data = opKit(e.plan.op.kind).testData(e.plan.op, e.plan.shape, seed);
        const run = await runner.execute(build, data.inputs);
        expect(run.status).toBe('ok');
        if (run.status === 'ok') verdicts.push(data.check(run.output, e.plan.tolerance).ok);
      }
      build.dispose();
      return verdicts;
    };
    const silu = EPILOGUE_IRS.find((o) => o.name === 'q8_g128')!;
    const tiny = emit({ target: 'c', ir: silu, shape: 'M=1,N=1,K=1152', isa: 'scalar', device: AVX2_CPU, config: { actQuant: 'q8' } });
    expect(await runAll(tiny, tiny.files['kernel.c']!, 32)).toEqual(Array(32).fill(true));
    const q4 = emit({ target: 'c', op: 'matmul_q4', shape: 'M=1,N=3,K=1024', isa: 'scalar', device: AVX2_CPU, config: { actQuant: 'q8' } });
    const good = q4.files['kernel.c']!;
    const broken = good.replace('(q[j] & 0x0f) - 8', '(q[j] & 0x0f) - 7');
    expect(broken).not.toBe(good);
    expect(await runAll(q4, good, 32)).toEqual(Array(32).fill(true));
    expect(await runAll(q4, broken, 8)).toEqual(Array(8).fill(false));
  });

  it('a kernel that crashes or hangs is a status, not an exception', async () => {
    const { cRunner } = await import('../src/backends/c/runner.js');
    const { opKit } = await import('../src/ops/index.js');
    const e = emit({ target: 'c', op: 'matmul_q4', shape: 'M=1,N=8,K=64', isa: 'scalar', device: AVX2_CPU });
    const data = opKit(e.plan.op.kind).testData(e.plan.op, e.plan.shape, 1);
    const runner = cRunner('scalar');
    const at = 'void kgen_matmul_q4_rows(';
    const variants = {
      crash: e.files['kernel.c']!.replace('  const kg_act *xa = (const kg_act *)workspace;', '  const kg_act *xa = (const kg_act *)workspace;\n  if (row_end > 0) __builtin_trap();'),
      timeout: e.files['kernel.c']!.replace('  const kg_act *xa = (const kg_act *)workspace;', '  const kg_act *xa = (const kg_act *)workspace;\n  for (volatile int spin = 1; spin;) {}'),
      compile_error: e.files['kernel.c']!.replace(at, `int broken = ;\n${at}`),
    };
    for (const [status, src] of Object.entries(variants)) {
      expect(src).not.toBe(e.files['kernel.c']);
      const build = await runner.build(e.plan, { ...e.rendered, files: { ...e.rendered.files, 'kernel.c': src } });
      if (status === 'compile_error') {
        expect(build.status).toBe('compile_error');
        continue;
      }
      expect(build.status).toBe('ok');
      if (build.status !== 'ok') continue;
      const run = await runner.execute(build, data.inputs, { timeoutMs: 2000 });
      build.dispose();
      expect(run.status, status).toBe(status);
    }
  });
});

describe('C manifest: what a caller creating threads and a workspace needs', () => {
  // The header stated these (*_STACK_BYTES, "4-byte aligned"); the manifest did not.
  it('states the workspace alignment and each thread\'s stack bytes, as kernel.h does', () => {
    const kernels = [
      emit({ target: 'c', op: 'matmul_q4', shape: 'M=256,N=64,K=256', isa: 'avx512', device: 'epyc-9654', config: { panel: 1 } }),
      emit({ target: 'c', op: 'matmul_q8', shape: 'M=1,N=64,K=256', isa: 'avx2', device: 'epyc-7763' }),
      emit({ target: 'c', op: 'attention_q8kv', shape: 'B=1,Hq=8,Hkv=2,Sq=5,Skv=300,D=64', isa: 'avx2', device: 'epyc-7763' }),
    ];
    for (const k of kernels) {
      const header = k.files['kernel.h']!;
      const stack = Number(/_(?:ROWS|TASK)_STACK_BYTES (\d+)/.exec(header)![1]);
      expect(k.manifest.threadStackBytes, k.plan.op.name).toBe(stack);
      expect(k.manifest.workspaceAlignment).toBe(4);
      expect(header).toContain(`${k.manifest.workspaceAlignment}-byte aligned or better`);
    }
    expect(kernels[0]!.manifest.threadStackBytes).toBeGreaterThan(0);
    expect(kernels[1]!.manifest.threadStackBytes).toBe(0);
    expect(kernels[2]!.manifest.threadStackBytes).toBeGreaterThan(1000);
    // Attention's units of work are tasks, then (with KV splits) the merge's output rows, not "rows".
    const split = emit({ target: 'c', op: 'attention_q8kv', shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=2048,D=64', isa: 'avx2', device: 'epyc-7763' });
    const p = split.plan.params as { tasks: number; splits: number };
    expect(p.splits).toBeGreaterThan(1);
    expect(split.manifest.launch).toEqual({ tasks: p.tasks, mergeRows: 4 });
    expect(kernels[0]!.manifest.launch).toEqual({ rows: 64 });
  });

  // README: a call's only state is its workspace, so calls on several threads at once need one each.
  it.skipIf(skipReason(['gcc', 'nm']) !== undefined)('the kernels keep no writable state of their own (no data or bss symbols), OpenMP driver included', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-c-state-'));
    try {
      const kernels = [
        emit({ target: 'c', op: 'matmul_q4', shape: 'M=1,N=64,K=256', isa: 'avx2', device: 'epyc-7763' }),
        emit({ target: 'c', op: 'matmul_q8_0', shape: 'M=32,N=64,K=256', isa: 'avx512', device: 'epyc-9654' }),
        emit({ target: 'c', op: 'attention_f16', shape: 'B=1,Hq=8,Hkv=2,Sq=1,Skv=512,D=64', isa: 'avx512', device: 'epyc-9654', config: { splits: 4 } }),
        emit({ target: 'c', op: 'attention_q8_0kv', shape: 'B=1,Hq=4,Hkv=2,Sq=64,Skv=64,D=64', isa: 'avx2', device: 'epyc-7763' }),
      ];
      for (const [i, k] of kernels.entries()) {
        const isa = (k.plan.params as { isa: string }).isa;
        writeFileSync(join(dir, 'kernel.h'), k.files['kernel.h']!);
        writeFileSync(join(dir, 'kernel.c'), k.files['kernel.c']!);
        const object = join(dir, `k${i}.o`);
        // -O0: every variable of the source stays a symbol, and it compiles in a fraction of -O3's time.
        execFileSync('gcc', [...C_TOOLCHAINS[isa]!.flags.filter((f) => !f.startsWith('-O')), '-O0', '-fopenmp', '-c', join(dir, 'kernel.c'), '-o', object]);
        const writable = execFileSync('nm', [object], { encoding: 'utf8' }).split('\n').filter((line) => /^\S*\s+[bBdDgGsS]\s/.test(line));
        expect(writable, `${k.plan.op.name} ${isa}`).toEqual([]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('C kernels at shapes past 2^31', () => {
  it('every enum constant fits an int (ISO C; MSVC truncates past it): counts that grow with the shape are int64_t', () => {
    // The block step's records after 2^20 rows of 2^11 prepared blocks; Q as f32 of 2 x 64 heads x 128K
    // positions x 128: 2^31 floats. Fixed devices, so the plans (block step, f32 Q) hold on any host.
    const cases = [
      { op: 'matmul_q4_0', shape: 'M=1048576,N=64,K=65536', wide: /#define KG_STEP_AT \(\(int64_t\)137438953472\)/ },
      { op: 'attention_q8kv', shape: 'B=2,Hq=64,Hkv=8,Sq=131072,Skv=131072,D=128', wide: /#define KG_Q_FLOATS \(\(int64_t\)2147483648\)/ },
    ];
    for (const c of cases) {
      const source = emit({ target: 'c', device: 'epyc-9654', op: c.op, shape: c.shape }).files['kernel.c']!;
      expect(source, c.op).toMatch(c.wide);
      const enums = [...source.matchAll(/\benum(?: : \w+)? \{([^}]*)\}/g)].map((m) => m[1]!).join('\n');
      const values = [...enums.matchAll(/\b(KG_\w+) = (\d+)/g)].map((m) => ({ name: m[1]!, value: Number(m[2]) }));
      expect(values.length, c.op).toBeGreaterThan(10);
      expect(values.filter((v) => v.value > 2 ** 31 - 1), c.op).toEqual([]);
    }
  });
});
