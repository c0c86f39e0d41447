import { KgenError } from '../errors.js';
import { fileHash } from '../hash.js';
import { parseJsonInput } from '../io/json-input.js';
import { quoted, shellArg, valueText } from '../io/message-text.js';
import { checkSupport, renderPlan } from '../backends/registry.js';
import type { AbiEntry, BindingInterface, Fingerprint, RenderedKernel } from '../backends/types.js';
import { formatShape } from '../ir/validate.js';
import { opKit } from '../ops/index.js';
import type { TensorInfo, WeightsInfo } from '../ops/index.js';
import { describeChoice, figuresNotes, recordedConfig, type RecordedChoice } from '../db/lookup.js';
import { isProfileFile } from '../device/profile.js';
import type { TuningDb } from '../db/types.js';
import { configInUse, makePlan, spaceFor } from '../plan/index.js';
import type { Config, Plan } from '../plan/types.js';
import { commentText } from '../render/comment-text.js';
import type { Tolerance } from '../reference/compare.js';
import { KGEN_VERSION } from '../version.js';
import type { KernelRequest, ResolvedRequest } from './request.js';
import { checkMembers, resolveRequest } from './request.js';

/**
 * manifest.json: what a user needs to call an emitted kernel from another program without reading
 * its source. Invariant: every figure here is the one the source was rendered from.
 */
export interface Manifest {
  kgen: string;
  op: Plan['op'];
  irHash: string;
  target: string;
  device: string;
  shape: Plan['shape'];
  variant: string;
  /** The knobs this kernel uses (the plan's others change nothing for it): what `--config` takes to emit it again. */
  config: Plan['config'];
  /** Where the config came from: the default search, the caller's --config, or a tuning record. */
  configSource: ConfigSource;
  /** The tuning record the config came from (configSource record or nearest-record). */
  record?: {
    database: string; workloadId: number; trialUid: string; shape: Plan['shape']; medianMs: number; measuredAt: string; kgenVersion: string; fingerprint: Fingerprint;
    /** The templates the record's kernel was rendered from: another hash than the manifest's `templateHash` means the kernel may have changed since it was timed. */
    templateHash: string;
  };
  weights?: WeightsInfo;
  /**
   * Attention: the version of the entry points' calling convention, the same on every target
   * (`ATTENTION_ABI_VERSION`, docs/ARCHITECTURE.md "Attention ABI"); absent in manifests of version 1.
   */
  abiVersion?: number;
  /** The tensors a call reads and writes; attention lists them in its entry points' argument order. */
  tensors: Record<string, TensorInfo>;
  /** Bytes of the workspace buffer the entry points take (C and WebAssembly; CUDA states it in `launch`, WGSL in `bindingInterface`). */
  workspaceBytes?: number;
  /** C: what the workspace's address must be a multiple of, in bytes. */
  workspaceAlignment?: number;
  /** C: bytes of the kernel's buffers on the stack of each thread running an entry point; a thread the caller creates needs that much stack beyond its own use. */
  threadStackBytes?: number;
  /** Attention: the factor scores are multiplied by before the softmax (the op's `scale`, else 1/sqrt(D)). */
  softmaxScale?: number;
  /** Attention with a run-time KV length: the lengths a call may pass (Skv, the most, is the cache's capacity). */
  kvLength?: { min: number; max: number };
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
  /** Targets with explicit bindings (WGSL): bindings, sizes, workgroup size, dispatch, required features and limits. */
  bindingInterface?: BindingInterface;
  /** What the backend's compiler assigned to the kernel (CUDA: ptxas's report), when asked and at hand (see `withResources`). */
  resources?: Record<string, number | string>;
  /** `emit --data`: the seed and what each data file written beside the kernel holds (see `withDataFiles`). */
  data?: { seed: number; files: Record<string, string> };
  /**
   * Every other file written beside this manifest (`emit -o`, a package's kernel folder), by name,
   * with the hex sha256 of its bytes as written (`outputFiles`): what a later `emit -o DIR --force`
   * removes where its kernel writes no file of that name, while the bytes are unchanged.
   */
  files?: Record<string, string>;
}

export interface EmitResult {
  /** The kernel's text files (source, header, loader, run kit) and manifest.json, by file name. */
  files: Record<string, string>;
  /**
   * Binary data files to write beside the kernel, by file name: `withDataFiles`'s seeded inputs and
   * reference (`emit --data`); absent otherwise. Assembled modules are not here but in
   * `rendered.binaries()`; `outputFiles` joins all three.
   */
  dataFiles?: Record<string, Uint8Array>;
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
  /** The base name of the kernel's symbols (default `kgen_<op name>`): see `RenderContext.symbol`. */
  symbol?: string;
}

/** Where an emitted kernel's config came from. */
export type ConfigSource = 'default' | 'given' | 'record' | 'nearest-record';

/**
 * The plan emit renders for a resolved request: its config if given; else the tuning record `records`
 * holds for it under the profile's current figures (or the nearest recorded shape; with `isa`, the
 * fastest record of that ISA), else the default (of `isa`). `kgen plan` and `kgen verify` take the
 * same. `notes` say what the caller should know of the records' figures (`figuresNotes`): records
 * passed over as tuned under other figures of the profile, a record that predates profile hashes.
 */
export function choosePlan(req: ResolvedRequest, records?: TuningDb): { plan: Plan; source: ConfigSource; recorded?: RecordedChoice; notes: string[] } {
  const pinned: Config = req.isa !== undefined ? { isa: req.isa } : {};
  const recorded = records && !req.config ? recordedConfig(records, req, pinned) : undefined;
  const notes = records && !req.config ? figuresNotes(records, req, recorded) : [];
  if (recorded) return { plan: recorded.resolved.plan, source: recorded.source, recorded, notes };
  return { ...makePlan(req, { ...req.config, ...pinned }, { field: req.config ? '--config' : '--isa' }), notes };
}

/**
 * Where the default took a lesser ISA than the device's best (D = 70 is no whole number of AVX2 or
 * AVX-512 vectors), why: a user expecting AVX-512 code should not find scalar code silently.
 */
function fallbackIsaNote(req: ResolvedRequest, plan: Plan): string[] {
  const best = spaceFor(req).knobs.find((k) => k.name === 'isa')?.values[0];
  if (best === undefined || plan.config.isa === best) return [];
  try {
    makePlan(req, { isa: best }, { field: '--isa' });
    return []; // legal, only over a budget the default met with another ISA: nothing to explain
  } catch (e) {
    if (!(e instanceof KgenError)) throw e;
    const why = e.problem.replace(/^\{"isa":"[^"]*"\} is ruled out: /, '');
    return [`${String(plan.config.isa)} kernel, not ${String(best)}: ${why}`];
  }
}

/** `result` with `manifest` in place of its manifest, in the object and in its manifest.json alike. */
export function withManifest(result: EmitResult, manifest: Manifest): EmitResult {
  return { ...result, manifest, files: { ...result.files, 'manifest.json': `${JSON.stringify(manifest, null, 2)}\n` } };
}

/**
 * Every file `emit -o` writes for `result`, by file name: its text files, its data files and
 * `binaries`, the modules `rendered.binaries()` assembled (WebAssembly), with manifest.json listing
 * the others and their digests in `files`; `result` carries that manifest too.
 */
export function outputFiles(result: EmitResult, binaries: Record<string, Uint8Array> = {}): { result: EmitResult; files: Record<string, string | Uint8Array> } {
  const { 'manifest.json': _, ...others } = { ...result.files, ...result.dataFiles, ...binaries };
  const listed = withManifest(result, { ...result.manifest, files: Object.fromEntries(Object.entries(others).map(([name, content]) => [name, fileHash(content)])) });
  return { result: listed, files: { ...listed.files, ...listed.dataFiles, ...binaries } };
}

/** What a directory's manifest.json says about the files written beside it (see `earlierOutputFiles`). */
export type EarlierOutput =
  /** No kgen manifest (missing, another program's, not JSON): it says nothing. */
  | { kind: 'none' }
  /** A kgen manifest listing its files (`Manifest.files`): plain names and their sha256. */
  | { kind: 'listed'; files: Record<string, string> }
  /** A kgen manifest of a kgen that did not list its files: which are kgen's cannot be told. */
  | { kind: 'unlisted' };

/**
 * What the text of a directory's manifest.json (an earlier `emit -o`) says about the files that emit
 * wrote. Only plain file names with 64-hex-digit digests are taken from its `files`; anything else in
 * it names no file kgen would touch.
 */
export function earlierOutputFiles(manifestText: string): EarlierOutput {
  let m: unknown;
  try {
    m = parseJsonInput(manifestText, { field: 'manifest.json', expected: 'a kgen manifest' });
  } catch (e) {
    if (e instanceof KgenError) return { kind: 'none' };
    throw e;
  }
  if (typeof m !== 'object' || m === null) return { kind: 'none' };
  // A kgen manifest has these three as strings (what they hold does not matter here).
  const { kgen, target: targetName, templateHash, files } = m as Partial<Record<keyof Manifest, unknown>>;
  if (typeof kgen !== 'string' || typeof targetName !== 'string' || typeof templateHash !== 'string') return { kind: 'none' };
  if (typeof files !== 'object' || files === null || Array.isArray(files)) return { kind: 'unlisted' };
  const plain = (name: string) => name !== '' && name !== '.' && name !== '..' && !/[/\\\0]/.test(name);
  return { kind: 'listed', files: Object.fromEntries(Object.entries(files).filter(([name, digest]) => plain(name) && typeof digest === 'string' && /^[0-9a-f]{64}$/.test(digest))) };
}

/** Plans and renders a kernel. Pure: writes nothing (the CLI writes the files). */
export function emit(opts: EmitOptions): EmitResult {
  const req = resolveRequest(opts);
  // What choosePlan and the manifest's record read of it.
  checkMembers(opts.records, {
    field: 'records',
    members: { workloads: 'function', trials: 'function', location: 'string' },
    expected: "a TuningDb, as openTuningDb(path, { access: 'read' }) opens",
    hint: 'pass the database openTuningDb returns, or leave records out for the default config',
  });
  checkSupport(req);
  const { plan, source, recorded, notes: figures } = choosePlan(req, opts.records);
  const irFile = opts.irFile === undefined ? 'OP.json' : shellArg(opts.irFile);
  const opFlag = opts.ir !== undefined ? `--ir ${irFile}` : `--op ${req.op.name}`;
  // A profile read from a file is known by name only in this process: the command names the file.
  const deviceArg = typeof opts.device === 'string' && isProfileFile(opts.device) ? shellArg(opts.device) : req.device.name;
  if (opts.command !== undefined && typeof opts.command !== 'string') {
    throw new KgenError({ field: 'command', problem: `got ${valueText(opts.command, 40)}`, expected: 'the text of a command (it is printed in the kernel\'s header)' });
  }
  const command = opts.command ?? `kgen emit --target ${req.target} ${opFlag} --shape ${formatShape(req.shape)} --device ${deviceArg} --config '${JSON.stringify(configInUse(plan))}'${opts.symbol !== undefined ? ` --symbol ${opts.symbol}` : ''}`;
  if (opts.symbol !== undefined && !/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(opts.symbol)) {
    throw new KgenError({ field: '--symbol', problem: `${quoted(opts.symbol)} is not a C identifier`, expected: 'letters, digits and _, not starting with a digit, at most 64 characters' });
  }
  const rendered = renderPlan(plan, { version: KGEN_VERSION, irHash: req.irHash, command: commentText(command), ...(opts.symbol !== undefined ? { symbol: opts.symbol } : {}) });
  const manifest = buildManifest(plan, req.irHash, source, rendered);
  if (recorded) {
    manifest.record = {
      database: opts.records!.location,
      workloadId: recorded.workload.id,
      trialUid: recorded.trial.uid,
      shape: recorded.workload.shape,
      // Six significant digits: a median of measured times, not a figure to 17 digits of float noise.
      medianMs: Number(recorded.trial.timing!.medianMs.toPrecision(6)),
      measuredAt: recorded.trial.createdAt,
      kgenVersion: recorded.workload.kgenVersion,
      fingerprint: recorded.workload.fingerprint,
      templateHash: recorded.workload.templateHash,
    };
  }
  const notes = [...(recorded ? [describeChoice(recorded), ...staleRecordNote(recorded, rendered.templateHash)] : []), ...figures];
  if (source === 'default' && req.isa === undefined) notes.push(...fallbackIsaNote(req, plan));
  return withManifest({ files: rendered.files, plan, manifest, rendered, notes }, manifest);
}

/**
 * Records store configs, not code (docs/tuning.md): a record made by another kgen or from other
 * templates was timed on the kernel those rendered for its config, which may not be the one
 * emitted now (a template or a planner default changed since). Said, not refused: the config is
 * still legal, and usually still a good one.
 */
function staleRecordNote(recorded: RecordedChoice, templateHash: string): string[] {
  const w = recorded.workload;
  if (w.templateHash === templateHash && w.kgenVersion === KGEN_VERSION) return [];
  return [
    `that record was timed on the kernel kgen ${w.kgenVersion} rendered from templates ${w.templateHash}; this is kgen ${KGEN_VERSION} with templates ${templateHash}, ` +
      'so the kernel emitted may differ from the one timed: run `kgen tune` again to time this one',
  ];
}

function buildManifest(plan: Plan, irHash: string, configSource: ConfigSource, rendered: RenderedKernel): Manifest {
  const { tensors, weights, abiVersion, softmaxScale, kvLength } = opKit(plan.op.kind).tensors(plan.op, plan.shape);
  return {
    kgen: KGEN_VERSION,
    op: plan.op,
    irHash,
    target: plan.target,
    device: plan.device,
    shape: plan.shape,
    variant: plan.variant,
    config: configInUse(plan),
    configSource,
    weights,
    abiVersion,
    tensors,
    workspaceBytes: rendered.workspaceBytes,
    workspaceAlignment: rendered.workspaceAlignment,
    threadStackBytes: rendered.threadStackBytes,
    softmaxScale,
    kvLength,
    abi: rendered.abi,
    launch: plan.launch,
    loops: plan.loops,
    footprint: plan.buffers,
    budgets: plan.budgets,
    tolerance: plan.tolerance,
    templateHash: rendered.templateHash,
    build: rendered.build,
    arch: rendered.arch,
    bindingInterface: rendered.bindingInterface,
  };
}
