// Reference fused forward: y = x · Wᵀ, decoding each weight where it is used.
import { checkQuantCall } from "../check-args";
import type { QuantizedLinear } from "../types";
import { weightAt } from "./weight-at";

/**
 * `y[rows×N] = x[rows×K] · Wᵀ` (float64 accumulation):
 * ```
 * for r < rows, n < N: y[r*N + n] = Σ_k x[r*K + k] * w[n, k]
 * ```
 */
export function referenceQmatmul(x: Float32Array, rows: number, q: QuantizedLinear, y: Float32Array): void {
  const N = q.outFeatures;
  const K = q.inFeatures;
  checkQuantCall("qmatmul", q, x, "x", K, rows, y, "y", N);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[r * K + k] * weightAt(q, n, k);
      y[r * N + n] = acc;
    }
  }
}
