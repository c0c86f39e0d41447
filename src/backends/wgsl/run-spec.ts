import type { BindingInterface } from '../types.js';

/**
 * What running a rendered WGSL kernel takes beyond its source and its loader (kernel.js), as data
 * the Dawn run program (templates/wgsl/run/dawn-run.mjs) reads: the binding interface (entry point,
 * dispatch, bindings, required features and limits) and the file that fills each input tensor or
 * receives the output. Invariant: written by the renderer from the same plan as the source.
 */
export interface WgslRunSpec extends BindingInterface {
  /** Input tensor -> file in the data directory (`w` -> `w.bin`). */
  inputs: Record<string, string>;
  /** The output tensor and the file it is written to. */
  output: { tensor: string; file: string };
  /**
   * A run-time-length kernel (`kvLength`): the file of int32 lengths to run at, one call each (the
   * first is the one timed); the output file holds their outputs end to end.
   */
  kvLengths?: string;
}

/** The run description's file name beside kernel.wgsl. */
export const WGSL_RUN_SPEC_FILE = 'kgen_run.json';
