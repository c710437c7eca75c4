// Scalar element access into a QuantizedLinear, and the record lookup the reference kernels share.
import { type FormatRecord, forEachCode } from "../formats/format";
import { getFormat } from "../formats/registry";
import type { QuantFormat, QuantizedLinear } from "../types";

/**
 * Code `(n, k)` of the packed matrix (bitpack matrix layout: row n starts at word `n·wordsPerRow`,
 * value k occupies stream bits `[k·bits, k·bits + bits)`, least significant first). No bounds checks.
 * For a block format this is byte k of row n's ggml blocks.
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

/** What the reference kernels need of a format: its row decoder and its value of one code. */
export type FormatDecoder = Pick<FormatRecord, "dequantizeRow" | "value">;

const affineDecoder: FormatDecoder = {
  dequantizeRow(q, n, out, outOff) {
    const { scales, zeros } = q;
    forEachCode(q, n, (k, c, p) => {
      out[outOff + k] = Math.fround(scales[p] * (c - zeros[p]));
    });
  },
  value: (c, scale, zero) => Math.fround(scale * (c - zero)),
};

/**
 * The decoder of `format`: the format record itself (a registered record carries `dequantizeRow`),
 * the registry's record for a plain {@link QuantFormat} of a registered codebook format, or the
 * affine decode `scale·(q − zero)` for a plain affine `QuantFormat` (hand-built layers).
 */
export function decoderOf(format: QuantFormat): FormatDecoder {
  const f = format as Partial<FormatRecord>;
  if (typeof f.dequantizeRow === "function" && typeof f.value === "function") return f as FormatDecoder;
  if (format.decode === undefined || format.decode === "affine") return affineDecoder;
  return getFormat(format);
}

/**
 * `w[n, k]`, the canonical dequantized weight, through the format record:
 * `fround(scales[n, g(k)] · (q[n, k] − zeros[n, g(k)]))` for affine formats,
 * `fround(scales[n, g(k)] · codebook[q[n, k]])` for codebook ("lut") formats, ggml's decode of the
 * row for block formats.
 */
export function weightAt(q: QuantizedLinear, n: number, k: number): number {
  if (q.format.decode === "block") {
    // Block formats: decode the row (the block holding k needs its super-block's scales).
    const row = new Float32Array(q.inFeatures);
    decoderOf(q.format).dequantizeRow(q, n, row, 0);
    return row[k];
  }
  const nG = q.scales.length / q.outFeatures;
  const p = n * nG + groupOf(q, k);
  return decoderOf(q.format).value(codeAt(q, n, k), q.scales[p], q.zeros[p]);
}
