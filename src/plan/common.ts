import type { DeviceProfile } from '../device/profile.js';
import { KgenError } from '../errors.js';
import type { ActDType } from '../ir/types.js';
import type { Tolerance } from '../reference/compare.js';
import type { BudgetCheck, Config, ConfigValue, Knob, OnChipBuffer, SearchSpace } from './types.js';

export function dtypeBytes(d: ActDType): number {
  return d === 'f16' ? 2 : 4;
}

export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

/** `bytes` rounded up to a multiple of `to` (buffer offsets and sizes). */
export function alignUp(bytes: number, to: number): number {
  return Math.ceil(bytes / to) * to;
}

/** The share of a CPU cache one core's tile may occupy: half, leaving room for streams and code. */
export function cacheShare(bytes: number): number {
  return Math.floor(bytes / 2);
}

/** Vector registers a CPU kernel needs beyond its accumulators (inputs, decode temporaries, LUTs). */
export const CPU_WORK_REGISTERS = 6;

/** Bytes (or registers) the on-chip buffers of one `space` take together. */
export function sumBytes(buffers: OnChipBuffer[], space: OnChipBuffer['space']): number {
  return buffers.filter((b) => b.space === space).reduce((a, b) => a + b.size, 0);
}

/** Vector registers the variant's code can name on the device: the device's, capped by the variant's encoding (`CpuVariants.vectorRegisters`). */
export function variantRegisters(variants: { vectorRegisters?: Readonly<Record<string, number>> }, device: DeviceProfile, isa: string): number {
  return Math.min(device.cpu?.vectorRegisters ?? 16, variants.vectorRegisters?.[isa] ?? Infinity);
}

/**
 * Budgets for a CPU plan: registers and the L2 share. `registers` is what the kernel's variant can
 * name on the device (AVX2's 16 on a 32-register AVX-512 CPU), not always the device's count.
 */
export function cpuBudgets(device: DeviceProfile, buffers: OnChipBuffer[], registers: number): BudgetCheck[] {
  const cpu = device.cpu!;
  const capped = registers < cpu.vectorRegisters ? `, ${registers} of its ${cpu.vectorRegisters} named by the variant` : '';
  return [
    { budget: `vector registers (${device.name}${capped})`, needed: sumBytes(buffers, 'registers'), available: registers, unit: 'registers', remedy: 'even the smallest tile needs more vector registers: another ISA (--isa) with more of them, or a smaller K (matmul) or head dim D (attention) per kernel' },
    { budget: `L2 cache share per core (${device.name}: half of ${cpu.l2Bytes} bytes)`, needed: sumBytes(buffers, 'l2'), available: cacheShare(cpu.l2Bytes), unit: 'bytes', remedy: 'even the smallest tile overflows the L2 share: a smaller K (matmul: split the op along it) or head dim D (attention) per kernel, or a CPU with more L2' },
  ];
}

/** The largest magnitude of an int8 activation code: symmetric, so -128 is never used. */
export const INT8_CODE_MAX = 127;

/** The largest i16 lane value: integer sums kept in i16 lanes must stay within it. */
export const I16_MAX = 32767;

/**
 * How far a kernel with int8 activations may exceed the error of that rounding alone
 * (Tolerance.inputRounding): the kernel rounds the same values to the same codes, then sums exact
 * integer products scaled in f32, so its error is the rounding's (kernel / rounding-alone NMSE
 * 1.0000 on C and WebAssembly, outlier channels or not; docs/ARCHITECTURE.md, "Tolerances"). A
 * coarser rounding fails: 7-bit codes cost 4x; one scale per row of 4096 instead of per 32 or 64
 * costs 2.3-2.4x on N(0,1) data and 12-58x with five channels raised 10-300x.
 */
export const ACT_ROUNDING_FACTOR = 1.25;

/**
 * Tolerances by the precision a kernel computes in; see docs/ARCHITECTURE.md, "Tolerances".
 * `int8Activations`: the kernel rounds X to int8 per that many values; its error is judged against
 * that rounding on the checked data (an `inputRounding` of X), not a fixed bound. `actCodeMax`: its
 * codes' largest magnitude, where below INT8_CODE_MAX (a coarser rounding, stated as the
 * inputRounding's `codeMax`, so the judge rounds X to as few levels and widens by that error).
 */
export function toleranceFor(opts: { int8Activations?: number; actCodeMax?: number; outF16: boolean; inF16?: boolean; int16Weights?: boolean }): Tolerance {
  let nmse = 1e-8;
  let maxRel = 1e-4;
  // Attention probabilities (times V's scales) rounded to int16 on one scale per tile (integer
  // P.V): measured NMSE ~1e-8 with f32 Q and O; 1e-6 leaves a 100x margin.
  if (opts.int16Weights) {
    nmse = Math.max(nmse, 1e-6);
    maxRel = Math.max(maxRel, 1e-3);
  }
  if (opts.outF16 || opts.inF16) {
    nmse += 2e-6;
    maxRel = Math.max(maxRel, 4e-3);
  }
  const group = opts.int8Activations;
  const codes = opts.actCodeMax !== undefined && opts.actCodeMax < INT8_CODE_MAX ? { codeMax: opts.actCodeMax } : {};
  return { nmse, maxRelToPeak: maxRel, ...(group ? { inputRounding: { input: 'x', bits: 8, group, ...codes, factor: ACT_ROUNDING_FACTOR } } : {}) };
}

export function knobError(field: string, problem: string, expected: string): KgenError {
  return new KgenError({ field, problem, expected, hint: `run \`kgen plan\` with the same flags to see the knobs and their values, or omit ${field.startsWith('--') ? field : '--config'}` });
}

/**
 * How a knob's values are typed in a plan family's knob table: numbers (`'number'`), strings
 * (`'string'`), one of the listed strings, or numbers of a knob that only some requests' spaces
 * hold (`'number?'`: absent from the other configs, and so from their hashes).
 */
export type KnobType = 'number' | 'number?' | 'string' | readonly string[];

/**
 * A plan family's knobs by name and value type: the one source of the family's typed config
 * (`ConfigOf`) and of the names and value types its space may declare (`typedSpace`).
 */
export type KnobTable = Readonly<Record<string, KnobType>>;

type KnobValue<K extends KnobType> = K extends 'number' | 'number?' ? number : K extends readonly (infer S)[] ? S : string;
type OptionalKnob<T extends KnobTable> = { [K in keyof T]: T[K] extends 'number?' ? K : never }[keyof T];

/** A complete config of the family whose knob table is `T`, each knob read as its type. */
export type ConfigOf<T extends KnobTable> = { readonly [K in Exclude<keyof T, OptionalKnob<T>>]: KnobValue<T[K]> } & { readonly [K in OptionalKnob<T>]?: KnobValue<T[K]> };

/** The knobs a `when` is judged on: those listed before its knob, so any may be absent. */
export type EarlierOf<T extends KnobTable> = Partial<ConfigOf<T>>;

/** A knob of the space of the family whose knob table is `T`: a name of the table, values of its type. */
export type KnobOf<T extends KnobTable> = {
  [K in keyof T & string]: Omit<Knob, 'name' | 'values' | 'when'> & { name: K; values: readonly KnobValue<T[K]>[]; when?: (earlier: EarlierOf<T>) => boolean };
}[keyof T & string];

/** A restriction of the family whose knob table is `T`, judged on a typed complete config. */
export interface RestrictionOf<T extends KnobTable> {
  reason: string;
  allows(config: ConfigOf<T>): boolean;
}

/** Whether `value` is of the knob type `type`. */
function knobTypeHolds(type: KnobType, value: ConfigValue): boolean {
  if (typeof type !== 'string') return typeof value === 'string' && type.includes(value);
  return type === 'string' ? typeof value === 'string' : typeof value === 'number';
}

/** Throws unless every knob of `table` in `config` has its type and, when `complete`, every knob but the `'number?'` ones is there. */
function assertKnobs<T extends KnobTable>(table: T, config: Config, complete: boolean): asserts config is Config & ConfigOf<T> {
  for (const [name, type] of Object.entries(table)) {
    const value = config[name];
    if (value === undefined ? complete && type !== 'number?' : !knobTypeHolds(type, value)) {
      // Configs reach planners through the space (enumerated or pinned to its values): a knob
      // missing or mistyped here is a space that disagrees with its family's table.
      throw new KgenError({
        field: `config.${name}`,
        problem: `internal: the planner's knob table reads ${typeof type === 'string' ? type : type.join(' | ')}, the config holds ${JSON.stringify(value)}`,
        hint: 'a kgen bug: the space and the knob table of this plan family disagree',
      });
    }
  }
}

/**
 * `config` read through its family's knob table: the same object, typed. Invariant: `config` comes
 * from the family's space (pinned or enumerated), so every value is already one the space offers;
 * this checks only that the table and the space agree (a KgenError naming the knob if not).
 */
export function readConfig<T extends KnobTable>(table: T, config: Config): ConfigOf<T> {
  assertKnobs(table, config, true);
  return config;
}

/** A family's space as its planner declares it, against its knob table. */
export interface TypedSpace<T extends KnobTable> {
  knobs: KnobOf<T>[];
  restrictions: RestrictionOf<T>[];
}

/**
 * A space declared against a family's knob table: knob names and values are checked against the
 * table once, here, and each `when` and restriction then reads its config typed. Invariant that
 * makes the per-call reads checks-free: every config a space yields (enumerated, or pinned to the
 * space's values) holds each of its knobs, at one of the values checked here, and the space holds
 * every knob the table does not mark optional.
 */
export function typedSpace<T extends KnobTable>(table: T, space: NoInfer<TypedSpace<T>>): SearchSpace {
  // The table alone fixes T (NoInfer): a restriction written for any table then reads this one.
  const typed: TypedSpace<T> = space;
  for (const knob of typed.knobs) for (const value of knob.values) assertKnobs(table, { [knob.name]: value }, false);
  assertKnobs(table, Object.fromEntries(typed.knobs.map((k) => [k.name, k.values[0]!])), true);
  // Checked above for every value a config can hold; enumeration runs these per candidate config.
  const earlierOf = (earlier: Config) => earlier as EarlierOf<T>;
  const configOf = (config: Config) => config as ConfigOf<T>;
  return {
    knobs: typed.knobs.map(({ when, ...knob }) => (when ? { ...knob, when: (earlier: Config) => when(earlierOf(earlier)) } : knob)),
    restrictions: typed.restrictions.map((r) => ({ reason: r.reason, allows: (config: Config) => r.allows(configOf(config)) })),
  };
}
