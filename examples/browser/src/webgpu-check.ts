// What the page does with WebGPU. The model's `Linear` interface is synchronous and WebGPU reads
// results back asynchronously, so generation and training run on the wasm backend; where the browser
// has a WebGPU device, every packed projection of the loaded model is also multiplied on the GPU
// (@int21/gpu's async qmatmul) and checked against the wasm result, and both are timed.
import { createWebGpuBackend, type WebGpuBackend } from "@int21/gpu";
import type { Linear, QuantizedLinear, WasmBackend } from "@int21/quant-kernels";

/** The outcome of {@link webGpuCheck}. */
export interface WebGpuCheck {
  /** Whether a WebGPU device ran the check. */
  available: boolean;
  /** Why not, when not. */
  reason: string | null;
  /** The adapter (vendor, architecture, device, description), e.g. `google, swiftshader` for the software one. */
  adapter: string | null;
  /** Packed projections multiplied. */
  layers: number;
  /** Largest `max|y_gpu − y_wasm| / max|y_wasm|` over the layers. */
  maxRelError: number;
  /** Mean time of one qmatvec (1 row) per layer, GPU (with readback) and wasm. */
  gpuUsPerCall: number;
  wasmUsPerCall: number;
}

let gpu: Promise<WebGpuBackend> | null = null;

/** The page's WebGPU backend, made once (falls back to `wasm` and says why when there is no device). */
export function webGpuBackend(wasm: WasmBackend): Promise<WebGpuBackend> {
  gpu ??= createWebGpuBackend({ fallback: wasm, warn: () => {} });
  return gpu;
}

/** Multiplies one random row through every packed projection on WebGPU and on wasm, and compares. */
export async function webGpuCheck(wasm: WasmBackend, linears: readonly Linear[]): Promise<WebGpuCheck> {
  const none = { layers: 0, maxRelError: Number.NaN, gpuUsPerCall: Number.NaN, wasmUsPerCall: Number.NaN };
  if (!("gpu" in navigator))
    return { available: false, reason: "navigator.gpu is absent", adapter: null, ...none };
  const b = await webGpuBackend(wasm);
  if (b.fallbackReason !== null || b.context === null) {
    return { available: false, reason: b.fallbackReason, adapter: null, ...none };
  }
  const adapter = b.context.adapter;
  const packed = linears
    .map((l) => (l as { q?: QuantizedLinear }).q)
    .filter((q): q is QuantizedLinear => q !== undefined);
  if (packed.length === 0) {
    return {
      available: true,
      reason: "the model is float32: load INT4 or INT2 to check packed kernels",
      adapter,
      ...none,
    };
  }
  let maxRel = 0;
  let gpuMs = 0;
  let wasmMs = 0;
  const reps = 5;
  for (const q of packed) {
    const x = Float32Array.from({ length: q.inFeatures }, (_, i) => Math.sin(i * 0.7));
    const yg = new Float32Array(q.outFeatures);
    const yw = new Float32Array(q.outFeatures);
    await b.qmatmulAsync(x, 1, q, yg); // uploads the layer once; not timed
    let t = performance.now();
    for (let i = 0; i < reps; i++) await b.qmatmulAsync(x, 1, q, yg);
    gpuMs += performance.now() - t;
    wasm.qmatmul(x, 1, q, yw);
    t = performance.now();
    for (let i = 0; i < reps; i++) wasm.qmatmul(x, 1, q, yw);
    wasmMs += performance.now() - t;
    let scale = 0;
    let err = 0;
    for (let n = 0; n < yw.length; n++) {
      scale = Math.max(scale, Math.abs(yw[n]));
      err = Math.max(err, Math.abs(yg[n] - yw[n]));
    }
    maxRel = Math.max(maxRel, scale > 0 ? err / scale : err);
  }
  const calls = packed.length * reps;
  return {
    available: true,
    reason: null,
    adapter,
    layers: packed.length,
    maxRelError: maxRel,
    gpuUsPerCall: (gpuMs / calls) * 1000,
    wasmUsPerCall: (wasmMs / calls) * 1000,
  };
}
