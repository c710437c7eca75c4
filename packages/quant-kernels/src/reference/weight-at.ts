// Scalar element access into a QuantizedLinear, shared by the reference kernels.
import type { QuantizedLinear } from "../types";

/**
 * Code `(n, k)` of the packed matrix (bitpack matrix layout: row n starts at word `n·wordsPerRow`,
 * value k occupies stream bits `[k·bits, k·bits + bits)`, least significant first). No bounds checks.
 */
export function codeAt(q: QuantizedLinear, n: number, k: number): number {
  const { bits, words, wordsPerRow } = q.qweight;
  const bit = k * bits;
  const w = n * wordsPerRow + (bit >>> 5);
  const s = bit & 31;
  let v = words[w] >>> s;
  if (s + bits > 32) v |= words[w + 1] << (32 - s);
  return v & ((1 << bits) - 1);
}

/** Group of input column k: `gIdx[k]`, or `floor(k / groupSize)`, or 0 for per-channel formats. */
export function groupOf(q: QuantizedLinear, k: number): number {
  if (q.gIdx !== undefined) return q.gIdx[k];
  return q.format.groupSize === -1 ? 0 : Math.floor(k / q.format.groupSize);
}

/** `w[n, k] = fround(scales[n, g(k)] · (q[n, k] − zeros[n, g(k)]))`, the canonical dequantized weight. */
export function weightAt(q: QuantizedLinear, n: number, k: number): number {
  const nG = q.scales.length / q.outFeatures;
  const p = n * nG + groupOf(q, k);
  return Math.fround(q.scales[p] * (codeAt(q, n, k) - q.zeros[p]));
}
