import type { DeviceProfile } from '../../device/profile.js';
import type { Fingerprint } from '../types.js';
import { dawnAdapterFor } from './runner.js';

/**
 * What a WGSL measurement on `device` depends on besides the profile: the adapter that runs it here
 * (vendor, architecture, device, description), its subgroup size range, its features and the limits
 * the planner reads, and the webgpu package (the Dawn build). Trials compare only when all are equal.
 */
export async function wgslFingerprint(device: DeviceProfile): Promise<Fingerprint> {
  const { probe } = await dawnAdapterFor(device);
  const a = probe.adapter!;
  return {
    profile: device.name,
    target: 'wgsl',
    adapter: `${a.vendor}/${a.architecture}/${a.device}`,
    description: a.description,
    subgroupSizes: `${a.subgroupMinSize ?? '?'}..${a.subgroupMaxSize ?? '?'}`,
    features: (probe.features ?? []).join(','),
    limits: Object.entries(probe.limits ?? {}).map(([k, v]) => `${k}=${v}`).join(','),
    webgpu: probe.webgpu ?? 'unknown',
  };
}
