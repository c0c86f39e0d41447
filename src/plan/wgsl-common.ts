import type { DeviceProfile } from '../device/profile.js';
import { sumBytes } from './common.js';
import type { BudgetCheck, OnChipBuffer } from './types.js';

/** WebGPU's default `maxStorageBuffersPerShaderStage`, for profiles that state no figure of their own. */
export const WEBGPU_DEFAULT_STORAGE_BUFFERS = 8;
/** WebGPU's default `maxComputeWorkgroupsPerDimension`. */
export const WEBGPU_DEFAULT_WORKGROUPS_PER_DIMENSION = 65535;

/** What a WGSL kernel binds and dispatches, for the budgets beyond workgroup storage. */
export interface WgslBindingUse {
  /** Bytes of each storage binding the kernel reads or writes. */
  bindingBytes: number[];
  /** Workgroups dispatched along x, y, z. */
  grid: [number, number, number];
  /** The most bytes the kernel addresses with u32 byte offsets (one binding or consecutive ones). */
  addressedBytes: number;
}

/** WebGPU's default `maxComputeWorkgroupSizeX` (the WGSL kernels lay invocations out along x). */
export const WEBGPU_DEFAULT_WORKGROUP_SIZE_X = 256;

/** WebGPU's default `maxStorageBufferBindingSize` (128 MiB). */
export const WEBGPU_DEFAULT_STORAGE_BINDING_BYTES = 134217728;

/** WebGPU's default `maxBufferSize` (256 MiB). */
export const WEBGPU_DEFAULT_BUFFER_BYTES = 268435456;

/** The largest GPUBuffer the profile allows (`gpu.maxBufferBytes`, else WebGPU's default). */
export function maxBufferBytes(device: DeviceProfile): number {
  return device.gpu!.maxBufferBytes ?? WEBGPU_DEFAULT_BUFFER_BYTES;
}

/** The largest storage binding the profile allows. */
export function maxStorageBindingBytes(device: DeviceProfile): number {
  return device.gpu!.maxStorageBufferBindingBytes ?? WEBGPU_DEFAULT_STORAGE_BINDING_BYTES;
}

/**
 * The most bytes one weight binding may take: the binding limit, and the buffer limit too, so each
 * chunk is a buffer of its own (the loader's `createBuffers` and array form) on a profile that
 * states a binding limit above its buffer limit (or the 256 MiB default where it states none).
 */
export function weightChunkLimit(device: DeviceProfile): number {
  return Math.min(maxStorageBindingBytes(device), maxBufferBytes(device));
}

/**
 * What every WGSL planner checks, in WebGPU's terms, at the profile's limits (the spec defaults for
 * `webgpu`, an adapter's own figures for a present one): workgroup storage, invocations per
 * workgroup and along x (every WGSL kernel's workgroup is `invocations x 1 x 1`, so
 * `maxComputeWorkgroupSizeX`, the profile's `gpu.maxWorkgroupSize[0]`, binds as well), the largest
 * storage binding, the largest buffer (`maxBufferSize`: a tensor bound whole is one buffer, and the
 * weights' chunks, sized to fit it (`weightChunkLimit`), are one each), storage buffers per
 * shader stage and workgroups per dispatch dimension. WebGPU
 * exposes no register limit.
 */
export function workgroupBudgets(device: DeviceProfile, buffers: OnChipBuffer[], invocations: number, use?: WgslBindingUse): BudgetCheck[] {
  const gpu = device.gpu!;
  const checks: BudgetCheck[] = [
    { budget: `workgroup storage (${device.name})`, needed: sumBytes(buffers, 'shared'), available: gpu.sharedPerBlockOptinBytes, unit: 'bytes', remedy: 'even the smallest tile overflows workgroup storage: a smaller head dim (D), or an adapter with a larger maxComputeWorkgroupStorageSize (a profile of its own)' },
    { budget: `invocations per workgroup (${device.name})`, needed: invocations, available: gpu.maxThreadsPerBlock, unit: 'threads', remedy: 'an adapter with a larger maxComputeInvocationsPerWorkgroup (a profile of its own)' },
    { budget: `workgroup size x (${device.name})`, needed: invocations, available: gpu.maxWorkgroupSize?.[0] ?? WEBGPU_DEFAULT_WORKGROUP_SIZE_X, unit: 'threads', remedy: 'an adapter with a larger maxComputeWorkgroupSizeX (a profile of its own)' },
  ];
  if (use) {
    checks.push(
      { budget: `storage binding size (${device.name})`, needed: Math.max(...use.bindingBytes), available: maxStorageBindingBytes(device), unit: 'bytes', remedy: 'split the op across dispatches so each tensor bound whole fits one binding (M for activations and outputs, positions for a KV cache), state the adapter\'s larger maxStorageBufferBindingSize (gpu.maxStorageBufferBindingBytes) in a profile of its own, or use the C or CUDA target' },
      { budget: `buffer size, maxBufferSize (${device.name})`, needed: Math.max(...use.bindingBytes), available: maxBufferBytes(device), unit: 'bytes', remedy: 'split the op across dispatches so each tensor bound whole fits one buffer (M for activations and outputs, positions for a KV cache), state the adapter\'s larger maxBufferSize (gpu.maxBufferBytes) in a profile of its own, or use the C or CUDA target' },
      { budget: `storage buffers per shader stage (${device.name})`, needed: use.bindingBytes.length, available: gpu.maxStorageBuffersPerShaderStage ?? WEBGPU_DEFAULT_STORAGE_BUFFERS, unit: 'bindings', remedy: 'an adapter with a larger maxStorageBuffersPerShaderStage (a profile of its own), or the C or CUDA target' },
      { budget: 'bytes addressed by u32 offsets', needed: use.addressedBytes, available: 2 ** 32 - 1, unit: 'bytes', remedy: 'split the op across dispatches so each addresses under 4 GiB, or use the C or CUDA target (64-bit offsets)' },
      { budget: `workgroups per dispatch dimension (${device.name})`, needed: Math.max(...use.grid), available: gpu.maxWorkgroupsPerDimension ?? WEBGPU_DEFAULT_WORKGROUPS_PER_DIMENSION, unit: 'workgroups', remedy: 'split the op across dispatches along its largest grid dimension (N, M, or batch and heads)' },
    );
  }
  return checks;
}

/**
 * Bytes a `var<workgroup>` of `bytes` counts against maxComputeWorkgroupStorageSize: WebGPU counts
 * each variable rounded up to 16 bytes (Dawn refuses the pipeline otherwise: a 4-byte atomic
 * counts 16).
 */
export function workgroupVarBytes(bytes: number): number {
  return Math.ceil(bytes / 16) * 16;
}

/** Invocations per workgroup a WGSL planner tries, most preferred first. */
export const WORKGROUP_SIZES = [128, 256, 64, 32] as const;
