import { importRunResult, planRequest } from '../src/backends/registry.js';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { kernelDataFiles } from '../src/api/kit.js';
import { nvccVersion } from '../src/backends/cuda/gpu-runner.js';
import { cudaShimRunner } from '../src/backends/cuda/runner.js';
import { importedRunExchange } from '../src/db/run-result.js';
import { openTuningDb } from '../src/db/sqlite.js';
import { parseNvidiaSmiGpus } from '../src/device/gpu.js';
import { getDevice } from '../src/device/index.js';
import { KgenError } from '../src/errors.js';
import { fingerprintFor } from '../src/tune/fingerprint.js';
import { pruneSpace } from '../src/tune/space.js';
import { skipReason } from './helpers.js';

const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
const tmp = () => mkdtempSync(join(tmpdir(), 'kgen-run-import-'));
const H100 = { name: 'NVIDIA H100 80GB HBM3', computeCapability: '9.0', multiprocessors: 132, driverVersion: 12040, runtimeVersion: 13000, driver: '550.54.15' };
const noGpp = skipReason(['g++']);

/** What `kgen db import` does with a run.sh result: the CUDA target reads it, the database keys it. */
function runResultToExchange(data: unknown) {
  const run = importRunResult(data);
  if (!run) throw new Error('not a run-kit result');
  return importedRunExchange(run);
}

/**
 * What run.sh writes on a GPU box, made here: the emitted kgen_run.cu built against the CPU shim
 * (the same source nvcc builds there), run on `kgen emit --data` files with --json. Its `gpu` is
 * the shim's; tests put a GPU in where they need one.
 */
async function shimRunResult(): Promise<Record<string, unknown>> {
  const e = emit({ target: 'cuda', op: 'matmul_q4', shape: 'M=1,N=77,K=320', device: 'h100-sxm' });
  const build = await cudaShimRunner().build(e.plan, e.rendered);
  if (build.status !== 'ok') throw new Error(build.detail);
  const dir = tmp();
  for (const [name, bytes] of Object.entries(kernelDataFiles(e.plan, 1))) writeFileSync(join(dir, name), bytes);
  const out = join(dir, 'result.json');
  const r = await execa(join(build.dir, 'kgen_run'), [dir, '--warmup', '1', '--runs', '3', '--json', out, '--driver-version', '550.54.15', '--arch', 'sm_90'], { reject: false, all: true });
  build.dispose();
  expect(r.exitCode, r.all).toBe(0);
  return JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
}

describe.skipIf(noGpp !== undefined)('results of run.sh come back through kgen db import', () => {
  it('kgen_run writes a result import takes: one workload with the GPU fingerprint, one trial, idempotent', async () => {
    const shim = await shimRunResult();
    expect(shim).toMatchObject({ format: 'kgen-cuda-run', version: 1, status: 'ok', checked: true, nvcc: 'none', buildArch: 'sm_90', gpu: { driver: '550.54.15' } });
    expect(importRunResult({ format: 'kgen-tuning' })).toBeUndefined();
    // As measured on the shim it is refused: its "GPU" is not the kernel's device.
    expect(() => runResultToExchange(shim)).toThrow(/^import\.gpu: the run was on kgen CUDA CPU shim .* emitted for h100-sxm/);

    const onGpu = { ...shim, gpu: H100, nvcc: await nvccVersion() };
    const ex = runResultToExchange(onGpu);
    expect(ex.workloads).toHaveLength(1);
    const w = ex.workloads[0]!;
    expect(w).toMatchObject({ device: 'h100-sxm', target: 'cuda', shape: { M: 1, N: 77, K: 320 }, weightFormat: 'q4' });
    expect(w.trials).toHaveLength(1);
    expect(w.trials[0]).toMatchObject({ status: 'ok', strategy: 'run.sh', timing: { runs: 3 }, config: (shim.kernel as { config: object }).config });
    // Of a caller's own profile (h100-sxm's figures under another name): its name resolves only through the profiles passed.
    const ofMine = { ...onGpu, kernel: { ...(shim.kernel as object), device: 'qa-h100' } };
    expect(() => importRunResult(ofMine)).toThrow(/^import\.kernel\.device: unknown device "qa-h100"/);
    expect(importedRunExchange(importRunResult(ofMine, { profiles: [{ ...getDevice('h100-sxm'), name: 'qa-h100' }] })!).workloads[0]!.device).toBe('qa-h100');
    // The same fingerprint `kgen tune --device h100-sxm` gives on that GPU with this nvcc: the records compare.
    const e = emit({ target: 'cuda', op: 'matmul_q4', shape: 'M=1,N=77,K=320', device: 'h100-sxm' });
    const space = pruneSpace(planRequest({ op: e.plan.op, shape: e.plan.shape, device: getDevice('h100-sxm'), target: 'cuda' })).space;
    const detection = { status: 'found' as const, gpus: parseNvidiaSmiGpus('NVIDIA H100 80GB HBM3, 9.0, 550.54.15, 81559 MiB'), how: 'test' };
    expect(w.fingerprint).toEqual(await fingerprintFor(getDevice('h100-sxm'), 'cuda', space, detection));

    const dir = tmp();
    const file = join(dir, 'result.json');
    writeFileSync(file, JSON.stringify(onGpu));
    const env = { ...process.env, KGEN_DB: join(dir, 'gpu.db') };
    const first = await execa(KGEN, ['db', 'import', file], { reject: false, env });
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/1 new workloads, 1 new trials, 0 already present/);
    const again = await execa(KGEN, ['db', 'import', file], { reject: false, env });
    expect(again.stdout).toMatch(/0 new workloads, 0 new trials, 1 already present/);
    const db = openTuningDb(env.KGEN_DB);
    const [row] = db.workloads();
    expect(row).toMatchObject({ device: 'h100-sxm', trials: 1, byStatus: { ok: 1 } });
    expect(db.best(row!.id)?.runner).toBe('run.sh on NVIDIA H100 80GB HBM3 (nvcc + CUDA runtime)');
    db.close();
    // emit then takes the imported config as the record for this device, op and shape.
    const emitted = await execa(KGEN, ['emit', '--target', 'cuda', '--device', 'h100-sxm', '--op', 'matmul_q4', '--shape', 'M=1,N=77,K=320', '--json', '--no-ptxas'], { reject: false, env });
    expect(emitted.exitCode, emitted.stderr).toBe(0);
    expect(JSON.parse(emitted.stdout).manifest.configSource).toBe('record');
  });

  it('refuses, naming the field, results that prove nothing or belong to another device', async () => {
    const shim = await shimRunResult();
    const base: Record<string, unknown> = { ...shim, gpu: H100, nvcc: '13.0.88' };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...base, checked: false, comparison: undefined }, /^import\.checked: false: the output was never compared with ref\.bin/],
      [{ ...base, timing: undefined }, /^import\.timing: missing on an ok run/],
      [{ ...base, gpu: null, status: 'compile_error', error: 'nvcc failed' }, /^import\.gpu: null: the run never reached a GPU \(compile_error: nvcc failed\)/],
      [{ ...base, gpu: { ...H100, name: 'NVIDIA GeForce RTX 4090', computeCapability: '8.9' } }, /^import\.gpu: the run was on NVIDIA GeForce RTX 4090/],
      [{ ...base, buildArch: 'sm_80' }, /^import\.buildArch: run\.sh built for sm_80/],
      [{ ...base, status: 'fast' }, /^import\.status: got "fast"/],
      // run.sh never writes it: only kgen's runners decide that a machine cannot run a kernel.
      [{ ...base, status: 'unsupported', timing: undefined }, /^import\.status: got "unsupported"; expected ok \| compile_error \| crash \| timeout \| wrong_result\b/],
      [{ ...base, kernel: { ...(base.kernel as object), irHash: '0000000000000000' } }, /^import\.kernel\.irHash/],
      [{ ...base, kernel: { ...(base.kernel as object), device: 'rtx4090' } }, /^import\.kernel\.arch: sm_90 is not rtx4090's sm_89/],
      [{ ...base, kernel: { ...(base.kernel as object), config: { kernel: 'warp-specialized' } } }, /^import\.kernel\.config: /],
    ];
    for (const [data, message] of cases) {
      expect(() => runResultToExchange(data), message.source).toThrow(KgenError);
      expect(() => runResultToExchange(data)).toThrow(message);
    }
    // A failure that reached the GPU is data: recorded as its status, without times.
    const crashed = runResultToExchange({ ...base, status: 'crash', checked: false, comparison: undefined, timing: undefined, error: 'the kernel: an illegal memory access was encountered' });
    expect(crashed.workloads[0]!.trials[0]).toMatchObject({ status: 'crash', error: expect.stringContaining('illegal memory access') });
    expect(crashed.workloads[0]!.trials[0]!.timing).toBeUndefined();
  });
});
