// qmatmul / qmatmulT on the wasm backend. Few rows: the fused kernels that read packed codes and
// never dequantize (y = Σ_g s·(Σqx − z·Σx); dx += (g·s)·q − g·s·z). More rows: the packed GEMM
// whose B panels are dequantized from the resident codes a KC×NR tile at a time.
import { checkQuantCall } from "../check-args";
import type { QuantizedLinear } from "../types";
import { OP_QMATMUL, OP_QMATMUL_T, OP_QMATVEC, OP_QMATVEC_T, Q_DESC, Q_ROWS, Q_X, Q_Y } from "./layout";
import type { ResidentCache } from "./wasm-resident";
import type { WasmRuntime } from "./wasm-runtime";

/** Up to this many rows, qmatmul / qmatmulT use the fused matvec kernels. */
export const FUSED_MAX_ROWS = 2;
/** Weights × rows above which a fused matvec is split across threads. */
export const QMATVEC_PARALLEL = 1 << 21;
/** Multiply-adds above which a tiled qmatmul is split across threads. */
export const QMATMUL_PARALLEL = 1 << 22;

/**
 * Forward `y[rows×N] = x[rows×K] · Wᵀ` without materialising W.
 * ```
 * for r, n: y[r*N + n] = Σ_k x[r*K + k] * w[n, k]
 * ```
 */
export function wasmQmatmul(
  rt: WasmRuntime,
  cache: ResidentCache,
  x: Float32Array,
  rows: number,
  q: QuantizedLinear,
  y: Float32Array,
): void {
  rt.check("qmatmul");
  checkQuantCall("qmatmul", q, x, "x", q.inFeatures, rows, y, "y", q.outFeatures);
  if (rows === 0) return;
  const res = cache.quantized(q);
  const { N, K, Kp } = res;
  const heap = rt.heap;
  const xIn = Kp === K && heap.owns(x);
  const yIn = heap.owns(y);
  rt.begin(256 + (xIn ? 0 : rows * Kp * 4) + (yIn ? 0 : rows * N * 4), Kp + rows * (Kp + res.nGroups) + 64);
  let xa: number;
  if (xIn) xa = x.byteOffset;
  else {
    xa = rt.take(rows * Kp * 4);
    const f32 = heap.f32;
    const x0 = xa >>> 2;
    if (Kp === K) f32.set(x.subarray(0, rows * K), x0);
    else {
      for (let r = 0; r < rows; r++) {
        f32.set(x.subarray(r * K, r * K + K), x0 + r * Kp);
        f32.fill(0, x0 + r * Kp + K, x0 + (r + 1) * Kp);
      }
    }
  }
  const ya = yIn ? y.byteOffset : rt.take(rows * N * 4);
  const fused = rows <= FUSED_MAX_ROWS;
  const { i32, base } = rt.jobSlots(fused ? OP_QMATVEC : OP_QMATMUL);
  i32[base + Q_DESC] = res.desc;
  i32[base + Q_X] = xa;
  i32[base + Q_ROWS] = rows;
  i32[base + Q_Y] = ya;
  const work = rows * N * K;
  rt.run(work >= (fused ? QMATVEC_PARALLEL : QMATMUL_PARALLEL) ? rt.threads : 1);
  if (!yIn) y.set(heap.f32.subarray(ya >>> 2, (ya >>> 2) + rows * N));
}

/**
 * Backward input gradient `dx[rows×K] = g[rows×N] · W` without materialising W.
 * ```
 * for r, k: dx[r*K + k] = Σ_n g[r*N + n] * w[n, k]
 * ```
 */
export function wasmQmatmulT(
  rt: WasmRuntime,
  cache: ResidentCache,
  g: Float32Array,
  rows: number,
  q: QuantizedLinear,
  dx: Float32Array,
): void {
  rt.check("qmatmulT");
  checkQuantCall("qmatmulT", q, g, "g", q.outFeatures, rows, dx, "dx", q.inFeatures);
  if (rows === 0) return;
  const res = cache.quantized(q);
  const { N, K, Kp } = res;
  const heap = rt.heap;
  const gIn = heap.owns(g);
  const dIn = heap.owns(dx);
  rt.begin(256 + (gIn ? 0 : rows * N * 4) + (dIn ? 0 : rows * K * 4), Kp + 64);
  let ga: number;
  if (gIn) ga = g.byteOffset;
  else {
    ga = rt.take(rows * N * 4);
    heap.f32.set(g.subarray(0, rows * N), ga >>> 2);
  }
  const da = dIn ? dx.byteOffset : rt.take(rows * K * 4);
  const fused = rows <= FUSED_MAX_ROWS && res.fast;
  const { i32, base } = rt.jobSlots(fused ? OP_QMATVEC_T : OP_QMATMUL_T);
  i32[base + Q_DESC] = res.desc;
  i32[base + Q_X] = ga;
  i32[base + Q_ROWS] = rows;
  i32[base + Q_Y] = da;
  const work = rows * N * K;
  rt.run(work >= (fused ? QMATVEC_PARALLEL : QMATMUL_PARALLEL) ? rt.threads : 1);
  if (!dIn) dx.set(heap.f32.subarray(da >>> 2, (da >>> 2) + rows * K));
}
