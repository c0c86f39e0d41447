import { targetFor } from '../backends/registry.js';
import type { PackagedKernel } from '../backends/types.js';
import type { TuningDb } from '../db/types.js';
import { InternalError, KgenError } from '../errors.js';
import { IR_HINT } from '../ir/fields.js';
import { formatShape } from '../ir/validate.js';
import { quoted, valueText } from '../io/message-text.js';
import { configInUse } from '../plan/index.js';
import { templateSet } from '../render/templates.js';
import { KGEN_VERSION } from '../version.js';
import { emit, outputFiles, type EmitResult, type Manifest } from './emit.js';
import { resolveRequest, type KernelRequest, type ResolvedRequest } from './request.js';

/** One kernel of a package: a kernel request and, optionally, its name (its folder and symbols). */
export interface PackageKernel extends KernelRequest {
  /** A C identifier: the folder `NAME/` and symbols `kgen_NAME...`. Default: op and shape. */
  name?: string;
}

export interface PackageOptions {
  kernels: PackageKernel[];
  /** The package's name (package.json of the JS targets); made npm-safe. Default `kgen-kernels`. */
  name?: string;
  /** The tuning database each kernel's config comes from, as in `emit`. */
  records?: TuningDb;
  /** How the package was made, for its README. */
  command: string;
  now?: Date;
}

/** kgen-package.json: what the package holds. */
export interface PackageIndex {
  kgen: string;
  target: string;
  createdAt: string;
  kernels: { name: string; dir: string; symbol: string; op: string; shape: Manifest['shape']; device: string; config: Manifest['config']; configSource: Manifest['configSource']; record?: Manifest['record'] }[];
}

export interface PackageResult {
  /** Files by path relative to the package folder (`NAME/kernel.c`, `Makefile`, `NAME/kernel.wasm`, ...). */
  files: Record<string, string | Uint8Array>;
  index: PackageIndex;
  /** What the caller should be told (which record each config came from). */
  notes: string[];
}

/**
 * Runs `body` for entry `i` of the kernel list: a mistake in a flag-named field (`--shape`,
 * `config.nTile`) or in an entry's inline op (`ir.weight.format`) is that entry's field
 * (`--kernels[1].shape`, `--kernels[1].ir.weight.format`), so a long list says which entry; an
 * inline op's hint names the list's entry, not an IR file.
 */
function inEntry<T>(i: number, body: () => T): T {
  try {
    return body();
  } catch (e) {
    if (!(e instanceof KgenError) || !/^(--(op|ir|shape|device|isa|config)\b|config\.|ir\.)/.test(e.field)) throw e;
    const hint = e.hint === IR_HINT ? `fix that entry's "ir" in the kernel list and run again (docs/ir.md)` : e.hint;
    throw new KgenError({ field: `--kernels[${i}].${e.field.replace(/^--/, '')}`, problem: e.problem, expected: e.expected, hint });
  }
}

/** A kernel's default name: its op and shape (`matmul_q4_0_m1_n4096_k4096`). */
function defaultName(req: ResolvedRequest): string {
  const dims = Object.entries(req.shape).map(([k, v]) => `${k.toLowerCase()}${v}`).join('_');
  return `${req.op.name}_${dims}`.replace(/[^A-Za-z0-9_]/g, '_');
}

/**
 * `name` as an npm package name: lowercase letters, digits and `-._~`, not starting with `.` or `_`,
 * optionally under a scope (`@scope/name`, each part so), at most 214 characters; anything else
 * becomes `-`. Invariant: the result is a valid name, and a valid name is returned as it is.
 */
export function npmPackageName(name: string): string {
  const part = (s: string) => s.toLowerCase().replace(/[^a-z0-9\-._~]+/g, '-').replace(/^[-._~]+/, '').replace(/[-._~]+$/, '');
  const scoped = /^@([^/]+)\/([^/]+)$/.exec(name);
  if (scoped) {
    const [scope, rest] = [part(scoped[1]!), part(scoped[2]!)];
    if (scope && rest && scope.length + rest.length + 2 <= 214) return `@${scope}/${rest}`;
  }
  const safe = part(name).slice(0, 214).replace(/[-._~]+$/, '');
  return safe === '' ? 'kgen-kernels' : safe;
}

/**
 * A self-contained package of one target's kernels: each kernel's files (source, header or loader,
 * manifest) in its own folder with its own symbol names, the target's build files at the root
 * (`Backend.packageFiles`), kgen-package.json and a README stating each kernel's op, shape, config
 * and where the config came from (the tuning record's device fingerprint, time and median).
 */
export async function buildPackage(opts: PackageOptions): Promise<PackageResult> {
  if (opts.kernels.length === 0) throw new KgenError({ field: '--kernels', problem: 'lists no kernel', expected: 'at least one {op, shape}' });
  const target = targetFor(opts.kernels[0]!.target);
  const mixed = opts.kernels.find((k) => k.target !== target.name);
  if (mixed) throw new KgenError({ field: '--kernels', problem: `mixes targets ${target.name} and ${valueText(mixed.target)}`, expected: 'one target per package', hint: 'make one package per target' });
  if (!target.backend?.packageFiles) {
    throw new KgenError({ field: '--target', problem: `kgen cannot package ${target.title} kernels yet`, expected: 'a target with a package form (c, cuda)', hint: '`kgen emit -o DIR` writes the kernel\'s files' });
  }
  const names = new Set<string>();
  const notes: string[] = [];
  const packaged: (PackagedKernel & { result: EmitResult; name: string })[] = opts.kernels.map((k, i) => {
    const field = `--kernels[${i}].name`;
    if (k.name !== undefined && (typeof k.name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,56}$/.test(k.name))) {
      throw new KgenError({ field, problem: `${valueText(k.name)} is not a usable name`, expected: 'a C identifier of at most 57 characters (it names a folder and kgen_NAME symbols)' });
    }
    const name = k.name ?? defaultName(inEntry(i, () => resolveRequest(k)));
    // Names become folders and header macros (KGEN_NAME_H) too: names differing only in case clash there.
    if (names.has(name.toLowerCase())) throw new KgenError({ field, problem: `${quoted(name)} names two kernels (names are compared ignoring case: they name folders and upper-case macros)`, expected: 'distinct names (or distinct op and shape)', hint: 'give each kernel its own "name"' });
    names.add(name.toLowerCase());
    const result = inEntry(i, () => emit({ ...k, records: opts.records, symbol: `kgen_${name}` }));
    notes.push(...result.notes.map((n) => `${name}: ${n}`));
    return { name, dir: name, symbol: `kgen_${name}`, plan: result.plan, rendered: result.rendered, result };
  });
  // One kernel's entry points must not be another's (`x` has kgen_x_rows, which kernel `x_rows` is):
  // the symbols named after the kernel, which C and CUDA link into one library.
  const owners = new Map<string, string>();
  for (const [i, k] of packaged.entries()) {
    for (const { symbol } of k.rendered.abi.filter((a) => a.symbol.startsWith(k.symbol))) {
      const other = owners.get(symbol.toUpperCase());
      if (other !== undefined && other !== k.name) {
        throw new KgenError({ field: `--kernels[${i}].name`, problem: `${quoted(k.name)} and ${quoted(other)} would both define ${symbol}`, expected: 'names whose symbols do not overlap', hint: 'rename one kernel (a name must not be another\'s plus an entry-point suffix such as _rows)' });
      }
      owners.set(symbol.toUpperCase(), k.name);
    }
  }
  const build = target.backend.packageFiles(packaged, { name: npmPackageName(opts.name ?? 'kgen-kernels'), version: KGEN_VERSION });
  const files: Record<string, string | Uint8Array> = {};
  for (const k of packaged) {
    const built = k.rendered.binaries ? await k.rendered.binaries() : { files: {} };
    // A rendered module that does not assemble is kgen's bug, not the user's.
    if ('error' in built) throw new InternalError(`${k.name} does not build: ${built.error}`);
    for (const [file, content] of Object.entries(outputFiles(k.result, built.files).files)) files[`${k.dir}/${file}`] = content;
  }
  const createdAt = (opts.now ?? new Date()).toISOString();
  const index: PackageIndex = {
    kgen: KGEN_VERSION,
    target: target.name,
    createdAt,
    kernels: packaged.map((k) => ({
      name: k.name,
      dir: k.dir,
      symbol: k.symbol,
      op: k.plan.op.name,
      shape: k.plan.shape,
      device: k.plan.device,
      config: k.plan.config,
      configSource: k.result.manifest.configSource,
      ...(k.result.manifest.record ? { record: k.result.manifest.record } : {}),
    })),
  };
  Object.assign(files, build.files);
  files['kgen-package.json'] = `${JSON.stringify(index, null, 2)}\n`;
  files['README.md'] = templateSet('package/common').render('README.md', {
    title: `kgen package: ${packaged.length} ${target.title} kernel${packaged.length === 1 ? '' : 's'}`,
    version: KGEN_VERSION,
    date: createdAt.slice(0, 10),
    command: markdownCode(opts.command),
    kernels: packaged.map((k) => {
      const m = k.result.manifest;
      const r = m.record;
      return {
        symbol: k.symbol,
        dir: k.dir,
        opName: k.plan.op.name,
        shape: formatShape(k.plan.shape),
        target: target.title,
        variant: k.plan.variant,
        device: k.plan.device,
        configFrom: { default: 'the default', given: 'given', record: 'a tuning record', 'nearest-record': 'the nearest tuning record' }[m.configSource],
        configJson: markdownCode(JSON.stringify(configInUse(k.plan))),
        record: r && {
          device: k.plan.device,
          fingerprintText: markdownText(Object.entries(r.fingerprint).map(([f, v]) => `${f}=${v}`).join(', ')),
          measuredAt: r.measuredAt,
          medianMs: r.medianMs.toPrecision(3),
          nearest: m.configSource === 'nearest-record',
          shape: formatShape(r.shape),
          database: markdownCode(r.database),
        },
      };
    }),
    contents: build.contents,
    build: build.build,
    usage: build.usage,
    usageLanguage: build.usageLanguage,
    // The snippet calls the first kernel; the others' calls, as their manifests state them.
    others: packaged.slice(1).map((k) => {
      const abi = k.result.manifest.abi;
      const main = abi.find((a) => a.symbol === k.symbol) ?? abi[abi.length - 1]!;
      return {
        dir: k.dir,
        opName: k.plan.op.name,
        shape: formatShape(k.plan.shape),
        call: build.callText?.(k.dir) ?? `\`${markdownCode(main.signature)}\``,
      };
    }),
  });
  return { files, index, notes };
}

/** Text for inside a Markdown code span: backticks would end it, newlines would break the table. */
function markdownCode(text: string): string {
  return text.replace(/`/g, "'").replace(/[\r\n|]+/g, ' ');
}

/** Plain text for a Markdown line: no markup from user text (fingerprints hold CPU names). */
function markdownText(text: string): string {
  return text.replace(/[\\`*_[\]<>|#]/g, (c) => `\\${c}`).replace(/[\r\n]+/g, ' ');
}
