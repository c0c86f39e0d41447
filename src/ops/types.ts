import type { KvCacheFormat, Op, Shape, WeightSpec } from '../ir/types.js';
import type { Comparison, InputRounding, Tolerance } from '../reference/compare.js';

/** Inputs of one kernel run as files a harness reads: name (x.bin, w.bin, ...) -> bytes. */
export type KernelInputs = Record<string, Uint8Array>;

/**
 * Seeded test data of one op at one shape: the files a harness reads, the f64 reference of what
 * it must compute, and the judge. Invariant: the same op, shape and seed give the same bytes.
 */
export interface TestData {
  inputs: KernelInputs;
  /** The f64 reference of the checked outputs (all of them for `testData`, a sample for `workloadData`). */
  reference: Float64Array;
  /**
   * Per checked output, the energy of the products summed into it (`compareOutputs`' `terms`), for
   * ops whose outputs are sums that may cancel (matmul); undefined where the check uses the
   * reference alone (attention).
   */
  terms?: Float64Array;
  /**
   * Compares a kernel's raw output (all of it) with the reference under `tolerance`, widened where
   * it states an input rounding (`Tolerance.inputRounding`); returns the bounds it judged by.
   */
  check(output: Uint8Array, tolerance: Tolerance): { ok: boolean; comparison: Comparison; tolerance: Tolerance };
  /**
   * The reference computed from the input that `rounding` names, rounded as it states: what the
   * check widens by, and what `kgen emit --data` writes as ref_rounded.bin. Only ops whose kernels
   * round an input (matmul's int8 activations, attention's int8 Q) have it.
   */
  roundedReference?(rounding: InputRounding): Float64Array;
}

/** A tensor as the manifest describes it to a caller. */
export interface TensorInfo {
  dtype: string;
  shape: string;
  layout: string;
  /** Bytes the caller's buffer for it holds (no padding). */
  bytes: number;
}

/** How an op's weights are stored, for the manifest (ops with weights only). */
export interface WeightsInfo {
  format: string;
  /** The format's layout version (docs/formats.md): bytes of another version must be packed again. */
  formatVersion: number;
  groupSize?: number;
  bitsPerWeight: number;
  rowBytes: number;
  totalBytes: number;
  layout: string;
}

/** One host buffer a verify or tune run allocates (in kgen or in the harness process). */
export interface RunBuffer {
  name: string;
  bytes: number;
}

/**
 * Everything that is specific to one op kind at run time, in that op's file (src/ops/<op>.ts) and
 * registered by kind (src/ops/index.ts): verify, emit, the run kits, the tuner, the runners and the
 * CLI reach op specifics only through the kit of `plan.op.kind`.
 */
export interface OpKit<O extends Op, S extends Shape> {
  kind: O['kind'];
  /** Full test data: every output checked (verify, `emit --data`). */
  testData(op: O, shape: S, seed: number): TestData;
  /** Test data for the tuner: cheap to make at large shapes, a sample of outputs checked. */
  workloadData(op: O, shape: S, seed: number): TestData;
  /** Bytes of the kernel's output. */
  outputBytes(op: O, shape: S): number;
  /** Host buffers a run allocates at its peak, for the memory check before running. */
  runBuffers(op: O, shape: S): RunBuffer[];
  /** The tensors (and weights) as the manifest states them. */
  tensors(op: O, shape: S): {
    tensors: Record<string, TensorInfo>;
    weights?: WeightsInfo;
    /** The version of the entry points' calling convention, where the op states one (attention: `ATTENTION_ABI_VERSION`). */
    abiVersion?: number;
    softmaxScale?: number;
    kvLength?: { min: number; max: number };
  };
  /** The op's weight format, where it has weights (records and `kgen pack` use it). */
  weights(op: O): WeightSpec | undefined;
  /** The format of the KV cache the op reads, where it reads one (a backend's `capabilities.kvCaches`). */
  kvCache(op: O): KvCacheFormat | undefined;
  /**
   * The KV lengths verify checks a run-time-length kernel at (the first is the one timed); undefined
   * for any other op. Defined means the op needs a backend with `capabilities.runtimeKvLength`.
   */
  checkedKvLengths(op: O, shape: S): number[] | undefined;
}
