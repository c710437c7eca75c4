// Scalar reference dequantizers for the ggml block formats GGUF files carry, written from the block layouts
// (ggml-common.h). Each reads `count / blockSize` consecutive blocks from `src` and writes `count` floats to
// `out`; they allocate nothing. All multi-byte fields are little-endian; `f16` is an IEEE half.
//
// Element numbering inside a block is the order ggml's own dequantizer writes them (what a row of the tensor is).

import { f16BitsToF32 } from "./half";

/** Reads the little-endian f16 at byte `o` of `b` as a float. */
function half(b: Uint8Array, o: number): number {
  return f16BitsToF32(b[o] | (b[o + 1] << 8));
}

function checkSizes(
  name: string,
  src: Uint8Array,
  out: Float32Array,
  count: number,
  block: number,
  bytes: number,
) {
  if (!Number.isSafeInteger(count) || count < 0 || count % block !== 0) {
    throw new RangeError(
      `io: dequantize ${name}: count ${count} is not a multiple of the block size ${block}`,
    );
  }
  const need = (count / block) * bytes;
  if (src.length < need) {
    throw new RangeError(
      `io: dequantize ${name}: source has ${src.length} bytes, ${count} values need ${need}`,
    );
  }
  if (out.length < count)
    throw new RangeError(`io: dequantize ${name}: output has ${out.length} elements, needs ${count}`);
}

/**
 * Q8_0, 32 weights in 34 bytes (8.5 bpw):
 * `d: f16 | qs: i8[32]`; `y[j] = d * qs[j]`.
 */
export function dequantizeQ8_0(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("Q8_0", src, out, count, 32, 34);
  for (let o = 0, y = 0; y < count; o += 34) {
    const d = half(src, o);
    for (let j = 0; j < 32; j++) out[y++] = d * ((src[o + 2 + j] << 24) >> 24);
  }
  return out;
}

/**
 * Q4_0, 32 weights in 18 bytes (4.5 bpw):
 * `d: f16 | qs: u8[16]`; the low nibble of `qs[j]` is weight `j`, the high nibble weight `j + 16`;
 * `y = d * (nibble - 8)`.
 */
export function dequantizeQ4_0(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("Q4_0", src, out, count, 32, 18);
  for (let o = 0, y = 0; y < count; o += 18, y += 32) {
    const d = half(src, o);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 2 + j];
      out[y + j] = d * ((q & 15) - 8);
      out[y + j + 16] = d * ((q >> 4) - 8);
    }
  }
  return out;
}

/**
 * Q4_1, 32 weights in 20 bytes (5 bpw):
 * `d: f16 | m: f16 | qs: u8[16]`; nibbles as Q4_0; `y = d * nibble + m`.
 */
export function dequantizeQ4_1(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("Q4_1", src, out, count, 32, 20);
  for (let o = 0, y = 0; y < count; o += 20, y += 32) {
    const d = half(src, o);
    const m = half(src, o + 2);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 4 + j];
      out[y + j] = d * (q & 15) + m;
      out[y + j + 16] = d * (q >> 4) + m;
    }
  }
  return out;
}

/**
 * Q5_0, 32 weights in 22 bytes (5.5 bpw):
 * `d: f16 | qh: u32 | qs: u8[16]`; weight j (< 16) is the low nibble of `qs[j]` plus bit `j` of `qh` as bit 4,
 * weight `j + 16` the high nibble plus bit `j + 16`; `y = d * (q - 16)`.
 */
export function dequantizeQ5_0(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("Q5_0", src, out, count, 32, 22);
  for (let o = 0, y = 0; y < count; o += 22, y += 32) {
    const d = half(src, o);
    const qh = (src[o + 2] | (src[o + 3] << 8) | (src[o + 4] << 16) | (src[o + 5] << 24)) >>> 0;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 6 + j];
      out[y + j] = d * (((q & 15) | (((qh >>> j) & 1) << 4)) - 16);
      out[y + j + 16] = d * (((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16);
    }
  }
  return out;
}

/**
 * Q5_1, 32 weights in 24 bytes (6 bpw):
 * `d: f16 | m: f16 | qh: u32 | qs: u8[16]`; 5-bit quants as Q5_0; `y = d * q + m`.
 */
export function dequantizeQ5_1(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("Q5_1", src, out, count, 32, 24);
  for (let o = 0, y = 0; y < count; o += 24, y += 32) {
    const d = half(src, o);
    const m = half(src, o + 2);
    const qh = (src[o + 4] | (src[o + 5] << 8) | (src[o + 6] << 16) | (src[o + 7] << 24)) >>> 0;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 8 + j];
      out[y + j] = d * ((q & 15) | (((qh >>> j) & 1) << 4)) + m;
      out[y + j + 16] = d * ((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) + m;
    }
  }
  return out;
}

/**
 * Q2_K, 256 weights in 84 bytes (2.625 bpw), 16 sub-blocks of 16:
 * `scales: u8[16] | qs: u8[64] | d: f16 | dmin: f16`.
 * Weight `i = 128h + 32s + l` (h in 0..1, s in 0..3, l in 0..31) has the 2-bit quant
 * `q = (qs[32h + l] >> 2s) & 3` and sub-block `k = i / 16`;
 * `y = d * (scales[k] & 15) * q - dmin * (scales[k] >> 4)`.
 */
export function dequantizeQ2_K(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("Q2_K", src, out, count, 256, 84);
  for (let o = 0, y = 0; y < count; o += 84, y += 256) {
    const d = half(src, o + 80);
    const dmin = half(src, o + 82);
    for (let i = 0; i < 256; i++) {
      const h = i >> 7;
      const s = (i >> 5) & 3;
      const l = i & 31;
      const q = (src[o + 16 + 32 * h + l] >> (2 * s)) & 3;
      const sc = src[o + (i >> 4)];
      out[y + i] = d * (sc & 15) * q - dmin * (sc >> 4);
    }
  }
  return out;
}

/**
 * The 6-bit sub-block scale `k` (0..15) of a Q3_K block, packed in 12 bytes at `o`:
 * low 4 bits are the low nibble of byte `k` (k < 8) or the high nibble of byte `k - 8` (k >= 8);
 * high 2 bits are bits `2 * (k / 4)`..+1 of byte `8 + k % 4`. The stored value is offset by 32.
 */
function q3kScale(b: Uint8Array, o: number, k: number): number {
  const low = k < 8 ? b[o + k] & 15 : b[o + k - 8] >> 4;
  const high = (b[o + 8 + (k & 3)] >> (2 * (k >> 2))) & 3;
  return (low | (high << 4)) - 32;
}

/** Per-block scratch for the 16 scaled sub-block scales (module-level, so the kernel allocates nothing). */
const q3kScratch = new Float64Array(16);

/**
 * Q3_K, 256 weights in 110 bytes (3.4375 bpw), 16 sub-blocks of 16:
 * `hmask: u8[32] | qs: u8[64] | scales: u8[12] (16 × 6 bits) | d: f16`.
 * Weight `i = 128h + 32s + l` has low bits `(qs[32h + l] >> 2s) & 3` and high bit `hmask[l]` bit `4h + s`;
 * `q = low - (high ? 0 : 4)` (so -4..3); `y = d * (scale[i / 16] - 32) * q`.
 */
export function dequantizeQ3_K(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("Q3_K", src, out, count, 256, 110);
  const scales = q3kScratch;
  for (let o = 0, y = 0; y < count; o += 110, y += 256) {
    const d = half(src, o + 108);
    for (let k = 0; k < 16; k++) scales[k] = d * q3kScale(src, o + 96, k);
    for (let i = 0; i < 256; i++) {
      const h = i >> 7;
      const s = (i >> 5) & 3;
      const l = i & 31;
      const low = (src[o + 32 + 32 * h + l] >> (2 * s)) & 3;
      const high = (src[o + l] >> (4 * h + s)) & 1;
      out[y + i] = scales[i >> 4] * (low - (high ? 0 : 4));
    }
  }
  return out;
}

/**
 * The 6-bit scale and min of sub-block `j` (0..7) of a Q4_K/Q5_K block, packed in 12 bytes at `o`:
 * j < 4: `scale = b[j] & 63`, `min = b[j + 4] & 63`;
 * j >= 4: `scale = (b[j + 4] & 15) | (b[j - 4] >> 6) << 4`, `min = (b[j + 4] >> 4) | (b[j] >> 6) << 4`.
 */
function k4ScaleMin(b: Uint8Array, o: number, j: number): [number, number] {
  if (j < 4) return [b[o + j] & 63, b[o + j + 4] & 63];
  return [(b[o + j + 4] & 15) | ((b[o + j - 4] >> 6) << 4), (b[o + j + 4] >> 4) | ((b[o + j] >> 6) << 4)];
}

/**
 * Q4_K, 256 weights in 144 bytes (4.5 bpw), 8 sub-blocks of 32:
 * `d: f16 | dmin: f16 | scales: u8[12] (8 scales + 8 mins, 6 bits each) | qs: u8[128]`.
 * Weight `i = 64c + 32u + l` (c in 0..3, u in 0..1, l in 0..31) is nibble `u` (0 = low) of `qs[32c + l]`,
 * in sub-block `j = 2c + u`; `y = d * scale_j * q - dmin * min_j`.
 */
export function dequantizeQ4_K(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("Q4_K", src, out, count, 256, 144);
  for (let o = 0, y = 0; y < count; o += 144, y += 256) {
    const d = half(src, o);
    const dmin = half(src, o + 2);
    for (let j = 0; j < 8; j++) {
      const [sc, m] = k4ScaleMin(src, o + 4, j);
      const scale = d * sc;
      const min = dmin * m;
      const c = j >> 1;
      const shift = 4 * (j & 1);
      for (let l = 0; l < 32; l++)
        out[y + 32 * j + l] = scale * ((src[o + 16 + 32 * c + l] >> shift) & 15) - min;
    }
  }
  return out;
}

/**
 * Q5_K, 256 weights in 176 bytes (5.5 bpw), 8 sub-blocks of 32:
 * `d: f16 | dmin: f16 | scales: u8[12] | qh: u8[32] | qs: u8[128]`.
 * Weight `i = 64c + 32u + l` has low 4 bits as Q4_K and high bit `qh[l]` bit `2c + u`;
 * `y = d * scale_j * q - dmin * min_j` with `j = 2c + u`.
 */
export function dequantizeQ5_K(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("Q5_K", src, out, count, 256, 176);
  for (let o = 0, y = 0; y < count; o += 176, y += 256) {
    const d = half(src, o);
    const dmin = half(src, o + 2);
    for (let j = 0; j < 8; j++) {
      const [sc, m] = k4ScaleMin(src, o + 4, j);
      const c = j >> 1;
      const shift = 4 * (j & 1);
      for (let l = 0; l < 32; l++) {
        const q = ((src[o + 48 + 32 * c + l] >> shift) & 15) | (((src[o + 16 + l] >> j) & 1) << 4);
        out[y + 32 * j + l] = d * sc * q - dmin * m;
      }
    }
  }
  return out;
}

/**
 * Q6_K, 256 weights in 210 bytes (6.5625 bpw), 16 sub-blocks of 16:
 * `ql: u8[128] | qh: u8[64] | scales: i8[16] | d: f16`.
 * Weight `i = 128h + 32s + l` (h in 0..1, s in 0..3, l in 0..31) takes its low 4 bits from
 * `ql[64h + 32(s & 1) + l]` (low nibble for s < 2, high nibble for s >= 2) and its high 2 bits from
 * `(qh[32h + l] >> 2s) & 3`; `q = bits - 32`; `y = d * scales[i / 16] * q`.
 */
export function dequantizeQ6_K(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("Q6_K", src, out, count, 256, 210);
  for (let o = 0, y = 0; y < count; o += 210, y += 256) {
    const d = half(src, o + 208);
    for (let i = 0; i < 256; i++) {
      const h = i >> 7;
      const s = (i >> 5) & 3;
      const l = i & 31;
      const lowByte = src[o + 64 * h + 32 * (s & 1) + l];
      const low = s < 2 ? lowByte & 15 : lowByte >> 4;
      const high = (src[o + 128 + 32 * h + l] >> (2 * s)) & 3;
      const scale = (src[o + 192 + (i >> 4)] << 24) >> 24;
      out[y + i] = d * scale * ((low | (high << 4)) - 32);
    }
  }
  return out;
}

/** ggml's `kvalues_iq4nl`: the 16 non-uniform int8 levels of IQ4_NL and IQ4_XS (−127 … 113). */
export const IQ4_NL_VALUES: readonly number[] = Object.freeze([
  -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
]);

/**
 * IQ4_NL, 32 weights in 18 bytes (4.5 bpw):
 * `d: f16 | qs: u8[16]`; the low nibble of `qs[j]` is weight `j`, the high nibble weight `j + 16`;
 * `y = d * kvalues_iq4nl[nibble]`.
 */
export function dequantizeIQ4_NL(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("IQ4_NL", src, out, count, 32, 18);
  const v = IQ4_NL_VALUES;
  for (let o = 0, y = 0; y < count; o += 18, y += 32) {
    const d = half(src, o);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 2 + j];
      out[y + j] = d * v[q & 15];
      out[y + j + 16] = d * v[q >> 4];
    }
  }
  return out;
}

/**
 * IQ4_XS, 256 weights in 136 bytes (4.25 bpw), 8 sub-blocks of 32:
 * `d: f16 | scales_h: u16 | scales_l: u8[4] | qs: u8[128]`. Sub-block `j`'s 6-bit scale is
 * `ls = (scales_l[j / 2] >> 4(j % 2)) & 15 | ((scales_h >> 2j) & 3) << 4`; its 32 weights are the nibbles
 * of `qs[16j .. 16j + 16)` as in IQ4_NL; `y = d * (ls - 32) * kvalues_iq4nl[nibble]`.
 */
export function dequantizeIQ4_XS(src: Uint8Array, out: Float32Array, count: number): Float32Array {
  checkSizes("IQ4_XS", src, out, count, 256, 136);
  const v = IQ4_NL_VALUES;
  for (let o = 0, y = 0; y < count; o += 136, y += 256) {
    const d = half(src, o);
    const sh = src[o + 2] | (src[o + 3] << 8);
    for (let j = 0; j < 8; j++) {
      const ls = ((src[o + 4 + (j >> 1)] >> (4 * (j & 1))) & 15) | (((sh >> (2 * j)) & 3) << 4);
      const dl = d * (ls - 32);
      const q0 = o + 8 + 16 * j;
      const y0 = y + 32 * j;
      for (let l = 0; l < 16; l++) {
        const q = src[q0 + l];
        out[y0 + l] = dl * v[q & 15];
        out[y0 + l + 16] = dl * v[q >> 4];
      }
    }
  }
  return out;
}
