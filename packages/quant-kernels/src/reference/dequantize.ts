// Reference dequantize: one row at a time through the format record.
import { checkQuantCall } from "../check-args";
import type { QuantizedLinear } from "../types";
import { decoderOf } from "./weight-at";

/**
 * `out[N×K] = W`, row by row through the format record's `dequantizeRow`:
 * ```
 * for n < N, k < K: out[n*K + k] = w[n, k]   (affine: scales[n, g(k)] * (q[n, k] - zeros[n, g(k)]);
 *                                             lut:    scales[n, g(k)] * codebook[q[n, k]])
 * ```
 */
export function referenceDequantize(q: QuantizedLinear, out: Float32Array): void {
  checkQuantCall("dequantize", q, null, "", 0, q.outFeatures, out, "out", q.inFeatures);
  const dec = decoderOf(q.format);
  const K = q.inFeatures;
  for (let n = 0; n < q.outFeatures; n++) dec.dequantizeRow(q, n, out, n * K);
}
