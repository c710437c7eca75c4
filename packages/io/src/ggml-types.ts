// The registry of ggml tensor types a GGUF file can name: stable numeric id (never reused), block size in
// weights, bytes per block, and the reference dequantizer / quantizer where this package has one.

import {
  dequantizeQ2_K,
  dequantizeQ3_K,
  dequantizeQ4_0,
  dequantizeQ4_1,
  dequantizeQ4_K,
  dequantizeQ5_0,
  dequantizeQ5_1,
  dequantizeQ5_K,
  dequantizeQ6_K,
  dequantizeQ8_0,
  dequantizeIQ4_NL,
  dequantizeIQ4_XS,
} from "./ggml-dequant";
import { quantizeQ4_0, quantizeQ4_1, quantizeQ8_0 } from "./ggml-quantize";
import {
  quantizeIQ4_NL,
  quantizeIQ4_XS,
  quantizeQ2_K,
  quantizeQ3_K,
  quantizeQ4_K,
  quantizeQ5_0,
  quantizeQ5_1,
  quantizeQ5_K,
  quantizeQ6_K,
} from "./ggml-quantize-k";
import { bf16ToF32, f16ToF32, f32BitsToBf16, f32BitsToF16 } from "./half";

/** Names of the ggml types in the registry. */
export type GgmlTypeName =
  | "F32"
  | "F16"
  | "Q4_0"
  | "Q4_1"
  | "Q5_0"
  | "Q5_1"
  | "Q8_0"
  | "Q8_1"
  | "Q2_K"
  | "Q3_K"
  | "Q4_K"
  | "Q5_K"
  | "Q6_K"
  | "Q8_K"
  | "IQ2_XXS"
  | "IQ2_XS"
  | "IQ3_XXS"
  | "IQ1_S"
  | "IQ4_NL"
  | "IQ3_S"
  | "IQ2_S"
  | "IQ4_XS"
  | "I8"
  | "I16"
  | "I32"
  | "I64"
  | "F64"
  | "IQ1_M"
  | "BF16"
  | "TQ1_0"
  | "TQ2_0"
  | "MXFP4";

/** One ggml tensor type. */
export interface GgmlType {
  readonly id: number;
  readonly name: GgmlTypeName;
  /** Weights per block (1 for plain element types). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly blockBytes: number;
  /** `8 * blockBytes / blockSize`. */
  readonly bitsPerWeight: number;
  /** Reference dequantizer: `count` values from `count / blockSize` blocks in `src` into `out`. */
  readonly dequantize?: (src: Uint8Array, out: Float32Array, count: number) => Float32Array;
  /** Reference quantizer: `src.length / blockSize` blocks into `out` (for the types the writer produces). */
  readonly quantize?: (src: Float32Array, out: Uint8Array) => Uint8Array;
}

function plain(src: Uint8Array, count: number, bytes: number): Uint8Array {
  if (src.length < count * bytes)
    throw new RangeError(`io: source has ${src.length} bytes, needs ${count * bytes}`);
  // Typed views need aligned offsets; copy when the source is not.
  return src.byteOffset % bytes === 0 ? src : src.slice(0, count * bytes);
}

const F32_TYPE: GgmlType = {
  id: 0,
  name: "F32",
  blockSize: 1,
  blockBytes: 4,
  bitsPerWeight: 32,
  dequantize(src, out, count) {
    const s = plain(src, count, 4);
    out.set(new Float32Array(s.buffer, s.byteOffset, count));
    return out;
  },
  quantize(src, out) {
    out.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    return out;
  },
};

function halfType(
  id: number,
  name: "F16" | "BF16",
  toF32: typeof f16ToF32,
  round: (bits: number) => number,
): GgmlType {
  return {
    id,
    name,
    blockSize: 1,
    blockBytes: 2,
    bitsPerWeight: 16,
    dequantize(src, out, count) {
      const s = plain(src, count, 2);
      return toF32(new Uint16Array(s.buffer, s.byteOffset, count), out);
    },
    quantize(src, out) {
      const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
      for (let i = 0; i < bits.length; i++) {
        const h = round(bits[i]);
        out[2 * i] = h & 255;
        out[2 * i + 1] = h >> 8;
      }
      return out;
    },
  };
}

const t = (
  id: number,
  name: GgmlTypeName,
  blockSize: number,
  blockBytes: number,
  dequantize?: GgmlType["dequantize"],
  quantize?: GgmlType["quantize"],
): GgmlType => ({
  id,
  name,
  blockSize,
  blockBytes,
  bitsPerWeight: (8 * blockBytes) / blockSize,
  dequantize,
  quantize,
});

/** Every ggml type by name. Ids 4, 5 and 31–33 were removed from ggml and are not reused. */
export const GGML_TYPES: Readonly<Record<GgmlTypeName, GgmlType>> = {
  F32: F32_TYPE,
  F16: halfType(1, "F16", f16ToF32, f32BitsToF16),
  Q4_0: t(2, "Q4_0", 32, 18, dequantizeQ4_0, quantizeQ4_0),
  Q4_1: t(3, "Q4_1", 32, 20, dequantizeQ4_1, quantizeQ4_1),
  Q5_0: t(6, "Q5_0", 32, 22, dequantizeQ5_0, quantizeQ5_0),
  Q5_1: t(7, "Q5_1", 32, 24, dequantizeQ5_1, quantizeQ5_1),
  Q8_0: t(8, "Q8_0", 32, 34, dequantizeQ8_0, quantizeQ8_0),
  Q8_1: t(9, "Q8_1", 32, 36),
  Q2_K: t(10, "Q2_K", 256, 84, dequantizeQ2_K, quantizeQ2_K),
  Q3_K: t(11, "Q3_K", 256, 110, dequantizeQ3_K, quantizeQ3_K),
  Q4_K: t(12, "Q4_K", 256, 144, dequantizeQ4_K, quantizeQ4_K),
  Q5_K: t(13, "Q5_K", 256, 176, dequantizeQ5_K, quantizeQ5_K),
  Q6_K: t(14, "Q6_K", 256, 210, dequantizeQ6_K, quantizeQ6_K),
  Q8_K: t(15, "Q8_K", 256, 292),
  IQ2_XXS: t(16, "IQ2_XXS", 256, 66),
  IQ2_XS: t(17, "IQ2_XS", 256, 74),
  IQ3_XXS: t(18, "IQ3_XXS", 256, 98),
  IQ1_S: t(19, "IQ1_S", 256, 50),
  IQ4_NL: t(20, "IQ4_NL", 32, 18, dequantizeIQ4_NL, quantizeIQ4_NL),
  IQ3_S: t(21, "IQ3_S", 256, 110),
  IQ2_S: t(22, "IQ2_S", 256, 82),
  IQ4_XS: t(23, "IQ4_XS", 256, 136, dequantizeIQ4_XS, quantizeIQ4_XS),
  I8: t(24, "I8", 1, 1),
  I16: t(25, "I16", 1, 2),
  I32: t(26, "I32", 1, 4),
  I64: t(27, "I64", 1, 8),
  F64: t(28, "F64", 1, 8),
  IQ1_M: t(29, "IQ1_M", 256, 56),
  BF16: halfType(30, "BF16", bf16ToF32, f32BitsToBf16),
  TQ1_0: t(34, "TQ1_0", 256, 54),
  TQ2_0: t(35, "TQ2_0", 256, 66),
  MXFP4: t(39, "MXFP4", 32, 17),
};

const BY_ID = new Map<number, GgmlType>(Object.values(GGML_TYPES).map((x) => [x.id, x]));

/** The registry entry for a numeric ggml type id, or undefined for an id this package does not know. */
export function ggmlTypeById(id: number): GgmlType | undefined {
  return BY_ID.get(id);
}
