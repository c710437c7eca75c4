// Reference dequantize: one weight at a time.
import { checkQuantCall } from "../check-args";
import type { QuantizedLinear } from "../types";
import { weightAt } from "./weight-at";

/**
 * `out[N×K] = W`:
 * ```
 * for n < N, k < K: out[n*K + k] = scales[n, g(k)] * (q[n, k] - zeros[n, g(k)])
 * ```
 */
export function referenceDequantize(q: QuantizedLinear, out: Float32Array): void {
  checkQuantCall("dequantize", q, null, "", 0, q.outFeatures, out, "out", q.inFeatures);
  const N = q.outFeatures;
  const K = q.inFeatures;
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) out[n * K + k] = weightAt(q, n, k);
  }
}
