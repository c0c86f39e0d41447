import { backendFor } from '../backends/registry.js';
import type { AbiEntry, RenderedKernel } from '../backends/types.js';
import type { PtxasReport } from '../backends/cuda/ptxas.js';
import type { TargetName } from '../device/profile.js';
import { formatShape } from '../ir/validate.js';
import { bitsPerWeight, codecOf } from '../quant/index.js';
import { describeChoice, recordedConfig } from '../db/lookup.js';
import type { TuningDb } from '../db/types.js';
import { configInUse, makePlan } from '../plan/index.js';
import type { Plan } from '../plan/types.js';
import { commentText } from '../render/comment-text.js';
import type { Tolerance } from '../reference/compare.js';
import { KGEN_VERSION } from '../version.js';
import type { KernelRequest } from './request.js';
import { resolveRequest } from './request.js';

/**
 * manifest.json: what a user needs to call an emitted kernel from another program without reading
 * its source. Invariant: every figure here is the one the source was rendered from.
 */
export interface Manifest {
  kgen: string;
  op: Plan['op'];
  irHash: string;
  target: TargetName;
  device: string;
  shape: Plan['shape'];
  variant: string;
  config: Plan['config'];
  /** Where the config came from: the default search, the caller's --config, or a tuning record. */
  configSource: ConfigSource;
  /** The tuning record the config came from (configSource record or nearest-record). */
  record?: { database: string; workloadId: number; trialUid: string; shape: Plan['shape']; medianMs: number; measuredAt: string; kgenVersion: string };
  weights?: { format: string; groupSize?: number; bitsPerWeight: number; rowBytes: number; totalBytes: number; layout: string };
  tensors: Record<string, { dtype: string; shape: string; layout: string }>;
  abi: AbiEntry[];
  launch: Plan['launch'];
  loops: string[];
  footprint: Plan['buffers'];
  budgets: Plan['budgets'];
  tolerance: Tolerance;
  templateHash: string;
  build: string;
  /** GPU targets: the architecture the source is for (`sm_89`). */
  arch?: string;
  /** CUDA: what ptxas assigned to the kernel, when nvcc was at hand (see `withPtxasResources`). */
  resources?: PtxasReport;
}

export interface EmitResult {
  /** kernel source files and manifest.json, by file name. */
  files: Record<string, string>;
  plan: Plan;
  manifest: Manifest;
  rendered: RenderedKernel;
  /** What the caller should be told (the CLI prints these on stderr), e.g. which record was used. */
  notes: string[];
}

export interface EmitOptions extends KernelRequest {
  /**
   * How to regenerate the source, printed in its header (through `commentText`, so any text is
   * inert there). Default: the `kgen emit` command for this op, shape, device and the config used.
   */
  command?: string;
  /**
   * A tuning database to take the config from when no config is given: the best record for this
   * device, target, op and shape, else the nearest recorded shape of the op, else the default.
   */
  records?: TuningDb;
}

/** Where an emitted kernel's config came from. */
export type ConfigSource = 'default' | 'given' | 'record' | 'nearest-record';

/** Plans and renders a kernel. Pure: writes nothing (the CLI writes the files). */
export function emit(opts: EmitOptions): EmitResult {
  const req = resolveRequest(opts);
  const recorded = opts.records && !req.config ? recordedConfig(opts.records, req) : undefined;
  const { plan, source } = recorded?.resolved ?? makePlan(req, req.config);
  const backend = backendFor(req.target);
  const irFile = opts.irFile === undefined ? 'OP.json' : /^[\w./-]+$/.test(opts.irFile) ? opts.irFile : `'${opts.irFile.replace(/'/g, "'\\''")}'`;
  const opFlag = opts.ir !== undefined ? `--ir ${irFile}` : `--op ${req.op.name}`;
  const command = opts.command ?? `kgen emit --target ${req.target} ${opFlag} --shape ${formatShape(req.shape)} --device ${req.device.name} --config '${JSON.stringify(configInUse(plan))}'`;
  const rendered = backend.render(plan, { version: KGEN_VERSION, irHash: req.irHash, command: commentText(command) });
  const manifest = buildManifest(plan, req.irHash, recorded?.source ?? source, rendered);
  if (recorded) {
    manifest.record = {
      database: opts.records!.location,
      workloadId: recorded.workload.id,
      trialUid: recorded.trial.uid,
      shape: recorded.workload.shape,
      medianMs: recorded.trial.timing!.medianMs,
      measuredAt: recorded.trial.createdAt,
      kgenVersion: recorded.workload.kgenVersion,
    };
  }
  const notes = recorded ? [describeChoice(recorded)] : [];
  return { files: { ...rendered.files, 'manifest.json': `${JSON.stringify(manifest, null, 2)}\n` }, plan, manifest, rendered, notes };
}

function buildManifest(plan: Plan, irHash: string, configSource: ConfigSource, rendered: RenderedKernel): Manifest {
  const op = plan.op;
  const tensors: Manifest['tensors'] = {};
  let weights: Manifest['weights'];
  if (op.kind === 'matmul') {
    const { M, N, K } = plan.shape as { M: number; N: number; K: number };
    const codec = codecOf(op.weight);
    const rowBytes = (K / codec.weightsPerBlock) * codec.bytesPerBlock;
    weights = {
      format: op.weight.format,
      groupSize: op.weight.groupSize,
      bitsPerWeight: bitsPerWeight(codec),
      rowBytes,
      totalBytes: rowBytes * N,
      layout: `${N} rows of ${K / codec.weightsPerBlock} blocks of ${codec.bytesPerBlock} bytes (docs/formats.md#${op.weight.format})`,
    };
    tensors.x = { dtype: op.x, shape: `[${M},${K}]`, layout: 'row-major' };
    tensors.y = { dtype: op.y, shape: `[${M},${N}]`, layout: 'row-major' };
    if (op.epilogue.bias) tensors.bias = { dtype: 'f32', shape: `[${N}]`, layout: 'contiguous' };
    if (op.epilogue.residual) tensors.residual = { dtype: op.y, shape: `[${M},${N}]`, layout: 'row-major' };
  }
  return {
    kgen: KGEN_VERSION,
    op,
    irHash,
    target: plan.target,
    device: plan.device,
    shape: plan.shape,
    variant: plan.variant,
    config: plan.config,
    configSource,
    weights,
    tensors,
    abi: rendered.abi,
    launch: plan.launch,
    loops: plan.loops,
    footprint: plan.buffers,
    budgets: plan.budgets,
    tolerance: plan.tolerance,
    templateHash: rendered.templateHash,
    build: rendered.build,
    arch: rendered.arch,
  };
}
