import { execFileSync } from 'node:child_process';
import { KgenError } from '../errors.js';
import type { DeviceProfile } from './profile.js';

/** One NVIDIA GPU as nvidia-smi reports it. */
export interface GpuInfo {
  /** Position in nvidia-smi's list (PCI bus order; CUDA's order under CUDA_DEVICE_ORDER=PCI_BUS_ID). */
  index: number;
  /** e.g. "NVIDIA H100 80GB HBM3": the same text CUDA's device name gives. */
  name: string;
  /** e.g. "9.0"; undefined when this nvidia-smi is too old to report it. */
  computeCapability?: string;
  /** `sm_90` from the compute capability; undefined with it. */
  arch?: string;
  /** The kernel driver's version, e.g. "550.54.15". */
  driverVersion: string;
  memoryMiB?: number;
}

/**
 * What looking for NVIDIA GPUs found. `how` says how it was decided, for messages: the GPUs, or why
 * there are none (no nvidia-smi, no GPU, a driver that does not answer).
 */
export type GpuDetection = { status: 'found'; gpus: GpuInfo[]; how: string } | { status: 'none'; gpus: GpuInfo[]; how: string };

/** The fields `detectGpus` asks for, in this order; compute_cap needs a driver from 2021 or later. */
const QUERY = ['name', 'compute_cap', 'driver_version', 'memory.total'] as const;
const QUERY_OLD = ['name', 'driver_version', 'memory.total'] as const;

/**
 * Parses `nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader`
 * (or the same without compute_cap when `withComputeCap` is false). Lines that do not parse are
 * skipped; values nvidia-smi cannot give ("[N/A]") are left undefined.
 */
export function parseNvidiaSmiGpus(csv: string, opts: { withComputeCap?: boolean } = {}): GpuInfo[] {
  const fields = opts.withComputeCap === false ? QUERY_OLD.length : QUERY.length;
  const gpus: GpuInfo[] = [];
  for (const line of csv.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const parts = line.split(',').map((p) => p.trim());
    if (parts.length < fields) continue;
    // A name with a comma in it would split: the last fields are fixed, the name is the rest.
    const tail = parts.splice(parts.length - (fields - 1));
    const name = parts.join(', ');
    const [cc, driver, memory] = opts.withComputeCap === false ? [undefined, tail[0]!, tail[1]!] : [tail[0]!, tail[1]!, tail[2]!];
    const arch = archOfComputeCapability(cc);
    const mib = /^(\d+)(?:\s*MiB)?$/.exec(memory)?.[1];
    gpus.push({
      index: gpus.length,
      name,
      computeCapability: arch ? cc : undefined,
      arch,
      driverVersion: driver,
      memoryMiB: mib ? Number(mib) : undefined,
    });
  }
  return gpus;
}

export interface DetectGpusOptions {
  /** The nvidia-smi command (default `nvidia-smi` on PATH). */
  nvidiaSmi?: string;
  /** Ask again instead of taking this process's earlier answer. */
  refresh?: boolean;
}

const detections = new Map<string, GpuDetection>();

/**
 * NVIDIA GPUs on this machine, from nvidia-smi; asked once per process (GPUs do not come and go
 * while kgen runs). Never throws: a missing or failing nvidia-smi is `status: 'none'` with the reason.
 */
export function detectGpus(opts: DetectGpusOptions = {}): GpuDetection {
  const smi = opts.nvidiaSmi ?? 'nvidia-smi';
  let found = opts.refresh ? undefined : detections.get(smi);
  if (!found) {
    found = querySmi(smi);
    detections.set(smi, found);
  }
  return found;
}

function querySmi(smi: string): GpuDetection {
  const ask = (fields: readonly string[]) =>
    execFileSync(smi, [`--query-gpu=${fields.join(',')}`, '--format=csv,noheader'], { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'pipe'] });
  let gpus: GpuInfo[];
  try {
    gpus = parseNvidiaSmiGpus(ask(QUERY));
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (err.code === 'ENOENT') return { status: 'none', gpus: [], how: 'no NVIDIA GPU (nvidia-smi not found)' };
    const text = `${err.stdout ?? ''}${err.stderr ?? ''}`;
    if (/compute_cap/.test(text)) {
      // An nvidia-smi older than the compute_cap field: names still match profiles.
      try {
        gpus = parseNvidiaSmiGpus(ask(QUERY_OLD), { withComputeCap: false });
      } catch (e2) {
        return { status: 'none', gpus: [], how: `nvidia-smi failed: ${firstLine(e2)}` };
      }
    } else {
      return { status: 'none', gpus: [], how: `nvidia-smi failed: ${firstLine(e)}` };
    }
  }
  if (!gpus.length) return { status: 'none', gpus: [], how: 'no NVIDIA GPU (nvidia-smi found none)' };
  return { status: 'found', gpus, how: `nvidia-smi: ${gpus.map(describeGpu).join('; ')}` };
}

function firstLine(e: unknown): string {
  const err = e as { stderr?: string; stdout?: string; message?: string };
  const text = [err.stderr, err.stdout, err.message].find((t) => t && t.trim()) ?? 'unknown error';
  return text.trim().split('\n')[0]!;
}

/** "NVIDIA H100 80GB HBM3 (sm_90, driver 550.54.15, 80 GiB)". */
export function describeGpu(gpu: GpuInfo): string {
  const parts = [gpu.arch ?? 'compute capability unknown', `driver ${gpu.driverVersion}`];
  if (gpu.memoryMiB) parts.push(`${Math.round(gpu.memoryMiB / 1024)} GiB`);
  return `${gpu.name} (${parts.join(', ')})`;
}

/** Whether a GPU is the device a profile describes, and if not, why not. */
export interface GpuMatch {
  matches: boolean;
  why: string;
}

/**
 * A GPU is a profile's device when its name contains one of the profile's `match.nameContains`
 * texts and, where nvidia-smi reports it, its compute capability is the profile's arch (so a
 * renamed or a newer part never borrows another's figures).
 */
export function matchGpuProfile(profile: DeviceProfile, gpu: GpuInfo): GpuMatch {
  if (profile.kind !== 'gpu' || !profile.gpu) return { matches: false, why: `${profile.name} is not a GPU profile` };
  const names = profile.match?.nameContains ?? [];
  if (!names.some((n) => gpu.name.includes(n))) return { matches: false, why: `"${gpu.name}" contains none of ${names.map((n) => `"${n}"`).join(', ') || '(no names)'}` };
  if (gpu.arch && gpu.arch !== profile.gpu.arch) return { matches: false, why: `${gpu.name} is ${gpu.arch}, the profile is ${profile.gpu.arch}` };
  return { matches: true, why: `nvidia-smi: ${describeGpu(gpu)}` };
}

/** The first GPU here that is this profile's device, if any. */
export function gpuForProfile(profile: DeviceProfile, detection: GpuDetection = detectGpus()): GpuInfo | undefined {
  return detection.gpus.find((g) => matchGpuProfile(profile, g).matches);
}

/**
 * The NVIDIA profile to plan for on this GPU: its own when one matches (`exact`: times are that
 * profile's and `kgen tune` may record them), else the newest profile whose arch the GPU runs
 * through the PTX a build embeds. Throws KgenError (the machine's GPU is at fault) when no profile's arch runs on it.
 */
export function nvidiaProfileForGpu(profiles: readonly DeviceProfile[], gpu: GpuInfo): { device: DeviceProfile; exact: boolean } {
  const nvidia = profiles.filter((d) => d.kind === 'gpu' && d.gpu?.vendor === 'nvidia');
  const exact = nvidia.find((d) => matchGpuProfile(d, gpu).matches);
  if (exact) return { device: exact, exact: true };
  const have = archNumber(gpu.arch ?? '') ?? 0;
  const runnable = nvidia.filter((d) => (archNumber(d.gpu!.arch) ?? Infinity) <= have).sort((a, b) => archNumber(b.gpu!.arch)! - archNumber(a.gpu!.arch)!);
  if (!runnable.length) {
    // The machine's GPU, not a kgen bug: too old for every profile kgen ships.
    const oldest = nvidia.map((d) => d.gpu!.arch).sort((a, b) => (archNumber(a) ?? 0) - (archNumber(b) ?? 0))[0] ?? 'none';
    throw new KgenError({
      field: 'GPU', problem: `no kgen profile's arch runs on ${describeGpu(gpu)}`, expected: `a GPU of ${oldest} or later (the oldest NVIDIA profile's arch)`,
      hint: 'run on a newer GPU, or add a device profile for this one (docs/ARCHITECTURE.md, "Device profiles")',
    });
  }
  return { device: runnable[0]!, exact: false };
}

/** "8.9" -> `sm_89`; undefined for anything that is not a compute capability. */
export function archOfComputeCapability(cc: string | undefined): string | undefined {
  return cc !== undefined && /^\d+\.\d+$/.test(cc) ? `sm_${cc.replace('.', '')}` : undefined;
}

/** `sm_89` -> 89; undefined for anything else. */
export function archNumber(arch: string): number | undefined {
  const m = /^(?:sm|compute)_(\d+)$/.exec(arch);
  return m ? Number(m[1]) : undefined;
}

/**
 * Whether code for `arch` can run on this GPU: natively when the arch is the GPU's, else from the
 * PTX the build embeds, which the driver compiles for any later compute capability.
 */
export function canRunArch(gpu: GpuInfo, arch: string): boolean {
  const want = archNumber(arch);
  const have = gpu.arch ? archNumber(gpu.arch) : undefined;
  return want !== undefined && have !== undefined && have >= want;
}
