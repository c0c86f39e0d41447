/**
 * What running a rendered WGSL kernel takes beyond its source, as data the Dawn run program
 * (templates/wgsl/run/dawn-run.mjs) reads: the entry point, the dispatch, each storage binding with
 * its size and the file (and offset in it) that fills it, or the file that receives it, and the device features and limits to ask
 * for. Invariant: written by the renderer from the same plan as the source.
 */
export interface WgslRunSpec {
  entry: string;
  invocations: number;
  /** Workgroups dispatched along x, y, z. */
  grid: [number, number, number];
  bindings: { binding: number; name: string; type: 'f32' | 'u32'; access: 'read' | 'read_write'; bytes: number; file: string; fileOffset: number; role: 'input' | 'output' }[];
  /** Optional WebGPU features the kernel needs (`subgroups`). */
  features: string[];
  /** Limits above the spec defaults the kernel may need, requested from the adapter as they are. */
  limits: Record<string, number>;
}

/** The run description's file name beside kernel.wgsl. */
export const WGSL_RUN_SPEC_FILE = 'kgen_run.json';
