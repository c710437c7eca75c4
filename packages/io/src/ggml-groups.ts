// ggml blocks as int21's group-quantized form, `w = scale[g] * (q - zero[g])` with unsigned integer codes q,
// without going through floats: the route to load a GGUF tensor into an int21 packed format without
// re-quantizing it. (The packing itself — bitpack, the QuantizedLinear record — belongs to higher layers.)

import type { GgmlTypeName } from "./ggml-types";
import { f16BitsToF32 } from "./half";

/** A tensor's weights as integer codes with one scale and zero point per group, in weight (row-major) order. */
export interface GgmlGroups {
  /** Bits per code: codes are integers in [0, 2^bits). */
  readonly bits: number;
  /** Consecutive weights sharing a scale and zero. */
  readonly groupSize: number;
  /** One code per weight. */
  readonly q: Uint8Array;
  /** One scale per group. */
  readonly scales: Float32Array;
  /** One zero point per group, in code units. */
  readonly zeros: Float32Array;
  /**
   * True when `scale * (q - zero)` reproduces the dequantized value exactly (symmetric formats: the zero is a
   * constant like 8 or 32). False for formats with a per-group minimum (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K), where
   * `zero = min / scale` is a float and the product can differ in the last bit of float32.
   */
  readonly exact: boolean;
}

/** The ggml types {@link ggmlToGroups} converts. */
export const GGML_GROUP_TYPES: readonly GgmlTypeName[] = [
  "Q8_0",
  "Q4_0",
  "Q4_1",
  "Q5_0",
  "Q5_1",
  "Q2_K",
  "Q3_K",
  "Q4_K",
  "Q5_K",
  "Q6_K",
];

const half = (b: Uint8Array, o: number) => f16BitsToF32(b[o] | (b[o + 1] << 8));

interface Layout {
  bits: number;
  groupSize: number;
  block: number;
  bytes: number;
  exact: boolean;
  /** Decodes block `src[o..]` into codes `q[y..y+block)` and group params from group index `g`. */
  decode(
    src: Uint8Array,
    o: number,
    q: Uint8Array,
    y: number,
    scales: Float32Array,
    zeros: Float32Array,
    g: number,
  ): void;
}

/**
 * Affine groups: w = scale * q - min  →  zero = min / scale. A group whose scale is 0 holds the constant -min;
 * it is marked here (scale 0, zero = min) and rewritten by {@link fixConstantGroups} once its codes are known.
 */
/**
 * The 32 five-bit codes of a Q5_0 / Q5_1 block: at `o` the 32 high bits (little-endian u32), then 16
 * bytes of low nibbles (code j in the low nibble of byte j, code j + 16 in its high nibble).
 */
function q5Codes(src: Uint8Array, o: number, q: Uint8Array, y: number): void {
  const qh = (src[o] | (src[o + 1] << 8) | (src[o + 2] << 16) | (src[o + 3] << 24)) >>> 0;
  for (let j = 0; j < 16; j++) {
    q[y + j] = (src[o + 4 + j] & 15) | (((qh >>> j) & 1) << 4);
    q[y + j + 16] = (src[o + 4 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4);
  }
}

function setAffine(scales: Float32Array, zeros: Float32Array, g: number, scale: number, min: number): void {
  scales[g] = scale;
  zeros[g] = scale === 0 ? min : min / scale;
}

/** Constant groups (scale 0, w = -min) become codes 0, zero 1, scale min: min * (0 - 1) = -min exactly. */
function fixConstantGroups(g: {
  q: Uint8Array;
  scales: Float32Array;
  zeros: Float32Array;
  groupSize: number;
}): void {
  for (let k = 0; k < g.scales.length; k++) {
    if (g.scales[k] !== 0) continue;
    const min = g.zeros[k];
    g.q.fill(0, k * g.groupSize, (k + 1) * g.groupSize);
    g.scales[k] = min;
    g.zeros[k] = min === 0 ? 0 : 1;
  }
}

function k4ScaleMin(b: Uint8Array, o: number, j: number): [number, number] {
  if (j < 4) return [b[o + j] & 63, b[o + j + 4] & 63];
  return [(b[o + j + 4] & 15) | ((b[o + j - 4] >> 6) << 4), (b[o + j + 4] >> 4) | ((b[o + j] >> 6) << 4)];
}

const LAYOUTS: Partial<Record<GgmlTypeName, Layout>> = {
  Q8_0: {
    bits: 8,
    groupSize: 32,
    block: 32,
    bytes: 34,
    exact: true,
    decode(src, o, q, y, scales, zeros, g) {
      scales[g] = half(src, o);
      zeros[g] = 128;
      for (let j = 0; j < 32; j++) q[y + j] = src[o + 2 + j] ^ 0x80; // int8 → int8 + 128
    },
  },
  Q4_0: {
    bits: 4,
    groupSize: 32,
    block: 32,
    bytes: 18,
    exact: true,
    decode(src, o, q, y, scales, zeros, g) {
      scales[g] = half(src, o);
      zeros[g] = 8;
      for (let j = 0; j < 16; j++) {
        q[y + j] = src[o + 2 + j] & 15;
        q[y + j + 16] = src[o + 2 + j] >> 4;
      }
    },
  },
  Q4_1: {
    bits: 4,
    groupSize: 32,
    block: 32,
    bytes: 20,
    exact: false,
    decode(src, o, q, y, scales, zeros, g) {
      setAffine(scales, zeros, g, half(src, o), -half(src, o + 2));
      for (let j = 0; j < 16; j++) {
        q[y + j] = src[o + 4 + j] & 15;
        q[y + j + 16] = src[o + 4 + j] >> 4;
      }
    },
  },
  Q5_0: {
    bits: 5,
    groupSize: 32,
    block: 32,
    bytes: 22,
    exact: true,
    decode(src, o, q, y, scales, zeros, g) {
      scales[g] = half(src, o);
      zeros[g] = 16;
      q5Codes(src, o + 2, q, y);
    },
  },
  Q5_1: {
    bits: 5,
    groupSize: 32,
    block: 32,
    bytes: 24,
    exact: false,
    decode(src, o, q, y, scales, zeros, g) {
      setAffine(scales, zeros, g, half(src, o), -half(src, o + 2));
      q5Codes(src, o + 4, q, y);
    },
  },
  Q2_K: {
    bits: 2,
    groupSize: 16,
    block: 256,
    bytes: 84,
    exact: false,
    decode(src, o, q, y, scales, zeros, g) {
      const d = half(src, o + 80);
      const dmin = half(src, o + 82);
      for (let k = 0; k < 16; k++)
        setAffine(scales, zeros, g + k, d * (src[o + k] & 15), dmin * (src[o + k] >> 4));
      for (let i = 0; i < 256; i++)
        q[y + i] = (src[o + 16 + 32 * (i >> 7) + (i & 31)] >> (2 * ((i >> 5) & 3))) & 3;
    },
  },
  Q3_K: {
    bits: 3,
    groupSize: 16,
    block: 256,
    bytes: 110,
    exact: true,
    decode(src, o, q, y, scales, zeros, g) {
      const d = half(src, o + 108);
      for (let k = 0; k < 16; k++) {
        const low = k < 8 ? src[o + 96 + k] & 15 : src[o + 96 + k - 8] >> 4;
        const high = (src[o + 104 + (k & 3)] >> (2 * (k >> 2))) & 3;
        scales[g + k] = d * ((low | (high << 4)) - 32);
        zeros[g + k] = 4;
      }
      for (let i = 0; i < 256; i++) {
        const h = i >> 7;
        const s = (i >> 5) & 3;
        const l = i & 31;
        q[y + i] = ((src[o + 32 + 32 * h + l] >> (2 * s)) & 3) | (((src[o + l] >> (4 * h + s)) & 1) << 2);
      }
    },
  },
  Q4_K: {
    bits: 4,
    groupSize: 32,
    block: 256,
    bytes: 144,
    exact: false,
    decode(src, o, q, y, scales, zeros, g) {
      const d = half(src, o);
      const dmin = half(src, o + 2);
      for (let j = 0; j < 8; j++) {
        const [sc, m] = k4ScaleMin(src, o + 4, j);
        setAffine(scales, zeros, g + j, d * sc, dmin * m);
        for (let l = 0; l < 32; l++)
          q[y + 32 * j + l] = (src[o + 16 + 32 * (j >> 1) + l] >> (4 * (j & 1))) & 15;
      }
    },
  },
  Q5_K: {
    bits: 5,
    groupSize: 32,
    block: 256,
    bytes: 176,
    exact: false,
    decode(src, o, q, y, scales, zeros, g) {
      const d = half(src, o);
      const dmin = half(src, o + 2);
      for (let j = 0; j < 8; j++) {
        const [sc, m] = k4ScaleMin(src, o + 4, j);
        setAffine(scales, zeros, g + j, d * sc, dmin * m);
        for (let l = 0; l < 32; l++) {
          const low = (src[o + 48 + 32 * (j >> 1) + l] >> (4 * (j & 1))) & 15;
          q[y + 32 * j + l] = low | (((src[o + 16 + l] >> j) & 1) << 4);
        }
      }
    },
  },
  Q6_K: {
    bits: 6,
    groupSize: 16,
    block: 256,
    bytes: 210,
    exact: true,
    decode(src, o, q, y, scales, zeros, g) {
      const d = half(src, o + 208);
      for (let k = 0; k < 16; k++) {
        scales[g + k] = d * ((src[o + 192 + k] << 24) >> 24);
        zeros[g + k] = 32;
      }
      for (let i = 0; i < 256; i++) {
        const h = i >> 7;
        const s = (i >> 5) & 3;
        const l = i & 31;
        const lowByte = src[o + 64 * h + 32 * (s & 1) + l];
        const low = s < 2 ? lowByte & 15 : lowByte >> 4;
        q[y + i] = low | (((src[o + 128 + 32 * h + l] >> (2 * s)) & 3) << 4);
      }
    },
  },
};

/**
 * Splits `count` weights of ggml blocks into integer codes, scales and zero points, so that
 * `w[i] = scales[g] * (q[i] - zeros[g])` with `g = floor(i / groupSize)`, equal to the type's dequantized value
 * (exactly when `exact`; to float32 rounding otherwise). Types: {@link GGML_GROUP_TYPES}.
 * Groups never straddle rows, since a row is a whole number of blocks.
 */
export function ggmlToGroups(type: GgmlTypeName, src: Uint8Array, count: number): GgmlGroups {
  const layout = LAYOUTS[type];
  if (layout === undefined) {
    throw new Error(
      `io: ggmlToGroups: ${type} has no integer-group form here (supported: ${GGML_GROUP_TYPES.join(", ")})`,
    );
  }
  if (!Number.isSafeInteger(count) || count < 0 || count % layout.block !== 0) {
    throw new RangeError(
      `io: ggmlToGroups ${type}: count ${count} is not a multiple of the block size ${layout.block}`,
    );
  }
  const blocks = count / layout.block;
  if (src.length < blocks * layout.bytes) {
    throw new RangeError(
      `io: ggmlToGroups ${type}: source has ${src.length} bytes, ${count} weights need ${blocks * layout.bytes}`,
    );
  }
  const q = new Uint8Array(count);
  const groups = count / layout.groupSize;
  const scales = new Float32Array(groups);
  const zeros = new Float32Array(groups);
  const perBlock = layout.block / layout.groupSize;
  for (let b = 0; b < blocks; b++) {
    layout.decode(src, b * layout.bytes, q, b * layout.block, scales, zeros, b * perBlock);
  }
  const result = { bits: layout.bits, groupSize: layout.groupSize, q, scales, zeros, exact: layout.exact };
  if (!layout.exact) fixConstantGroups(result);
  return result;
}
