import { allDevices, getDevice, type HostOptions } from '../device/index.js';
import { planRequest, targetFor } from '../backends/registry.js';
import type { Target } from '../backends/types.js';
import type { DeviceProfile } from '../device/profile.js';
import { KgenError } from '../errors.js';
import { CATALOG, catalogOp } from '../ir/catalog.js';
import { irOf } from '../ir/ops.js';
import type { Op } from '../ir/types.js';
import { opHash, parseShape, validateOp, validateShape } from '../ir/validate.js';
import { parseJsonInput } from '../io/json-input.js';
import { quoted, valueText } from '../io/message-text.js';
import type { PlanRequest } from '../plan/types.js';

/**
 * What every kernel operation (emit, verify, plan) is asked: which op, at which shape, for which
 * device and target, optionally with a config. Fields mirror the CLI flags; `host` is what the
 * device name `host` stands for (`HostOptions`: this machine unless a forced host is given).
 */
export interface KernelRequest extends HostOptions {
  target: string;
  /** A catalog op name (`kgen ops`); exactly one of `op` and `ir`. */
  op?: string;
  /** A user's op as parsed JSON; validated like any user input. */
  ir?: unknown;
  /** The file `ir` was read from, shown as `--ir FILE` in an emitted header's command. */
  irFile?: string;
  /** `M=1,N=4096,K=4096` or an object of the same dimensions. */
  shape: string | Record<string, number>;
  /**
   * Device profile name, a profile file `NAME.json`, or a profile object (a caller's own, checked
   * as a file's is: `getDevice`); defaults per target (c: host, wasm: wasm-simd128, cuda: rtx4090, wgsl: webgpu).
   */
  device?: string | DeviceProfile;
  /** C only: the instruction-set variant, same as config.isa. */
  isa?: string;
  /** Knob values (a partial config over the default), as an object or JSON text. */
  config?: Record<string, unknown> | string;
}

/**
 * A checked request: a plan request (op, shape, device, target and its planner) plus what the caller
 * asked for: `config` (knobs given as a config) and `isa` (given alone; it narrows the tuning
 * records to that ISA's instead of passing them over as a config does).
 */
export interface ResolvedRequest extends PlanRequest {
  irHash: string;
  config?: Record<string, unknown>;
  isa?: string;
}

/**
 * Refuses options that are not an object (a JavaScript caller's `emit()` or `pack(null)`) with a
 * KgenError naming `call`, rather than the TypeError reading a field of them would throw.
 */
export function checkOptionsObject(opts: unknown, call: string, example: string): void {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw new KgenError({ field: `${call} options`, problem: `got ${valueText(opts)}`, expected: `an options object like ${example}`, hint: `pass ${call} one object (README, "Library")` });
  }
}

/** What `checkMembers` requires of an option: its members by name, with the `typeof` each must have. */
export interface MembersCheck {
  field: string;
  members: Record<string, 'function' | 'string'>;
  expected: string;
  hint: string;
}

/**
 * An optional option that kgen calls into (`records`, a TuningDb; `runner`, a KernelRunner): absent,
 * or an object with the members the call uses. A JavaScript caller's `records: {}` is then a
 * KgenError naming the field and what it lacks, not a TypeError from deep inside the call.
 */
export function checkMembers(value: unknown, check: MembersCheck): void {
  if (value === undefined) return;
  const isObject = value !== null && typeof value === 'object';
  const lacking = Object.entries(check.members)
    .filter(([name, kind]) => !isObject || typeof (value as Record<string, unknown>)[name] !== kind)
    .map(([name, kind]) => (kind === 'function' ? `${name}()` : name));
  if (lacking.length === 0) return;
  const problem = isObject ? `got an object without ${lacking.join(', ')}` : `got ${valueText(value, 40)}`;
  throw new KgenError({ field: check.field, problem, expected: check.expected, hint: check.hint });
}

export function resolveRequest(req: KernelRequest): ResolvedRequest {
  checkOptionsObject(req, 'kgen', "{ target: 'c', op: 'matmul_q4', shape: 'M=1,N=4096,K=4096' }");
  const target = targetFor(req.target);
  let op: Op;
  if (req.op !== undefined && req.ir !== undefined) {
    throw new KgenError({ field: '--op', problem: 'both --op and --ir given', expected: 'one of them', hint: 'use --op for a catalog op, --ir for your own' });
  } else if (req.ir !== undefined) {
    op = validateOp(req.ir);
  } else if (req.op !== undefined) {
    const found = catalogOp(req.op);
    if (!found) {
      throw new KgenError({ field: '--op', problem: `unknown op ${quoted(String(req.op))}`, expected: `one of ${Object.keys(CATALOG).join(', ')}`, hint: 'run `kgen ops`, or pass your own with --ir op.json' });
    }
    op = found;
  } else {
    throw new KgenError({ field: '--op', problem: 'no op given', expected: '--op NAME or --ir FILE', hint: 'run `kgen ops` to list the catalog' });
  }
  if (typeof req.shape !== 'string' && (req.shape === null || typeof req.shape !== 'object' || Array.isArray(req.shape))) {
    throw new KgenError({ field: '--shape', problem: req.shape === undefined ? 'missing' : `got ${valueText(req.shape)}`, expected: `dimensions like ${irOf(op.kind).exampleShape}, as text or an object` });
  }
  const shape = typeof req.shape === 'string' ? parseShape(req.shape, op) : validateShape(op, req.shape);
  const device = getDevice(req.device ?? target.defaultDevice, { host: req.host });
  const planned = planRequest({ op, shape, device, target: target.name });
  const config = parseConfig(req.config);
  if (req.isa !== undefined) {
    checkVariant(req.isa, device, target, { host: req.host });
    if (config?.isa !== undefined && config.isa !== req.isa) {
      throw new KgenError({ field: '--isa', problem: `--isa ${req.isa} contradicts config.isa ${valueText(config.isa)}`, expected: 'one of them' });
    }
    return { ...planned, irHash: opHash(op), config, isa: req.isa };
  }
  return { ...planned, irHash: opHash(op), config };
}

const CONFIG_EXPECTED = 'a JSON object like {"nTile":16}';

/** A config given as JSON text or as an object: an object of knob values, or a KgenError. */
function parseConfig(given: Record<string, unknown> | string | undefined): Record<string, unknown> | undefined {
  const config = typeof given === 'string' ? parseJsonInput(given, { field: '--config', expected: CONFIG_EXPECTED }) : given;
  if (config !== undefined && (config === null || typeof config !== 'object' || Array.isArray(config))) {
    throw new KgenError({ field: '--config', problem: `got ${valueText(config)}`, expected: CONFIG_EXPECTED });
  }
  return config as Record<string, unknown> | undefined;
}

/**
 * `--isa` against the variants the target renders and the device offers. A variant the device
 * lacks names the profiles that have it and what it needs (NEON: an Arm profile, whose kernels
 * run under qemu here); `host` among them as `hostOpts` resolves it.
 */
function checkVariant(isa: string, device: DeviceProfile, target: Target, hostOpts: HostOptions): void {
  const variants = target.variants;
  if (!variants) throw new KgenError({ field: '--isa', problem: `the ${target.name} target has no ISA variants`, expected: 'no --isa' });
  if (!variants.all.includes(isa)) {
    throw new KgenError({ field: '--isa', problem: `unknown ISA ${quoted(isa)}`, expected: `one of ${variants.all.join(', ')}` });
  }
  const here = variants.of(device);
  if (here.includes(isa)) return;
  // Shipped profiles first: `host` is named last (a forced host may have the variant too).
  const others = allDevices(hostOpts).filter((d) => d.targets.includes(target.name) && variants.of(d).includes(isa)).map((d) => d.name).sort((a, b) => Number(a === 'host') - Number(b === 'host'));
  throw new KgenError({
    field: '--isa',
    problem: `device ${device.name} has no ${isa} (its variants: ${here.join(', ')})`,
    expected: `an ISA of ${device.name}, or a --device that has ${isa}${others.length ? `, e.g. --device ${others[0]}` : ''}`,
    hint: `${variants.describe(isa)}; or omit --isa to take the best variant the device has`,
  });
}
