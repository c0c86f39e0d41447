import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { opKit } from '../src/ops/index.js';
import { verify } from '../src/api/verify.js';
import { cudaGpuRunner, cudaHarness, cudaRunKitGpuRunner, cudaRunnerFor, DRIVER_HARNESS_EXIT, HARNESS_FLAGS, moduleFlags } from '../src/backends/cuda/gpu-runner.js';
import type { GpuDetection, GpuInfo } from '../src/device/gpu.js';
import { canRunArch, matchGpuProfile, nvidiaProfileForGpu, parseNvidiaSmiGpus } from '../src/device/gpu.js';
import { detectPresence, getDevice, loadProfiles } from '../src/device/index.js';
import { KgenError } from '../src/errors.js';
import type { MatmulOp, MatmulShape } from '../src/ir/types.js';
import { skipReason } from './helpers.js';

const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
const tmp = () => mkdtempSync(join(tmpdir(), 'kgen-gpu-runner-'));
const SMI_H100 = 'NVIDIA H100 80GB HBM3, 9.0, 550.54.15, 81559 MiB\n';
const H100: GpuInfo = parseNvidiaSmiGpus(SMI_H100)[0]!;
const found = (csv: string): GpuDetection => ({ status: 'found', gpus: parseNvidiaSmiGpus(csv), how: 'test' });
const NONE: GpuDetection = { status: 'none', gpus: [], how: 'no NVIDIA GPU (nvidia-smi not found)' };

describe('GPU detection and matching (no GPU needed)', () => {
  it('parses nvidia-smi CSV, with and without compute capability', () => {
    const two = parseNvidiaSmiGpus(`${SMI_H100}NVIDIA GeForce RTX 4090, 8.9, 550.54.15, 24564 MiB\n\ngarbage\n`);
    expect(two).toEqual([
      { index: 0, name: 'NVIDIA H100 80GB HBM3', computeCapability: '9.0', arch: 'sm_90', driverVersion: '550.54.15', memoryMiB: 81559 },
      { index: 1, name: 'NVIDIA GeForce RTX 4090', computeCapability: '8.9', arch: 'sm_89', driverVersion: '550.54.15', memoryMiB: 24564 },
    ]);
    expect(parseNvidiaSmiGpus('Tesla T4, 470.82.01, 15109 MiB', { withComputeCap: false })[0]).toMatchObject({ name: 'Tesla T4', arch: undefined, driverVersion: '470.82.01' });
    expect(parseNvidiaSmiGpus('NVIDIA A100-SXM4-80GB, [N/A], 535.1, [N/A]')[0]).toMatchObject({ arch: undefined, memoryMiB: undefined });
  });

  it('a profile matches by name and compute capability; PTX runs on later archs only', () => {
    expect(matchGpuProfile(getDevice('h100-sxm'), H100).matches).toBe(true);
    expect(matchGpuProfile(getDevice('rtx4090'), H100)).toMatchObject({ matches: false, why: expect.stringContaining('contains none of "RTX 4090"') });
    const odd = { ...H100, arch: 'sm_80', computeCapability: '8.0' };
    expect(matchGpuProfile(getDevice('h100-sxm'), odd)).toMatchObject({ matches: false, why: expect.stringContaining('is sm_80, the profile is sm_90') });
    expect(matchGpuProfile(getDevice('host'), H100).matches).toBe(false);
    expect(canRunArch(H100, 'sm_89')).toBe(true);
    expect(canRunArch(H100, 'sm_90')).toBe(true);
    expect(canRunArch({ ...H100, arch: 'sm_75' }, 'sm_80')).toBe(false);
  });

  it('the profile the GPU suite and bench plan for: its own, else the newest arch it runs through PTX', () => {
    const pick = (gpu: GpuInfo) => {
      const { device, exact } = nvidiaProfileForGpu(loadProfiles(), gpu);
      return { name: device.name, arch: device.gpu?.arch, exact };
    };
    expect(pick(H100)).toEqual({ name: 'h100-sxm', arch: 'sm_90', exact: true });
    expect(pick({ ...H100, name: 'NVIDIA GeForce RTX 5090', arch: 'sm_120', computeCapability: '12.0' })).toMatchObject({ arch: 'sm_90', exact: false });
    expect(pick({ ...H100, name: 'NVIDIA A10', arch: 'sm_86', computeCapability: '8.6' })).toMatchObject({ arch: 'sm_80', exact: false });
    // The machine's GPU, not a kgen bug: a one-line usage error saying what would run.
    const v100 = { ...H100, name: 'Tesla V100-SXM2-16GB', arch: 'sm_70', computeCapability: '7.0' };
    const thrown = (() => { try { pick(v100); } catch (e) { return e; } })();
    expect(thrown).toBeInstanceOf(KgenError);
    expect((thrown as KgenError).message).toMatch(/^GPU: no kgen profile's arch runs on Tesla V100-SXM2-16GB \(sm_70, .*\); expected a GPU of sm_75 or later \(the oldest NVIDIA profile's arch\); run on a newer GPU/);
  });

  it('presence says which GPU was found, or what is here instead', () => {
    expect(detectPresence(getDevice('h100-sxm'), found(SMI_H100))).toEqual({ present: true, how: 'nvidia-smi: NVIDIA H100 80GB HBM3 (sm_90, driver 550.54.15, 80 GiB)' });
    expect(detectPresence(getDevice('rtx4090'), found(SMI_H100)).how).toBe('GPUs here: NVIDIA H100 80GB HBM3 (sm_90, driver 550.54.15, 80 GiB)');
    expect(detectPresence(getDevice('rtx4090'), NONE)).toEqual({ present: false, how: 'no NVIDIA GPU (nvidia-smi not found)' });
  });

  it('the CUDA runner: the profile GPU (real times), another capable GPU (through PTX), else the shim', () => {
    const planFor = (device: string) => emit({ target: 'cuda', op: 'matmul_q4', shape: 'M=1,N=64,K=256', device }).plan;
    const exact = cudaRunnerFor(planFor('h100-sxm'), { detection: found(SMI_H100) });
    expect(exact.name).toMatch(/^gpu NVIDIA H100 80GB HBM3 \(sm_90/);
    expect(exact.timesAreReal).toBe(true);
    const other = cudaRunnerFor(planFor('rtx4090'), { detection: found(SMI_H100) });
    expect(other.name).toMatch(/^gpu NVIDIA H100/);
    expect(other.timesAreReal).toBe(false);
    expect(other.cannotExecute(planFor('rtx4090'))).toBeUndefined();
    expect(moduleFlags('sm_89', H100)).toEqual({ file: 'kernel.fatbin', flags: ['-fatbin', '-gencode=arch=compute_89,code=[sm_89,compute_89]'] });
    expect(moduleFlags('sm_90', H100).flags).toEqual(['-cubin', '-arch=sm_90']);
    const none = cudaRunnerFor(planFor('rtx4090'), { detection: NONE });
    expect(none.name).toMatch(/^cuda-cpu-shim/);
    expect(none.timesAreReal).toBe(false);
    const old = cudaRunnerFor(planFor('rtx4090'), { detection: found('Tesla T4, 7.5, 535.1, 15360 MiB') });
    expect(old.name).toMatch(/^cuda-cpu-shim .*the GPU here, Tesla T4 \(sm_75.*cannot run sm_89 code/);
  });
});

const noNvcc = skipReason(['nvcc']);
const noNvccGcc = skipReason(['nvcc', 'gcc']);

/** nvcc's include directory, where cuda.h lives (nvcc may be a wrapper script, so ask it). */
async function cudaInclude(): Promise<string> {
  const r = await execa('nvcc', ['-v', '-E', '-x', 'cu', '-o', '/dev/null', '/dev/null'], { reject: false, all: true });
  const top = /#\$ TOP=(\S+)/.exec(r.all ?? '')?.[1];
  const candidates = [top && join(top, 'include'), join(dirname(dirname((await execa('sh', ['-c', 'command -v nvcc'])).stdout.trim())), 'include'), '/usr/local/cuda/include'];
  const dir = candidates.find((c): c is string => !!c && existsSync(join(c, 'cuda.h')));
  if (!dir) throw new Error(`cuda.h not found (tried ${candidates.join(', ')})`);
  return dir;
}

/** The stand-in driver (test/fixtures/fake-libcuda.c) as DIR/libcuda.so.1. */
async function fakeDriver(): Promise<string> {
  const dir = tmp();
  await execa('gcc', ['-shared', '-fPIC', '-Wall', '-Wextra', '-Werror', '-I', await cudaInclude(), '-o', join(dir, 'libcuda.so.1'), join(import.meta.dirname, 'fixtures', 'fake-libcuda.c')]);
  return dir;
}

describe.skipIf(noNvcc !== undefined)('the GPU harness builds here (nvcc, no GPU or driver needed)', () => {
  it('compiles once with nvcc -ldl, warning-free, and explains a missing driver', async () => {
    const cacheDir = tmp();
    const bin = await cudaHarness({ cacheDir });
    expect(existsSync(bin)).toBe(true);
    expect(await cudaHarness({ cacheDir })).toBe(bin);
    const strict = await execa('nvcc', [...HARNESS_FLAGS, '-Xcompiler', '-Wall,-Wextra', '-Werror', 'all-warnings', '-o', join(cacheDir, 'strict'), join(import.meta.dirname, '..', 'templates', 'cuda', 'driver_harness.cu'), '-ldl'], { reject: false, all: true });
    expect(strict.exitCode, strict.all).toBe(0);
    const usage = await execa(bin, [], { reject: false });
    expect(usage.exitCode).toBe(DRIVER_HARNESS_EXIT.usage);
    const bad = await execa(bin, ['run', 'm.cubin', 'entry', '.', '--grid', '0,1,1', '--y-bytes', '4'], { reject: false });
    expect(bad.stderr).toMatch(/--grid: expected X,Y,Z/);
    // An empty LD_LIBRARY_PATH directory and no system driver: the harness names libcuda.so.1.
    const noDriver = await execa(bin, ['info'], { reject: false, env: { LD_LIBRARY_PATH: tmp() } });
    if (noDriver.exitCode !== 0) {
      expect(noDriver.exitCode).toBe(DRIVER_HARNESS_EXIT.noGpu);
      expect(noDriver.stderr).toMatch(/^kgen_cuda_harness: /);
    }
  });
});

describe.skipIf(noNvccGcc !== undefined)('the GPU runner against a stand-in driver (plumbing, no GPU needed)', () => {
  const setup = async () => {
    const driverDir = await fakeDriver();
    const runnerFor = (env: Record<string, string> = {}) => cudaGpuRunner({ gpu: H100, profileMatches: true, env: { LD_LIBRARY_PATH: driverDir, ...env } });
    const e = emit({ target: 'cuda', op: 'matmul_q4', shape: 'M=3,N=77,K=320', device: 'h100-sxm', config: { kernel: 'tiled', math: 'mma' } });
    const data = opKit(e.plan.op.kind).testData(e.plan.op, e.plan.shape, 1);
    return { runnerFor, e, inputs: data.inputs };
  };

  it('builds a cubin (cached by source), launches it by its ptxas entry name, times it, and maps failures to statuses', async () => {
    const { runnerFor, e, inputs } = await setup();
    const cacheDir = tmp();
    const runner = runnerFor();
    const build = await runner.build(e.plan, e.rendered, { cacheDir, werror: true });
    expect(build.status, build.status === 'compile_error' ? build.detail : '').toBe('ok');
    if (build.status !== 'ok') return;
    const launch = JSON.parse(readFileSync(join(build.dir, 'launch.json'), 'utf8'));
    expect(launch).toMatchObject({ module: 'kernel.cubin', grid: e.plan.launch.grid, block: e.plan.launch.block, yBytes: 3 * 77 * 4, sanitize: false });
    expect(launch.entry).toMatch(/^_Z\d+kgen_matmul_q4_tiled_mma/);
    const again = await runner.build(e.plan, e.rendered, { cacheDir, werror: true });
    expect(again).toMatchObject({ status: 'ok', cached: true, id: build.id });

    const run = await runner.execute(build, inputs, { timeoutMs: 60_000 });
    expect(run.status, run.status !== 'ok' ? run.detail : '').toBe('ok');
    if (run.status === 'ok') expect([...run.output]).toEqual(new Array(3 * 77 * 4).fill(0)); // the stand-in writes zeros
    const timed = await runner.execute(build, inputs, { timing: { warmup: 2, runs: 5, flushBytes: 1 << 20 } });
    expect(timed.status).toBe('ok');
    if (timed.status === 'ok') expect(timed.timing).toMatchObject({ runs: 5, medianMs: 0.25 });

    const crash = await runnerFor({ FAKE_CUDA_FAIL: 'launch' }).execute(build, inputs);
    expect(crash.status).toBe('crash');
    if (crash.status === 'crash') expect(crash.detail).toMatch(/exit 3: kgen_cuda_harness: the kernel \(cuCtxSynchronize\): CUDA_ERROR_ILLEGAL_ADDRESS/);
    const hang = await runnerFor({ FAKE_CUDA_HANG: '1' }).execute(build, inputs, { timeoutMs: 1500 });
    expect(hang.status).toBe('timeout');
    await expect(runnerFor({ FAKE_CUDA_NO_DEVICE: '1' }).execute(build, inputs)).rejects.toThrow(KgenError);
    await expect(runnerFor({ FAKE_CUDA_NO_DEVICE: '1' }).execute(build, inputs)).rejects.toThrow(/GPU: cannot run kernels on NVIDIA H100 80GB HBM3: the CUDA driver sees no GPU/);
    build.dispose();
  });

  it('verify takes a given runner and reports what ran the kernel', async () => {
    const { runnerFor } = await setup();
    const r = await verify({ target: 'cuda', op: 'matmul_q4', shape: 'M=1,N=77,K=320', device: 'h100-sxm', runner: runnerFor() });
    // The stand-in writes zeros: the comparison, not the plumbing, fails.
    expect(r).toMatchObject({ status: 'wrong_result', ran: true, runner: 'gpu NVIDIA H100 80GB HBM3 (sm_90, nvcc + CUDA driver API)' });
  });

  it('a plan for another arch becomes a fatbin with PTX; a source nvcc refuses is compile_error', async () => {
    const { runnerFor } = await setup();
    const e = emit({ target: 'cuda', op: 'matmul_q8_0', shape: 'M=1,N=77,K=320', device: 'rtx4090' });
    const runner = cudaGpuRunner({ gpu: H100, profileMatches: false, env: {} });
    expect(runner.timesAreReal).toBe(false);
    const build = await runner.build(e.plan, e.rendered);
    expect(build.status, build.status === 'compile_error' ? build.detail : '').toBe('ok');
    if (build.status === 'ok') {
      expect(existsSync(join(build.dir, 'kernel.fatbin'))).toBe(true);
      build.dispose();
    }
    const broken = { ...e.rendered, files: { ...e.rendered.files, 'kernel.cu': `${e.rendered.files['kernel.cu']}\nthis is not C++;\n` } };
    const bad = await runnerFor().build(e.plan, broken);
    expect(bad.status).toBe('compile_error');
  });

  it('a plan for an arch nvcc does not list is unsupported (the toolkit\'s limit, not a compile error) before anything compiles, in both GPU runners', async () => {
    // A stand-in nvcc listing two archs; any other call (a compile) is logged and refused.
    const dir = tmp(), log = join(dir, 'calls.log'), nvcc = join(dir, 'nvcc');
    writeFileSync(nvcc, `#!/bin/sh\ncase "$1" in\n  --version) echo 'Cuda compilation tools, release 12.4, V12.4.131';;\n  --list-gpu-code) printf 'sm_75\\nsm_80\\n';;\n  *) echo "$@" >> '${log}'; exit 1;;\nesac\n`);
    chmodSync(nvcc, 0o755);
    const reason = "nvcc 12.4.131 builds for sm_75, sm_80; not sm_89, the arch of rtx4090's plan: build with a CUDA toolkit that supports sm_89";
    const e = emit({ target: 'cuda', op: 'matmul_q8_0', shape: 'M=1,N=77,K=320', device: 'rtx4090' });
    const build = await cudaGpuRunner({ gpu: H100, profileMatches: false, env: {}, nvcc, harnessCacheDir: join(dir, 'harness') }).build(e.plan, e.rendered);
    expect(build).toEqual({ status: 'unsupported', compileMs: 0, detail: reason });
    // Attention runs through its run kit: the same refusal.
    const a = emit({ target: 'cuda', op: 'attention_f16', shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=77,D=64', device: 'rtx4090', config: { kvSplit: 1, kvBlock: 16 } });
    const kit = await cudaRunKitGpuRunner({ gpu: H100, profileMatches: false, env: {}, nvcc }).build(a.plan, a.rendered);
    expect(kit).toEqual({ status: 'unsupported', compileMs: 0, detail: reason });
    expect(existsSync(log)).toBe(false);
  });
});

describe.skipIf(noNvccGcc !== undefined)('kgen devices and kgen tune with a GPU reported by nvidia-smi (a stand-in)', () => {
  /** A PATH with a fake nvidia-smi that prints `csv` for the query kgen makes. */
  const fakeSmi = (csv: string) => {
    const dir = tmp();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'nvidia-smi'), `#!/bin/sh\ncase "$1" in --query-gpu=name,compute_cap,driver_version,memory.total) printf '%s' '${csv}';; *) exit 9;; esac\n`);
    chmodSync(join(dir, 'nvidia-smi'), 0o755);
    return `${dir}:${process.env.PATH}`;
  };
  const run = (args: string[], env: Record<string, string>) => execa(KGEN, args, { reject: false, env: { ...process.env, KGEN_DB: join(tmp(), 'none.db'), ...env } });

  it('devices marks the GPU profile present; tune refuses another profile naming the GPU found', async () => {
    const PATH = fakeSmi(SMI_H100);
    const devices = JSON.parse((await run(['devices', '--json'], { PATH })).stdout) as Array<{ name: string; present: boolean; presence: string }>;
    expect(devices.find((d) => d.name === 'h100-sxm')).toMatchObject({ present: true, presence: 'nvidia-smi: NVIDIA H100 80GB HBM3 (sm_90, driver 550.54.15, 80 GiB)' });
    expect(devices.find((d) => d.name === 'rtx4090')!.present).toBe(false);
    const r = await run(['tune', '--device', 'rtx4090'], { PATH });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^kgen: --device: rtx4090 is not present on this machine \(GPUs here: NVIDIA H100 80GB HBM3 \(sm_90, driver 550\.54\.15, 80 GiB\)\); expected .*\(here: h100-sxm\); .*--dry-run/);
    const h200 = JSON.parse((await run(['devices', '--json'], { PATH: fakeSmi('NVIDIA H200, 9.0, 570.86.15, 143771 MiB\n') })).stdout) as Array<{ name: string; present: boolean; kind: string; targets: string[] }>;
    // NVIDIA profiles only: a CPU profile is present where this machine's CPU model matches it, the
    // WebGPU ones where SwiftShader is installed.
    expect(h200.filter((d) => d.present && d.kind === 'gpu' && d.targets.includes('cuda')).map((d) => d.name)).toEqual(['h200']);
    const other = fakeSmi('NVIDIA B200, 10.0, 570.124.06, 183359 MiB\n');
    const text = (await run(['devices'], { PATH: other })).stdout;
    expect(text).toMatch(/GPUs here without a profile: NVIDIA B200 \(sm_100/);
  });

  it('tune --device h100-sxm runs candidates through the GPU runner and records them with the GPU fingerprint', async () => {
    const dir = tmp();
    const env = { PATH: fakeSmi(SMI_H100), LD_LIBRARY_PATH: await fakeDriver(), KGEN_DB: join(dir, 'gpu.db'), XDG_CACHE_HOME: join(dir, 'cache') };
    const t = await run(['tune', '--device', 'h100-sxm', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--trials', '2', '--json'], env);
    expect(t.exitCode, t.stderr).toBe(0);
    const db = new Database(env.KGEN_DB, { readonly: true });
    const w = db.prepare('SELECT device, target, fingerprint FROM workloads').all() as Array<{ device: string; target: string; fingerprint: string }>;
    const trials = db.prepare('SELECT status, runner FROM trials').all() as Array<{ status: string; runner: string }>;
    db.close();
    expect(w).toHaveLength(1);
    expect(w[0]).toMatchObject({ device: 'h100-sxm', target: 'cuda' });
    expect(JSON.parse(w[0]!.fingerprint)).toMatchObject({ profile: 'h100-sxm', target: 'cuda', arch: 'sm_90', gpu: 'NVIDIA H100 80GB HBM3', computeCapability: '9.0', driver: '550.54.15', nvcc: expect.stringMatching(/^\d+\.\d+/) });
    // The stand-in driver writes zeros, so every candidate is judged a wrong result: recorded as data.
    expect(trials.length).toBe(2);
    for (const trial of trials) expect(trial).toMatchObject({ status: 'wrong_result', runner: expect.stringMatching(/^gpu NVIDIA H100 80GB HBM3/) });

    const noDriver = await run(['tune', '--device', 'h100-sxm', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--trials', '1'], { ...env, LD_LIBRARY_PATH: tmp(), KGEN_DB: join(dir, 'other.db') });
    if (noDriver.exitCode !== 0) {
      // No usable driver for that GPU (here: none at all): one line saying so, not a crash trial.
      expect(noDriver.exitCode).toBe(2);
      expect(noDriver.stderr).toMatch(/^kgen: GPU: cannot run kernels on NVIDIA H100 80GB HBM3: /m);
      expect(noDriver.stderr.trim().split('\n').at(-1)).toMatch(/check `nvidia-smi`/);
    }
  });
});

describe('the scripts for a GPU machine without Node', () => {
  const scripts = join(import.meta.dirname, '..', 'scripts');
  it('parse, and the session refuses clearly without a bundle, writing nothing', async () => {
    for (const s of ['gpu-bundle.sh', 'gpu-session.sh', 'gpu-attention.sh']) expect((await execa('bash', ['-n', join(scripts, s)], { reject: false })).exitCode, s).toBe(0);
    // A copy of the session script in a tree with no .gpu-bundle: it must stop before unpacking.
    const root = tmp();
    mkdirSync(join(root, 'scripts'));
    writeFileSync(join(root, 'scripts', 'gpu-session.sh'), readFileSync(join(scripts, 'gpu-session.sh')));
    const out = join(root, 'out');
    const r = await execa('bash', [join(root, 'scripts', 'gpu-session.sh'), 'tests'], { reject: false, env: { ...process.env, OUT: out } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^gpu-session: no \.gpu-bundle \(make it with scripts\/gpu-bundle\.sh and carry it\)/);
    expect(existsSync(join(root, 'node_modules'))).toBe(false);
    expect(existsSync(out)).toBe(false);
    const bad = await execa('bash', [join(root, 'scripts', 'gpu-session.sh'), 'everything'], { reject: false, env: { ...process.env, OUT: out } });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/usage: gpu-session\.sh \[tests\|bench\|attention\|all\]/);
  });
});
