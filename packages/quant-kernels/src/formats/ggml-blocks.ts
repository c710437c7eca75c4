// ggml-native block formats: a QuantizedLinear whose packed words ARE ggml's blocks (Q4_0 … Q6_K, IQ4_NL,
// IQ4_XS), so GGUF import and export copy bytes and never round-trip through floats.
import { type PackedMatrix, matrixWordsPerRow } from "@int21/bitpack";
import { GGML_TYPES, type GgmlTypeName, f16BitsToF32, ggmlTypeById } from "@int21/io";
import type { QuantizedLinear } from "../types";
import type { FormatRecord } from "./format";

/** The ggml types int21 keeps packed as block formats. */
export type GgmlBlockTypeName =
  | "Q4_0"
  | "Q4_1"
  | "Q5_0"
  | "Q5_1"
  | "Q8_0"
  | "Q2_K"
  | "Q3_K"
  | "Q4_K"
  | "Q5_K"
  | "Q6_K"
  | "IQ4_NL"
  | "IQ4_XS";

/**
 * What a `"block"` format record carries besides {@link FormatRecord}: the ggml type and the block codec.
 * A block of `blockSize` weights is `blockBytes` bytes laid out exactly as ggml's `block_<type>`.
 */
export interface BlockTraits {
  /** ggml's name (`"Q4_K"`) and numeric type id (12) of the block layout. */
  readonly ggmlType: GgmlBlockTypeName;
  readonly ggmlTypeId: number;
  /** Weights per block: 32, or 256 for the k-quants and IQ4_XS (ggml's super-blocks). */
  readonly blockSize: 32 | 256;
  /** Bytes per block (ggml's `type_size`). */
  readonly blockBytes: number;
  /** Byte offsets, inside a block, of its f16 fields (`d`, `dmin`, `m`): validated finite on construction. */
  readonly halfOffsets: readonly number[];
  /** One-line byte layout of a block, ggml's field names, e.g. `d: f16 | qs: u8[16]`. */
  readonly fields: string;
  /**
   * Reference decode (ggml's `to_float`): the `count` weights (`count / blockSize` blocks) stored from
   * `src[srcOff]` into `out[outOff, outOff + count)`.
   */
  decode(src: Uint8Array, srcOff: number, count: number, out: Float32Array, outOff: number): void;
  /**
   * Reference round-to-nearest encode (ggml's `from_float` as `llama-quantize` runs it without an importance
   * matrix; bit-identical to llama.cpp): `count` weights from `w[wOff]` into blocks at `out[outOff]`.
   */
  encode(w: Float32Array, wOff: number, count: number, out: Uint8Array, outOff: number): void;
}

/** A format record of decode kind `"block"` (its {@link BlockTraits} in `block`). */
export type BlockFormatRecord = FormatRecord & { readonly decode: "block"; readonly block: BlockTraits };

/** Whether `f` is a ggml block format record. */
export function isBlockFormat(f: { decode?: string }): f is BlockFormatRecord {
  return f.decode === "block" && (f as Partial<BlockFormatRecord>).block !== undefined;
}

/** Bytes of one output row of `K` weights: `K / blockSize` blocks (K must be a multiple of the block). */
export function blockRowBytes(f: BlockFormatRecord, K: number): number {
  return (K / f.block.blockSize) * f.block.blockBytes;
}

/** The row's bytes as a view on the packed words (row `n` starts at word `n·wordsPerRow`). */
export function blockRowView(q: QuantizedLinear, n: number, rowBytes: number): Uint8Array {
  const { words, wordsPerRow } = q.qweight;
  return new Uint8Array(words.buffer, words.byteOffset + n * wordsPerRow * 4, rowBytes);
}

function noGroups(name: string, what: string): never {
  throw new Error(
    `quant-kernels: format ${name} is a ggml block format: it has no per-group ${what}; ` +
      "use quantizeRow / dequantizeRow (or rtnQuantize, quantizedFromGgmlBlocks)",
  );
}

/**
 * Builds the block format record `id` over io's reference decoder and encoder of ggml type `type`: its f16
 * fields at `halfOffsets`, its byte layout `fields`, the per-weight error bound of its RTN encode for a
 * block spanning `[lo, hi]` (documented per format), named `type` in lower case unless `name` is given.
 */
function defineBlockFormat(
  id: number,
  type: GgmlBlockTypeName,
  halfOffsets: readonly number[],
  fields: string,
  errorBound: (lo: number, hi: number) => number,
  name: string = type.toLowerCase(),
): BlockFormatRecord {
  const t = GGML_TYPES[type as GgmlTypeName];
  const toFloat = t.dequantize;
  const fromFloat = t.quantize;
  if (toFloat === undefined || fromFloat === undefined)
    throw new Error(`quant-kernels: ${name}: @int21/io has no codec for ggml ${type}`);
  const blockSize = t.blockSize as 32 | 256;
  const blockBytes = t.blockBytes;
  const bitsPerWeight = (8 * blockBytes) / blockSize;
  const block: BlockTraits = Object.freeze({
    ggmlType: type,
    ggmlTypeId: t.id,
    blockSize,
    blockBytes,
    halfOffsets: Object.freeze([...halfOffsets]),
    fields,
    decode(src: Uint8Array, srcOff: number, count: number, out: Float32Array, outOff: number) {
      toFloat(src.subarray(srcOff), out.subarray(outOff, outOff + count), count);
    },
    encode(w: Float32Array, wOff: number, count: number, out: Uint8Array, outOff: number) {
      fromFloat(w.subarray(wOff, wOff + count), out.subarray(outOff));
    },
  });
  const rowBuf = { w: new Float32Array(0) };
  const record: BlockFormatRecord = {
    id,
    name,
    decode: "block",
    block,
    bits: 8,
    groupSize: blockSize,
    symmetric: true,
    scaleDtype: "f16",
    qmax: 255,
    paramBytes: 2,
    layout: `ggml block_${type.toLowerCase()} of ${blockSize}: ${fields} (${blockBytes} bytes) → ${bitsPerWeight} bpw`,
    bytesPerGroup: blockBytes,
    bitsPerWeight,
    groupBytes: (len) => Math.ceil(len / blockSize) * blockBytes,
    bitsPerWeightAt: (K) => (8 * Math.ceil(K / blockSize) * blockBytes) / K,
    params: () => noGroups(name, "scale and zero"),
    code: () => noGroups(name, "code"),
    value: () => noGroups(name, "value"),
    errorBound,
    quantizeGroup: () => noGroups(name, "quantizer"),
    dequantizeGroup: () => noGroups(name, "dequantizer"),
    dequantizeRow(q, n, out, outOff) {
      const K = q.inFeatures;
      block.decode(blockRowView(q, n, (K / blockSize) * blockBytes), 0, K, out, outOff);
    },
    quantizeRow(w, wOff, K, codes, codeOff) {
      if (K % blockSize !== 0)
        throw new Error(
          `quant-kernels: ${name}: a row of ${K} weights is not a whole number of ${blockSize}-weight blocks`,
        );
      let src: Float32Array;
      let off = wOff;
      if (w instanceof Float32Array) src = w;
      else {
        if (rowBuf.w.length < K) rowBuf.w = new Float32Array(K);
        src = rowBuf.w;
        for (let k = 0; k < K; k++) src[k] = w[wOff + k];
        off = 0;
      }
      block.encode(src, off, K, codes, codeOff);
    },
  };
  return Object.freeze(record);
}

const amaxOf = (lo: number, hi: number): number => Math.max(Math.abs(lo), Math.abs(hi));
/** f16 slack of a stored value `v` (half an f16 ulp, relative) plus the smallest f16 subnormal. */
const h16 = (v: number): number => Math.abs(v) * 2 ** -11 + 2 ** -24;
/** Bound of a symmetric 32-weight format with step `amax / div` and `slack` f16 roundings of it. */
const symBound =
  (div: number, slack: number) =>
  (lo: number, hi: number): number =>
    amaxOf(lo, hi) / div + slack * h16(amaxOf(lo, hi) / div);
/** Bound of an asymmetric (`d·q + m`) 32-weight format with codes 0 … `top`. */
const minBound =
  (top: number) =>
  (lo: number, hi: number): number =>
    (hi - lo) / top / 2 + top * h16((hi - lo) / top) + h16(lo) + (hi - lo) * 2 ** -20;
/** Bound of a k-quant with mins: the block's range (0 included) over `div`. */
const spanBound =
  (div: number) =>
  (lo: number, hi: number): number =>
    (Math.max(hi, 0) - Math.min(lo, 0)) / div + h16(hi - lo);
/** Bound of a signed k-quant or IQ format: the block's largest magnitude over `div`. */
const amaxBound =
  (div: number) =>
  (lo: number, hi: number): number =>
    amaxOf(lo, hi) / div + h16(amaxOf(lo, hi));

// Error bounds: a weight's |w − ŵ| after the record's RTN encode, for a block spanning [lo, hi]. The
// 32-weight formats are half a step (a full step where ggml clamps the far end) plus the f16 rounding of the
// stored parameters. The k-quants and IQ formats choose scales by a search and store them quantized
// (4–8 bits) against a block-wide f16 `d`, so their bound is the coarse step of the block's whole range — a
// sanity bound that catches a broken codec, not a tight one (bit-identity with llama.cpp is tested instead).

/**
 * `q4_0` (id 6002): ggml `Q4_0` — 32 weights in 18 bytes, `d: f16 | qs: u8[16]`, `w = d·(q − 8)` (low nibble
 * of `qs[j]` is weight j, high nibble weight j + 16). 4.5 bpw.
 */
export const Q4_0_FORMAT = defineBlockFormat(6002, "Q4_0", [0], "d: f16 | qs: u8[16]", symBound(8, 16));

/** `q4_1` (id 6003): ggml `Q4_1` — 32 weights in 20 bytes, `d: f16 | m: f16 | qs: u8[16]`, `w = d·q + m`. 5 bpw. */
export const Q4_1_FORMAT = defineBlockFormat(
  6003,
  "Q4_1",
  [0, 2],
  "d: f16 | m: f16 | qs: u8[16]",
  minBound(15),
);

/**
 * `q5_0` (id 6006): ggml `Q5_0` — 32 weights in 22 bytes, `d: f16 | qh: u32 | qs: u8[16]`, `w = d·(q − 16)`
 * (bit 4 of weight j is bit j of `qh`). 5.5 bpw.
 */
export const Q5_0_FORMAT = defineBlockFormat(
  6006,
  "Q5_0",
  [0],
  "d: f16 | qh: u32 | qs: u8[16]",
  symBound(16, 32),
);

/** `q5_1` (id 6007): ggml `Q5_1` — 32 weights in 24 bytes, `d: f16 | m: f16 | qh: u32 | qs: u8[16]`, `w = d·q + m`. 6 bpw. */
export const Q5_1_FORMAT = defineBlockFormat(
  6007,
  "Q5_1",
  [0, 2],
  "d: f16 | m: f16 | qh: u32 | qs: u8[16]",
  minBound(31),
);

/** `q8_0` (id 6008): ggml `Q8_0` — 32 weights in 34 bytes, `d: f16 | qs: i8[32]`, `w = d·q`. 8.5 bpw. */
export const Q8_0_FORMAT = defineBlockFormat(
  6008,
  "Q8_0",
  [0],
  "d: f16 | qs: i8[32]",
  (lo, hi) => amaxOf(lo, hi) / 127 / 2 + 127 * h16(amaxOf(lo, hi) / 127),
);

/**
 * `q2_k` (id 6010): ggml `Q2_K` — 256 weights in 84 bytes, `scales: u8[16] | qs: u8[64] | d: f16 | dmin: f16`;
 * 16 sub-blocks of 16 with 4-bit scale and min, `w = d·sc·q − dmin·m`, q 2 bits. 2.625 bpw.
 */
export const Q2_K_FORMAT = defineBlockFormat(
  6010,
  "Q2_K",
  [80, 82],
  "scales: u8[16] | qs: u8[64] | d: f16 | dmin: f16",
  spanBound(2),
);

/**
 * `q3_k` (id 6011): ggml `Q3_K` — 256 weights in 110 bytes, `hmask: u8[32] | qs: u8[64] | scales: u8[12] | d: f16`;
 * 16 sub-blocks of 16 with signed 6-bit scales, `w = d·sc·q`, q in −4 … 3. 3.4375 bpw.
 */
export const Q3_K_FORMAT = defineBlockFormat(
  6011,
  "Q3_K",
  [108],
  "hmask: u8[32] | qs: u8[64] | scales: u8[12] | d: f16",
  amaxBound(2),
);

/**
 * `q4_k` (id 6012): ggml `Q4_K` — 256 weights in 144 bytes, `d: f16 | dmin: f16 | scales: u8[12] | qs: u8[128]`;
 * 8 sub-blocks of 32 with 6-bit scale and min, `w = d·sc·q − dmin·m`, q 4 bits. 4.5 bpw.
 */
export const Q4_K_FORMAT = defineBlockFormat(
  6012,
  "Q4_K",
  [0, 2],
  "d: f16 | dmin: f16 | scales: u8[12] | qs: u8[128]",
  spanBound(8),
);

/**
 * `q5_k` (id 6013): ggml `Q5_K` — 256 weights in 176 bytes, `d: f16 | dmin: f16 | scales: u8[12] | qh: u8[32] |
 * qs: u8[128]`; as Q4_K with 5-bit q. 5.5 bpw.
 */
export const Q5_K_FORMAT = defineBlockFormat(
  6013,
  "Q5_K",
  [0, 2],
  "d: f16 | dmin: f16 | scales: u8[12] | qh: u8[32] | qs: u8[128]",
  spanBound(16),
);

/**
 * `q6_k` (id 6014): ggml `Q6_K` — 256 weights in 210 bytes, `ql: u8[128] | qh: u8[64] | scales: i8[16] | d: f16`;
 * 16 sub-blocks of 16 with int8 scales, `w = d·sc·(q − 32)`, q 6 bits. 6.5625 bpw.
 */
export const Q6_K_FORMAT = defineBlockFormat(
  6014,
  "Q6_K",
  [208],
  "ql: u8[128] | qh: u8[64] | scales: i8[16] | d: f16",
  amaxBound(16),
);

/**
 * `iq4_nl-ggml` (id 6020): ggml `IQ4_NL` in ggml's bytes — 32 weights in 18 bytes, `d: f16 | qs: u8[16]`,
 * `w = d·kvalues_iq4nl[q]`. 4.5 bpw. The planar `iq4_nl` record (id 5111, a codebook format with its
 * scales in a separate array) holds the same values in int21's planar layout and keeps its name, since
 * checkpoints, fine-tuning and the GPU backends use it; this one is what a GGUF IQ4_NL tensor loads into
 * and exports from byte for byte.
 */
export const IQ4_NL_GGML_FORMAT = defineBlockFormat(
  6020,
  "IQ4_NL",
  [0],
  "d: f16 | qs: u8[16]",
  amaxBound(8),
  "iq4_nl-ggml",
);

/**
 * `iq4_xs` (id 6023): ggml `IQ4_XS` — 256 weights in 136 bytes, `d: f16 | scales_h: u16 | scales_l: u8[4] |
 * qs: u8[128]`; 8 sub-blocks of 32 with 6-bit scales, `w = d·(ls − 32)·kvalues_iq4nl[q]`. 4.25 bpw.
 */
export const IQ4_XS_FORMAT = defineBlockFormat(
  6023,
  "IQ4_XS",
  [0],
  "d: f16 | scales_h: u16 | scales_l: u8[4] | qs: u8[128]",
  amaxBound(4),
);

/** Every ggml block format record, in ggml type-id order. */
export const GGML_BLOCK_FORMATS: readonly BlockFormatRecord[] = Object.freeze([
  Q4_0_FORMAT,
  Q4_1_FORMAT,
  Q5_0_FORMAT,
  Q5_1_FORMAT,
  Q8_0_FORMAT,
  Q2_K_FORMAT,
  Q3_K_FORMAT,
  Q4_K_FORMAT,
  Q5_K_FORMAT,
  Q6_K_FORMAT,
  IQ4_NL_GGML_FORMAT,
  IQ4_XS_FORMAT,
]);

const BY_GGML = new Map<number, BlockFormatRecord>(GGML_BLOCK_FORMATS.map((f) => [f.block.ggmlTypeId, f]));

/**
 * The block format record of a ggml type (name such as `"Q4_K"` or numeric type id 12), or undefined when
 * int21 has no block format for it (F32, F16, BF16, Q8_1, the IQ2/IQ3/IQ1 types, …).
 */
export function blockFormatOfGgmlType(type: string | number): BlockFormatRecord | undefined {
  const id = typeof type === "number" ? type : GGML_TYPES[type as GgmlTypeName]?.id;
  return id === undefined ? undefined : BY_GGML.get(id);
}

/**
 * Checks a block format layer's packed storage (K a whole number of blocks, qweight an 8-bit matrix of N rows
 * of `K / blockSize · blockBytes` bytes, no planar scales / zeros / gIdx, every stored f16 finite). Throws an
 * Error naming the row and block. Called by `createQuantizedLinear`.
 */
export function checkBlockStorage(
  f: BlockFormatRecord,
  N: number,
  K: number,
  qw: PackedMatrix,
  scales: Float32Array | undefined,
  zeros: Float32Array | undefined,
  gIdx: Int32Array | undefined,
  fail: (msg: string) => never,
): void {
  const { blockSize, blockBytes, halfOffsets } = f.block;
  if (K % blockSize !== 0) {
    fail(
      `inFeatures K = ${K} is not a multiple of ${f.name}'s block of ${blockSize} weights (ggml ${f.block.ggmlType} stores whole blocks)`,
    );
  }
  const rowBytes = (K / blockSize) * blockBytes;
  if (qw.bits !== 8)
    fail(`qweight of the block format ${f.name} must be an 8-bit (byte) matrix, has ${qw.bits}-bit codes`);
  if (qw.rows !== N || qw.cols !== rowBytes) {
    fail(
      `qweight is ${qw.rows}×${qw.cols} bytes, expected N rows × ${rowBytes} bytes (${K / blockSize} ${f.block.ggmlType} blocks of ${blockBytes} bytes) = ${N}×${rowBytes}`,
    );
  }
  const wpr = matrixWordsPerRow(rowBytes, 8);
  if (qw.wordsPerRow !== wpr || qw.words.length !== N * wpr) {
    fail(
      `qweight needs ${N * wpr} words (${wpr} per row), has ${qw.words.length} (${qw.wordsPerRow} per row)`,
    );
  }
  if (scales !== undefined && scales.length !== 0)
    fail(
      `scales must be empty for the block format ${f.name} (its scales live inside the blocks), has ${scales.length}`,
    );
  if (zeros !== undefined && zeros.length !== 0)
    fail(`zeros must be empty for the block format ${f.name}, has ${zeros.length}`);
  if (gIdx !== undefined)
    fail(`the block format ${f.name} has no act-order gIdx (ggml blocks are contiguous)`);
  const bytes = new Uint8Array(qw.words.buffer, qw.words.byteOffset, qw.words.byteLength);
  const nB = K / blockSize;
  for (let n = 0; n < N; n++) {
    const r = n * wpr * 4;
    for (let b = 0; b < nB; b++) {
      for (const h of halfOffsets) {
        const o = r + b * blockBytes + h;
        if (((bytes[o + 1] >> 2) & 31) === 31) {
          const v = f16BitsToF32(bytes[o] | (bytes[o + 1] << 8));
          fail(
            `row ${n}, block ${b}: the f16 field at byte ${h} of the ${f.block.ggmlType} block is ${v} (not finite)`,
          );
        }
      }
    }
  }
}

/**
 * The block format record of `type` (a ggml type name or id, or a record); throws an Error naming the type
 * and listing the ggml types that have one when there is none.
 */
export function blockFormatOrThrow(type: string | number | FormatRecord): BlockFormatRecord {
  if (typeof type === "object") {
    if (isBlockFormat(type)) return type;
    throw new Error(`quant-kernels: format ${type.name} is not a ggml block format`);
  }
  const f = blockFormatOfGgmlType(type);
  if (f === undefined) {
    const name = typeof type === "number" ? (ggmlTypeById(type)?.name ?? `id ${type}`) : type;
    throw new Error(
      `quant-kernels: ggml type ${name} has no int21 block format; block formats exist for ${GGML_BLOCK_FORMATS.map((g) => g.block.ggmlType).join(", ")}`,
    );
  }
  return f;
}
