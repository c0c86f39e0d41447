import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import type { CpuLimits, DeviceProfile } from './profile.js';

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function parseSize(text: string | undefined): number | undefined {
  const m = text && /^(\d+)([KMG]?)/.exec(text.trim());
  if (!m) return undefined;
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2] as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * mult;
}

/** Cache sizes of cpu0 from sysfs, by level (data/unified caches only). */
function cacheSizes(): { l1d?: number; l2?: number; l3?: number } {
  const out: { l1d?: number; l2?: number; l3?: number } = {};
  for (let i = 0; i < 8; i++) {
    const base = `/sys/devices/system/cpu/cpu0/cache/index${i}`;
    const level = readText(`${base}/level`)?.trim();
    const type = readText(`${base}/type`)?.trim();
    if (!level || type === 'Instruction') continue;
    const size = parseSize(readText(`${base}/size`));
    if (level === '1') out.l1d = size;
    else if (level === '2') out.l2 = size;
    else if (level === '3') out.l3 = size;
  }
  return out;
}

const X86_FLAGS: Record<string, string> = {
  avx2: 'avx2', fma: 'fma', f16c: 'f16c', avx512f: 'avx512f', avx512bw: 'avx512bw', avx512vl: 'avx512vl',
  avx512_vnni: 'avx512vnni', avx_vnni: 'avxvnni',
};
const ARM_FLAGS: Record<string, string> = { asimd: 'neon', asimddp: 'dotprod', fphp: 'fp16', i8mm: 'i8mm' };

let isaCache: { arch: CpuLimits['arch']; isa: string[]; model: string } | undefined;
let hostCache: DeviceProfile | undefined;

/** ISA extensions of this CPU, in kgen's names, read from /proc/cpuinfo once per process. */
export function hostIsa(): { arch: CpuLimits['arch']; isa: string[]; model: string } {
  isaCache ??= readHostIsa();
  return isaCache;
}

function readHostIsa(): { arch: CpuLimits['arch']; isa: string[]; model: string } {
  const info = readText('/proc/cpuinfo') ?? '';
  const arch = process.arch === 'arm64' ? 'aarch64' : 'x86_64';
  const flagLine = /^(flags|Features)\s*:\s*(.*)$/m.exec(info)?.[2] ?? '';
  const flags = new Set(flagLine.split(/\s+/));
  const table = arch === 'x86_64' ? X86_FLAGS : ARM_FLAGS;
  const isa = Object.entries(table).filter(([flag]) => flags.has(flag)).map(([, name]) => name);
  const model = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? cpus()[0]?.model ?? 'unknown CPU';
  return { arch, isa, model };
}

/**
 * The `host` profile: this machine's CPU, detected once per process. Bandwidth and peak are estimates (marked
 * so in `sources`); `kgen bench` measures the real bandwidth.
 */
export function detectHost(): DeviceProfile {
  hostCache ??= readHost();
  return hostCache;
}

function readHost(): DeviceProfile {
  const { arch, isa, model } = hostIsa();
  const caches = cacheSizes();
  const cores = cpus().length;
  const vectorBits = isa.includes('avx512f') ? 512 : isa.includes('avx2') || isa.includes('fma') ? 256 : 128;
  const clockGHz = (cpus()[0]?.speed ?? 3000) / 1000 || 3;
  const f32FlopsPerCycle = (vectorBits / 32) * 2 * 2;
  return {
    name: 'host',
    description: `this machine: ${model.trim()}, ${cores} cores`,
    kind: 'cpu',
    targets: ['c', 'wasm'],
    cpu: {
      arch,
      isa,
      cores,
      threads: cores,
      vectorRegisters: isa.includes('avx512f') || arch === 'aarch64' ? 32 : 16,
      l1dBytes: caches.l1d ?? 32768,
      l2Bytes: caches.l2 ?? 524288,
      l3Bytes: caches.l3 ?? 8388608,
      clockGHz,
    },
    memory: { bandwidthGBs: 10 * Math.min(cores, 8), capacityGiB: Math.round(totalmem() / 1024 ** 3) },
    peak: { f32TFLOPS: (cores * clockGHz * f32FlopsPerCycle) / 1000, int8TOPS: (cores * clockGHz * f32FlopsPerCycle * 4) / 1000 },
    sources: {
      cpu: 'detected: /proc/cpuinfo flags, /sys/devices/system/cpu/cpu0/cache, os.cpus()',
      memory: 'estimate (10 GB/s per core, up to 8); `npm run bench` measures it',
      peak: `estimate: cores x ${clockGHz.toFixed(2)} GHz x ${f32FlopsPerCycle} f32 flops/cycle (two ${vectorBits}-bit FMA pipes)`,
    },
  };
}
