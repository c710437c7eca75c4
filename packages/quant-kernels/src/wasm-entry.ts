// `@int21/quant-kernels/wasm`: the WebAssembly SIMD backend. The compiled kernels (base64, threads and
// single-thread variants) live only behind this entry, so importing the root entry (formats, quantizers,
// reference kernels, the Backend contract, the trainKernels/decodeKernels lookups) carries no wasm module.
export { type WasmBackend, type WasmBackendOptions, createWasmBackend } from "./wasm/wasm-backend";
export { enableRelaxedSimd, relaxedSimdAvailable } from "./wasm/relaxed-simd";
