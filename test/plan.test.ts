import { planRequest } from '../src/backends/registry.js';
import { describe, expect, it } from 'vitest';
import { allDevices } from '../src/device/index.js';
import { BudgetError, KgenError } from '../src/errors.js';
import { CATALOG } from '../src/ir/catalog.js';
import { parseShape } from '../src/ir/validate.js';
import { configInUse, configShown, defaultConfig, enumerateConfigs, makePlan, overBudget, type Plan, spaceFor } from '../src/plan/index.js';
import { readConfig, typedSpace } from '../src/plan/common.js';
import { pruneSpace } from '../src/tune/space.js';

const MATMUL_SHAPES = ['M=1,N=4096,K=4096', 'M=3,N=77,K=320', 'M=256,N=4096,K=14336', 'M=16,N=28672,K=8192'];
const ATTENTION_SHAPES = ['B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128', 'B=2,Hq=32,Hkv=8,Sq=512,Skv=512,D=128', 'B=1,Hq=8,Hkv=8,Sq=3,Skv=77,D=64'];

describe('default configs', () => {
  // Every op x device profile x target the device runs: the default exists and is within budget.
  for (const device of allDevices()) {
    for (const target of device.targets) {
      it(`every op has a legal default on ${device.name} (${target})`, () => {
        for (const op of Object.values(CATALOG)) {
          for (const text of op.kind === 'matmul' ? MATMUL_SHAPES : ATTENTION_SHAPES) {
            if (op.kind === 'matmul' && op.weight.format === 'f16' && text.includes('K=320')) continue;
            const shape = parseShape(text, op);
            const { plan, source } = makePlan(planRequest({ op, shape, device, target }));
            expect(source).toBe('default');
            expect(overBudget(plan), `${op.name} ${text}`).toBeUndefined();
            for (const b of plan.budgets) expect(b.needed).toBeLessThanOrEqual(b.available);
            expect(plan.tolerance.nmse).toBeGreaterThan(0);
          }
        }
      });
    }
  }
});

describe('over-budget configs', () => {
  const rtx = allDevices().find((d) => d.name === 'rtx4090')!;
  const op = CATALOG.matmul_q4!;
  const shape = parseShape('M=256,N=4096,K=4096', op);

  it('are refused naming the budget, the bytes needed and the bytes available', () => {
    let err: unknown;
    try {
      makePlan(planRequest({ op, shape, device: rtx, target: 'cuda' }), { kernel: 'tiled', bm: 128, bn: 128, bk: 64, stages: 4 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BudgetError);
    const e = err as BudgetError;
    // 4 stages x (128 x (64 + 8 padding) f32 activations + 128 rows x 64 bytes: one 34-byte q4
    // group as the 16-byte chunks covering it from any alignment, plus a word) = 180224 bytes
    expect(e.needed).toBe(4 * (128 * 72 * 4 + 128 * 64));
    expect(e.available).toBe(101376);
    expect(e.message).toBe(`--config: over budget: shared memory per block (opt-in maximum) (rtx4090) needs ${e.needed} bytes but 101376 are available; choose smaller tiles or omit --config to use the default`);
  });

  it('fit on a device with more shared memory', () => {
    const h100 = allDevices().find((d) => d.name === 'h100-sxm')!;
    const { plan } = makePlan(planRequest({ op, shape, device: h100, target: 'cuda' }), { kernel: 'tiled', bm: 128, bn: 128, bk: 64, stages: 4 });
    expect(plan.budgets[0]!.needed).toBe(180224);
    expect(plan.launch.dynamicShared).toBe(true);
    expect(plan.variant).toBe('tiled_mma');
  });

  it('CUDA grids are checked against gridDim.y and gridDim.z (65535), where a launch would fail', () => {
    const h100 = allDevices().find((d) => d.name === 'h100-sxm')!;
    // Attention's grid is [splits or query tiles, heads, B]: B past 65535 fits no config.
    const attention = CATALOG.attention_f16!;
    let err: unknown;
    try {
      makePlan(planRequest({ op: attention, shape: parseShape('B=70000,Hq=1,Hkv=1,Sq=1,Skv=64,D=32', attention), device: h100, target: 'cuda' }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BudgetError);
    expect((err as BudgetError).field).toBe('--shape');
    expect((err as BudgetError).message).toMatch(/grid blocks along y or z \(CUDA gridDim\.y and gridDim\.z limit\) needs 70000 blocks but 65535 are available/);
    // The hint is that budget's remedy: what to do with the shape, since no config fits it.
    expect((err as BudgetError).hint).toBe('no config of attention_f16 fits h100-sxm at this shape: split the batch, heads or rows (M) across launches, at most 65535 blocks each');
    expect(() => makePlan(planRequest({ op: attention, shape: parseShape('B=1,Hq=70000,Hkv=70000,Sq=128,Skv=128,D=32', attention), device: h100, target: 'cuda' }))).toThrow(/needs 70000 blocks but 65535/);
    // A matmul's tiles along M are grid y: 2^20 rows in tiles of 16 are 65536 of them; the default takes bigger tiles.
    const big = { op, shape: parseShape('M=1048576,N=64,K=64', op), device: h100, target: 'cuda' };
    expect(() => makePlan(planRequest(big), { kernel: 'tiled', bm: 16 })).toThrow(/needs 65536 blocks but 65535 are available/);
    expect(makePlan(planRequest(big)).plan.launch.grid![1]).toBeLessThanOrEqual(65535);
  });

  it('CPU tiles are checked against the L2 share', () => {
    const wasm = allDevices().find((d) => d.name === 'wasm-simd128')!;
    const big = parseShape('M=256,N=4096,K=14336', CATALOG.matmul_f16!);
    expect(() => makePlan(planRequest({ op: CATALOG.matmul_f16!, shape: big, device: wasm, target: 'wasm' }), { nTile: 128 })).toThrow(/L2 cache share per core .* needs \d+ bytes but 262144 are available/);
  });

  it('CPU registers are those the variant can name: AVX2 has 16 on a 32-register AVX-512 CPU', () => {
    const zen4 = allDevices().find((d) => d.name === 'epyc-9654')!;
    const q8 = CATALOG.matmul_q8!;
    const m16 = parseShape('M=16,N=4096,K=4096', q8);
    // 4 x 4 accumulators and 6 work registers: 22, within AVX-512's 32, not AVX2's 16.
    const grid = { rowsPerIter: 4, mTile: 4, panel: 0 };
    const wide = makePlan(planRequest({ op: q8, shape: m16, device: zen4, target: 'c' }), { ...grid, isa: 'avx512' }).plan;
    expect(wide.budgets[0]).toMatchObject({ needed: 22, available: 32 });
    expect(() => makePlan(planRequest({ op: q8, shape: m16, device: zen4, target: 'c' }), { ...grid, isa: 'avx2' })).toThrow(
      /vector registers \(epyc-9654, 16 of its 32 named by the variant\) needs 22 registers but 16 are available/,
    );
    // The default for AVX2 there is the one a 16-register AVX2 CPU gets.
    const zen3 = allDevices().find((d) => d.name === 'epyc-7763')!;
    const avx2 = (device: typeof zen4) => makePlan(planRequest({ op: q8, shape: m16, device, target: 'c' }), { isa: 'avx2' }).plan.config;
    expect(avx2(zen4)).toEqual(avx2(zen3));
  });
});

describe('config validation', () => {
  const host = allDevices()[0]!;
  const op = CATALOG.matmul_q4_0!;
  const shape = parseShape('M=3,N=77,K=320', op);

  it('fills the other knobs from the first legal config agreeing with the given ones', () => {
    const { plan, source } = makePlan(planRequest({ op, shape, device: host, target: 'c' }), { isa: 'scalar' });
    expect(source).toBe('given');
    expect(plan.config.isa).toBe('scalar');
    expect(plan.config.unroll).toBe(1);
  });

  it('names an unknown knob or value', () => {
    expect(() => makePlan(planRequest({ op, shape, device: host, target: 'c' }), { tile: 4 })).toThrow(/config\.tile: unknown knob/);
    expect(() => makePlan(planRequest({ op, shape, device: host, target: 'c' }), { nTile: 7 })).toThrow(/config\.nTile: got 7; expected one of/);
    expect(() => makePlan(planRequest({ op, shape, device: host, target: 'c' }), { isa: 'sse9' })).toThrow(KgenError);
  });

  it('refuses a config its restrictions rule out, with the reason', () => {
    expect(() => makePlan(planRequest({ op, shape, device: host, target: 'c' }), { isa: 'scalar', unroll: 4 })).toThrow(/unroll has no effect on the scalar variant/);
  });

  it('a rule that no config keeps is named as such, not as a budget of 0 bytes', () => {
    const req = planRequest({ op, shape, device: host, target: 'c' as const });
    const space = spaceFor(req);
    const never = { ...space, restrictions: [...space.restrictions, { reason: 'this target takes no such op', allows: () => false }] };
    let error: unknown;
    try {
      defaultConfig(req, never);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KgenError);
    expect(error).not.toBeInstanceOf(BudgetError);
    expect((error as KgenError).field).toBe('--op');
    expect((error as KgenError).problem).toBe(`no config of ${op.name} is legal for ${host.name}: this target takes no such op`);
    // Not a matmul's remedy for every op: attention's rules are about D and the cache's groups.
    expect((error as KgenError).hint).toBe('change the op or the shape as that rule asks, or use another target');
  });

  it('refuses a target the device does not run', () => {
    expect(() => makePlan(planRequest({ op, shape, device: host, target: 'cuda' }))).toThrow(/device host does not run cuda kernels/);
  });

  it('the default is the first legal config of the enumeration', () => {
    const req = planRequest({ op, shape, device: host, target: 'c' as const });
    const space = spaceFor(req);
    const first = [...enumerateConfigs(space)].find((c) => space.restrictions.every((r) => r.allows(c)));
    expect(defaultConfig(req)).toEqual(first);
  });
});

describe('conditional knobs', () => {
  it('a knob of the other kernel is held at its first value, and pinning it still works', () => {
    const rtx = allDevices().find((d) => d.name === 'rtx4090')!;
    const op = CATALOG.matmul_q4!;
    const space = spaceFor(planRequest({ op, shape: parseShape('M=1,N=4096,K=4096', op), device: rtx, target: 'cuda' }));
    const first = Object.fromEntries(space.knobs.map((k) => [k.name, k.values[0]]));
    const configs = [...enumerateConfigs(space)];
    const product = space.knobs.reduce((n, k) => n * k.values.length, 1);
    expect(configs.length).toBeLessThan(product / 100);
    for (const c of configs) {
      const inactive = space.knobs.filter((k) => k.when && !k.when(c)).map((k) => k.name);
      expect(inactive.length).toBeGreaterThan(0);
      for (const name of inactive) expect(c[name]).toBe(first[name]);
    }
    expect(new Set(configs.map((c) => JSON.stringify(c))).size).toBe(configs.length);
    // A pinned tiled knob (math) selects the tiled kernel even where gemv comes first.
    const { plan } = makePlan(planRequest({ op, shape: parseShape('M=1,N=4096,K=4096', op), device: rtx, target: 'cuda' }), { math: 'simt' });
    expect(plan.config.kernel).toBe('tiled');
  });

  it('a config is shown with the knobs in use only, and that shown config plans the same kernel', () => {
    const rtx = allDevices().find((d) => d.name === 'rtx4090')!;
    const op = CATALOG.matmul_q35!;
    for (const text of ['M=1,N=4096,K=4096', 'M=64,N=77,K=320']) {
      const req = planRequest({ op, shape: parseShape(text, op), device: rtx, target: 'cuda' as const });
      const space = spaceFor(req);
      for (const kernel of ['gemv', 'tiled']) {
        if (kernel === 'gemv' && text.startsWith('M=64')) continue;
        const { plan } = makePlan(req, { kernel });
        const shown = configInUse(plan);
        const other = kernel === 'gemv' ? ['math', 'bm', 'bn', 'bk', 'warpsM', 'warpsN'] : ['warps', 'rowsPerWarp', 'kSplit', 'xChunk'];
        for (const k of other) expect(shown, `${text} ${kernel}`).not.toHaveProperty(k);
        expect(Object.keys(shown)).toEqual(space.knobs.map((k) => k.name).filter((k) => !other.includes(k)));
        expect(makePlan(req, shown).plan.config).toEqual(plan.config);
      }
    }
    // C: `panel` matters only where a panel kernel exists (q4 and q4_0 from M=16 on AVX2 and
    // AVX-512, q3.5 on AVX-512), `prefetch` only off the panel path, `stepBlocks` only for
    // blocks of 32 weights (ggml's formats) off the panel path, `rowSums` only with 8 rows of one
    // activation row, `rowSumsBits` only where that kernel runs q3.5 on AVX-512, and `panelBits`
    // only on the panel paths of AVX-512 and AVX-VNNI (epyc-9654 defaults to AVX-512, epyc-7763 to
    // AVX2), `nTile` only where several activation tiles reuse a weight tile (not at M=1).
    for (const [device, name, text, hidden] of [
      ['epyc-9654', 'matmul_q35', 'M=1,N=77,K=320', ['panel', 'panelBits', 'stepBlocks', 'nTile']],
      ['epyc-9654', 'matmul_q35', 'M=3,N=77,K=320', ['panel', 'panelBits', 'stepBlocks', 'rowSums', 'rowSumsBits']],
      ['epyc-9654', 'matmul_q4', 'M=1,N=77,K=320', ['panel', 'panelBits', 'stepBlocks', 'rowSumsBits', 'nTile']],
      ['epyc-9654', 'matmul_q4', 'M=3,N=77,K=320', ['panel', 'panelBits', 'stepBlocks', 'rowSums', 'rowSumsBits']],
      ['epyc-9654', 'matmul_q4', 'M=64,N=77,K=320', ['prefetch', 'stepBlocks', 'rowSums', 'rowSumsBits']],
      ['epyc-9654', 'matmul_q4_0', 'M=1,N=77,K=320', ['panel', 'panelBits', 'rowSums', 'rowSumsBits', 'nTile']],
      ['epyc-9654', 'matmul_q4_0', 'M=64,N=77,K=320', ['prefetch', 'stepBlocks', 'rowSums', 'rowSumsBits']],
      ['epyc-9654', 'matmul_q8_0', 'M=64,N=77,K=320', ['panel', 'panelBits', 'rowSums', 'rowSumsBits']],
      ['epyc-7763', 'matmul_q35', 'M=1,N=77,K=320', ['panel', 'panelBits', 'stepBlocks', 'rowSumsBits', 'nTile']],
      ['epyc-7763', 'matmul_q35', 'M=3,N=77,K=320', ['panel', 'panelBits', 'stepBlocks', 'rowSums', 'rowSumsBits']],
      ['epyc-7763', 'matmul_q4', 'M=64,N=77,K=320', ['panelBits', 'prefetch', 'stepBlocks', 'rowSums', 'rowSumsBits']],
    ] as const) {
      const cop = CATALOG[name]!;
      const req = planRequest({ op: cop, shape: parseShape(text, cop), device: allDevices().find((d) => d.name === device)!, target: 'c' });
      const { plan } = makePlan(req);
      const shown = configInUse(plan);
      expect(Object.keys(shown), `${name} ${text}`).toEqual(Object.keys(plan.config).filter((k) => !(hidden as readonly string[]).includes(k)));
      expect(makePlan(req, shown).plan.config).toEqual(plan.config);
    }
  });

  it('streamChunk exists where the target offers streams (WebAssembly), matters for GEMV alone, and hides nTile there', () => {
    const op = CATALOG.matmul_q4!;
    const wasm = allDevices().find((d) => d.name === 'wasm-simd128')!;
    const gemv = planRequest({ op, shape: parseShape('M=1,N=4096,K=14336', op), device: wasm, target: 'wasm' });
    const { plan } = makePlan(gemv);
    expect(plan.config).toMatchObject({ streamChunk: 256, rowsPerIter: 8 });
    expect(plan.params).toMatchObject({ streamRows: 32 });
    expect(plan.knobsInUse).toContain('streamChunk');
    expect(plan.knobsInUse).not.toContain('nTile');
    // With no weight tile to keep (each row is read once, in streams as in contiguous groups of the
    // one activation row) f16's 8 rows fit, where a tile of 8 rows x 28672 bytes and the f32
    // activations would exceed the 256 KiB L2 share.
    const f16 = CATALOG.matmul_f16!;
    const f16Gemv = planRequest({ op: f16, shape: parseShape('M=1,N=4096,K=14336', f16), device: wasm, target: 'wasm' });
    expect(makePlan(f16Gemv).plan.config.rowsPerIter).toBe(8);
    expect(makePlan(f16Gemv, { streamChunk: 0 }).plan.config.rowsPerIter).toBe(8);
    expect(makePlan(gemv, { streamChunk: 0 }).plan.knobsInUse).not.toContain('nTile');
    expect(makePlan(gemv, { rowsPerIter: 1 }).plan.knobsInUse).not.toContain('streamChunk');
    const gemm = planRequest({ op, shape: parseShape('M=3,N=77,K=320', op), device: wasm, target: 'wasm' });
    expect(makePlan(gemm).plan.knobsInUse).not.toContain('streamChunk');
    expect(makePlan(gemm, { mTile: 2 }).plan.knobsInUse).toContain('nTile');
    // C has prefetch instructions instead: no such knob, and its configs (and their hashes) no such key.
    const host = allDevices().find((d) => d.name === 'epyc-9654')!;
    const c = planRequest({ op, shape: parseShape('M=1,N=4096,K=14336', op), device: host, target: 'c' });
    expect(spaceFor(c).knobs.map((k) => k.name)).not.toContain('streamChunk');
    expect(makePlan(c).plan.config).not.toHaveProperty('streamChunk');
  });

  it('a config is shown without its plan by the space: knobs in use in space order, unknown keys kept', () => {
    const op = CATALOG.matmul_q4!;
    const host = allDevices().find((d) => d.name === 'epyc-9654')!;
    const space = spaceFor(planRequest({ op, shape: parseShape('M=1,N=77,K=320', op), device: host, target: 'c' }));
    const { plan } = makePlan(planRequest({ op, shape: parseShape('M=1,N=77,K=320', op), device: host, target: 'c' }));
    const sorted = Object.fromEntries(Object.entries(plan.config).sort(([a], [b]) => a.localeCompare(b)));
    expect(configShown(space, sorted)).toEqual(configInUse(plan));
    expect(Object.keys(configShown(space, sorted))).toEqual(Object.keys(configInUse(plan)));
    expect(configShown(space, { ...sorted, retired: 3 })).toEqual({ ...configInUse(plan), retired: 3 });
  });

  it('nTile matters only where several activation tiles reuse a weight tile: not for GEMV or M <= mTile', () => {
    const op = CATALOG.matmul_q4!;
    const host = allDevices().find((d) => d.name === 'epyc-9654')!;
    const req = (text: string) => planRequest({ op, shape: parseShape(text, op), device: host, target: 'c' });
    const names = (p: Plan) => p.buffers.map((b) => b.name);
    // One activation row: the rows go in order, each read once; no tile, no tile loops, no knob.
    const gemv = makePlan(req('M=1,N=4096,K=14336')).plan;
    expect(gemv.knobsInUse).not.toContain('nTile');
    expect(names(gemv)).not.toContain('weight tile');
    expect(gemv.loops.join('\n')).not.toMatch(/n0|m0/);
    expect(gemv.loops.join('\n')).toMatch(/for n in \[row_begin, row_end\) step 8 .*the one activation row: each weight row read once/);
    // A recorded nTile still plans (the same kernel), and the tuner's space holds one per config.
    expect(makePlan(req('M=1,N=4096,K=14336'), { nTile: 8 }).plan.config.nTile).toBe(8);
    const legal = pruneSpace(req('M=1,N=77,K=320')).legal;
    const withoutTile = legal.map((c) => JSON.stringify({ ...c.config, nTile: undefined }));
    expect(new Set(withoutTile).size).toBe(legal.length);
    expect(new Set(legal.map((c) => c.config.nTile))).toEqual(new Set([32]));
    // M = mTile: one tile too. M > mTile: the tile is reused by each activation tile.
    const one = makePlan(req('M=4,N=77,K=320'), { mTile: 4, rowsPerIter: 2 }).plan;
    expect(one.knobsInUse).not.toContain('nTile');
    expect(names(one)).not.toContain('weight tile');
    const two = makePlan(req('M=4,N=77,K=320'), { mTile: 2 }).plan;
    expect(two.knobsInUse).toContain('nTile');
    expect(names(two)).toContain('weight tile');
    expect(two.loops.join('\n')).toMatch(/for n0 in \[row_begin, row_end\) step \d+ +\(weight tile in L2\)/);
    // The panel path decodes a tile once for every activation tile: nTile sizes it.
    const panel = makePlan(req('M=64,N=77,K=320'), { panel: 1 }).plan;
    expect(panel.knobsInUse).toContain('nTile');
    expect(names(panel)).toContain('weight panels');
  });
});


// typedSpace checks a space against its family's knob table once, where it is built, so that the
// per-config reads during enumeration need no check: a disagreement must show there.
describe('typed spaces', () => {
  const table = { tile: 'number', kernel: ['rows', 'tiled'], stages: 'number?' } as const;
  const knob = (name: string, values: readonly (number | string)[]) => ({ name, values, doc: name }) as never;
  it('accepts a space that agrees with its table and reads its configs typed', () => {
    const space = typedSpace(table, { knobs: [knob('tile', [4, 8]), knob('kernel', ['rows', 'tiled'])], restrictions: [{ reason: 'tile 8 tiled only', allows: (c) => c.tile !== 8 || c.kernel === 'tiled' }] });
    expect(space.restrictions[0]!.allows({ tile: 8, kernel: 'rows' })).toBe(false);
    expect(readConfig(table, { tile: 4, kernel: 'rows' }).tile).toBe(4);
  });
  it('refuses a knob value of the wrong type, a value outside a choice, and a missing required knob', () => {
    expect(() => typedSpace(table, { knobs: [knob('tile', [4, '8']), knob('kernel', ['rows'])], restrictions: [] })).toThrow(/config\.tile: internal: the planner's knob table reads number, the config holds "8"/);
    expect(() => typedSpace(table, { knobs: [knob('tile', [4]), knob('kernel', ['rows', 'simt'])], restrictions: [] })).toThrow(/config\.kernel/);
    expect(() => typedSpace(table, { knobs: [knob('kernel', ['rows'])], restrictions: [] })).toThrow(/config\.tile: .*holds undefined/);
    expect(() => typedSpace(table, { knobs: [knob('tile', [4]), knob('kernel', ['rows'])], restrictions: [] })).not.toThrow();
  });
});
