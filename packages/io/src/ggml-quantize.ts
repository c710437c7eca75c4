// Reference round-to-nearest quantizers for the ggml block formats this package writes (Q8_0, Q4_0, Q4_1),
// following ggml's reference (`quantize_row_*_ref`) block definitions, with its float32 arithmetic emulated
// by Math.fround so that the bytes match llama.cpp's own reference quantizer. They allocate nothing.

import { f32BitsToF16 } from "./half";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const fr = Math.fround;

/** Writes float `x` as a little-endian f16 (round to nearest even) at byte `o`. */
function putHalf(out: Uint8Array, o: number, x: number): void {
  f32[0] = x;
  const h = f32BitsToF16(u32[0]);
  out[o] = h & 255;
  out[o + 1] = h >> 8;
}

/** Throws unless `x` fits an f16 (|x| <= 65504), so a block scale never silently becomes infinite. */
function assertHalfRange(name: string, what: string, x: number, block: number): void {
  if (Math.abs(x) > 65504) {
    throw new RangeError(
      `io: quantize ${name}: block ${block}: ${what} ${x} overflows f16 (values too large for ${name})`,
    );
  }
}

/** C `roundf`: rounds half away from zero. */
function roundAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/**
 * The value of largest magnitude among `x[xo, xo + n)`, sign kept (the first one on a tie; 0 when all are
 * zero), as ggml's block quantizers pick `max`.
 */
export function signedAbsMax(x: ArrayLike<number>, xo: number, n: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < n; j++) {
    const v = x[xo + j];
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

/** The smallest of `x[xo, xo + n)` (n ≥ 1). */
export function blockMin(x: Float32Array, xo: number, n: number): number {
  let min = Number.POSITIVE_INFINITY;
  for (let j = 0; j < n; j++) min = Math.min(min, x[xo + j]);
  return min;
}

/** The largest of `x[xo, xo + n)` (n ≥ 1). */
export function blockMax(x: Float32Array, xo: number, n: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < n; j++) max = Math.max(max, x[xo + j]);
  return max;
}

/**
 * The number of blocks of `block` values in `src`; throws unless `src` is a whole number of blocks and `out`
 * holds `bytes` bytes for each.
 */
export function checkBlockSizes(
  name: string,
  src: Float32Array,
  out: Uint8Array,
  block: number,
  bytes: number,
): number {
  if (src.length % block !== 0) {
    throw new RangeError(
      `io: quantize ${name}: ${src.length} values is not a multiple of the block size ${block}`,
    );
  }
  const need = (src.length / block) * bytes;
  if (out.length < need)
    throw new RangeError(`io: quantize ${name}: output has ${out.length} bytes, needs ${need}`);
  return src.length / block;
}

function assertFinite(name: string, src: Float32Array): void {
  for (let i = 0; i < src.length; i++) {
    if (!Number.isFinite(src[i]))
      throw new RangeError(`io: quantize ${name}: value ${src[i]} at index ${i} is not finite`);
  }
}

/**
 * Q8_0 (block of 32 → `d: f16 | qs: i8[32]`): `d = max|x| / 127`, `qs = roundf(x / d)`.
 * Error bound per weight: `d / 2` plus the f16 rounding of `d` (`127 * |d - f16(d)|`).
 */
export function quantizeQ8_0(src: Float32Array, out: Uint8Array): Uint8Array {
  const blocks = checkBlockSizes("Q8_0", src, out, 32, 34);
  assertFinite("Q8_0", src);
  for (let b = 0; b < blocks; b++) {
    const x = b * 32;
    const o = b * 34;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(src[x + j]));
    const d = fr(amax / 127);
    assertHalfRange("Q8_0", "scale", d, b);
    const id = d !== 0 ? fr(1 / d) : 0;
    putHalf(out, o, d);
    for (let j = 0; j < 32; j++) out[o + 2 + j] = roundAway(fr(src[x + j] * id)) & 255;
  }
  return out;
}

/**
 * Q4_0 (block of 32 → `d: f16 | qs: u8[16]`, low nibble weight j, high nibble weight j + 16):
 * `max` = the weight of largest magnitude (sign kept), `d = max / -8`,
 * `q = min(15, trunc(x / d + 8.5))`, so `x ≈ d * (q - 8)`. Error bound: `|d|` (the extreme of the opposite sign
 * clamps from 16 to 15), `|d| / 2` elsewhere, plus the f16 rounding of `d`.
 */
export function quantizeQ4_0(src: Float32Array, out: Uint8Array): Uint8Array {
  const blocks = checkBlockSizes("Q4_0", src, out, 32, 18);
  assertFinite("Q4_0", src);
  for (let b = 0; b < blocks; b++) {
    const x = b * 32;
    const o = b * 18;
    const d = fr(signedAbsMax(src, x, 32) / -8);
    assertHalfRange("Q4_0", "scale", d, b);
    const id = d !== 0 ? fr(1 / d) : 0;
    putHalf(out, o, d);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(src[x + j] * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(src[x + j + 16] * id) + 8.5)));
      out[o + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}

/**
 * Q4_1 (block of 32 → `d: f16 | m: f16 | qs: u8[16]`): `m = min x`, `d = (max x - m) / 15`,
 * `q = min(15, trunc((x - m) / d + 0.5))`, so `x ≈ d * q + m`. Error bound per weight: `d / 2` plus the f16
 * rounding of `d` (times 15) and of `m`.
 */
export function quantizeQ4_1(src: Float32Array, out: Uint8Array): Uint8Array {
  const blocks = checkBlockSizes("Q4_1", src, out, 32, 20);
  assertFinite("Q4_1", src);
  for (let b = 0; b < blocks; b++) {
    const x = b * 32;
    const o = b * 20;
    const min = blockMin(src, x, 32);
    const d = fr(fr(blockMax(src, x, 32) - min) / 15);
    assertHalfRange("Q4_1", "scale", d, b);
    assertHalfRange("Q4_1", "minimum", min, b);
    const id = d !== 0 ? fr(1 / d) : 0;
    putHalf(out, o, d);
    putHalf(out, o + 2, min);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(fr(src[x + j] - min) * id) + 0.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(fr(src[x + j + 16] - min) * id) + 0.5)));
      out[o + 4 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}
