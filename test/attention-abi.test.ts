import { describe, expect, it } from 'vitest';
import { emit, type Manifest } from '../src/api/emit.js';
import { ATTENTION_ABI_VERSION, ATTENTION_ARGUMENTS } from '../src/ops/attention.js';

/**
 * One attention op emitted for every target must be called the same way: the tensors in one order
 * (C and CUDA arguments, WebAssembly offsets, WGSL binding numbers), f16 scales typed alike, the
 * same words for scales a cache does not have, and one ABI version a host can check.
 */

const SHAPE = 'B=1,Hq=8,Hkv=2,Sq=1,Skv=256,D=64';
const TARGETS = [
  { target: 'c', device: 'epyc-9654' },
  { target: 'cuda', device: 'rtx4090' },
  { target: 'wgsl', device: 'webgpu' },
  { target: 'wasm', device: 'wasm-simd128' },
] as const;

/** The manifest.json each target emits for `op`, read back from its text. */
function manifests(op: string, shape = SHAPE): Record<string, Manifest> {
  return Object.fromEntries(TARGETS.map(({ target, device }) => [target, JSON.parse(emit({ target, op, shape, device }).files['manifest.json']!) as Manifest]));
}

/** A C or CUDA parameter list `const uint8_t *k, int64_t n` as [name, type] pairs. */
function cParameters(signature: string): [string, string][] {
  const list = /\(([^)]*)\)\s*$/.exec(signature)![1]!;
  return list.split(',').map((p) => {
    const m = /^(.*?)\s*\b(\w+)$/.exec(p.trim())!;
    return [m[2]!, m[1]!];
  });
}

/** The arguments of a target's whole-op call, by name, in call order. */
function callArguments(target: string, m: Manifest): { names: string[]; types?: Record<string, string> } {
  const main = m.abi.find((a) => a.symbol === `kgen_${m.op.name}`)!;
  switch (target) {
    case 'c':
    case 'cuda': {
      const params = cParameters(main.signature);
      return { names: params.map(([n]) => n), types: Object.fromEntries(params) };
    }
    case 'wasm':
      // (q, k, k_scales, v, v_scales, o, workspace: i32) -> ()
      return { names: /^\(([^)]*)\)/.exec(main.signature)![1]!.split(',').map((p) => p.replace(/:.*$/, '').trim()) };
    default:
      // WGSL: the bindings in number order (the loader's run({ ... }) binds them by these names).
      return { names: [...m.bindingInterface!.bindings].sort((a, b) => a.binding - b.binding).map((b) => b.tensor) };
  }
}

describe('attention: one ABI across targets', () => {
  it('every target takes q, k, k_scales, v, v_scales, o in that order, f16 scales as uint16_t, and states one abiVersion', () => {
    const all = manifests('attention_q8kv');
    for (const [target, m] of Object.entries(all)) {
      expect(m.abiVersion, target).toBe(ATTENTION_ABI_VERSION);
      // The manifest lists the tensors in argument order too.
      expect(Object.keys(m.tensors), target).toEqual([...ATTENTION_ARGUMENTS]);
      expect([m.tensors.k_scales!.dtype, m.tensors.v_scales!.dtype], target).toEqual(['f16', 'f16']);
      const { names, types } = callArguments(target, m);
      expect(names.filter((n) => n in m.tensors), target).toEqual([...ATTENTION_ARGUMENTS]);
      // The target's own arguments come after the tensors.
      expect(names.slice(0, ATTENTION_ARGUMENTS.length), target).toEqual([...ATTENTION_ARGUMENTS]);
      if (types) expect([types.k_scales, types.v_scales], target).toEqual(['const uint16_t *', 'const uint16_t *']);
    }
  });

  it('caches without separate scales: every target says the scale arguments are unused and may be NULL, in the same words', () => {
    for (const [op, why] of [['attention_f16', 'an f16 cache has no scales'], ['attention_q4_0kv', 'each ggml q4_0 block holds its own scale']] as const) {
      for (const [target, m] of Object.entries(manifests(op))) {
        expect(m.abiVersion, target).toBe(ATTENTION_ABI_VERSION);
        expect(Object.keys(m.tensors), `${op} ${target}`).toEqual(['q', 'k', 'v', 'o']);
        expect(m.abi.map((a) => a.doc).join('\n'), `${op} ${target}`).toContain(`k_scales, v_scales: unused, may be NULL (${why})`);
        const { names, types } = callArguments(target, m);
        // WGSL binds no buffer for them; the others keep their places in the call.
        expect(names.slice(0, target === 'wgsl' ? 4 : 6), `${op} ${target}`).toEqual(target === 'wgsl' ? ['q', 'k', 'v', 'o'] : [...ATTENTION_ARGUMENTS]);
        if (types) expect(types.k_scales, `${op} ${target}`).toBe('const uint16_t *');
      }
    }
  });

  it('matmul manifests carry no attention ABI version', () => {
    expect(emit({ target: 'c', op: 'matmul_q4_0', shape: 'M=1,N=64,K=64', device: 'epyc-9654' }).manifest.abiVersion).toBeUndefined();
  });
});
