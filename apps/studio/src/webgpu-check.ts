// What the studio does with WebGPU, through @int21/gpu's WebGPU backend (the route Node takes with Dawn):
// the model's `Linear` interface is synchronous and WebGPU reads results back asynchronously, so the
// pipeline runs on wasm; where the browser has a WebGPU device, every packed projection of the student is
// also multiplied on the GPU (`qmatmulAsync`) and checked against the wasm result, and both are timed.
import { createWebGpuBackend, type WebGpuBackend } from "@int21/gpu";
import type { LlamaWeights } from "@int21/model-llama";
import type { QuantizedLinear } from "@int21/quant-kernels";
import type { WasmBackend } from "@int21/quant-kernels/wasm";

/** The outcome of {@link webGpuCheck}. */
export interface WebGpuCheck {
  available: boolean;
  reason: string | null;
  adapter: string | null;
  layers: number;
  maxRelError: number;
  gpuUsPerCall: number;
  wasmUsPerCall: number;
}

let gpu: Promise<WebGpuBackend> | null = null;

/** Every packed record under the model's projections (LoRA-wrapped ones included). */
function packed(w: LlamaWeights): QuantizedLinear[] {
  const out: QuantizedLinear[] = [];
  for (const L of w.layers)
    for (const k of ["wq", "wk", "wv", "wo", "w1", "w2", "w3"] as const) {
      let l = L[k] as unknown as { q?: QuantizedLinear; base?: unknown };
      if (l.base && !l.q) l = l.base as typeof l;
      if (l.q) out.push(l.q);
    }
  return out;
}

/** Multiplies one row through every packed projection on WebGPU and on wasm, and compares. */
export async function webGpuCheck(wasm: WasmBackend, w: LlamaWeights): Promise<WebGpuCheck> {
  const none = { layers: 0, maxRelError: Number.NaN, gpuUsPerCall: Number.NaN, wasmUsPerCall: Number.NaN };
  if (!("gpu" in navigator))
    return { available: false, reason: "navigator.gpu is absent", adapter: null, ...none };
  gpu ??= createWebGpuBackend({ fallback: wasm, warn: () => {} });
  const b = await gpu;
  if (b.fallbackReason !== null || b.context === null)
    return { available: false, reason: b.fallbackReason, adapter: null, ...none };
  const adapter = b.context.adapter;
  const qs = packed(w);
  if (qs.length === 0)
    return {
      available: true,
      reason: "the model is float32: quantize it to check packed kernels",
      adapter,
      ...none,
    };
  let maxRel = 0;
  let gpuMs = 0;
  let wasmMs = 0;
  const reps = 3;
  for (const q of qs) {
    const x = Float32Array.from({ length: q.inFeatures }, (_, i) => Math.sin(i * 0.7));
    const yg = new Float32Array(q.outFeatures);
    const yw = new Float32Array(q.outFeatures);
    await b.qmatmulAsync(x, 1, q, yg);
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
  const calls = qs.length * reps;
  return {
    available: true,
    reason: null,
    adapter,
    layers: qs.length,
    maxRelError: maxRel,
    gpuUsPerCall: (gpuMs / calls) * 1000,
    wasmUsPerCall: (wasmMs / calls) * 1000,
  };
}
