// IEEE 754 binary16 (half precision) conversions, used for f16 scale/zero storage.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * float32 → binary16 bits with round-to-nearest-even. Overflow gives ±Inf (0x7c00), NaN stays NaN,
 * values below half the smallest subnormal (2^-25) flush to ±0.
 */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  const m = mant >>> 13;
  const rem = mant & 0x1fff;
  let h = sign | (e << 10) | m;
  // A carry out of the mantissa correctly bumps the exponent (and reaches Inf at the top).
  if (rem > 0x1000 || (rem === 0x1000 && (m & 1) === 1)) h++;
  return h;
}

/** binary16 bits → the number they encode (exactly representable in float32). */
export function f16BitsToF32(h: number): number {
  const sign = (h & 0x8000) !== 0 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (exp === 0) return sign * m * 2 ** -24;
  if (exp === 0x1f) return m !== 0 ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + m / 1024) * 2 ** (exp - 15);
}

/** Rounds `x` to the nearest binary16 value (ties to even), returned as a number. */
export function roundToF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}

/**
 * The smallest binary16 value ≥ `x` for finite `x > 0` (rounds up, so a scale stored in f16 never
 * shrinks the range it must cover). Returns Inf past the f16 maximum 65504.
 */
export function roundUpToF16(x: number): number {
  let h = f32ToF16Bits(x);
  let v = f16BitsToF32(h);
  if (v < x) {
    h = x < 0 ? h - 1 : h + 1;
    v = f16BitsToF32(h);
  }
  return v;
}

/** True when `x` is exactly representable as binary16 (NaN counts as not representable). */
export function isF16Exact(x: number): boolean {
  return roundToF16(x) === x;
}
