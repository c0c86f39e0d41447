import type { KernelRunner } from '../backends/types.js';
import type { GpuDetection } from '../device/index.js';
import { allDevices, detectGpus, detectPresence, matchGpuProfile } from '../device/index.js';
import type { DeviceProfile } from '../device/profile.js';
import { KgenError } from '../errors.js';

/**
 * The tuner's invariant, checked before it registers any workload: a recorded time is the
 * device's own. These refuse a device that is not here and a runner whose times are not the
 * device's (an emulator, a shim), each a KgenError naming what this machine can time instead.
 */

/**
 * Refuses to time a device that is not here, naming what was detected instead. A GPU profile is
 * present when nvidia-smi finds a GPU with one of its names and its compute capability.
 */
export function checkPresent(device: DeviceProfile, gpus: GpuDetection = detectGpus()): void {
  if (device.name === 'host') return;
  const p = detectPresence(device, gpus);
  if (!p.present) {
    const profiled = device.kind === 'gpu' ? gpus.gpus.map((g) => allDevices().find((d) => matchGpuProfile(d, g).matches)?.name).filter((n): n is string => !!n) : [];
    throw new KgenError({
      field: '--device',
      problem: `${device.name} is not present on this machine (${p.how})`,
      expected: `the device kgen tune runs on: --device host for this CPU, or a profile \`kgen devices\` marks with *${profiled.length ? ` (here: ${[...new Set(profiled)].join(', ')})` : ''}`,
      // The command again, not `--device NAME`: a profile read from a file is unknown by name to a new process.
      hint: 'the same command with --dry-run shows its search space without it',
    });
  }
}

/**
 * Refuses a runner whose times say nothing about `device` (`timesAreReal` false: an emulator, the
 * CUDA CPU shim, any WebGPU adapter for the generic profile), naming the profiles this machine
 * times truly for `target`. Present (its kernels run here, which verify needs) is not timeable.
 */
export function checkTimesAreReal(device: DeviceProfile, target: string, runner: KernelRunner): void {
  if (runner.timesAreReal) return;
  const gpus = detectGpus(); // once: it may run nvidia-smi
  const timeable = allDevices().filter((d) => d.name !== device.name && d.targets.includes(target) && (d.name === 'host' || detectPresence(d, gpus).present)).map((d) => d.name);
  throw new KgenError({
    field: '--device',
    problem: `${target} kernels for ${device.name} would run through ${runner.name} here, whose times say nothing about the device (\`kgen devices\` marks it present because its kernels run here, which is what verify needs)`,
    hint: `tune on the device itself${timeable.length ? `, or a profile this machine times truly: --device ${timeable.join(' or --device ')}` : ''}; \`--dry-run\` shows the space`,
  });
}
