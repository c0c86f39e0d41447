import type { CodeBlockWriter, SourceFile, WriterFunction } from 'ts-morph';
import { formatShape } from '../ir/validate.js';
import { matmulPlanOf } from '../plan/index.js';
import { packageUsageView } from './c-family.js';
import type { PackageContext, PackagedKernel } from './types.js';
import { declareConst } from '../render/declarations.js';

/**
 * What the JS-target packages (WebAssembly, WGSL) share: package.json, and the view their usage
 * snippets print about the first kernel.
 */

/** The module of a JS package: its root loader and one loader per kernel folder. */
export interface JsPackageModules {
  description: string;
  /** The root loader and its declarations (`index.mjs`, `index.d.mts`). */
  main: string;
  types: string;
  /** Each kernel's own loader and declarations, relative to its folder. */
  kernelMain: string;
  kernelTypes: string;
  /** Packages the declarations refer to that a type-checking user installs (optional peers). */
  typePeers?: Record<string, string>;
}

/**
 * package.json of a JS package: an ES module with no dependencies, exporting the root loader
 * (`.`) and each kernel's own loader (`./NAME`), with TypeScript declarations for each. Invariant:
 * `npm pack` of the folder takes every file the loaders read (the kernel folders are in `files`).
 */
export function packageJson(pkg: PackageContext, kernels: readonly PackagedKernel[], m: JsPackageModules): string {
  const exports: Record<string, { types: string; default: string } | string> = { '.': { types: `./${m.types}`, default: `./${m.main}` } };
  for (const k of kernels) exports[`./${k.dir}`] = { types: `./${k.dir}/${m.kernelTypes}`, default: `./${k.dir}/${m.kernelMain}` };
  // Tools (bundlers, version checks) and hosts reading the index import these by path.
  exports['./package.json'] = './package.json';
  exports['./kgen-package.json'] = './kgen-package.json';
  const json = {
    name: pkg.name,
    version: '1.0.0',
    description: m.description,
    type: 'module',
    main: `./${m.main}`,
    types: `./${m.types}`,
    exports,
    files: [m.main, m.types, 'kgen-package.json', ...kernels.map((k) => `${k.dir}/`)],
    ...(m.typePeers ? { peerDependencies: m.typePeers, peerDependenciesMeta: Object.fromEntries(Object.keys(m.typePeers).map((p) => [p, { optional: true }])) } : {}),
    kgen: { version: pkg.version },
  };
  return `${JSON.stringify(json, null, 2)}\n`;
}

/** What a JS usage snippet prints about the package's first kernel: names, typed-array kinds, counts. */
export function jsUsageView(pkg: PackageContext, first: PackagedKernel, name: string) {
  const plan = matmulPlanOf(first.plan, 'a JavaScript package\'s matmul usage snippet');
  const { op, shape } = plan;
  return {
    ...packageUsageView(plan, first.symbol),
    packageName: pkg.name,
    name,
    xArray: op.x === 'f16' ? 'Uint16Array' : 'Float32Array',
    yArray: op.y === 'f16' ? 'Uint16Array' : 'Float32Array',
    xCount: shape.M * shape.K,
    yCount: shape.M * shape.N,
  };
}

/** What the root loader says of each kernel, by name: op, shape, folder and symbol (WGSL: entry point). */
export function packageInfo(kernels: readonly PackagedKernel[]) {
  return Object.fromEntries(kernels.map((k) => [k.dir, { op: k.plan.op.name, shape: formatShape(k.plan.shape), dir: `${k.dir}/`, symbol: k.symbol }]));
}

/** What every root loader template prints: the package, its kernels' import names and folders, `info`. */
export function rootLoaderView(pkg: PackageContext, kernels: readonly PackagedKernel[]) {
  return {
    name: pkg.name,
    version: pkg.version,
    kernels: kernels.map((k, i) => ({ name: k.dir, ident: `kernel${i}`, dir: k.dir })),
    infoJson: JSON.stringify(packageInfo(kernels), null, 2),
  };
}

/** A type of one member per kernel, by folder name: `Readonly<{ NAME: type(kernel, i); ... }>`. */
export function typeByKernel(kernels: readonly PackagedKernel[], type: (k: PackagedKernel, i: number) => string): WriterFunction {
  return (w: CodeBlockWriter) => {
    w.write('Readonly<');
    w.block(() => kernels.forEach((k, i) => w.writeLine(`${k.dir}: ${type(k, i)};`)));
    w.write('>');
  };
}

/**
 * What every JS root loader's declarations start with: each kernel's loader module imported as
 * `kernel<i>` (its own declarations), `kernels` (those modules by name) and `info` (op, shape,
 * folder, symbol). Returns `constant`, which declares one more exported constant.
 */
export function declareRootLoader(file: SourceFile, kernels: readonly PackagedKernel[], opts: { kernelModule: string; kernelsDoc: string }) {
  const literal = (v: unknown) => JSON.stringify(v);
  kernels.forEach((k, i) => file.addImportDeclaration({ isTypeOnly: true, namespaceImport: `kernel${i}`, moduleSpecifier: `./${k.dir}/${opts.kernelModule}` }));
  const constant = (name: string, doc: string, type: WriterFunction | string) => declareConst(file, { name, type, doc });
  constant('kernels', opts.kernelsDoc, typeByKernel(kernels, (_, i) => `typeof kernel${i}`));
  constant('info', 'Op, shape and folder of every kernel, by name.', typeByKernel(kernels, (k) => `{ op: ${literal(k.plan.op.name)}; shape: ${literal(formatShape(k.plan.shape))}; dir: ${literal(`${k.dir}/`)}; symbol: ${literal(k.symbol)} }`));
  return constant;
}
