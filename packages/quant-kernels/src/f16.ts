// f16 scale/zero rounding for the formats. The binary16 conversion itself is @int21/io's (half.ts),
// the repository's one f16 converter; this file only adds the rounding rules formats need.
import { f16BitsToF32 as ioF16BitsToF32, f32BitsToF16 } from "@int21/io";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * float32 → binary16 bits with round-to-nearest-even (`x` is first stored as float32). Overflow
 * gives ±Inf (0x7c00), NaN stays NaN, values below half the smallest subnormal (2^-25) flush to ±0.
 * @int21/io's `f32BitsToF16` on the float32 bits of `x`.
 */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  return f32BitsToF16(u32[0]);
}

/** binary16 bits → the number they encode (exactly representable in float32); @int21/io's converter. */
export function f16BitsToF32(h: number): number {
  return ioF16BitsToF32(h);
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
