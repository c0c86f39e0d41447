import type { DeviceProfile } from '../device/profile.js';

/**
 * The device's lower bound on one call's time: its bytes at the profile's memory bandwidth or its
 * arithmetic at the profile's highest peak (tensor or int8 where it has them), whichever is longer.
 * Optimistic on purpose: "% of roofline" says how far a kernel is from what the device could do.
 */
export function rooflineMs(device: DeviceProfile, traffic: { bytes: number; flops: number }): number {
  const p = device.peak;
  const peakOps = Math.max(p.f32TFLOPS, p.f16TensorTFLOPS ?? 0, p.int8TensorTOPS ?? 0, p.int8TOPS ?? 0) * 1e12;
  const memoryMs = (traffic.bytes / (device.memory.bandwidthGBs * 1e9)) * 1e3;
  const computeMs = (traffic.flops / peakOps) * 1e3;
  return Math.max(memoryMs, computeMs);
}
