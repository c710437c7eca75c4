// Reference fused backward: dx = g · W, decoding one weight row at a time through the format record.
import { checkQuantCall } from "../check-args";
import type { QuantizedLinear } from "../types";
import { decoderOf } from "./weight-at";

/**
 * `dx[rows×K] = g[rows×N] · W` (float64 accumulation in n order; row n of W decoded once by the
 * format record's `dequantizeRow`):
 * ```
 * for r < rows, k < K: dx[r*K + k] = Σ_n g[r*N + n] * w[n, k]
 * ```
 */
export function referenceQmatmulT(g: Float32Array, rows: number, q: QuantizedLinear, dx: Float32Array): void {
  const N = q.outFeatures;
  const K = q.inFeatures;
  checkQuantCall("qmatmulT", q, g, "g", N, rows, dx, "dx", K);
  if (rows === 0) return;
  const dec = decoderOf(q.format);
  const w = new Float32Array(K);
  const acc = new Float64Array(rows * K);
  for (let n = 0; n < N; n++) {
    dec.dequantizeRow(q, n, w, 0);
    for (let r = 0; r < rows; r++) {
      const a = g[r * N + n];
      const o = r * K;
      for (let k = 0; k < K; k++) acc[o + k] += a * w[k];
    }
  }
  for (let i = 0; i < rows * K; i++) dx[i] = acc[i];
}
