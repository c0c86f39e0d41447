import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { emit } from '../src/api/emit.js';
import { checkSupport, planRequest, targetFor, targetNames, targetsRendering } from '../src/backends/registry.js';
import { allDevices, detectPresence, getDevice, loadProfiles, PRESENCE_PROBES, validateProfile } from '../src/device/index.js';
import type { DeviceProfile } from '../src/device/profile.js';
import { KgenError } from '../src/errors.js';
import { CATALOG } from '../src/ir/catalog.js';
import { OP_KINDS } from '../src/ir/ops.js';
import { opKit } from '../src/ops/index.js';
import { makePlan } from '../src/plan/index.js';
import { checkPresent } from '../src/tune/timeable.js';
import * as lib from '../src/index.js';
import { workloadRequest } from '../src/db/lookup.js';
import { skipReason, suiteHost } from './helpers.js';

const SRC = join(import.meta.dirname, '..', 'src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('targets and ops are data', () => {
  it('every target is registered once, plans its op kinds on its default device, and renders what it declares', () => {
    expect(targetNames()).toEqual(['c', 'cuda', 'wgsl', 'wasm']);
    for (const name of targetNames()) {
      const t = targetFor(name);
      expect(getDevice(t.defaultDevice).targets).toContain(name);
      for (const kind of t.backend?.capabilities.ops ?? []) expect(t.planners[kind], `${name} renders ${kind} but does not plan it`).toBeDefined();
    }
    expect(targetsRendering('matmul')).toEqual(['c', 'cuda', 'wgsl', 'wasm']);
    expect(targetsRendering('attention')).toEqual(['c', 'cuda', 'wgsl', 'wasm']);
    for (const kind of OP_KINDS) expect(opKit(kind).kind).toBe(kind);
  });

  it('no code outside a target\'s or an op\'s own files branches on a target name, op kind or plan family', () => {
    // Own files: a target's backend folder and planner files, an op's IR, kit and reference files.
    const own = /^(backends\/(c|cuda|wgsl|wasm)\/|plan\/(cpu|cuda|wgsl)-[a-z]+\.ts$|ir\/(matmul|attention)\.ts$|ops\/(matmul|attention)\.ts$|reference\/(matmul|attention)\.ts$)/;
    const targets = targetNames().join('|');
    const branch = new RegExp(
      [
        /\bop\.kind\s*[!=]==|\.kind\s*[!=]==\s*'(matmul|attention)'|\btarget\s*[!=]==\s*'|\.target\s*[!=]==\s*'|\.family\s*[!=]==\s*'/.source,
        // A target named outright: `t.name === 'c'`, `targets.includes('cuda')`.
        `\\.name\\s*[!=]==\\s*'(${targets})'`,
        `includes\\(\\s*'(${targets})'\\s*\\)`,
      ].join('|'),
    );
    // src/device decides by profile data (match.probe, kind, arch), never by a profile's name.
    const profileName = new RegExp(`[!=]==\\s*'(${loadProfiles().map((p) => p.name).join('|')})'`);
    const offenders = tsFiles(SRC)
      .map((f) => relative(SRC, f))
      .filter((f) => !own.test(f))
      .flatMap((f) => readFileSync(join(SRC, f), 'utf8').split('\n').map((line, i) => ({ f, i, line })))
      .filter(({ f, line }) => branch.test(line) || (f.startsWith('device/') && profileName.test(line)))
      .map(({ f, i, line }) => `${f}:${i + 1}: ${line.trim()}`);
    expect(offenders).toEqual([]);
  });
});

describe('errors are typed', () => {
  it('src throws no plain Error: a broken invariant is an InternalError (exit 70), what a user can cause a KgenError', () => {
    // A plain Error would leave the CLI with a stack and exit 70 without saying which of the two it is.
    const offenders = tsFiles(SRC)
      .flatMap((f) => readFileSync(f, 'utf8').split('\n').map((line, i, lines) => ({ f: relative(SRC, f), i, line, above: lines[i - 1] ?? '' })))
      .filter(({ line, above }) => /\bnew Error\(/.test(line) && !/plain Error:/.test(above))
      .map(({ f, i, line }) => `${f}:${i + 1}: ${line.trim()}`);
    expect(offenders).toEqual([]);
  });
});

describe('capabilities as data, checked in one place', () => {
  it('a profile says how its device is found here (match.probe), checked where profiles load', () => {
    for (const p of loadProfiles()) expect(Object.keys(PRESENCE_PROBES), p.name).toContain(p.match?.probe);
    const t4 = getDevice('t4');
    expect(() => validateProfile({ ...t4, match: { probe: 'lspci' as never, nameContains: ['T4'] } }, 'targets/x.json')).toThrow(/^targets\/x\.json: match\.probe: invalid device profile/);
    expect(detectPresence({ ...t4, match: undefined }).present).toBe(false);
    expect(() => validateProfile({ ...t4, match: { probe: 'nvidia-smi' } }, 'targets/x.json')).toThrow(/match\.nameContains/);
    expect(() => validateProfile({ ...getDevice('webgpu'), match: { probe: 'swiftshader-icd', nameContains: ['x'] } }, 'targets/x.json')).toThrow(/probe swiftshader-icd reads no name/);
    expect(getDevice('host', suiteHost()).targets).toEqual(['c', 'wasm']);
  });

  it('a field a profile does not define is refused by its path, with the fields its object has', () => {
    const cpu = getDevice('epyc-9654'), gpu = getDevice('t4');
    const bad = (p: object) => () => validateProfile(p as typeof cpu, 'lab.json');
    expect(bad({ ...cpu, notes: 'x' })).toThrow(/^lab\.json: notes: invalid device profile; expected one of the fields a profile has: name, /);
    expect(bad({ ...cpu, cpu: { ...cpu.cpu!, clockGhz: 3 } })).toThrow(/^lab\.json: cpu\.clockGhz: .*`cpu` has: arch, isa, .*clockGHz/);
    expect(bad({ ...gpu, gpu: { ...gpu.gpu!, features: { ...gpu.gpu!.features, fp16: true } } })).toThrow(/gpu\.features\.fp16: /);
    expect(bad({ ...cpu, peak: { ...cpu.peak, int8Tops: 1 } })).toThrow(/peak\.int8Tops: /);
    expect(bad({ ...gpu, cpu: cpu.cpu })).toThrow(/^lab\.json: cpu: invalid device profile; expected no entry in a gpu profile/);
    // An absent optional field may be spelled out as undefined (objects built in code).
    expect(validateProfile({ ...cpu, match: undefined }, 'lab.json').name).toBe('epyc-9654');
  });

  const q4 = CATALOG.matmul_q4!;
  const shape = { M: 1, N: 64, K: 64 };

  it('device features come from the profile: tensor cores and cp.async by arch, WebGPU with nothing assumed', () => {
    const feats = (name: string) => getDevice(name).gpu!.features;
    expect(feats('t4').tensorCores).not.toContain('mma.m16n8k16.f16');
    expect(feats('rtx4090').tensorCores).toContain('mma.m16n8k16.f16');
    expect(feats('t4').asyncCopy).toBe(false);
    expect(feats('webgpu')).toMatchObject({ subgroups: false, f16: false, subgroupSizes: [4, 128] });
    expect(feats('swiftshader').subgroupSizes).toEqual([4, 4]);
    for (const d of allDevices().filter((x) => x.kind === 'gpu')) expect(d.gpu!.features.subgroupSizes[0]).toBeLessThanOrEqual(d.gpu!.features.subgroupSizes[1]);
    // The CUDA planner offers tensor cores exactly where the profile lists them.
    const math = (name: string) => makePlan(planRequest({ op: q4, shape: { M: 64, N: 64, K: 64 }, device: getDevice(name), target: 'cuda' })).plan.config.math;
    expect(math('t4')).toBe('simt');
    expect(math('rtx4090')).toBe('mma');
  });

  it('a device lacking a feature the target needs is refused naming the feature', () => {
    const rtx = getDevice('rtx4090');
    const wave64: DeviceProfile = { ...rtx, name: 'wave64', gpu: { ...rtx.gpu!, features: { ...rtx.gpu!.features, subgroupSizes: [64, 64] } } };
    expect(() => planRequest({ op: q4, shape, device: wave64, target: 'cuda' })).toThrow(/--device: wave64 lacks warps of 32 .*, which cuda kernels need/);
    // gpu.warpSize is checked too: the kernels print lane masks and shifts for 32-lane warps.
    const warp64: DeviceProfile = { ...rtx, name: 'warp64', gpu: { ...rtx.gpu!, warpSize: 64 } };
    expect(() => planRequest({ op: q4, shape, device: warp64, target: 'cuda' })).toThrow(/--device: warp64 lacks warps of 32 \(gpu\.warpSize/);
    expect(() => planRequest({ op: q4, shape, device: getDevice('webgpu'), target: 'cuda' })).toThrow(/device webgpu does not run cuda kernels/);
  });

  it('a gap between the request and the backend is one KgenError from checkSupport, before rendering', () => {
    const att = CATALOG.attention_f16!;
    const attShape = { B: 1, Hq: 8, Hkv: 8, Sq: 1, Skv: 64, D: 64 };
    const gap = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(KgenError);
        return (e as KgenError).message;
      }
      return 'no error';
    };
    expect(checkSupport(planRequest({ op: att, shape: attShape, device: getDevice('wasm-simd128'), target: 'wasm' })).capabilities.kvCaches).toEqual(['f16', 'q8', 'q8_0', 'q4_0']);
    expect(checkSupport(planRequest({ op: att, shape: attShape, device: getDevice('webgpu'), target: 'wgsl' })).capabilities.kvCaches).toEqual(['f16', 'q8', 'q8_0', 'q4_0']);
    expect(checkSupport(planRequest({ op: q4, shape, device: getDevice('epyc-9654'), target: 'c' })).capabilities.ops).toContain('matmul');
    // A run-time KV length (op.kvLength 'runtime'): every target's kernels take it (the refusal for a
    // backend without the capability: test/c-attention-kvlen.test.ts).
    const runtimeLength = { ...att, kvLength: 'runtime' as const };
    for (const [target, device] of [['c', 'epyc-9654'], ['wasm', 'wasm-simd128'], ['cuda', 'rtx4090'], ['wgsl', 'webgpu']] as const) {
      expect(checkSupport(planRequest({ op: runtimeLength, shape: attShape, device: getDevice(device), target })).capabilities.runtimeKvLength, target).toBe(true);
    }
  });

  it('every target plans every op kind it has a planner for, on every device that runs it', () => {
    for (const device of allDevices(suiteHost())) {
      for (const name of device.targets) {
        for (const op of Object.values(CATALOG)) {
          if (!targetFor(name).planners[op.kind]) continue;
          const s = op.kind === 'matmul' ? { M: 3, N: 77, K: 320 } : { B: 1, Hq: 8, Hkv: 2, Sq: 3, Skv: 77, D: 64 };
          if (op.kind === 'matmul' && op.weight.format === 'f16') continue;
          const { plan } = makePlan(planRequest({ op, shape: s, device, target: name }));
          expect(plan.family.endsWith(op.kind), `${name} ${op.name}: ${plan.family}`).toBe(true);
          expect(plan.target).toBe(name);
        }
      }
    }
  });
});

describe('a user\'s own device profile (--device FILE.json)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kgen-profile-test-'));
  const write = (file: string, profile: unknown) => {
    const path = join(dir, file);
    writeFileSync(path, JSON.stringify(profile));
    return path;
  };
  // A phone GPU: 128-lane subgroups, WebGPU's default limits, but at most 128 invocations along x.
  const webgpu = getDevice('webgpu');
  const phone = { ...webgpu, name: 'qa-phone', match: undefined, gpu: { ...webgpu.gpu!, maxWorkgroupSize: [128, 128, 64], features: { ...webgpu.gpu!.features, subgroups: true, subgroupSizes: [128, 128] } } };

  it('is read from its file, may not take a shipped profile\'s name, and is not remembered by name', () => {
    const path = write('phone.json', phone);
    expect(getDevice(path)).toMatchObject({ name: 'qa-phone', gpu: { maxWorkgroupSize: [128, 128, 64] } });
    expect(getDevice(write('copy.json', phone)).name).toBe('qa-phone');
    expect(() => getDevice(write('t4.json', { ...getDevice('t4'), match: undefined }))).toThrow(/t4\.json: name: invalid device profile; expected a name of its own \("t4" is a shipped profile\)/);
    expect(() => getDevice(write('host.json', { ...phone, name: 'host' }))).toThrow(/name: .*"host" is a shipped profile/);
    expect(() => getDevice(join(dir, 'absent.json'))).toThrow(/^--device: cannot read .*absent\.json/);
    // No process-wide memory: the name finds it only where a caller passes it (DeviceOptions.profiles).
    expect(() => getDevice('qa-phone')).toThrow(/^--device: unknown device "qa-phone"/);
    expect(getDevice('qa-phone', { profiles: [getDevice(path)] }).gpu!.features.subgroupSizes).toEqual([128, 128]);
    // The regenerate command in an emitted kernel names the file: a new process knows no `qa-phone`.
    const r = emit({ target: 'wgsl', op: 'matmul_q4_0', shape: 'M=1,N=16,K=64', device: path });
    expect(r.files['kernel.wgsl']).toContain(`--device ${path} --config`);
    // So does the tuner's hint for a profile that is not here.
    expect(() => checkPresent(getDevice(path), { status: 'none', gpus: [], how: 'no nvidia-smi' })).toThrow(/qa-phone is not present on this machine .*; the same command with --dry-run shows its search space without it$/);
  });

  // A copy of a shipped CUDA profile under a new name with a smaller L2: run.sh's default flush is 3x the L2 of the plan's profile.
  const rtx = getDevice('rtx4090');
  const smallL2 = (name: string, l2Bytes: number): DeviceProfile => ({ ...rtx, name, match: undefined, gpu: { ...rtx.gpu!, l2Bytes } });
  const defaultFlush = (files: Record<string, string>) => Number(/^default_flush=(\d+)$/m.exec(files['run.sh']!)![1]);
  const cudaRequest = { target: 'cuda', op: 'matmul_q4', shape: 'M=1,N=64,K=256', config: { kernel: 'gemv' } };

  it('a profile object built in memory plans, emits and resolves through the library API without a file', () => {
    const mine = smallL2('qa-small-l2', 1 << 20);
    const r = lib.emit({ ...cudaRequest, device: mine });
    expect(r.plan.device).toBe('qa-small-l2');
    expect(r.plan.profile).toBe(mine);
    expect(defaultFlush(r.files)).toBe(3 << 20);
    // The plan holds the number run.sh prints (templates do no arithmetic), for attention's kit too.
    expect(r.plan.params).toMatchObject({ flushBytes: 3 << 20, flushL2Multiple: 3 });
    const attention = lib.emit({ target: 'cuda', op: 'attention_f16', shape: 'B=1,Hq=4,Hkv=1,Sq=1,Skv=64,D=64', device: mine });
    expect(attention.plan.params).toMatchObject({ flushBytes: 3 << 20 });
    expect(defaultFlush(attention.files)).toBe(3 << 20);
    expect(defaultFlush(lib.emit({ ...cudaRequest, device: 'rtx4090' }).files)).toBe(3 * rtx.gpu!.l2Bytes!);
    const { plan } = lib.makePlan(lib.planRequest({ op: lib.CATALOG.matmul_q4!, shape: { M: 1, N: 64, K: 256 }, device: mine, target: 'cuda' }));
    expect(plan.profile.gpu!.l2Bytes).toBe(1 << 20);
    // A recorded workload of that device is planned again only where the caller passes its profile.
    const w = { op: lib.CATALOG.matmul_q4!, shape: { M: 1, N: 64, K: 256 }, device: 'qa-small-l2', target: 'cuda' };
    expect(workloadRequest(w)).toBeUndefined();
    expect(workloadRequest(w, { profiles: [mine] })!.req.device).toBe(mine);
    // A shipped profile passes as itself; a changed one under a shipped name, or a broken one, is refused.
    expect(lib.emit({ ...cudaRequest, device: rtx }).plan.profile).toBe(rtx);
    expect(() => lib.emit({ ...cudaRequest, device: { ...rtx, gpu: { ...rtx.gpu!, l2Bytes: 1 } } })).toThrow(/^--device: name: invalid device profile; expected a name of its own \("rtx4090" is a shipped profile\)/);
    expect(() => lib.emit({ ...cudaRequest, device: { ...mine, memory: undefined } as unknown as DeviceProfile })).toThrow(/memory\.bandwidthGBs: invalid device profile/);
  });

  it('two profiles of one name, one after another in a process, each plan with their own figures (objects and files alike)', () => {
    for (const [a, b] of [
      [smallL2('qa-twin', 1 << 20), smallL2('qa-twin', 2 << 20)],
      [write('twin-a.json', smallL2('qa-twin', 1 << 20)), write('twin-b.json', smallL2('qa-twin', 2 << 20))],
    ] as const) {
      expect(defaultFlush(lib.emit({ ...cudaRequest, device: a }).files)).toBe(3 << 20);
      expect(defaultFlush(lib.emit({ ...cudaRequest, device: b }).files)).toBe(6 << 20);
      expect(defaultFlush(lib.emit({ ...cudaRequest, device: a }).files)).toBe(3 << 20);
    }
  });

  it.skipIf(skipReason(['g++']) !== undefined)('verify runs a kernel planned for a profile object: the runner reads the plan\'s profile', async () => {
    const r = await lib.verify({ ...cudaRequest, device: smallL2('qa-verify', 1 << 20), shape: 'M=1,N=77,K=320' });
    expect(r.status, r.detail).toBe('ok');
    expect(r.plan.profile.name).toBe('qa-verify');
  });

  it('a wrong or missing figure names its field, never a crash or a default', () => {
    const rpi = { ...getDevice('graviton3'), name: 'qa-rpi5', match: undefined };
    const t4 = getDevice('t4');
    const bad: [unknown, RegExp][] = [
      [null, /\(top level\): invalid device profile; expected a JSON object/],
      [{ ...rpi, cpu: { ...rpi.cpu, isa: ['neon', 'dotprd'] } }, /cpu\.isa: .*\(not "dotprd"\)/],
      [{ ...rpi, cpu: { ...rpi.cpu, arch: 'arm64' } }, /cpu\.arch: .*one of x86_64, aarch64, wasm32/],
      [{ ...phone, gpu: { ...phone.gpu, features: { ...phone.gpu.features, subgroups: 'yes' } } }, /gpu\.features\.subgroups: .*true or false/],
      [{ ...phone, gpu: { ...phone.gpu, maxWorkgroupSize: 256 } }, /gpu\.maxWorkgroupSize: .*\[x, y, z\]/],
      [{ ...phone, gpu: { ...phone.gpu, maxStorageBufferBindingBytes: -1 } }, /gpu\.maxStorageBufferBindingBytes: .*a positive integer/],
      [{ ...t4, gpu: { ...t4.gpu, registersPerThread: undefined } }, /gpu\.registersPerThread: .*an integer >= 0/],
    ];
    for (const [profile, message] of bad) {
      expect(() => validateProfile(profile as DeviceProfile, 'mine.json'), message.source).toThrow(KgenError);
      expect(() => validateProfile(profile as DeviceProfile, 'mine.json'), message.source).toThrow(message);
    }
  });

  it('a profile whose kind does not fit a target it lists is refused naming what is missing, not planned into a crash', () => {
    const op = CATALOG.matmul_q4_0!;
    const shape = { M: 1, N: 64, K: 64 };
    const gpuForC = { ...phone, name: 'qa-gpu-for-c', targets: ['c', 'wasm'] } as DeviceProfile;
    const graviton = getDevice('graviton3');
    const cpuForGpu = { ...graviton, name: 'qa-cpu-for-gpu', targets: ['wgsl', 'cuda'] };
    for (const target of ['c', 'wasm']) expect(() => planRequest({ op, shape, device: gpuForC, target })).toThrow(new RegExp(`qa-gpu-for-c lacks CPU limits \\(kind "cpu" with a cpu section\\), which ${target} kernels need`));
    for (const target of ['wgsl', 'cuda']) expect(() => planRequest({ op, shape, device: cpuForGpu, target })).toThrow(new RegExp(`qa-cpu-for-gpu lacks GPU limits \\(kind "gpu" with a gpu section\\), which ${target} kernels need`));
  });

  it('a CUDA profile listing tensor cores its arch lacks is refused before planning (ptxas would refuse the kernel)', () => {
    const t4 = getDevice('t4');
    const lying = { ...t4, name: 'qa-sm75-mma', gpu: { ...t4.gpu!, features: { ...t4.gpu!.features, tensorCores: ['mma.m16n8k16.f16'] } } };
    const req = (device: DeviceProfile) => planRequest({ op: CATALOG.matmul_q4!, shape: { M: 64, N: 64, K: 64 }, device, target: 'cuda' });
    expect(() => checkSupport(req(lying))).toThrow(/--device: qa-sm75-mma lacks tensor cores that match its gpu\.arch \(mma\.m16n8k16\.f16 in gpu\.features\.tensorCores needs sm_80 or newer\)/);
    expect(() => checkSupport(req({ ...lying, gpu: { ...lying.gpu, arch: 'sm_80' } }))).not.toThrow();
  });

  it('WGSL plans keep to the profile\'s maxComputeWorkgroupSizeX (gpu.maxWorkgroupSize[0])', () => {
    const device = validateProfile(phone as DeviceProfile, 'phone.json');
    const req = planRequest({ op: CATALOG.matmul_q4_0!, shape: { M: 1, N: 4096, K: 4096 }, device, target: 'wgsl' });
    expect(() => makePlan(req, { invocations: 256 })).toThrow(/over budget: workgroup size x \(qa-phone\) needs 256 threads but 128 are available/);
    const att = planRequest({ op: CATALOG.attention_f16!, shape: { B: 1, Hq: 8, Hkv: 2, Sq: 64, Skv: 64, D: 64 }, device, target: 'wgsl' });
    for (const r of [req, att]) expect(makePlan(r).plan.launch.block![0]).toBeLessThanOrEqual(128);
  });
});
