import { createGpuJsBackend, createWebGpuBackend } from "@int21/gpu";
import { createReferenceBackend, rtnQuantize } from "@int21/quant-kernels";

// A 4×64 weight quantized to INT2 (groups of 32, asymmetric, f16 scales).
const N = 4;
const K = 64;
const W = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i) * 0.05);
const q = rtnQuantize(W, N, K, "int2-g32-asym-f16");
const x = Float32Array.from({ length: K }, (_, k) => (k % 7) - 3);

const want = new Float32Array(N);
createReferenceBackend().qmatmul(x, 1, q, want);

// gpu.js: a synchronous Backend (WebGL / headless-gl where there is a GL context, else WebAssembly).
const gl = await createGpuJsBackend({ mode: "gpu" });
const y1 = new Float32Array(N);
gl.qmatmul(x, 1, q, y1);

// WebGPU: navigator.gpu in a browser, Dawn through the `webgpu` package in Node. Kernels are async.
const wg = await createWebGpuBackend();
const y2 = new Float32Array(N);
await wg.qmatmulAsync(x, 1, q, y2);

console.log("reference   ", Array.from(want, (v) => v.toFixed(5)).join(" "));
console.log(gl.name.padEnd(12), Array.from(y1, (v) => v.toFixed(5)).join(" "));
console.log(wg.name.padEnd(12), Array.from(y2, (v) => v.toFixed(5)).join(" "));
console.log(wg.context?.source, "·", wg.context?.adapter);
gl.dispose();
wg.dispose();
