import type { DeviceNeed } from './types.js';

/**
 * What every CPU target's planner reads: a profile of kind `cpu` with its `cpu` limits. A target
 * lists it first in its `needs`, so a GPU profile that names a CPU target is refused with that
 * reason rather than planned without the figures.
 */
export const CPU_LIMITS: DeviceNeed = { feature: 'CPU limits (kind "cpu" with a cpu section)', has: (d) => d.kind === 'cpu' && d.cpu !== undefined };

/** What every GPU target's planner reads: a profile of kind `gpu` with its `gpu` limits (see CPU_LIMITS). */
export const GPU_LIMITS: DeviceNeed = { feature: 'GPU limits (kind "gpu" with a gpu section)', has: (d) => d.kind === 'gpu' && d.gpu !== undefined };
