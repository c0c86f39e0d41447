import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { emit } from '../src/api/emit.js';
import { buildPackage } from '../src/api/package.js';
import { verify } from '../src/api/verify.js';
import { cannotRunReason } from '../src/backends/c/runner.js';
import { targetFor, targetNames } from '../src/backends/registry.js';
import { KgenError } from '../src/errors.js';
import { opHash } from '../src/ir/validate.js';
import { attentionIr } from '../src/ir/attention.js';
import { checkedKvLengths } from '../src/ops/attention.js';
import { cToolsSkipReason, expectMatchesReference, skipReason } from './helpers.js';
import { expectPoisonNeverRead } from './kvlen-helpers.js';

/**
 * Attention with a run-time KV length (op.kvLength 'runtime') on the C target: Skv is the cache's
 * capacity, each call reads the first kv_len positions of each head's. verify checks a kernel at
 * three lengths (`checkedKvLengths`: the capacity, a ragged one, the shortest), each against the
 * f64 reference at that length, under the plan's tolerance. The poison test fills every position
 * past the length with 0xff bytes (NaN f16 values and NaN scales): a kernel that loads them, even
 * to multiply by a zero weight, puts NaN in the output.
 */
const native = ['avx512', 'avx2'].find((isa) => cannotRunReason(isa) === undefined) ?? 'scalar';
const DEVICES: Record<string, string> = { scalar: 'epyc-7763', avx2: 'epyc-7763', avx512: 'epyc-9654', neon: 'apple-m2' };
const FORMATS = ['f16', 'q8', 'q8_0', 'q4_0'] as const;

const ir = (format: string, causal: boolean, extra: object = {}) => ({ kind: 'attention', name: `rt_${format}_${causal ? 'c' : 'n'}`, q: 'f16', o: 'f32', kvCache: format, causal, kvLength: 'runtime', ...extra });

describe('attention with a run-time KV length: the IR and the targets that take it', () => {
  it('"kvLength": "runtime" validates; "fixed" is the default and leaves the op (and its IR hash) as without it; anything else is refused by field', () => {
    const base = { kind: 'attention', name: 'a', q: 'f16', kvCache: 'q8', o: 'f16', causal: true };
    const fixed = attentionIr.validate({ ...base, kvLength: 'fixed' }, 'op');
    expect(fixed.kvLength).toBeUndefined();
    expect(opHash(fixed)).toBe(opHash(attentionIr.validate(base, 'op')));
    expect(attentionIr.validate({ ...base, kvLength: 'runtime' }, 'op').kvLength).toBe('runtime');
    expect(() => attentionIr.validate({ ...base, kvLength: 'grow' }, 'op')).toThrow(/op\.kvLength[\s\S]*one of fixed, runtime/);
  });

  it('the lengths checked: the capacity first (what is timed), a ragged one, the shortest (causal: Sq)', () => {
    const op = attentionIr.validate(ir('q8', true), 'op');
    expect(checkedKvLengths(op, { B: 1, Hq: 8, Hkv: 2, Sq: 5, Skv: 300, D: 64 })).toEqual([300, 188, 5]);
    expect(checkedKvLengths({ ...op, causal: false }, { B: 1, Hq: 8, Hkv: 2, Sq: 1, Skv: 1000, D: 64 })).toEqual([1000, 626, 1]);
    expect(checkedKvLengths({ ...op, kvLength: undefined }, { B: 1, Hq: 8, Hkv: 2, Sq: 5, Skv: 300, D: 64 })).toEqual([300]);
  });

  it('every target takes it and states the range in its manifest; a backend without the capability refuses the op by its field, naming the targets that take it', () => {
    const shape = 'B=1,Hq=8,Hkv=2,Sq=1,Skv=256,D=64';
    // A named device for C (its default, host, follows the machine: scripts/test-hosts.sh runs this file once).
    for (const target of targetNames()) expect(emit({ target, ir: ir('q8', true), shape, ...(target === 'c' ? { device: 'epyc-9654' } : {}) }).manifest.kvLength, target).toEqual({ min: 1, max: 256 });
    // The refusal, for a backend that declares no run-time length (a target added later): WGSL's with it off.
    const caps = targetFor('wgsl').backend!.capabilities as { runtimeKvLength?: boolean };
    caps.runtimeKvLength = false;
    let err: unknown;
    try {
      emit({ target: 'wgsl', ir: ir('q8', true), shape });
    } catch (e) {
      err = e;
    } finally {
      caps.runtimeKvLength = true;
    }
    expect(err).toBeInstanceOf(KgenError);
    const k = err as KgenError;
    expect(k.field).toBe('--ir kvLength');
    expect(k.message).toMatch(/take no run-time KV length yet/);
    expect(k.message).toMatch(/--target c or cuda or wasm/);
    expect(emit({ target: 'wgsl', ir: ir('q8', true), shape }).manifest.kvLength).toEqual({ min: 1, max: 256 });
  });

  it('the C header and ABI: _tasks and the whole op take kv_len and return int; the range is stated', () => {
    const { rendered, manifest } = emit({ target: 'c', ir: ir('q8_0', true), shape: 'B=1,Hq=8,Hkv=2,Sq=5,Skv=300,D=64', isa: 'scalar', device: 'epyc-7763' });
    const h = rendered.files['kernel.h']!;
    expect(h).toMatch(/#define KGEN_RT_Q8_0_C_KV_LEN_MIN 5\n/);
    expect(h).toMatch(/int kgen_rt_q8_0_c_tasks\([^)]*int64_t task_end, int64_t kv_len\);/);
    expect(h).toMatch(/int kgen_rt_q8_0_c\([^)]*void \*workspace, int64_t kv_len\);/);
    const abi = manifest.abi as { symbol: string; signature: string; doc: string }[];
    const whole = abi.find((e) => e.symbol === 'kgen_rt_q8_0_c')!;
    expect(whole.signature).toMatch(/^int kgen_rt_q8_0_c\(.*int64_t kv_len\)$/);
    expect(whole.doc).toMatch(/5\.\.300/);
    expect(manifest.kvLength).toEqual({ min: 5, max: 300 });
    // A fixed-length kernel of the same op keeps its void entry points and no kv_len.
    const fixed = emit({ target: 'c', ir: { ...ir('q8_0', true), kvLength: 'fixed' }, shape: 'B=1,Hq=8,Hkv=2,Sq=5,Skv=300,D=64', isa: 'scalar', device: 'epyc-7763' });
    expect(fixed.rendered.files['kernel.h']).not.toMatch(/kv_len|KV_LEN_MIN/);
    expect(fixed.rendered.files['kernel.c']).not.toMatch(/kv_len/);
  });
});

for (const isa of [native, 'scalar', 'neon']) {
  const missing = cToolsSkipReason(isa);
  const runnable = cannotRunReason(isa) === undefined;
  describe.skipIf(missing !== undefined)(`C attention ${isa} with a run-time KV length: three lengths each against the reference`, { concurrent: true }, () => {
    for (const format of FORMATS) {
      it(`${format} KV: decode in splits, all heads in a task, causal decode of 5 queries, prefill; causal and not; both row orders${runnable ? '' : ' (compile only)'}`, async () => {
        const cases: [string, boolean, object, Record<string, number>][] = [
          ['B=1,Hq=8,Hkv=2,Sq=1,Skv=1000,D=64', true, {}, { splits: 4 }],
          ['B=2,Hq=10,Hkv=2,Sq=1,Skv=1001,D=128', false, { kvLayout: 'positions_heads' }, { splits: 8 }],
          ['B=1,Hq=12,Hkv=4,Sq=5,Skv=333,D=64', true, { kvLayout: 'positions_heads' }, { allHeads: 1, splits: 2 }],
          ['B=1,Hq=5,Hkv=1,Sq=64,Skv=331,D=64', true, {}, {}],
          ['B=1,Hq=4,Hkv=4,Sq=5,Skv=130,D=64', false, {}, {}],
        ];
        for (const [shape, causal, extra, config] of cases) {
          const label = `${isa} ${format} ${shape} causal ${causal} ${JSON.stringify(extra)} ${JSON.stringify(config)}`;
          const r = await verify({ target: 'c', ir: ir(format, causal, extra), shape, isa, device: DEVICES[isa], config, werror: true });
          expectMatchesReference(r, label, runnable);
          expect((r.plan.params as { runtimeKvLength: boolean }).runtimeKvLength, label).toBe(true);
        }
      });
    }
  });
}

describe.skipIf(skipReason(['gcc']) !== undefined)('C attention with a run-time KV length: what lies past kv_len', () => {
  it('positions past kv_len full of NaN bytes (values and scales) never reach the output; every format, splits, both row orders', async () => {
    const cases: [string, string, object, Record<string, number>, number][] = [
      ['f16', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=600,D=64', {}, { splits: 4 }, 77],
      ['q8', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=600,D=128', {}, { splits: 2 }, 301],
      ['q8', 'B=1,Hq=8,Hkv=2,Sq=1,Skv=600,D=128', {}, { splits: 2, qInt8: 0 }, 50],
      ['q8_0', 'B=1,Hq=8,Hkv=2,Sq=5,Skv=400,D=64', { kvLayout: 'positions_heads' }, { splits: 4 }, 13],
      ['q4_0', 'B=2,Hq=4,Hkv=2,Sq=1,Skv=500,D=64', {}, { splits: 4 }, 129],
    ];
    for (const [format, shapeText, extra, config, length] of cases) {
      const label = `${format} ${shapeText} ${JSON.stringify(extra)} ${JSON.stringify(config)} kv_len ${length}`;
      const { plan, rendered } = emit({ target: 'c', ir: ir(format, true, extra), shape: shapeText, isa: native, device: DEVICES[native], config });
      await expectPoisonNeverRead(plan, rendered, length, label, { seed: 3, build: { werror: true } });
    }
  });

  it('a package kernel called through its usage snippet: lengths outside [min, Skv] return -1 and write nothing, a length inside returns 0', async () => {
    const pkg = await buildPackage({
      command: 'test',
      kernels: [{ target: 'c', ir: ir('q8', true, { o: 'f16' }), shape: 'B=1,Hq=8,Hkv=2,Sq=3,Skv=64,D=64', device: 'epyc-7763', isa: 'scalar' }],
    });
    const readme = pkg.files['README.md'] as string;
    const usage = /```c\n([\s\S]*?)```/.exec(readme)![1]!;
    expect(usage).toMatch(/int64_t kv_len\)/);
    const fn = usage.match(/int (run_\w+)\(/)![1]!;
    const dir = mkdtempSync(join(tmpdir(), 'kgen-kvlen-pkg-'));
    try {
      for (const [name, text] of Object.entries(pkg.files)) {
        mkdirSync(dirname(join(dir, name)), { recursive: true });
        writeFileSync(join(dir, name), text);
      }
      // Zero codes and scales: every score 0, every output 0 (the sentinel 0x7777 is overwritten).
      writeFileSync(join(dir, 'use.c'), `${usage}
#include <stdio.h>
#include <string.h>
int main(void) {
  static uint16_t q[8 * 3 * 64], o[8 * 3 * 64], scales[64 * 2 * 2];
  static uint8_t k[64 * 2 * 64], v[64 * 2 * 64];
  const int64_t lengths[] = {0, 2, 65, -1, 3, 64, 40};
  for (int i = 0; i < 7; i++) {
    for (int j = 0; j < 8 * 3 * 64; j++) o[j] = 0x7777;
    const int status = ${fn}(q, k, scales, v, scales, o, lengths[i]);
    int untouched = 1;
    for (int j = 0; j < 8 * 3 * 64; j++) untouched &= o[j] == 0x7777;
    printf("%lld %d %d\\n", (long long)lengths[i], status, untouched);
  }
  return 0;
}
`);
      const objs: string[] = [];
      for (const k of pkg.index.kernels) {
        objs.push(join(dir, `${k.dir}.o`));
        execFileSync('gcc', ['-O1', '-std=c11', '-Wall', '-Werror', '-c', join(dir, k.dir, 'kernel.c'), '-o', objs.at(-1)!]);
      }
      execFileSync('gcc', ['-Wall', '-Wextra', '-Werror', '-I', dir, join(dir, 'use.c'), ...objs, '-lm', '-o', join(dir, 'use')]);
      const out = spawnSync(join(dir, 'use'), { encoding: 'utf8' });
      expect(out.status).toBe(0);
      expect(out.stdout.trim().split('\n')).toEqual(['0 -1 1', '2 -1 1', '65 -1 1', '-1 -1 1', '3 0 0', '64 0 0', '40 0 0']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
