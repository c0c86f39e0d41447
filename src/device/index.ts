import { existsSync } from 'node:fs';
import { KgenError } from '../errors.js';
import { canonicalJson } from '../hash.js';
import { quoted } from '../io/message-text.js';
import type { GpuDetection } from './gpu.js';
import { describeGpu, detectGpus, matchGpuProfile } from './gpu.js';
import type { HostOptions } from './host.js';
import { hostIsa, resolveHost } from './host.js';
import type { DeviceProfile, PresenceProbe } from './profile.js';
import { checkOwnProfile, isProfileFile, loadProfileFile, loadProfiles } from './profile.js';

export * from './profile.js';
export { hostFromEnvironment, hostIsa, measuredDevice, resolveHost, type HostOptions } from './host.js';
export * from './gpu.js';

/** Where distributions put SwiftShader's Vulkan ICD (Debian's `chromium` package: the first). */
const SWIFTSHADER_ICDS = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib64/chromium/vk_swiftshader_icd.json', '/usr/lib/chromium-browser/vk_swiftshader_icd.json'];

/** SwiftShader's Vulkan ICD file on this machine, or undefined. */
export function swiftShaderIcd(): string | undefined {
  return SWIFTSHADER_ICDS.find((p) => existsSync(p));
}

/** Every profile, `host` first (as `opts` resolves it: `resolveHost`), then `targets/` in name order. */
export function allDevices(opts: HostOptions = {}): DeviceProfile[] {
  return [resolveHost(opts), ...loadProfiles()];
}

/**
 * How a library call resolves device names: `host` as `HostOptions` says, and `profiles`, the
 * caller's own profiles that kgen ships none of (read from files at the CLI's edge, or built in
 * memory), found by name after the shipped ones. Nothing is remembered between calls: a name resolves to what these
 * options and `targets/` hold, whatever an earlier call loaded.
 */
export interface DeviceOptions extends HostOptions {
  profiles?: readonly DeviceProfile[];
}

/**
 * The profile `device` stands for: `host` as `opts.host` resolves it (`resolveHost`), a path
 * ending in `.json` read from that file (`loadProfileFile`), any other name from `targets/` or
 * `opts.profiles` (the host is not resolved for those). A profile object is taken as it is: a
 * shipped one unchanged or one named `host` (as `HostOptions.host` is), else checked as a caller's
 * own (`checkOwnProfile`). An unknown name is a KgenError on `opts.field` (default `--device`).
 */
export function getDevice(device: string | DeviceProfile, opts: DeviceOptions & { field?: string } = {}): DeviceProfile {
  const field = opts.field ?? '--device';
  if (typeof device !== 'string') return isShipped(device) || isHost(device) ? device : checkOwnProfile(device, field);
  const name = device;
  if (name === 'host') return resolveHost(opts);
  if (isProfileFile(name)) return loadProfileFile(name, field);
  const found = loadProfiles().find((d) => d.name === name) ?? opts.profiles?.find((d) => d.name === name);
  if (!found) {
    throw new KgenError({
      field,
      problem: `unknown device ${quoted(String(name))}`,
      expected: `one of ${['host', ...loadProfiles().map((d) => d.name)].join(', ')}, or a profile file (NAME.json)`,
      hint: 'run `kgen devices` to list them, or describe your device in a JSON file like targets/webgpu.json',
    });
  }
  return found;
}

/** Whether `p` is a profile named `host`, as `HostOptions.host` gives one (`resolveHost`, `forcedHost`). */
function isHost(p: DeviceProfile): boolean {
  return (p as Partial<DeviceProfile> | null)?.name === 'host';
}

/** Whether `p` is a shipped profile with its figures unchanged (a copy of one passes too). */
function isShipped(p: DeviceProfile): boolean {
  // `p` may be anything a JavaScript caller passed: checkOwnProfile says what is wrong with it.
  const shipped = loadProfiles().find((d) => d.name === (p as Partial<DeviceProfile> | null)?.name);
  return shipped !== undefined && (shipped === p || canonicalJson(shipped) === canonicalJson(p));
}

/** Whether this device is present on the machine running kgen, and how that was decided. */
export interface Presence {
  present: boolean;
  how: string;
}

/** Each presence probe (`PRESENCE_PROBES`, a profile's `match.probe`) as code. */
const PROBES: Record<PresenceProbe, (device: DeviceProfile, gpus: GpuDetection) => Presence> = {
  'cpu-model': (device) => {
    const model = hostIsa().model;
    const hit = device.match?.nameContains?.find((n) => model.includes(n));
    return hit ? { present: true, how: `CPU model "${model}"` } : { present: false, how: `CPU is "${model}"` };
  },
  'nvidia-smi': (device, gpus) => {
    const hit = gpus.gpus.find((g) => matchGpuProfile(device, g).matches);
    if (hit) return { present: true, how: `nvidia-smi: ${describeGpu(hit)}` };
    return { present: false, how: gpus.gpus.length ? `GPUs here: ${gpus.gpus.map(describeGpu).join('; ')}` : gpus.how };
  },
  'wasm-simd128': () => {
    // The smallest module using a v128 value: valid only where SIMD128 is supported.
    const simd = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 22, 1, 20, 0, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11]);
    return WebAssembly.validate(simd) ? { present: true, how: 'this Node runs WebAssembly SIMD128' } : { present: false, how: 'no SIMD128 in this runtime' };
  },
  'swiftshader-icd': () => {
    const icd = swiftShaderIcd();
    return icd ? { present: true, how: `SwiftShader ICD at ${icd}` } : { present: false, how: 'no SwiftShader ICD (install Debian chromium)' };
  },
};

/**
 * Whether `device` is here, by its profile's presence probe (`match.probe`): `host` always; GPU
 * profiles matched against nvidia-smi's GPUs by name and compute capability (`matchGpuProfile`);
 * pass a detection to ask nvidia-smi once for many profiles.
 */
export function detectPresence(device: DeviceProfile, gpus: GpuDetection = detectGpus()): Presence {
  if (device.name === 'host') return { present: true, how: 'this machine' };
  const probe = device.match?.probe;
  if (!probe) return { present: false, how: `profile ${device.name} names no presence probe (match.probe)` };
  return PROBES[probe](device, gpus);
}
