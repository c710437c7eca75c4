// The asynchronous form of the Backend contract, for devices whose readback is asynchronous (WebGPU).
import type { Backend, GemmArgs, KernelName, QuantFormat, QuantizedLinear } from "@int21/quant-kernels";

/**
 * The {@link Backend} contract with every kernel returning a Promise that resolves once the output buffer
 * the caller passed holds the result. WebGPU reads results back with `mapAsync`; a synchronous facade
 * would have to spin on the event loop, so the asynchrony is visible in the type instead.
 *
 * The kernels carry an `Async` suffix on purpose: a function returning `Promise<void>` is assignable to
 * one returning `void`, so reusing the synchronous names would let an AsyncBackend pass for a Backend
 * and be read before its results arrive.
 */
export interface AsyncBackend {
  readonly name: string;
  /** Whether `kernel` (for `format`) runs on this backend's device; otherwise it runs on its CPU fallback. */
  supports(kernel: KernelName, format?: QuantFormat): boolean;
  /** {@link Backend.sgemm}: `C = alpha · op(A) · op(B) + beta · C`. */
  sgemmAsync(args: GemmArgs): Promise<void>;
  /** {@link Backend.dequantize}: `for n, k: out[n*K + k] = scales[n,g(k)] * (q[n,k] - zeros[n,g(k)])`. */
  dequantizeAsync(q: QuantizedLinear, out: Float32Array): Promise<void>;
  /** {@link Backend.qmatmul}: `for r, n: y[r*N + n] = Σ_k x[r*K + k] * w[n, k]`. */
  qmatmulAsync(x: Float32Array, rows: number, q: QuantizedLinear, y: Float32Array): Promise<void>;
  /** {@link Backend.qmatmulT}: `for r, k: dx[r*K + k] = Σ_n g[r*N + n] * w[n, k]`. */
  qmatmulTAsync(g: Float32Array, rows: number, q: QuantizedLinear, dx: Float32Array): Promise<void>;
  /** Releases the device's buffers (and the fallback). The backend must not be used afterwards. */
  dispose(): void;
}

/** Wraps a synchronous backend (a CPU fallback, or gpu.js) in the {@link AsyncBackend} form. */
export function asyncBackendFrom(b: Backend): AsyncBackend {
  return {
    name: b.name,
    supports: (kernel, format) => b.supports(kernel, format),
    sgemmAsync: async (args) => b.sgemm(args),
    dequantizeAsync: async (q, out) => b.dequantize(q, out),
    qmatmulAsync: async (x, rows, q, y) => b.qmatmul(x, rows, q, y),
    qmatmulTAsync: async (g, rows, q, dx) => b.qmatmulT(g, rows, q, dx),
    dispose: () => b.dispose(),
  };
}
