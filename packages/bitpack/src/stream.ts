import {
  type Bits,
  type IntArrayLike,
  type UnpackTarget,
  assertBits,
  assertCapacity,
  assertCount,
  assertValue,
} from "./validate";

/**
 * Flat stream layout (little-endian bit stream).
 *
 * Value `i` of width `b` occupies stream bits `[i*b, i*b + b)`; stream bit `k` is bit `k % 32` of
 * word `k >> 5` (least significant bit first). Serialised as little-endian bytes, byte `j` holds
 * stream bits `[8j, 8j+8)`, so a 3-bit stream of values v0, v1, v2, ... reads
 *
 * ```
 * byte 0: v2[1:0] v1[2:0] v0[2:0]      (bit 7 ... bit 0)
 * byte 1: v5[0] v4[2:0] v3[2:0] v2[2]
 * ```
 *
 * No padding between values: a 3-bit value may straddle two words (value 10 uses bits 30..32).
 * The stream uses `ceil(n*b/32)` words; unused high bits of the last word are zero.
 */
export function streamWords(n: number, bits: number): number {
  assertCount(n, "value count");
  assertBits(bits);
  return Math.ceil((n * bits) / 32);
}

/**
 * Packs `values[0..n)` (each an integer in `[0, 2^bits)`) into a stream.
 * Writes into `out` starting at word `outOffset` when given (no allocation), else allocates.
 * The words it covers are overwritten (not OR-ed), so `out` need not be zeroed.
 */
export function packStream(values: IntArrayLike, bits: Bits, out?: Uint32Array, outOffset = 0): Uint32Array {
  assertBits(bits);
  const n = values.length;
  const nw = streamWords(n, bits);
  const words = out ?? new Uint32Array(nw);
  assertCount(outOffset, "outOffset");
  assertCapacity(words.length - outOffset, nw, "output word buffer");
  for (let i = 0; i < n; i++) assertValue(values[i], bits, i);
  words.fill(0, outOffset, outOffset + nw);
  packUnchecked(values, 0, n, bits, words, outOffset);
  return words;
}

/**
 * ORs `values[start .. start+n)` into the stream that starts at word `wordOffset` (the words must be zeroed).
 * No checks: callers validated widths, values and capacity.
 */
export function packUnchecked(
  values: IntArrayLike,
  start: number,
  n: number,
  bits: number,
  words: Uint32Array,
  wordOffset: number,
): void {
  let bit = 0;
  for (let i = 0; i < n; i++, bit += bits) {
    const w = wordOffset + (bit >>> 5);
    const s = bit & 31;
    const v = values[start + i];
    words[w] |= v << s;
    if (s + bits > 32) words[w + 1] |= v >>> (32 - s);
  }
}

/**
 * Reads value `i` of a `bits`-wide stream that starts at word `wordOffset`.
 * Throws a RangeError when value `i` does not lie inside `words`.
 */
export function getStream(words: Uint32Array, bits: Bits, i: number, wordOffset = 0): number {
  assertBits(bits);
  if (!Number.isInteger(i) || i < 0 || wordOffset * 32 + (i + 1) * bits > words.length * 32) {
    throw new RangeError(
      `bitpack: index ${String(i)} is outside a ${bits}-bit stream of ${words.length} words`,
    );
  }
  return getUnchecked(words, bits, i, wordOffset);
}

/** `getStream` without checks, for inner loops that validated their bounds. */
export function getUnchecked(words: Uint32Array, bits: number, i: number, wordOffset: number): number {
  const bit = i * bits;
  const w = wordOffset + (bit >>> 5);
  const s = bit & 31;
  const mask = (1 << bits) - 1;
  let v = words[w] >>> s;
  if (s + bits > 32) v |= words[w + 1] << (32 - s);
  return v & mask;
}

/**
 * Unpacks `n` values of a `bits`-wide stream (starting at word `wordOffset`) into `out` starting at
 * `outOffset`. Allocates nothing. Specialised loops for 2, 3, 4 and 8 bits.
 */
export function unpackStream(
  words: Uint32Array,
  bits: Bits,
  n: number,
  out: UnpackTarget,
  wordOffset = 0,
  outOffset = 0,
): UnpackTarget {
  assertBits(bits);
  assertCount(n, "value count");
  assertCapacity(words.length - wordOffset, Math.ceil((n * bits) / 32), "packed word buffer");
  assertCapacity(out.length - outOffset, n, "output buffer");
  unpackUnchecked(words, bits, n, out, wordOffset, outOffset);
  return out;
}

/** The unpack loops, without argument checks (callers validated). */
export function unpackUnchecked(
  words: Uint32Array,
  bits: number,
  n: number,
  out: UnpackTarget,
  w: number,
  o: number,
): void {
  let i = 0;
  if (
    out instanceof Uint8Array &&
    (bits === 8 || bits === 4 || bits === 2) &&
    ((out.byteOffset + o) & 3) === 0
  ) {
    // Byte-output fast path: whole words become whole u32 stores (the stream is little-endian, so an
    // 8-bit stream's bytes are its values; 4- and 2-bit fields are spread to bytes with shifts and masks).
    const per = 32 / bits;
    const full = (n - (n % per)) / per;
    const dst = new Uint32Array(out.buffer, out.byteOffset + o, (full * per) >>> 2);
    let d = 0;
    if (bits === 8) {
      dst.set(words.subarray(w, w + full));
    } else if (bits === 4) {
      for (let k = 0; k < full; k++) {
        const x = words[w + k];
        let t = x & 0xffff;
        t = (t | (t << 8)) & 0x00ff00ff;
        dst[d++] = (t | (t << 4)) & 0x0f0f0f0f;
        t = x >>> 16;
        t = (t | (t << 8)) & 0x00ff00ff;
        dst[d++] = (t | (t << 4)) & 0x0f0f0f0f;
      }
    } else {
      for (let k = 0; k < full; k++) {
        const x = words[w + k];
        for (let s = 0; s < 32; s += 8) {
          let t = (x >>> s) & 0xff;
          t = (t | (t << 12)) & 0x000f000f;
          dst[d++] = (t | (t << 6)) & 0x03030303;
        }
      }
    }
    i = full * per;
    w += full;
    if (i < n) {
      const x = words[w];
      const mask = (1 << bits) - 1;
      for (let s = 0; i < n; s += bits) out[o + i++] = (x >>> s) & mask;
    }
    return;
  }
  if (bits === 8 || bits === 4 || bits === 2 || bits === 1) {
    const per = 32 / bits;
    const mask = (1 << bits) - 1;
    const full = n - (n % per);
    for (; i < full; w++) {
      const x = words[w];
      for (let s = 0; s < 32; s += bits) out[o + i++] = (x >>> s) & mask;
    }
    if (i < n) {
      const x = words[w];
      for (let s = 0; i < n; s += bits) out[o + i++] = (x >>> s) & mask;
    }
    return;
  }
  if (bits === 3) {
    // 32 values = 96 bits = exactly 3 words; values 10 and 21 straddle.
    const full = n - (n % 32);
    for (; i < full; w += 3) {
      const a = words[w];
      const b = words[w + 1];
      const c = words[w + 2];
      for (let s = 0; s < 30; s += 3) out[o + i++] = (a >>> s) & 7;
      out[o + i++] = ((a >>> 30) | (b << 2)) & 7;
      for (let s = 1; s < 31; s += 3) out[o + i++] = (b >>> s) & 7;
      out[o + i++] = ((b >>> 31) | (c << 1)) & 7;
      for (let s = 2; s < 32; s += 3) out[o + i++] = (c >>> s) & 7;
    }
    // tail: generic path relative to the block start
    for (let j = 0; i < n; i++, j++) out[o + i] = getUnchecked(words, 3, j, w);
    return;
  }
  for (; i < n; i++) out[o + i] = getUnchecked(words, bits, i, w);
}
