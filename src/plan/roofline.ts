import type { DeviceProfile } from '../device/profile.js';

/** The two roofs of a device profile: memory bandwidth and the highest arithmetic peak. */
export interface Roof {
  bandwidthGBs: number;
  /** The highest peak the profile states (f32, or tensor or int8 where it has them), in GFLOP/s. */
  peakGflops: number;
}

export function roofOf(device: DeviceProfile): Roof {
  const p = device.peak;
  return { bandwidthGBs: device.memory.bandwidthGBs, peakGflops: Math.max(p.f32TFLOPS, p.f16TensorTFLOPS ?? 0, p.int8TensorTOPS ?? 0, p.int8TOPS ?? 0) * 1e3 };
}

/**
 * The device's lower bound on one call's time: its bytes at the profile's memory bandwidth or its
 * arithmetic at the profile's highest peak (tensor or int8 where it has them), whichever is longer.
 * Optimistic on purpose: "% of roofline" says how far a kernel is from what the device could do.
 */
export function rooflineMs(device: DeviceProfile, traffic: { bytes: number; flops: number }): number {
  const roof = roofOf(device);
  const memoryMs = (traffic.bytes / (roof.bandwidthGBs * 1e9)) * 1e3;
  const computeMs = (traffic.flops / (roof.peakGflops * 1e9)) * 1e3;
  return Math.max(memoryMs, computeMs);
}
