// IEEE binary16 (f16) and bfloat16 (bf16) conversions on whole arrays, writing into caller-passed outputs.

const TWO_POW_M24 = 2 ** -24;
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

function assertSameLength(src: ArrayLike<unknown>, out: ArrayLike<unknown>, fn: string): void {
  if (out.length < src.length) {
    throw new RangeError(`io: ${fn}: output has ${out.length} elements, needs at least ${src.length}`);
  }
}

/** Bits of one float32 `x` (as `Math.fround(x)` would store it). */
export function f32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0];
}

/** The float32 value whose bits are `bits`. */
export function f32FromBits(bits: number): number {
  u32Scratch[0] = bits;
  return f32Scratch[0];
}

/**
 * Rounds one float32 bit pattern to the nearest binary16 bit pattern, ties to even.
 * Values of magnitude >= 65520 become ±Infinity; NaN stays a quiet NaN (payload's top bits kept).
 */
export function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const a = x & 0x7fffffff;
  if (a >= 0x7f800000) return sign | 0x7c00 | (a > 0x7f800000 ? 0x200 | ((a >>> 13) & 0x3ff) : 0);
  if (a >= 0x477ff000) return sign | 0x7c00; // >= 65520: rounds past the largest finite half
  if (a >= 0x38800000) {
    // Normal half: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even.
    const rounded = a + 0xfff + ((a >>> 13) & 1);
    return sign | ((rounded - (112 << 23)) >>> 13);
  }
  // Subnormal half (or zero): the value in units of 2^-24, rounded to nearest even. Exact in double.
  const t = f32FromBits(a) * 16777216;
  let r = Math.floor(t);
  const d = t - r;
  if (d > 0.5 || (d === 0.5 && (r & 1) === 1)) r++;
  return sign | r; // r == 1024 is exactly the smallest normal half, which this encodes correctly
}

/** Every half's float value, built on first use (256 KiB): decoding is then one table lookup. */
let halfTable: Float32Array | undefined;
function buildHalfTable(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = decodeHalf(h);
  halfTable = t;
  return t;
}

/** The float value of one binary16 bit pattern. */
export function f16BitsToF32(h: number): number {
  return (halfTable ?? buildHalfTable())[h & 0xffff];
}

/** Decodes a binary16 bit pattern arithmetically (the table's reference). */
function decodeHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * TWO_POW_M24;
  if (e === 31) return m === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1024 + m) * 2 ** (e - 25);
}

/** Rounds one float32 bit pattern to the nearest bfloat16 bit pattern, ties to even; NaN stays quiet NaN. */
export function f32BitsToBf16(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * float32 → binary16 bits, round to nearest even, into `out` (allocates nothing).
 *
 * ```
 * for (i = 0; i < src.length; i++) out[i] = roundToNearestEvenHalf(src[i])
 * ```
 * @returns `out`
 */
export function f32ToF16(src: Float32Array, out: Uint16Array): Uint16Array {
  assertSameLength(src, out, "f32ToF16");
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]);
  return out;
}

/**
 * binary16 bits → float32 (exact), into `out`.
 *
 * ```
 * for (i = 0; i < src.length; i++) out[i] = halfValue(src[i])
 * ```
 * @returns `out`
 */
export function f16ToF32(src: Uint16Array, out: Float32Array): Float32Array {
  assertSameLength(src, out, "f16ToF32");
  const table = halfTable ?? buildHalfTable();
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}

/**
 * float32 → bfloat16 bits (the top 16 bits after rounding to nearest even), into `out`.
 *
 * ```
 * for (i = 0; i < src.length; i++) out[i] = (bits(src[i]) + 0x7fff + lsb) >>> 16
 * ```
 * @returns `out`
 */
export function f32ToBf16(src: Float32Array, out: Uint16Array): Uint16Array {
  assertSameLength(src, out, "f32ToBf16");
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToBf16(bits[i]);
  return out;
}

/**
 * bfloat16 bits → float32 (exact: the bits shifted left by 16), into `out`.
 *
 * ```
 * for (i = 0; i < src.length; i++) bits(out[i]) = src[i] << 16
 * ```
 * @returns `out`
 */
export function bf16ToF32(src: Uint16Array, out: Float32Array): Float32Array {
  assertSameLength(src, out, "bf16ToF32");
  const bits = new Uint32Array(out.buffer, out.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}
