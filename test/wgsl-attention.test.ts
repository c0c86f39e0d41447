import { describe, expect, it } from 'vitest';
import { verify } from '../src/api/verify.js';
import { emit } from '../src/api/emit.js';

describe('smoke', () => {
  it('decode f16', async () => {
    const e = emit({ target: 'wgsl', op: 'attention_f16', shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=64', device: 'swiftshader' });
    console.log(e.plan.config, e.plan.launch);
    const r = await verify({ target: 'wgsl', op: 'attention_f16', shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=64', device: 'swiftshader' });
    console.log(r.status, r.detail, r.comparison);
  }, 120000);
});
