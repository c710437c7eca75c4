import { type Bits, assertBits } from "./validate";

/**
 * Offset-binary helpers for symmetric (signed) formats: a signed value `v` in
 * `[-2^(bits-1), 2^(bits-1) - 1]` is stored as the unsigned code `v + 2^(bits-1)`.
 * INT4: -8 → 0, 0 → 8, 7 → 15. INT2: -2 → 0, 1 → 3.
 */
export function signedRange(bits: Bits): { min: number; max: number; offset: number } {
  assertBits(bits);
  const offset = 1 << (bits - 1);
  return { min: -offset, max: offset - 1, offset };
}

/** Signed value → unsigned code. Throws a RangeError naming the value when out of range. */
export function toOffsetBinary(v: number, bits: Bits): number {
  const { min, max, offset } = signedRange(bits);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`bitpack: signed value ${String(v)} is outside [${min}, ${max}] for ${bits} bits`);
  }
  return v + offset;
}

/** Unsigned code → signed value. */
export function fromOffsetBinary(u: number, bits: Bits): number {
  const { offset } = signedRange(bits);
  if (!Number.isInteger(u) || u < 0 || u >= 1 << bits) {
    throw new RangeError(`bitpack: code ${String(u)} is outside [0, ${(1 << bits) - 1}] for ${bits} bits`);
  }
  return u - offset;
}

/** Converts an array of signed values to offset-binary codes in `out` (no allocation). */
export function encodeSigned(values: ArrayLike<number>, bits: Bits, out: Uint8Array): Uint8Array {
  if (out.length < values.length) {
    throw new RangeError(
      `bitpack: output buffer too small: needs ${values.length} elements, has ${out.length}`,
    );
  }
  for (let i = 0; i < values.length; i++) out[i] = toOffsetBinary(values[i], bits);
  return out;
}

/** Converts offset-binary codes back to signed values in `out` (in place allowed). */
export function decodeSigned(
  codes: ArrayLike<number>,
  bits: Bits,
  out: Int8Array | Int16Array | Int32Array | Float32Array,
): typeof out {
  const { offset } = signedRange(bits);
  if (out.length < codes.length) {
    throw new RangeError(
      `bitpack: output buffer too small: needs ${codes.length} elements, has ${out.length}`,
    );
  }
  for (let i = 0; i < codes.length; i++) out[i] = codes[i] - offset;
  return out;
}
