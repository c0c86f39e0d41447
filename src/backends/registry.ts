import type { DeviceProfile } from '../device/profile.js';
import type { DeviceOptions } from '../device/index.js';
import { InternalError, KgenError } from '../errors.js';
import type { Op, OpKind, Shape } from '../ir/types.js';
import { quoted } from '../io/message-text.js';
import { opKit } from '../ops/index.js';
import { checkTarget } from '../plan/index.js';
import type { Plan, PlanRequest } from '../plan/types.js';
import { cTarget } from './c/index.js';
import { cudaTarget } from './cuda/index.js';
import type { Backend, ImportedRun, KernelRunner, RenderContext, RenderedKernel, Target } from './types.js';
import { wasmTarget } from './wasm/index.js';
import { wgslTarget } from './wgsl/index.js';

/** kgen's targets by name: one line per target. */
const TARGETS: Record<string, Target> = {
  c: cTarget,
  cuda: cudaTarget,
  wgsl: wgslTarget,
  wasm: wasmTarget,
};

/** Every target's name, in registry order. */
export function targetNames(): string[] {
  return Object.keys(TARGETS);
}

/** The target called `name`, or a KgenError naming the targets there are. */
export function targetFor(name: string, field = '--target'): Target {
  const t = Object.hasOwn(TARGETS, name) ? TARGETS[name] : undefined;
  if (!t) throw new KgenError({ field, problem: `unknown target ${quoted(String(name))}`, expected: `one of ${targetNames().join(', ')}` });
  return t;
}

/** The targets whose backends render ops of `kind` (what `kgen ops` lists). */
export function targetsRendering(kind: OpKind): string[] {
  return targetNames().filter((n) => TARGETS[n]!.backend?.capabilities.ops.includes(kind));
}

/**
 * A plan request for `target`: its planner for the op's kind, after the device and the target's
 * needs are checked (a device the target does not run, a missing feature, an op kind the target
 * does not plan: each a KgenError naming it).
 */
export function planRequest(r: { op: Op; shape: Shape; device: DeviceProfile; target: string }): PlanRequest {
  const target = targetFor(r.target);
  checkTarget(r.device, target.name);
  for (const need of target.needs ?? []) {
    if (!need.has(r.device)) {
      throw new KgenError({ field: '--device', problem: `${r.device.name} lacks ${need.feature}, which ${target.name} kernels need`, expected: `a device with ${need.feature}`, hint: '`kgen devices` lists the profiles and their targets' });
    }
  }
  const planner = target.planners[r.op.kind];
  if (!planner) {
    throw new KgenError({ field: '--op', problem: `the ${target.name} target does not plan ${r.op.kind} ops`, expected: `an op of kind ${Object.keys(target.planners).join(' or ')}` });
  }
  return { op: r.op, shape: r.shape, device: r.device, target: target.name, planner };
}

/**
 * The backend that renders (and runs) `req`, after checking what the request asks for against
 * what the backend declares it renders: the one place a gap (a target that only plans, an op
 * kind or weight format it does not render) becomes a KgenError, before any renderer runs.
 */
export function checkSupport(req: PlanRequest): Backend {
  const target = targetFor(req.target);
  const backend = target.backend;
  if (!backend) {
    const rendering = targetNames().filter((n) => TARGETS[n]!.backend);
    throw new KgenError({
      field: '--target',
      problem: `the ${target.name} backend is planned but not implemented yet (its plans and budgets already work: see \`kgen plan --target ${target.name}\`)`,
      expected: `one of ${rendering.join(', ')}`,
      hint: `use --target ${rendering[0]}`,
    });
  }
  const caps = backend.capabilities;
  if (!caps.ops.includes(req.op.kind)) {
    throw new KgenError({
      field: '--op',
      problem: `the ${target.title} backend does not render ${req.op.kind} yet`,
      expected: `an op of kind ${caps.ops.join(' or ')}`,
      hint: `\`kgen plan --target ${target.name}\` still shows its plan; \`kgen ops\` lists what each target renders`,
    });
  }
  const weights = opKit(req.op.kind).weights(req.op);
  if (weights && !caps.formats.includes(weights.format)) {
    throw new KgenError({ field: '--op', problem: `the ${target.title} backend does not decode ${weights.format} weights`, expected: `a weight format of ${caps.formats.join(', ')}` });
  }
  const kvCache = opKit(req.op.kind).kvCache(req.op);
  if (kvCache && caps.kvCaches && !caps.kvCaches.includes(kvCache)) {
    throw new KgenError({ field: '--op', problem: `the ${target.title} backend does not read a ${kvCache} KV cache yet`, expected: `a KV cache of ${caps.kvCaches.join(', ')}`, hint: `\`kgen plan --target ${target.name}\` still shows its plan; the C target reads every KV format` });
  }
  if (opKit(req.op.kind).checkedKvLengths(req.op, req.shape) && !caps.runtimeKvLength) {
    const taking = targetNames().filter((n) => TARGETS[n]!.backend?.capabilities.runtimeKvLength);
    throw new KgenError({
      field: '--ir kvLength',
      problem: `the ${target.title} backend's attention kernels read Skv positions every call: they take no run-time KV length yet`,
      expected: `no "kvLength": "runtime" with --target ${target.name}`,
      hint: `emit a kernel per length (Skv), or use --target ${taking.join(' or ')}`,
    });
  }
  if (caps.addressableBytes !== undefined) {
    const { tensors, weights: packed } = opKit(req.op.kind).tensors(req.op, req.shape);
    const bytes = Object.values(tensors).reduce((a, t) => a + t.bytes, packed?.totalBytes ?? 0);
    if (bytes > caps.addressableBytes) {
      throw new KgenError({
        field: '--shape',
        problem: `its tensors take ${bytes} bytes, more than the ${caps.addressableBytes} one ${target.title} memory addresses`,
        expected: `a shape whose inputs and outputs fit in ${caps.addressableBytes / 2 ** 30} GiB`,
        hint: 'split the op (fewer rows, heads or positions per kernel), or use the C target',
      });
    }
  }
  return backend;
}

/**
 * Renders a plan of a supported request (see `checkSupport`) with its family's renderer: the one
 * place a plan of the union meets the renderer typed for its family.
 */
export function renderPlan(plan: Plan, ctx: RenderContext): RenderedKernel {
  const render = targetFor(plan.target).backend?.renderers[plan.family] as ((p: Plan, c: RenderContext) => RenderedKernel) | undefined;
  if (!render) throw new InternalError(`no renderer for ${plan.family} plans on ${plan.target} (checkSupport lets no such request through)`);
  return render(plan, ctx);
}

/** The runner for a plan of a supported request, or a KgenError while its target only renders. */
export function runnerFor(plan: Plan, opts?: { preferReal?: boolean }): KernelRunner {
  const backend = targetFor(plan.target).backend;
  if (!backend?.runnerFor) {
    throw new KgenError({ field: '--target', problem: `kgen cannot build and run ${plan.target} kernels yet`, expected: 'a target with a runner', hint: '`kgen emit` still renders it' });
  }
  return backend.runnerFor(plan, opts);
}

/**
 * `data` (a parsed JSON file) as a record to import, where it is a result of a target's run kit
 * (its `format` is one a `Target.runResults` declares); undefined for any other JSON. The target
 * checks every field, planning the config through `planRequest` as emit does, on the profile its
 * device name resolves to under `devices` (`getDevice`).
 */
export function importRunResult(data: unknown, devices: DeviceOptions = {}): ImportedRun | undefined {
  const format = data !== null && typeof data === 'object' ? (data as { format?: unknown }).format : undefined;
  const target = Object.values(TARGETS).find((t) => t.runResults && t.runResults.format === format);
  if (!target?.runResults) return undefined;
  const context = { renders: target.backend?.capabilities.ops ?? [], requestFor: (r: Omit<Parameters<typeof planRequest>[0], 'target'>) => planRequest({ ...r, target: target.name }), devices };
  return target.runResults.toRecord(data, context);
}
