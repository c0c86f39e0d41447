/**
 * A minimal hand-written protobuf encoder for the few ONNX messages the peer benchmark needs
 * (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto), so the bench
 * can build a one-node `com.microsoft.MatMulNBits` model without an onnx/protobuf dependency.
 * Field numbers are from onnx/onnx.proto.
 */

/** ONNX TensorProto.DataType values used here. */
export const ONNX_FLOAT = 1;
export const ONNX_UINT8 = 2;
export const ONNX_INT32 = 6;
export const ONNX_FLOAT16 = 10;

const WIRE_VARINT = 0;
const WIRE_LEN = 2;

class Writer {
  private chunks: Uint8Array[] = [];
  private length = 0;

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  private varint(value: number | bigint): void {
    let v = BigInt(value);
    if (v < 0n) v = BigInt.asUintN(64, v);
    const out: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      out.push(byte);
    } while (v !== 0n);
    this.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.varint(value);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LEN);
    this.varint(value.length);
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, value: Writer): this {
    return this.bytes(field, value.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

export interface OnnxTensor {
  name: string;
  dataType: number;
  dims: readonly number[];
  /** Little-endian raw bytes of the values. */
  raw: Uint8Array;
}

export interface OnnxValueInfo {
  name: string;
  elemType: number;
  dims: readonly number[];
}

export interface OnnxNode {
  opType: string;
  domain?: string;
  name?: string;
  inputs: readonly string[];
  outputs: readonly string[];
  /** Integer attributes only (all MatMulNBits and GroupQueryAttention need here). */
  intAttributes?: Readonly<Record<string, number>>;
}

export interface OnnxGraph {
  name: string;
  nodes: readonly OnnxNode[];
  initializers: readonly OnnxTensor[];
  inputs: readonly OnnxValueInfo[];
  outputs: readonly OnnxValueInfo[];
}

function tensorProto(t: OnnxTensor): Writer {
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.dataType).string(8, t.name).bytes(9, t.raw);
  return w;
}

function valueInfoProto(v: OnnxValueInfo): Writer {
  const shape = new Writer();
  for (const d of v.dims) shape.message(1, new Writer().int(1, d));
  const tensorType = new Writer().int(1, v.elemType).message(2, shape);
  const type = new Writer().message(1, tensorType);
  return new Writer().string(1, v.name).message(2, type);
}

function nodeProto(n: OnnxNode): Writer {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const [name, value] of Object.entries(n.intAttributes ?? {})) {
    // AttributeProto: name=1, i=3, type=20 (INT = 2)
    w.message(5, new Writer().string(1, name).int(3, value).int(20, 2));
  }
  if (n.domain) w.string(7, n.domain);
  return w;
}

/** Serialises a ModelProto (ir_version 8) with the given opsets, e.g. { '': 17, 'com.microsoft': 1 }. */
export function encodeModel(graph: OnnxGraph, opsets: Readonly<Record<string, number>>): Uint8Array {
  const g = new Writer();
  for (const n of graph.nodes) g.message(1, nodeProto(n));
  g.string(2, graph.name);
  for (const t of graph.initializers) g.message(5, tensorProto(t));
  for (const i of graph.inputs) g.message(11, valueInfoProto(i));
  for (const o of graph.outputs) g.message(12, valueInfoProto(o));

  const m = new Writer().int(1, 8);
  for (const [domain, version] of Object.entries(opsets)) {
    const op = new Writer();
    if (domain) op.string(1, domain);
    op.int(2, version);
    m.message(8, op);
  }
  m.message(7, g);
  return m.finish();
}

export function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export interface MatMulNBitsModel {
  M: number;
  N: number;
  K: number;
  /**
   * One entry per MatMulNBits node: node i computes Y<i> = MatMulNBits(A, B<i>, scales<i>).
   * b: uint8 [N, K/blockSize, blockSize/2], two 4-bit codes per byte, element 2j in the low nibble;
   * scales: f32 [N * K/blockSize].
   */
  weights: readonly { b: Uint8Array; scales: Float32Array }[];
  /** MatMulNBits accuracy_level: 0 = default (f32 compute), 4 = int8 activations. */
  accuracyLevel: number;
  /** Weights per scale (block_size; default 32). */
  blockSize?: number;
}

/**
 * Y<i>[M,N] = MatMulNBits(A[M,K], B<i>, scales<i>), bits=4, block_size=32 (or `blockSize`), no zero points (so zero
 * point 8: value = (code - 8) * scale), one node per weight set, all reading the same A. B and
 * scales are initializers, so ORT can pre-pack them once at session creation.
 */
export function matMulNBitsModel(p: MatMulNBitsModel): Uint8Array {
  const blockSize = p.blockSize ?? 32;
  const blocks = p.K / blockSize;
  const nodes: OnnxNode[] = [];
  const initializers: OnnxTensor[] = [];
  const outputs: OnnxValueInfo[] = [];
  p.weights.forEach((w, i) => {
    if (w.b.length !== (p.N * p.K) / 2) throw new Error('MatMulNBits: B has the wrong size');
    if (w.scales.length !== p.N * blocks) throw new Error('MatMulNBits: scales has the wrong size');
    nodes.push({
      opType: 'MatMulNBits',
      domain: 'com.microsoft',
      name: `mm${i}`,
      inputs: ['A', `B${i}`, `scales${i}`],
      outputs: [`Y${i}`],
      intAttributes: { K: p.K, N: p.N, bits: 4, block_size: blockSize, accuracy_level: p.accuracyLevel },
    });
    initializers.push({ name: `B${i}`, dataType: ONNX_UINT8, dims: [p.N, blocks, blockSize / 2], raw: w.b });
    initializers.push({ name: `scales${i}`, dataType: ONNX_FLOAT, dims: [p.N * blocks], raw: f32Bytes(w.scales) });
    outputs.push({ name: `Y${i}`, elemType: ONNX_FLOAT, dims: [p.M, p.N] });
  });
  return encodeModel(
    { name: 'kgen_peer', nodes, initializers, inputs: [{ name: 'A', elemType: ONNX_FLOAT, dims: [p.M, p.K] }], outputs },
    { '': 17, 'com.microsoft': 1 },
  );
}

export interface GroupQueryAttentionModel {
  Hq: number;
  Hkv: number;
  D: number;
  /** New tokens per call (query, key and value rows). */
  Sq: number;
  /** Sequence length of past_key/past_value (0: no past inputs, a prompt). */
  pastLength: number;
  /** Sequence length of present_key/present_value: pastLength when they share the past's buffer. */
  presentLength: number;
  /** Element type of Q, K, V, the caches and the output: ONNX_FLOAT or ONNX_FLOAT16. */
  elemType: number;
  /** Nodes, each with its own key/value (and past) inputs and outputs, all reading the same query. */
  nodes: number;
}

/**
 * `com.microsoft.GroupQueryAttention` nodes (num_heads Hq, kv_num_heads Hkv, the default scale
 * 1/sqrt(D), no rotary, causal as the op always is). Node i reads query [1,Sq,Hq·D], key<i> and
 * value<i> [1,Sq,Hkv·D], past_key<i> and past_value<i> [1,Hkv,pastLength,D] (BNSH; absent when
 * pastLength is 0), and the shared seqlens_k [1] (int32: total length - 1) and
 * total_sequence_length (int32 scalar); it writes O<i> [1,Sq,Hq·D] and present_key<i>,
 * present_value<i> [1,Hkv,presentLength,D].
 */
export function groupQueryAttentionModel(p: GroupQueryAttentionModel): Uint8Array {
  const t = p.elemType;
  const nodes: OnnxNode[] = [];
  const inputs: OnnxValueInfo[] = [
    { name: 'query', elemType: t, dims: [1, p.Sq, p.Hq * p.D] },
    { name: 'seqlens_k', elemType: ONNX_INT32, dims: [1] },
    { name: 'total_sequence_length', elemType: ONNX_INT32, dims: [] },
  ];
  const outputs: OnnxValueInfo[] = [];
  for (let i = 0; i < p.nodes; i++) {
    const past = p.pastLength > 0 ? [`past_key${i}`, `past_value${i}`] : ['', ''];
    nodes.push({
      opType: 'GroupQueryAttention',
      domain: 'com.microsoft',
      name: `gqa${i}`,
      inputs: ['query', `key${i}`, `value${i}`, ...past, 'seqlens_k', 'total_sequence_length'],
      outputs: [`O${i}`, `present_key${i}`, `present_value${i}`],
      intAttributes: { num_heads: p.Hq, kv_num_heads: p.Hkv },
    });
    for (const n of [`key${i}`, `value${i}`]) inputs.push({ name: n, elemType: t, dims: [1, p.Sq, p.Hkv * p.D] });
    if (p.pastLength > 0) for (const n of past) inputs.push({ name: n, elemType: t, dims: [1, p.Hkv, p.pastLength, p.D] });
    outputs.push({ name: `O${i}`, elemType: t, dims: [1, p.Sq, p.Hq * p.D] });
    for (const n of [`present_key${i}`, `present_value${i}`]) outputs.push({ name: n, elemType: t, dims: [1, p.Hkv, p.presentLength, p.D] });
  }
  return encodeModel({ name: 'kgen_peer_gqa', nodes, initializers: [], inputs, outputs }, { '': 17, 'com.microsoft': 1 });
}
