import type { Plan } from '../../plan/types.js';
import { templateSet } from '../../render/templates.js';
import type { BindingInterface, RenderContext } from '../types.js';
import { wgslLoaderDeclarations } from './bindings.js';
import type { WgslRunSpec } from './run-spec.js';
import { WGSL_RUN_SPEC_FILE } from './run-spec.js';

/**
 * The limits a WGSL kernel needs where they may exceed the spec defaults, from its storage,
 * invocations and bindings; `maxBufferSize` is the largest binding: a tensor spread over several
 * bindings (weight chunks) takes one buffer per binding, as the loader's createBuffers makes them
 * (one buffer holding them all needs a maxBufferSize this does not request).
 */
export function wgslLimits(sharedBytes: number, invocations: number, bindings: BindingInterface['bindings']): Record<string, number> {
  const storage = bindings.filter((b) => b.access !== 'uniform');
  return {
    maxComputeWorkgroupStorageSize: sharedBytes,
    maxComputeInvocationsPerWorkgroup: invocations,
    maxComputeWorkgroupSizeX: invocations,
    maxStorageBufferBindingSize: Math.max(...storage.map((b) => b.bytes)),
    maxBufferSize: Math.max(...storage.map((b) => b.bytes)),
    maxStorageBuffersPerShaderStage: storage.length,
  };
}

/**
 * What every WGSL kernel ships beside kernel.wgsl, from its binding interface: the loader
 * (kernel.js, kernel.d.ts) and the run description the Dawn runner reads (its read bindings are
 * the input files `<tensor>.bin`; `output` is written to y.bin; a run-time-length kernel runs once
 * per length in kv_len.bin, its outputs end to end).
 */
export function wgslLoaderFiles(plan: Plan, ctx: RenderContext, wgsl: string, iface: BindingInterface, output: string) {
  const spec: WgslRunSpec = {
    ...iface,
    inputs: Object.fromEntries(iface.bindings.filter((b) => b.access === 'read').map((b) => [b.tensor, `${b.tensor}.bin`])),
    output: { tensor: output, file: 'y.bin' },
    ...(iface.kvLength ? { kvLengths: 'kv_len.bin' } : {}),
  };
  const loaderView = { kvLength: iface.kvLength, entry: iface.entry, version: ctx.version, command: ctx.command, interfaceJson: JSON.stringify(iface, null, 2), sourceJson: JSON.stringify(wgsl) };
  return {
    files: { 'kernel.wgsl': wgsl, 'kernel.js': templateSet('wgsl').render('loader/kernel.js', loaderView), 'kernel.d.ts': wgslLoaderDeclarations(plan, iface, ctx.version) },
    harnessFiles: { [WGSL_RUN_SPEC_FILE]: `${JSON.stringify(spec, null, 2)}\n` },
  };
}
