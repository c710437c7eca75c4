/** A bit width the packers accept: an integer from 1 to 8. */
export type Bits = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8;

/** Integer-valued typed arrays (and plain arrays) the packers read from. */
export type IntArrayLike = ArrayLike<number>;

/** Typed arrays `unpack*` can write into without allocating. */
export type UnpackTarget =
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | Int8Array
  | Int16Array
  | Int32Array
  | Float32Array
  | Float64Array;

/** Throws a RangeError unless `bits` is an integer in 1..8. */
export function assertBits(bits: number, what = "bits"): asserts bits is Bits {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) {
    throw new RangeError(`bitpack: ${what} must be an integer from 1 to 8, got ${String(bits)}`);
  }
}

/** Throws unless `n` is a non-negative safe integer. */
export function assertCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`bitpack: ${what} must be a non-negative integer, got ${String(n)}`);
  }
}

/** Throws a RangeError naming the index when a value is not an integer in [0, 2^bits). */
export function assertValue(v: number, bits: number, index: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= 1 << bits) {
    const why = Number.isInteger(v) ? `out of range [0, ${(1 << bits) - 1}]` : "not an integer";
    throw new RangeError(`bitpack: value ${String(v)} at index ${index} is ${why} for ${bits}-bit packing`);
  }
}

/** Throws a RangeError when a buffer holds fewer than `need` elements. */
export function assertCapacity(have: number, need: number, what: string): void {
  if (have < need) {
    throw new RangeError(`bitpack: ${what} too small: needs ${need} elements, has ${have}`);
  }
}
