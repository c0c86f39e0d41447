import { execa } from 'execa';
import { C_TOOLCHAINS } from '../backends/c/toolchain.js';
import type { Fingerprint } from '../db/types.js';
import { hostIsa } from '../device/host.js';
import type { DeviceProfile, TargetName } from '../device/profile.js';
import type { SearchSpace } from '../plan/types.js';

const versions = new Map<string, string>();

/** `<compiler> -dumpfullversion`, or "missing". */
async function compilerVersion(compiler: string): Promise<string> {
  let v = versions.get(compiler);
  if (v === undefined) {
    const r = await execa(compiler, ['-dumpfullversion'], { reject: false });
    v = r.exitCode === 0 ? r.stdout.trim() : 'missing';
    versions.set(compiler, v);
  }
  return v;
}

/**
 * What identifies the machine and tools a measurement depends on, beyond the profile name: for the
 * C target the CPU model, its ISA extensions, core and cache figures, and the version of each
 * compiler the space's ISA variants use. Trials compare only under equal fingerprints.
 */
export async function fingerprintFor(device: DeviceProfile, target: TargetName, space: SearchSpace): Promise<Fingerprint> {
  const fp: Fingerprint = { profile: device.name, target };
  if (target === 'c' && device.cpu) {
    const host = hostIsa();
    Object.assign(fp, {
      cpu: host.model.trim(),
      arch: host.arch,
      isa: [...host.isa].sort().join(' '),
      cores: device.cpu.cores,
      l2Bytes: device.cpu.l2Bytes,
      l3Bytes: device.cpu.l3Bytes,
    });
    const isas = (space.knobs.find((k) => k.name === 'isa')?.values ?? []) as string[];
    for (const compiler of [...new Set(isas.map((i) => C_TOOLCHAINS[i]?.compiler).filter((c): c is string => !!c))].sort()) {
      fp[`compiler:${compiler}`] = await compilerVersion(compiler);
    }
  }
  return fp;
}
