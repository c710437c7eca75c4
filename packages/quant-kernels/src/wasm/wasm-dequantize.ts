// dequantize on the wasm backend: rows of W decoded from the resident codes, split across threads.
import type { QuantizedLinear } from "../types";
import { OP_DEQUANT, Q_DESC, Q_ROWS, Q_X, Q_Y } from "./layout";
import type { ResidentCache } from "./wasm-resident";
import type { WasmRuntime } from "./wasm-runtime";

/** Elements above which dequantization is split across threads. */
export const DEQUANT_PARALLEL = 1 << 20;

/**
 * `out[N×K] = W`.
 * ```
 * for n, k: out[n*K + k] = scales[n,g(k)] * (q[n,k] - zeros[n,g(k)])
 * ```
 */
export function wasmDequantize(
  rt: WasmRuntime,
  cache: ResidentCache,
  q: QuantizedLinear,
  out: Float32Array,
): void {
  rt.check("dequantize");
  if (q === null || typeof q !== "object" || q.qweight === undefined) {
    throw new Error(
      "quant-kernels: dequantize: q must be a QuantizedLinear (build it with createQuantizedLinear)",
    );
  }
  if (!(out instanceof Float32Array))
    throw new Error("quant-kernels: dequantize: out must be a Float32Array");
  const N = q.outFeatures;
  const K = q.inFeatures;
  if (out.length < N * K) {
    throw new Error(`quant-kernels: dequantize: out needs ${N}×${K} = ${N * K} floats, has ${out.length}`);
  }
  const res = cache.quantized(q);
  const heap = rt.heap;
  const oIn = heap.owns(out);
  rt.begin(256 + (oIn ? 0 : N * K * 4), res.Kp + 64);
  const oa = oIn ? out.byteOffset : rt.take(N * K * 4);
  const { i32, base } = rt.jobSlots(OP_DEQUANT);
  i32[base + Q_DESC] = res.desc;
  i32[base + Q_X] = 0;
  i32[base + Q_ROWS] = N;
  i32[base + Q_Y] = oa;
  rt.run(N * K >= DEQUANT_PARALLEL ? rt.threads : 1);
  if (!oIn) out.set(heap.f32.subarray(oa >>> 2, (oa >>> 2) + N * K));
}
