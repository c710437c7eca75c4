// Reference fused backward (input gradient): dx = g · W, decoding each weight where it is used.
import { checkQuantCall } from "../check-args";
import type { QuantizedLinear } from "../types";
import { weightAt } from "./weight-at";

/**
 * `dx[rows×K] = g[rows×N] · W` (float64 accumulation):
 * ```
 * for r < rows, k < K: dx[r*K + k] = Σ_n g[r*N + n] * w[n, k]
 * ```
 */
export function referenceQmatmulT(g: Float32Array, rows: number, q: QuantizedLinear, dx: Float32Array): void {
  const N = q.outFeatures;
  const K = q.inFeatures;
  checkQuantCall("qmatmulT", q, g, "g", N, rows, dx, "dx", K);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < K; k++) {
      let acc = 0;
      for (let n = 0; n < N; n++) acc += g[r * N + n] * weightAt(q, n, k);
      dx[r * K + k] = acc;
    }
  }
}
