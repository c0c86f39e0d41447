import { existsSync } from 'node:fs';
import { KgenError } from '../errors.js';
import { quoted } from '../io/message-text.js';
import type { GpuDetection } from './gpu.js';
import { describeGpu, detectGpus, matchGpuProfile } from './gpu.js';
import type { HostOptions } from './host.js';
import { hostIsa, resolveHost } from './host.js';
import type { DeviceProfile, PresenceProbe } from './profile.js';
import { isProfileFile, loadProfileFile, loadProfiles, userProfile } from './profile.js';

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
 * The profile named `name`: `host` as `opts.host` resolves it (`resolveHost`), a path ending in
 * `.json` read from that file (`loadProfileFile`), any other from `targets/` or a file read
 * before (the host is not resolved for those); an unknown name is a KgenError on `opts.field`
 * (default `--device`).
 */
export function getDevice(name: string, opts: HostOptions & { field?: string } = {}): DeviceProfile {
  if (name === 'host') return resolveHost(opts);
  if (isProfileFile(name)) return loadProfileFile(name, opts.field ?? '--device');
  const found = loadProfiles().find((d) => d.name === name) ?? userProfile(name);
  if (!found) {
    throw new KgenError({
      field: opts.field ?? '--device',
      problem: `unknown device ${quoted(String(name))}`,
      expected: `one of ${['host', ...loadProfiles().map((d) => d.name)].join(', ')}, or a profile file (NAME.json)`,
      hint: 'run `kgen devices` to list them, or describe your device in a JSON file like targets/webgpu.json',
    });
  }
  return found;
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
