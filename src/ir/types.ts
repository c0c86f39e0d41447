/**
 * kgen's tensor IR: a tiny, closed set of ops described as plain data.
 *
 * Invariants (established by `validateOp`, relied on by every later layer):
 * - `name` matches /^[a-z][a-z0-9_]{0,47}$/ and is used verbatim in generated symbol names; nothing
 *   else from a user's IR ever reaches generated source as text.
 * - Every number is finite and integral where a count is meant.
 * - Dimensions are not part of the op: they are symbols (`MATMUL_DIMS`, `ATTENTION_DIMS`) bound by a
 *   `Shape` at emit time, so one op describes a kernel family.
 */
export type ActDType = 'f32' | 'f16';

/** Weight formats, bit layouts in docs/formats.md. */
export type WeightFormatName = 'q35' | 'q4' | 'q8' | 'q4_0' | 'q8_0' | 'f16';

export interface WeightSpec {
  format: WeightFormatName;
  /** Weights per scale group. Fixed at 32 for the ggml formats q4_0/q8_0; absent for f16. */
  groupSize?: number;
}

export type EpilogueActivation = 'none' | 'silu' | 'gelu';

/**
 * Fused epilogue, applied per output element in this order:
 * `y = activation(acc + bias[n]) + residual[m, n]`.
 */
export interface Epilogue {
  bias: boolean;
  activation: EpilogueActivation;
  residual: boolean;
}

/** Y[M,N] = X[M,K] . W[N,K]^T with f32 accumulation, then the epilogue. */
export interface MatmulOp {
  kind: 'matmul';
  name: string;
  x: ActDType;
  weight: WeightSpec;
  y: ActDType;
  epilogue: Epilogue;
}

/**
 * KV cache formats (docs/formats.md, "KV cache"): f16; kgen's q8 (int8 codes, f16 scales per
 * `kvGroupSize` values along D in a separate array); ggml's q8_0 and q4_0 blocks of 32 along D.
 */
export type KvCacheFormat = 'f16' | 'q8' | 'q8_0' | 'q4_0';

/**
 * Order of the KV rows (one row = D values of one position of one KV head) within a batch entry:
 * `heads_positions` is [Hkv, Skv, D] (each head's positions contiguous), `positions_heads` is
 * [Skv, Hkv, D] (llama.cpp's cache: one position of every head per row of Hkv*D).
 */
export type KvLayout = 'heads_positions' | 'positions_heads';

/**
 * O[B,Hq,Sq,D] = softmax(scale * Q K^T [+ causal mask]) V with grouped-query heads: query head h
 * reads KV head floor(h / (Hq / Hkv)). Causal masking aligns the last query with the last key
 * (query i sees keys j <= i + Skv - Sq), as in decoding with a KV cache.
 */
export interface AttentionOp {
  kind: 'attention';
  name: string;
  q: ActDType;
  kvCache: KvCacheFormat;
  /** Values per q8 scale along D; only for kvCache 'q8'. */
  kvGroupSize?: number;
  /** Row order of K and V; absent means the format's default (`kvLayoutOf`). */
  kvLayout?: KvLayout;
  o: ActDType;
  causal: boolean;
  /** Softmax scale; absent means 1/sqrt(D), bound with the shape. */
  scale?: number;
  /**
   * 'runtime': Skv is the cache's capacity and each call passes the length it reads (kv_len, 1..Skv;
   * causal: Sq..Skv), the queries aligned to position kv_len - 1; absent: every call reads Skv
   * positions. Only targets whose capabilities say `runtimeKvLength` render it.
   */
  kvLength?: 'runtime';
}

export type Op = MatmulOp | AttentionOp;
export type OpKind = Op['kind'];

export const MATMUL_DIMS = ['M', 'N', 'K'] as const;
export const ATTENTION_DIMS = ['B', 'Hq', 'Hkv', 'Sq', 'Skv', 'D'] as const;
export type MatmulDim = (typeof MATMUL_DIMS)[number];
export type AttentionDim = (typeof ATTENTION_DIMS)[number];

export type MatmulShape = Record<MatmulDim, number>;
export type AttentionShape = Record<AttentionDim, number>;
export type Shape = MatmulShape | AttentionShape;

/** Each op kind's op and shape types, by kind (`OpOf<'matmul'>` is `MatmulOp`). */
export interface OpTypes {
  matmul: { op: MatmulOp; shape: MatmulShape };
  attention: { op: AttentionOp; shape: AttentionShape };
}
export type OpOf<K extends OpKind> = OpTypes[K]['op'];
export type ShapeOf<K extends OpKind> = OpTypes[K]['shape'];

/** Reports a shape mistake: the field (`--shape K`), the problem, what was expected and a hint. */
export type ShapeFail = (field: string, problem: string, expected: string, hint?: string) => never;

/**
 * One op kind's IR, in its own file (src/ir/<op>.ts) and registered by kind in src/ir/ops.ts: how
 * untrusted JSON becomes an op, the dimension symbols a shape binds, and the op's shape rules.
 */
export interface OpIr<O extends Op, S extends Shape> {
  kind: O['kind'];
  /** Dimension symbols in the order shapes are written. */
  dims: readonly string[];
  /** A shape as the user writes it, for messages. */
  exampleShape: string;
  /** Checks untrusted JSON (already known to be an object of this kind) at `path`. */
  validate(obj: Record<string, unknown>, path: string): O;
  /** The op's rules over a shape whose dimensions are all positive integers. */
  checkShape(op: O, shape: S, field: string, fail: ShapeFail): void;
}
