import { hostCpuIdentity } from '../../device/host.js';
import type { DeviceProfile } from '../../device/profile.js';
import type { SearchSpace } from '../../plan/types.js';
import { toolVersion } from '../tools.js';
import type { Fingerprint } from '../types.js';
import { C_TOOLCHAINS } from './toolchain.js';

/** `<compiler> -dumpfullversion`, or "missing". */
function compilerVersion(compiler: string): Promise<string> {
  return toolVersion(compiler, (out) => out.trim() || undefined, ['-dumpfullversion']);
}

/**
 * What a C measurement depends on beyond the profile: the CPU model, its ISA extensions, core and
 * cache figures, and the version of each compiler the space's ISA variants use.
 */
export async function cFingerprint(device: DeviceProfile, space: SearchSpace): Promise<Fingerprint> {
  const fp: Fingerprint = { profile: device.name, target: 'c' };
  if (!device.cpu) return fp;
  Object.assign(fp, {
    ...hostCpuIdentity(),
    cores: device.cpu.cores,
    l2Bytes: device.cpu.l2Bytes,
    l3Bytes: device.cpu.l3Bytes,
  });
  const isas = (space.knobs.find((k) => k.name === 'isa')?.values ?? []) as string[];
  for (const compiler of [...new Set(isas.map((i) => C_TOOLCHAINS[i]?.compiler).filter((c): c is string => !!c))].sort()) {
    fp[`compiler:${compiler}`] = await compilerVersion(compiler);
  }
  return fp;
}
