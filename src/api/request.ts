import { getDevice } from '../device/index.js';
import type { DeviceProfile, TargetName } from '../device/profile.js';
import { TARGETS } from '../device/profile.js';
import { KgenError } from '../errors.js';
import { CATALOG } from '../ir/catalog.js';
import type { Op, Shape } from '../ir/types.js';
import { opHash, parseShape, validateOp, validateShape } from '../ir/validate.js';

/**
 * What every kernel operation (emit, verify, plan) is asked: which op, at which shape, for which
 * device and target, optionally with a config. Fields mirror the CLI flags.
 */
export interface KernelRequest {
  target: string;
  /** A catalog op name (`kgen ops`); exactly one of `op` and `ir`. */
  op?: string;
  /** A user's op as parsed JSON; validated like any user input. */
  ir?: unknown;
  /** `M=1,N=4096,K=4096` or an object of the same dimensions. */
  shape: string | Record<string, number>;
  /** Device profile name; defaults per target (c: host, wasm: wasm-simd128, cuda: rtx4090, wgsl: webgpu). */
  device?: string;
  /** C only: the instruction-set variant, same as config.isa. */
  isa?: string;
  /** Knob values (a partial config over the default), as an object or JSON text. */
  config?: Record<string, unknown> | string;
}

export interface ResolvedRequest {
  op: Op;
  irHash: string;
  shape: Shape;
  device: DeviceProfile;
  target: TargetName;
  config?: Record<string, unknown>;
}

const DEFAULT_DEVICE: Record<TargetName, string> = { c: 'host', wasm: 'wasm-simd128', cuda: 'rtx4090', wgsl: 'webgpu' };

export function resolveRequest(req: KernelRequest): ResolvedRequest {
  if (!TARGETS.includes(req.target as TargetName)) {
    throw new KgenError({ field: '--target', problem: `unknown target "${req.target}"`, expected: `one of ${TARGETS.join(', ')}` });
  }
  const target = req.target as TargetName;
  let op: Op;
  if (req.op !== undefined && req.ir !== undefined) {
    throw new KgenError({ field: '--op', problem: 'both --op and --ir given', expected: 'one of them', hint: 'use --op for a catalog op, --ir for your own' });
  } else if (req.ir !== undefined) {
    op = validateOp(req.ir);
  } else if (req.op !== undefined) {
    const found = CATALOG[req.op];
    if (!found) {
      throw new KgenError({ field: '--op', problem: `unknown op "${req.op}"`, expected: `one of ${Object.keys(CATALOG).join(', ')}`, hint: 'run `kgen ops`, or pass your own with --ir op.json' });
    }
    op = found;
  } else {
    throw new KgenError({ field: '--op', problem: 'no op given', expected: '--op NAME or --ir FILE', hint: 'run `kgen ops` to list the catalog' });
  }
  const shape = typeof req.shape === 'string' ? parseShape(req.shape, op) : validateShape(op, req.shape);
  const device = getDevice(req.device ?? DEFAULT_DEVICE[target]);
  let config: Record<string, unknown> | undefined;
  if (typeof req.config === 'string') {
    try {
      config = JSON.parse(req.config) as Record<string, unknown>;
    } catch (e) {
      throw new KgenError({ field: '--config', problem: `not valid JSON (${(e as Error).message})`, expected: 'a JSON object like {"nTile":16}' });
    }
  } else {
    config = req.config;
  }
  if (config !== undefined && (config === null || typeof config !== 'object' || Array.isArray(config))) {
    throw new KgenError({ field: '--config', problem: `got ${JSON.stringify(config)}`, expected: 'a JSON object like {"nTile":16}' });
  }
  if (req.isa !== undefined) {
    if (target !== 'c') throw new KgenError({ field: '--isa', problem: `only the c target has ISA variants, not ${target}`, expected: 'no --isa' });
    if (config?.isa !== undefined && config.isa !== req.isa) {
      throw new KgenError({ field: '--isa', problem: `--isa ${req.isa} contradicts config.isa ${String(config.isa)}`, expected: 'one of them' });
    }
    config = { ...config, isa: req.isa };
  }
  return { op, irHash: opHash(op), shape, device, target, config };
}
