// How well a quantized layer reproduces its float layer on given inputs.
import { plainBlockedSgemm } from "./reference/blocked-sgemm";
import { referenceDequantize } from "./reference/dequantize";
import type { QuantizedLinear } from "./types";

/**
 * Relative output error on inputs `x[rows×K]`: `‖X·Wᵀ − X·Ŵᵀ‖²_F / ‖X·Wᵀ‖²_F` with Ŵ the
 * dequantized `q` — the objective GPTQ minimises. Allocating convenience (dequantizes W).
 */
export function relativeOutputError(
  x: Float32Array,
  rows: number,
  weight: Float32Array,
  q: QuantizedLinear,
): number {
  const N = q.outFeatures;
  const K = q.inFeatures;
  if (weight.length !== N * K)
    throw new Error(`quant-kernels: relativeOutputError: weight needs ${N * K} values, has ${weight.length}`);
  if (x.length !== rows * K)
    throw new Error(`quant-kernels: relativeOutputError: x needs ${rows}×${K} values, has ${x.length}`);
  const What = new Float32Array(N * K);
  referenceDequantize(q, What);
  const D = new Float32Array(N * K);
  for (let i = 0; i < D.length; i++) D[i] = weight[i] - What[i];
  const y = new Float32Array(rows * N);
  const e = new Float32Array(rows * N);
  plainBlockedSgemm({ M: rows, N, K, A: x, B: weight, C: y, transB: true });
  plainBlockedSgemm({ M: rows, N, K, A: x, B: D, C: e, transB: true });
  let num = 0;
  let den = 0;
  for (let i = 0; i < y.length; i++) {
    num += e[i] * e[i];
    den += y[i] * y[i];
  }
  return den === 0 ? (num === 0 ? 0 : Number.POSITIVE_INFINITY) : num / den;
}
