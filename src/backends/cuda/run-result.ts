import { getDevice } from '../../device/index.js';
import { archOfComputeCapability, matchGpuProfile } from '../../device/gpu.js';
import { KgenError } from '../../errors.js';
import { canonicalHash } from '../../hash.js';
import { oneLine, valueText } from '../../io/message-text.js';
import { validateOp, validateShape } from '../../ir/validate.js';
import { opKit } from '../../ops/index.js';
import { makePlan } from '../../plan/index.js';
import { rooflineMs } from '../../plan/roofline.js';
import { TRIAL_STATUSES, type ImportedRun, type RunImportContext, type RunResultImport, type TrialStatus } from '../types.js';
import { cudaFingerprint } from './fingerprint.js';

/** The `format` of the result file an emitted run.sh (kgen_run) writes on a GPU box. */
export const RUN_RESULT_FORMAT = 'kgen-cuda-run';
/** The target whose emitted run kit (run.sh) writes these results: this one. */
const RUN_KIT_TARGET = 'cuda';

/**
 * The statuses run.sh writes: every trial status but `unsupported`, which only kgen's runners
 * decide (from their own query of the machine); a run.sh whose nvcc lacks the arch writes
 * `compile_error` with `gpu: null`, refused on import as a run that never reached a GPU.
 */
const RUN_KIT_STATUSES: readonly TrialStatus[] = TRIAL_STATUSES.filter((s) => s !== 'unsupported');

/**
 * The result of one `sh run.sh` (templates/cuda/run.cu.hbs writes it; docs/tuning.md, "Results
 * from run.sh"): what was run (`kernel`, as emit rendered it), where (`gpu`), the verdict against
 * ref.bin and the times. Only the fields import reads are listed.
 */
export interface CudaRunResult {
  format: typeof RUN_RESULT_FORMAT;
  version: 1;
  kernel: {
    kgen: string;
    op: unknown;
    irHash: string;
    device: string;
    target: string;
    arch: string;
    shape: Record<string, number>;
    variant: string;
    config: Record<string, number | string>;
    templateHash: string;
    traffic: { bytes: number; flops: number };
  };
  gpu: { name: string; computeCapability: string; driver?: string } | null;
  status: string;
  checked: boolean;
  comparison?: { maxAbsError: number; nmse: number };
  timing?: { medianMs: number; minMs: number; maxMs: number; spread: number; runs: number };
  error?: string;
  /** nvcc's version kgen_run was built with (`__CUDACC_VER_*`). */
  nvcc?: string;
  /** The -arch run.sh built with (ARCH may override the kernel's). */
  buildArch?: string;
  measuredAt: string;
}

const HINT = 'the file comes from `sh run.sh` next to an emitted CUDA kernel (docs/tuning.md, "Results from run.sh")';

function fail(field: string, problem: string, expected: string, hint = HINT): never {
  throw new KgenError({ field: `import.${field}`, problem, expected, hint });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function str(o: Record<string, unknown>, key: string, path: string): string {
  const v = o[key];
  if (typeof v !== 'string' || !v) fail(`${path}${key}`, `got ${valueText(v)}`, 'a non-empty string');
  return v;
}

/**
 * Turns a run.sh result into the record `kgen db import` merges (src/db/run-result.ts): one workload (device,
 * op, shape, template hash, and a fingerprint from the GPU, driver and nvcc that
 * `cudaFingerprint` makes as the tuner does, so the records compare with `kgen tune`'s on the
 * same machine) holding one trial. The trial's uid is a hash of the file, so importing it twice
 * adds it once. Refused, naming the field: a run whose output was never compared with ref.bin,
 * an `ok` run without times, a run that never reached a GPU, and a GPU that is not the kernel's
 * device profile (its times would be filed under another device).
 */
function cudaRunResultRecord(data: unknown, target: RunImportContext): ImportedRun {
  if (!isObject(data) || data.format !== RUN_RESULT_FORMAT) fail('format', `got ${valueText(isObject(data) ? data.format : data)}`, `"${RUN_RESULT_FORMAT}"`);
  if (data.version !== 1) fail('version', `got ${valueText(data.version)}`, '1');
  const r = data as unknown as CudaRunResult;
  if (!isObject(r.kernel)) fail('kernel', 'missing', 'the kernel object run.sh copies from emit');
  const k = r.kernel as unknown as Record<string, unknown>;
  if (k.target !== RUN_KIT_TARGET) fail('kernel.target', `got ${valueText(k.target)}`, `"${RUN_KIT_TARGET}"`);
  let op;
  try {
    op = validateOp(k.op, 'import.kernel.op');
  } catch (e) {
    fail('kernel.op', (e as Error).message, 'a valid op');
  }
  if (!target.renders.includes(op.kind)) fail('kernel.op.kind', `got ${op.kind}`, target.renders.join(' or '));
  if (canonicalHash(op) !== k.irHash) fail('kernel.irHash', `${String(k.irHash)} is not the hash of the op given`, "the op's IR hash");
  if (!isObject(k.shape)) fail('kernel.shape', 'not an object', 'dimensions like {"M":1,"N":4096,"K":4096}');
  const shape = validateShape(op, k.shape, 'import.kernel.shape');
  const deviceName = str(k, 'device', 'kernel.');
  const device = getDevice(deviceName, { ...target.devices, field: 'import.kernel.device' });
  const arch = str(k, 'arch', 'kernel.');
  if (device.gpu?.arch !== arch) fail('kernel.arch', `${arch} is not ${deviceName}'s ${device.gpu?.arch ?? '(not a GPU)'}`, "the profile's arch");
  // The figures the kernel was planned on (absent from kits of a kgen before profile hashes): the record is theirs, whatever the profile holds now.
  const planned = k.profileHash === undefined ? undefined : str(k, 'profileHash', 'kernel.');
  if (planned !== undefined && !/^[0-9a-f]{16}$/.test(planned)) fail('kernel.profileHash', `got ${valueText(planned)}`, '16 hex digits, as emit writes them');
  if (!isObject(k.config)) fail('kernel.config', 'not an object', 'the config emit rendered');
  // The config must still plan for this op, shape and device: the record will be emitted from.
  const { plan } = (() => {
    try {
      return makePlan(target.requestFor({ op, shape, device }), k.config as Record<string, unknown>);
    } catch (e) {
      return fail('kernel.config', (e as Error).message, 'a config this kgen can plan');
    }
  })();

  const status = str(data, 'status', '') as TrialStatus;
  if (!RUN_KIT_STATUSES.includes(status)) fail('status', `got ${valueText(status)}`, RUN_KIT_STATUSES.join(' | '));
  if (!isObject(r.gpu)) {
    fail('gpu', `null: the run never reached a GPU (${status}${r.error ? `: ${oneLine(String(r.error), 200)}` : ''})`, 'a result from a run that opened the GPU', 'fix what stopped the run (its error; build.log next to run.sh for a compile error) and import the new result');
  }
  const gpuName = str(r.gpu, 'name', 'gpu.');
  const cc = str(r.gpu, 'computeCapability', 'gpu.');
  const arch0 = archOfComputeCapability(cc);
  const match = matchGpuProfile(device, { index: 0, name: gpuName, computeCapability: arch0 && cc, arch: arch0, driverVersion: r.gpu.driver ?? 'unknown' });
  if (!match.matches) {
    fail('gpu', `the run was on ${gpuName} (compute capability ${cc}) but the kernel was emitted for ${deviceName}: ${match.why}`, `a GPU ${deviceName}'s profile describes`, `emit for the GPU's own profile (\`kgen devices\` on that machine) and run that`);
  }
  if (r.buildArch !== undefined && r.buildArch !== arch) fail('buildArch', `run.sh built for ${r.buildArch} (ARCH set), the kernel is for ${arch}`, `a run built for ${arch}`);
  if ((status === 'ok' || status === 'wrong_result') && r.checked !== true) {
    fail('checked', `${String(r.checked)}: the output was never compared with ref.bin, so the run proves nothing`, 'a run with ref.bin in its data directory (`kgen emit --data` writes it)');
  }
  if (status === 'ok' && !isObject(r.timing)) fail('timing', 'missing on an ok run', 'a timed run (RUNS > 0)');

  const measuredAt = str(data, 'measuredAt', '');
  const trial: ImportedRun['trial'] = {
    uid: canonicalHash(data),
    config: plan.config,
    status,
    strategy: 'run.sh',
    runner: `run.sh on ${gpuName} (nvcc + CUDA runtime)`,
  };
  if (status === 'ok') trial.timing = r.timing;
  if (r.comparison) Object.assign(trial, { nmse: r.comparison.nmse, maxAbsError: r.comparison.maxAbsError });
  if (r.error) trial.error = r.error;
  const workload: ImportedRun['workload'] = {
    device: deviceName,
    fingerprint: { ...cudaFingerprint({ profile: deviceName, arch, gpu: gpuName, computeCapability: cc, driver: r.gpu.driver ?? 'unknown', nvcc: r.nvcc ?? 'unknown' }), ...(planned ? { profileHash: planned } : {}) },
    target: RUN_KIT_TARGET,
    op,
    irHash: canonicalHash(op),
    shape,
    weightFormat: opKit(op.kind).weights(op)?.format,
    templateHash: str(k, 'templateHash', 'kernel.'),
    kgenVersion: str(k, 'kgen', 'kernel.'),
    // The traffic is recomputed from the plan, not trusted from the file: it feeds GB/s and roofline figures.
    bytes: plan.traffic.bytes,
    flops: plan.traffic.flops,
    rooflineMs: rooflineMs(device, plan.traffic),
    measuredAt,
  };
  return { workload, trial };
}

/** The CUDA target's run-kit results (`Target.runResults`): what `sh run.sh` writes. */
export const cudaRunResults: RunResultImport = { format: RUN_RESULT_FORMAT, toRecord: cudaRunResultRecord };
