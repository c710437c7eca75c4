// Reference fused forward: y = x · Wᵀ, decoding one weight row at a time through the format record.
import { checkQuantCall } from "../check-args";
import type { QuantizedLinear } from "../types";
import { decoderOf } from "./weight-at";

/**
 * `y[rows×N] = x[rows×K] · Wᵀ` (float64 accumulation in k order; row n of W decoded once by the
 * format record's `dequantizeRow`):
 * ```
 * for r < rows, n < N: y[r*N + n] = Σ_k x[r*K + k] * w[n, k]
 * ```
 */
export function referenceQmatmul(x: Float32Array, rows: number, q: QuantizedLinear, y: Float32Array): void {
  const N = q.outFeatures;
  const K = q.inFeatures;
  checkQuantCall("qmatmul", q, x, "x", K, rows, y, "y", N);
  if (rows === 0) return;
  const dec = decoderOf(q.format);
  const w = new Float32Array(K);
  for (let n = 0; n < N; n++) {
    dec.dequantizeRow(q, n, w, 0);
    for (let r = 0; r < rows; r++) {
      let acc = 0;
      const x0 = r * K;
      for (let k = 0; k < K; k++) acc += x[x0 + k] * w[k];
      y[r * N + n] = acc;
    }
  }
}
