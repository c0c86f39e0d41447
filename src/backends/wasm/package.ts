import { KgenError } from '../../errors.js';
import { planOfFamilies } from '../../plan/index.js';
import { templateSet } from '../../render/templates.js';
import { jsUsageView, packageJson, rootLoaderView } from '../js-package.js';
import type { PackageBuild, PackageContext, PackagedKernel } from '../types.js';
import { wasmPackageDeclarations } from './bindings.js';
import { attentionSizes, attentionUsageView } from './attention.js';
import { harnessLayout } from './matmul.js';
import { BUFFER_ALIGN, MEMORY_MAX_PAGES, PAGE_BYTES, placeBuffers } from './memory.js';

/** A placement of every kernel's buffers in one memory, in kernel order: byte offsets, total, pages. */
export interface PackageLayout {
  kernels: Record<string, Record<string, number>>;
  bytes: number;
  pages: number;
}

/** Bytes of each buffer of a kernel (its loader's `sizes`). */
function kernelSizes(plan: PackagedKernel['plan']): Record<string, number> {
  return plan.family === 'cpu-attention' ? attentionSizes(plan) : harnessLayout(planOfFamilies(plan, ['cpu-matmul'], 'a WebAssembly package')).sizes;
}

/**
 * Every kernel's buffers placed one after another in one memory, as `loadAll` makes or takes it.
 * Invariant: they end within the 4 GiB a 32-bit memory addresses (each kernel's plan checks its
 * own buffers alone; together they may not fit, and then loadAll could make no memory for them).
 */
function packageLayout(kernels: readonly PackagedKernel[]): PackageLayout {
  const placed: PackageLayout['kernels'] = {};
  let at = BUFFER_ALIGN;
  for (const k of kernels) {
    const p = placeBuffers(kernelSizes(k.plan), { start: at, emptyIsNull: true });
    placed[k.dir] = p.at;
    at = p.end;
  }
  const addressable = MEMORY_MAX_PAGES * PAGE_BYTES;
  if (at > addressable) {
    throw new KgenError({
      field: '--kernels',
      problem: `the kernels' buffers take ${at} bytes in the one memory index.mjs places them all in, more than the ${addressable} a WebAssembly memory addresses`,
      expected: 'kernels whose tensors, weights and workspaces together fit in 4 GiB',
      hint: 'split the list into packages that each fit (each package\'s loadAll makes a memory of its own)',
    });
  }
  return { kernels: placed, bytes: at, pages: Math.ceil(at / PAGE_BYTES) };
}

/**
 * The root files of a package of WebAssembly kernels: package.json (an ES module, no
 * dependencies, so `npm pack` and `npm install` of the folder work), index.mjs (one loader of
 * every kernel over one memory, with a placement of all buffers) and index.d.mts (its types,
 * generated with ts-morph). Each kernel's folder keeps its own loader, modules and manifest.
 */
export function wasmPackageFiles(kernels: readonly PackagedKernel[], pkg: PackageContext): PackageBuild {
  const templates = templateSet('package/wasm');
  const layout = packageLayout(kernels);
  const first = kernels[0]!;
  // The usage snippet shows the first kernel: an attention kernel's calls, else a matmul's.
  const usage = first.plan.family === 'cpu-attention'
    ? templates.render('usage_attention.mjs', { packageName: pkg.name, name: first.dir, ...attentionUsageView(first.plan, first.symbol) })
    : templates.render('usage.mjs', jsUsageView(pkg, first, first.dir));
  const view = { ...rootLoaderView(pkg, kernels), layoutJson: JSON.stringify(layout, null, 2) };
  return {
    files: {
      'package.json': packageJson(pkg, kernels, { description: `WebAssembly kernels by kgen ${pkg.version}: ${kernels.map((k) => k.dir).join(', ')}`, main: 'index.mjs', types: 'index.d.mts', kernelMain: 'kernel.mjs', kernelTypes: 'kernel.d.mts' }),
      'index.mjs': templates.render('index.mjs', view),
      'index.d.mts': wasmPackageDeclarations(kernels, { name: pkg.name, version: pkg.version, layout }),
    },
    contents: "Each kernel's folder holds its WebAssembly modules (`.wasm`, and the `.wat` they were assembled from), its own loader (`kernel.mjs`, `kernel.d.mts`) and `manifest.json` (exports, buffers, features, tolerance, config and where it came from); `index.mjs` loads them all over one memory. A bundler (esbuild, webpack, Vite) takes the loaders into its bundle and leaves the `.wasm` and worker files behind: serve this folder unchanged and pass its URL as `loadAll({ base })`.",
    build: ['npm pack                # a .tgz to `npm install` in your project (nothing to compile)'],
    usage,
    callText: (dir) => `\`kernels.${dir}.run(...)\`, its buffers at \`layout.kernels.${dir}\``,
    usageLanguage: 'js',
  };
}
