// Gather-dequantize: selected rows of a packed matrix (an embedding lookup on a packed token table).
import { decoderOf } from "./reference/weight-at";
import type { QuantizedLinear } from "./types";

/**
 * Writes row `rows[i]` of the dequantized weight `W [N×K]` into `out[i·K, (i+1)·K)`: the embedding
 * lookup of a packed token table (rows = tokens), touching only `T·K` codes instead of `N·K`.
 * ```
 * for i < T, k < K:
 *   n = rows[i]
 *   out[i*K + k] = w[n, k]        (the format record's dequantizeRow: affine or codebook)
 * ```
 * Bit-for-bit equal to the matching rows of the reference `dequantize` of the whole matrix, for every
 * format (codebook formats, all bit widths, group sizes including per-channel, sym/asym, f16/f32 scales, act-order
 * `gIdx`). Allocates nothing. Throws an Error naming the row when a row id is not an integer in
 * `[0, N)`, and when `out` does not hold exactly `rows.length · K` floats.
 */
export function dequantizeRows(q: QuantizedLinear, rows: ArrayLike<number>, out: Float32Array): void {
  const N = q.outFeatures;
  const K = q.inFeatures;
  const T = rows.length;
  if (!(out instanceof Float32Array))
    throw new Error("quant-kernels: dequantizeRows out must be a Float32Array");
  if (out.length !== T * K) {
    throw new Error(
      `quant-kernels: dequantizeRows out has ${out.length} floats, expected rows.length × K = ${T} × ${K} = ${T * K}`,
    );
  }
  for (let i = 0; i < T; i++) {
    const n = rows[i];
    if (!Number.isInteger(n) || n < 0 || n >= N) {
      throw new Error(`quant-kernels: dequantizeRows rows[${i}] = ${n} is not a row id in [0, ${N})`);
    }
  }
  const dec = decoderOf(q.format);
  for (let i = 0; i < T; i++) dec.dequantizeRow(q, rows[i], out, i * K);
}
