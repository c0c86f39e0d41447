import type { MatmulOp, MatmulShape } from '../ir/types.js';
import { formatShape } from '../ir/validate.js';
import { packageUsageView } from './c-family.js';
import type { PackageContext, PackagedKernel } from './types.js';

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
  const exports: Record<string, { types: string; default: string }> = { '.': { types: `./${m.types}`, default: `./${m.main}` } };
  for (const k of kernels) exports[`./${k.dir}`] = { types: `./${k.dir}/${m.kernelTypes}`, default: `./${k.dir}/${m.kernelMain}` };
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
  const op = first.plan.op as MatmulOp;
  const shape = first.plan.shape as MatmulShape;
  return {
    ...packageUsageView(op, shape, first.symbol),
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
