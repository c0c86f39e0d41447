import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { GPU, PROFILE } from './gpu-helpers.js';

const KGEN = join(import.meta.dirname, '..', '..', 'bin', 'kgen');
const tmp = () => mkdtempSync(join(tmpdir(), 'kgen-gpu-tools-'));
const device = PROFILE.device.name;

describe(`kgen on ${GPU.name} (profile ${device})`, () => {
  it('verify --target cuda runs on the GPU and says so', async () => {
    const r = await execa(KGEN, ['verify', '--target', 'cuda', '--device', device, '--op', 'matmul_q35', '--shape', 'M=3,N=77,K=320'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^ok: .*ran gpu ${GPU.name.replace(/[()]/g, '.')}`));
  });

  it('emit -o --data, then sh run.sh (no Node), then kgen db import of its result.json', async () => {
    const dir = tmp();
    const out = join(dir, 'k');
    const e = await execa(KGEN, ['emit', '--target', 'cuda', '--device', device, '--op', 'matmul_q4', '--shape', 'M=1,N=4096,K=4096', '-o', out, '--data'], { reject: false });
    expect(e.exitCode, e.stderr).toBe(0);
    const run = await execa('sh', [join(out, 'run.sh')], { reject: false, all: true, env: { ...process.env, RUNS: '20', WARMUP: '5' } });
    expect(run.exitCode, run.all).toBe(0);
    const result = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
    expect(result).toMatchObject({ format: 'kgen-cuda-run', status: 'ok', checked: true, gpu: { name: GPU.name, driver: GPU.driverVersion } });
    expect(result.timing.runs).toBe(20);
    const imp = await execa(KGEN, ['db', 'import', join(out, 'result.json')], { reject: false, env: { ...process.env, KGEN_DB: join(dir, 'run.db') } });
    if (PROFILE.exact) {
      expect(imp.exitCode, imp.stderr).toBe(0);
      expect(imp.stdout).toMatch(/1 new workloads, 1 new trials/);
    } else {
      // Measured on a GPU the profile does not describe: refused rather than filed under it.
      expect(imp.exitCode).toBe(2);
      expect(imp.stderr).toMatch(/import\.gpu: the run was on /);
    }
  });

  it.skipIf(!PROFILE.exact)('tune --device <this GPU\'s profile> records ok trials with real times', async () => {
    const dir = tmp();
    const env = { ...process.env, KGEN_DB: join(dir, 'tune.db'), XDG_CACHE_HOME: join(dir, 'cache') };
    const t = await execa(KGEN, ['tune', '--device', device, '--op', 'matmul_q4', '--shape', 'M=1,N=4096,K=14336', '--trials', '6', '--json'], { reject: false, env });
    expect(t.exitCode, t.stderr).toBe(0);
    const list = await execa(KGEN, ['db', 'list', '--json'], { env });
    const [w] = JSON.parse(list.stdout);
    expect(w).toMatchObject({ device, target: 'cuda', fingerprint: { gpu: GPU.name, driver: GPU.driverVersion } });
    expect(w.byStatus.ok).toBeGreaterThan(0);
    expect(w.best.ms).toBeGreaterThan(0);
  });
});
