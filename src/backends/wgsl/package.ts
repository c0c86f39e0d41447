import { formatShape } from '../../ir/validate.js';
import { templateSet } from '../../render/templates.js';
import { jsUsageView, packageJson, rootLoaderView } from '../js-package.js';
import type { BindingInterface, PackageBuild, PackageContext, PackagedKernel } from '../types.js';
import { wgslPackageDeclarations } from './bindings.js';

/** What a device needs for every kernel: the union of their features and the largest of each limit. */
export interface DeviceRequirements {
  requiredFeatures: string[];
  requiredLimits: Record<string, number>;
}

function requirementsOf(interfaces: readonly BindingInterface[]): DeviceRequirements {
  const requiredLimits: Record<string, number> = {};
  for (const iface of interfaces) {
    for (const [limit, value] of Object.entries(iface.limits)) requiredLimits[limit] = Math.max(requiredLimits[limit] ?? 0, value);
  }
  return { requiredFeatures: [...new Set(interfaces.flatMap((i) => i.features))].sort(), requiredLimits };
}

/** What the README's usage snippet prints of the first kernel: a matmul's shapes and format, or an attention's passes. */
function usageView(pkg: PackageContext, first: PackagedKernel, tensors: string[]) {
  const bufferList = tensors.map((t) => `${t}: ${t}Buffer`).join(', ');
  if (first.plan.op.kind !== 'attention') return { ...jsUsageView(pkg, first, first.dir), bufferList };
  const iface = first.rendered.bindingInterface!;
  const op = first.plan.op;
  return {
    packageName: pkg.name,
    name: first.dir,
    symbol: first.symbol,
    bufferList,
    opText: `${op.causal ? 'causal ' : ''}attention, Q ${op.q}, KV cache ${op.kvCache}, O ${op.o}`,
    shapeText: formatShape(first.plan.shape),
    kvLength: iface.kvLength,
    passText: iface.workspaceBytes !== undefined
      ? `run() dispatches ${iface.passes.length} passes; workspace is scratch of ${iface.workspaceBytes} bytes they share.`
      : `run() dispatches ${iface.passes.length} pass.`,
  };
}

/**
 * The root files of a package of WGSL kernels: package.json (an ES module, no dependencies; the
 * declarations refer to @webgpu/types, an optional peer), index.js (every kernel's loader, the
 * device requirements of all of them, createAll) and index.d.ts (its types, generated with
 * ts-morph). Each kernel's folder keeps its own loader, kernel.wgsl and manifest.
 */
export function wgslPackageFiles(kernels: readonly PackagedKernel[], pkg: PackageContext): PackageBuild {
  const templates = templateSet('package/wgsl');
  const interfaces = kernels.map((k) => k.rendered.bindingInterface!);
  const requirements = requirementsOf(interfaces);
  const view = { ...rootLoaderView(pkg, kernels), requirementsJson: JSON.stringify(requirements, null, 2) };
  const first = kernels[0]!;
  // A run-time-length kernel's uniform kv_len is its loader's own buffer (run takes { kvLen }).
  const tensors = [...new Set(interfaces[0]!.bindings.filter((b) => b.access !== 'uniform').map((b) => b.tensor))];
  return {
    files: {
      'package.json': packageJson(pkg, kernels, {
        description: `WGSL (WebGPU) kernels by kgen ${pkg.version}: ${kernels.map((k) => k.dir).join(', ')}`,
        main: 'index.js',
        types: 'index.d.ts',
        kernelMain: 'kernel.js',
        kernelTypes: 'kernel.d.ts',
        typePeers: { '@webgpu/types': '>=0.1.40' },
      }),
      'index.js': templates.render('index.js', view),
      'index.d.ts': wgslPackageDeclarations(kernels, { name: pkg.name, version: pkg.version, requirements }),
    },
    contents: "Each kernel's folder holds `kernel.wgsl`, its own loader (`kernel.js`, `kernel.d.ts`: pipeline, bindings, dispatch, feature and limit checks) and `manifest.json` (bindings, buffer sizes, workgroup size, dispatch, features and limits, tolerance, config and where it came from); `index.js` loads them all on one device.",
    build: ['npm pack                # a .tgz to `npm install` in your project (nothing to compile)'],
    usage: templates.render(first.plan.op.kind === 'attention' ? 'usage_attention.js' : 'usage.js', usageView(pkg, first, tensors)),
    callText: (dir) => `\`created.${dir}.run({ ... })\`, its bindings in \`kernels.${dir}.kernel.bindings\``,
    usageLanguage: 'js',
  };
}
